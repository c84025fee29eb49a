"""A local pool of worker processes: concurrent trials, each pinned to its own CPUs (and devices), isolated.

The default executor of ``jaxgluon.tune``. Workers are started with the ``spawn`` method (JAX is not fork-safe)
once per search and persist from trial to trial, keeping their compiled programs and caches. Each worker runs one
trial at a time; its reports travel over a pipe to the driver, which answers with the scheduler's decision. A
worker that dies (``os._exit``, SIGKILL, out of memory, a segfault in native code) turns its trial into an ERROR
and is replaced; ``cancel`` (a hung trial: ``trial_timeout`` or the time limit) kills it, and it is replaced too.

Workers die with their driver: ``PR_SET_PDEATHSIG`` on Linux, a thread that watches the parent pid everywhere, and
a parent check before every report. While it may write trial state a worker holds the experiment's writers fence
(``TrialLaunch.fence``) shared; a resumed driver takes it exclusively before starting its own workers
(``jaxgluon.tune.lock.fence_stale_writers``), so no worker of a killed driver writes beside the new ones. When the
trial function does not live in the driver's ``__main__``, workers do not re-run the driver's script.

    >>> executor = ProcessPoolExecutor(num_workers=2, num_cpus=1)
    >>> executor.resources()['num_cpus']
    1

Per worker, before the trial function is unpickled (so before it imports JAX): CPU affinity is set to
``num_cpus`` cores of their own, ``OMP/MKL/OPENBLAS_NUM_THREADS=num_cpus``, and with ``num_cpus=1`` XLA's CPU
backend is made single-threaded. ``num_devices`` GPUs (from ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi -L``) are
split disjointly through ``CUDA_VISIBLE_DEVICES``; without GPUs, a worker gets ``num_devices`` virtual CPU devices.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback as traceback_module
import types
import warnings
from typing import Any, Callable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

from jaxgluon.tune.executor import Executor, ReportCallback, TrialLaunch, TrialOutcome, run_trial

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: Environment variable naming a logging level ('INFO', 'DEBUG'): worker processes (which have no logging set up of
#: their own) then print jaxgluon's log lines -- a trial's start-up timeline, compile times -- to stderr.
LOG_LEVEL_ENV = "JAXGLUON_LOG_LEVEL"
log = logging.getLogger("jaxgluon.tune")


def configure_logging_from_env() -> None:
    """Sends the ``jaxgluon`` loggers' lines at ``$JAXGLUON_LOG_LEVEL`` and above to stderr, with wall-clock times
    and the process id, when that variable is set (``JAXGLUON_LOG_LEVEL=INFO python my_fit.py`` shows what the
    trials' worker processes are doing); other libraries' logging is left alone. Idempotent."""
    level = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    logger = logging.getLogger("jaxgluon")
    if not level or any(getattr(h, "_jaxgluon_env", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d pid %(process)d %(name)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    handler._jaxgluon_env = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False   # else a root handler (basicConfig elsewhere) prints every line twice


def _available_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.stdout.splitlines() if l.startswith("GPU"))]


def die_with_parent(parent_pid: int) -> None:
    """Make this process die with ``parent_pid`` (the driver): ``PR_SET_PDEATHSIG`` on Linux, and on every system a
    daemon thread that exits the process within half a second of the parent's death (it is re-parented then)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watch thread below still works
            pass
    if os.getppid() != parent_pid:  # the driver died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="jaxgluon-parent-watch", daemon=True).start()


def hold_fence(path: str | None, held: dict[str, Any]) -> None:
    """Hold a shared lock on the experiment's writers fence while this process may write trial state: a resumed
    driver takes it exclusively before it starts its own workers, so it waits for any stale writer to be gone."""
    if path is None or path in held or fcntl is None:
        return
    handle = open(path, "a+")
    fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
    held[path] = handle


def _worker_main(conn: multiprocessing.connection.Connection, train_fn_bytes: bytes, env: dict[str, str],
                 cpus: list[int], parent_pid: int | None = None) -> None:
    """Worker loop: set the environment, then run ('run', launch) requests until ('exit',) or EOF."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    os.environ.update(env)
    configure_logging_from_env()
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    start = time.perf_counter()
    try:
        train_fn: Callable[[dict, Any], Any] | None = pickle.loads(train_fn_bytes)
        log.info("worker: trial function loaded (imports) in %.2f s", time.perf_counter() - start)
        load_error = None
    except Exception as err:  # noqa: BLE001 -- reported per trial below
        train_fn, load_error = None, (f"could not unpickle train_fn in the worker process: {type(err).__name__}: "
                                      f"{err}", traceback_module.format_exc())
    conn.send(("ready", time.time()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "exit":
            return
        if len(message) > 2 and message[2] is not None:   # a later search's trial function (a reused worker)
            try:
                train_fn, load_error = pickle.loads(message[2]), None
            except Exception as err:  # noqa: BLE001 -- reported per trial below
                train_fn, load_error = None, (f"could not unpickle train_fn in the worker process: "
                                              f"{type(err).__name__}: {err}", traceback_module.format_exc())
        launch = TrialLaunch(**message[1])
        fences: dict[str, Any] = {}
        hold_fence(launch.fence, fences)
        conn.send(("started", launch.trial_id))
        if train_fn is None:
            outcome = TrialOutcome(launch.trial_id, error=load_error[0], traceback=load_error[1])
        else:
            def send(result: dict, trial_id: int = launch.trial_id) -> str:
                if parent_pid is not None and os.getppid() != parent_pid:  # liveness: never report to nobody
                    os._exit(1)
                conn.send(("report", trial_id, result))
                reply = conn.recv()
                return reply[1]

            outcome = run_trial(train_fn, launch, send)
        for handle in fences.values():   # the trial wrote all it will: an idle worker fences no experiment
            handle.close()
        conn.send(("done", dataclasses.asdict(outcome)))


@dataclasses.dataclass
class _Worker:
    process: Any
    conn: multiprocessing.connection.Connection
    index: int
    launch: TrialLaunch | None = None
    cancelled: bool = False
    ready: bool = False  # the worker process started and loaded train_fn
    spawned: float = dataclasses.field(default_factory=time.time)
    fn_key: str = ""     # which trial function it holds (a digest of its pickle)


@contextlib.contextmanager
def _main_hidden(hide: bool) -> Iterator[None]:
    """While a worker is spawned, hide the driver's ``__main__`` when the trial function does not live there: the
    worker then does not run the driver's script again (so ``task.fit`` works from a script without an
    ``if __name__ == '__main__':`` guard, as in a notebook), and starts faster."""
    if not hide or "__main__" not in sys.modules:
        yield
        return
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "is unresponsive"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: out of memory or an external kill)" if -exitcode == signal.SIGKILL else ""
        return f"died from {name}{hint}"
    return f"exited with code {exitcode}"


#: Seconds an idle worker gets to exit on its own at shutdown before it is killed. A worker that replaced a killed
#: one may still be importing jax when the search ends and cannot answer; waiting 5 s for it was a 5-6 s overrun of
#: time_limits (issue 18: flowers5 at 60 s, hymenoptera at 600 s).
EXIT_GRACE_S = 0.5

#: Seconds the workers of a finished search are kept idle for the next search of this process with the same
#: resources and environment, which then starts without spawning, importing or compiling (a notebook's second
#: ``fit``: its first trial reuses the worker's compiled programs and loaded weights). ``$JAXGLUON_WORKER_IDLE_S``
#: overrides it; 0 stops the workers with their search. At most one pool is kept; :func:`close_idle_workers` ends
#: it at once (it is also ended at exit, and its workers die with the driver in any case).
WORKER_IDLE_S = 300.0
IDLE_ENV = "JAXGLUON_WORKER_IDLE_S"
_idle_lock = threading.Lock()
_idle: dict[str, Any] = {"key": None, "workers": [], "token": 0}


def _idle_seconds() -> float:
    raw = os.environ.get(IDLE_ENV)
    if raw is None:
        return WORKER_IDLE_S
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ValueError(f"${IDLE_ENV} must be a number of seconds (0 to stop idle workers at once), got {raw!r}"
                         ) from None


def _stop_workers(workers: list["_Worker"]) -> None:
    """Asks idle workers to exit, kills busy ones, and waits briefly (``EXIT_GRACE_S``) before killing the rest."""
    for worker in workers:
        if worker.launch is None and worker.process.is_alive():
            try:
                worker.conn.send(("exit",))
            except OSError:
                pass
        else:
            worker.process.kill()
    for worker in workers:
        worker.process.join(timeout=EXIT_GRACE_S)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.conn.close()


def close_idle_workers() -> int:
    """Stops the worker processes kept idle after a search (see ``WORKER_IDLE_S``); returns how many there were."""
    with _idle_lock:
        workers, _idle["workers"], _idle["key"] = _idle["workers"], [], None
        _idle["token"] += 1
    _stop_workers(workers)
    return len(workers)


def _keep_idle(key: Any, workers: list["_Worker"], seconds: float) -> None:
    with _idle_lock:
        previous, _idle["workers"], _idle["key"] = _idle["workers"], workers, key
        _idle["token"] += 1
        token = _idle["token"]
    _stop_workers(previous)

    def expire() -> None:
        with _idle_lock:
            if _idle["token"] != token:   # taken by a search, or replaced, since
                return
        close_idle_workers()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _take_idle(key: Any) -> list["_Worker"]:
    with _idle_lock:
        if _idle["key"] != key:
            return []
        workers, _idle["workers"], _idle["key"] = _idle["workers"], [], None
        _idle["token"] += 1
    return [w for w in workers if w.process.is_alive()]


atexit.register(close_idle_workers)


class ProcessPoolExecutor(Executor):
    """``num_workers`` spawned processes, each running one trial at a time with its own CPUs/devices.

    Args:
        num_workers: concurrent trials.
        num_cpus: cores pinned per worker (default: the available cores split evenly, at least 1).
        num_devices: accelerators per worker (0: leave device visibility alone).
    """

    reports_start = True

    name = "process_pool"

    def __init__(self, num_workers: int, num_cpus: int | None = None, num_devices: int = 0):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        cpus = _available_cpus()
        if num_cpus is None:
            num_cpus = max(1, len(cpus) // num_workers)
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1:
            raise ValueError(f"resources_per_trial['num_cpus'] must be a positive int, got {num_cpus!r}")
        if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 0:
            raise ValueError(f"resources_per_trial['num_devices'] must be an int >= 0, got {num_devices!r}")
        if num_workers * num_cpus > len(cpus):
            warnings.warn(f"{num_workers} workers x {num_cpus} CPUs exceeds the {len(cpus)} available cores; "
                          "workers will share cores (lower num_workers or num_cpus to avoid contention)",
                          stacklevel=2)
        self.num_workers, self.num_cpus, self.num_devices = num_workers, num_cpus, num_devices
        self._cpu_sets = [[cpus[(i * num_cpus + k) % len(cpus)] for k in range(num_cpus)] for i in range(num_workers)]
        self._gpu_sets: list[list[str]] | None = None
        if num_devices:
            gpus = _visible_gpus()
            if gpus:
                if num_workers * num_devices > len(gpus):
                    raise ValueError(f"{num_workers} workers x {num_devices} devices needs "
                                     f"{num_workers * num_devices} GPUs, {len(gpus)} are visible; lower num_workers "
                                     "or resources_per_trial['num_devices']")
                self._gpu_sets = [gpus[i * num_devices:(i + 1) * num_devices] for i in range(num_workers)]
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * num_workers
        self._train_fn_bytes: bytes | None = None
        self._on_report: ReportCallback | None = None
        self.num_spawned = 0
        self.num_killed = 0  # workers killed by cancel() (hung trials)
        self.num_reused = 0  # workers an earlier search of this process left idle (WORKER_IDLE_S)
        self._fn_key = ""

    # ---- Executor interface ------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.num_workers

    @property
    def num_running(self) -> int:
        return sum(1 for w in self._workers if w is not None and w.launch is not None)

    def bind(self, train_fn: Callable[[dict, Any], Any], on_report: ReportCallback) -> None:
        if not callable(train_fn):
            raise TypeError(f"train_fn must be callable as train_fn(config, reporter), got {train_fn!r}")
        try:
            self._train_fn_bytes = pickle.dumps(train_fn)
        except Exception as err:  # noqa: BLE001 -- pickle raises several types
            raise ValueError(
                f"train_fn {train_fn!r} cannot be pickled ({type(err).__name__}: {err}); with worker processes "
                "it must be a top-level function (or a functools.partial of one) in an importable module or a "
                "script guarded by `if __name__ == '__main__':` -- not a lambda or closure -- or use num_workers=1"
            ) from err
        self._on_report = on_report
        self._fn_key = hashlib.sha256(self._train_fn_bytes).hexdigest()
        for worker in _take_idle(self._pool_key()):   # an earlier search's workers, same resources and environment
            worker.index = self.num_reused
            self._workers[worker.index] = worker
            self.num_reused += 1
        for i in range(self.num_workers):  # start the others now: spawning takes a while, do it in parallel
            if self._workers[i] is None:
                self._workers[i] = self._spawn(i)

    def _pool_key(self) -> tuple:
        """What a reused worker must share with this pool: its resources and the environment it was started in."""
        return (self.num_workers, self.num_cpus, self.num_devices, repr(self._cpu_sets), repr(self._gpu_sets),
                tuple(sorted(os.environ.items())))

    def submit(self, launch: TrialLaunch) -> None:
        if self._on_report is None:
            raise RuntimeError("call bind(train_fn, on_report) before submit")
        for i, worker in enumerate(self._workers):
            if worker is None or worker.launch is None:
                if worker is None or not worker.process.is_alive():
                    worker = self._workers[i] = self._spawn(i)
                new_fn = self._train_fn_bytes if worker.fn_key != self._fn_key else None
                worker.conn.send(("run", dataclasses.asdict(launch), new_fn))
                worker.launch, worker.cancelled, worker.fn_key = launch, False, self._fn_key
                return
        raise RuntimeError("no free worker; submit only while num_running < capacity")

    def poll(self, timeout: float | None) -> list[TrialOutcome]:
        busy = [w for w in self._workers if w is not None and w.launch is not None]
        if not busy:
            return []
        waitables: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(multiprocessing.connection.wait(waitables, timeout))
        outcomes = []
        for worker in busy:
            if worker.conn in ready or worker.process.sentinel in ready:
                outcome = self._drain(worker)
                if outcome is None and not worker.process.is_alive():
                    outcome = self._dead_worker_outcome(worker)
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    def cancel(self, trial_id: int) -> bool:
        for worker in self._workers:
            if worker is not None and worker.launch is not None and worker.launch.trial_id == trial_id:
                worker.cancelled = True
                worker.process.kill()
                self.num_killed += 1
                return True
        return False

    def resources(self) -> dict:
        return {"num_cpus": self.num_cpus, "num_devices": self.num_devices,
                "cpu_sets": self._cpu_sets, "gpu_sets": self._gpu_sets}

    def stats(self) -> dict:
        return {"num_worker_processes_started": self.num_spawned, "num_workers_killed": self.num_killed,
                "num_worker_processes_reused": self.num_reused}

    def shutdown(self) -> None:
        """Stops the workers, or keeps them idle for this process's next search (``WORKER_IDLE_S``) when every one
        is alive and idle."""
        workers = [w for w in self._workers if w is not None]
        self._workers = [None] * self.num_workers
        seconds = _idle_seconds()
        if seconds > 0 and workers and all(w.launch is None and w.process.is_alive() for w in workers):
            _keep_idle(self._pool_key(), workers, seconds)
        else:
            _stop_workers(workers)

    # ---- internals ---------------------------------------------------------------------------------------
    def worker_env(self, index: int) -> dict[str, str]:
        """Environment variables worker ``index`` sets before it unpickles the trial function."""
        env = {key: str(self.num_cpus) for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        xla_flags = os.environ.get("XLA_FLAGS", "")
        if self.num_cpus == 1:
            xla_flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        if self.num_devices:
            if self._gpu_sets is not None:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(self._gpu_sets[index])
            else:
                xla_flags += f" --xla_force_host_platform_device_count={self.num_devices}"
        if xla_flags.strip():
            env["XLA_FLAGS"] = xla_flags.strip()
        return env

    def _spawn(self, index: int) -> _Worker:
        assert self._train_fn_bytes is not None
        env = self.worker_env(index)
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, name=f"jaxgluon-trial-worker-{index}", daemon=True,
                                    args=(child_conn, self._train_fn_bytes, env, self._cpu_sets[index], os.getpid()))
        with _main_hidden(b"__main__" not in self._train_fn_bytes):
            process.start()
        self.num_spawned += 1
        child_conn.close()
        return _Worker(process=process, conn=parent_conn, index=index, fn_key=self._fn_key)

    def _drain(self, worker: _Worker) -> TrialOutcome | None:
        """Handle every message the worker has sent; returns its outcome once it reports 'done'."""
        assert self._on_report is not None and worker.launch is not None
        while True:
            try:
                if not worker.conn.poll():
                    return None
                message = worker.conn.recv()
            except (EOFError, OSError):
                return None  # the pipe is closed: the process is dead or dying
            if message[0] == "report":
                decision = self._on_report(message[1], message[2])
                try:
                    worker.conn.send(("decision", str(getattr(decision, "value", decision))))
                except OSError:
                    return None
            elif message[0] == "ready":
                worker.ready = True
                log.info("worker %d (pid %s) was ready %.2f s after its spawn", worker.index, worker.process.pid,
                         message[1] - worker.spawned)
            elif message[0] == "started" and self.on_started is not None:
                self.on_started(message[1])
            elif message[0] == "done":
                worker.launch = None
                return TrialOutcome(**message[1])

    def _dead_worker_outcome(self, worker: _Worker) -> TrialOutcome:
        assert worker.launch is not None
        worker.process.join(timeout=5)
        launch, cancelled = worker.launch, worker.cancelled
        worker.launch = None
        try:
            worker.conn.close()
        except OSError:
            pass
        self._workers[worker.index] = None  # replaced on the next submit
        if cancelled:
            return TrialOutcome(launch.trial_id, cancelled=True)
        if not worker.ready:
            message = (f"worker process (pid {worker.process.pid}) {_describe_exit(worker.process.exitcode)} before "
                       f"it could run trial {launch.trial_id}; its stderr has the reason. Worker processes are "
                       "started with 'spawn', which re-imports the main module: run the experiment from a file "
                       "whose top-level code is guarded by `if __name__ == '__main__':` (not stdin), or use "
                       "num_workers=1")
        else:
            message = (f"worker process (pid {worker.process.pid}) {_describe_exit(worker.process.exitcode)} while "
                       f"running trial {launch.trial_id}")
        return TrialOutcome(launch.trial_id, error=message, traceback=message)
