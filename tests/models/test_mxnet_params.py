"""The MXNet ``.params`` reader: files MXNet itself wrote, the exact layout, and clear errors on bad files."""
from __future__ import annotations

import hashlib
import pathlib
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from mxnet_writer import CPU, V2_MAGIC, dense_record, params_bytes, params_file_bytes, row_sparse_record

from jaxgluon.models.weights import ParamsFormatError, is_mxnet_params, params_sha1, read_params, read_state_dict

FILES = pathlib.Path(__file__).parent / "gluon_files"


@pytest.fixture(scope="module")
def expected():
    with np.load(FILES / "mxnet191_expected.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", ["mixed", "v3"])
def test_reads_what_mxnet_wrote(name, expected):
    """V2 arrays of five dtypes and V3 (NumPy-semantics) arrays incl. a 0-d scalar, exactly as MXNet loads them."""
    params = read_params(FILES / f"mxnet191_{name}.params")
    want = {k.split("/", 1)[1]: v for k, v in expected.items() if k.startswith(name + "/")}
    assert list(params) == list(want)
    for key, value in want.items():
        assert params[key].dtype == value.dtype and params[key].shape == value.shape, key
        np.testing.assert_array_equal(params[key], value, err_msg=key)


def test_sparse_array_is_refused_by_name():
    """MXNet's own row_sparse and csr records are parsed to the end (every length checked), then named."""
    with pytest.raises(ParamsFormatError, match="'rsp' has row_sparse storage; only dense"):
        read_params(FILES / "mxnet191_sparse.params")


def test_unnamed_list_is_refused():
    with pytest.raises(ParamsFormatError, match="unnamed arrays"):
        read_params(FILES / "mxnet191_list.params")


def _write(directory: pathlib.Path, body: bytes, name: str = "x.params") -> pathlib.Path:
    path = directory / name
    path.write_bytes(body)
    return path


def test_writer_matches_mxnet_byte_for_byte(expected):
    """The test writer (used to build whole networks below) produces MXNet's exact bytes."""
    arrays = {k.split("/", 1)[1]: v for k, v in expected.items() if k.startswith("mixed/")}
    assert params_file_bytes(arrays) == (FILES / "mxnet191_mixed.params").read_bytes()


def test_roundtrip_zip_sha1_and_detection(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"features.0.weight": rng.normal(size=(4, 3, 7, 7)).astype(np.float32),
              "output.bias": np.arange(3, dtype=np.int32), "é": np.zeros((0, 2), np.float16)}
    body = params_file_bytes(arrays)
    plain = _write(tmp_path, body, "net-abc.params")
    archive = tmp_path / "net-abc.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("net-abc.params", body)
    for path in (plain, archive):
        params = read_params(path)
        assert list(params) == list(arrays) and is_mxnet_params(path)
        for key in arrays:
            np.testing.assert_array_equal(params[key], arrays[key])
            assert params[key].dtype == arrays[key].dtype
        assert params_sha1(path) == hashlib.sha1(body).hexdigest()
        assert list(read_state_dict(path)) == list(arrays)        # the store's reader dispatches on content
    params["features.0.weight"][0, 0, 0, 0] = 1.0                  # writable, owned arrays
    (tmp_path / "other.params").write_bytes(b"\x80\x02" + b"\0" * 30)
    assert not is_mxnet_params(tmp_path / "other.params")


def test_zip_without_exactly_one_params_is_refused(tmp_path):
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.params", params_file_bytes({"a": np.ones(1, np.float32)}))
        zf.writestr("b.params", params_file_bytes({"b": np.ones(1, np.float32)}))
    with pytest.raises(ParamsFormatError, match="exactly one .params"):
        read_params(archive)


def _small() -> bytes:
    return params_file_bytes({"conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
                              "bn.running_var": np.ones(4, np.float64)})


def test_every_truncation_is_a_clear_error(tmp_path):
    body = _small()
    path = tmp_path / "cut.params"
    for length in range(len(body)):
        path.write_bytes(body[:length])
        with pytest.raises(ParamsFormatError, match="truncated|too short|corrupt") as info:
            read_params(path)
        assert str(path) in str(info.value)


