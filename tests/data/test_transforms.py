"""Crops, flips, normalisation and preprocess_eval."""
from __future__ import annotations

import numpy as np
import pytest
from data_files import noise, write
from PIL import Image

from jaxgluon.data import preprocess_eval, transforms


def _ramp(h: int, w: int) -> np.ndarray:
    """Red encodes the column, green the row: lets a test read where a crop came from."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w).round().astype(np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, h).round().astype(np.uint8)[:, None]
    return img


def test_center_crop_geometry():
    img = _ramp(100, 200)
    out = transforms.center_crop(img, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    # The crop spans the central 87.5 of the 100 rows and columns 56.25..143.75 of 200.
    assert abs(int(out[..., 0].mean()) - 128) <= 2 and abs(int(out[..., 1].mean()) - 128) <= 2
    assert 60 < out[0, 0, 0] < 90 and 160 < out[0, -1, 0] < 195
    square = np.asarray(noise(24, 24))
    np.testing.assert_array_equal(transforms.center_crop(square, 24, crop_fraction=1.0), square)
    assert transforms.eval_min_side(224) == 256


def test_cap_shorter_side_never_upscales():
    assert transforms.cap_shorter_side(np.zeros((300, 500, 3), np.uint8), 100).shape == (100, 167, 3)
    small = np.zeros((8, 8, 3), np.uint8)
    assert transforms.cap_shorter_side(small, 100) is small


def test_random_resized_crop_deterministic_and_varied():
    img = _ramp(120, 160)
    a = transforms.random_resized_crop(img, 32, np.random.default_rng(0))
    b = transforms.random_resized_crop(img, 32, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    outs = [transforms.random_resized_crop(img, 32, np.random.default_rng(s)) for s in range(8)]
    assert all(o.shape == (32, 32, 3) for o in outs)
    assert len({o.tobytes() for o in outs}) == 8
    # Extreme aspect: the fallback crop still gives a square output.
    assert transforms.random_resized_crop(np.zeros((1, 300, 3), np.uint8), 8, np.random.default_rng(0)).shape == (
        8, 8, 3)


def test_pad_crop_shifts_with_zero_border():
    img = np.full((8, 8, 3), 255, np.uint8)
    outs = [transforms.pad_random_crop(img, 32, np.random.default_rng(s)) for s in range(20)]
    assert all(o.shape == (32, 32, 3) for o in outs)
    assert all(np.all(o[4:28, 4:28] == 255) for o in outs)  # shifts are at most 32 // 8 = 4
    assert any(np.any(o == 0) for o in outs) and len({o.tobytes() for o in outs}) > 5


def test_flip_only_when_asked():
    img = _ramp(16, 16)
    plain = transforms.center_crop(img, 16)
    none = {transforms.augment_image(img, 16, "none", np.random.default_rng(s)).tobytes() for s in range(10)}
    assert none == {plain.tobytes()}
    flips = [transforms.augment_image(img, 16, "flip", np.random.default_rng(s)) for s in range(10)]
    mirrored = [np.array_equal(f, plain[:, ::-1]) for f in flips]
    assert any(mirrored) and not all(mirrored)
    # pad_crop without flip keeps red increasing left to right.
    for s in range(10):
        out = transforms.augment_image(img, 16, "pad_crop", np.random.default_rng(s)).astype(int)
        assert out[8, 4, 0] < out[8, 11, 0]
    with pytest.raises(ValueError, match="unknown augment"):
        transforms.check_augment("rotate")


def test_normalize_formula():
    x = np.array([[[0, 128, 255]]], np.uint8)
    m, s = transforms.check_mean_std((0.1, 0.2, 0.3), (0.5, 0.25, 0.2))
    out = transforms.normalize(x, m, s)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], (np.array([0, 128, 255]) / 255 - m) / s, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="3 values"):
        transforms.check_mean_std((0.5,), (0.5,))
    with pytest.raises(ValueError, match="0-1 pixel scale"):
        transforms.check_mean_std((123.7, 116.3, 103.5), (58.4, 57.1, 57.4))


def test_preprocess_eval_accepts_every_input_kind(tmp_path):
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    rgb = np.asarray(noise(40, 30))
    path = write(tmp_path / "x.png", Image.fromarray(rgb))
    expected = transforms.normalize(transforms.center_crop(rgb, 16)[None], *transforms.check_mean_std(mean, std))
    for images in (path, str(path), Image.fromarray(rgb), rgb, [rgb], rgb[None], [path]):
        out = preprocess_eval(images, 16, mean, std)
        assert out.shape == (1, 16, 16, 3) and out.dtype == np.float32
        np.testing.assert_array_equal(out, expected)
    assert preprocess_eval([rgb, np.zeros((5, 5), np.uint8)], 8, mean, std).shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="no images"):
        preprocess_eval([], 8, mean, std)
