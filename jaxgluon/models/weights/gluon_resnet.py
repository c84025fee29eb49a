"""Map Gluon ResNet v1 parameters (GluonCV / MXNet model zoo ``resnet*_v1``) onto torchvision-style names.

The zoo's ResNets carry torchvision names, so a Gluon ``.params`` dict is renamed to those and then goes through
the same :func:`~jaxgluon.models.weights.mapping.torch_to_flax` as a torchvision checkpoint. Gluon's ``ResNetV1``
(``gluoncv/model_zoo/resnet.py``, ``mxnet/gluon/model_zoo/vision/resnet.py``) is::

    features: 0 Conv2D 7x7/2 (no bias), 1 BatchNorm, 2 ReLU, 3 MaxPool 3x3/2, 4..7 stage1..stage4, 8 GlobalAvgPool
    output:   Dense(classes)
    BottleneckV1.body: 0 Conv 1x1 (stride here; bias), 1 BN, 2 ReLU, 3 Conv 3x3 (no bias), 4 BN, 5 ReLU,
                       6 Conv 1x1 (bias), 7 BN
    BasicBlockV1.body: 0 Conv 3x3 (stride here), 1 BN, 2 ReLU, 3 Conv 3x3, 4 BN
    downsample:        0 Conv 1x1 (stride, no bias), 1 BN    -- in a stage's first block when channels change

A file names its parameters in one of two styles:

- structural (``save_parameters``): ``features.4.0.body.0.weight``, ``features.1.gamma``, ``output.weight``;
- prefixed (``save_params`` / ``collect_params().save`` / ``export``): ``[arg:|aux:][resnetv10_]stage1_conv0_weight``,
  ``batchnorm0_gamma``, ``dense0_weight``, numbered per stage in creation order (each block's body convolutions and
  BatchNorms, then its downsample's), so the numbers are turned back into blocks from the stage layout.

BatchNorm's ``gamma, beta, running_mean, running_var`` become ``weight, bias, running_mean, running_var``. The
bottleneck's two 1x1 convolutions have a bias that torchvision's (and jaxgluon's) lack; each is folded exactly into
the BatchNorm right after it (``running_mean -= bias``): ``BN(conv(x) + b)`` with statistics ``m`` equals
``BN(conv(x))`` with ``m - b`` in inference, and in training the batch mean absorbs ``b`` while the running-mean
update shifts by the same ``b``.

Example::

    state = gluon_resnet_v1_to_torch(read_params("resnet50_v1-cc729d95.params"), "bottleneck", (3, 4, 6, 3))
    state["layer1.0.conv1.weight"].shape     # (64, 64, 1, 1)
"""
from __future__ import annotations

import re
from typing import Literal, Mapping, Sequence

import numpy as np

from jaxgluon.models.weights.mapping import WeightMismatchError

__all__ = ["gluon_resnet_v1_to_torch", "is_gluon_structural"]

_BN = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}
_BODY = {"basic": {0: "conv1", 1: "bn1", 3: "conv2", 4: "bn2"},
         "bottleneck": {0: "conv1", 1: "bn1", 3: "conv2", 4: "bn2", 6: "conv3", 7: "bn3"}}
_CHANNELS = {"basic": (64, 64, 128, 256, 512), "bottleneck": (64, 256, 512, 1024, 2048)}
_FIRST_STAGE = 4                       # features.4 is stage1
_STRUCTURAL = re.compile(r"features\.(\d+)\.(\d+)\.(body|downsample)\.(\d+)\.(\w+)")
_PREFIXED = re.compile(r"(?:stage(\d+)_)?(conv|batchnorm|dense)(\d+)_(\w+)")


def is_gluon_structural(keys) -> bool:
    """Gluon's own rule (``Block.load_parameters``): a file with a '.' in some name uses structural names."""
    return any("." in k for k in keys)


def _leaf(kind: str, param: str, key: str) -> str:
    if kind in ("conv", "dense") and param in ("weight", "bias"):
        return param
    if kind == "bn" and param in _BN:
        return _BN[param]
    raise WeightMismatchError(f"unexpected Gluon parameter {key!r}")


def _stage_modules(block: str, layers: Sequence[int], stage: int) -> tuple[list[str], list[str]]:
    """The torchvision module names of stage ``stage`` (1-based) in Gluon's creation order: (convs, batchnorms)."""
    convs, norms = [], []
    body = [name for _, name in sorted(_BODY[block].items())]
    for b in range(layers[stage - 1]):
        convs += [f"layer{stage}.{b}.{n}" for n in body if n.startswith("conv")]
        norms += [f"layer{stage}.{b}.{n}" for n in body if n.startswith("bn")]
        if b == 0 and _CHANNELS[block][stage] != _CHANNELS[block][stage - 1]:
            convs.append(f"layer{stage}.0.downsample.0")
            norms.append(f"layer{stage}.0.downsample.1")
    return convs, norms


