"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the "lite" variants for mobile accelerators).

Lite differs from EfficientNet-B0 in: ReLU6 instead of swish, no squeeze-and-excitation, and a stem/head not scaled
with width. BatchNorm uses eps 1e-3 and convolutions use TensorFlow's "same" padding (``padding='SAME'``, which pads
the bottom/right more when the total padding is odd), as the original TF checkpoint was trained. Inputs are scaled
to [-1, 1] (mean = std = 0.5 on the 0-1 scale). Module names follow the EfficientNet-PyTorch checkpoint
(``conv_stem``, ``bn0``, ``blocks.i.{expand_conv,bn0,depthwise_conv,bn1,project_conv,bn2}``, ``conv_head``, ``bn1``,
``fc``; the checkpoint's leading underscores dropped). The classifier dropout (0.2) of the original training is
omitted; evaluation is unaffected.

Lite1 and Lite2 scale Lite0's stages as EfficientNet does (``LITE_SCALING``: channels by the width multiplier,
rounded to multiples of 8; repeats by the depth multiplier, rounded up), except that Lite keeps the first and last
stage at one block, and the stem (32) and head (1280) unscaled: the layout of Google's ``efficientnet_lite_builder``
and of the published checkpoints (Lite2: stages 16/24/48/88/120/208/352 wide, 1/3/3/4/4/5/1 blocks).

Example::

    net = EfficientNetLite(num_classes=5, variant=0, rngs=nnx.Rngs(0))
    logits = net(jnp.zeros((2, 224, 224, 3)))      # (2, 5)
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
from flax import nnx

from jaxgluon.models.common import batch_norm, global_avg_pool
from jaxgluon.models.layers import Conv

# (kernel, repeats, in, out, expand ratio, first stride) per stage, EfficientNet-Lite0 (width = depth = 1.0).
LITE0_STAGES = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)


class LiteScaling(NamedTuple):
    width: float
    depth: float
    resolution: int     # the side the published weights were trained at


#: Google's efficientnet_lite_builder coefficients per variant.
LITE_SCALING = {0: LiteScaling(1.0, 1.0, 224), 1: LiteScaling(1.0, 1.1, 240), 2: LiteScaling(1.1, 1.2, 260)}


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: nearest multiple of ``divisor``, never 10% below the scaled width."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def lite_stages(variant: int) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """Lite0's stages scaled to ``variant`` (same tuple layout as ``LITE0_STAGES``).

    >>> [s[1] for s in lite_stages(2)], lite_stages(2)[-1][3]
    ([1, 3, 3, 4, 4, 5, 1], 352)
    """
    if variant not in LITE_SCALING:
        raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(LITE_SCALING)}, got {variant!r}")
    width, depth, _ = LITE_SCALING[variant]
    last = len(LITE0_STAGES) - 1
    stages = []
    for i, (kernel, repeats, in_features, out_features, expand, stride) in enumerate(LITE0_STAGES):
        stages.append((kernel, repeats if i in (0, last) else int(math.ceil(depth * repeats)),
                       in_features if i == 0 else _round_filters(in_features, width),   # the stem stays 32 wide
                       _round_filters(out_features, width), expand, stride))
    return tuple(stages)


# eps 1e-3 as the TF original; running-statistics decay 0.9 (torch's momentum 0.1) rather than TF's 0.99, so a short
# fine-tune on a new dataset moves the ImageNet statistics to its own within tens of steps (eval mode uses them).
_BN = dict(epsilon=1e-3, momentum=0.9)


class MBConv(nnx.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, identity skip when shapes allow."""

    def __init__(self, in_features: int, out_features: int, kernel: int, stride: int, expand_ratio: int, *,
                 dtype=None, rngs: nnx.Rngs):
        hidden = in_features * expand_ratio
        if expand_ratio != 1:
            self.expand_conv = Conv(in_features, hidden, 1, padding="SAME", dtype=dtype, rngs=rngs)
            self.bn0 = batch_norm(hidden, dtype=dtype, rngs=rngs, **_BN)
        else:
            self.expand_conv = self.bn0 = None
        self.depthwise_conv = Conv(hidden, hidden, kernel, strides=stride, padding="SAME", groups=hidden,
                                   dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(hidden, dtype=dtype, rngs=rngs, **_BN)
        self.project_conv = Conv(hidden, out_features, 1, padding="SAME", dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(out_features, dtype=dtype, rngs=rngs, **_BN)
        self.use_skip = stride == 1 and in_features == out_features

    def __call__(self, x: jax.Array) -> jax.Array:
        out = x
        if self.expand_conv is not None:
            out = nnx.relu6(self.bn0(self.expand_conv(out)))
        out = nnx.relu6(self.bn1(self.depthwise_conv(out)))
        out = self.bn2(self.project_conv(out))
        return out + x if self.use_skip else out


class EfficientNetLite(nnx.Module):
    def __init__(self, num_classes: int = 1000, *, variant: int = 0, dtype=None, rngs: nnx.Rngs):
        stages = lite_stages(variant)
        self.conv_stem = Conv(3, 32, 3, strides=2, padding="SAME", dtype=dtype, rngs=rngs)
        self.bn0 = batch_norm(32, dtype=dtype, rngs=rngs, **_BN)
        blocks = []
        for kernel, repeats, in_features, out_features, expand, stride in stages:
            for i in range(repeats):
                blocks.append(MBConv(in_features if i == 0 else out_features, out_features, kernel,
                                     stride if i == 0 else 1, expand, dtype=dtype, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.conv_head = Conv(stages[-1][3], 1280, 1, padding="SAME", dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(1280, dtype=dtype, rngs=rngs, **_BN)
        self.fc = nnx.Linear(1280, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc(self.features(x))

    def features(self, x: jax.Array) -> jax.Array:
        """Pooled penultimate features [N, C] (what ``fc`` classifies): for linear probes and embeddings."""
        x = nnx.relu6(self.bn0(self.conv_stem(x)))
        for blk in self.blocks:
            x = blk(x)
        x = nnx.relu6(self.bn1(self.conv_head(x)))
        return global_avg_pool(x)
