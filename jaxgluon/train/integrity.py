"""Integrity of saved models: a manifest of sha256 digests of every file, and schema checks of their JSON files.

A directory written by ``TrainedModel.save`` or ``Results.save`` ends with ``manifest.json``, written last::

    {"format": "jaxgluon.manifest/1", "algorithm": "sha256",
     "files": {"meta.json": {"size": 235, "sha256": "9f86d0..."}, "variables/_METADATA": {...}, ...}}

It lists every file below the directory, except that a subdirectory holding its own ``manifest.json`` (the
``model/`` of a saved ``Results``) is listed by that manifest alone, which is verified when the subdirectory is
loaded. Loading checks every listed file's size and digest before anything is read, so a bit flipped anywhere
(weights, ``meta.json``, the manifest itself) is an error naming the file, not a model that silently predicts one
class. Unlisted files are ignored with a warning (nothing jaxgluon reads can hide in them: every file it reads is
listed).

Models saved before manifests existed have none: they load with a warning (their files cannot be checked), unless
their JSON says a manifest was written (the ``"manifest"`` field that saves add), in which case the save was cut
short and loading refuses.

    write_manifest(directory)           # after every other file is written
    verify_manifest(directory)          # True: verified; False: no manifest (a legacy save); else SavedModelError
    validate_json(meta, META_SCHEMA, "out/model/meta.json")
"""
from __future__ import annotations

import json
import os
import pathlib
import warnings
from typing import TYPE_CHECKING, Any, Mapping

from jaxgluon.models.weights.download import sha256_of

if TYPE_CHECKING:
    import jsonschema

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "jaxgluon.manifest/1"
MANIFEST_FIELD = "manifest"  # what a saved JSON file holds when its directory got a manifest

MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "algorithm", "files"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": MANIFEST_FORMAT},
        "algorithm": {"const": "sha256"},
        "files": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["size", "sha256"], "additionalProperties": False,
            "properties": {"size": {"type": "integer", "minimum": 0},
                           "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
    },
}


class SavedModelError(ValueError):
    """A saved model directory is corrupt, incomplete, or not a saved model; the message names the file."""


