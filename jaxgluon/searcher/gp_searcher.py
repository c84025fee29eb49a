"""GP Bayesian optimisation: the searcher that coordinates the pure GP math in ``jaxgluon.searcher._gp``."""
from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgluon.searcher import _gp
from jaxgluon.searcher._gp.candidates import categorical_options, continuous_mask
from jaxgluon.searcher.base import Searcher, _json_float, config_key, logger

_MIN_BUCKET = 16
_WARM_ONLY_FROM = 128  # from this many observations on, the hyperparameter fit starts from the previous fit only,
_FULL_FIT_EVERY = 16  # except when the observation count is a multiple of this (then all restarts run)
_NUM_REFINE = 16  # local searches of the acquisition started from candidates
# ... and from Gaussian steps off the best observed points: (rank of the point, 0 = best; step width)
_ANCHORS = ((0, 1e-3), (0, 1e-2), (1, 1e-3))
_compiled_buckets: set[tuple[int, int, int, int]] = set()  # (rows, dim, candidates, restarts) compiled so far


def default_num_initial_random(dim: int) -> int:
    """Size of the initial random design: ``max(5, min(20, 2 * (dim + 1)))`` configs (BoTorch's ``2 (d + 1)``).

    A wider first look makes it less likely that the search commits to a wide secondary basin before it has
    seen the narrower global one (on Hartmann6, ``dim + 1`` random points lost the global basin more often).
    """
    return max(5, min(20, 2 * (dim + 1)))


