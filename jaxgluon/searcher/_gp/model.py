"""Gaussian-process regression as pure, jit-compiled JAX functions.

The model: constant mean, Matern-5/2 kernel with one lengthscale per input dimension (ARD) on the unit cube,
and a learned Gaussian noise variance. Hyperparameters are fitted by maximising the log marginal likelihood plus
log priors (a MAP fit) with L-BFGS from several starting points (``jax.lax.map``).

Observations are padded to a fixed size with a boolean ``mask`` so that one compiled function serves every
data count up to that size: a padded row gets a unit diagonal and no covariance with anything, and its target is
the mean, so it adds exactly zero to the likelihood and to the posterior.

    import jax, jax.numpy as jnp
    with gp_runtime():   # float64, single-threaded BLAS (see runtime.py)
        X = jnp.linspace(0, 1, 8)[:, None]; y = jnp.sin(6 * X[:, 0]); mask = jnp.ones(8, bool)
        params = fit_hyperparameters(X, y, mask, initial_params(1, 4, jax.random.key(0)))
        post = posterior(params, X, y, mask)
        mean, var = predict(post, X)   # mean ~= y, var ~= 0
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

MIN_NOISE_VAR = 1e-8  # in standardised units; 1e-6 blurred the last digits of a deterministic objective's optimum
_LOG_LS_BOUNDS = (jnp.log(1e-3), jnp.log(1e3))
_LOG_SIGNAL_BOUNDS = (jnp.log(1e-3), jnp.log(1e2))
_LOG_NOISE_BOUNDS = (jnp.log(1e-9), jnp.log(10.0))
_JITTERS = (0.0, 1e-6, 1e-4, 1e-2)


class GPParams(NamedTuple):
    """Unconstrained kernel hyperparameters (a pytree; a leading axis batches restarts)."""

    log_lengthscales: jax.Array  # [d]
    log_signal_var: jax.Array  # []
    log_noise_var: jax.Array  # [], noise variance = MIN_NOISE_VAR + exp(log_noise_var)
    mean: jax.Array  # []


class Posterior(NamedTuple):
    """Everything needed to predict: the data, the hyperparameters, the Cholesky factor and weights."""

    params: GPParams
    X: jax.Array  # [n, d]
    mask: jax.Array  # [n] bool
    chol: jax.Array  # [n, n] lower Cholesky factor of K + noise
    alpha: jax.Array  # [n] (K + noise)^-1 (y - mean)
    ok: jax.Array  # [] bool, False when no jitter made the factorisation finite


def _clip(params: GPParams) -> GPParams:
    return GPParams(
        jnp.clip(params.log_lengthscales, *_LOG_LS_BOUNDS),
        jnp.clip(params.log_signal_var, *_LOG_SIGNAL_BOUNDS),
        jnp.clip(params.log_noise_var, *_LOG_NOISE_BOUNDS),
        jnp.clip(params.mean, -10.0, 10.0),
    )


def matern52(X1: jax.Array, X2: jax.Array, lengthscales: jax.Array, signal_var: jax.Array) -> jax.Array:
    """Matern-5/2 ARD kernel matrix ``k(X1[i], X2[j])``."""
    a, b = X1 / lengthscales, X2 / lengthscales
    sq = jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2.0 * a @ b.T
    # sqrt has an infinite derivative at 0: keep the argument away from it (the kernel is flat there anyway).
    r = jnp.sqrt(jnp.maximum(sq, 1e-12)) * jnp.sqrt(5.0)
    return signal_var * (1.0 + r + r**2 / 3.0) * jnp.exp(-r)


def _masked_cov(params: GPParams, X: jax.Array, mask: jax.Array) -> jax.Array:
    p = _clip(params)
    K = matern52(X, X, jnp.exp(p.log_lengthscales), jnp.exp(p.log_signal_var))
    m = mask.astype(K.dtype)
    noise = MIN_NOISE_VAR + jnp.exp(p.log_noise_var)
    return K * m[:, None] * m[None, :] + jnp.diag(noise * m + (1.0 - m))


def _stable_cholesky(A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cholesky with escalating jitter; returns ``(L, ok)``, the first finite factor."""
    eye = jnp.eye(A.shape[0], dtype=A.dtype)
    scale = jnp.mean(jnp.diag(A))
    factors = [jnp.linalg.cholesky(A + j * scale * eye) for j in _JITTERS]
    L = factors[-1]
    for F in reversed(factors[:-1]):
        L = jnp.where(jnp.all(jnp.isfinite(F)), F, L)
    return L, jnp.all(jnp.isfinite(L))


