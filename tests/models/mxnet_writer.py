"""Write MXNet NDArray-list files with numpy, laid out as MXNet 1.x's ``NDArray::Save`` writes them (tests only).

Written from MXNet's ``src/ndarray/ndarray.cc`` independently of the reader under test; checked against files that
MXNet 1.9.1 itself wrote (``gluon_files/``).
"""
from __future__ import annotations

import struct

import numpy as np

LIST_MAGIC, V2_MAGIC = 0x112, 0xF993FAC9
TYPE_FLAGS = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2, np.dtype(np.uint8): 3,
              np.dtype(np.int32): 4, np.dtype(np.int8): 5, np.dtype(np.int64): 6, np.dtype(np.bool_): 7}
CPU = struct.pack("<ii", 1, 0)      # Context: dev_type kCPU = 1, dev_id 0


def _shape(shape) -> bytes:
    return struct.pack("<i", len(shape)) + struct.pack(f"<{len(shape)}q", *shape)


def dense_record(array: np.ndarray, magic: int = V2_MAGIC) -> bytes:
    """One dense array: magic, storage type 0, shape, context, type flag, data."""
    a = np.ascontiguousarray(array)
    return (struct.pack("<Ii", magic, 0) + _shape(a.shape) + CPU + struct.pack("<i", TYPE_FLAGS[a.dtype])
            + a.astype(a.dtype.newbyteorder("<")).tobytes())


def row_sparse_record(dense: np.ndarray) -> bytes:
    """A row_sparse array (storage type 1): storage shape, shape, context, type, aux (int64 row indices), data."""
    rows = np.flatnonzero(np.abs(dense).sum(axis=tuple(range(1, dense.ndim))) > 0)
    values = np.ascontiguousarray(dense[rows], dtype=np.float32)
    return (struct.pack("<Ii", V2_MAGIC, 1) + _shape(values.shape) + _shape(dense.shape) + CPU
            + struct.pack("<i", 0) + struct.pack("<i", 6) + _shape((len(rows),)) + values.tobytes()
            + rows.astype("<i8").tobytes())


def params_bytes(records: list[bytes], names: list[str]) -> bytes:
    """The list: magic, reserved, count, records, then the names (uint64 length + UTF-8 bytes each)."""
    out = struct.pack("<QQQ", LIST_MAGIC, 0, len(records)) + b"".join(records)
    encoded = [n.encode("utf-8") for n in names]
    return out + struct.pack("<Q", len(encoded)) + b"".join(struct.pack("<Q", len(n)) + n for n in encoded)


def params_file_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """What ``mx.nd.save(path, arrays)`` writes for a dict of dense arrays."""
    return params_bytes([dense_record(a) for a in arrays.values()], list(arrays))