def file_digest(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file (the weights downloader's, read in chunks)."""
    return sha256_of(path)


def _listed_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """Files below ``directory`` (sorted), a nested directory with its own manifest standing for itself by it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        here = pathlib.Path(dirpath)
        if here != directory and MANIFEST_FILE in filenames and _is_manifest(here / MANIFEST_FILE):
            found.append(here / MANIFEST_FILE)
            dirnames[:] = []
            continue
        dirnames.sort()
        found.extend(here / name for name in filenames if not (here == directory and name == MANIFEST_FILE))
    return sorted(found)


def _is_manifest(path: pathlib.Path) -> bool:
    """Whether ``path`` is a jaxgluon manifest (not some other program's ``manifest.json``)."""
    try:
        return json.loads(path.read_bytes()).get("format") == MANIFEST_FORMAT
    except (ValueError, AttributeError, OSError):
        return False


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any, **dumps_kw: Any) -> None:
    """Writes JSON through a temporary file, fsync and rename (readers see the old file or the whole new one)."""
    _write_atomic(pathlib.Path(path), json.dumps(obj, **dumps_kw))


def write_manifest(directory: str | os.PathLike) -> pathlib.Path:
    """Writes ``directory/manifest.json`` with the size and sha256 of every file below it (module docstring)."""
    directory = pathlib.Path(directory)
    files = {p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": file_digest(p)}
             for p in _listed_files(directory)}
    manifest = {"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}
    path = directory / MANIFEST_FILE
    _write_atomic(path, json.dumps(manifest, separators=(",", ":"), sort_keys=True))
    return path


def _corrupt(directory: pathlib.Path, name: str, problem: str) -> SavedModelError:
    return SavedModelError(
        f"the saved model {directory} is corrupt: {name} {problem}. The directory changed after it was saved (a disk "
        "or copy error, or an edit); restore it from a backup or save the model again")


def verify_manifest(directory: str | os.PathLike) -> bool:
    """Checks every file ``directory/manifest.json`` lists (size, then sha256).

    Returns:
      True when every listed file matches; False when the directory has no manifest (a save that predates them).

    Raises:
      SavedModelError: the manifest is unreadable or invalid, or a listed file is missing or differs; the message
        names the file.
    """
    directory = pathlib.Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _corrupt(directory, MANIFEST_FILE, f"is not valid JSON ({err})") from err
    validate_json(manifest, MANIFEST_SCHEMA, str(path), error=lambda msg: _corrupt(directory, MANIFEST_FILE, msg))
    for name, entry in sorted(manifest["files"].items()):
        file = directory / name
        if ".." in pathlib.PurePosixPath(name).parts or pathlib.PurePosixPath(name).is_absolute():
            raise _corrupt(directory, MANIFEST_FILE, f"lists a path outside the directory ({name!r})")
        if not file.is_file():
            raise _corrupt(directory, name, f"is missing (listed in {MANIFEST_FILE})")
        size = file.stat().st_size
        if size != entry["size"]:
            raise _corrupt(directory, name, f"has {size} bytes where {MANIFEST_FILE} records {entry['size']}")
        digest = file_digest(file)
        if digest != entry["sha256"]:
            raise _corrupt(directory, name, f"has sha256 {digest[:16]}... where {MANIFEST_FILE} records "
                                            f"{entry['sha256'][:16]}...")
    listed = {directory / name for name in manifest["files"]}
    extra = [p.relative_to(directory).as_posix() for p in _listed_files(directory) if p not in listed]
    if extra:
        warnings.warn(f"{directory}: ignoring {len(extra)} file(s) that are not part of the saved model: "
                      f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}", RuntimeWarning, stacklevel=2)
    return True


def check_saved(directory: str | os.PathLike, saved_json: Mapping[str, Any] | None, json_name: str) -> None:
    """After :func:`verify_manifest` returned False: warns for a legacy save, refuses a save that was cut short."""
    if isinstance(saved_json, Mapping) and MANIFEST_FIELD in saved_json:
        raise SavedModelError(
            f"the saved model {directory} is incomplete: its {json_name} says a {MANIFEST_FILE} was written, but "
            f"there is none (the save was interrupted, or the file was deleted); save the model again")
    warnings.warn(
        f"{directory} has no {MANIFEST_FILE} (it was saved before jaxgluon verified saved models): its files cannot "
        "be checked for corruption. Save it again (load it, then .save(new_dir)) to add one", RuntimeWarning,
        stacklevel=3)


def read_json_file(path: pathlib.Path, what: str) -> Any:
    """Parses a saved JSON file; a clear :class:`SavedModelError` when it is unreadable."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SavedModelError(f"{path} is not valid JSON ({err}); {what}") from err


def _path(error: jsonschema.ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                   for i, p in enumerate(error.absolute_path)) or "(top level)"


def validate_json(obj: Any, schema: Mapping[str, Any], where: str, *, error: Any = None) -> None:
    """Validates ``obj`` against a JSON ``schema``; raises one :class:`SavedModelError` listing every problem.

    A missing key reads ``net: missing (required)``; a bound ``image_size: 100000 is greater than the maximum of
    2048``. ``error`` (message -> exception) replaces the default exception.
    """
    import jsonschema  # imported on first use: loading a model needs it, importing jaxgluon does not

    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        if err.validator == "required":
            missing = [k for k in err.validator_value if not (isinstance(err.instance, dict) and k in err.instance)]
            prefix = "" if not err.absolute_path else _path(err) + "."
            problems.extend(f"{prefix}{k}: missing (required)" for k in missing)
        else:
            problems.append(f"{_path(err)}: {err.message}")
    if problems:
        message = "; ".join(dict.fromkeys(problems))
        if error is not None:
            raise error(f"does not match its schema ({message})")
        raise SavedModelError(f"{where} is invalid: {message}")
