"""Download a weights file once: sha256-checked, written atomically, reused when already there.

Example::

    path = download("https://download.pytorch.org/models/resnet18-f37072fd.pth", cache_root() / "downloads",
                    sha256_prefix="f37072fd")
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import pathlib
import tempfile
import urllib.request
from typing import Callable

__all__ = ["download", "sha256_of", "ChecksumError", "IncompleteDownloadError"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's sha256 does not start with the published prefix (corrupt, truncated or tampered)."""


class IncompleteDownloadError(IOError):
    """The server closed the connection before sending the announced number of bytes."""


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: str | os.PathLike, sha256_prefix: str | None) -> None:
    """Raise ChecksumError unless the file's sha256 hex digest starts with ``sha256_prefix`` (None: no check)."""
    if sha256_prefix:
        actual = sha256_of(path)
        if not actual.startswith(sha256_prefix.lower()):
            raise ChecksumError(f"{path}: sha256 {actual[:16]}... does not start with the expected {sha256_prefix}")


def download(url: str, directory: str | os.PathLike, *, filename: str | None = None,
             sha256_prefix: str | None = None, verify: Callable[[pathlib.Path], None] | None = None,
             timeout: float = 30.0) -> pathlib.Path:
    """Fetch ``url`` into ``directory/filename`` unless that file exists; return its path.

    The body streams into a temporary file in the same directory, is checked against ``sha256_prefix``, the
    announced Content-Length and ``verify`` (called with the temporary file's path; it raises to refuse the file,
    e.g. :class:`ChecksumError` for a checksum of the archive's content), and only then renamed into place, so an
    interrupted or corrupt download never leaves a file at the final path.
    """
    directory = pathlib.Path(directory)
    target = directory / (filename or url.rsplit("/", 1)[-1])
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        received = 0
        log.warning("downloading %s -> %s", url, target)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            try:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
            except http.client.IncompleteRead as err:
                raise IncompleteDownloadError(f"{url}: connection closed early ({err})") from err
        if expected is not None and received != int(expected):
            raise IncompleteDownloadError(f"{url}: got {received} of {expected} bytes; connection closed early")
        if sha256_prefix and not digest.hexdigest().startswith(sha256_prefix.lower()):
            raise ChecksumError(f"{url}: sha256 {digest.hexdigest()[:16]}... does not start with the published "
                                f"{sha256_prefix}; refusing the file")
        if verify is not None:
            verify(pathlib.Path(tmp_name))
        os.replace(tmp_name, target)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return target
