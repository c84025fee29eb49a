"""The batch-at-once train augmentation (jaxgluon.data.batch_augment): output contract, agreement of the host and
device paths with the per-example transforms, fallback to grain, and no compilation after the first epoch."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxgluon.data import ArraySource, batch_augment, make_loader, transforms
from jaxgluon.train.compile_count import CompileCounter

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def images(n: int = 12, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)   # mixed sizes and aspects: the device path edge-pads to the largest
    return [rng.integers(0, 256, (int(rng.integers(20, 40)), int(rng.integers(20, 50)), 3), dtype=np.uint8)
            for _ in range(n)]


def photos(n: int = 12, seed: int = 0) -> list[np.ndarray]:
    """Smooth images (6x6 noise upsampled) of 18-26 px a side: like the decode cache's working images of a 16 px
    train size, a little larger than the crops and without pixel-level noise, as photographs are."""
    rng = np.random.default_rng(seed)
    return [np.asarray(Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
        (int(rng.integers(18, 27)), int(rng.integers(18, 27))), Image.Resampling.BICUBIC)) for _ in range(n)]


def source(n: int = 12) -> ArraySource:
    ims = images(n)
    return ArraySource(ims, [i % 3 for i in range(n)], ["a", "b", "c"])


@pytest.mark.parametrize("mode", ["host", "device"])
@pytest.mark.parametrize("policy", ["resized_crop+flip", "none"])
def test_batches_match_the_per_example_transform(mode, policy):
    ims = photos()
    m, s = transforms.check_mean_std(MEAN, STD)
    idx = np.array([3, 0, 7, 11])
    sizes = np.asarray([ims[i].shape[:2] for i in idx])
    boxes, flips = batch_augment.draw_crops(sizes, policy, np.random.default_rng(5))
    if policy == "none":
        assert not flips.any()
    expected = []
    for j, i in enumerate(idx):
        crop = transforms._resize_box(ims[i], (16, 16), tuple(map(float, boxes[j])))
        expected.append(crop[:, ::-1] if flips[j] else crop)
    expected = transforms.normalize(np.stack(expected), m, s)
    aug = (batch_augment.HostAugment(ims, 16, m, s, threads=2) if mode == "host"
           else batch_augment.DeviceAugment(ims, 16, m, s))
    got = np.asarray(aug(idx, boxes, flips))
    assert got.shape == (4, 16, 16, 3) and got.dtype == np.float32
    err = np.abs(got - expected) * (255 * s)   # in uint8 levels
    # host: OpenCV's bilinear warp; device: jax's antialiased linear kernel; vs Pillow's bilinear filter: a level
    # or two apart at most places
    assert np.median(err) <= 1.0 and np.percentile(err, 99) <= 8.0, (np.median(err), err.max())


def test_host_crops_shrunk_beyond_the_warp_limit_are_pillows_exactly():
    """Noise, shrunk 2x: OpenCV's unfiltered warp would alias; those crops take the per-example resampling."""
    image = images(1)[0]
    h, w = image.shape[:2]
    out = np.empty((8, 8, 3), np.uint8)
    box = np.array([0.5, 1.0, 16.5, 17.0])          # 16 px -> 8 px
    batch_augment.crop_into(out, image, box)
    np.testing.assert_array_equal(out, transforms._resize_box(image, (8, 8), tuple(box)))
    near = np.array([0.5, 1.0, 8.5, 9.0])           # 8 px -> 8 px: the warp, within a level of Pillow
    batch_augment.crop_into(out, image, near)
    assert np.abs(out.astype(int) - transforms._resize_box(image, (8, 8), tuple(near))).max() <= 1


def test_center_crop_boxes_are_the_eval_crop():
    boxes, _ = batch_augment.draw_crops(np.array([[30, 40]]), "none", np.random.default_rng(0))
    side = 30 * transforms.EVAL_CROP_FRACTION
    np.testing.assert_allclose(boxes[0], [(40 - side) / 2, (30 - side) / 2, (40 + side) / 2, (30 + side) / 2])


