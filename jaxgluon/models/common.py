"""Small building blocks shared by the networks (BatchNorm with torch-trained defaults, pooling)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgluon.models.layers import max_pool


def batch_norm(features: int, *, rngs: nnx.Rngs, dtype=None, epsilon: float = 1e-5,
               momentum: float = 0.9) -> nnx.BatchNorm:
    """BatchNorm starting in eval mode (``use_running_average=True``); flip with ``model.train()``.

    ``momentum`` is Flax's decay of the running statistics, i.e. ``1 - torch_momentum`` (torch's 0.1 -> 0.9).
    """
    return nnx.BatchNorm(features, use_running_average=True, epsilon=epsilon, momentum=momentum, dtype=dtype,
                         rngs=rngs)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """torch ``MaxPool2d(3, stride=2, padding=1)``: padded cells never win (they count as -inf).

    Lowered by ``jaxgluon.models.layers.max_pool``, which picks the fastest form per backend.
    """
    return max_pool(x, 3, 2, 1)


def global_avg_pool(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2))
