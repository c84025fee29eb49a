"""EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant for mobile accelerators).

Lite differs from EfficientNet-B0 in: ReLU6 instead of swish, no squeeze-and-excitation, and a stem/head not scaled
with width. BatchNorm uses eps 1e-3 and convolutions use TensorFlow's "same" padding (``padding='SAME'``, which pads
the bottom/right more when the total padding is odd), as the original TF checkpoint was trained. Inputs are scaled
to [-1, 1] (mean = std = 0.5 on the 0-1 scale). Module names follow the EfficientNet-PyTorch checkpoint
(``conv_stem``, ``bn0``, ``blocks.i.{expand_conv,bn0,depthwise_conv,bn1,project_conv,bn2}``, ``conv_head``, ``bn1``,
``fc``; the checkpoint's leading underscores dropped). The classifier dropout (0.2) of the original training is
omitted; evaluation is unaffected.

Example::

    net = EfficientNetLite0(num_classes=5, rngs=nnx.Rngs(0))
    logits = net(jnp.zeros((2, 224, 224, 3)))      # (2, 5)
"""
from __future__ import annotations

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


class EfficientNetLite0(nnx.Module):
    def __init__(self, num_classes: int = 1000, *, dtype=None, rngs: nnx.Rngs):
        self.conv_stem = Conv(3, 32, 3, strides=2, padding="SAME", dtype=dtype, rngs=rngs)
        self.bn0 = batch_norm(32, dtype=dtype, rngs=rngs, **_BN)
        blocks = []
        for kernel, repeats, in_features, out_features, expand, stride in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(in_features if i == 0 else out_features, out_features, kernel,
                                     stride if i == 0 else 1, expand, dtype=dtype, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.conv_head = Conv(320, 1280, 1, padding="SAME", dtype=dtype, rngs=rngs)
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