@jax.jit
def log_marginal_likelihood(params: GPParams, X: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """Log p(y | X, params) over the unmasked rows."""
    p = _clip(params)
    A = _masked_cov(p, X, mask)
    L = jnp.linalg.cholesky(A + 1e-8 * jnp.eye(A.shape[0], dtype=A.dtype))
    r = jnp.where(mask, y - p.mean, 0.0)
    w = jax.scipy.linalg.solve_triangular(L, r, lower=True)
    n = jnp.sum(mask)
    return -0.5 * jnp.sum(w**2) - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * n * jnp.log(2 * jnp.pi)


def log_prior(params: GPParams) -> jax.Array:
    """Log prior (up to a constant) for targets standardised to mean 0, variance 1 on the unit cube.

    Lengthscales: ``-0.1 * (l**2 + 1 / l**2)`` per dim (Optuna's GPSampler prior; mode at 1, the cube's width),
    which rules out both a lengthscale far below the cube's scale (a GP that fits ripples as signal: white
    noise to the acquisition, e.g. on Ackley) and one far above it (a dim declared irrelevant from a few points,
    never to be explored again: the trap of Hartmann6's wide second basin). Signal variance LogNormal(0, 1),
    noise variance LogNormal(-6, 2) (small but learnable), mean Normal(0, 1).
    """
    l2 = jnp.exp(2.0 * params.log_lengthscales)
    lp = -0.1 * jnp.sum(l2 + 1.0 / l2)
    lp += -0.5 * params.log_signal_var**2
    lp += -0.5 * ((params.log_noise_var + 6.0) / 2.0) ** 2
    lp += -0.5 * params.mean**2
    return lp


def tie_lengthscales(params: GPParams, tie: jax.Array) -> GPParams:
    """Share lengthscales between dims: ``log_lengthscales <- tie @ log_lengthscales`` (``tie``: ``[d, d]``).

    With ``tie`` averaging over each one-hot block, a categorical gets one lengthscale, so what the data say
    about switching between the choices seen so far also applies to the choices not yet tried.
    """
    return params._replace(log_lengthscales=tie @ params.log_lengthscales)


def tie_matrix(dim: int, groups: tuple[tuple[int, ...], ...]) -> jax.Array:
    """The ``tie`` matrix that averages the log lengthscales within each group (identity elsewhere)."""
    tie = jnp.eye(dim)
    for dims in groups:
        idx = jnp.asarray(dims)
        tie = tie.at[jnp.ix_(idx, idx)].set(1.0 / len(dims))
    return tie


def _objective(params: GPParams, X: jax.Array, y: jax.Array, mask: jax.Array, tie: jax.Array | None = None) -> jax.Array:
    if tie is not None:
        params = tie_lengthscales(params, tie)
    value = -(log_marginal_likelihood(params, X, y, mask) + log_prior(params)) / jnp.maximum(jnp.sum(mask), 1)
    return jnp.where(jnp.isfinite(value), value, 1e10)


def initial_params(dim: int, num_restarts: int, key: jax.Array | None = None) -> GPParams:
    """``num_restarts`` starting points (leading axis): one at the prior's centre, the rest drawn around it."""
    mu_ls = jnp.sqrt(2.0) + 0.5 * jnp.log(dim) - 1.5  # ~sqrt(dim): a smooth start, from which short scales grow
    centre = GPParams(jnp.full((dim,), mu_ls), jnp.array(0.0), jnp.array(-6.0), jnp.array(0.0))
    batch = jax.tree.map(lambda a: jnp.broadcast_to(a, (num_restarts,) + a.shape), centre)
    if key is None or num_restarts == 1:
        return batch
    k1, k2, k3 = jax.random.split(key, 3)
    noise = GPParams(
        jax.random.normal(k1, (num_restarts, dim)) * 1.0,
        jax.random.normal(k2, (num_restarts,)) * 0.5,
        jax.random.normal(k3, (num_restarts,)) * 2.0,
        jnp.zeros((num_restarts,)),
    )
    noise = jax.tree.map(lambda a: a.at[0].set(0.0), noise)
    return jax.tree.map(jnp.add, batch, noise)


def _lbfgs(
    params: GPParams, X: jax.Array, y: jax.Array, mask: jax.Array, tie: jax.Array, num_steps: int,
    active: jax.Array | bool = True,
) -> tuple[GPParams, jax.Array, jax.Array]:
    """L-BFGS for at most ``num_steps`` steps; stops early once the objective or the gradient stops moving.

    With ``active`` False it takes no step and reports an infinite objective (a restart switched off).
    """

    def f(p: GPParams) -> jax.Array:
        return _objective(p, X, y, mask, tie)

    solver = optax.lbfgs(memory_size=10, linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=10))
    value_and_grad = optax.value_and_grad_from_state(f)

    def cond(carry: tuple) -> jax.Array:
        i, _, _, _, done = carry
        return (i < num_steps) & ~done

    def body(carry: tuple) -> tuple:
        i, p, state, previous, _ = carry
        value, grad = value_and_grad(p, state=state)
        grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        updates, new_state = solver.update(grad, state, p, value=value, grad=grad, value_fn=f)
        new_p = _clip(optax.apply_updates(p, updates))
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(new_p)]))
        grad_norm = optax.tree_utils.tree_norm(grad)
        done = ~finite | (jnp.abs(previous - value) < 1e-5 * (1.0 + jnp.abs(value))) | (grad_norm < 1e-3)
        p, state = jax.lax.cond(finite, lambda: (new_p, new_state), lambda: (p, state))
        return i + 1, p, state, value, done

    init = (jnp.array(0), params, solver.init(params), jnp.array(jnp.inf, dtype=X.dtype), ~jnp.asarray(active))
    steps, params, _, _, _ = jax.lax.while_loop(cond, body, init)
    return params, jnp.where(active, f(params), jnp.inf), steps


