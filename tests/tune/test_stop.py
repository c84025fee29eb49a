import pytest

from jaxgluon.tune.stop import TUNE_DEFAULT_NUM_TRIALS, KeepSeconds, StopCriterion


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


def _run_with_keep(tmp_path, keep, time_limits=100.0):
    """FIFO random search of SyntheticCurves (epochs of 1-2 simulated seconds, 10 per trial) on one simulated
    worker, through the Runner, with ``StopCriterion.keep``."""
    from jaxgluon.scheduler import FIFOScheduler
    from jaxgluon.searcher import RandomSearcher
    from jaxgluon.tune.runner import Runner
    from jaxgluon.tune.sim import SyntheticCurves
    from jaxgluon.tune.sim.executor import SimulatedExecutor

    curves = SyntheticCurves(max_epochs=10)
    executor = SimulatedExecutor(1, horizon=time_limits)
    stop = StopCriterion.from_args(None, time_limits, None, keep=keep)
    runner = Runner(curves, FIFOScheduler(RandomSearcher(curves.search_space, seed=0), max_t=10), executor,
                    tmp_path / "exp", stop, max_epochs=10, journal_sync="flush", trial_timeout=None)
    return runner.run(), executor


def test_keep_winds_the_search_down_when_the_time_left_falls_to_it(tmp_path):
    asked = []

    def keep(records):   # what task.fit(refit=True) does: a function of what the trials reported so far
        asked.append(sum(len(r.results) for r in records.values()))
        return 30.0 if any(r.results for r in records.values()) else None

    result, executor = _run_with_keep(tmp_path, keep)
    assert result.metadata["stop_reason"] == "keep" and asked[0] == 1 and asked == sorted(asked)
    starts = [e["time"] - 1e-9 for e in executor.events if e["epoch"] == 1]
    last = max(e["time"] for e in executor.events)
    # nothing reports after the 70 s mark but the epoch in flight then (epochs last at most 2 s), and the search
    # did use its time up to that mark
    assert 68.0 <= last <= 72.0, last
    assert all(t < 70.0 for t in starts)
    assert result.metadata["stop_criterion"]["keep"] == "test_keep_winds_the_search_down_when_the_time_left_" \
                                                         "falls_to_it.<locals>.keep"


def test_a_keep_that_never_fits_is_ignored_and_a_failing_one_dropped(tmp_path):
    result, executor = _run_with_keep(tmp_path / "a", lambda records: 1000.0)
    assert result.metadata["stop_reason"] == "time_limits" and max(e["time"] for e in executor.events) > 98.0

    def broken(records):
        raise KeyError("reward")

    with pytest.warns(RuntimeWarning, match="keep function raised KeyError"):
        result, executor = _run_with_keep(tmp_path / "b", broken)
    assert result.metadata["stop_reason"] == "time_limits"


def _grows_at(reports, kept):
    """A keep of 10 s until ``reports`` epochs have reported, then ``kept`` (the best trial changed to one whose
    refit needs more than the time left)."""
    def keep(records):
        return 10.0 if sum(len(r.results) for r in records.values()) < reports else kept
    return keep


def test_a_keep_that_grows_past_what_is_left_winds_down_only_while_its_least_still_fits(tmp_path):
    # 30 reports take 41 simulated s: a grown keep of 80 s whose work needs 65 -- it can never be met now, so the
    # search keeps its time (it would else end ~59 s early for work that is then skipped)
    result, executor = _run_with_keep(tmp_path / "a", _grows_at(30, KeepSeconds(80.0, 65.0)))
    assert result.metadata["stop_reason"] == "time_limits", result.metadata["stop_reason"]
    assert max(e["time"] for e in executor.events) > 98.0
    # ... a plain number past the time left is its own least: the same
    result, executor = _run_with_keep(tmp_path / "b", _grows_at(30, 80.0))
    assert result.metadata["stop_reason"] == "time_limits"
    # while the least still fits, the search winds down at once: the report that grew the keep is the last (on one
    # worker; sending that trial on for another epoch would spend the time its own refit needs)
    result, executor = _run_with_keep(tmp_path / "c", _grows_at(25, KeepSeconds(80.0, 30.0)))
    assert result.metadata["stop_reason"] == "keep"
    assert sum(e["epoch"] is not None for e in executor.events) == 25, len(executor.events)
    last = result.trials[-1]
    assert (last["num_epochs"], last["status"]) == (5, "STOPPED"), last   # trial 2, stopped at its 5th epoch


def test_keep_must_be_callable():
    with pytest.raises(TypeError, match="keep must be a function"):
        StopCriterion.from_args(None, 10, None, keep=30.0)
