import json

import pytest

from jaxgluon.scheduler import Decision, HyperbandScheduler, Trial, TrialStatus


def _start(scheduler):
    s = scheduler.suggest()
    assert s.kind == "start"
    return Trial(s.trial_id, s.config)


def test_stopping_stops_trials_below_the_rung_cutoff(list_searcher):
    hb = HyperbandScheduler(list_searcher(), type="stopping", grace_period=1, reduction_factor=3, max_t=9)
    # constructed curves: reward at epoch 1
    trials = [_start(hb) for _ in range(3)]
    assert [t.trial_id for t in trials] == [0, 1, 2]
    assert hb.on_trial_result(trials[0], {"epoch": 1, "reward": 0.5}) == Decision.CONTINUE  # alone: best so far
    assert hb.on_trial_result(trials[1], {"epoch": 1, "reward": 0.9}) == Decision.CONTINUE
    assert hb.on_trial_result(trials[2], {"epoch": 1, "reward": 0.1}) == "STOP"          # bottom of 3
    # between rungs: always continue
    assert hb.on_trial_result(trials[1], {"epoch": 2, "reward": 0.0}) == Decision.CONTINUE
    # rung 3: trial 1 alone there, continues; trial 0 below it stops
    assert hb.on_trial_result(trials[1], {"epoch": 3, "reward": 0.95}) == Decision.CONTINUE
    assert hb.on_trial_result(trials[0], {"epoch": 2, "reward": 0.6}) == Decision.CONTINUE
    assert hb.on_trial_result(trials[0], {"epoch": 3, "reward": 0.6}) == Decision.STOP
    # reaching max_t ends a trial
    for epoch in range(4, 9):
        assert hb.on_trial_result(trials[1], {"epoch": epoch, "reward": 0.96}) == Decision.CONTINUE
    assert hb.on_trial_result(trials[1], {"epoch": 9, "reward": 0.97}) == Decision.STOP
    assert hb.searcher.completed == {2: 0.1, 0: 0.6, 1: 0.97}
    # by default only rung-level results go to the searcher
    assert [(tid, res) for tid, _, res in hb.searcher.results] == [(0, 1), (1, 1), (2, 1), (1, 3), (0, 3), (1, 9)]
    with pytest.raises(ValueError, match="beyond max_t"):
        hb.on_trial_result(trials[1], {"epoch": 10, "reward": 0.97})


def test_stopping_in_min_mode_stops_the_largest_loss(list_searcher):
    hb = HyperbandScheduler(list_searcher(mode="min"), type="stopping", max_t=9, mode="min")
    trials = [_start(hb) for _ in range(3)]
    decisions = [hb.on_trial_result(t, {"epoch": 1, "reward": r}) for t, r in zip(trials, [0.5, 0.1, 0.9])]
    assert decisions == [Decision.CONTINUE, Decision.CONTINUE, Decision.STOP]


def test_promotion_pauses_then_resumes_the_best_paused_trial(list_searcher):
    hb = HyperbandScheduler(list_searcher(), type="promotion", grace_period=1, reduction_factor=3, max_t=9)
    t0, t1 = _start(hb), _start(hb)
    assert hb.on_trial_result(t0, {"epoch": 1, "reward": 0.2}) == Decision.PAUSE
    assert hb.on_trial_result(t1, {"epoch": 1, "reward": 0.8}) == Decision.PAUSE
    assert hb.paused_trials() == [0, 1]
    # nobody is in the top third of 2 results: a new trial starts
    t2 = _start(hb)
    assert t2.trial_id == 2
    assert hb.on_trial_result(t2, {"epoch": 1, "reward": 0.5}) == Decision.PAUSE
    # now 3 results: the best paused one (trial 1) is promoted, ahead of any new trial
    s = hb.suggest()
    assert (s.kind, s.trial_id, s.config, s.resume_from_epoch, s.milestone) == ("resume", 1, {"x": 1}, 1, 3)
    # promoted once only: the next suggestion is a new trial
    t3 = _start(hb)
    assert t3.trial_id == 3
    # the resumed trial continues to its next rung and, alone there, pauses again
    assert hb.on_trial_result(t1, {"epoch": 2, "reward": 0.85}) == Decision.CONTINUE
    assert hb.on_trial_result(t1, {"epoch": 3, "reward": 0.9}) == Decision.PAUSE
    # a trial that arrives already in the top third is not paused
    for r in (0.1, 0.15):
        assert hb.on_trial_result(_start(hb), {"epoch": 1, "reward": r}) == Decision.PAUSE
    assert hb.on_trial_result(t3, {"epoch": 1, "reward": 0.99}) == Decision.CONTINUE
    assert hb.searcher.pending >= {0, 2}


def test_promotion_prefers_higher_rungs(list_searcher):
    hb = HyperbandScheduler(list_searcher(), type="promotion", reduction_factor=2, max_t=8)  # rungs 1, 2, 4, 8
    trials = [_start(hb) for _ in range(4)]
    rewards = [0.1, 0.9, 0.8, 0.2]
    assert [hb.on_trial_result(t, {"epoch": 1, "reward": r}) for t, r in zip(trials, rewards)] == [
        Decision.PAUSE, Decision.CONTINUE, Decision.PAUSE, Decision.PAUSE]
    assert hb.on_trial_result(trials[1], {"epoch": 2, "reward": 0.9}) == Decision.PAUSE
    # rung 1: trial 2 is in the top half of 4 and waiting; rung 2 has 1 result -> nothing to promote there yet
    s = hb.suggest()
    assert (s.kind, s.trial_id) == ("resume", 2)
    assert hb.on_trial_result(trials[2], {"epoch": 2, "reward": 0.7}) == Decision.PAUSE
    # rung 2 now has 2 results; trial 1 (best) goes up before anything at rung 1
    s = hb.suggest()
    assert (s.kind, s.trial_id, s.milestone) == ("resume", 1, 4)


