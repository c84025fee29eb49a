"""Unit tests of the pure GP math in jaxgluon.searcher._gp."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgluon.searcher import _gp
from jaxgluon.searcher._gp.acquisition import select_starts
from jaxgluon.searcher._gp.candidates import categorical_options, continuous_mask


@pytest.fixture(autouse=True)
def _x64():
    with _gp.gp_runtime():
        yield


def _params(dim: int, lengthscale: float, noise: float = 1e-8) -> _gp.GPParams:
    return _gp.GPParams(jnp.full((dim,), jnp.log(lengthscale)), jnp.array(0.0), jnp.log(jnp.array(noise)), jnp.array(0.0))


def _padded(X: np.ndarray, y: np.ndarray, rows: int):
    n, d = X.shape
    Xp, yp = np.full((rows, d), 0.5), np.zeros(rows)
    Xp[:n], yp[:n] = X, y
    return jnp.asarray(Xp), jnp.asarray(yp), jnp.asarray(np.arange(rows) < n)


def test_posterior_mean_interpolates_noise_free_data_and_ignores_padding():
    rng = np.random.default_rng(0)
    X = rng.random((10, 2))
    y = np.sin(5 * X[:, 0]) + X[:, 1] ** 2
    Xp, yp, mask = _padded(X, y, 16)
    post = _gp.posterior(_params(2, 0.4), Xp, yp, mask)
    mean, var = _gp.predict(post, jnp.asarray(X))
    assert bool(post.ok)
    np.testing.assert_allclose(mean, y, atol=1e-4)
    assert float(jnp.max(var)) < 1e-4
    # padding rows (X = 0.5, y = 0) must not act as data: a far-from-data point's variance stays near the prior's
    unpadded = _gp.posterior(_params(2, 0.4), jnp.asarray(X), jnp.asarray(y), jnp.ones(10, bool))
    q = jnp.asarray([[0.5, 0.5], [0.9, 0.1]])
    np.testing.assert_allclose(_gp.predict(post, q)[0], _gp.predict(unpadded, q)[0], atol=1e-6)
    np.testing.assert_allclose(_gp.predict(post, q)[1], _gp.predict(unpadded, q)[1], atol=1e-6)


def test_log_marginal_likelihood_ignores_padding():
    rng = np.random.default_rng(1)
    X, y = rng.random((7, 2)), rng.normal(size=7)
    a = _gp.log_marginal_likelihood(_params(2, 0.3, 1e-2), jnp.asarray(X), jnp.asarray(y), jnp.ones(7, bool))
    b = _gp.log_marginal_likelihood(_params(2, 0.3, 1e-2), *_padded(X, y, 16))
    np.testing.assert_allclose(a, b, rtol=1e-8)


def test_expected_improvement_nonnegative_and_zero_without_variance():
    rng = np.random.default_rng(2)
    mean, var = jnp.asarray(rng.normal(size=200)), jnp.asarray(rng.random(200) * 2.0)
    ei = _gp.expected_improvement(mean, var, jnp.array(0.5))
    assert bool(jnp.all(ei >= 0.0))
    # a point known exactly below the incumbent improves nothing
    assert float(_gp.expected_improvement(jnp.array([0.0]), jnp.array([1e-12]), jnp.array(0.5))[0]) < 1e-12
    # at observed data (zero posterior variance) EI w.r.t. the best observation is ~0
    X = rng.random((8, 2))
    y = np.cos(4 * X[:, 0])
    post = _gp.posterior(_params(2, 0.5), *_padded(X, y, 16))
    m, v = _gp.predict(post, jnp.asarray(X))
    assert float(jnp.max(_gp.expected_improvement(m, v, jnp.array(y.max())))) < 1e-3


def test_standard_log_ei_is_stable_and_matches_the_closed_form():
    z = jnp.linspace(-4.0, 4.0, 41)
    closed = jnp.log(z * jax.scipy.stats.norm.cdf(z) + jax.scipy.stats.norm.pdf(z))
    np.testing.assert_allclose(_gp.standard_log_ei(z), closed, rtol=1e-9)
    tail = _gp.standard_log_ei(jnp.array([-4.99, -5.01, -40.0, -1e3, -1e5]))
    assert bool(jnp.all(jnp.isfinite(tail))) and bool(jnp.all(jnp.diff(tail) < 0))
    assert abs(float(tail[0] - tail[1])) < 0.2  # continuous across the branch switch
    grads = jax.grad(lambda v: _gp.standard_log_ei(v).sum())(jnp.array([-1e3, -40.0, -5.0, 0.0, 5.0]))
    assert bool(jnp.all(jnp.isfinite(grads))) and bool(jnp.all(grads > 0))


def test_tied_lengthscales_share_one_value_per_one_hot_block():
    tie = _gp.tie_matrix(5, ((1, 2, 3),))
    params = _params(5, 1.0)._replace(log_lengthscales=jnp.log(jnp.array([0.5, 1.0, 2.0, 4.0, 3.0])))
    tied = jnp.exp(_gp.tie_lengthscales(params, tie).log_lengthscales)
    np.testing.assert_allclose(tied, [0.5, 2.0, 2.0, 2.0, 3.0], rtol=1e-12)


def test_fit_recovers_a_known_lengthscale_roughly():
    """y varies along x0 with lengthscale 0.2 and not at all along x1: ARD must find both."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.random((32, 2)))
    K = _gp.matern52(X[:, :1], X[:, :1], jnp.array([0.2]), jnp.array(1.0)) + 1e-6 * jnp.eye(32)
    relevant, irrelevant = [], []
    for i in range(3):
        y = jnp.linalg.cholesky(K) @ jax.random.normal(jax.random.key(i), (32,))
        y = (y - y.mean()) / y.std()
        starts = _gp.initial_params(2, 3, jax.random.key(i))  # the shapes GPSearcher uses on Branin: shared compile
        params = _gp.fit_hyperparameters(X, y, jnp.ones(32, bool), starts, _gp.tie_matrix(2, ()))
        relevant.append(float(jnp.exp(params.log_lengthscales[0])))
        irrelevant.append(float(jnp.exp(params.log_lengthscales[1])))
    assert 0.1 < np.median(relevant) < 0.4, relevant
    assert np.median(irrelevant) > 3 * np.median(relevant), (relevant, irrelevant)


