"""The torch-free checkpoint reader: both torch.save formats, safetensors, and refusal of code-running pickles."""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from jaxgluon.models.weights import (UnsafeCheckpointError, extract_state_dict, load_torch_checkpoint,
                                     read_state_dict)
from jaxgluon.models.weights.torch_pickle import _LEGACY_MAGIC_NUMBER, _LEGACY_PROTOCOL_VERSION


class _RunsShellCommand:
    """Unpickling this calls os.system: what a malicious checkpoint looks like."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _malicious_payload(marker) -> bytes:
    return pickle.dumps({"conv1.weight": _RunsShellCommand(f"touch {marker}")}, protocol=2)


def test_pickle_calling_os_system_is_refused_in_legacy_layout(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:        # a well-formed legacy header, then the malicious main pickle
        for header in (_LEGACY_MAGIC_NUMBER, _LEGACY_PROTOCOL_VERSION, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(_malicious_payload(marker))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_torch_checkpoint(path)
    assert not marker.exists()


def test_pickle_calling_os_system_is_refused_in_zip_layout(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _malicious_payload(marker))
    with pytest.raises(UnsafeCheckpointError):
        read_state_dict(path)
    assert not marker.exists()


def test_plain_pickle_with_arbitrary_global_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(collections.Counter("abc"), protocol=2))   # harmless class, still not allowed
    with pytest.raises(UnsafeCheckpointError, match="collections.Counter"):
        load_torch_checkpoint(path)


def test_legacy_layout_hand_built_reads_strided_views(tmp_path, monkeypatch):
    """A legacy file written without torch: two tensors sharing one storage, one of them a strided view."""
    storage = np.arange(12, dtype=np.float32)
    # Stand-ins importable as torch.FloatStorage / torch._utils._rebuild_tensor_v2, so pickle writes those GLOBALs.
    with monkeypatch.context() as mp:
        fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
        fake_torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
        fake_utils._rebuild_tensor_v2 = type("_rebuild_tensor_v2", (), {"__module__": "torch._utils"})
        mp.setitem(sys.modules, "torch", fake_torch)
        mp.setitem(sys.modules, "torch._utils", fake_utils)

        class Tensor:
            def __init__(self, offset, size, stride):
                self.args = (storage, offset, size, stride, False, collections.OrderedDict())

            def __reduce__(self):
                return (fake_utils._rebuild_tensor_v2, self.args)

        class Writer(pickle.Pickler):
            def persistent_id(self, obj):
                return ("storage", fake_torch.FloatStorage, "0", "cpu", 12, None) if obj is storage else None

        out = io.BytesIO()
        for header in (_LEGACY_MAGIC_NUMBER, _LEGACY_PROTOCOL_VERSION, {"little_endian": True}):
            pickle.dump(header, out, protocol=2)
        Writer(out, protocol=2).dump(collections.OrderedDict(
            [("a", Tensor(0, (3, 4), (4, 1))), ("b", Tensor(2, (3, 2), (1, 4)))]))
        pickle.dump(["0"], out, protocol=2)
        out.write(struct.pack("<q", 12) + storage.tobytes())
    path = tmp_path / "legacy.pth"
    path.write_bytes(out.getvalue())

    state = extract_state_dict(load_torch_checkpoint(path))
    np.testing.assert_array_equal(state["a"], storage.reshape(3, 4))
    np.testing.assert_array_equal(state["b"], [[storage[2 + i + 4 * j] for j in range(2)] for i in range(3)])


def test_tensor_layout_outside_its_storage_is_refused():
    from jaxgluon.models.weights.torch_pickle import _LazyTensor, _Storage
    storage = _Storage("0", np.dtype(np.float32), 4)
    storage.data = np.arange(4, dtype=np.float32)
    for offset, size, stride in [(0, (2, 3), (3, 1)), (-1, (2,), (1,)), (3, (2,), (-1,)), (5, (), ())]:
        with pytest.raises(pickle.UnpicklingError):
            _LazyTensor(storage, offset, size, stride).materialize()
    np.testing.assert_array_equal(_LazyTensor(storage, 1, (3,), (1,)).materialize(), [1, 2, 3])


def test_truncated_legacy_file_is_an_error_not_garbage(shared_dir, tmp_path):
    data = (shared_dir / "weights/cifar10_resnet/resnet20-12fca82f.th").read_bytes()
    path = tmp_path / "cut.th"
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        load_torch_checkpoint(path)


def test_shared_legacy_checkpoint_unwraps_state_dict(shared_dir):
    checkpoint = load_torch_checkpoint(shared_dir / "weights/cifar10_resnet/resnet20-12fca82f.th")
    assert "best_prec1" in checkpoint
    state = extract_state_dict(checkpoint)
    assert state["module.conv1.weight"].shape == (16, 3, 3, 3)
    assert state["module.linear.weight"].shape == (10, 64)
    assert state["module.bn1.running_var"].dtype == np.float32 and (state["module.bn1.running_var"] > 0).all()


def test_safetensors_file_is_read(tmp_path):
    from safetensors.numpy import save_file
    tensors = {"fc.weight": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32),
               "fc.bias": np.zeros(3, np.float32)}
    save_file(tensors, str(tmp_path / "w.safetensors"))
    state = read_state_dict(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(state["fc.weight"], tensors["fc.weight"])


def test_missing_file_and_non_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="no state dict"):
        extract_state_dict({"epoch": 3})


def test_matches_torch_load_for_both_formats(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is an optional dev extra")
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    state = collections.OrderedDict([
        ("w", torch.randn(4, 3, 2, 2, generator=gen)),
        ("t", base.t()),                       # non-contiguous
        ("view", base[2:4]),                   # shares base's storage with an offset
        ("half", torch.randn(7, generator=gen).half()),
        ("bf16", torch.randn(3, generator=gen).bfloat16()),
        ("count", torch.tensor(17)),
        ("param", torch.nn.Parameter(torch.randn(2, 2, generator=gen))),
    ])
    for legacy in (False, True):
        path = tmp_path / f"state_{legacy}.pth"
        torch.save({"state_dict": state, "epoch": 3}, path, _use_new_zipfile_serialization=not legacy)
        ours = extract_state_dict(load_torch_checkpoint(path))
        assert set(ours) == set(state)
        for key, tensor in state.items():
            expected = tensor.detach().float().numpy() if key == "bf16" else tensor.detach().numpy()
            got = ours[key].astype(np.float32) if key == "bf16" else ours[key]
            assert got.shape == expected.shape and got.dtype == expected.dtype, key
            np.testing.assert_array_equal(got, expected, err_msg=key)


# ---- hermetic loads: a file cannot change what later loads see --------------------------------------------------
def _u(text: str) -> bytes:
    """pickle BINUNICODE."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _one_tensor_pickle(values: int) -> bytes:
    """{'w': FloatStorage tensor of ``values`` elements}, opcode by opcode as torch.save writes it (protocol 2)."""
    persistent_id = b"(" + _u("storage") + _global("torch", "FloatStorage") + _u("0") + _u("cpu") + \
        b"K" + bytes([values]) + b"tQ"
    tensor = (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + persistent_id + b"K\x00" +
              b"(K" + bytes([values]) + b"t" + b"(K\x01t" + b"\x89" + _global("collections", "OrderedDict") +
              b")R" + b"tR")
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R" + b"(" + _u("w") + tensor + b"u."


def _zip_checkpoint(path, data_pkl: bytes, storage: bytes = b"") -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        if storage:
            archive.writestr("archive/data/0", storage)


def _good_checkpoint(tmp_path):
    path = tmp_path / "good.pt"
    _zip_checkpoint(path, _one_tensor_pickle(4), np.arange(4, dtype=np.float32).tobytes())
    return path


def test_hand_built_zip_checkpoint_reads(tmp_path):
    np.testing.assert_array_equal(read_state_dict(_good_checkpoint(tmp_path))["w"], np.arange(4, dtype=np.float32))


@pytest.mark.parametrize("target, state", [
    (("torch", "FloatStorage"), b"}" + _u("dtype") + _u("poison") + b"s"),               # BUILD a dict state
    (("torch", "FloatStorage"), b"(N}" + _u("dtype") + _u("poison") + b"st"),            # BUILD (None, slotstate)
    (("torch._utils", "_rebuild_tensor_v2"), b"(N}" + _u("__defaults__") + b"(K\x07ts" + b"t"),
    (("collections", "OrderedDict"), b"}" + _u("poison") + b"K\x01s"),
], ids=["storage-dict", "storage-slots", "rebuild-defaults", "ordereddict-dict"])
def test_a_file_cannot_build_state_into_the_allow_listed_objects(tmp_path, target, state):
    """A crafted pickle BUILDs state into an allow-listed global: refused, and later loads are unaffected."""
    evil = tmp_path / "evil.pt"
    _zip_checkpoint(evil, b"\x80\x02" + _global(*target) + state + b"b0}.")   # GLOBAL, state, BUILD, POP, {}
    with pytest.raises(UnsafeCheckpointError, match="refusing to set state"):
        read_state_dict(evil)
    np.testing.assert_array_equal(read_state_dict(_good_checkpoint(tmp_path))["w"], np.arange(4, dtype=np.float32))


def test_a_file_cannot_build_state_into_a_storage_or_tensor(tmp_path):
    """BUILD on the storage a persistent id returned, or on a rebuilt tensor, is refused too."""
    pid = b"(" + _u("storage") + _global("torch", "FloatStorage") + _u("0") + _u("cpu") + b"K\x04tQ"
    evil = tmp_path / "evil.pt"
    _zip_checkpoint(evil, b"\x80\x02" + pid + b"}" + _u("numel") + b"K\x00s" + b"b0}.",
                    np.zeros(4, np.float32).tobytes())
    with pytest.raises(UnsafeCheckpointError, match="refusing to set state"):
        read_state_dict(evil)
    good = _one_tensor_pickle(4)
    _zip_checkpoint(evil, good.replace(b"tRu.", b"tR}" + _u("size") + b")sbu."),   # BUILD on the rebuilt tensor
                    np.zeros(4, np.float32).tobytes())
    with pytest.raises(UnsafeCheckpointError, match="refusing to set state"):
        read_state_dict(evil)


def test_torch_state_dict_metadata_is_still_read(tmp_path):
    """torch.save(state_dict) BUILDs ``_metadata`` into the OrderedDict it made: that stays allowed."""
    torch = pytest.importorskip("torch", reason="torch is an optional dev extra")
    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    assert set(read_state_dict(path)) == {"weight", "bias"}
