"""When the runner kills a running trial: pure rules of the trial timeout and the time limit.

A trial is *seen* when it starts and at each report. It is killed when it stays silent until ``kill_time``:
at ``seen + timeout`` when that comes before the experiment's deadline (it is hung: ERROR, the search goes on),
else ``DEADLINE_GRACE_S`` after the deadline (STOPPED: no hang outlives the budget).

    >>> auto_timeout(time_limits=60.0, max_interval=0.0)      # before any report: the whole budget
    60.0
    >>> auto_timeout(time_limits=60.0, max_interval=0.5)      # 10 x 0.5 s, at least 60 / 4
    15.0
    >>> kill_time(seen=10.0, deadline=20.0, timeout=15.0)     # the deadline comes first
    21.0
"""
from __future__ import annotations

import math
from typing import Any

DEADLINE_GRACE_S = 1.0  # past the time limit, a trial that has not returned within this is killed
AUTO_TIMEOUT_MIN_S = 600.0  # trial_timeout='auto' without time_limits: at least this, ...
AUTO_TIMEOUT_FACTOR = 10.0  # ... or this many times the longest interval between reports seen, ...
AUTO_TIMEOUT_FIRST_S = 3600.0  # ... or this before any report (compilation, data loading)
#: Added to the trial timeout of a trial whose executor has not yet said it started (``Executor.reports_start``):
#: a worker being spawned or replaced imports its libraries first (1.5-3.5 s on a loaded 2-core CPU), which is
#: not the trial's silence. The time limit is not extended by it.
START_ALLOWANCE_S = 60.0


def check_trial_timeout(trial_timeout: Any) -> float | str | None:
    """Validates ``trial_timeout``: a positive number of seconds, ``'auto'`` or None."""
    if trial_timeout is None or trial_timeout == "auto":
        return trial_timeout
    if isinstance(trial_timeout, bool) or not isinstance(trial_timeout, (int, float)) or \
            not math.isfinite(trial_timeout) or trial_timeout <= 0:
        raise ValueError(f"trial_timeout must be a positive number of seconds, 'auto' or None (no limit), got "
                         f"{trial_timeout!r}")
    return float(trial_timeout)


def auto_timeout(time_limits: float | None, max_interval: float) -> float:
    """``trial_timeout='auto'``: before any report (``max_interval == 0``), ``time_limits`` (1 h without one:
    compilation and data loading come first); after, ``10 x`` the longest interval between reports seen so far, at
    least ``time_limits / 4`` (600 s without time_limits), at most ``time_limits``."""
    if max_interval <= 0:
        return time_limits if time_limits is not None else AUTO_TIMEOUT_FIRST_S
    floor = time_limits / 4 if time_limits is not None else AUTO_TIMEOUT_MIN_S
    timeout = max(floor, AUTO_TIMEOUT_FACTOR * max_interval)
    return timeout if time_limits is None else min(timeout, time_limits)


def kill_time(seen: float, deadline: float | None, timeout: float | None) -> float:
    """When a trial last seen at ``seen`` is killed if it stays silent (same clock as ``deadline``)."""
    hung_at = math.inf if timeout is None else seen + timeout
    if deadline is None or hung_at < deadline:
        return hung_at
    return max(seen, deadline) + DEADLINE_GRACE_S
