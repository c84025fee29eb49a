"""Image transforms on uint8 (H, W, 3) numpy arrays (PIL for resampling), shared by the loader and prediction.

Eval: resize the shorter side to ``image_size / 0.875`` and center-crop ``image_size`` (the standard 0.875 crop
ratio, e.g. 256 -> 224), done as one bilinear (antialiased) resize of the crop box.

Train augmentations (``augment=`` of :func:`jaxgluon.data.make_loader`):

- ``'resized_crop'``: random-resized-crop, area scale 0.08..1, aspect 3/4..4/3 (log-uniform), 10 tries then a
  center crop -- the ImageNet recipe, for photos;
- ``'pad_crop'``: resize to ``image_size`` (shorter side, center crop), zero-pad by ``image_size // 8`` and take a
  random ``image_size`` crop -- the CIFAR recipe, for tiny images (8x8 digits, 32x32 CIFAR) where a 0.08-area crop
  would be a handful of pixels;
- ``'none'``: the eval transform;
- each with ``'+flip'`` for a random horizontal flip (``'resized_crop+flip'``, ``'pad_crop+flip'``, ``'none+flip'``
  or just ``'flip'``).

Example::

    from jaxgluon.data import preprocess_eval
    x = preprocess_eval(["a.jpg", "b.png"], 224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    x.shape, x.dtype        # (2, 224, 224, 3), float32
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from PIL import Image

from jaxgluon.data.images import ImageLike, decode_file, load_image

EVAL_CROP_FRACTION = 0.875
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
AUGMENTS = ("none", "flip", "none+flip", "resized_crop", "resized_crop+flip", "pad_crop", "pad_crop+flip")
_RESAMPLE = Image.Resampling.BILINEAR


def _resize_box(image: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """Crops ``box`` (left, top, right, bottom; float pixels) out of ``image`` and resizes it to ``size`` (w, h)."""
    h, w = image.shape[:2]
    if size == (w, h) and box == (0.0, 0.0, float(w), float(h)):
        return image
    return np.asarray(Image.fromarray(image).resize(size, _RESAMPLE, box=box))


def eval_min_side(image_size: int) -> int:
    """The shorter side an image needs for the eval crop without upsampling (``image_size / 0.875``)."""
    return math.ceil(image_size / EVAL_CROP_FRACTION)


def center_crop(image: np.ndarray, image_size: int, crop_fraction: float = EVAL_CROP_FRACTION) -> np.ndarray:
    """Resize the shorter side to ``image_size / crop_fraction``, then center-crop ``image_size`` square."""
    h, w = image.shape[:2]
    side = min(h, w) * crop_fraction
    left, top = (w - side) / 2.0, (h - side) / 2.0
    return _resize_box(image, (image_size, image_size), (left, top, left + side, top + side))


def cap_shorter_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscales ``image`` so its shorter side is at most ``max_side`` (never upscales)."""
    h, w = image.shape[:2]
    short = min(h, w)
    if short <= max_side:
        return image
    scale = max_side / short
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return _resize_box(image, size, (0.0, 0.0, float(w), float(h)))


