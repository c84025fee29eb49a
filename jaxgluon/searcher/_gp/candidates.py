"""Candidate points for the acquisition optimiser (pure numpy, given a generator).

Half the candidates come from the space's prior (passed in), half are local perturbations of the best observed
points: Gaussian steps of several widths on the continuous dims and, now and then, one categorical group switched
to a random choice (one-hot blocks stay one-hots).

    rng = np.random.default_rng(0)
    local = perturb(rng, np.full((3, 2), 0.5), 8, cont_mask=np.array([1.0, 1.0]), groups=())
    local.shape
    (8, 2)
"""
from __future__ import annotations

import numpy as np

_WIDTHS = np.array([0.002, 0.01, 0.05, 0.2])


def perturb(
    rng: np.random.Generator,
    centres: np.ndarray,
    n: int,
    cont_mask: np.ndarray,
    groups: tuple[tuple[int, ...], ...],
    switch_probability: float = 0.3,
) -> np.ndarray:
    """``n`` points near the rows of ``centres`` (``[k, d]``), clipped to the unit cube."""
    base = centres[rng.integers(len(centres), size=n)]
    widths = _WIDTHS[rng.integers(len(_WIDTHS), size=n)][:, None]
    out = np.clip(base + rng.normal(size=base.shape) * widths * cont_mask, 0.0, 1.0)
    if groups:
        switch = rng.random(n) < switch_probability
        which = rng.integers(len(groups), size=n)
        for g, dims in enumerate(groups):
            rows = np.flatnonzero(switch & (which == g))
            if rows.size:
                dims = np.asarray(dims)
                out[np.ix_(rows, dims)] = 0.0
                out[rows, dims[rng.integers(len(dims), size=rows.size)]] = 1.0
    return out


def categorical_options(dim: int, groups: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(group_masks, onehots)`` of shape ``[M, dim]`` for all ``M`` single choices (see ``maximize_log_ei``)."""
    rows = [(dims, j) for dims in groups for j in dims]
    group_masks = np.zeros((len(rows), dim))
    onehots = np.zeros((len(rows), dim))
    for m, (dims, j) in enumerate(rows):
        group_masks[m, list(dims)] = 1.0
        onehots[m, j] = 1.0
    return group_masks, onehots


def continuous_mask(dim: int, groups: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """1.0 on dims that are not part of a one-hot block."""
    mask = np.ones(dim)
    for dims in groups:
        mask[list(dims)] = 0.0
    return mask