def test_fit_with_inactive_starts_is_the_fit_from_the_active_start_alone():
    rng = np.random.default_rng(6)
    X = jnp.asarray(rng.random((32, 2)))
    y = jnp.sin(6.0 * X[:, 0])
    y = (y - y.mean()) / y.std()
    mask, tie = jnp.ones(32, bool), _gp.tie_matrix(2, ())
    starts = _gp.initial_params(2, 3, jax.random.key(7))  # the shapes GPSearcher uses on Branin: shared compile
    alone = _gp.fit_hyperparameters(X, y, mask, jax.tree.map(lambda a: jnp.stack([a[1]] * 3), starts), tie)
    warm_only = _gp.fit_hyperparameters(X, y, mask, starts, tie, active=jnp.array([False, True, False]))
    for a, b in zip(alone, warm_only):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    untouched = _gp.fit_hyperparameters(X, y, mask, starts, tie, active=jnp.zeros(3, bool))  # nothing runs
    for a, b in zip(untouched, jax.tree.map(lambda a: a[0], starts)):
        np.testing.assert_array_equal(a, b)


def test_cholesky_of_duplicated_points_falls_back_to_jitter():
    X = np.repeat(np.array([[0.2, 0.7]]), 6, axis=0)
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])  # contradictory, noise-free: singular without jitter
    params = _params(2, 0.5, noise=1e-12)
    post = _gp.posterior(params, *_padded(X, y, 16))
    mean, var = _gp.predict(post, jnp.asarray([[0.2, 0.7], [0.9, 0.9]]))
    assert bool(post.ok) and bool(jnp.all(jnp.isfinite(mean))) and bool(jnp.all(jnp.isfinite(var)))