def _structural_name(key: str, block: str) -> str:
    if key == "features.0.weight":
        return "conv1.weight"
    head, _, param = key.rpartition(".")
    if head == "features.1":
        return f"bn1.{_leaf('bn', param, key)}"
    if head == "output":
        return f"fc.{_leaf('dense', param, key)}"
    match = _STRUCTURAL.fullmatch(key)
    if match is None:
        raise WeightMismatchError(f"unexpected Gluon parameter {key!r}")
    stage, index, part, layer, param = match.groups()
    stage, layer = int(stage) - _FIRST_STAGE + 1, int(layer)
    if not 1 <= stage <= 4:
        raise WeightMismatchError(f"unexpected Gluon parameter {key!r}")
    if part == "downsample":
        if layer not in (0, 1):
            raise WeightMismatchError(f"unexpected Gluon parameter {key!r}")
        return f"layer{stage}.{index}.downsample.{layer}.{_leaf('conv' if layer == 0 else 'bn', param, key)}"
    module = _BODY[block].get(layer)
    if module is None:
        raise WeightMismatchError(f"unexpected Gluon parameter {key!r} (a {block} block's body has no parameters "
                                  f"at index {layer})")
    return f"layer{stage}.{index}.{module}.{_leaf('conv' if module.startswith('conv') else 'bn', param, key)}"


def _prefixed_name(key: str, block: str, layers: Sequence[int]) -> str:
    match = _PREFIXED.fullmatch(key)
    if match is None:
        raise WeightMismatchError(f"unexpected Gluon parameter {key!r}")
    stage, kind, number, param = match.groups()
    number = int(number)
    kind = "bn" if kind == "batchnorm" else kind
    if stage is None:           # the stem and the classifier
        module = {("conv", 0): "conv1", ("bn", 0): "bn1", ("dense", 0): "fc"}.get((kind, number))
    else:
        stage = int(stage)
        if not 1 <= stage <= len(layers) or kind == "dense":
            raise WeightMismatchError(f"unexpected Gluon parameter {key!r}")
        convs, norms = _stage_modules(block, layers, stage)
        names = convs if kind == "conv" else norms
        module = names[number] if number < len(names) else None
    if module is None:
        raise WeightMismatchError(f"unexpected Gluon parameter {key!r} for a ResNet v1 with {block} blocks "
                                  f"{tuple(layers)}")
    return f"{module}.{_leaf(kind, param, key)}"


def gluon_resnet_v1_to_torch(params: Mapping[str, np.ndarray], block: Literal["basic", "bottleneck"],
                             layers: Sequence[int]) -> dict[str, np.ndarray]:
    """Rename a Gluon ResNetV1 parameter dict (either naming style) to torchvision names, folding conv biases.

    Args:
        params: ``{name: array}`` as read from the ``.params`` file.
        block: ``'basic'`` (ResNet-18/34) or ``'bottleneck'`` (50/101/152).
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)``.

    Raises:
        WeightMismatchError: a name that is not part of a Gluon ResNetV1 of this layout (a v2, v1b, thumbnail or
            SE-ResNet file, or another network), listing the first ones.
    """
    structural = is_gluon_structural(params)
    out: dict[str, np.ndarray] = {}
    unknown = []
    for key, value in params.items():
        name = re.sub(r"^(?:arg:|aux:)", "", key)
        try:
            if structural:
                torch_name = _structural_name(name, block)
            else:
                torch_name = _prefixed_name(re.sub(r"^resnetv1\d*_", "", name), block, layers)
        except WeightMismatchError:
            unknown.append(key)
            continue
        if torch_name in out:
            raise WeightMismatchError(f"Gluon parameters {key!r} and another both map to {torch_name!r}")
        out[torch_name] = np.asarray(value)
    if unknown:
        raise WeightMismatchError(
            f"not a Gluon ResNet v1 ({block} blocks, {tuple(layers)}) parameter file: {len(unknown)} unexpected "
            f"names, e.g. {', '.join(unknown[:6])}")
    for conv in [k for k in out if re.search(r"^layer\d\.\d+\.conv\d\.bias$", k)]:
        norm = re.sub(r"conv(\d)\.bias$", r"bn\1.running_mean", conv)
        bias = out.pop(conv)
        if norm not in out:
            raise WeightMismatchError(f"convolution bias {conv!r} has no BatchNorm after it to fold into")
        if out[norm].shape != bias.shape:
            raise WeightMismatchError(f"{conv!r} {bias.shape} does not match {norm!r} {out[norm].shape}")
        out[norm] = (out[norm].astype(np.float64) - bias.astype(np.float64)).astype(np.float32)
    return out
