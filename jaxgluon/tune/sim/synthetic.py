"""A synthetic family of learning curves for tests and quick experiments.

Curves saturate towards a config-dependent final reward at a config-dependent speed, so slow starters can end
up best (curves cross) and early stopping is a real bet. Optional noise is a pure function of (seed, config).

    >>> bb = SyntheticCurves(max_epochs=9)
    >>> [round(float(r), 3) for r in bb.curves([{'x': 0.3, 'y': 0.7}])[0].rewards[[0, -1]]]
    [0.248, 0.851]
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import numpy as np

from jaxgluon.tune.sim.blackbox import Curve


class SyntheticCurves:
    """Rewards in [0, 1] over configs ``{'x': Real(0, 1), 'y': Real(0, 1)}``.

    final(x, y) = 0.9 - 0.6 * ((x - 0.3)**2 + (y - 0.7)**2); speed: the time constant grows with ``x`` and ``y``;
    epoch cost is ``1 + y`` seconds (the better region is also the more expensive one).
    """

    mode = "max"

    def __init__(self, max_epochs: int = 27, noise: float = 0.0, seed: int = 0) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.max_epochs = int(max_epochs)
        self.noise = float(noise)
        self.seed = int(seed)

    @property
    def search_space(self) -> dict[str, Any]:
        from jaxgluon.space import Real

        return {"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)}

    def _curve(self, config: dict) -> Curve:
        try:
            x, y = float(config["x"]), float(config["y"])
        except KeyError as err:
            raise ValueError(f"SyntheticCurves configs need keys 'x' and 'y', got {sorted(config)}") from err
        epochs = np.arange(1, self.max_epochs + 1, dtype=np.float64)
        final = 0.9 - 0.6 * ((x - 0.3) ** 2 + (y - 0.7) ** 2)
        tau = 0.5 + 4.0 * x + 2.0 * y
        rewards = final * (1.0 - np.exp(-epochs / tau))
        if self.noise > 0:
            digest = hashlib.sha256(json.dumps([self.seed, round(x, 12), round(y, 12)]).encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            rewards = rewards + self.noise * rng.standard_normal(rewards.shape)
        rewards = np.clip(rewards, 0.0, 1.0)
        return Curve(rewards=rewards, elapsed=epochs * (1.0 + y))

    def curves(self, configs: Sequence[dict]) -> list[Curve]:
        return [self._curve(c) for c in configs]
