"""Balanced categorical choices in the prior draws of the random searcher and the GP's initial design."""
from __future__ import annotations

import math

import numpy as np
import pytest

import jaxgluon as ag
from jaxgluon.searcher import GPSearcher, RandomSearcher
from jaxgluon.searcher._balance import ChoiceBalance
from jaxgluon.space import compile_space
from jaxgluon.space.optimizer import SGD, Adam

NETS = ("lite0", "lite1", "lite2")
SPACE = {"net": ag.Categorical(*NETS), "opt": ag.Categorical("sgd", "adam"), "lr": ag.LogLinear(1e-4, 1e-1)}


@pytest.mark.parametrize("seed", range(8))
def test_every_round_of_suggestions_tries_each_choice_once(seed):
    searcher = RandomSearcher(SPACE, seed=seed)
    configs = [searcher.suggest(i) for i in range(12)]
    for start in range(0, 12, 3):
        assert sorted(c["net"] for c in configs[start:start + 3]) == sorted(NETS)
    for start in range(0, 12, 2):
        assert sorted(c["opt"] for c in configs[start:start + 2]) == ["adam", "sgd"]


def test_real_values_stay_prior_draws():
    searcher = RandomSearcher(SPACE, seed=3)
    u = np.sort([(math.log10(searcher.suggest(i)["lr"]) + 4) / 3 for i in range(600)])   # uniform on [0, 1]
    ks = np.max(np.abs(u - np.arange(1, len(u) + 1) / len(u)))
    assert ks < 1.63 / math.sqrt(len(u))     # Kolmogorov-Smirnov at the 1% level


def test_each_choice_keeps_its_marginal_probability():
    first = [RandomSearcher(SPACE, seed=s).suggest()["net"] for s in range(300)]
    counts = [first.count(n) for n in NETS]
    assert min(counts) > 70 and max(counts) < 130   # 100 expected each (binomial sd 8.2)


def test_nested_categoricals_balance_where_they_are_active():
    space = {"optimizer": ag.Optimizers([SGD(learning_rate=ag.LogLinear(1e-3, 1e-1), momentum=ag.Categorical(0.0, 0.9)),
                                         Adam(learning_rate=ag.LogLinear(1e-5, 1e-3))])}
    searcher = RandomSearcher(space, seed=0)
    configs = [searcher.suggest(i)["optimizer"] for i in range(16)]
    assert sum(o["name"] == "sgd" for o in configs) == 8
    momenta = [o["momentum"] for o in configs if o["name"] == "sgd"]
    assert sorted(momenta) == [0.0] * 4 + [0.9] * 4


def test_a_restored_searcher_continues_the_balance():
    searcher = RandomSearcher(SPACE, seed=5)
    for i in range(2):
        searcher.suggest(i)
    restored = RandomSearcher(SPACE, seed=5)
    restored.load_state_dict(searcher.state_dict())
    assert restored.suggest(2) == searcher.suggest(2)
    assert sorted(c["net"] for c in restored._suggested) == sorted(NETS)


def test_the_gp_initial_design_covers_every_net():
    searcher = GPSearcher(SPACE, seed=1, num_initial_random=3)
    assert sorted(searcher.suggest(i)["net"] for i in range(3)) == sorted(NETS)


@pytest.mark.parametrize("make", [lambda space: RandomSearcher(space, seed=2),
                                  lambda space: GPSearcher(space, seed=2, num_initial_random=1000)])
def test_both_searchers_draw_a_finite_space_to_its_last_config_then_stop(make):
    """Past 4 batches of 64 prior draws, the last unseen configs come from one large balanced batch
    (``Searcher._unseen_prior_draw``, which the random searcher and the GP's random suggestions share)."""
    space = {"a": ag.Categorical(*range(30)), "b": ag.Categorical("x", "y", "z")}
    searcher = make(space)
    drawn = [searcher.suggest(i) for i in range(90)]
    assert len({(c["a"], c["b"]) for c in drawn}) == 90
    assert searcher.suggest(90) is None


def test_order_puts_the_least_drawn_choices_first_and_keeps_the_prior_order_on_ties():
    space = compile_space(SPACE)
    balance = ChoiceBalance(space)
    for config in ({"net": "lite0", "opt": "sgd", "lr": 0.01}, {"net": "lite1", "opt": "sgd", "lr": 0.01}):
        balance.add(space.encode(config))
    cube = space.encode_batch([{"net": n, "opt": o, "lr": 0.01} for n in NETS for o in ("sgd", "adam")])
    assert balance.excess(cube).tolist() == [3, 1, 3, 1, 2, 0]   # net counts [1, 1, 0], opt [2, 0]
    assert balance.order(cube).tolist() == [5, 1, 3, 4, 0, 2]
