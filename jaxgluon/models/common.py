"""Small building blocks shared by the networks (BatchNorm with torch-trained defaults, pooling).

BatchNorm can be frozen by a runtime flag: inside ``with frozen_batchnorm(flag):`` (``flag`` a traced bool), a
BatchNorm in train mode normalises with its running statistics and leaves them unchanged when ``flag`` is true,
and behaves as usual otherwise. The choice is data, not program: a train step that takes the flag as an input
compiles once for both (``jaxgluon.train.steps``).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import normalization as _nnx_norm

from jaxgluon.models.layers import max_pool


_FREEZE: contextvars.ContextVar = contextvars.ContextVar("jaxgluon_freeze_batchnorm", default=None)


@contextlib.contextmanager
def frozen_batchnorm(flag: Any) -> Iterator[None]:
    """Within the block, train-mode :class:`BatchNorm` layers are frozen where ``flag`` (a bool array) is true."""
    token = _FREEZE.set(flag)
    try:
        yield
    finally:
        _FREEZE.reset(token)


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` that honours :func:`frozen_batchnorm` in train mode (module docstring)."""

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *, mask: jax.Array | None = None):
        freeze = _FREEZE.get()
        running = self.use_running_average if use_running_average is None else use_running_average
        if freeze is None or running or mask is not None:
            return super().__call__(x, use_running_average, mask=mask)
        feature_axes = _nnx_norm._canonicalize_axes(x.ndim, self.axis)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        scale = self.scale[...] if self.scale is not None else None
        bias = self.bias[...] if self.bias is not None else None
        x, ra_mean, ra_var, scale, bias = self.promote_dtype(
            (x, self.mean[...], self.var[...], scale, bias), dtype=self.dtype)
        batch_mean, batch_var = _nnx_norm._compute_stats(
            x, reduction_axes, dtype=self.dtype, axis_name=self.axis_name, axis_index_groups=self.axis_index_groups,
            use_fast_variance=self.use_fast_variance)
        freeze = jnp.asarray(freeze, jnp.bool_)
        mean = jnp.where(freeze, jax.lax.stop_gradient(ra_mean), batch_mean)
        var = jnp.where(freeze, jax.lax.stop_gradient(ra_var), batch_var)
        new_mean = self.momentum * self.mean[...] + (1 - self.momentum) * batch_mean
        new_var = self.momentum * self.var[...] + (1 - self.momentum) * batch_var
        self.mean[...] = jax.lax.stop_gradient(jnp.where(freeze, self.mean[...], new_mean))
        self.var[...] = jax.lax.stop_gradient(jnp.where(freeze, self.var[...], new_var))
        return _nnx_norm._normalize(x, mean, var, scale, bias, reduction_axes, feature_axes, self.dtype,
                                    self.epsilon)


def batch_norm(features: int, *, rngs: nnx.Rngs, dtype=None, epsilon: float = 1e-5,
               momentum: float = 0.9) -> BatchNorm:
    """BatchNorm starting in eval mode (``use_running_average=True``); flip with ``model.train()``.

    ``momentum`` is Flax's decay of the running statistics, i.e. ``1 - torch_momentum`` (torch's 0.1 -> 0.9).
    """
    return BatchNorm(features, use_running_average=True, epsilon=epsilon, momentum=momentum, dtype=dtype,
                     rngs=rngs)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """torch ``MaxPool2d(3, stride=2, padding=1)``: padded cells never win (they count as -inf).

    Lowered by ``jaxgluon.models.layers.max_pool``, which picks the fastest form per backend.
    """
    return max_pool(x, 3, 2, 1)


def global_avg_pool(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2))
