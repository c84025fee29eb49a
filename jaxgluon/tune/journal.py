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

Recovery: a good record is a complete line (ending in a newline) holding a JSON object whose ``seq`` is its line
index. Opening a :class:`Journal` (under its lock, so only the driver that owns the experiment does it) keeps the
good records up to the first line that is not one -- a line cut off by a crash, or a corrupt line anywhere -- and
truncates the file there, after copying the original beside it (``journal.jsonl.corrupt-<UTC time>``) and warning
with the line numbers and byte count dropped (:class:`JournalRecovery`, also ``Journal.recovery``).
:func:`read_journal` yields the same good records; at a corrupt complete line it warns and stops (a cut-off last
line is what a reader of a live journal sees mid-write, and is skipped without a word).

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
import shutil
import threading
import time
import warnings
from typing import Any, Iterator, NamedTuple

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
        self.recovery: JournalRecovery | None = recover_journal(self.path)
        self._seq = len(_scan(self.path.read_bytes()).records)
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


class JournalRecovery(NamedTuple):
    """What opening a damaged journal dropped: lines ``first_line``..``last_line`` (1-based), ``dropped_bytes``."""

    kept_records: int
    first_line: int
    last_line: int
    dropped_bytes: int
    reason: str
    backup: pathlib.Path

    def describe(self, path: str | os.PathLike) -> str:
        lines = (f"line {self.first_line}" if self.first_line == self.last_line
                 else f"lines {self.first_line}-{self.last_line}")
        return (f"recovered the journal {path}: {self.reason}; dropped {lines} ({self.dropped_bytes} bytes) and kept "
                f"the first {self.kept_records} records (the original is saved as {self.backup.name})")


class _Scan(NamedTuple):
    records: list[dict]
    good_bytes: int            # length of the good prefix
    bad_line: int | None       # 1-based number of the first line that is not a good record
    reason: str | None
    num_lines: int             # lines in the file, a cut-off last one included
    cut_off: bool = False      # the only problem is a last line without its newline


def _scan(data: bytes) -> _Scan:
    """The good records at the start of a journal's bytes, and where and why they end (module docstring)."""
    records: list[dict] = []
    pos = 0
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    num_lines = len(complete) + (1 if tail else 0)
    for i, line in enumerate(complete):
        reason = None
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            reason = f"line {i + 1} is not valid JSON ({err})"
        else:
            if not isinstance(record, dict) or not isinstance(record.get("event"), str):
                reason = f"line {i + 1} is not a journal event"
            elif record.get("seq") != i:
                reason = f"line {i + 1} has seq {record.get('seq')!r}, expected {i}"
        if reason is not None:
            return _Scan(records, pos, i + 1, reason, num_lines)
        records.append(record)
        pos += len(line) + 1
    if tail:
        return _Scan(records, pos, len(complete) + 1, f"the last line (line {len(complete) + 1}) is cut off "
                                                          "(a write interrupted by a crash)", num_lines, True)
    return _Scan(records, pos, None, None, num_lines)


def read_journal(path: str | os.PathLike) -> Iterator[dict]:
    """Yields the journal's good records in order (module docstring): a cut-off last line (a live writer's line in
    progress) is skipped; at a corrupt complete line a warning names it and reading stops there."""
    path = pathlib.Path(path)
    scan = _scan(path.read_bytes())
    if scan.bad_line is not None and not scan.cut_off:
        warnings.warn(f"{path}: {scan.reason}; reading stops at the {len(scan.records)} good records before it (a "
                      "resume truncates the journal there and keeps a copy of the original)", RuntimeWarning,
                      stacklevel=2)
    yield from scan.records


def recover_journal(path: str | os.PathLike) -> JournalRecovery | None:
    """Truncates ``path`` to its good records when anything follows them, after copying the original to
    ``<name>.corrupt-<UTC time>``; warns and returns what was dropped (None for an intact journal).

    Call it only while holding the journal's lock (:class:`Journal` does)."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    data = path.read_bytes()
    scan = _scan(data)
    if scan.bad_line is None:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    shutil.copyfile(path, backup)
    with open(backup, "rb") as f:
        os.fsync(f.fileno())
    with open(path, "rb+") as f:
        f.truncate(scan.good_bytes)
        f.flush()
        os.fsync(f.fileno())
    recovery = JournalRecovery(len(scan.records), scan.bad_line, scan.num_lines, len(data) - scan.good_bytes,
                               scan.reason, backup)
    warnings.warn(recovery.describe(path), RuntimeWarning, stacklevel=3)
    return recovery


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