class GPSearcher(Searcher):
    """Bayesian optimisation with a Gaussian process and log expected improvement.

    Model: constant mean, Matern-5/2 ARD kernel on the space's unit-cube encoding, learned noise; hyperparameters
    are MAP-fitted (marginal likelihood + priors, L-BFGS from ``num_restarts`` starts, one of them the previous
    fit; from 128 observations on, from the previous fit alone unless the count is a multiple of 16) on rewards
    standardised to mean 0 / std 1. Categoricals are one-hot blocks with one shared lengthscale
    per block, and stay exact one-hots during the acquisition search, so they are never treated as ordered
    numbers.

    Suggestions: the first ``num_initial_random`` configs (default :func:`default_num_initial_random`:
    ``max(5, min(20, 2 * (dim + 1)))``) are random draws from the prior, categorical choices in balance as
    :class:`RandomSearcher` draws them. After that, log EI is scored on
    ``num_candidates`` prior draws, and local searches start from the best of them, from 15 more drawn with
    probability proportional to EI (so that regions far from the incumbent get refined too, not only the crowd
    of candidates next to it), and from 3 points next to the best observed ones (what makes the final answer
    precise). A local search is gradient ascent on the continuous dims in lengthscale units, alternating with
    sweeps over single categorical changes. The best new config wins: a config already tried (e.g. the
    incumbent, where the noise floor keeps EI positive) is skipped for the next best.

    Pending trials (suggested with a ``trial_id``, not yet complete) enter the posterior with a constant liar:
    the worst observed standardised score, which pushes the next suggestion away from them.

    Numerical trouble (constant rewards, a Cholesky factorisation that fails even with jitter, a non-finite
    acquisition) logs a warning and falls back to a random suggestion; it never raises. Non-finite rewards are
    replaced by the worst finite one (with a warning).

    To keep ``suggest()`` fast the observations are padded (and masked) to power-of-two row counts (16, 32, 64,
    ...), so the jitted fit and acquisition compile once per row bucket and dimension, and are shared by all
    searchers of the process. ``last_info`` holds the timings of the last suggestion (``compiled`` is True when
    that call compiled a new bucket).

    Multi-fidelity (``multi_fidelity=True``, for Hyperband-style schedulers): ``on_trial_result(trial_id, config,
    reward, resource)`` records the reward of every trial at every resource level (e.g. epoch). The GP then
    models the highest resource level that has at least ``min_points_per_level`` trials (default
    ``num_initial_random``), falling back to lower levels; with no level that full, suggestions are random. A
    trial completed without any intermediate result counts at the highest level (``resource=inf``). Trials
    pending at the modelled level get the constant liar. ``last_info['resource_level']`` says which level was
    modelled. Without ``multi_fidelity`` only ``on_trial_complete`` rewards are modelled.

    >>> import jaxgluon as ag
    >>> s = GPSearcher({'x': ag.Real(0.0, 1.0), 'opt': ag.Categorical('sgd', 'adam')}, mode='min', seed=0)
    >>> for i in range(8):
    ...     c = s.suggest(trial_id=i)
    ...     s.on_trial_complete(i, c, (c['x'] - 0.3) ** 2 + (c['opt'] == 'sgd'))
    """

    def __init__(
        self,
        search_space: Any,
        mode: str = "max",
        seed: int = 0,
        num_initial_random: int | None = None,
        num_candidates: int = 2048,
        num_restarts: int = 3,
        fit_steps: int = 50,
        multi_fidelity: bool = False,
        min_points_per_level: int | None = None,
    ) -> None:
        super().__init__(search_space, mode=mode, seed=seed)
        dim = self.space.dim
        self.num_initial_random = default_num_initial_random(dim) if num_initial_random is None else num_initial_random
        for name, value, low in [("num_initial_random", self.num_initial_random, 1), ("num_candidates", num_candidates, 32),
                                 ("num_restarts", num_restarts, 1), ("fit_steps", fit_steps, 1)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"GPSearcher: {name} must be an int >= {low}, got {value!r}")
        self.num_candidates = num_candidates
        self.num_restarts = num_restarts
        self.fit_steps = fit_steps
        self.multi_fidelity = bool(multi_fidelity)
        self.min_points_per_level = self.num_initial_random if min_points_per_level is None else int(min_points_per_level)
        self._cont_mask = continuous_mask(dim, self.space.categorical_groups)
        self._group_masks, self._onehots = categorical_options(dim, self.space.categorical_groups)
        self._levels: dict[int, dict] = {}  # trial_id -> {"config": config, "rewards": {resource: reward}}
        self._params: dict | None = None  # last fitted hyperparameters (JSON form), the warm start of the next fit
        self.last_info: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------ protocol
    def on_trial_result(self, trial_id: int, config: Any, reward: float, resource: float) -> None:
        super().on_trial_result(trial_id, config, reward, resource)
        entry = self._levels.setdefault(trial_id, {"config": config, "rewards": {}})
        entry["rewards"][float(resource)] = float(reward)

    def on_trial_complete(self, trial_id: int | None, config: Any, reward: float) -> None:
        super().on_trial_complete(trial_id, config, reward)
        if self.multi_fidelity and trial_id is not None and not self._levels.get(trial_id, {}).get("rewards"):
            self._levels[trial_id] = {"config": config, "rewards": {math.inf: float(reward)}}

    def suggest(self, trial_id: int | None = None) -> Any | None:
        start = time.perf_counter()
        self._check_trial_id(trial_id)
        replayed = self._replayed(trial_id)
        if replayed is not None:  # a resume replaying the journal: no GP fit (Searcher.replaying)
            self.last_info = {"kind": "replayed", "seconds": time.perf_counter() - start}
            return replayed
        seen = self._seen_keys()
        if self.space.size is not None and len(seen) >= self.space.size:
            return None
        key = self._next_key()
        configs, scores, pending, level = self._training_data()
        self.last_info = {"num_observations": len(configs), "resource_level": level, "compiled": False}
        config = None
        if len(configs) >= self.num_initial_random:
            config = self._bayesopt(key, configs, scores, pending, seen)
        if config is None:
            config = self._random(key, seen)
        if config is None:
            return None
        self._mark_pending(trial_id, config)
        self.last_info["seconds"] = time.perf_counter() - start
        return config

    # ------------------------------------------------------------------------------------------ data
    def _training_data(self) -> tuple[list, np.ndarray, list, float | None]:
        """``(configs, scores, pending configs, resource level)`` that the GP models now."""
        if not self.multi_fidelity:
            rows = [(c, self.score(r)) for _, c, r in self.results]
            return [c for c, _ in rows], np.array([s for _, s in rows], dtype=np.float64), list(self.pending.values()), None
        counts: dict[float, int] = {}
        for entry in self._levels.values():
            for resource in entry["rewards"]:
                counts[resource] = counts.get(resource, 0) + 1
        full = [r for r, n in counts.items() if n >= self.min_points_per_level]
        if not full:
            return [], np.zeros(0), [], None
        level = max(full)
        observed = {t: e for t, e in self._levels.items() if level in e["rewards"]}
        configs = [e["config"] for e in observed.values()]
        scores = np.array([self.score(e["rewards"][level]) for e in observed.values()], dtype=np.float64)
        pending = [c for t, c in self.pending.items() if t not in observed]
        return configs, scores, pending, level

    # ------------------------------------------------------------------------------------------ suggestions
    def _random(self, key: jax.Array, seen: set[str]) -> Any | None:
        config = self._unseen_prior_draw(lambda i: jax.random.fold_in(key, i if i < 4 else 99), seen)
        if config is None:
            logger.warning("GPSearcher: no new config found in many random draws; treating the space as exhausted")
            return None
        self.last_info["kind"] = "random"
        return config

    def _bayesopt(self, key: jax.Array, configs: list, scores: np.ndarray, pending: list, seen: set[str]) -> Any | None:
        finite = np.isfinite(scores)
        if not finite.any():
            logger.warning("GPSearcher: no finite reward yet; suggesting a random config")
            return None
        if not finite.all():
            logger.warning("GPSearcher: %d non-finite rewards replaced by the worst finite one", int((~finite).sum()))
            scores = np.where(finite, scores, scores[finite].min())
        std = scores.std()
        if not std > 1e-12 * max(1.0, abs(scores.mean())):
            logger.warning("GPSearcher: all %d rewards are equal, the GP has nothing to learn; random suggestion", len(scores))
            return None
        y = (scores - scores.mean()) / std
        X = self.space.encode_batch(configs)
        Xp = self.space.encode_batch(pending)
        with _gp.gp_runtime():
            return self._bayesopt_x64(key, X, y, Xp, seen)

    def _bayesopt_x64(self, key: jax.Array, X: np.ndarray, y: np.ndarray, Xp: np.ndarray, seen: set[str]) -> Any | None:
        dim, n, n_pending = self.space.dim, len(X), len(Xp)
        rows = max(_MIN_BUCKET, 1 << (n + n_pending - 1).bit_length())
        bucket = (rows, dim, self.num_candidates, self.num_restarts)
        compiling = bucket not in _compiled_buckets
        t0 = time.perf_counter()
        k_fit, k_cand = jax.random.split(key)
        X_pad = np.full((rows, dim), 0.5)
        X_pad[:n], X_pad[n : n + n_pending] = X, Xp
        y_pad = np.zeros(rows)
        y_pad[:n] = y
        y_pad[n : n + n_pending] = y.min()  # the constant liar
        obs_mask = np.arange(rows) < n
        starts = _gp.initial_params(dim, self.num_restarts, k_fit)
        active = np.ones(self.num_restarts, bool)
        if self._params is not None and self.num_restarts > 1 and len(self._params["log_lengthscales"]) == dim:
            warm = _gp.params_from_json(self._params)
            starts = jax.tree.map(lambda a, w: a.at[1].set(w), starts, warm)
            if n >= _WARM_ONLY_FROM and n % _FULL_FIT_EVERY:
                active[:] = False  # much data: the previous fit moves little; restart from scratch only now and then
                active[1] = True
        tie = _gp.tie_matrix(dim, self.space.categorical_groups)
        params = _gp.fit_hyperparameters(jnp.asarray(X_pad), jnp.asarray(y_pad), jnp.asarray(obs_mask), starts, tie,
                                         num_steps=self.fit_steps, active=jnp.asarray(active))
        post = _gp.posterior(params, jnp.asarray(X_pad), jnp.asarray(y_pad), jnp.asarray(np.arange(rows) < n + n_pending))
        jax.block_until_ready(post)
        t1 = time.perf_counter()
        if not bool(post.ok):
            logger.warning("GPSearcher: Cholesky factorisation failed even with jitter; random suggestion")
            return None
        self._params = _gp.params_to_json(params)
        k_prior, k_starts, k_anchor = jax.random.split(k_cand, 3)
        candidates = np.asarray(self.space.sample_encoded(k_prior, self.num_candidates), dtype=np.float64)
        anchors = self._anchors(k_anchor, X, y)
        xs, values = _gp.maximize_log_ei(
            post, jnp.asarray(y.max()), jnp.asarray(candidates), jnp.asarray(anchors), k_starts,
            jnp.asarray(self._cont_mask), jnp.asarray(self._group_masks), jnp.asarray(self._onehots),
            num_refine=_NUM_REFINE, num_steps=100 if self._cont_mask.any() else 0,
            num_rounds=2 if len(self._group_masks) else 1,
        )
        xs, values = np.asarray(xs), np.asarray(values)
        _compiled_buckets.add(bucket)
        self.last_info.update(fit_seconds=t1 - t0, acquisition_seconds=time.perf_counter() - t1, compiled=compiling,
                              rows=rows, kind="bayesopt")
        if not np.isfinite(values).any():
            logger.warning("GPSearcher: the acquisition function is not finite anywhere; random suggestion")
            return None
        config = self._first_unseen(xs, values, seen)
        if config is None:  # every refined point is a config already tried: take the best unseen raw candidate
            raw = np.asarray(_gp.score_log_ei(post, jnp.asarray(candidates), jnp.asarray(y.max())))
            order = np.argsort(-np.where(np.isfinite(raw), raw, -np.inf))
            config = self._first_unseen(candidates[order], raw[order], seen)
        return config

    def _anchors(self, key: jax.Array, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Local-search starts next to the best observed points (see ``_ANCHORS``: the best one twice).

        Not exactly at them: near convergence the EI maximum sits on the incumbent itself (its posterior variance
        is the noise floor), a config already tried, and the search must still return the best new point next to it
        rather than fall back to a far, much worse one.
        """
        order = np.argsort(-y, kind="stable")
        ranks, widths = (np.asarray(column) for column in zip(*_ANCHORS))
        rows = X[order[np.minimum(ranks, len(y) - 1)]]
        rng = np.random.default_rng(np.asarray(jax.random.bits(key, (2,))))
        steps = widths[:, None] * rng.normal(size=rows.shape) * self._cont_mask
        return np.clip(rows + steps, 0.0, 1.0)

    def _first_unseen(self, xs: np.ndarray, values: np.ndarray, seen: set[str]) -> Any | None:
        for x, value in zip(xs, values):
            if not np.isfinite(value):
                return None
            config = self.space.decode(x)
            if config_key(config) not in seen:
                self.last_info["log_ei"] = float(value)
                return config
        return None

    # ------------------------------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {
            "levels": [[t, e["config"], [[_json_float(r), v] for r, v in e["rewards"].items()]] for t, e in self._levels.items()],
            "gp_params": self._params,
        }

    def _load_extra_state(self, state: dict) -> None:
        self._levels = {int(t): {"config": c, "rewards": {float(r): float(v) for r, v in rewards}}
                        for t, c, rewards in state["levels"]}
        self._params = state["gp_params"]
