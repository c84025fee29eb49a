import json

import pytest

from jaxgluon.scheduler import Decision, FIFOScheduler, Trial, get_scheduler


def test_fifo_allocates_ids_and_runs_to_max_t(list_searcher):
    searcher = list_searcher(limit=2)
    fifo = FIFOScheduler(searcher, max_t=3)
    a, b = fifo.suggest(), fifo.suggest()
    assert (a.kind, a.trial_id, b.trial_id) == ("start", 0, 1)
    assert searcher.pending == {0, 1}
    assert fifo.suggest() is None  # exhausted searcher
    ta = Trial(a.trial_id, a.config)
    assert [fifo.on_trial_result(ta, {"epoch": e, "reward": -e}) for e in (1, 2, 3)] == [
        Decision.CONTINUE, Decision.CONTINUE, Decision.STOP]
    fifo.on_trial_complete(ta, {"epoch": 3, "reward": -3})  # idempotent after STOP
    assert searcher.completed == {0: -3}
    assert [r[2] for r in searcher.results] == [1, 2, 3]
    fifo.on_trial_error(Trial(b.trial_id, b.config))
    assert searcher.errors == [1] and searcher.pending == set()
    with pytest.raises(ValueError, match="already finished"):
        fifo.on_trial_result(ta, {"epoch": 3, "reward": 0.0})


def test_on_trial_add_keeps_ids_monotonic(list_searcher):
    fifo = FIFOScheduler(list_searcher())
    fifo.on_trial_add(Trial(5, {"x": 0}))
    assert fifo.suggest().trial_id == 6
    assert fifo.on_trial_result(Trial(5, {"x": 0}), {"epoch": 100, "reward": 1.0}) == Decision.CONTINUE  # no max_t


def test_fifo_state_round_trip(list_searcher):
    fifo = FIFOScheduler(list_searcher(mode="min"), max_t=2, mode="min")
    s = fifo.suggest()
    fifo.on_trial_result(Trial(s.trial_id, s.config), {"epoch": 1, "reward": 0.3})
    state = json.loads(json.dumps(fifo.state_dict()))
    other = FIFOScheduler(list_searcher(mode="min"), max_t=2, mode="min")
    other.load_state_dict(state)
    assert other.suggest().trial_id == 1
    assert other.metadata()["mode"] == "min"


def test_searcher_mode_mismatch_is_an_error(list_searcher):
    with pytest.raises(ValueError, match="mode"):
        FIFOScheduler(list_searcher(mode="max"), mode="min")


def test_get_scheduler_names(list_searcher):
    with pytest.raises(ValueError, match="random, grid, bayesopt, hyperband, bayesopt_hyperband"):
        get_scheduler("asha", list_searcher())
    assert get_scheduler("hyperband", list_searcher(), max_t=9, type="promotion").type == "promotion"
    assert isinstance(get_scheduler("random", list_searcher()), FIFOScheduler)
    with pytest.raises(ValueError, match="type"):
        get_scheduler("random", list_searcher(), type="stopping")


def test_get_scheduler_builds_the_real_searchers():
    from jaxgluon.searcher import GPSearcher, GridSearcher, RandomSearcher
    from jaxgluon.space import Real

    space = {"lr": Real(1e-3, 1.0, log=True)}
    assert isinstance(get_scheduler("random", space, max_t=3).searcher, RandomSearcher)
    assert isinstance(get_scheduler("grid", space, max_t=3).searcher, GridSearcher)
    fifo_gp = get_scheduler("bayesopt", space, max_t=3)
    assert isinstance(fifo_gp, FIFOScheduler) and not fifo_gp.searcher.multi_fidelity
    bohb = get_scheduler("bayesopt_hyperband", space, max_t=9, type="promotion", seed=4)
    assert bohb.searcher.multi_fidelity and bohb.type == "promotion" and bohb.metadata()["seed"] == 4
    s = bohb.suggest()
    assert s.kind == "start" and 1e-3 <= s.config["lr"] <= 1.0
