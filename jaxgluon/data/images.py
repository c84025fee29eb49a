"""Decoding images of any common mode into RGB uint8 arrays.

Every image that enters jaxgluon -- from a folder, a TFDS record, an in-memory array or a prediction call -- goes
through :func:`to_rgb` (PIL images) or :func:`array_to_rgb` (numpy arrays), so that all of them agree:

- grayscale (``L``, ``1``) is replicated to three channels;
- images with transparency (``RGBA``, ``LA``, ``PA``, palette images with a transparent colour, HxWx4 arrays) are
  composited onto a white background;
- palette (``P``), ``CMYK``, ``YCbCr``, ``HSV`` and ``LAB`` go through PIL's own conversion;
- 16-bit (``I;16*``, ``I``) and integer arrays wider than 8 bits are scaled from 0..65535 to 0..255;
  float arrays/``F`` images are read as 0..1 when their maximum is <= 1, else as 0..255;
- animated GIF/WebP: the first frame;
- the EXIF orientation of photos is applied.

Example::

    from jaxgluon.data import load_image
    rgb = load_image("cat.png")          # uint8 (H, W, 3), whatever the file's mode
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps

#: Formats Pillow only identifies (it reads their header, never their pixels).
_IDENTIFY_ONLY = ("MPEG",)


def _readable_extensions() -> tuple[str, ...]:
    """The file extensions of every format the installed Pillow can decode (its opener plugins, stubs excluded)."""
    found = set()
    for ext, fmt in Image.registered_extensions().items():
        opener = Image.OPEN.get("JPEG" if fmt == "MPO" else fmt)   # MPO files open through the JPEG plugin
        if opener is None or fmt in _IDENTIFY_ONLY:
            continue
        factory = opener[0]
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
            continue   # BUFR, GRIB, HDF5, WMF: need a handler Pillow does not ship
        found.add(ext.lower())
    return tuple(sorted(found))


#: Extensions (lower case) of the image files a folder source reads: every format the installed Pillow decodes
#: (.jpg, .png, .bmp, .gif, .webp, .tif/.tiff, .ppm, .tga, .ico, ...; .avif/.jp2 where Pillow was built with them).
IMAGE_EXTENSIONS: tuple[str, ...] = _readable_extensions()

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

_WHITE = 255.0
_ORIENTATION = 0x0112  # EXIF tag


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composites float/uint8 ``rgb`` (H, W, 3) with ``alpha`` (H, W) in 0..255 onto white."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    out = rgb.astype(np.float32) * a + _WHITE * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _wide_int_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scales 16-bit data (0..65535) to 0..255 (values outside that range are clipped first)."""
    a = np.clip(array.astype(np.float64), 0, 65535)
    return np.rint(a / 257.0).astype(np.uint8)


def _float_to_uint8(array: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(array.astype(np.float32))
    scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
    return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Converts a PIL image of any mode to a C-contiguous uint8 (H, W, 3) array (see the module docstring)."""
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode.startswith("I") or mode == "F":  # I;16, I;16B, I;16L, I, F: wide single-channel data
        data = np.asarray(image)
        gray = _float_to_uint8(data) if mode == "F" else _wide_int_to_uint8(data)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = np.asarray(image.convert("RGBA"))
        return _composite_on_white(rgba[..., :3], rgba[..., 3])
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def decode_file(path: str | os.PathLike, min_side: int | None = None) -> np.ndarray:
    """Reads an image file into uint8 (H, W, 3), applying its EXIF orientation.

    With ``min_side``, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling via PIL ``draft``)
    as long as its shorter side stays >= ``min_side``: much faster for photos that get downscaled anyway.

    Raises:
        OSError: the file is missing, not an image PIL can read, or truncated.
    """
    with Image.open(path) as image:
        if min_side is not None and image.format == "JPEG":
            w, h = image.size
            k = min_side / max(1, min(w, h))
            if k < 1.0:
                image.draft("RGB", (math.ceil(w * k), math.ceil(h * k)))
        image.load()
        if image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        return to_rgb(image)


def check_file(path: str | os.PathLike) -> tuple[int, int]:
    """Cheaply checks that ``path`` decodes; returns its (width, height).

    JPEG is decoded at 1/8 scale (PIL ``draft``: reads every byte, which catches truncation, at a fraction of the
    cost of a full decode); PNG chunks are verified (CRC of every chunk, which catches truncation and bit rot);
    other formats (BMP, GIF, WebP, TIFF, ...) are fully decoded.

    Raises:
        OSError / ValueError / SyntaxError: whatever PIL raises for an unreadable file.
    """
    with Image.open(path) as image:
        size = image.size
        if image.format == "JPEG":
            image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
        elif image.format == "PNG":
            image.verify()
        else:
            image.load()
    return size


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Converts an HxW, HxWx1, HxWx3 or HxWx4 array (uint8, wider ints, bool or float) to uint8 (H, W, 3)."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(
            f"expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image array has an empty side: shape {a.shape}")
    if a.dtype == np.uint8:
        u8 = a
    elif a.dtype == np.bool_:
        u8 = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        u8 = _float_to_uint8(a)
    elif np.issubdtype(a.dtype, np.integer):
        u8 = np.clip(a, 0, 255).astype(np.uint8) if a.size and a.max() <= 255 else _wide_int_to_uint8(a)
    else:
        raise ValueError(f"unsupported image dtype {a.dtype}; pass uint8, integer, bool or float pixels")
    if u8.ndim == 2:
        return np.repeat(u8[..., None], 3, axis=2)
    if u8.shape[2] == 4:
        return _composite_on_white(u8[..., :3], u8[..., 3])
    return np.ascontiguousarray(u8)


def load_image(image: ImageLike) -> np.ndarray:
    """Returns ``image`` as uint8 (H, W, 3): a file path, a PIL image, or an array (see :func:`array_to_rgb`).

    Example::

        load_image("photo.jpg").shape          # (H, W, 3)
        load_image(np.zeros((8, 8))).dtype      # uint8
    """
    if isinstance(image, (str, os.PathLike)):
        path = pathlib.Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            return decode_file(path)
        except (OSError, ValueError, SyntaxError) as err:
            raise ValueError(f"cannot decode image file {path}: {err}") from err
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        return array_to_rgb(np.asarray(image))
    raise TypeError(
        f"load_image takes a path, a PIL.Image or a numpy array, got {type(image).__name__}"
    )
