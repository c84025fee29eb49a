"""Read MXNet NDArray-list files (Gluon ``.params``) into numpy, without MXNet.

The format is MXNet's ``NDArray::Save(stream, arrays, names)`` (``src/ndarray/ndarray.cc``), written little-endian
through ``dmlc::Stream``:

- ``uint64`` list magic ``0x112``, ``uint64`` reserved (0), ``uint64`` number of arrays, then each array:

  - ``uint32`` array magic: ``0xF993FAC9`` (V2, with a storage type), ``0xF993FACA`` (V3, NumPy shape semantics),
    ``0xF993FAC8`` (V1); any other value is the ``ndim`` of the oldest format, whose shape follows as ``uint32`` s;
  - V2/V3: ``int32`` storage type (0 dense, 1 row_sparse, 2 csr; sparse arrays then give their storage shape);
  - shape: ``int32`` ndim and ``ndim`` x ``int64`` (V2 ndim 0, or V3 ndim -1 / a dim -1: an empty array, nothing
    follows);
  - context: ``int32`` device type, ``int32`` device id (ignored: everything loads on the host);
  - ``int32`` mshadow type flag (0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64, 7 bool,
    8 int16, 9 uint16, 10 uint32, 11 uint64, 12 bfloat16); sparse arrays then give each aux array's type and shape;
  - the raw data (row-major), then a sparse array's aux data.

- ``uint64`` number of names (0 or the number of arrays), each a ``uint64`` length and that many UTF-8 bytes.

Gluon's published model-zoo files are ``<name>-<sha1[:8]>.zip`` archives holding ``<name>-<sha1[:8]>.params``;
:func:`read_params` takes either. Every length field is checked against the bytes left in the file before anything
is allocated, so a truncated or crafted file raises :class:`ParamsFormatError` (naming the field and offset) instead
of reading garbage or allocating gigabytes. Only dense arrays are accepted; a sparse one is named in the error.

Example::

    params = read_params("resnet50_v1-cc729d95.zip")   # {'features.0.weight': np.ndarray (64, 3, 7, 7), ...}
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import zipfile
from typing import BinaryIO, Iterator

import ml_dtypes
import numpy as np

__all__ = ["ParamsFormatError", "read_params", "is_mxnet_params", "params_sha1", "LIST_MAGIC"]

LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
MAX_NDIM = 32
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"), 4: np.dtype("<i4"),
    5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"), 8: np.dtype("<i2"), 9: np.dtype("<u2"),
    10: np.dtype("<u4"), 11: np.dtype("<u8"), 12: np.dtype(ml_dtypes.bfloat16),
}
STORAGE_TYPES = {0: "dense", 1: "row_sparse", 2: "csr"}
_AUX_ARRAYS = {1: 1, 2: 2}          # row_sparse: indices; csr: indptr, indices
# The fewest bytes an array record can take (an empty array of the oldest format: its ndim 0), to bound the count.
_MIN_ARRAY_BYTES = 4


class ParamsFormatError(ValueError):
    """The file is not a well-formed MXNet NDArray list (or holds what jaxgluon does not read: sparse arrays)."""


class _Reader:
    """Forward-only reads from a stream of known length; no read may pass its end."""

    def __init__(self, stream: BinaryIO, size: int, name: str):
        self.stream, self.size, self.name, self.pos = stream, size, name, 0

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def error(self, message: str) -> ParamsFormatError:
        return ParamsFormatError(f"{self.name}: {message}")

    def read(self, nbytes: int, what: str) -> bytearray:
        if nbytes < 0 or nbytes > self.remaining:
            raise self.error(f"truncated or corrupt: {what} needs {nbytes} bytes at offset {self.pos}, but only "
                             f"{self.remaining} remain in the file")
        buffer = bytearray(nbytes)
        got = self.stream.readinto(buffer) if nbytes else 0
        if got != nbytes:
            raise self.error(f"truncated: {what} needs {nbytes} bytes at offset {self.pos}, the file ended after "
                             f"{got}")
        self.pos += nbytes
        return buffer

    def skip(self, nbytes: int, what: str) -> None:
        # In bounded chunks, so that skipping never allocates more than a few MiB at once.
        if nbytes < 0 or nbytes > self.remaining:
            raise self.error(f"truncated or corrupt: {what} needs {nbytes} bytes at offset {self.pos}, but only "
                             f"{self.remaining} remain in the file")
        while nbytes:
            step = min(nbytes, 1 << 22)
            self.read(step, what)
            nbytes -= step

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt), what))


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _shape(r: _Reader, what: str, *, dim_format: str = "q", ndim: int | None = None,
           allow_unknown: bool = False) -> tuple[int, ...] | None:
    """A shape (``int32`` ndim, then dims); None for MXNet's 'unknown' shape (ndim -1 or a dim -1 in V3)."""
    if ndim is None:
        (ndim,) = r.unpack("i", f"{what} ndim")
    if ndim == -1 and allow_unknown:
        return None
    if not 0 <= ndim <= MAX_NDIM:
        raise r.error(f"corrupt {what}: ndim {ndim} at offset {r.pos - 4} (expected 0..{MAX_NDIM})")
    dims = r.unpack(f"{ndim}{dim_format}", f"{what} dims") if ndim else ()
    if allow_unknown and any(d == -1 for d in dims):
        return None
    if any(d < 0 for d in dims):
        raise r.error(f"corrupt {what}: negative dimension in {dims}")
    return tuple(int(d) for d in dims)


