"""CIFAR ResNets (He et al. 2015, section 4.2): 3 stages of 16/32/64 channels, 6n+2 layers.

Shortcuts between stages are the parameter-free "option A": subsample by 2 and zero-pad the new channels, exactly
as in akamaster/pytorch_resnet_cifar10, whose CIFAR-10 checkpoints map onto these modules by name (the
checkpoint's ``linear`` is ``fc`` here).

Example::

    net = CifarResNet(depth=20, num_classes=10, rngs=nnx.Rngs(0))
    logits = net(jnp.zeros((8, 32, 32, 3)))        # (8, 10)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgluon.models.common import batch_norm, global_avg_pool
from jaxgluon.models.layers import Conv


class CifarBasicBlock(nnx.Module):
    def __init__(self, in_features: int, planes: int, stride: int, *, dtype=None, rngs: nnx.Rngs):
        self.conv1 = Conv(in_features, planes, 3, strides=stride, padding=1, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.conv2 = Conv(planes, planes, 3, padding=1, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.stride = stride
        self.pad_channels = planes - in_features

    def __call__(self, x: jax.Array) -> jax.Array:
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad_channels:
            shortcut = x[:, ::self.stride, ::self.stride, :]
            lo = self.pad_channels // 2
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (lo, self.pad_channels - lo)))
        return nnx.relu(out + shortcut)


class CifarResNet(nnx.Module):
    """ResNet-``depth`` for 32x32 inputs; ``depth`` = 6n + 2 (20, 32, 44, 56, 110, ...)."""

    def __init__(self, depth: int, num_classes: int = 10, *, dtype=None, rngs: nnx.Rngs):
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = Conv(3, 16, 3, padding=1, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(16, dtype=dtype, rngs=rngs)
        in_features = 16
        for index, planes in enumerate((16, 32, 64)):
            blocks = []
            for i in range(n):
                stride = 2 if (i == 0 and index > 0) else 1
                blocks.append(CifarBasicBlock(in_features, planes, stride, dtype=dtype, rngs=rngs))
                in_features = planes
            setattr(self, f"layer{index + 1}", nnx.List(blocks))
        self.fc = nnx.Linear(64, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc(self.features(x))

    def features(self, x: jax.Array) -> jax.Array:
        """Pooled penultimate features [N, C] (what ``fc`` classifies): for linear probes and embeddings."""
        x = nnx.relu(self.bn1(self.conv1(x)))
        for stage in (self.layer1, self.layer2, self.layer3):
            for blk in stage:
                x = blk(x)
        return global_avg_pool(x)