def random_resized_crop(
    image: np.ndarray,
    image_size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> np.ndarray:
    """A random crop of ``scale`` of the area and ``ratio`` aspect, resized to ``image_size`` square."""
    h, w = image.shape[:2]
    area = float(h * w)
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        cw, ch = math.sqrt(target * aspect), math.sqrt(target / aspect)
        if 1.0 <= cw <= w and 1.0 <= ch <= h:
            left, top = rng.uniform(0.0, w - cw), rng.uniform(0.0, h - ch)
            return _resize_box(image, (image_size, image_size), (left, top, left + cw, top + ch))
    # Fallback: the largest centered crop whose aspect lies within ratio.
    aspect = w / h
    cw, ch = float(w), float(h)
    if aspect > ratio[1]:
        cw = h * ratio[1]
    elif aspect < ratio[0]:
        ch = w / ratio[0]
    left, top = (w - cw) / 2.0, (h - ch) / 2.0
    return _resize_box(image, (image_size, image_size), (left, top, left + cw, top + ch))


def pad_random_crop(image: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Resize to ``image_size`` (center crop), zero-pad by ``image_size // 8`` (>= 1), random ``image_size`` crop."""
    base = center_crop(image, image_size, crop_fraction=1.0)
    pad = max(1, image_size // 8)
    dy, dx = rng.integers(0, 2 * pad + 1, size=2)
    padded = np.pad(base, ((pad, pad), (pad, pad), (0, 0)))
    return padded[dy:dy + image_size, dx:dx + image_size]


def check_augment(augment: str) -> str:
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; choose 'auto' or one of {AUGMENTS}")
    return augment


def augment_image(image: np.ndarray, image_size: int, augment: str, rng: np.random.Generator) -> np.ndarray:
    """Applies the train augmentation ``augment`` (one of :data:`AUGMENTS`); returns uint8 square ``image_size``."""
    crop = augment.split("+")[0]
    if crop == "resized_crop":
        out = random_resized_crop(image, image_size, rng)
    elif crop == "pad_crop":
        out = pad_random_crop(image, image_size, rng)
    else:
        out = center_crop(image, image_size)
    if augment.endswith("flip") and rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def check_mean_std(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    m, s = np.asarray(mean, np.float32).reshape(-1), np.asarray(std, np.float32).reshape(-1)
    if m.shape != (3,) or s.shape != (3,):
        raise ValueError(f"mean and std need 3 values (R, G, B on the 0-1 scale), got {mean!r} and {std!r}")
    if np.any(s <= 0):
        raise ValueError(f"std must be positive, got {std!r}")
    if np.any(m > 1.0) or np.any(s > 1.0):
        raise ValueError(f"mean/std are on the 0-1 pixel scale (e.g. 0.485, 0.229), got {mean!r}, {std!r}")
    return m, s


def normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 [..., W, 3] -> float32 ``(x / 255 - mean) / std``, computed as ``(x - 255 mean) * (1 / (255 std))``.

    That order (a subtraction, then a product) has no multiply-add for a compiler to fuse, so XLA's version of it
    (:func:`jaxgluon.data.batch_augment` normalises batches in a jitted function) gives the same bits as this one.
    """
    offset, scale = normalize_constants(mean, std)
    if images.ndim < 2:
        return (images.astype(np.float32) - offset) * scale
    # Rows of W * 3 values: numpy's inner loop then runs over whole rows instead of 3 channels (about 10x faster).
    width = images.shape[-2]
    out = images.reshape(-1, width * 3).astype(np.float32)
    out -= np.tile(offset, width)
    out *= np.tile(scale, width)
    return out.reshape(images.shape)


def normalize_constants(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(255 * mean, 1 / (255 * std))``: :func:`normalize` is ``(x - offset) * scale``."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (255.0 * mean).astype(np.float32), (1.0 / (255.0 * std)).astype(np.float32)


def load_for_eval(image: ImageLike, image_size: int) -> np.ndarray:
    """One image (path, PIL or array) through the eval transform; files decode at reduced scale when possible."""
    if isinstance(image, (str, os.PathLike)) and os.path.isfile(os.path.expanduser(image)):
        try:
            rgb = decode_file(os.path.expanduser(image), min_side=eval_min_side(image_size))
        except (OSError, ValueError, SyntaxError) as err:
            raise ValueError(f"cannot decode image file {image}: {err}") from err
    else:
        rgb = load_image(image)
    return center_crop(rgb, image_size)


def preprocess_eval(
    images: ImageLike | Sequence[ImageLike], image_size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """The eval transform + normalisation for prediction: returns float32 [N, image_size, image_size, 3].

    ``images`` is one image (a path, a PIL image, an (H, W) or (H, W, C) array) or a sequence of them, or an
    array [N, H, W, C]. Gives exactly what ``make_loader(..., train=False)`` yields for the same images.

    Example::

        x = preprocess_eval(np.zeros((2, 32, 32, 3), np.uint8), 64, (0.5,) * 3, (0.25,) * 3)   # (2, 64, 64, 3)
    """
    if image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size}")
    m, s = check_mean_std(mean, std)
    if isinstance(images, np.ndarray):
        batch = list(images) if images.ndim == 4 else [images]
    elif isinstance(images, (str, os.PathLike, Image.Image)):
        batch = [images]
    else:
        batch = list(images)
    if not batch:
        raise ValueError("preprocess_eval got no images")
    crops = np.stack([load_for_eval(im, image_size) for im in batch])
    return normalize(crops, m, s)
