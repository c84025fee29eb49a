"""Read PyTorch checkpoints into numpy without importing torch -- and without running their pickles' code.

A ``torch.save`` file is a pickle whose tensors refer to raw storages kept beside it: in the zip format (torch >= 1.6)
as ``<archive>/data/<key>`` members, in the legacy format as blobs appended after the pickle. The pickle itself may
name any importable callable, so loading it with ``pickle.load`` executes whatever the file asks for.
:class:`RestrictedUnpickler` resolves only the few globals a state dict needs (the tensor-rebuild helpers, the
storage types, ``collections.OrderedDict``) to harmless local stand-ins and refuses every other global with
:class:`UnsafeCheckpointError` before anything is called. Loading is hermetic: each unpickler builds its own
stand-ins, which refuse pickle's BUILD (``__setstate__``) and have no ``__dict__``, so no file can change what a
later load in the same process sees.

Example::

    state = load_torch_checkpoint("resnet18-f37072fd.pth")    # {'conv1.weight': np.ndarray (64, 3, 7, 7), ...}
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

__all__ = ["UnsafeCheckpointError", "RestrictedUnpickler", "load_torch_checkpoint", "extract_state_dict"]

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle names a global outside the tensor-rebuild allow-list; nothing was executed."""


class _Sealed:
    """Base of the loader's own objects: no ``__dict__``, and pickle's BUILD opcode on them is refused."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(
            f"refusing to set state on {self!r}: a weights file may not modify the loader's objects (pickle BUILD)")

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} is the checkpoint reader's own object and is not picklable")


class _StorageType(_Sealed):
    """Stand-in for ``torch.FloatStorage`` and friends: only carries the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Global(_Sealed):
    """An allow-listed callable (the tensor-rebuild helpers, ``OrderedDict``) as the pickle sees it."""

    __slots__ = ("name", "_fn")

    def __init__(self, name: str, fn: Any):
        self.name, self._fn = name, fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __repr__(self) -> str:
        return self.name


class _Storage(_Sealed):
    """A storage referenced by the pickle; ``data`` (a flat numpy array) is filled in once its bytes are read."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data: np.ndarray | None = None


class _LazyTensor(_Sealed):
    """A tensor whose storage bytes may not be read yet (the legacy format stores them after the pickle)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise pickle.UnpicklingError(f"storage {self.storage.key!r} was referenced but never stored in the file")
        values = (self.offset,) + self.size + self.stride
        if len(self.size) != len(self.stride) or any(not isinstance(v, int) or v < 0 for v in values):
            raise pickle.UnpicklingError(f"invalid tensor layout (offset {self.offset}, size {self.size}, "
                                         f"stride {self.stride}) in storage {self.storage.key!r}")
        if not self.size:
            if self.offset >= data.size:
                raise pickle.UnpicklingError(f"scalar tensor overruns its storage {self.storage.key!r}")
            return np.array(data[self.offset])
        needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if min(self.size) > 0 and needed > data.size:
            raise pickle.UnpicklingError(f"tensor of shape {self.size} overruns its storage {self.storage.key!r}")
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False)
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError("tensor rebuild called with something other than a storage")
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_ignored):
    return data


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


_ALLOWED_CALLABLES: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


def allowed_globals() -> dict[tuple[str, str], Any]:
    """A fresh set of the stand-ins a pickle may name (one per load: nothing is shared between loads)."""
    return {**{key: _Global(".".join(key), fn) for key, fn in _ALLOWED_CALLABLES.items()},
            **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES}}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only knows the tensor-rebuild globals; ``storages`` collects the storages it met by key.

    Its stand-ins are its own (:func:`allowed_globals`), and refuse BUILD/``__setstate__``.
    """

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}
        self._globals = allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load global {module}.{name}: a weights file may only rebuild tensors "
                "(torch._utils._rebuild_tensor*, torch.*Storage, collections.OrderedDict). "
                "Only load checkpoints you trust, and re-save them as a plain state_dict or .safetensors.") from None

    def persistent_load(self, saved_id: Any) -> _Storage:
        if not isinstance(saved_id, tuple) or not saved_id:
            raise UnsafeCheckpointError(f"unexpected persistent id {saved_id!r}")
        kind = saved_id[0].decode("ascii") if isinstance(saved_id[0], bytes) else saved_id[0]
        if kind != "storage" or len(saved_id) < 5:
            raise UnsafeCheckpointError(f"unexpected persistent id kind {kind!r}")
        storage_type, key, _location, numel = saved_id[1:5]
        view_metadata = saved_id[5] if len(saved_id) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"storage of unknown type {storage_type!r}")
        key = str(key)
        storage = self.storages.setdefault(key, _Storage(key, storage_type.dtype, int(numel)))
        if view_metadata is not None:
            raise pickle.UnpicklingError("legacy storage views are not supported; re-save the checkpoint")
        return storage


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise pickle.UnpicklingError(f"{path}: zip file without <archive>/data.pkl; not a torch.save checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        unpickler = RestrictedUnpickler(io.BytesIO(archive.read(pkl[0])))
        result = unpickler.load()
        for key, storage in unpickler.storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
            storage.data = np.frombuffer(raw, dtype=dtype, count=storage.numel).astype(storage.dtype, copy=False)
    return _materialize(result)


def _load_legacy(f: BinaryIO, path: str) -> Any:
    def load_small() -> Any:
        return RestrictedUnpickler(f).load()

    if load_small() != _LEGACY_MAGIC_NUMBER:
        raise pickle.UnpicklingError(f"{path}: not a torch.save checkpoint (bad magic number)")
    if load_small() != _LEGACY_PROTOCOL_VERSION:
        raise pickle.UnpicklingError(f"{path}: unsupported legacy torch protocol version")
    sys_info = load_small()
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    unpickler = RestrictedUnpickler(f)
    result = unpickler.load()
    storage_keys = load_small()
    for key in storage_keys:
        storage = unpickler.storages.get(str(key))
        if storage is None:
            raise pickle.UnpicklingError(f"{path}: storage {key!r} listed but never referenced")
        (numel,) = struct.unpack("<q" if little else ">q", f.read(8))
        nbytes = numel * storage.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise pickle.UnpicklingError(f"{path}: file is truncated inside storage {key!r}")
        dtype = storage.dtype.newbyteorder("<" if little else ">")
        storage.data = np.frombuffer(raw, dtype=dtype).astype(storage.dtype, copy=False)
    return _materialize(result)


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) with tensors as numpy arrays; never imports torch."""
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as f:
        if f.read(262)[257:262] == b"ustar":
            raise pickle.UnpicklingError(f"{path}: the tar-based torch format (torch < 0.4) is not supported")
        f.seek(0)
        return _load_legacy(f, path)


def extract_state_dict(checkpoint: Any) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict inside a loaded checkpoint (unwraps ``{'state_dict': ...}`` / ``'model'``)."""
    if isinstance(checkpoint, dict):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            inner = checkpoint.get(wrapper)
            if isinstance(inner, dict) and inner and all(isinstance(v, np.ndarray) for v in inner.values()):
                return dict(inner)
        arrays = {k: v for k, v in checkpoint.items() if isinstance(v, np.ndarray)}
        if arrays:
            return arrays
    raise ValueError("checkpoint holds no state dict of tensors (expected {name: tensor} or {'state_dict': {...}})")
