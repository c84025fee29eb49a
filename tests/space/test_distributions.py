"""The prior: log-uniform has equal mass per decade, linear is uniform, choices are equally likely.

Each goodness-of-fit test must not reject at ALPHA, and each has a power check: the same statistic rejects the
wrong distribution by many orders of magnitude, so the test could fail if sampling broke.
"""
from __future__ import annotations

import collections
import math

import jax
import numpy as np
import pytest
from scipy import stats

import jaxgluon as ag
from jaxgluon.space import compile_space

ALPHA = 1e-3
N = 20_000


def draw(space, seed: int = 0, n: int = N) -> list:
    return compile_space(space).sample_batch(jax.random.key(seed), n)


def test_log_uniform_puts_equal_mass_per_decade():
    x = np.array(draw(ag.LogLinear(1e-4, 1e-1)))
    assert x.min() >= 1e-4 and x.max() <= 1e-1
    decades = np.histogram(np.log10(x), bins=[-4, -3, -2, -1])[0]
    assert stats.chisquare(decades).pvalue > ALPHA
    assert stats.kstest(np.log10(x), stats.uniform(loc=-4, scale=3).cdf).pvalue > ALPHA
    assert stats.kstest(x, stats.uniform(loc=1e-4, scale=1e-1 - 1e-4).cdf).pvalue < 1e-12   # power


def test_linear_is_uniform():
    x = np.array(draw(ag.Linear(0.85, 0.95), seed=1))
    assert x.min() >= 0.85 and x.max() <= 0.95
    assert stats.kstest(x, stats.uniform(loc=0.85, scale=0.1).cdf).pvalue > ALPHA
    skewed = np.array(draw(ag.Linear(0.001, 1.0), seed=2))
    assert stats.kstest(skewed, stats.uniform(loc=0.001, scale=0.999).cdf).pvalue > ALPHA
    assert stats.kstest(skewed, stats.loguniform(0.001, 1.0).cdf).pvalue < 1e-12        # power


def chi_square_pvalue(samples: list, expected: dict) -> float:
    counts = collections.Counter(samples)
    assert set(counts) <= set(expected), set(counts) - set(expected)
    keys = list(expected)
    observed = np.array([counts[k] for k in keys], dtype=float)
    probs = np.array([expected[k] for k in keys], dtype=float)
    return stats.chisquare(observed, probs / probs.sum() * observed.sum()).pvalue


@pytest.mark.parametrize("space, choices", [
    (ag.Categorical("a", "b", "c", "d"), ["a", "b", "c", "d"]),
    (ag.Bool(), [False, True]),
    (ag.Nets(["resnet18_v1", "resnet34_v1", "resnet50_v1"]), ["resnet18_v1", "resnet34_v1", "resnet50_v1"]),
])
def test_categorical_frequencies_are_uniform(space, choices):
    samples = draw(space, seed=3)
    assert chi_square_pvalue(samples, {c: 1 for c in choices}) > ALPHA
    skew = {c: 1 + (i == 0) * 0.1 for i, c in enumerate(choices)}       # 10% more mass on the first choice
    assert chi_square_pvalue(samples, skew) < ALPHA                      # power


def test_int_is_uniform_over_inclusive_bounds():
    samples = draw(ag.Int(0, 9), seed=4)
    assert chi_square_pvalue(samples, {v: 1 for v in range(10)}) > ALPHA
    assert chi_square_pvalue(samples, {v: 1 + 0.1 * (v == 9) for v in range(10)}) < ALPHA


def test_log_int_follows_the_log_uniform_cells():
    lower, upper = 1, 64
    samples = draw(ag.Int(lower, upper, log=True), seed=5)
    cell = {v: math.log(v + 0.5) - math.log(v - 0.5) for v in range(lower, upper + 1)}
    assert chi_square_pvalue(samples, cell) > ALPHA
    assert chi_square_pvalue(samples, {v: 1 for v in cell}) < 1e-12                    # power: not uniform


def test_conditional_branches_are_equally_likely_and_their_priors_hold():
    configs = draw(ag.Optimizers(["sgd", "adam", "adamw"]), seed=6)
    names = [c["name"] for c in configs]
    assert chi_square_pvalue(names, {"sgd": 1, "adam": 1, "adamw": 1}) > ALPHA
    momentum = np.array([c["momentum"] for c in configs if c["name"] == "sgd"])
    assert stats.kstest(momentum, stats.uniform(loc=0.85, scale=0.1).cdf).pvalue > ALPHA
    lr = np.array([c["learning_rate"] for c in configs if c["name"] == "adam"])
    assert stats.kstest(np.log10(lr), stats.uniform(loc=-5, scale=3).cdf).pvalue > ALPHA


def test_sample_encoded_is_uniform_in_the_cube():
    cs = compile_space({"lr": ag.LogLinear(1e-5, 1e-1), "bs": ag.Int(8, 256, log=True), "m": ag.Linear(0, 1)})
    x = np.asarray(cs.sample_encoded(jax.random.key(7), N))
    for column in x.T:
        assert stats.kstest(column, "uniform").pvalue > ALPHA
