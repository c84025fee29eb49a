"""The experiment journal: an append-only JSON-lines file, one event per line, made durable per event.

Events carry ``seq`` (0-based line number) and ``event`` (``session``, ``start``, ``result``, ``end``, ...).
``sync`` picks the durability of each append:

- ``'group'`` (default): group commit, as databases do with their write-ahead logs. Each append is written and
  flushed to the operating system before it returns (it survives ``kill -9`` of the driver at once), and a
  background thread fsyncs the file as soon as it has new lines, so every event reaches the disk within one
  fsync latency (a few ms) and a burst of events shares one fsync. The driver never waits for the disk: a
  decision costs ~0.1 ms instead of one fsync (~4 ms on a busy shared disk). A power cut can lose only the
  events of the fsync in flight. ``close()`` waits for the last fsync.
- ``'fsync'``: flush + ``os.fsync`` inside ``append`` -- the event is on disk before the driver goes on.
- ``'flush'``: flush to the operating system only -- survives ``kill -9`` of the driver, not a power cut.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'journal.jsonl'
    >>> with Journal(path) as j:
    ...     _ = j.append('start', trial_id=0, config={'x': 1})
    >>> [e['event'] for e in read_journal(path)]
    ['start']
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import threading
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: no advisory lock
    fcntl = None  # type: ignore[assignment]

SYNC_MODES = ("group", "fsync", "flush")


def _json_default(obj: Any) -> Any:
    # numpy / jax scalars and arrays reported as metrics
    if hasattr(obj, "item") and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable; report plain numbers, strings, lists or dicts")


def dumps(obj: Any) -> str:
    """JSON text for a journal line; NaN/inf are kept (Python's json reads them back)."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def check_sync_mode(sync: str) -> str:
    if sync not in SYNC_MODES:
        raise ValueError(f"journal sync mode must be one of {SYNC_MODES}, got {sync!r}")
    return sync


class _GroupFsync:
    """A daemon thread that fsyncs ``fileno`` whenever ``written()`` was called since its last fsync."""

    def __init__(self, fileno: int):
        self._fileno = fileno
        self._cond = threading.Condition()
        self._written = self._synced = 0  # append counts
        self._closing = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._loop, name="jaxgluon-journal-fsync", daemon=True)
        self._thread.start()

    def written(self) -> None:
        with self._cond:
            self._written += 1
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._written == self._synced and not self._closing:
                    self._cond.wait()
                if self._written == self._synced:
                    return  # closing, nothing left
                target = self._written
            try:
                os.fsync(self._fileno)  # releases the GIL; the driver keeps appending meanwhile
            except OSError as err:  # reported by the next append / close
                self.error = err
            with self._cond:
                self._synced = target
                self._cond.notify_all()

    def wait(self) -> None:
        """Blocks until everything written so far is fsynced."""
        with self._cond:
            target = self._written
            while self._synced < target and self._thread.is_alive():
                self._cond.wait(timeout=1.0)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()


class Journal:
    """Append-only JSONL writer; each ``append`` is one line, flushed to the OS, and fsynced as ``sync`` says
    (module docstring).

    The file is locked (``flock``) while open, so two drivers cannot write one experiment; the operating system
    releases the lock when its process dies, however it dies.
    """

    def __init__(self, path: str | os.PathLike, sync: str = "group"):
        self.path = pathlib.Path(path)
        self.sync = check_sync_mode(sync)
        self._file = open(self.path, "a", encoding="utf-8")
        try:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._file.close()
            raise RuntimeError(f"{self.path} is in use by another running experiment driver; wait for it to end "
                               "(or kill it) before resuming, or choose another output_directory") from err
        _truncate_torn_tail(self.path)
        self._seq = sum(1 for _ in read_journal(self.path))
        self._group = _GroupFsync(self._file.fileno()) if self.sync == "group" else None

    @property
    def seq(self) -> int:
        """Number of events written so far (the ``seq`` the next event gets)."""
        return self._seq

    def append(self, event: str, **fields: Any) -> dict:
        record = {"seq": self._seq, "event": event, **fields}
        self._file.write(dumps(record) + "\n")
        self._file.flush()
        if self._group is not None:
            self._raise_sync_error()
            self._group.written()
        elif self.sync == "fsync":
            os.fsync(self._file.fileno())
        self._seq += 1
        return record

    def wait_durable(self) -> None:
        """Returns once every event appended so far is on disk (immediately unless ``sync='group'``)."""
        if self._group is not None:
            self._group.wait()
            self._raise_sync_error()

    def _raise_sync_error(self) -> None:
        if self._group is not None and self._group.error is not None:
            err, self._group.error = self._group.error, None
            raise OSError(f"fsync of the journal {self.path} failed: {err}; the disk may be full or failing") from err

    def close(self) -> None:
        if self._file.closed:
            return
        if self._group is not None:
            self._group.close()  # fsyncs what is left first
        self._file.close()
        if self._group is not None:
            self._raise_sync_error()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_journal(path: str | os.PathLike) -> Iterator[dict]:
    """Yields the journal's events in order; a torn last line (the driver died mid-write) is skipped."""
    path = pathlib.Path(path)
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        if not line.endswith("\n"):
            if i == len(lines) - 1:
                return  # torn final write
        try:
            yield json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                return
            raise ValueError(f"{path}: line {i + 1} is not valid JSON ({err}); the journal is corrupt") from err


def _truncate_torn_tail(path: pathlib.Path) -> None:
    """Drops a partial last line so that appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def write_json_atomic(path: str | os.PathLike, obj: Any, sync: str = "fsync") -> None:
    """Writes JSON to ``path`` via a temporary file and ``os.replace``: readers see the old or the new file.
    Any ``sync`` but ``'flush'`` fsyncs the file before the rename (these writes are rare snapshots)."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(obj))
        f.flush()
        if sync != "flush":
            os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_finite_number(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
