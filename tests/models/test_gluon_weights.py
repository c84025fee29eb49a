"""Gluon ResNet v1 weights: the key mapping (checked against MXNet's own names), loading into resnet50_v1 with
identical logits under both naming styles, the registry entries, and the sha1-checked download (local server)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import zipfile

import jax
import numpy as np
import pytest
from flax import nnx
from mxnet_writer import params_file_bytes
from test_registry import random_model

from jaxgluon.models import MODELS, WeightsUnavailableError, get_model, model_info
from jaxgluon.models.resnet import DEPTHS
from jaxgluon.models.weights import (ChecksumError, WeightMismatchError, cache_root,
                                     gluon_resnet_v1_to_torch, locate, model_variables, torch_to_flax)

FILES = pathlib.Path(__file__).parent / "gluon_files"
NAMES = json.loads((FILES / "gluon_resnet_v1_names.json").read_text())   # [structural, prefixed] per parameter
CLASSES = 7
_BODY = {"conv1": "body.0", "bn1": "body.1", "conv2": "body.3", "bn2": "body.4", "conv3": "body.6", "bn3": "body.7",
         "downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}
_BN_LEAF = {"scale": "gamma", "bias": "beta", "mean": "running_mean", "var": "running_var"}


def to_gluon(model: nnx.Module, seed: int = 0) -> dict[str, np.ndarray]:
    """Gluon ``save_parameters`` names and layouts for a jaxgluon resnet*_v1 (written independently of the loader).

    The bottleneck's 1x1 convolutions get a random bias, as Gluon's have, with the BatchNorm after each moved to
    keep the network's function: loading must fold them back exactly.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key, var in model_variables(model).items():
        module, _, leaf = key.rpartition(".")
        value = np.asarray(var[...])
        if module in ("conv1", "bn1", "fc"):
            name = {"conv1": "features.0", "bn1": "features.1", "fc": "output"}[module]
        else:
            stage, block, part = module.split(".")
            name = f"features.{int(stage[len('layer'):]) + 3}.{block}.{_BODY[part]}"
        if leaf == "kernel":
            out[f"{name}.weight"] = np.ascontiguousarray(value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T)
        elif module == "fc":
            out[f"{name}.bias"] = value
        else:
            out[f"{name}.{_BN_LEAF[leaf]}"] = value
    for key in [k for k in out if k.endswith((".body.0.weight", ".body.6.weight"))]:
        if out[key].shape[-1] == 1:            # bottleneck 1x1 (a basic block's body.0 is 3x3 without bias)
            conv = key[: -len(".weight")]
            bias = rng.normal(0, 0.2, out[key].shape[0]).astype(np.float32)
            out[conv + ".bias"] = bias
            norm = conv[:-1] + str(int(conv[-1]) + 1)
            out[norm + ".running_mean"] = (out[norm + ".running_mean"] + bias).astype(np.float32)
    return out


def prefixed(structural: dict[str, np.ndarray], net: str, strip: bool = False, export: bool = False) -> dict:
    """The same parameters under MXNet's prefixed names (``resnetv10_stage1_conv0_weight``), from the golden list."""
    rename = dict(NAMES[net])
    out = {}
    for key, value in structural.items():
        name = rename[key]
        if strip:
            name = name.split("_", 1)[1]
        if export:
            name = ("aux:" if "running" in name else "arg:") + name
        out[name] = value
    return out


@pytest.fixture(scope="module")
def reference():
    """A random resnet50_v1, its Gluon parameters, a 32 px batch and one compiled forward for every loaded copy."""
    model = random_model("resnet50_v1", CLASSES, seed=3)
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    return model, to_gluon(model), x, forward, np.asarray(forward(state, x))


def _logits(model, reference) -> np.ndarray:
    _, _, x, forward, _ = reference
    return np.asarray(forward(nnx.state(model), x))


def test_inverse_mapping_matches_mxnet_names(reference):
    """The test's own Gluon naming is Gluon's: same names as MXNet gave its resnet50_v1 (random classifier size)."""
    assert set(reference[1]) == {s for s, _ in NAMES["resnet50_v1"]}


