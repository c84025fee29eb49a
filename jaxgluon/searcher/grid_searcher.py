"""Grid search: a deterministic walk over ``CompiledSpace.grid(points_per_dim)``."""
from __future__ import annotations

from typing import Any

from jaxgluon.searcher.base import Searcher, config_key


class GridSearcher(Searcher):
    """Suggests the configs of ``search_space.grid(points_per_dim)`` in order; None when the grid is done.

    Every categorical choice is enumerated; each Real/Int gets ``points_per_dim`` evenly spaced values (log-spaced
    when ``log=True``). ``seed`` is accepted for a uniform interface; the order does not depend on it.

    >>> import jaxgluon as ag
    >>> s = GridSearcher({'lr': ag.Real(0.0, 1.0), 'opt': ag.Categorical('sgd', 'adam')}, points_per_dim=2)
    >>> [s.suggest() for _ in range(5)][-1] is None
    True
    """

    def __init__(self, search_space: Any, mode: str = "max", seed: int = 0, points_per_dim: int = 4) -> None:
        super().__init__(search_space, mode=mode, seed=seed)
        self.points_per_dim = points_per_dim
        self._grid = []
        keys: set[str] = set()
        for config in self.space.grid(points_per_dim):  # rounding Int values can repeat a config: keep the first
            key = config_key(config)
            if key not in keys:
                keys.add(key)
                self._grid.append(config)
        self._next_index = 0

    def __len__(self) -> int:
        return len(self._grid)

    def suggest(self, trial_id: int | None = None) -> Any | None:
        self._check_trial_id(trial_id)
        if self._next_index >= len(self._grid):
            return None
        config = self._grid[self._next_index]
        self._next_index += 1
        self._mark_pending(trial_id, config)
        return config

    def _extra_state(self) -> dict:
        return {"points_per_dim": self.points_per_dim, "next_index": self._next_index}

    def _load_extra_state(self, state: dict) -> None:
        if state["points_per_dim"] != self.points_per_dim:
            raise ValueError(
                f"state_dict was saved with points_per_dim={state['points_per_dim']}, this searcher has "
                f"{self.points_per_dim}; construct it with the same points_per_dim"
            )
        self._next_index = state["next_index"]
