"""When an experiment ends: a number of trials, a hard time limit, or a reward good enough.

    >>> StopCriterion.from_args(num_trials=None, time_limits=None, max_reward=None).as_dict()
    {'num_trials': 10, 'time_limits': None, 'max_reward': None}
    >>> StopCriterion.from_args(num_trials=None, time_limits=60, max_reward=0.99).as_dict()
    {'num_trials': None, 'time_limits': 60.0, 'max_reward': 0.99}

The experiment also ends when the scheduler has nothing left to run (a finite grid is exhausted).

``keep`` reserves the end of ``time_limits`` for work after the search whose cost the search itself reveals
(``task.fit(refit=True)``: retraining the best config so far). It is a function of the trial records
(``{trial_id: TrialRecord}``) returning seconds, a :class:`KeepSeconds` (the seconds to keep and the least of them
that work can use), or None (nothing to keep), evaluated at every report with that report counted, before the
reporting trial is told whether to go on. While the time left is at least the seconds, the search winds down -- no
trial starts, running trials are told STOP at their next report, stop reason 'keep' -- once the time left falls to
them. When the time left is already below them, the search winds down at once (the reporting trial included) if
it still covers the least, and otherwise keeps its time: a keep that can no longer be met is ignored (a
late change of the best trial to one whose refit does not fit in the time left would else end the search for a
refit that is then skipped: ``benchmarks/history/2026-12-06-hyperband.md``). A plain number is its own least.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Any, Callable, Mapping, NamedTuple

TUNE_DEFAULT_NUM_TRIALS = 10  # tune()'s trials when neither num_trials nor time_limits is given (fit's: task/fit.py)


class KeepSeconds(NamedTuple):
    """What a ``keep`` function may return: keep ``seconds`` at the end of the search, of which the work after it
    needs at least ``least`` (the rest is a safety margin: e.g. the epoch in flight when the search winds down)."""
    seconds: float
    least: float


@dataclasses.dataclass(frozen=True)
class StopCriterion:
    """``num_trials``: distinct trials (configs) to start; None = no limit.
    ``time_limits``: seconds of wall time for the whole experiment, summed over resumed sessions; hard: at the
    deadline running trials are told STOP at their next report and no trial starts. None = no limit.
    ``max_reward``: once any trial reports a reward >= this, the experiment winds down the same way."""

    num_trials: int | None = TUNE_DEFAULT_NUM_TRIALS
    time_limits: float | None = None
    max_reward: float | None = None
    keep: Callable[[Mapping[int, Any]], float | KeepSeconds | None] | None = dataclasses.field(default=None,
                                                                                            compare=False)

    @classmethod
    def from_args(cls, num_trials: int | None, time_limits: float | None, max_reward: float | None,
                  keep: Callable[[Mapping[int, Any]], float | KeepSeconds | None] | None = None
                  ) -> "StopCriterion":
        if num_trials is not None:
            if isinstance(num_trials, bool) or not isinstance(num_trials, numbers.Integral) or num_trials < 1:
                raise ValueError(f"num_trials must be a positive int or None, got {num_trials!r}")
            num_trials = int(num_trials)
        if time_limits is not None:
            if isinstance(time_limits, bool) or not isinstance(time_limits, numbers.Real) or not time_limits > 0:
                raise ValueError(f"time_limits must be a positive number of seconds or None, got {time_limits!r}")
            time_limits = float(time_limits)
            if not math.isfinite(time_limits):
                time_limits = None
        if max_reward is not None:
            if isinstance(max_reward, bool) or not isinstance(max_reward, numbers.Real) \
                    or not math.isfinite(max_reward):
                raise ValueError(f"max_reward must be a finite number or None, got {max_reward!r}")
            max_reward = float(max_reward)
        if keep is not None and not callable(keep):
            raise TypeError(f"keep must be a function of the trial records returning seconds, got {keep!r}")
        if num_trials is None and time_limits is None:
            num_trials = TUNE_DEFAULT_NUM_TRIALS
        return cls(num_trials=num_trials, time_limits=time_limits, max_reward=max_reward, keep=keep)

    def as_dict(self) -> dict:
        found = {"num_trials": self.num_trials, "time_limits": self.time_limits, "max_reward": self.max_reward}
        if self.keep is None:
            return found
        return {**found, "keep": getattr(self.keep, "__qualname__", type(self.keep).__qualname__)}

    def trials_exhausted(self, num_started: int) -> bool:
        return self.num_trials is not None and num_started >= self.num_trials

    def reward_reached(self, reward: float) -> bool:
        return self.max_reward is not None and reward >= self.max_reward


def keep_deadline(keep: Callable[[Mapping[int, Any]], float | KeepSeconds | None], records: Mapping[int, Any],
                  deadline: float, now: float) -> float | None:
    """When the search winds down for ``keep`` (module docstring), on the clock of ``deadline`` and ``now``; None:
    not in force.

    >>> keep_deadline(lambda r: 30.0, {}, deadline=100.0, now=50.0)     # 50 s left: wind down at 70
    70.0
    >>> keep_deadline(lambda r: 60.0, {}, deadline=100.0, now=50.0)     # never met: ignored
    >>> keep_deadline(lambda r: KeepSeconds(60.0, 45.0), {}, deadline=100.0, now=50.0)   # the least fits: now
    50.0
    """
    try:
        kept = keep(records)
    except Exception as err:  # noqa: BLE001 -- a failing keep function is dropped, the search goes on
        warnings.warn(f"the stop criterion's keep function raised {type(err).__name__}: {err}; the search keeps "
                      "its whole time_limits", RuntimeWarning, stacklevel=3)
        return None
    if kept is None:
        return None
    seconds, least = (kept.seconds, kept.least) if isinstance(kept, KeepSeconds) else (kept, kept)
    if not seconds > 0:
        return None
    if deadline - now >= seconds:
        return deadline - seconds
    return now if deadline - now >= least else None
