"""The experiment journal: an append-only JSON-lines file, one event per line, made durable per event.

Events carry ``seq`` (0-based line number) and ``event`` (``session``, ``start``, ``result``, ``end``, ...).
``sync`` picks the durability of each append:

- ``'fsync'`` (default): flush + ``os.fsync`` -- the event survives a killed driver and a power cut.
- ``'flush'``: flush to the operating system only -- survives ``kill -9`` of the driver, not a power cut;
  about 100x cheaper per event on a typical disk.

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
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: no advisory lock
    fcntl = None  # type: ignore[assignment]

SYNC_MODES = ("fsync", "flush")


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


class Journal:
    """Append-only JSONL writer; each ``append`` is one line, flushed (and fsynced with ``sync='fsync'``).

    The file is locked (``flock``) while open, so two drivers cannot write one experiment; the operating system
    releases the lock when its process dies, however it dies.
    """

    def __init__(self, path: str | os.PathLike, sync: str = "fsync"):
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

    @property
    def seq(self) -> int:
        """Number of events written so far (the ``seq`` the next event gets)."""
        return self._seq

    def append(self, event: str, **fields: Any) -> dict:
        record = {"seq": self._seq, "event": event, **fields}
        self._file.write(dumps(record) + "\n")
        self._file.flush()
        if self.sync == "fsync":
            os.fsync(self._file.fileno())
        self._seq += 1
        return record

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

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
    """Writes JSON to ``path`` via a temporary file and ``os.replace``: readers see the old or the new file."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(obj))
        f.flush()
        if sync == "fsync":
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