@jax.jit(static_argnames=("num_steps",))
def fit_hyperparameters(
    X: jax.Array, y: jax.Array, mask: jax.Array, starts: GPParams, tie: jax.Array | None = None, num_steps: int = 50,
    active: jax.Array | None = None,
) -> GPParams:
    """MAP hyperparameters: L-BFGS from every start in ``starts`` (leading axis), best objective wins.

    ``active`` (bool, one per start; default all) switches starts off without a new compilation: a warm start
    alone is several times cheaper than the full set of restarts on a large data set.

    ``y`` should be standardised (mean 0, variance 1 over the unmasked rows); padded rows are ignored.
    ``tie`` (see :func:`tie_matrix`) shares lengthscales within one-hot blocks; the result is already tied.
    """
    if tie is None:
        tie = jnp.eye(X.shape[1], dtype=X.dtype)
    # lax.map, not vmap: a batched Cholesky does not reach LAPACK, and batched while loops run every lane to the
    # longest; sequential restarts compiled ~4x faster and ran >10x faster on CPU.
    if active is None:
        active = jnp.ones(jax.tree.leaves(starts)[0].shape[0], bool)
    fitted, values, _ = jax.lax.map(lambda pa: _lbfgs(pa[0], X, y, mask, tie, num_steps, pa[1]), (starts, active))
    values = jnp.where(jnp.isfinite(values), values, jnp.inf)
    best = jnp.argmin(values)
    return tie_lengthscales(jax.tree.map(lambda a: a[best], fitted), tie)


@jax.jit
def posterior(params: GPParams, X: jax.Array, y: jax.Array, mask: jax.Array) -> Posterior:
    """Condition the GP on the unmasked rows of ``(X, y)``."""
    A = _masked_cov(params, X, mask)
    L, ok = _stable_cholesky(A)
    r = jnp.where(mask, y - _clip(params).mean, 0.0)
    alpha = jax.scipy.linalg.cho_solve((L, True), r)
    return Posterior(params, X, mask, L, alpha, ok)


@jax.jit
def predict(post: Posterior, Xq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and variance of the latent function at ``Xq`` (noise-free)."""
    p = _clip(post.params)
    ls, sv = jnp.exp(p.log_lengthscales), jnp.exp(p.log_signal_var)
    Ks = matern52(Xq, post.X, ls, sv) * post.mask[None, :]
    mean = p.mean + Ks @ post.alpha
    v = jax.scipy.linalg.solve_triangular(post.chol, Ks.T, lower=True)
    var = jnp.maximum(sv - jnp.sum(v**2, axis=0), 1e-12)
    return mean, var


def params_to_json(params: GPParams) -> dict[str, list[float] | float]:
    """A JSON-serialisable dict (for a searcher's ``state_dict``)."""
    return {name: jnp.asarray(value).tolist() for name, value in params._asdict().items()}


def params_from_json(d: dict) -> GPParams:
    return GPParams(*(jnp.asarray(d[name], dtype=float) for name in GPParams._fields))