def test_wrong_magics(tmp_path):
    body = bytearray(_small())
    body[0:8] = struct.pack("<Q", 0x113)
    with pytest.raises(ParamsFormatError, match="bad list magic 0x113"):
        read_params(_write(tmp_path, bytes(body)))
    body = bytearray(_small())
    body[24:28] = struct.pack("<I", 0xDEADBEEF)                   # the first array's magic
    with pytest.raises(ParamsFormatError, match="array #0 .*bad magic 0xDEADBEEF"):
        read_params(_write(tmp_path, bytes(body)))


def test_unknown_dtype_and_storage_type(tmp_path):
    record = bytearray(dense_record(np.ones(2, np.float32)))
    record[4:8] = struct.pack("<i", 7)                               # storage type 7
    with pytest.raises(ParamsFormatError, match="unknown storage type 7"):
        read_params(_write(tmp_path, params_bytes([bytes(record)], ["w"])))
    record = bytearray(dense_record(np.ones(2, np.float32)))
    record[28:32] = struct.pack("<i", 99)                            # type flag after magic/stype/shape/context
    with pytest.raises(ParamsFormatError, match="unknown data type flag 99"):
        read_params(_write(tmp_path, params_bytes([bytes(record)], ["w"])))


def test_sparse_record_written_here_is_refused_by_name(tmp_path):
    dense = np.array([[0, 1], [0, 0], [2, 3]], np.float32)
    body = params_bytes([dense_record(np.ones(2, np.float32)), row_sparse_record(dense)], ["w", "emb.weight"])
    with pytest.raises(ParamsFormatError, match="'emb.weight' has row_sparse storage"):
        read_params(_write(tmp_path, body))


@pytest.mark.parametrize("field", ["array count", "dims", "ndim", "name length", "name count", "sparse aux shape"])
def test_oversized_length_fields_fail_without_allocating(tmp_path, field):
    """A crafted length field is refused against the bytes left in the file, before any allocation."""
    good = dense_record(np.ones(2, np.float32))
    if field == "array count":
        body = struct.pack("<QQQ", 0x112, 0, 1 << 60) + good
        match = "announces 1152921504606846976 arrays"
    elif field == "dims":                      # a (2^20, 2^20) float32 array: 4 TiB
        body = params_bytes([struct.pack("<Ii", V2_MAGIC, 0) + struct.pack("<i2q", 2, 1 << 20, 1 << 20)
                             + CPU + struct.pack("<i", 0)], ["w"])
        match = r"shape \(1048576, 1048576\) .*needs 4398046511104 bytes"
    elif field == "ndim":
        body = params_bytes([struct.pack("<Iii", V2_MAGIC, 0, 1 << 30)], ["w"])
        match = "ndim 1073741824"
    elif field == "name length":
        body = params_bytes([good], ["w"])[:-9] + struct.pack("<Q", 1 << 62) + b"w"
        match = "name #0 needs 4611686018427387904 bytes"
    elif field == "name count":
        body = params_bytes([good], [])[:-8] + struct.pack("<Q", 1 << 40)
        match = "1099511627776 names for 1 arrays"
    else:                                      # row_sparse with a claimed 2^40 stored rows
        dense = np.array([[0, 1], [2, 3]], np.float32)
        record = bytearray(row_sparse_record(dense))
        aux_dim = record.index(struct.pack("<ii", 6, 1)) + 8        # aux type int64, ndim 1, then the dim
        record[aux_dim:aux_dim + 8] = struct.pack("<q", 1 << 40)
        body = params_bytes([bytes(record)], ["emb"])
        match = "sparse values needs 8796093022208 bytes"
    path = _write(tmp_path, body)
    tracemalloc.start()
    try:
        with pytest.raises(ParamsFormatError, match=match):
            read_params(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_duplicate_names_and_trailing_names_mismatch(tmp_path):
    good = dense_record(np.ones(2, np.float32))
    with pytest.raises(ParamsFormatError, match="'w' appears twice"):
        read_params(_write(tmp_path, params_bytes([good, good], ["w", "w"])))
    with pytest.raises(ParamsFormatError, match="2 names for 1 arrays"):
        read_params(_write(tmp_path, params_bytes([good], ["w", "v"])))
