import pytest

from jaxgluon.tune.stop import TUNE_DEFAULT_NUM_TRIALS, StopCriterion


def test_defaults_are_visible_as_a_dict():
    assert StopCriterion.from_args(None, None, None).as_dict() == {
        "num_trials": TUNE_DEFAULT_NUM_TRIALS, "time_limits": None, "max_reward": None}
    # a time limit alone means: as many trials as fit in the time
    assert StopCriterion.from_args(None, 30, None).as_dict() == {
        "num_trials": None, "time_limits": 30.0, "max_reward": None}


def test_checks():
    stop = StopCriterion.from_args(3, None, 0.9)
    assert not stop.trials_exhausted(2) and stop.trials_exhausted(3)
    assert stop.reward_reached(0.9) and not stop.reward_reached(0.89)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_trials=0), "num_trials"), (dict(num_trials=2.5), "num_trials"), (dict(time_limits=-1), "time_limits"),
    (dict(time_limits="1h"), "time_limits"), (dict(max_reward=float("nan")), "max_reward"),
])
def test_bad_values_name_the_argument(kwargs, match):
    args = {"num_trials": None, "time_limits": None, "max_reward": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        StopCriterion.from_args(**args)
