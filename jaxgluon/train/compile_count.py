"""Counting XLA compilations with ``jax.monitoring``: how many programs a piece of code compiled, and how long.

JAX records ``/jax/core/compile/backend_compile_duration`` once per program handed to the backend (a compilation,
or a load from the persistent compilation cache, which is counted too: it still costs a lookup and a load), and
``/jax/core/compile/jaxpr_trace_duration`` once per function traced.

    with CompileCounter() as counter:
        train_trial(config, reporter, spec)
    counter.compilations, counter.compile_seconds, counter.traces, counter.programs   # names of what compiled (traced: of what was traced)

A trial reports its own counts as ``compilations`` and ``compile_seconds`` (``jaxgluon.train.trial``). Counters
count every thread of the process, so concurrent trials in threads would see each other's compilations.
"""
from __future__ import annotations

import threading
from typing import Any

from jax import monitoring

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"

_lock = threading.Lock()
_active: list["CompileCounter"] = []
_installed = False


def _listener(event: str, duration: float, **kwargs: Any) -> None:
    if event not in (BACKEND_COMPILE_EVENT, TRACE_EVENT):
        return
    with _lock:
        for counter in _active:
            counter._record(event, duration, str(kwargs.get("fun_name", "?")))


def _install() -> None:
    global _installed
    with _lock:
        if not _installed:
            monitoring.register_event_duration_secs_listener(_listener)
            _installed = True


class CompileCounter:
    """Counts the compilations and traces that happen while it is active (a context manager; reusable)."""

    def __init__(self) -> None:
        self.compilations = 0
        self.compile_seconds = 0.0
        self.traces = 0
        self.programs: list[str] = []
        self.traced: list[str] = []

    def _record(self, event: str, duration: float, name: str) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.compilations += 1
            self.compile_seconds += float(duration)
            self.programs.append(name)
        else:
            self.traces += 1
            self.traced.append(name)

    def __enter__(self) -> "CompileCounter":
        _install()
        with _lock:
            _active.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        with _lock:
            if self in _active:
                _active.remove(self)

    def as_dict(self) -> dict[str, Any]:
        return {"compilations": self.compilations, "compile_seconds": self.compile_seconds, "traces": self.traces}
