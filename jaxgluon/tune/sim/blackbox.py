"""The blackbox protocol of the simulator: a search space and, per config, a learning curve with its cost.

    >>> import numpy as np
    >>> curve = Curve(rewards=np.array([0.5, 0.7]), elapsed=np.array([2.0, 4.5]))
    >>> curve.epoch_cost(2)
    2.5
"""
from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np


class Curve(NamedTuple):
    """A config's learning curve: ``rewards[e-1]`` is the reward after epoch ``e``; ``elapsed[e-1]`` the
    cumulative training time (seconds) up to the end of epoch ``e`` (strictly increasing)."""

    rewards: np.ndarray
    elapsed: np.ndarray

    def epoch_cost(self, epoch: int) -> float:
        """Seconds that epoch ``epoch`` (1-based) takes."""
        previous = self.elapsed[epoch - 2] if epoch >= 2 else 0.0
        return float(self.elapsed[epoch - 1] - previous)


@runtime_checkable
class Blackbox(Protocol):
    """What the simulator needs from a benchmark."""

    max_epochs: int
    mode: str  # 'max' or 'min' for its reward

    @property
    def search_space(self) -> dict[str, Any]:
        """The config space in the ``jaxgluon.space`` language."""
        ...

    def curves(self, configs: Sequence[dict]) -> list[Curve]:
        """Learning curves of several configs (batched where the backend allows)."""
        ...


def monotone_elapsed(times: np.ndarray, min_fraction: float = 0.01) -> np.ndarray:
    """Turn predicted cumulative times into a strictly increasing clock.

    A surrogate can predict a cumulative time that dips; each epoch is charged at least ``min_fraction`` of the
    curve's mean epoch time.
    """
    times = np.asarray(times, dtype=np.float64)
    n = times.shape[-1]
    per_epoch = np.diff(times, prepend=0.0, axis=-1)
    floor = np.maximum(np.abs(times[..., -1:]) / n, 1e-6) * min_fraction
    return np.cumsum(np.maximum(per_epoch, floor), axis=-1)
