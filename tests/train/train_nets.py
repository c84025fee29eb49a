"""A tiny NNX classifier for the train tests: two convs (jaxgluon's Conv), BatchNorm, global pooling, dense."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgluon.models.layers import Conv


class TinyNet(nnx.Module):
    def __init__(self, num_classes: int = 2, *, width: int = 8, dtype=None, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.conv1 = Conv(3, width, 3, dtype=dtype, rngs=rngs)
        self.bn1 = nnx.BatchNorm(width, dtype=dtype, rngs=rngs)
        self.conv2 = Conv(width, width, 3, strides=2, dtype=dtype, rngs=rngs)
        self.bn2 = nnx.BatchNorm(width, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(width, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.relu(self.bn2(self.conv2(x)))
        return self.head(jnp.mean(x, axis=(1, 2)))
