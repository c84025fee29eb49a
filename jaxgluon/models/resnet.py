"""ImageNet ResNets: GluonCV's v1 layout and the torchvision/timm ("v1b") layout.

Both share the torchvision module names (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``fc``; the projection shortcut
is ``downsample_conv`` / ``downsample_bn``), so a torchvision state dict maps onto either by name. They differ only
in the bottleneck (ResNet-50 and deeper): v1 (He et al. 2015, GluonCV ``resnet50_v1``) strides the first 1x1
convolution, v1b (torchvision, "ResNet v1.5") strides the 3x3 convolution. With basic blocks (18/34) the two are the
same network.

Example::

    net = ResNet("bottleneck", (3, 4, 6, 3), num_classes=10, stride_on_3x3=True, rngs=nnx.Rngs(0))
    logits = net(jnp.zeros((2, 224, 224, 3)))      # (2, 10)
"""
from __future__ import annotations

from typing import Literal, Sequence

import jax
from flax import nnx

from jaxgluon.models.common import batch_norm, global_avg_pool, max_pool_3x3_s2
from jaxgluon.models.layers import Conv

DEPTHS: dict[int, tuple[Literal["basic", "bottleneck"], tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class BasicBlock(nnx.Module):
    expansion = 1

    def __init__(self, in_features: int, planes: int, stride: int, *, stride_on_3x3: bool = True, dtype=None,
                 rngs: nnx.Rngs):
        del stride_on_3x3  # a basic block has only 3x3 convolutions
        self.conv1 = Conv(in_features, planes, 3, strides=stride, padding=1, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.conv2 = Conv(planes, planes, 3, padding=1, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
        _add_downsample(self, in_features, planes, stride, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return nnx.relu(out + _shortcut(self, x))


class Bottleneck(nnx.Module):
    expansion = 4

    def __init__(self, in_features: int, planes: int, stride: int, *, stride_on_3x3: bool = True, dtype=None,
                 rngs: nnx.Rngs):
        out_features = planes * self.expansion
        s1, s3 = (1, stride) if stride_on_3x3 else (stride, 1)
        self.conv1 = Conv(in_features, planes, 1, strides=s1, padding=0, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.conv2 = Conv(planes, planes, 3, strides=s3, padding=1, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.conv3 = Conv(planes, out_features, 1, padding=0, dtype=dtype, rngs=rngs)
        self.bn3 = batch_norm(out_features, dtype=dtype, rngs=rngs)
        _add_downsample(self, in_features, out_features, stride, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = nnx.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return nnx.relu(out + _shortcut(self, x))


def _add_downsample(block: nnx.Module, in_features: int, out_features: int, stride: int, dtype, rngs) -> None:
    if stride != 1 or in_features != out_features:
        block.downsample_conv = Conv(in_features, out_features, 1, strides=stride, padding=0, dtype=dtype, rngs=rngs)
        block.downsample_bn = batch_norm(out_features, dtype=dtype, rngs=rngs)
    else:
        block.downsample_conv = block.downsample_bn = None


def _shortcut(block: nnx.Module, x: jax.Array) -> jax.Array:
    if block.downsample_conv is None:
        return x
    return block.downsample_bn(block.downsample_conv(x))


class ResNet(nnx.Module):
    """ResNet for 224x224 inputs (any size >= 32 works): 7x7/2 stem, max-pool, four stages, global pool, ``fc``."""

    def __init__(self, block: Literal["basic", "bottleneck"], layers: Sequence[int], num_classes: int = 1000, *,
                 stride_on_3x3: bool = True, dtype=None, rngs: nnx.Rngs):
        block_cls = BasicBlock if block == "basic" else Bottleneck
        self.conv1 = Conv(3, 64, 7, strides=2, padding=3, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(64, dtype=dtype, rngs=rngs)
        in_features = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for i in range(count):
                stride = 2 if (i == 0 and index > 0) else 1
                blocks.append(block_cls(in_features, planes, stride, stride_on_3x3=stride_on_3x3, dtype=dtype,
                                        rngs=rngs))
                in_features = planes * block_cls.expansion
            setattr(self, f"layer{index + 1}", nnx.List(blocks))
        self.fc = nnx.Linear(in_features, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc(self.features(x))

    def features(self, x: jax.Array) -> jax.Array:
        """Pooled penultimate features [N, C] (what ``fc`` classifies): for linear probes and embeddings."""
        x = max_pool_3x3_s2(nnx.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for blk in stage:
                x = blk(x)
        return global_avg_pool(x)


def resnet(depth: int, num_classes: int = 1000, *, variant: Literal["v1", "v1b"] = "v1b", dtype=None,
           rngs: nnx.Rngs) -> ResNet:
    """ResNet-``depth`` (18/34/50/101/152) in the GluonCV ``v1`` or torchvision ``v1b`` layout."""
    if depth not in DEPTHS:
        raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
    if variant not in ("v1", "v1b"):
        raise ValueError(f"variant must be 'v1' or 'v1b', got {variant!r}")
    block, layers = DEPTHS[depth]
    return ResNet(block, layers, num_classes, stride_on_3x3=(variant == "v1b"), dtype=dtype, rngs=rngs)
