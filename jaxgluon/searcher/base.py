"""The searcher protocol and the bookkeeping every searcher shares.

A searcher proposes configurations and learns from their rewards; it never starts or stops a trial.

    searcher = RandomSearcher({'lr': ag.LogLinear(1e-4, 1e-1)}, mode='max', seed=0)
    config = searcher.suggest(trial_id=0)          # pending until trial 0 completes or errors
    searcher.on_trial_complete(0, config, reward=0.93)
    state = searcher.state_dict()                  # JSON-serialisable; load_state_dict(state) resumes

Rewards are maximised by default (``mode='max'``, e.g. validation accuracy); ``mode='min'`` minimises.
Internally every searcher works with ``score = reward`` (max) or ``-reward`` (min).
"""
from __future__ import annotations

import contextlib

import json
import logging
import math
from typing import Any, Callable, Iterator

import jax
import numpy as np

from jaxgluon.searcher._balance import ChoiceBalance
from jaxgluon.space import CompiledSpace, compile_space

logger = logging.getLogger("jaxgluon.searcher")

_MODES = ("max", "min")
#: Configs per prior batch when a searcher looks for one it has not suggested (``_unseen_prior_draw``).
PRIOR_BATCH = 64


def config_key(config: Any) -> str:
    """A canonical string of a config (used to detect repeats)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


class Searcher:
    """Base class: space, mode, seed, completed results, pending trials, and their (de)serialisation.

    Subclasses implement :meth:`suggest`, and extend :meth:`state_dict` / :meth:`load_state_dict` with their own
    fields through ``_extra_state`` / ``_load_extra_state``.
    """

    def __init__(self, search_space: Any, mode: str = "max", seed: int = 0) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.space: CompiledSpace = compile_space(search_space)
        self.mode = mode
        self.seed = seed
        self._num_suggestions = 0  # drives the per-suggestion PRNG key: fold_in(key(seed), count)
        self.results: list[tuple[int | None, Any, float]] = []  # completed (trial_id, config, reward)
        self.errors: list[tuple[int | None, Any]] = []
        self.pending: dict[int, Any] = {}  # trial_id -> config, suggested but not finished
        self._suggested: list[Any] = []  # every config returned by suggest(), in order
        self._seen: set[str] = set()  # config_key of everything suggested, completed or failed (kept incrementally)
        self._balance = ChoiceBalance(self.space)  # categorical choice counts over the suggestions (prior draws)

    @contextlib.contextmanager
    def replaying(self, config: Any) -> Iterator[None]:
        """Within the block, the next ``suggest()`` returns ``config`` -- what it suggested before, read back from
        an experiment's journal -- and updates the state as that suggestion did, without recomputing it. A searcher
        whose suggestions are expensive (``GPSearcher``: a GP fit) honours it, so a resume replays them at once."""
        self._replay = [config]
        try:
            yield
        finally:
            self._replay = []

    def _replayed(self, trial_id: int | None) -> Any | None:
        """The config ``replaying`` holds (recorded like a real suggestion), or None outside ``replaying``."""
        replay = getattr(self, "_replay", None)
        if not replay:
            return None
        config = replay.pop()
        self._next_key()
        self._mark_pending(trial_id, config)
        return config

    # ------------------------------------------------------------------------------------------ protocol
    def suggest(self, trial_id: int | None = None) -> Any | None:
        """The next config, or None when a finite space has nothing new left. With a ``trial_id`` the config
        stays pending until :meth:`on_trial_complete` or :meth:`on_trial_error` for that trial."""
        raise NotImplementedError

    def on_trial_result(self, trial_id: int, config: Any, reward: float, resource: float) -> None:
        """An intermediate result (e.g. the reward after ``resource`` epochs). The base searcher ignores it."""
        _check_reward(reward)

    def on_trial_complete(self, trial_id: int | None, config: Any, reward: float) -> None:
        """The trial finished with its final ``reward``."""
        _check_reward(reward)
        if trial_id is not None:
            self.pending.pop(trial_id, None)
        self.results.append((trial_id, config, float(reward)))
        self._seen.add(config_key(config))

    def on_trial_error(self, trial_id: int | None, config: Any) -> None:
        """The trial failed; its config is no longer pending (and is not suggested again on finite spaces)."""
        if trial_id is not None:
            self.pending.pop(trial_id, None)
        self.errors.append((trial_id, config))
        self._seen.add(config_key(config))

    # ------------------------------------------------------------------------------------------ helpers
    def score(self, reward: float) -> float:
        """The reward turned into a score to maximise."""
        return float(reward) if self.mode == "max" else -float(reward)

    def best(self) -> tuple[Any, float] | None:
        """``(config, reward)`` of the best completed trial, or None."""
        finite = [r for r in self.results if math.isfinite(r[2])]
        if not finite:
            return None
        _, config, reward = max(finite, key=lambda r: self.score(r[2]))
        return config, reward

    def _next_key(self) -> jax.Array:
        key = jax.random.fold_in(jax.random.key(self.seed), self._num_suggestions)
        self._num_suggestions += 1
        return key

    def _check_trial_id(self, trial_id: int | None) -> None:
        if trial_id is not None and trial_id in self.pending:
            raise ValueError(f"trial_id {trial_id} is already pending; use a new id for every suggest()")

    def _mark_pending(self, trial_id: int | None, config: Any) -> None:
        """Record a suggestion (and make it pending when it has a trial id)."""
        self._check_trial_id(trial_id)
        if trial_id is not None:
            self.pending[trial_id] = config
        self._suggested.append(config)
        self._seen.add(config_key(config))
        if self._balance.groups:
            self._balance.add(self.space.encode(config))

    def _prior_draws(self, key: jax.Array, n: int) -> Iterator[Any]:
        """``n`` configs drawn from the prior with ``key``, the least-drawn categorical choices first
        (``jaxgluon.searcher._balance``: stratified choices, untouched real and integer dims)."""
        if not self._balance.groups:
            yield from self.space.sample_batch(key, n)
            return
        cube = np.asarray(self.space.sample_encoded(key, n), np.float64)
        configs = self.space.decode_batch(cube)
        for i in self._balance.order(cube):
            yield configs[i]

    def _unseen_prior_draw(self, batch_key: Callable[[int], jax.Array], seen: set[str]) -> Any | None:
        """The first config whose key is not in ``seen`` among :meth:`_prior_draws` batches: 4 of
        :data:`PRIOR_BATCH`, then, on a finite space, one large enough to find the few unseen configs left with
        near certainty. ``batch_key(i)`` is the ``i``-th batch's key (called in order, once each). None when every
        draw was seen."""
        sizes = [PRIOR_BATCH] * 4
        if self.space.size is not None:
            sizes.append(min(max(16 * self.space.size, 1024), 1 << 18))
        for i, n in enumerate(sizes):
            for config in self._prior_draws(batch_key(i), n):
                if config_key(config) not in seen:
                    return config
        return None

    def _seen_keys(self) -> set[str]:
        """Keys of every config already suggested, completed or failed (do not modify the returned set)."""
        return self._seen

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """A JSON-serialisable snapshot; ``load_state_dict`` on a searcher built the same way restores it."""
        return {
            "class": type(self).__name__,
            "mode": self.mode,
            "seed": self.seed,
            "num_suggestions": self._num_suggestions,
            "results": [[t, c, _json_float(r)] for t, c, r in self.results],
            "errors": [[t, c] for t, c in self.errors],
            "pending": [[t, c] for t, c in self.pending.items()],
            "suggested": self._suggested,
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("class") != type(self).__name__:
            raise ValueError(f"state_dict is from {state.get('class')!r}, cannot load it into {type(self).__name__}")
        self.mode = state["mode"]
        self.seed = state["seed"]
        self._num_suggestions = state["num_suggestions"]
        self.results = [(t, c, float(r)) for t, c, r in state["results"]]
        self.errors = [(t, c) for t, c in state["errors"]]
        self.pending = {int(t): c for t, c in state["pending"]}
        self._suggested = list(state["suggested"])
        self._balance = ChoiceBalance(self.space)
        for config in self._suggested if self._balance.groups else ():
            self._balance.add(self.space.encode(config))
        self._seen = {config_key(c) for c in self._suggested}
        self._seen.update(config_key(c) for _, c, _ in self.results)
        self._seen.update(config_key(c) for _, c in self.errors)
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r}, seed={self.seed}, results={len(self.results)})"


def _check_reward(reward: Any) -> None:
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) and not hasattr(reward, "__float__"):
        raise ValueError(f"reward must be a number, got {reward!r}")


def _json_float(x: float) -> float | str:
    """JSON has no NaN/inf: store them as strings ('nan', 'inf', '-inf'); float() reads them back."""
    return x if math.isfinite(x) else repr(x)
