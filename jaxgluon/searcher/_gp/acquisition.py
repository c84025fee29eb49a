"""Expected improvement (in log space) and its maximisation over a mixed continuous / one-hot unit cube.

All functions are pure and jit-compiled; shapes are static per call site (fixed candidate counts), so the
compiled code is reused across suggestions.

    import jax.numpy as jnp
    standard_log_ei(jnp.array([-40.0, 0.0, 3.0]))   # finite everywhere, increasing
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from jaxgluon.searcher._gp.model import Posterior, _clip, predict

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_HALF_PI = math.sqrt(math.pi / 2)
_SQRT_HALF = math.sqrt(0.5)


@jax.jit
def standard_log_ei(z: jax.Array) -> jax.Array:
    """``log E[max(0, x + z)]`` for ``x ~ N(0, 1)``, stable for very negative ``z`` (Ament et al. 2023, eq. 9)."""
    direct = z > -5.0
    zd = jnp.where(direct, z, 0.0)
    log_direct = jnp.log(zd * jax.scipy.special.ndtr(zd) + jnp.exp(-0.5 * zd**2 - _LOG_SQRT_2PI))
    zs = jnp.clip(jnp.where(direct, -10.0, z), -1e6, None)
    tail = jnp.log1p(_SQRT_HALF_PI * zs * jax.scipy.special.erfcx(-_SQRT_HALF * zs))
    # far tail: 1 + s z erfcx(-z/sqrt2) -> 1/z^2; use the asymptote where the difference loses all precision
    tail = jnp.where(zs < -1e4, -2.0 * jnp.log(-zs), tail)
    log_small = -0.5 * zs**2 - _LOG_SQRT_2PI + tail
    return jnp.where(direct, log_direct, log_small)


@jax.jit
def log_expected_improvement(mean: jax.Array, var: jax.Array, best: jax.Array) -> jax.Array:
    """log EI for maximisation: ``log E[max(0, f - best)]`` with ``f ~ N(mean, var)``."""
    sigma = jnp.sqrt(var)
    return standard_log_ei((mean - best) / sigma) + jnp.log(sigma)


@jax.jit
def expected_improvement(mean: jax.Array, var: jax.Array, best: jax.Array) -> jax.Array:
    """EI for maximisation (non-negative)."""
    return jnp.exp(log_expected_improvement(mean, var, best))


def _score(post: Posterior, X: jax.Array, best: jax.Array) -> jax.Array:
    mean, var = predict(post, X)
    return log_expected_improvement(mean, var, best)


def _gradient_ascent(post: Posterior, best: jax.Array, X: jax.Array, cont_mask: jax.Array, num_steps: int) -> jax.Array:
    """Projected Adam ascent of log EI on the continuous dims of every row of ``X`` (one-hot dims stay fixed).

    Steps are taken in lengthscale units (``x = z * lengthscale`` per dim, capped at 1): the preconditioning that
    equalises the curvature of the acquisition across dims. The step size decays geometrically from 0.2 to 2e-4
    lengthscales, so the search both travels far and ends up precise; the best point seen on each row's path is
    returned (log EI never gets worse than at the start).
    """
    p = _clip(post.params)
    scale = jnp.clip(jnp.exp(p.log_lengthscales), 1e-3, 1.0) * cont_mask
    opt = optax.adam(optax.exponential_decay(0.2, max(num_steps, 1), 1e-3))

    def value(x: jax.Array) -> jax.Array:
        return _score(post, x[None, :], best)[0]

    value_and_grad = jax.vmap(jax.value_and_grad(value))

    def step(_: int, carry: tuple) -> tuple:
        x, state, best_x, best_v = carry
        v, g = value_and_grad(x)
        v = jnp.where(jnp.isfinite(v), v, -jnp.inf)
        improved = v > best_v
        best_x = jnp.where(improved[:, None], x, best_x)
        best_v = jnp.where(improved, v, best_v)
        g = jnp.where(jnp.isfinite(g), g, 0.0) * scale  # gradient w.r.t. z
        updates, state = opt.update(-g, state, x)
        return jnp.clip(x + updates * scale, 0.0, 1.0), state, best_x, best_v

    init = (X, opt.init(X), X, jnp.full(X.shape[0], -jnp.inf, dtype=X.dtype))
    x, _, best_x, best_v = jax.lax.fori_loop(0, num_steps, step, init)
    last = _score(post, x, best)
    return jnp.where((jnp.isfinite(last) & (last > best_v))[:, None], x, best_x)


def _categorical_sweep(post: Posterior, best: jax.Array, X: jax.Array, group_masks: jax.Array, onehots: jax.Array) -> jax.Array:
    """For every row, try every single categorical change (one group set to another choice); keep the best."""
    # [K, M, d]: row k with option m applied
    variants = X[:, None, :] * (1.0 - group_masks[None]) + onehots[None]
    K, M, d = variants.shape
    scores = _score(post, variants.reshape(K * M, d), best).reshape(K, M)
    current = _score(post, X, best)
    pick = jnp.argmax(scores, axis=1)
    better = scores[jnp.arange(K), pick] > current
    return jnp.where(better[:, None], variants[jnp.arange(K), pick], X)


def select_starts(scores: jax.Array, num: int, key: jax.Array) -> jax.Array:
    """Indices of ``num`` starting points: the best score, then a draw without replacement with probability
    proportional to ``exp(score)`` (EI itself, for log-EI scores; Gumbel top-k), as Optuna's roulette does.

    Taking only the top scores would start every local search in the same basin (usually next to the incumbent);
    the draw keeps the far-away regions whose acquisition is nearly as high in the running.
    """
    scores = jnp.where(jnp.isfinite(scores), scores, -jnp.inf)
    gumbel = jax.random.gumbel(key, scores.shape, dtype=scores.dtype)
    keyed = jnp.where(jnp.isfinite(scores), scores + gumbel, -jnp.inf)
    keyed = keyed.at[jnp.argmax(scores)].set(jnp.inf)
    return jax.lax.top_k(keyed, num)[1]


@jax.jit(static_argnames=("num_refine", "num_steps", "num_rounds"))
def maximize_log_ei(
    post: Posterior,
    best: jax.Array,
    candidates: jax.Array,
    anchors: jax.Array,
    key: jax.Array,
    cont_mask: jax.Array,
    group_masks: jax.Array,
    onehots: jax.Array,
    num_refine: int = 16,
    num_steps: int = 100,
    num_rounds: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """Maximise log EI by local searches from ``num_refine`` starts among the ``candidates`` plus every row of
    ``anchors`` (the best observed points: refining from there is what makes the final answer precise).

    The candidate starts are the best-scoring candidate and a draw proportional to EI (:func:`select_starts`).
    Each search alternates ``num_rounds`` times between gradient ascent on the continuous dims (``cont_mask`` 1)
    and a sweep over single categorical changes. A categorical option ``m`` is described by ``group_masks[m]``
    (1 on its group's one-hot dims) and ``onehots[m]`` (1 on the choice's dim); pass arrays with 0 rows when
    there are no categoricals, and ``num_steps=0`` when there are no continuous dims. One-hot blocks therefore
    always stay exact one-hots: categoricals are never treated as ordered numbers.

    Returns the refined points sorted by log EI (best first) and their log EI, shapes ``[num_refine + A, d]``
    and ``[num_refine + A]`` (``A`` anchors).
    """
    scores = _score(post, candidates, best)
    X = jnp.concatenate([candidates[select_starts(scores, num_refine, key)], anchors])
    for _ in range(num_rounds):
        if num_steps > 0:
            X = _gradient_ascent(post, best, X, cont_mask, num_steps)
        if group_masks.shape[0] > 0:
            X = _categorical_sweep(post, best, X, group_masks, onehots)
    final = _score(post, X, best)
    final = jnp.where(jnp.isfinite(final), final, -jnp.inf)
    order = jnp.argsort(-final)
    return X[order], final[order]


score_log_ei = jax.jit(_score)
score_log_ei.__doc__ = "log EI of every row of ``X`` under ``post`` for incumbent ``best`` (jit-compiled)."
