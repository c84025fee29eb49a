"""The oneDNN convolution lowering: same values and gradients as XLA's convolution, clear failures, fallback."""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgluon.models import layers, onednn

needs_onednn = pytest.mark.skipif(
    not onednn.available(), reason=f"oneDNN shim unavailable here: {onednn._load()} (needs Linux x86-64, g++ and "
                                   "the onednn-cpu-gomp / onednn-devel-cpu-gomp wheels)")

# (input NHWC, kernel HWIO, strides, padding): stride 2, a 1x1, an RGB stem with uneven padding, odd map sizes
GEOMETRIES = [
    ((4, 9, 9, 5), (3, 3, 5, 7), (2, 2), ((1, 1), (1, 1))),
    ((3, 8, 8, 4), (1, 1, 4, 6), (1, 1), ((0, 0), (0, 0))),
    ((2, 15, 15, 3), (7, 7, 3, 8), (2, 2), ((3, 2), (3, 3))),
    ((2, 7, 10, 16), (3, 3, 16, 16), (1, 2), ((0, 1), (2, 0))),
    ((2, 9, 9, 6), (3, 3, 1, 6), (2, 2), ((0, 1), (0, 1))),       # depthwise, EfficientNet's stride-2 padding
    ((2, 10, 10, 8), (5, 5, 1, 8), (1, 1), ((2, 2), (2, 2))),     # depthwise 5x5
    ((2, 7, 7, 4), (3, 3, 1, 8), (1, 1), ((1, 1), (1, 1))),       # depthwise, channel multiplier 2
    ((2, 8, 8, 8), (3, 3, 2, 12), (1, 1), ((1, 1), (1, 1))),      # 4 groups of 2 -> 3 channels
]


def reference(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[3] // kernel.shape[2], precision="highest")


@needs_onednn
@pytest.mark.parametrize("x_shape,k_shape,strides,padding", GEOMETRIES)
def test_forward_and_gradients_match_xla(x_shape, k_shape, strides, padding):
    kx, kk, kc = jax.random.split(jax.random.PRNGKey(0), 3)
    x, kernel = jax.random.normal(kx, x_shape), jax.random.normal(kk, k_shape)

    def loss(conv):
        def f(x, kernel):
            y = conv(x, kernel, strides, padding)
            return jnp.sum(jnp.sin(y) * jax.random.normal(kc, y.shape))
        return jax.jit(jax.value_and_grad(f, (0, 1)))

    (value, (dx, dk)), (ref_value, (ref_dx, ref_dk)) = loss(onednn.conv)(x, kernel), loss(reference)(x, kernel)
    np.testing.assert_allclose(jax.jit(onednn.conv, static_argnums=(2, 3))(x, kernel, strides, padding),
                               reference(x, kernel, strides, padding), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(value, ref_value, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dk, ref_dk, rtol=1e-4, atol=1e-4)


@needs_onednn
def test_repeatable_and_vmappable():
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 6, 6, 8))
    kernel = jax.random.normal(jax.random.PRNGKey(2), (3, 3, 8, 4))
    pads = ((1, 1), (1, 1))
    grad = jax.jit(jax.grad(lambda k: jnp.sum(onednn.conv(x[0], k, (1, 1), pads) ** 2)))
    np.testing.assert_array_equal(grad(kernel), grad(kernel))  # bitwise: checkpoint-resume relies on it
    batched = jax.vmap(lambda xi: onednn.conv(xi, kernel, (1, 1), pads))(x)
    np.testing.assert_allclose(batched, jax.vmap(lambda xi: reference(xi, kernel, (1, 1), pads))(x),
                               rtol=1e-4, atol=1e-4)


@needs_onednn
def test_conv2d_auto_picks_onednn_for_large_cpu_convolutions():
    x, kernel = jnp.ones((2, 32, 32, 64)), jnp.ones((3, 3, 64, 64)) * 0.01
    text = str(jax.make_jaxpr(lambda a, b: layers.conv2d(a, b, (1, 1), "SAME"))(x, kernel))
    assert "jaxgluon_onednn_forward" in text
    assert layers.conv2d(jnp.ones((0, 32, 32, 64)), kernel).shape == (0, 32, 32, 64)  # empty batch: XLA's
    small = str(jax.make_jaxpr(lambda a, b: layers.conv2d(a, b, (1, 1), "SAME"))(jnp.ones((2, 2, 2, 64)), kernel))
    assert "jaxgluon_onednn" not in small  # tiny maps stay im2col
    np.testing.assert_allclose(layers.conv2d(x, kernel, (1, 1), "SAME"),
                               reference(x, kernel, (1, 1), ((1, 1), (1, 1))), rtol=1e-4, atol=1e-4)


