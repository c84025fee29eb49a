"""Every image mode and array kind comes out as uint8 RGB (H, W, 3)."""
from __future__ import annotations

import numpy as np
import pytest
from data_files import noise, solid, write
from PIL import Image

from jaxgluon.data import load_image
from jaxgluon.data.images import check_file, decode_file


def _check_rgb(a: np.ndarray, shape=(12, 20)) -> None:
    assert a.dtype == np.uint8 and a.shape == (*shape, 3) and a.flags.c_contiguous


def test_grayscale_png_replicated(tmp_path):
    path = write(tmp_path / "g.png", Image.new("L", (20, 12), 77))
    a = load_image(path)
    _check_rgb(a)
    assert np.all(a == 77)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((12, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :10, 3] = 255  # left half opaque red-ish, right half fully transparent
    a = load_image(write(tmp_path / "a.png", Image.fromarray(rgba, "RGBA")))
    _check_rgb(a)
    assert np.all(a[:, :10] == [200, 0, 0])
    assert np.all(a[:, 10:] == 255)


def test_palette_and_transparent_palette(tmp_path):
    p = solid((10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    a = load_image(write(tmp_path / "p.png", p))
    _check_rgb(a)
    assert np.all(a == [10, 200, 30])
    transparent = p.copy()
    transparent.info["transparency"] = int(np.asarray(p)[0, 0])
    b = load_image(write(tmp_path / "pt.png", transparent, transparency=int(np.asarray(p)[0, 0])))
    assert np.all(b == 255)


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (20, 12), (0, 255, 255, 0))  # pure red in CMYK
    path = write(tmp_path / "c.jpg", cmyk, quality=95)
    assert Image.open(path).mode == "CMYK"
    a = load_image(path)
    _check_rgb(a)
    assert a[..., 0].min() > 230 and a[..., 1:].max() < 25


def test_sixteen_bit_scaled(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], np.uint16).repeat(4, axis=0)
    path = write(tmp_path / "i16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    a = load_image(path)
    assert a.shape == (4, 3, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a[0, :, 0], [0, 100, 255])


def test_gif_first_frame_and_other_formats(tmp_path):
    frames = [solid((255, 0, 0)).convert("P"), solid((0, 0, 255)).convert("P")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 2
    a = load_image(path)
    _check_rgb(a)
    assert np.all(a == [255, 0, 0])
    for ext in ("bmp", "webp"):
        b = load_image(write(tmp_path / f"x.{ext}", solid((9, 99, 199)), **({"lossless": True} if ext == "webp" else {})))
        _check_rgb(b)
        assert np.all(b == [9, 99, 199])


def test_exif_orientation_applied(tmp_path):
    img = noise(30, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = write(tmp_path / "rot.jpg", img, exif=exif.tobytes())
    assert load_image(path).shape == (30, 10, 3)


def test_reduced_scale_jpeg_decode_keeps_min_side(tmp_path):
    path = write(tmp_path / "big.jpg", noise(400, 300))
    small = decode_file(path, min_side=50)
    assert 50 <= min(small.shape[:2]) < 300
    assert decode_file(path).shape == (300, 400, 3)
    assert check_file(path) == (400, 300)


def test_truncated_and_garbage_files_fail_the_check(tmp_path):
    from data_files import truncated_bytes

    for name, data in {
        "t.jpg": truncated_bytes(noise(64, 48), "JPEG"),
        "t.png": truncated_bytes(noise(64, 48), "PNG"),
        "g.jpg": b"definitely not an image",
    }.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises((OSError, SyntaxError, ValueError)):
            check_file(tmp_path / name)
    with pytest.raises(ValueError, match="cannot decode"):
        load_image(tmp_path / "g.jpg")


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((12, 20), 5, np.uint8), 5),
        (np.full((12, 20, 1), 6, np.uint8), 6),
        (np.full((12, 20, 3), 7, np.uint8), 7),
        (np.full((12, 20, 4), 8, np.uint8), 255),  # alpha 8/255 over white -> nearly white
        (np.full((12, 20, 3), 0.5, np.float32), 128),  # 0..1 floats
        (np.full((12, 20), 200.0, np.float64), 200),  # 0..255 floats
        (np.full((12, 20), 257 * 3, np.uint16), 3),  # 16-bit
        (np.full((12, 20), 9, np.int64), 9),  # small ints stay
    ],
)
def test_arrays(array, expected):
    a = load_image(array)
    _check_rgb(a)
    if array.ndim == 3 and array.shape[2] == 4:
        assert np.all(a >= 247)
    else:
        assert np.all(a == expected)


def test_pil_input_and_errors(tmp_path):
    _check_rgb(load_image(solid((1, 2, 3))))
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="path, a PIL.Image or a numpy array"):
        load_image(42)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