@pytest.mark.parametrize("net", ["resnet18_v1", "resnet50_v1"])
def test_both_naming_styles_map_to_the_same_torch_names(net):
    """Every MXNet name, structural or prefixed (stripped, full, exported), lands on the same torchvision name, and
    those cover the jaxgluon network exactly."""
    depth = int(net[len("resnet"):-len("_v1")])
    def dummy(name: str, i: int) -> np.ndarray:      # only the rank matters to the layout conversion
        ndim = 2 if name == "output.weight" else 4 if name.endswith(".weight") else 1
        return np.full((1,) * ndim, i, np.float32)

    structural = {s: dummy(s, i) for i, (s, _) in enumerate(NAMES[net])}
    expected = gluon_resnet_v1_to_torch(structural, *DEPTHS[depth])
    for style in [dict(), dict(strip=True), dict(export=True)]:
        got = gluon_resnet_v1_to_torch(prefixed(structural, net, **style), *DEPTHS[depth])
        assert list(got) == list(expected) and all(got[k] == expected[k] for k in got), style
    model = nnx.eval_shape(lambda: get_model(net, 1000, pretrained=False))
    assert set(torch_to_flax(expected, MODELS[net].rename)) == set(model_variables(model))


def test_structural_params_load_with_identical_logits(reference, tmp_path):
    model, gluon, *_ = reference
    path = tmp_path / "resnet50_v1-structural.params"
    path.write_bytes(params_file_bytes(gluon))
    loaded = get_model("resnet50_v1", CLASSES, pretrained=path)
    assert loaded.pretrained_loaded and not loaded.classifier_reinitialized
    np.testing.assert_allclose(_logits(loaded, reference), reference[4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.layer2[0].bn1.mean[...], model.layer2[0].bn1.mean[...], atol=1e-6)


def test_prefixed_params_in_a_zip_load_with_identical_logits(reference, tmp_path):
    _, gluon, *_ = reference
    path = tmp_path / "resnet50_v1-prefixed.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("resnet50_v1-prefixed.params", params_file_bytes(prefixed(gluon, "resnet50_v1")))
    loaded = get_model("resnet50_v1", CLASSES, pretrained=path)
    np.testing.assert_allclose(_logits(loaded, reference), reference[4], rtol=1e-5, atol=1e-5)


def test_gluon_file_of_another_layout_is_refused(reference, tmp_path):
    _, gluon, *_ = reference
    path = tmp_path / "r50.params"
    path.write_bytes(params_file_bytes(gluon))
    with pytest.raises(WeightMismatchError, match="resnet101_v1|missing"):
        get_model("resnet101_v1", CLASSES, pretrained=path)
    with pytest.raises(WeightMismatchError, match="no Gluon name mapping"):
        get_model("resnet50_v1b", CLASSES, pretrained=path)
    with pytest.raises(WeightMismatchError, match="not a Gluon ResNet v1"):
        gluon_resnet_v1_to_torch({"features.0.weight": gluon["features.0.weight"], "features.5.0.se.0.weight":
                                  np.ones((2, 2), np.float32)}, *DEPTHS[50])


def test_registry_entries():
    """The published file per name (GluonCV's model_store.py sha1s) and the Gluon preprocessing."""
    gluoncv_sha1 = {50: "cc729d95031ca98cf2ff362eb57dee4d9994e4b2", 101: "d988c13d6159779e907140a638c56f229634cb02",
                    152: "acfd09703b113143af9c33898bad8b6154fd6fb0"}
    for depth, sha1 in gluoncv_sha1.items():
        info = model_info(f"resnet{depth}_v1")
        assert info["pretrained_source"] == (
            f"https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/gluon/models/resnet{depth}_v1-{sha1[:8]}.zip")
        assert info["sha1"] == sha1 and "Apache-2.0" in info["license"]
        assert (info["input_size"], info["mean"], info["std"]) == (224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for depth in (18, 34):     # torchvision's weights (the same network at this depth)
        assert model_info(f"resnet{depth}_v1")["pretrained_source"].startswith("https://download.pytorch.org/")


def _zip_bytes(params: bytes, stem: str) -> bytes:
    import io
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{stem}.params", params)
    return buffer.getvalue()


@pytest.fixture
def served_gluon(reference, weights_server, monkeypatch):
    """resnet50_v1's registry source pointed at a local server holding a model-zoo style zip of the reference."""
    _, gluon, *_ = reference
    params = params_file_bytes(gluon)
    sha1 = hashlib.sha1(params).hexdigest()
    stem = f"resnet50_v1-{sha1[:8]}"
    weights_server.files[f"{stem}.zip"] = _zip_bytes(params, stem)
    source = dataclasses.replace(MODELS["resnet50_v1"].source, filename=f"{stem}.zip", also_as=(f"{stem}.params",),
                                 url=weights_server.url(f"{stem}.zip"), sha1=sha1)
    monkeypatch.setitem(MODELS, "resnet50_v1", dataclasses.replace(MODELS["resnet50_v1"], source=source))
    return source, params


def test_download_verify_convert_and_cache(served_gluon, reference, weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXGLUON_HOME", str(tmp_path / "home"))
    source, _ = served_gluon
    model = get_model("resnet50_v1", num_classes=5, pretrained=True)
    assert model.pretrained_loaded and model.classifier_reinitialized and model.pretrained_source == source.url
    assert (cache_root() / "downloads" / source.filename).is_file()
    want = model_variables(reference[0])
    for key, var in model_variables(model).items():    # all but the new classifier, as published
        if not key.startswith("fc."):
            np.testing.assert_allclose(var[...], want[key][...], rtol=1e-6, atol=1e-6, err_msg=key)
    requests = weights_server.requests.count(source.filename)
    again = get_model("resnet50_v1", num_classes=CLASSES, pretrained=True)      # from the converted cache
    assert weights_server.requests.count(source.filename) == requests
    np.testing.assert_allclose(_logits(again, reference), reference[4], rtol=1e-5, atol=1e-5)
    assert json.loads((cache_root() / "converted" / source.cache_key / "SOURCE").read_text())["sha1"] == source.sha1


def test_sha1_mismatch_is_refused_and_leaves_nothing(served_gluon, weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXGLUON_HOME", str(tmp_path / "home"))
    source, params = served_gluon
    tampered = params[:-1] + bytes([params[-1] ^ 1])
    weights_server.files[source.filename] = _zip_bytes(tampered, source.cache_key)
    with pytest.raises(ChecksumError, match=f"not the published {source.sha1}"):
        locate(source)
    downloads = cache_root() / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []
    with pytest.raises(ChecksumError):         # never silently replaced by a random init, even with 'auto'
        get_model("resnet50_v1", 5, pretrained="auto")


def test_weights_path_accepts_zip_or_params(served_gluon, tmp_path, monkeypatch, closed_port_url):
    source, params = served_gluon
    offline = dataclasses.replace(source, url=closed_port_url + "/" + source.filename)
    folder = tmp_path / "shared_weights"
    folder.mkdir()
    monkeypatch.setenv("JAXGLUON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JAXGLUON_WEIGHTS_PATH", str(folder))
    (folder / f"{source.cache_key}.params").write_bytes(params)
    assert locate(offline) == folder / f"{source.cache_key}.params"
    (folder / f"{source.cache_key}.params").unlink()
    (folder / source.filename).write_bytes(_zip_bytes(params, source.cache_key))
    assert locate(offline) == folder / source.filename
    (folder / source.filename).write_bytes(_zip_bytes(params[:-4] + b"\0\0\0\0", source.cache_key))
    with pytest.raises(ChecksumError):
        locate(offline)


def test_offline_auto_falls_back_and_true_names_the_zip(monkeypatch, tmp_path, closed_port_url):
    monkeypatch.setenv("JAXGLUON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAXGLUON_WEIGHTS_PATH", raising=False)
    source = MODELS["resnet50_v1"].source
    monkeypatch.setitem(MODELS, "resnet50_v1", dataclasses.replace(
        MODELS["resnet50_v1"], source=dataclasses.replace(source, url=f"{closed_port_url}/{source.filename}")))
    with pytest.raises(WeightsUnavailableError, match="resnet50_v1-cc729d95.zip"):
        get_model("resnet50_v1", 5, pretrained=True)
    with pytest.warns(RuntimeWarning, match="PRETRAINED WEIGHTS UNAVAILABLE for resnet50_v1"):
        model = nnx.eval_shape(lambda: get_model("resnet50_v1", 5, pretrained="auto"))
    assert not model.pretrained_loaded and "resnet50_v1-cc729d95.zip" in model.pretrained_error
