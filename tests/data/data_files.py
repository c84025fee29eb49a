"""Helpers for the data tests: real image files written with PIL."""
from __future__ import annotations

import io
import pathlib

import numpy as np
from PIL import Image


def solid(color: tuple[int, int, int], size: tuple[int, int] = (20, 12)) -> Image.Image:
    """An RGB image of one colour, ``size`` = (width, height)."""
    return Image.new("RGB", size, color)


def write(path: pathlib.Path, image: Image.Image, **save_kw) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_kw)
    return path


def truncated_bytes(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    data = buf.getvalue()
    return data[: len(data) // 2]


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
