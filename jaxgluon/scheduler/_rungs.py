"""Pure rung and bracket arithmetic for (asynchronous) Hyperband.

    >>> rung_levels(grace_period=1, reduction_factor=3, max_t=81)
    (1, 3, 9, 27, 81)
    >>> bracket_rung_levels(rung_levels(1, 3, 81), bracket=2)
    (9, 27, 81)
    >>> bracket_probabilities(num_levels=5, reduction_factor=3, brackets=2).round(3).tolist()
    [0.706, 0.294]

Bracket 0 is the most aggressive one (its first rung is ``grace_period``); bracket ``b`` starts at the
``b``-th rung level. The last level is always ``max_t``: reaching it finishes a trial, it is never a rung where
a trial is stopped or paused.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def rung_levels(grace_period: int, reduction_factor: float, max_t: int) -> tuple[int, ...]:
    """Epochs at which a trial is judged: ``grace_period * rf**k`` below ``max_t``, then ``max_t`` itself."""
    if not isinstance(grace_period, (int, np.integer)) or grace_period < 1:
        raise ValueError(f"grace_period must be an int >= 1 (minimum epochs before judging), got {grace_period!r}")
    if not isinstance(max_t, (int, np.integer)) or max_t < grace_period:
        raise ValueError(f"max_t must be an int >= grace_period={grace_period} (the epochs of a full trial), "
                         f"got {max_t!r}")
    if not reduction_factor > 1:
        raise ValueError(f"reduction_factor must be > 1 (e.g. 3 keeps the top third at each rung), "
                         f"got {reduction_factor!r}")
    levels: list[int] = []
    k = 0
    while True:
        level = int(round(grace_period * reduction_factor**k))
        if level >= max_t:
            break
        if not levels or level > levels[-1]:
            levels.append(level)
        k += 1
    levels.append(int(max_t))
    return tuple(levels)


def bracket_rung_levels(levels: Sequence[int], bracket: int) -> tuple[int, ...]:
    """Rung levels used by ``bracket`` (0 = most aggressive): the levels from the ``bracket``-th on."""
    if not 0 <= bracket < len(levels):
        raise ValueError(f"bracket must be in [0, {len(levels) - 1}] for rung levels {tuple(levels)}, got {bracket}")
    return tuple(levels[bracket:])


def max_brackets(levels: Sequence[int]) -> int:
    """Number of distinct brackets the rung levels allow (the last one never stops a trial early)."""
    return len(levels)


def bracket_probabilities(num_levels: int, reduction_factor: float, brackets: int) -> np.ndarray:
    """Hyperband's share of trials per bracket, renormalised over the ``brackets`` most aggressive ones.

    Hyperband runs ``n_s = (s_max + 1) / (s + 1) * rf**s`` configurations in the bracket with ``s`` halvings
    (``s_max = num_levels - 1``); bracket ``b`` here has ``s = s_max - b``.
    """
    if not 1 <= brackets <= num_levels:
        raise ValueError(f"brackets must be in [1, {num_levels}] (one per rung level), got {brackets}")
    s_max = num_levels - 1
    s = s_max - np.arange(brackets)
    n = (s_max + 1) / (s + 1) * np.power(float(reduction_factor), s)
    return n / n.sum()


def sample_bracket(probabilities: Sequence[float], seed: int, trial_id: int) -> int:
    """The bracket of a trial, a pure function of ``(seed, trial_id)`` so it needs no saved RNG state."""
    if len(probabilities) == 1:
        return 0
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(trial_id)])
    return int(rng.choice(len(probabilities), p=np.asarray(probabilities)))


def num_to_promote(num_recorded: int, reduction_factor: float) -> int:
    """How many trials of a rung with ``num_recorded`` results may go on (ASHA: the top ``1/rf``)."""
    return int(math.floor(num_recorded / reduction_factor + 1e-9))
