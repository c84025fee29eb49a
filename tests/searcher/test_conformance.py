"""The searcher protocol, checked against every searcher (random, grid, bayesopt)."""
from __future__ import annotations

import json

import pytest

import jaxgluon as ag
from jaxgluon.searcher import SEARCHERS, GPSearcher, GridSearcher, RandomSearcher, config_key, get_searcher

# 3 x 4 = 12 configs; the constant takes no dim
SPACE = {"opt": ag.Categorical("sgd", "adam", "rmsprop"), "n": ag.Int(1, 4), "epochs": 3}
SIZE = 12
OPTIONS = {"random": {}, "grid": {"points_per_dim": 4}, "bayesopt": {"num_initial_random": 3}}


def reward_of(config: dict) -> float:
    return {"sgd": 0.0, "adam": 1.0, "rmsprop": 0.5}[config["opt"]] - 0.1 * (config["n"] - 3) ** 2


def make(name: str, seed: int = 0, mode: str = "max"):
    return get_searcher(name, SPACE, seed=seed, mode=mode, **OPTIONS[name])


@pytest.fixture(params=sorted(SEARCHERS))
def name(request) -> str:
    return request.param


def test_get_searcher_builds_the_named_class():
    assert type(make("random")) is RandomSearcher
    assert type(make("grid")) is GridSearcher
    assert type(make("bayesopt")) is GPSearcher


def test_unknown_name_and_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="valid names are .*bayesopt.*grid.*random"):
        get_searcher("tpe", SPACE)
    with pytest.raises(ValueError, match="mode"):
        RandomSearcher(SPACE, mode="maximise")
    with pytest.raises(ValueError, match="num_candidates"):
        GPSearcher(SPACE, num_candidates=0)


def test_suggest_complete_cycle_covers_the_finite_space_without_repeats(name):
    searcher = make(name)
    seen = []
    for trial_id in range(SIZE):
        config = searcher.suggest(trial_id)
        assert config is not None and set(config) == {"opt", "n", "epochs"} and config["epochs"] == 3
        seen.append(config_key(config))
        searcher.on_trial_complete(trial_id, config, reward_of(config))
    assert len(set(seen)) == SIZE
    assert searcher.suggest(SIZE) is None
    best_config, best_reward = searcher.best()
    assert best_config == {"opt": "adam", "n": 3, "epochs": 3} and best_reward == pytest.approx(1.0)


def test_mode_min_picks_the_lowest_reward_as_best(name):
    searcher = make(name, mode="min")
    for trial_id in range(5):
        config = searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, config, reward_of(config))
    rewards = [r for _, _, r in searcher.results]
    assert searcher.best()[1] == min(rewards)


def test_state_round_trip_gives_the_identical_next_suggestion(name):
    searcher = make(name, seed=3)
    for trial_id in range(5):
        config = searcher.suggest(trial_id)
        if trial_id == 2:
            searcher.on_trial_error(trial_id, config)
        elif trial_id < 4:  # trial 4 stays pending across the round trip
            searcher.on_trial_complete(trial_id, config, reward_of(config))
    state = json.loads(json.dumps(searcher.state_dict()))  # must be JSON-serialisable
    restored = make(name, seed=3)
    restored.load_state_dict(state)
    assert restored.pending == searcher.pending
    for trial_id in (5, 6):
        assert restored.suggest(trial_id) == searcher.suggest(trial_id)


def test_load_state_dict_rejects_another_searchers_state():
    state = make("random").state_dict()
    with pytest.raises(ValueError, match="RandomSearcher"):
        make("grid").load_state_dict(state)


def test_errors_free_the_pending_slot_and_are_not_retried(name):
    searcher = make(name)
    failed = searcher.suggest(0)
    assert 0 in searcher.pending
    searcher.on_trial_error(0, failed)
    assert 0 not in searcher.pending
    later = []
    for trial_id in range(1, SIZE + 1):
        config = searcher.suggest(trial_id)
        if config is None:
            break
        later.append(config)
        searcher.on_trial_complete(trial_id, config, reward_of(config))
    assert failed not in later and len(later) == SIZE - 1


def test_pending_configs_are_never_suggested_twice(name):
    searcher = make(name)
    first = [searcher.suggest(i) for i in range(3)]
    for i, config in enumerate(first):
        searcher.on_trial_complete(i, config, reward_of(config))
    running = [searcher.suggest(i) for i in range(3, 9)]  # six parallel workers, nothing finished
    keys = [config_key(c) for c in first + running]
    assert len(set(keys)) == len(keys)
    assert set(searcher.pending) == set(range(3, 9))


def test_reusing_a_pending_trial_id_is_an_error(name):
    searcher = make(name)
    searcher.suggest(7)
    with pytest.raises(ValueError, match="already pending"):
        searcher.suggest(7)


def test_grid_order_is_the_space_grid_and_does_not_depend_on_the_seed():
    a = [make("grid", seed=0).suggest() for _ in range(1)]
    order = []
    searcher = make("grid", seed=5)
    while (config := searcher.suggest()) is not None:
        order.append(config)
    assert order == ag.compile_space(SPACE).grid(4) and order[0] == a[0]


def test_random_sequence_depends_only_on_the_seed():
    def run(seed):
        searcher = make("random", seed=seed)
        return [searcher.suggest() for _ in range(5)]

    assert run(1) == run(1) and run(1) != run(2)