def test_maximize_log_ei_keeps_one_hots_and_improves_on_the_candidates():
    groups = ((1, 2, 3),)
    rng = np.random.default_rng(3)
    cont = continuous_mask(4, groups)
    X = np.zeros((12, 4))
    X[:, 0] = rng.random(12)
    X[np.arange(12), 1 + rng.integers(3, size=12)] = 1.0
    y = -((X[:, 0] - 0.3) ** 2) + X[:, 3]  # best: x0 = 0.3 and the third choice
    y = (y - y.mean()) / y.std()
    post = _gp.posterior(_params(4, 0.5, 1e-4), *_padded(X, y, 16))
    cands = np.zeros((256, 4))
    cands[:, 0] = rng.random(256)
    cands[np.arange(256), 1 + rng.integers(3, size=256)] = 1.0
    masks, onehots = categorical_options(4, groups)
    anchors = X[np.argsort(-y)[:3]]
    xs, values = _gp.maximize_log_ei(post, jnp.array(y.max()), jnp.asarray(cands), jnp.asarray(anchors), jax.random.key(0),
                                     jnp.asarray(cont), jnp.asarray(masks), jnp.asarray(onehots), num_steps=60, num_rounds=2)
    xs = np.asarray(xs)
    assert xs.shape == (16 + 3, 4)
    np.testing.assert_array_equal(np.sort(xs[:, 1:4], axis=1), np.tile([0.0, 0.0, 1.0], (19, 1)))
    assert abs(xs[0, 0] - 0.3) < 0.15 and xs[0, 3] == 1.0  # near the optimum, on the best choice
    assert float(values[0]) >= float(jnp.max(_gp.score_log_ei(post, jnp.asarray(cands), jnp.array(y.max())))) - 1e-9
    assert bool(jnp.all(jnp.diff(values) <= 0))


def test_maximize_log_ei_finds_the_global_maximum_precisely():
    """Two EI peaks, the higher one narrow: the local searches must reach a dense grid's maximum, to ~1e-3."""
    X = np.array([[0.1, 0.1], [0.15, 0.9], [0.5, 0.5], [0.9, 0.2], [0.85, 0.8], [0.3, 0.6], [0.62, 0.72], [0.7, 0.3]])
    y = np.array([0.0, 0.1, -0.2, 0.9, 0.2, 0.3, 0.95, -0.1])
    post = _gp.posterior(_params(2, 0.15, 1e-6), *_padded(X, y, 16))
    best = jnp.array(y.max())
    g = np.linspace(0.0, 1.0, 401)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    grid_scores = np.asarray(_gp.score_log_ei(post, jnp.asarray(grid), best))
    top = grid[np.argmax(grid_scores)]
    cands = np.random.default_rng(0).random((256, 2))
    anchors = X[np.argsort(-y)[[0, 0, 1]]] + 1e-3
    none = jnp.zeros((0, 2))
    for seed in range(3):
        xs, values = _gp.maximize_log_ei(post, best, jnp.asarray(cands), jnp.asarray(anchors), jax.random.key(seed),
                                         jnp.ones(2), none, none, num_steps=60)
        assert float(values[0]) >= grid_scores.max() - 1e-3, (float(values[0]), grid_scores.max())
        assert np.linalg.norm(np.asarray(xs[0]) - top) < 0.02


def test_select_starts_takes_the_best_then_draws_in_proportion_to_ei():
    scores = jnp.concatenate([jnp.array([0.0, -jnp.inf, jnp.nan]), jnp.full(97, -3.0)])
    picks = [np.asarray(select_starts(scores, 8, jax.random.key(i))) for i in range(50)]
    for idx in picks:
        assert idx[0] == 0 and len(set(idx.tolist())) == 8
        assert 1 not in idx and 2 not in idx  # a non-finite score is never a start
    # the 97 equal scores share the other draws evenly: no fixed subset (a top-k would always pick the same)
    assert len(set(np.concatenate([p[1:] for p in picks]).tolist())) > 80
    weighted = jnp.concatenate([jnp.array([0.0]), jnp.full(50, jnp.log(10.0)) - 5.0, jnp.full(50, -5.0)])
    counts = np.zeros(101)
    for i in range(200):
        counts[np.asarray(select_starts(weighted, 2, jax.random.key(100 + i)))[1]] += 1
    assert counts[1:51].sum() > 4 * counts[51:].sum()  # 10x the EI: drawn ~10x as often


def test_params_json_round_trip_is_exact():
    params = _gp.initial_params(3, 2, jax.random.key(5))
    one = jax.tree.map(lambda a: a[1], params)
    back = _gp.params_from_json(_gp.params_to_json(one))
    for a, b in zip(one, back):
        np.testing.assert_array_equal(a, b)
