"""Decoding once at a working resolution (``WORKING_SIDE_FACTOR`` x the image size) leaves the train augmentation's
distribution as it was when images were kept at twice the image size: the random-resized crop's area fraction,
aspect ratio and position, and the flip rate, are read back from images whose pixels encode their coordinates,
and compared with two-sample Kolmogorov-Smirnov tests (and a two-proportion z-test for the flips)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from jaxgluon.data import ArraySource, batch_augment, make_loader
from jaxgluon.data import loader as loader_module

H, W, S, N, EPOCHS = 80, 120, 24, 48, 12


def coordinate_images() -> np.ndarray:
    """R = x position, G = y position (a linear ramp each, which bilinear resampling preserves), B = 0."""
    x = (np.arange(W) + 0.5) / W
    y = (np.arange(H) + 0.5) / H
    img = np.zeros((H, W, 3), np.float64)
    img[..., 0] = x[None, :]
    img[..., 1] = y[:, None]
    return np.repeat(np.round(img * 255).astype(np.uint8)[None], N, axis=0)


def crop_statistics(factor: float, seed: int, monkeypatch, mode: str = "grain") -> dict[str, np.ndarray]:
    monkeypatch.setattr(loader_module, "WORKING_SIDE_FACTOR", factor)
    src = ArraySource(coordinate_images(), [0, 1] * (N // 2), ["a", "b"])   # a new source: its own decoded cache
    batches = make_loader(src, batch_size=N, image_size=S, mean=(0.0,) * 3, std=(1.0,) * 3, train=True,
                          seed=seed, num_epochs=EPOCHS, augment="resized_crop+flip", batch_augment=mode)
    images = np.concatenate([np.asarray(b["image"]) for b in batches])               # pixel / 255
    r_first, r_last = images[:, S // 2, 0, 0], images[:, S // 2, -1, 0]
    g_first, g_last = images[:, 0, S // 2, 1], images[:, -1, S // 2, 1]
    flipped = r_last < r_first
    lo, hi = np.minimum(r_first, r_last), np.maximum(r_first, r_last)
    fw = (hi - lo) * S / (S - 1)                                           # crop width / image width
    fh = (g_last - g_first) * S / (S - 1)
    return {"area": fw * fh, "log_aspect": np.log((fw * W) / (fh * H)),
            "cx": (lo + hi) / 2, "cy": (g_first + g_last) / 2, "flip": flipped}


@pytest.mark.parametrize("mode", ["grain", "host", "device"])
def test_working_resolution_keeps_the_augmentation_distribution(monkeypatch, mode):
    """The per-example grain path and the batch-at-once paths (jaxgluon.data.batch_augment) vs the former one."""
    before = crop_statistics(2.0, seed=1, monkeypatch=monkeypatch)                 # the former storage and path
    after = crop_statistics(loader_module.WORKING_SIDE_FACTOR_DEFAULT, seed=2, monkeypatch=monkeypatch, mode=mode)
    for key in ("area", "log_aspect", "cx", "cy"):
        p = stats.ks_2samp(before[key], after[key]).pvalue
        assert p > 1e-3, (key, p, np.mean(before[key]), np.mean(after[key]))
    # the recipe itself: area 0.08..1, aspect 3/4..4/3 (both ends within resampling error)
    assert 0.06 < after["area"].min() and after["area"].max() < 1.02
    assert np.log(0.7) < after["log_aspect"].min() and after["log_aspect"].max() < np.log(1.45)
    n = len(after["flip"])
    p1, p2 = before["flip"].mean(), after["flip"].mean()
    pooled = (p1 + p2) / 2
    z = (p1 - p2) / np.sqrt(2 * pooled * (1 - pooled) / n)
    assert abs(z) < 3.3 and abs(p2 - 0.5) < 0.1


def test_the_comparison_detects_a_different_crop_distribution(monkeypatch):
    """The same statistics tell a narrower crop-scale range apart: the test above can fail."""
    before = crop_statistics(2.0, seed=1, monkeypatch=monkeypatch)
    monkeypatch.setattr(loader_module.transforms, "RRC_SCALE", (0.3, 1.0))
    original = loader_module.transforms.random_resized_crop

    def narrower(image, image_size, rng, scale=(0.3, 1.0), ratio=loader_module.transforms.RRC_RATIO):
        return original(image, image_size, rng, scale=scale, ratio=ratio)

    monkeypatch.setattr(loader_module.transforms, "random_resized_crop", narrower)
    after = crop_statistics(loader_module.WORKING_SIDE_FACTOR_DEFAULT, seed=2, monkeypatch=monkeypatch)
    assert stats.ks_2samp(before["area"], after["area"]).pvalue < 1e-3


def test_the_comparison_detects_a_different_batch_crop_distribution(monkeypatch):
    """The batch path's draw with a narrower scale range is told apart too."""
    before = crop_statistics(2.0, seed=1, monkeypatch=monkeypatch)
    original = batch_augment.draw_crops
    monkeypatch.setattr(batch_augment, "draw_crops",
                        lambda sizes, policy, rng: original(sizes, policy, rng, scale=(0.3, 1.0)))
    after = crop_statistics(loader_module.WORKING_SIDE_FACTOR_DEFAULT, seed=2, monkeypatch=monkeypatch, mode="host")
    assert stats.ks_2samp(before["area"], after["area"]).pvalue < 1e-3
