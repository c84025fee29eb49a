"""One driver per experiment, and no stale worker writing beside it: two ``flock``-based locks.

- :class:`ExperimentLock` (``experiment.lock``): the driver takes it before it reads any state of the experiment and
  holds it until it returns; a second driver (a racing resume, a fresh start on the same folder) fails at once with
  an error naming the holder's pid. The file's modification time is the driver's heartbeat (touched about once a
  second), which is how a resumed driver knows how long a killed one ran.
- :func:`fence_stale_writers` (``workers.lock``): every worker process holds it shared while it may write trial
  state; a driver takes it exclusively once, before it starts its own workers, so it waits until the workers of a
  killed driver (which die with it) are gone.

The operating system releases both when their process dies, however it dies.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> lock = ExperimentLock(d / 'experiment.lock')
    >>> ExperimentLock(d / 'experiment.lock')
    Traceback (most recent call last):
    ...
    RuntimeError: ... is in use by another running experiment driver (pid ...); ...
    >>> lock.release()
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import time
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks
    fcntl = None  # type: ignore[assignment]

HEARTBEAT_SECONDS = 1.0


class ExperimentLock:
    """Exclusive, non-blocking lock of one experiment folder; ``previous_heartbeat`` is the wall time
    (``time.time()``) the last holder was last seen alive, or None for a new experiment."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self._file: Any = open(self.path, "a+", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = self._holder()
                self._file.close()
                raise RuntimeError(
                    f"{self.path.parent} is in use by another running experiment driver (pid {holder}); wait for it "
                    "to end (or kill it) before resuming, or choose another output_directory") from err
        stat = os.fstat(self._file.fileno())
        self.previous_heartbeat: float | None = stat.st_mtime if stat.st_size else None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        self._file.flush()
        self._last_beat = time.monotonic()

    def _holder(self) -> str:
        try:
            return str(json.loads(self.path.read_text(encoding="utf-8")).get("pid", "unknown"))
        except (OSError, ValueError):
            return "unknown"

    def heartbeat(self) -> None:
        """Marks the driver alive (at most once per ``HEARTBEAT_SECONDS``)."""
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_SECONDS and not self._file.closed:
            os.utime(self._file.fileno())
            self._last_beat = now

    def release(self) -> None:
        if not self._file.closed:
            os.utime(self._file.fileno())
            self._file.close()  # closing the descriptor releases the flock


def fence_stale_writers(path: str | os.PathLike, timeout: float = 60.0) -> None:
    """Returns once no process holds ``path`` shared (the workers of an earlier driver have exited).

    Raises:
        RuntimeError: after ``timeout`` seconds, naming the lock file; such a worker survived its driver.
    """
    if fcntl is None:
        return
    with open(path, "a+", encoding="utf-8") as f:
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError(
                        f"a worker process of an earlier driver of this experiment still holds {path} after "
                        f"{timeout:.0f} s; find it with `fuser {path}` and kill it, then resume") from None
                time.sleep(0.05)
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
