"""Encoding helpers for the acquisition search over a mixed continuous / one-hot unit cube (pure numpy).

    continuous_mask(4, ((1, 2, 3),))          # array([1., 0., 0., 0.])
    categorical_options(4, ((1, 2, 3),))      # group masks and one-hots of the 3 single choices
"""
from __future__ import annotations

import numpy as np


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
