"""Executors run trial functions; the runner decides. The interface a new backend (e.g. a cluster engine) implements.

The runner ``bind``s a train function and a report callback, ``submit``s launches while ``num_running <
capacity``, and calls ``poll`` to drive the running trials. Every report a trial makes must reach
``on_report(trial_id, result) -> Decision`` and the decision (the enum, or its string across a process boundary)
must get back to that trial's reporter before it continues; ``poll`` returns the trials that ended. The runner
reads experiment time from ``now()`` (wall time; a simulated executor's own clock).

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
import queue
import threading
import time
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
    fence: str | None = None  # a lock file that a worker process holds shared while it may write (see Runner)


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
    #: Set by the runner: an executor whose trials start late (a worker process still starting) calls it from
    #: ``poll`` with the trial id when the trial function actually starts; the liveness clock restarts then.
    on_started: Callable[[int], None] | None = None
    #: whether ``on_started`` is called when a trial's function begins (worker executors); the runner then counts
    #: the trial's silence from that call (``liveness.START_ALLOWANCE_S`` before it)
    reports_start: bool = False
    #: Set by the runner: an executor that launches a trial again after its worker died (the Ray executor's
    #: ``max_failures``) calls it with ``(trial_id, error, attempt)`` before the retry; the runner journals it.
    on_retry: Callable[[int, str, int], None] | None = None

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

    def now(self) -> float:
        """Seconds on the clock the runner measures experiment time, the time limit and liveness with: a monotonic
        wall clock here; a simulated executor (``jaxgluon.tune.sim``) returns its simulated time."""
        return time.monotonic()

    def cancel(self, trial_id: int) -> bool:
        """Kill a running trial that does not report; returns False when this executor cannot.
        A cancelled trial comes back from ``poll`` with ``cancelled=True``."""
        return False

    def resources(self) -> dict:
        """What each trial gets (recorded in the experiment's metadata)."""
        return {}

    def stats(self) -> dict:
        """Counters recorded in the experiment's metadata (worker processes started, trials abandoned, ...)."""
        return {}

    def shutdown(self) -> None:
        """Release workers; running trials are killed."""


def run_trial(train_fn: Callable[[dict, Any], Any], launch: TrialLaunch, send: Callable[[dict], str]) -> TrialOutcome:
    """Run one trial function to its end, turning any exception into an outcome (shared by all executors)."""
    reporter = None
    try:
        reporter = Reporter(launch.trial_id, launch.checkpoint_dir, launch.max_epochs, launch.seed, send,
                            deadline=launch.deadline)
        train_fn(dict(launch.config), reporter)
    except TrialStopped:
        pass
    except Exception as err:  # noqa: BLE001 -- failure isolation: every trial error is recorded, none escapes
        return TrialOutcome(launch.trial_id, error=f"{type(err).__name__}: {err}",
                            traceback=traceback_module.format_exc())
    finally:
        if reporter is not None:
            reporter.close()
    return TrialOutcome(launch.trial_id)


class InProcessExecutor(Executor):
    """Runs one trial at a time in a thread of the driver's process: no pickling, no process start-up.

    The trial runs in a daemon thread while the driver's thread waits for its reports, so the runner keeps its
    clock: a trial that stops reporting (``time.sleep(1e6)``, a deadlock) is *abandoned* at the time limit or at
    ``trial_timeout`` and the search goes on or returns. Its limits, which the default process-pool executor
    does not have: an abandoned thread cannot be killed -- it keeps its CPU and memory until it returns or reaches
    its next report (which raises ``TrialStopped`` in it); a trial that calls ``os._exit`` or crashes the
    interpreter (a segfault in native code, the kernel's out-of-memory killer) takes the driver with it.
    """

    name = "in_process"

    def __init__(self, requested_resources: dict | None = None) -> None:
        self._requested = dict(requested_resources or {})
        self._train_fn: Callable[[dict, Any], Any] | None = None
        self._on_report: ReportCallback | None = None
        self._thread: _TrialThread | None = None  # reused from trial to trial
        self._running: _TrialThread | None = None  # the thread while it runs a trial
        self._cancelled: list[TrialOutcome] = []  # abandoned trials, returned by the next poll
        self.num_abandoned = 0

    @property
    def capacity(self) -> int:
        return 1

    @property
    def num_running(self) -> int:
        return int(self._running is not None) + len(self._cancelled)

    def bind(self, train_fn: Callable[[dict, Any], Any], on_report: ReportCallback) -> None:
        if not callable(train_fn):
            raise TypeError(f"train_fn must be callable as train_fn(config, reporter), got {train_fn!r}")
        self._train_fn, self._on_report = train_fn, on_report

    def submit(self, launch: TrialLaunch) -> None:
        if self._train_fn is None or self._on_report is None:
            raise RuntimeError("call bind(train_fn, on_report) before submit")
        if self.num_running:
            raise RuntimeError("InProcessExecutor runs one trial at a time; poll() the running one first")
        if self._thread is None:
            self._thread = _TrialThread(self._train_fn)
        self._thread.run(launch)
        self._running = self._thread

    def poll(self, timeout: float | None) -> list[TrialOutcome]:
        if self._cancelled:
            cancelled, self._cancelled = self._cancelled, []
            return cancelled
        running, on_report = self._running, self._on_report
        if running is None:
            return []
        launch = running.launch
        assert on_report is not None and launch is not None
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if end is None else max(0.0, end - time.monotonic())
            try:
                message = running.messages.get(timeout=wait)
            except queue.Empty:
                return []
            kind = message[0]
            if kind == "report":
                try:
                    decision = on_report(launch.trial_id, message[1])
                except BaseException:
                    running.abandon()  # the runner failed, not the trial: the trial must not wait for ever
                    self._running = self._thread = None
                    raise
                running.replies.put(decision)  # the Decision itself: the reporter is in this process
            elif kind == "done":
                self._running = None
                return [message[1]]
            else:  # "raise": a BaseException (KeyboardInterrupt, SystemExit) escaped the trial: re-raise it here
                self._running = self._thread = None  # that thread has ended
                raise message[1]

    def stats(self) -> dict:
        return {"num_abandoned": self.num_abandoned}

    def cancel(self, trial_id: int) -> bool:
        running = self._running
        if running is None or running.launch is None or running.launch.trial_id != trial_id:
            return False
        running.abandon()
        self._running = self._thread = None
        self.num_abandoned += 1
        self._cancelled.append(TrialOutcome(trial_id, cancelled=True))
        return True

    def resources(self) -> dict:
        return {**self._requested, "note": "in-process: each trial runs in a thread of the driver process with what "
                "it sees; a hung trial is abandoned, not killed"}

    def shutdown(self) -> None:
        if self._thread is not None:
            self._thread.abandon()
        self._running = self._thread = None


class _TrialThread:
    """A daemon thread that runs trials one after the other (reused while none is abandoned); reports travel to the
    driver's thread through ``messages``, decisions back through ``replies``."""

    def __init__(self, train_fn: Callable[[dict, Any], Any]) -> None:
        self.launch: TrialLaunch | None = None
        self.messages: queue.Queue = queue.Queue()
        self.replies: queue.Queue = queue.Queue()
        self._inbox: queue.Queue = queue.Queue()
        self._abandoned = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(train_fn,), daemon=True, name="jaxgluon-trial")
        self.thread.start()

    def run(self, launch: TrialLaunch) -> None:
        self.launch = launch
        self._inbox.put(launch)

    def abandon(self) -> None:
        """Let go of this thread: its trial ends at its next report, and it runs nothing more."""
        self._abandoned.set()
        self.replies.put(None)  # wakes a trial waiting for its decision
        self._inbox.put(None)

    def _send(self, result: dict) -> str:
        if self._abandoned.is_set():
            raise TrialStopped("the trial was abandoned by the runner (time limit or trial_timeout); it must return")
        self.messages.put(("report", result))
        reply = self.replies.get()
        if reply is None:
            raise TrialStopped("the trial was abandoned by the runner (time limit or trial_timeout); it must return")
        return reply

    def _main(self, train_fn: Callable[[dict, Any], Any]) -> None:
        while True:
            launch = self._inbox.get()
            if launch is None or self._abandoned.is_set():
                return
            try:
                outcome = run_trial(train_fn, launch, self._send)
            except BaseException as err:  # noqa: BLE001 -- KeyboardInterrupt/SystemExit: to the driver's thread
                self.messages.put(("raise", err))
                return
            self.messages.put(("done", outcome))
