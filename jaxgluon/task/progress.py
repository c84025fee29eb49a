"""A tqdm progress bar fed by the experiment's journal events: trials done, best reward so far, time left."""
from __future__ import annotations

import math
import time
from typing import Any

from tqdm.auto import tqdm


class ProgressBar:
    """``with ProgressBar(total_trials, time_limits) as bar: tune(..., callbacks=[bar.on_event])``."""

    def __init__(self, total_trials: int | None, time_limits: float | None, enabled: bool = True):
        self.time_limits = time_limits
        self.enabled = enabled
        self.best = -math.inf
        self.done = 0
        self._bar: Any = None
        self._start = time.monotonic()
        self._total = total_trials

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            self._bar = tqdm(total=self._total, unit="trial", desc="fit", dynamic_ncols=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.close()

    def on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "result":
            reward = event.get("result", {}).get("reward")
            if reward is not None and math.isfinite(reward):
                self.best = max(self.best, float(reward))
        elif kind == "end" and event.get("status") != "PAUSED":
            self.done += 1
            if self._bar is not None:
                self._bar.update(1)
        if kind in ("result", "end"):
            self._refresh()

    def _refresh(self) -> None:
        if self._bar is None:
            return
        info = {"best": f"{self.best:.3f}" if math.isfinite(self.best) else "-"}
        if self.time_limits is not None:
            info["left"] = f"{max(0.0, self.time_limits - (time.monotonic() - self._start)):.0f}s"
        self._bar.set_postfix(info, refresh=True)
