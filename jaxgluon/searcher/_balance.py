"""Balanced categorical choices for prior draws: the least-drawn choice of each categorical comes first.

Random search with a few trials over a few categorical choices often leaves a choice out: 4 uniform draws over 3
nets cover all three only 4/9 of the time. Stratifying the categorical dims (each choice once per round of ``k``
draws, in random order, as a Latin hypercube does for one dim) keeps every choice's marginal probability at
``1/k`` and removes that variance. :class:`ChoiceBalance` does it over fresh prior draws: it counts each choice of
each categorical over the configs suggested so far (only where the categorical was active, for a nested one) and
orders a batch of draws by how far their choices are above the least-drawn ones (stably, so among equally
balanced draws the prior's order stands). Real and integer dims are untouched: they stay prior draws.

    balance = ChoiceBalance(space)                 # space: a CompiledSpace
    cube = np.asarray(space.sample_encoded(key, 64))
    for i in balance.order(cube): ...              # the first unseen config in this order is suggested
    balance.add(space.encode(config))              # once suggested
"""
from __future__ import annotations

import numpy as np

from jaxgluon.space import CompiledSpace


class ChoiceBalance:
    """Per-categorical choice counts over suggested configs, and the order that balances them.

    >>> import jaxgluon as ag
    >>> from jaxgluon.space import compile_space
    >>> space = compile_space({'net': ag.Categorical('a', 'b', 'c')})
    >>> balance = ChoiceBalance(space)
    >>> balance.add(space.encode({'net': 'a'}))
    >>> cube = space.encode_batch([{'net': 'a'}, {'net': 'b'}, {'net': 'a'}, {'net': 'c'}])
    >>> balance.order(cube).tolist()     # 'b' and 'c' (drawn 0 times) before the two 'a' draws
    [1, 3, 0, 2]
    """

    def __init__(self, space: CompiledSpace):
        self.groups = [np.asarray(g, np.int64) for g in space.categorical_groups]
        self.counts = [np.zeros(len(g), np.int64) for g in self.groups]

    def _choices(self, cube: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(active [n], choice [n])``: an active one-hot block holds a 1; an inactive one ``INACTIVE_VALUE``."""
        block = cube[:, group]
        return block.max(axis=1) == 1.0, np.argmax(block, axis=1)

    def add(self, encoded: np.ndarray) -> None:
        """Counts the choices of one suggested config (its encoding ``[dim]``)."""
        row = np.asarray(encoded, np.float64)[None]
        for group, counts in zip(self.groups, self.counts):
            active, choice = self._choices(row, group)
            if active[0]:
                counts[choice[0]] += 1

    def excess(self, cube: np.ndarray) -> np.ndarray:
        """``[n]``: per draw, the sum over its active categoricals of its choice's count above the least-drawn."""
        cube = np.asarray(cube, np.float64)
        total = np.zeros(len(cube), np.int64)
        for group, counts in zip(self.groups, self.counts):
            active, choice = self._choices(cube, group)
            total += np.where(active, counts[choice] - counts.min(), 0)
        return total

    def order(self, cube: np.ndarray) -> np.ndarray:
        """Indices of the draws ``cube [n, dim]``, the most balancing first, the prior's order on ties."""
        return np.argsort(self.excess(cube), kind="stable")
