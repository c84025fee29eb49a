"""Layers shared by the model zoo.

``Conv`` owns the convolution lowering: its parameters are a ``kernel`` in HWIO layout and an optional ``bias``
(the same layout as ``flax.nnx.Conv``), and how it computes may depend on backend and feature-map size.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class Conv(nnx.Module):
    """2-D convolution on NHWC inputs with an HWIO kernel."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int], *,
                 strides: int = 1, padding: str | int | Sequence[tuple[int, int]] = "SAME", use_bias: bool = False,
                 groups: int = 1, dtype=None, rngs: nnx.Rngs):
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
        self.kernel = nnx.Param(init(rngs.params(), ks + (in_features // groups, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        self.strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        self.padding = padding
        self.groups = groups
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel.value
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        y = jax.lax.conv_general_dilated(
            x, kernel, window_strides=self.strides, padding=self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=self.groups)
        if self.bias is not None:
            y = y + self.bias.value.astype(y.dtype)
        return y
