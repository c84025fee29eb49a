"""Executors run trial functions; the runner decides. The interface a new backend (e.g. a cluster engine) implements.

The runner ``bind``s a train function and a report callback, ``submit``s launches while ``num_running <
capacity``, and calls ``poll`` to drive the running trials. Every report a trial makes must reach
``on_report(trial_id, result) -> decision`` and the decision string must get back to that trial's reporter
before it continues; ``poll`` returns the trials that ended.

    >>> import tempfile
    >>> def train_fn(config, reporter):
    ...     reporter(epoch=1, reward=config['x'])
    >>> ex = InProcessExecutor()
    >>> ex.bind(train_fn, on_report=lambda trial_id, result: 'STOP')
    >>> ex.submit(TrialLaunch(trial_id=0, config={'x': 0.5}, checkpoint_dir=tempfile.mkdtemp(), max_epochs=1, seed=0))
    >>> ex.poll(None)
    [TrialOutcome(trial_id=0, error=None, traceback=None, cancelled=False)]
"""
from __future__ import annotations

import abc
import dataclasses
import traceback as traceback_module
from typing import Any, Callable

from jaxgluon.tune.reporter import Reporter, TrialStopped

ReportCallback = Callable[[int, dict], str]


@dataclasses.dataclass(frozen=True)
class TrialLaunch:
    """One run of a trial function: a new trial, a resumed (promoted) one, or a restart after an interruption."""

    trial_id: int
    config: dict
    checkpoint_dir: str
    max_epochs: int
    seed: int
    deadline: float | None = None  # wall-clock (time.time()) end of the search's time limit, if any


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """How one launch ended. ``error is None``: the function returned (or honoured a stop signal).
    ``cancelled``: the executor killed it on the runner's request (``Executor.cancel``)."""

    trial_id: int
    error: str | None = None
    traceback: str | None = None
    cancelled: bool = False


class Executor(abc.ABC):
    """Where trial functions run. Single-threaded from the runner's side: all calls come from the driver."""

    name: str = "executor"

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """How many trials may run at once."""

    @property
    @abc.abstractmethod
    def num_running(self) -> int:
        """Trials submitted and not yet returned by ``poll``."""

    @abc.abstractmethod
    def bind(self, train_fn: Callable[[dict, Any], Any], on_report: ReportCallback) -> None:
        """Set the trial function and the callback that turns a report into a decision; called once."""

    @abc.abstractmethod
    def submit(self, launch: TrialLaunch) -> None:
        """Start a trial; only called while ``num_running < capacity``."""

    @abc.abstractmethod
    def poll(self, timeout: float | None) -> list[TrialOutcome]:
        """Drive running trials for up to ``timeout`` seconds (None: until one ends); return those that ended."""

    def cancel(self, trial_id: int) -> bool:
        """Kill a running trial that does not report; returns False when this executor cannot.
        A cancelled trial comes back from ``poll`` with ``cancelled=True``."""
        return False

    def resources(self) -> dict:
        """What each trial gets (recorded in the experiment's metadata)."""
        return {}

    def shutdown(self) -> None:
        """Release workers; running trials are killed."""


def run_trial(train_fn: Callable[[dict, Any], Any], launch: TrialLaunch, send: Callable[[dict], str]) -> TrialOutcome:
    """Run one trial function to its end, turning any exception into an outcome (shared by all executors)."""
    try:
        reporter = Reporter(launch.trial_id, launch.checkpoint_dir, launch.max_epochs, launch.seed, send,
                            deadline=launch.deadline)
        train_fn(dict(launch.config), reporter)
    except TrialStopped:
        pass
    except Exception as err:  # noqa: BLE001 -- failure isolation: every trial error is recorded, none escapes
        return TrialOutcome(launch.trial_id, error=f"{type(err).__name__}: {err}",
                            traceback=traceback_module.format_exc())
    return TrialOutcome(launch.trial_id)


class _RunnerFailure(BaseException):
    """Carries an exception raised by the runner's report callback through the trial function unchanged."""


class InProcessExecutor(Executor):
    """Runs one trial at a time in the driver's own thread (the default): no pickling, no process start-up.

    A trial that never reports cannot be interrupted here; use ``ProcessPoolExecutor`` for hard isolation.
    """

    name = "in_process"

    def __init__(self, requested_resources: dict | None = None) -> None:
        self._requested = dict(requested_resources or {})
        self._train_fn: Callable[[dict, Any], Any] | None = None
        self._on_report: ReportCallback | None = None
        self._queued: TrialLaunch | None = None

    @property
    def capacity(self) -> int:
        return 1

    @property
    def num_running(self) -> int:
        return int(self._queued is not None)

    def bind(self, train_fn: Callable[[dict, Any], Any], on_report: ReportCallback) -> None:
        if not callable(train_fn):
            raise TypeError(f"train_fn must be callable as train_fn(config, reporter), got {train_fn!r}")
        self._train_fn, self._on_report = train_fn, on_report

    def submit(self, launch: TrialLaunch) -> None:
        if self._train_fn is None or self._on_report is None:
            raise RuntimeError("call bind(train_fn, on_report) before submit")
        if self._queued is not None:
            raise RuntimeError("InProcessExecutor runs one trial at a time; poll() the running one first")
        self._queued = launch

    def poll(self, timeout: float | None) -> list[TrialOutcome]:
        if self._queued is None:
            return []
        launch, on_report = self._queued, self._on_report
        assert on_report is not None and self._train_fn is not None

        def send(result: dict) -> str:
            try:
                return on_report(launch.trial_id, result)
            except Exception as err:  # the runner failed, not the trial: escape the trial's error handling
                raise _RunnerFailure() from err

        try:
            outcome = run_trial(self._train_fn, launch, send)
        except _RunnerFailure as failure:
            raise failure.__cause__ from None  # type: ignore[misc]
        finally:
            self._queued = None
        return [outcome]

    def resources(self) -> dict:
        return {**self._requested, "note": "in-process: each trial runs in the driver process with what it sees"}