@pytest.mark.parametrize("mode", ["host", "device"])
def test_loader_contract_and_epochs(mode):
    src = source()
    kw = dict(batch_size=4, image_size=16, mean=MEAN, std=STD, train=True, seed=3, num_epochs=3,
              augment="resized_crop+flip", batch_augment=mode)
    loader = make_loader(src, **kw)
    batches = list(loader)
    assert loader.dataset.mode == mode
    assert len(batches) == len(loader) == 9 and loader.steps_per_epoch == 3
    for b in batches:
        assert b["image"].shape == (4, 16, 16, 3) and b["image"].dtype == np.float32
        assert b["label"].dtype == np.int32 and b["mask"].dtype == np.bool_ and b["mask"].all()
    # each epoch is a permutation: all 12 labels once
    labels = np.concatenate([b["label"] for b in batches[:3]])
    assert sorted(labels.tolist()) == sorted(i % 3 for i in range(12))
    # normalised: values span the range of (0..255 / 255 - mean) / std
    x = np.asarray(batches[0]["image"])
    assert x.min() >= (0 - max(MEAN)) / min(STD) - 1e-4 and x.max() <= (1 - min(MEAN)) / min(STD) + 1e-4
    # same seed, same batches; a restored run (start_epoch=2) gets epoch 2's batches
    again = list(make_loader(src, **kw))
    np.testing.assert_array_equal(np.asarray(again[4]["image"]), np.asarray(batches[4]["image"]))
    resumed = list(make_loader(src, **kw, start_epoch=2))
    assert len(resumed) == 3
    np.testing.assert_array_equal(np.asarray(resumed[0]["image"]), np.asarray(batches[6]["image"]))


def test_uncached_stays_on_grain_and_pad_crop_has_its_own_path():
    from jaxgluon.data.pad_crop import PadCropEpochs    # grain's batches bit for bit: tests/data/test_pad_crop.py
    src = source()
    kw = dict(batch_size=4, image_size=16, mean=MEAN, std=STD, train=True, batch_augment="host")
    assert not isinstance(make_loader(src, cache=False, **kw).dataset, (batch_augment.BatchEpochs, PadCropEpochs))
    assert isinstance(make_loader(src, augment="pad_crop+flip", **kw).dataset, PadCropEpochs)
    assert isinstance(make_loader(src, augment="resized_crop", **kw).dataset, batch_augment.BatchEpochs)
    with pytest.raises(ValueError, match="batch_augment"):
        make_loader(src, batch_augment="gpu", **{k: v for k, v in kw.items() if k != "batch_augment"})


def test_device_path_compiles_once():
    src = source()
    kw = dict(batch_size=4, image_size=16, mean=MEAN, std=STD, train=True, augment="resized_crop+flip",
              batch_augment="device")
    loader = make_loader(src, num_epochs=2, **kw)
    it = iter(loader)
    for _ in range(3):   # the first epoch (compiles)
        next(it)["image"].block_until_ready()
    assert loader.dataset.mode == "device"
    with CompileCounter() as second_epoch:
        for b in it:
            b["image"].block_until_ready()
    with CompileCounter() as next_trial:   # a new loader of the same cached source: nothing new either
        for b in make_loader(src, num_epochs=1, seed=9, **kw):
            b["image"].block_until_ready()
    assert second_epoch.compilations == 0, second_epoch.programs
    assert next_trial.compilations == 0, next_trial.programs


def test_device_path_falls_back_to_host_for_very_mixed_shapes():
    ims = [np.zeros((20, 200, 3), np.uint8), np.zeros((200, 20, 3), np.uint8)] * 2
    src = ArraySource(ims, [0, 1, 0, 1], ["a", "b"])
    loader = make_loader(src, batch_size=2, image_size=8, mean=MEAN, std=STD, train=True,
                         augment="resized_crop", batch_augment="device")
    b = next(iter(loader))
    assert loader.dataset.mode == "host" and b["image"].shape == (2, 8, 8, 3)


def test_device_batches_are_not_copied_back_to_the_host_before_the_step():
    from jaxgluon.train.steps import pad_batch

    src = source()
    b = next(iter(make_loader(src, batch_size=4, image_size=8, mean=MEAN, std=STD, train=True,
                              augment="resized_crop", batch_augment="device")))
    assert pad_batch(b, 2)["image"] is b["image"]          # divisible: left on the device as it is
    padded = pad_batch(b, 3)                               # padding: rows appended, mask False
    assert padded["image"].shape[0] == 6 and padded["mask"].tolist() == [True] * 4 + [False] * 2
