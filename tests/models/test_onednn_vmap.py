"""onednn.conv under jax.vmap (population members): the batching rule's values and gradients against
lax.conv_general_dilated under the same vmap, for every VMAP_LOWERING and every batched/unbatched operand mix."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgluon.models import onednn

from tests.models.test_onednn import GEOMETRIES, needs_onednn, reference

K = 3
# (members batched on x, on the kernel): both (own batches), the kernel only (shared batches), x only (shared weights)
AXES = [(0, 0), (None, 0), (0, None)]


def _loss(conv, strides, padding, seed):
    def f(x, kernel):
        y = conv(x, kernel, strides, padding)
        return jnp.sum(jnp.sin(y) * jax.random.normal(jax.random.PRNGKey(seed), y.shape))
    return jax.value_and_grad(f, (0, 1))


@needs_onednn
@pytest.mark.parametrize("mode", ["grouped", "members"])
@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("x_shape,k_shape,strides,padding", GEOMETRIES[:1] + GEOMETRIES[7:])  # stride 2; 4 groups
def test_vmapped_values_and_gradients_match_xla(monkeypatch, mode, axes, x_shape, k_shape, strides, padding):
    monkeypatch.setattr(onednn, "VMAP_LOWERING", mode)
    kx, kk = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(kx, ((K,) if axes[0] == 0 else ()) + x_shape)
    kernel = jax.random.normal(kk, ((K,) if axes[1] == 0 else ()) + k_shape)
    got = jax.jit(jax.vmap(_loss(onednn.conv, strides, padding, 4), axes))(x, kernel)
    want = jax.jit(jax.vmap(_loss(reference, strides, padding, 4), axes))(x, kernel)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-3)


@needs_onednn
@pytest.mark.parametrize("mode", ["grouped", "members"])
def test_nested_vmap(monkeypatch, mode):
    monkeypatch.setattr(onednn, "VMAP_LOWERING", mode)
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 3, 2, 6, 6, 4))
    kernel = jax.random.normal(jax.random.PRNGKey(6), (2, 3, 3, 3, 2, 6))  # 2 groups per member
    pads = ((1, 1), (1, 1))
    got = jax.vmap(jax.vmap(_loss(onednn.conv, (1, 1), pads, 7)))(x, kernel)
    want = jax.vmap(jax.vmap(_loss(reference, (1, 1), pads, 7)))(x, kernel)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-3)


@needs_onednn
def test_grouped_mode_makes_one_call_per_op(monkeypatch):
    x, kernel = jnp.ones((4, 2, 6, 6, 8)), jnp.ones((4, 3, 3, 8, 8))
    for mode, loops in (("grouped", 0), ("members", 3)):  # members: forward, backward data, backward weights
        monkeypatch.setattr(onednn, "VMAP_LOWERING", mode)  # read when traced: a fresh function per mode
        f = jax.vmap(jax.grad(lambda x, k: jnp.sum(jnp.sin(onednn.conv(x, k, (1, 1), ((1, 1), (1, 1))))), (0, 1)))
        text = jax.jit(f).lower(x, kernel).as_text()
        assert text.count("stablehlo.custom_call @jaxgluon_onednn_") == 3
        assert text.count("stablehlo.while") == loops


def test_bad_vmap_lowering_is_named(monkeypatch):
    monkeypatch.setattr(onednn, "VMAP_LOWERING", "fast")
    if not onednn.available():
        pytest.skip("oneDNN shim unavailable here")
    with pytest.raises(ValueError, match="VMAP_LOWERING"):
        jax.vmap(lambda x, k: onednn.conv(x, k))(jnp.ones((2, 1, 4, 4, 2)), jnp.ones((2, 1, 1, 2, 2)))
