"""Progress of a search, fed by the experiment's journal events: trials done, best reward so far, time left.

Where it runs decides how it looks (``display_mode()``):

- ``'notebook'``: a Jupyter kernel with ipywidgets: tqdm's notebook widget, updated in place;
- ``'terminal'``: an interactive terminal: tqdm's text bar, redrawn in place;
- ``'log'``: anything else (a log file, CI, a pipe, a Jupyter kernel without ipywidgets): one plain line when a
  trial ends and at most one every ``log_interval_s`` seconds in between, never carriage-return redraws.

It works with any ``jaxgluon.tune`` experiment too::

    with ProgressBar(total_trials=20, time_limits=None) as bar:
        ag.tune(train_fn, space, num_trials=20, callbacks=[bar.on_event])
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

MODES = ("notebook", "terminal", "log")


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter (ipykernel) kernel: notebooks, JupyterLab, VS Code, Colab."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _have_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def display_mode(stream: TextIO | None = None) -> str:
    """'notebook', 'terminal' or 'log' for a progress display writing to ``stream`` (default stderr)."""
    if in_jupyter_kernel():
        return "notebook" if _have_widgets() else "log"
    stream = sys.stderr if stream is None else stream
    try:
        return "terminal" if stream.isatty() else "log"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "log"


class ProgressBar:
    """``with ProgressBar(total_trials, time_limits) as bar: tune(..., callbacks=[bar.on_event])``.

    Args:
      total_trials: the number of trials, when known (else the bar counts up without a total).
      time_limits: seconds the search may take, to show the time left.
      enabled: False shows nothing.
      mode: 'notebook', 'terminal' or 'log'; default: ``display_mode(stream)``.
      stream: where the terminal bar and the log lines go (default stderr).
      log_interval_s: in 'log' mode, the least seconds between two lines while no trial ends.
      desc: the label in front of the progress.
    """

    def __init__(self, total_trials: int | None, time_limits: float | None, enabled: bool = True, *,
                 mode: str | None = None, stream: TextIO | None = None, log_interval_s: float = 30.0,
                 desc: str = "fit"):
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None (chosen for where it runs), got {mode!r}")
        self.time_limits = time_limits
        self.enabled = enabled
        self.best = -math.inf
        self.done = 0
        self.mode = mode
        self.desc = desc
        self.log_interval_s = log_interval_s
        self._stream = stream
        self._bar: Any = None
        self._start = time.monotonic()
        self._last_line = -math.inf
        self._total = total_trials

    def __enter__(self) -> "ProgressBar":
        self._start = self._last_line = time.monotonic()
        if not self.enabled:
            return self
        stream = sys.stderr if self._stream is None else self._stream
        self.mode = self.mode or display_mode(stream)
        if self.mode == "notebook":
            from tqdm.notebook import tqdm as notebook_tqdm  # not tqdm.auto: it warns on every import
            self._bar = notebook_tqdm(total=self._total, unit="trial", desc=self.desc)
        elif self.mode == "terminal":
            from tqdm import tqdm
            self._bar = tqdm(total=self._total, unit="trial", desc=self.desc, dynamic_ncols=True, file=stream)
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._refresh()
            self._bar.close()
            self._bar = None
        elif self.mode == "log":
            self._line("finished")

    def on_event(self, event: dict) -> None:
        """A journal event (``tune(callbacks=[...])``): results update the best reward, ends count trials."""
        kind = event.get("event")
        trial_ended = False
        if kind == "result":
            reward = event.get("result", {}).get("reward")
            if reward is not None and math.isfinite(reward):
                self.best = max(self.best, float(reward))
        elif kind == "end" and event.get("status") != "PAUSED":
            self.done += 1
            trial_ended = True
            if self._bar is not None:
                self._bar.update(1)
        if kind not in ("result", "end") or not self.enabled:
            return
        if self._bar is not None:
            self._refresh()
        elif self.mode == "log" and (trial_ended or time.monotonic() - self._last_line >= self.log_interval_s):
            self._line()

    def _info(self) -> dict[str, str]:
        info = {"best": f"{self.best:.3f}" if math.isfinite(self.best) else "-"}
        if self.time_limits is not None:
            info["left"] = f"{max(0.0, self.time_limits - (time.monotonic() - self._start)):.0f}s"
        return info

    def _refresh(self) -> None:
        self._bar.set_postfix(self._info(), refresh=True)

    def _line(self, suffix: str = "") -> None:
        self._last_line = time.monotonic()
        total = "" if self._total is None else f"/{self._total}"
        parts = [f"{self.desc}: {self.done}{total} trials done",
                 *(f"{key} {value}" for key, value in self._info().items()),
                 f"{time.monotonic() - self._start:.0f}s elapsed"]
        if suffix:
            parts.append(suffix)
        stream = sys.stderr if self._stream is None else self._stream
        print(", ".join(parts), file=stream, flush=True)
