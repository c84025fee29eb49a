"""FLOPs of a network from its own layer shapes: convolutions and dense layers, forward and backward.

    from jaxgluon.models import get_model
    from jaxgluon.models.flops import model_flops
    f = model_flops(get_model('resnet50_v1b', pretrained=False), (256, 224, 224, 3))
    f.forward, f.train_step          # 2 FLOPs per multiply-add

A convolution producing ``P`` output values from a ``kh x kw`` kernel over ``cin / groups`` input channels costs
``2 * P * kh * kw * cin / groups`` FLOPs forward; a dense layer ``2 * rows * in * out``. A train step is the
forward, the weight gradients (the same again) and the input gradients (the same again, except for the first
layer, whose input -- the images -- needs no gradient): ``3 * forward - first layer``. Elementwise work
(BatchNorm, activations, the optimizer) is left out, as in the usual model-FLOPs utilisation (MFU). Unlike XLA's
cost analysis on a GPU, which counts cuDNN convolutions (custom calls) as zero, this does not depend on how the
convolutions are lowered; ``tests/models/test_flops.py`` checks it against XLA's CPU cost analysis.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgluon.models.layers import logged_convs


class ModelFlops(NamedTuple):
    forward: float           # one forward pass of the batch
    train_step: float        # forward + backward (weight and input gradients)
    conv_layers: int
    dense_layers: int
    forward_unpadded: float  # the forward without multiply-adds on zero padding (what XLA's cost analysis counts)


def _valid_taps(in_size: int, out_size: int, kernel: int, stride: int, pad_before: int) -> int:
    """Kernel taps that land inside the input, summed over the output positions of one axis."""
    total = 0
    for o in range(out_size):
        start = o * stride - pad_before
        total += sum(1 for k in range(kernel) if 0 <= start + k < in_size)
    return total


def model_flops(model: nnx.Module, input_shape: Sequence[int], dtype=jnp.float32) -> ModelFlops:
    """FLOPs of ``model`` (eval-mode forward; shapes only, nothing is computed) on a batch of ``input_shape``
    (NHWC). Dense layers are the model's ``nnx.Linear`` modules, each applied once per example (the classifier)."""
    batch = int(input_shape[0])
    log: list = []
    graphdef, state = nnx.split(model)

    def forward(variables, x):
        module = nnx.merge(graphdef, variables)
        module.eval()
        return module(x)

    shapes = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), state)   # works for abstract models too
    with logged_convs(log):
        jax.eval_shape(forward, shapes, jax.ShapeDtypeStruct(tuple(input_shape), dtype))
    per_layer, unpadded = [], 0.0
    for in_shape, out_shape, kernel_shape, groups, strides, pads in log:
        kh, kw, cin_per_group, _ = kernel_shape
        per_layer.append((tuple(in_shape) == tuple(input_shape), 2.0 * math.prod(out_shape) * kh * kw * cin_per_group))
        taps = (_valid_taps(in_shape[1], out_shape[1], kh, strides[0], pads[0][0])
                * _valid_taps(in_shape[2], out_shape[2], kw, strides[1], pads[1][0]))
        unpadded += 2.0 * out_shape[0] * out_shape[3] * taps * cin_per_group
    dense = [2.0 * batch * m.in_features * m.out_features for _, m in nnx.iter_graph(model)
             if isinstance(m, nnx.Linear)]
    forward_total = sum(f for _, f in per_layer) + sum(dense)
    first_layer = sum(f for on_input, f in per_layer if on_input)
    return ModelFlops(forward_total, 3.0 * forward_total - first_layer, len(per_layer), len(dense),
                      unpadded + sum(dense))