def _dtype(r: _Reader, flag: int, what: str) -> np.dtype:
    if flag not in DTYPES:
        raise r.error(f"{what} has unknown data type flag {flag} (known: {sorted(DTYPES)})")
    return DTYPES[flag]


def _data(r: _Reader, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    nbytes = _count(shape) * dtype.itemsize
    if nbytes > r.remaining:   # checked before anything is allocated: a crafted shape cannot ask for gigabytes
        raise r.error(f"truncated or corrupt: {what} of shape {shape} ({dtype.name}) needs {nbytes} bytes at offset "
                      f"{r.pos}, but only {r.remaining} remain in the file")
    array = np.frombuffer(r.read(nbytes, what), dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == "<" else array


def _array(r: _Reader, index: int) -> np.ndarray | str | None:
    """One array record: a numpy array, None for an empty (shape-less) array, or the storage name if sparse."""
    what = f"array #{index}"
    (magic,) = r.unpack("I", f"{what} magic")
    stype = 0
    if magic in (V2_MAGIC, V3_MAGIC):
        (stype,) = r.unpack("i", f"{what} storage type")
        if stype not in STORAGE_TYPES:
            raise r.error(f"{what} has unknown storage type {stype} (known: {STORAGE_TYPES}); only dense arrays "
                          "can be read")
        if stype:
            _shape(r, f"{what} storage shape")
        shape = _shape(r, f"{what} shape", allow_unknown=magic == V3_MAGIC)
        if shape is None or (magic == V2_MAGIC and not shape):
            return None
    elif magic == V1_MAGIC:
        shape = _shape(r, f"{what} shape")
        if not shape:
            return None
    elif magic <= MAX_NDIM:      # the oldest format: the first word is ndim, dims are uint32
        shape = _shape(r, f"{what} shape", dim_format="I", ndim=magic)
        if not shape:
            return None
    else:
        raise r.error(f"{what} at offset {r.pos - 4} has bad magic 0x{magic:08X} (expected 0x{V2_MAGIC:08X} or "
                      f"0x{V3_MAGIC:08X}); not an MXNet NDArray")
    r.unpack("ii", f"{what} context")
    (flag,) = r.unpack("i", f"{what} data type")
    dtype = _dtype(r, flag, what)
    if stype:   # parse past it (every length still checked), so that the error can name it once names are read
        aux = []
        for i in range(_AUX_ARRAYS[stype]):
            (aux_flag,) = r.unpack("i", f"{what} aux type")
            aux.append((_dtype(r, aux_flag, f"{what} aux array {i}"), _shape(r, f"{what} aux shape")))
        # Sized as MXNet's loader sizes it (NDArray::Chunk::CheckAndAlloc), from the aux shapes: row_sparse
        # stores one row per index, csr one value per column index. The saved storage shape can be stale.
        rows = aux[0][1][0] if aux[0][1] else 0
        values = rows * _count(shape[1:]) if stype == 1 else _count(aux[-1][1])
        r.skip(values * dtype.itemsize, f"{what} sparse values")
        for aux_dtype, aux_shape in aux:
            r.skip(_count(aux_shape) * aux_dtype.itemsize, f"{what} sparse indices")
        return STORAGE_TYPES[stype]
    return _data(r, shape, dtype, f"{what} data")


def _read_list(r: _Reader) -> dict[str, np.ndarray]:
    if r.size < 16:
        raise r.error(f"too short for an MXNet NDArray file ({r.size} bytes)")
    magic, _reserved = r.unpack("QQ", "list header")
    if magic != LIST_MAGIC:
        raise r.error(f"bad list magic 0x{magic:X} (an MXNet .params file starts with 0x{LIST_MAGIC:X}); "
                      "not an MXNet NDArray list")
    (count,) = r.unpack("Q", "array count")
    if count * _MIN_ARRAY_BYTES > r.remaining:
        raise r.error(f"corrupt: the header announces {count} arrays, more than the {r.remaining} bytes left can "
                      "hold")
    arrays = [_array(r, i) for i in range(count)]
    (name_count,) = r.unpack("Q", "name count")
    if name_count == 0 and count:
        raise r.error(f"holds {count} unnamed arrays (saved from a list, not a dict of parameters); weights need "
                      "their parameter names")
    if name_count != count:
        raise r.error(f"corrupt: {name_count} names for {count} arrays")
    names = []
    for i in range(name_count):
        (length,) = r.unpack("Q", f"name #{i} length")
        raw = r.read(length, f"name #{i}")   # bounds-checked against the bytes left before allocating
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise r.error(f"corrupt: name #{i} is not UTF-8") from None
    out: dict[str, np.ndarray] = {}
    for name, array in zip(names, arrays):
        if name in out:
            raise r.error(f"corrupt: parameter {name!r} appears twice")
        if isinstance(array, str):
            raise r.error(f"parameter {name!r} has {array} storage; only dense arrays can be loaded (convert it "
                          "with .tostype('default') and save again)")
        if array is None:
            raise r.error(f"parameter {name!r} is an empty array with no shape")
        out[name] = array
    return out


@contextlib.contextmanager
def _open(path: str | os.PathLike) -> Iterator[_Reader]:
    """A reader over the ``.params`` file, or over the one ``.params`` member of a model-zoo ``.zip``."""
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".params") and not m.is_dir()]
            if len(members) != 1:
                raise ParamsFormatError(
                    f"{path}: expected exactly one .params file in the zip archive, found "
                    f"{[m.filename for m in members] or 'none'} (members: {archive.namelist()[:10]})")
            with archive.open(members[0]) as stream:
                yield _Reader(stream, members[0].file_size, f"{path}:{members[0].filename}")
        return
    with open(path, "rb") as stream:
        yield _Reader(stream, os.fstat(stream.fileno()).st_size, path)


def read_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` from an MXNet ``.params`` file (or a zip holding one), in file order."""
    with _open(path) as reader:
        return _read_list(reader)


def is_mxnet_params(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an MXNet NDArray list (by its first 16 bytes), or a zip archive holding a ``.params``."""
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith(".params") for n in archive.namelist())
    with open(path, "rb") as f:
        head = f.read(16)
    return len(head) == 16 and struct.unpack("<QQ", head) == (LIST_MAGIC, 0)


def params_sha1(path: str | os.PathLike) -> str:
    """sha1 hex digest of the ``.params`` bytes (of the member, for a zip): what GluonCV's model store checks."""
    digest = hashlib.sha1()
    with _open(path) as reader:
        while reader.remaining:
            digest.update(reader.read(min(reader.remaining, 1 << 22), "data"))
        if reader.stream.read(1):
            raise reader.error("longer than its recorded size")
    return digest.hexdigest()
