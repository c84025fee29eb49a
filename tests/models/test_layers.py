"""Conv lowering: the im2col path matches lax.conv_general_dilated in value and gradients; the choice rule."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgluon.models import layers
from jaxgluon.models.layers import (Conv, batch_chunks, choose_lowering, conv2d, conv_depthwise, conv_im2col, conv_xla,
                                    max_pool)

# (input H, W, C, out C, kernel, stride, padding, groups): ResNet-like windows and a depthwise one.
CASES = [
    (6, 6, 8, 16, 3, 1, "SAME", 1),
    (7, 7, 8, 16, 3, 2, "SAME", 1),
    (8, 8, 8, 16, 3, 2, ((1, 1), (1, 1)), 1),
    (5, 5, 8, 16, 1, 1, "VALID", 1),
    (7, 7, 8, 16, 1, 2, 0, 1),
    (11, 9, 3, 8, 7, 2, 3, 1),
    (4, 4, 4, 4, 7, 1, ((3, 2), (1, 3)), 1),
    (6, 6, 8, 8, 3, 1, "SAME", 8),
    (7, 7, 8, 16, 3, 2, ((1, 1), (1, 1)), 8),
    (6, 6, 8, 8, 3, 1, "SAME", 2),
]


def _loss(conv, x, k, stride, padding, groups, cot):
    return jnp.sum(conv(x, k, (stride, stride), padding, groups) * cot)


@pytest.mark.parametrize("h,w,cin,cout,ks,stride,padding,groups", CASES)
def test_im2col_matches_xla_forward_and_gradients(h, w, cin, cout, ks, stride, padding, groups):
    rng = np.random.default_rng(h * 100 + ks * 10 + stride + groups)
    x = jnp.asarray(rng.standard_normal((2, h, w, cin)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((ks, ks, cin // groups, cout)), jnp.float32)
    ref_shape = jax.eval_shape(lambda: conv_xla(x, k, (stride, stride), padding, groups)).shape
    cot = jnp.asarray(rng.standard_normal(ref_shape), jnp.float32)

    @jax.jit
    def both(x, k, cot):  # one compile per case keeps the test fast
        outs = []
        for conv in (conv_xla, conv_im2col):
            y = conv(x, k, (stride, stride), padding, groups)
            outs.append((y, *jax.grad(_loss, argnums=(1, 2))(conv, x, k, stride, padding, groups, cot)))
        return outs

    (ref, gx_ref, gk_ref), (got, gx, gk) = both(x, k, cot)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gk, gk_ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("h,w,c,ks,stride,padding", [
    (6, 6, 8, 3, 1, "SAME"), (7, 7, 8, 3, 2, "SAME"), (9, 8, 4, 5, 2, "SAME"), (8, 8, 4, 3, 2, ((1, 1), (1, 1))),
    (6, 7, 4, 5, 1, ((2, 1), (0, 2)))])
def test_depthwise_matches_xla_forward_and_gradients(h, w, c, ks, stride, padding):
    rng = np.random.default_rng(h * 100 + ks * 10 + stride)
    x = jnp.asarray(rng.standard_normal((2, h, w, c)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((ks, ks, 1, c)), jnp.float32)
    ref_shape = jax.eval_shape(lambda: conv_xla(x, k, (stride, stride), padding, c)).shape
    cot = jnp.asarray(rng.standard_normal(ref_shape), jnp.float32)

    def depthwise(x, k, strides, padding, groups):
        return conv_depthwise(x, k, strides, padding)

    @jax.jit
    def both(x, k, cot):
        return [(conv(x, k, (stride, stride), padding, c), *jax.grad(_loss, argnums=(1, 2))(
            conv, x, k, stride, padding, c, cot)) for conv in (conv_xla, depthwise)]

    (ref, gx_ref, gk_ref), (got, gx, gk) = both(x, k, cot)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gk, gk_ref, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="kernel"):
        conv_depthwise(x, jnp.ones((3, 3, 2, c)))


def test_lowering_rule_per_backend_and_map_size():
    assert choose_lowering("gpu", (32, 2, 2, 512), (3, 3, 512, 512)) == "xla"
    assert choose_lowering("tpu", (32, 56, 56, 64), (1, 1, 64, 256)) == "xla"
    assert choose_lowering("cpu", (32, 56, 56, 64), (1, 1, 64, 256)) == "im2col"       # 1x1: a matmul
    assert choose_lowering("cpu", (32, 2, 2, 512), (3, 3, 512, 512)) == "im2col"       # tiny map
    assert choose_lowering("cpu", (32, 4, 4, 256), (3, 3, 256, 256)) == "im2col"       # 4x4 output
    assert choose_lowering("cpu", (32, 7, 7, 512), (3, 3, 512, 512)) == "xla"          # 7x7 output, stride 1
    assert choose_lowering("cpu", (32, 14, 14, 256), (3, 3, 256, 512), (2, 2)) == "im2col"  # 7x7, strided
    assert choose_lowering("cpu", (32, 28, 28, 128), (3, 3, 128, 256), (2, 2)) == "xla"
    assert choose_lowering("cpu", (32, 56, 56, 64), (3, 3, 64, 64)) == "xla"           # large map
    assert choose_lowering("cpu", (32, 224, 224, 3), (7, 7, 3, 64), (2, 2)) == "xla"   # RGB stem
    assert choose_lowering("cpu", (32, 2, 2, 512), (3, 3, 1, 512), groups=512) == "depthwise"
    assert choose_lowering("cpu", (32, 8, 8, 8), (3, 3, 4, 8), groups=2) == "xla"      # grouped, not depthwise
    assert choose_lowering("gpu", (32, 8, 8, 8), (3, 3, 1, 8), groups=8) == "xla"


def test_conv2d_follows_the_rule_and_rejects_unknown_lowerings(monkeypatch):
    calls = []
    monkeypatch.setattr(layers, "conv_im2col", lambda *a: calls.append("im2col") or conv_im2col(*a))
    monkeypatch.setattr(layers, "conv_xla", lambda *a: calls.append("xla") or conv_xla(*a))
    monkeypatch.setattr(layers.onednn, "supports", lambda *a, **k: False)  # the rule without oneDNN
    monkeypatch.setattr(layers.jax, "default_backend", lambda: "cpu")
    conv2d(jnp.ones((1, 2, 2, 32)), jnp.ones((3, 3, 32, 4)))
    monkeypatch.setattr(layers.jax, "default_backend", lambda: "gpu")
    conv2d(jnp.ones((1, 2, 2, 32)), jnp.ones((3, 3, 32, 4)))
    assert calls == ["im2col", "xla"]
    with pytest.raises(ValueError, match="lowering"):
        conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), lowering="winograd")


def test_conv_module_params_shapes_and_bias():
    conv = Conv(8, 16, 3, strides=2, padding=1, use_bias=True, rngs=nnx.Rngs(0))
    assert conv.kernel[...].shape == (3, 3, 8, 16) and conv.bias[...].shape == (16,)
    conv.bias[...] = jnp.full((16,), 2.0)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 8)), jnp.float32)
    ref = conv_xla(x, conv.kernel[...], (2, 2), 1) + 2.0
    np.testing.assert_allclose(conv(x), ref, rtol=1e-4, atol=1e-4)
    depthwise = Conv(8, 8, 3, groups=8, rngs=nnx.Rngs(0))
    assert depthwise.kernel[...].shape == (3, 3, 1, 8) and depthwise.bias is None
    assert Conv(4, 4, 3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))(jnp.ones((1, 4, 4, 4))).dtype == jnp.bfloat16


def test_large_cpu_convolutions_run_in_batch_chunks_with_the_same_result(monkeypatch):
    assert batch_chunks((32, 56, 56, 64), 4, 2 << 20) == 16
    assert batch_chunks((6, 8, 8, 8), 4, 2500) == 6      # 5 pieces wanted: the next divisor of the batch
    assert batch_chunks((6, 8, 8, 8), 4, 10) == 6        # at most one image per piece
    assert batch_chunks((6, 8, 8, 8), 4, 1 << 20) == 1
    monkeypatch.setattr(layers.jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(layers.onednn, "supports", lambda *a, **k: False)  # chunking is the fallback without oneDNN
    monkeypatch.setattr(layers, "CPU_CONV_CHUNK_BYTES", 6 * 10 * 10 * 16 * 4 // 3)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((6, 10, 10, 16)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 16, 8)), jnp.float32)
    assert choose_lowering("cpu", x.shape, k.shape) == "xla"

    def loss(conv, x, k):
        return jnp.sum(jnp.sin(conv(x, k, (1, 1), "SAME")))

    chunked = jax.jit(jax.value_and_grad(functools.partial(loss, conv2d), argnums=(0, 1)))
    whole = jax.jit(jax.value_and_grad(functools.partial(loss, conv_xla), argnums=(0, 1)))
    assert "concatenate" in chunked.lower(x, k).as_text()
    (v, (gx, gk)), (v_ref, (gx_ref, gk_ref)) = chunked(x, k), whole(x, k)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gk, gk_ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(groups=3), "groups"), (dict(strides=0), "strides"), (dict(padding="FULL"), "padding")])
def test_conv_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv(8, 8, 3, rngs=nnx.Rngs(0), **kwargs)(jnp.ones((1, 4, 4, 8)))


@pytest.mark.parametrize("shape, window, strides, padding", [
    ((2, 9, 8, 3), 3, 2, 1), ((2, 6, 7, 2), (2, 3), 1, "VALID"), ((1, 5, 5, 4), 3, 2, ((0, 2), (1, 1)))])
def test_max_pool_lowerings_agree_in_value_and_gradient(shape, window, strides, padding):
    x = jnp.asarray(np.random.default_rng(1).permutation(np.prod(shape)).reshape(shape), jnp.float32)  # no ties

    @jax.jit
    def both(x):
        outs = []
        for low in ("xla", "im2col"):
            y, vjp = jax.vjp(lambda x: max_pool(x, window, strides, padding, lowering=low), x)
            outs.append((y, vjp(jnp.cos(y))[0]))
        return outs

    (ref, g_ref), (got, g) = both(x)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-6)
    assert max_pool(x, window, strides, padding).shape == ref.shape
    with pytest.raises(ValueError, match="lowering"):
        max_pool(x, lowering="fast")


def _max_pool_grad_reference(x, g, window, stride, pad):
    """numpy: each output's gradient split equally between the inputs of its window equal to its maximum."""
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    dx = np.zeros_like(xp)
    for o in np.ndindex(g.shape):
        b, i, j, ch = o
        win = xp[b, i * stride:i * stride + window, j * stride:j * stride + window, ch]
        tied = win == win.max()
        dx[b, i * stride:i * stride + window, j * stride:j * stride + window, ch] += tied * g[o] / tied.sum()
    return dx[:, pad:pad + h, pad:pad + w]


def test_max_pool_gradient_splits_ties_equally_and_conserves_the_gradient():
    # post-ReLU maps are full of exact ties (zeros), and of ties between overlapping windows' maxima
    rng = np.random.default_rng(3)
    x = np.maximum(rng.integers(-3, 3, size=(2, 7, 6, 3)), 0).astype(np.float32)
    y, vjp = jax.vjp(lambda x: max_pool(x, 3, 2, 1, lowering="im2col"), jnp.asarray(x))
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = np.asarray(vjp(jnp.asarray(g))[0])
    np.testing.assert_allclose(dx, _max_pool_grad_reference(x, g, 3, 2, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx.sum(), g.sum(), rtol=1e-4)
    np.testing.assert_array_equal(y, max_pool(jnp.asarray(x), 3, 2, 1, lowering="xla"))