def test_choose_lowering_gives_onednn_all_but_the_tiniest_cpu_convolutions():
    big, kernel = (32, 32, 32, 128), (3, 3, 128, 128)
    assert layers.choose_lowering("cpu", big, kernel, onednn_ok=True) == "onednn"
    assert layers.choose_lowering("cpu", big, kernel, onednn_ok=False) == "xla"
    assert layers.choose_lowering("cpu", (32, 64, 64, 3), (7, 7, 3, 64), (2, 2), onednn_ok=True) == "onednn"
    assert layers.choose_lowering("cpu", (32, 2, 2, 512), (3, 3, 512, 512), onednn_ok=True) == "im2col"
    assert layers.choose_lowering("cpu", (32, 4, 4, 256), (3, 3, 256, 256), onednn_ok=True) == "onednn"
    assert layers.choose_lowering("cpu", (32, 4, 4, 256), (1, 1, 256, 1024), onednn_ok=True) == "im2col"
    assert layers.choose_lowering("cpu", (32, 8, 8, 512), (1, 1, 512, 128), onednn_ok=True) == "onednn"
    assert layers.choose_lowering("cpu", (32, 8, 8, 8), (3, 3, 1, 8), groups=8, onednn_ok=True) == "onednn"
    assert layers.choose_lowering("cpu", (32, 8, 8, 8), (3, 3, 1, 8), groups=8, onednn_ok=False) == "depthwise"
    assert layers.choose_lowering("gpu", big, kernel, onednn_ok=True) == "xla"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="float32"):
        onednn.conv(jnp.ones((1, 4, 4, 2), jnp.bfloat16), jnp.ones((3, 3, 2, 2), jnp.bfloat16))
    with pytest.raises(ValueError, match="channels match"):
        onednn.conv(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 3, 2)))
    with pytest.raises(ValueError, match="multiple of the group count"):  # 2 groups cannot make 3 outputs
        onednn.conv(jnp.ones((1, 4, 4, 4)), jnp.ones((3, 3, 2, 3)))
    with pytest.raises(ValueError, match="larger than the input"):
        onednn.conv(jnp.ones((1, 2, 2, 2)), jnp.ones((5, 5, 2, 2)))


@needs_onednn
def test_efficientnet_depthwise_convolutions_run_on_onednn():
    x, kernel = jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 1, 32)) * 0.1
    text = str(jax.make_jaxpr(jax.grad(lambda k: jnp.sum(layers.conv2d(x, k, (1, 1), "SAME", groups=32))))(kernel))
    assert "jaxgluon_onednn_backward_weights" in text
    np.testing.assert_allclose(layers.conv2d(x, kernel, (2, 2), "SAME", groups=32),
                               layers.conv_depthwise(x, kernel, (2, 2), "SAME"), rtol=1e-5, atol=1e-5)


def test_missing_wheel_names_the_package():
    with pytest.raises(onednn.OneDNNUnavailable, match="pip install no-such-onednn-dist"):
        onednn._dist_file("no-such-onednn-dist", "lib/libdnnl.so.3")


@needs_onednn
def test_compiler_failure_is_reported_with_its_output(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    with pytest.raises(onednn.OneDNNUnavailable, match="compiling onednn_conv.cc failed"):
        onednn.build(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind


def test_unavailable_warns_once_and_falls_back(monkeypatch):
    def broken(*_):
        raise onednn.OneDNNUnavailable("no C++ compiler found (install g++, or set CXX)")
    monkeypatch.setattr(onednn, "build", broken)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found.*JAXGLUON_ONEDNN=0"):
        assert onednn._load.__wrapped__() is not None
    monkeypatch.setenv("JAXGLUON_ONEDNN", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "JAXGLUON_ONEDNN=0" in onednn._load.__wrapped__()


def test_other_platforms_fall_back_quietly(monkeypatch):
    monkeypatch.setattr(onednn.platform, "machine", lambda: "arm64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "Linux x86-64 only" in onednn._load.__wrapped__()


@needs_onednn
def test_build_is_cached(tmp_path):
    first = onednn.build(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert onednn.build(tmp_path) == first and first.stat().st_mtime_ns == mtime