def test_error_removes_a_trial_from_promotion(list_searcher):
    hb = HyperbandScheduler(list_searcher(), type="promotion", max_t=9)
    trials = [_start(hb) for _ in range(3)]
    for t, r in zip(trials, [0.9, 0.2, 0.3]):
        hb.on_trial_result(t, {"epoch": 1, "reward": r})
    hb.on_trial_error(trials[0])
    assert hb.searcher.errors == [0]
    assert hb.trial_status(0) == TrialStatus.ERROR
    s = hb.suggest()
    assert s.kind == "start"  # 2 results left at rung 1: nobody promotable


def test_state_round_trip_through_json(list_searcher):
    def run_some(hb):
        trials = [_start(hb) for _ in range(4)]
        for t, r in zip(trials, [0.3, 0.6, 0.1, 0.7]):
            hb.on_trial_result(t, {"epoch": 1, "reward": r})
        return hb

    kw = dict(type="promotion", max_t=27, brackets=2, seed=3)
    hb = run_some(HyperbandScheduler(list_searcher(), **kw))
    state = json.loads(json.dumps(hb.state_dict()))
    restored = HyperbandScheduler(list_searcher(), **kw)
    restored.load_state_dict(state)
    assert restored.state_dict() == hb.state_dict()
    # both continue identically
    a, b = hb.suggest(), restored.suggest()
    assert (a.kind, a.trial_id, a.config) == (b.kind, b.trial_id, b.config)
    with pytest.raises(ValueError, match="type"):
        HyperbandScheduler(list_searcher(), type="stopping", max_t=27, brackets=2).load_state_dict(state)


def test_brackets_start_at_later_rungs(list_searcher):
    hb = HyperbandScheduler(list_searcher(), type="stopping", max_t=9, brackets=3, seed=0)
    trials = [_start(hb) for _ in range(60)]
    brackets = {hb._trials[t.trial_id]["bracket"] for t in trials}
    assert brackets == {0, 1, 2}
    late = next(t for t in trials if hb._trials[t.trial_id]["bracket"] == 2)
    # bracket 2 only has the final level: never judged early
    for epoch in range(1, 9):
        assert hb.on_trial_result(late, {"epoch": epoch, "reward": -1.0}) == Decision.CONTINUE
    assert hb.metadata()["brackets"] == 3


def test_invalid_arguments(list_searcher):
    with pytest.raises(ValueError, match="max_t"):
        HyperbandScheduler(list_searcher())
    with pytest.raises(ValueError, match="type"):
        HyperbandScheduler(list_searcher(), type="median", max_t=9)
    with pytest.raises(ValueError, match="brackets"):
        HyperbandScheduler(list_searcher(), max_t=9, brackets=4)
    hb = HyperbandScheduler(list_searcher(), max_t=9)
    t = _start(hb)
    with pytest.raises(ValueError, match="finite"):
        hb.on_trial_result(t, {"epoch": 1, "reward": float("nan")})
    with pytest.raises(ValueError, match="epoch"):
        hb.on_trial_result(t, {"reward": 1.0})
    with pytest.raises(ValueError, match="unknown trial_id"):
        hb.on_trial_result(Trial(99, {}), {"epoch": 1, "reward": 1.0})


def test_saved_state_is_a_snapshot_for_rollback(list_searcher):
    # the runner saves state, asks suggest(), and may roll back: later events must not leak into the snapshot
    hb = HyperbandScheduler(list_searcher(), type="promotion", max_t=9)
    t0 = _start(hb)
    hb.on_trial_result(t0, {"epoch": 1, "reward": 0.5})
    saved = hb.state_dict()
    frozen = json.dumps(saved, sort_keys=True)
    s = hb.suggest()
    hb.on_trial_result(Trial(s.trial_id, s.config), {"epoch": 1, "reward": 0.7})
    assert json.dumps(saved, sort_keys=True) == frozen
    hb.load_state_dict(saved)
    assert hb.trial_ids == [0] and hb.suggest().trial_id == 1


def test_defaults_are_plain_asha_grace_1_rf_3(list_searcher):
    # The documented defaults (chosen on held-out LCBench tasks by benchmarks/hyperband_defaults.py: more brackets
    # were worse on 5-6 of 6 tasks; grace_period 3 was mixed, 3 of 6). A change here must be a deliberate one.
    from jaxgluon.scheduler import get_scheduler
    from jaxgluon.space import Real

    hb = HyperbandScheduler(list_searcher(), max_t=51)
    assert (hb.type, hb.grace_period, hb.reduction_factor, hb.brackets) == ("stopping", 1, 3, 1)
    assert hb.rung_levels == (1, 3, 9, 27, 51)
    # one bracket: every trial is judged from epoch 1 on, and the bottom two thirds of a rung stop
    trials = [_start(hb) for _ in range(9)]
    assert {hb._trials[t.trial_id]["bracket"] for t in trials} == {0}
    decisions = [hb.on_trial_result(t, {"epoch": 1, "reward": r / 10}) for t, r in zip(trials, range(2, 11))]
    assert decisions == [Decision.CONTINUE] * 9  # each new best continues
    assert hb.on_trial_result(_start(hb), {"epoch": 1, "reward": 0.1}) == Decision.STOP  # judged at epoch 1
    space = {"lr": Real(1e-3, 1.0, log=True)}
    for name in ("hyperband", "bayesopt_hyperband"):
        meta = get_scheduler(name, space, max_t=51).metadata()
        assert (meta["grace_period"], meta["reduction_factor"], meta["brackets"], meta["rung_levels"]) == (
            1, 3, 1, [1, 3, 9, 27, 51]), name
