"""make_loader: shapes, normalisation, padding masks, epochs, determinism, caching, sharding, workers."""
from __future__ import annotations

import numpy as np
import pytest
from data_files import noise, write

from jaxgluon.data import (
    ArraySource,
    ImageFolderSource,
    load_digits_source,
    make_loader,
    preprocess_eval,
    resolve_augment,
    steps_per_epoch,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _indexed(n: int, side: int = 12) -> ArraySource:
    """Image i is one flat value 20 * i + 5, so a batch row tells which example it came from."""
    values = (20 * np.arange(n) + 5).astype(np.uint8)
    images = np.broadcast_to(values[:, None, None, None], (n, side, side, 3)).copy()
    return ArraySource(images, np.arange(n) % 3, ["a", "b", "c"])


def _indices(batch: dict) -> np.ndarray:
    pixel = batch["image"][:, 0, 0, 0] * STD[0] + MEAN[0]
    return ((np.rint(pixel * 255) - 5) / 20).astype(int)


def _loader(source, **kw):
    args = dict(batch_size=4, image_size=8, mean=MEAN, std=STD, train=True, seed=0)
    return make_loader(source, **{**args, **kw})


def test_eval_pads_last_batch_and_counts_each_example_once():
    src = _indexed(10)
    loader = _loader(src, train=False)
    batches = list(loader)
    assert len(batches) == len(loader) == loader.steps_per_epoch == 3
    for b in batches:
        assert b["image"].shape == (4, 8, 8, 3) and b["image"].dtype == np.float32
        assert b["label"].dtype == np.int32 and b["label"].shape == (4,)
        assert b["mask"].dtype == np.bool_
    masks = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(masks, [True] * 10 + [False] * 2)
    seen = np.concatenate([_indices(b)[b["mask"]] for b in batches])
    np.testing.assert_array_equal(seen, np.arange(10))
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(labels, np.arange(10) % 3)
    # Normalisation: (value / 255 - mean) / std per channel; padded rows are normalised zeros.
    first = batches[0]["image"][1, 3, 3]
    np.testing.assert_allclose(first, (25 / 255 - np.array(MEAN)) / np.array(STD), rtol=1e-5)
    np.testing.assert_allclose(batches[-1]["image"][3, 0, 0], -np.array(MEAN) / np.array(STD), rtol=1e-5)


def test_train_epochs_are_shuffled_permutations_without_remainder():
    src = _indexed(10)
    loader = _loader(src, num_epochs=3, augment="none")
    batches = list(loader)
    assert loader.steps_per_epoch == steps_per_epoch(src, 4) == 2 and len(batches) == len(loader) == 6
    assert all(b["mask"].all() for b in batches)
    epochs = [np.concatenate([_indices(b) for b in batches[e * 2:(e + 1) * 2]]) for e in range(3)]
    for order in epochs:
        assert len(set(order)) == 8 and set(order) <= set(range(10))
    assert len({tuple(o) for o in epochs}) == 3
    for b in batches:
        np.testing.assert_array_equal(b["label"], _indices(b) % 3)


def _textured(n: int = 12) -> ArraySource:
    images = [np.asarray(noise(40 + i, 36, seed=i)) for i in range(n)]
    return ArraySource(images, np.arange(n) % 2, ["x", "y"])


def _stack(loader) -> np.ndarray:
    return np.stack([b["image"] for b in loader])


def test_deterministic_given_seed_cache_and_restart():
    src = _textured()
    kw = dict(num_epochs=2, augment="resized_crop+flip")
    a = _stack(_loader(src, **kw))
    np.testing.assert_array_equal(a, _stack(_loader(src, **kw)))
    # the per-example grain path yields the same batches from the cache as streaming (the default batch-at-once
    # path of a cached source draws from the same distribution, tests/data/test_augment_distribution.py)
    g = _stack(_loader(src, batch_augment="grain", **kw))
    np.testing.assert_array_equal(g, _stack(_loader(src, cache=False, **kw)))
    assert not np.array_equal(a, _stack(_loader(src, seed=1, **kw)))
    resumed = _stack(_loader(src, start_epoch=1, **kw))
    np.testing.assert_array_equal(resumed, a[len(a) // 2:])


def test_shards_split_the_data():
    src = _indexed(10)
    evals = [list(_loader(src, train=False, shard=(i, 2))) for i in range(2)]
    assert len(evals[0]) == len(evals[1]) == 2
    seen = np.concatenate([_indices(b)[b["mask"]] for shard in evals for b in shard])
    np.testing.assert_array_equal(np.sort(seen), np.arange(10))
    trains = [np.concatenate([_indices(b) for b in _loader(src, batch_size=2, shard=(i, 2), augment="none")]) for i in range(2)]
    assert len(trains[0]) == len(trains[1]) == 4 and set(trains[0]).isdisjoint(trains[1])
    with pytest.raises(ValueError, match="shard"):
        _loader(src, shard=(2, 2))


def test_augment_auto_by_source():
    assert resolve_augment(load_digits_source()) == "pad_crop"
    assert resolve_augment(_indexed(4, side=32)) == "pad_crop+flip"
    assert resolve_augment(_indexed(4, side=100)) == "resized_crop+flip"
    assert resolve_augment(_indexed(4), "flip") == "flip"
    digits = _loader(load_digits_source(), batch_size=64, image_size=16)
    assert digits.augment == "pad_crop" and next(iter(digits))["image"].shape == (64, 16, 16, 3)


def test_folder_loader_matches_preprocess_eval(tmp_path):
    for c, name in enumerate(["a", "b"]):
        for i in range(3):
            write(tmp_path / "f" / name / f"{i}.jpg", noise(90 + 10 * i, 70, seed=10 * c + i))
    src = ImageFolderSource(tmp_path / "f")
    batches = list(make_loader(src, batch_size=4, image_size=16, mean=MEAN, std=STD, train=False))
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(images, preprocess_eval(src.paths, 16, MEAN, STD))
    uncached = list(make_loader(src, batch_size=4, image_size=16, mean=MEAN, std=STD, train=False, cache=False))
    np.testing.assert_array_equal(images, np.concatenate([b["image"][b["mask"]] for b in uncached]))
    train_kw = dict(batch_size=2, image_size=16, mean=MEAN, std=STD, train=True, seed=4, batch_augment="grain")
    np.testing.assert_array_equal(_stack(make_loader(src, **train_kw)),
                                  _stack(make_loader(src, cache=False, **train_kw)))


def test_worker_process_gives_same_batches():
    src = _textured(8)
    kw = dict(augment="resized_crop+flip", num_epochs=2)
    np.testing.assert_array_equal(_stack(_loader(src, worker_count=1, **kw)), _stack(_loader(src, **kw)))


def test_bad_arguments():
    src = _indexed(3)
    with pytest.raises(ValueError, match="exceeds the 3 training examples"):
        _loader(src)
    with pytest.raises(ValueError, match="unknown augment"):
        _loader(_indexed(8), augment="mixup")
    with pytest.raises(ValueError, match="0-1 pixel scale"):
        _loader(src, train=False, mean=(124, 116, 104), std=(58, 57, 57))
    assert steps_per_epoch(100, 32) == 3 and steps_per_epoch(100, 32, train=False) == 4


class _Counting(ArraySource):
    """An ArraySource that counts the examples read from it (a decode, for a cached loader)."""

    reads = 0

    def __getitem__(self, index):
        type(self).reads += 1
        return super().__getitem__(index)


def test_train_and_eval_builders_and_the_decoded_images_their_caller_owns():
    from jaxgluon.data import DecodedImages, make_eval_loader, make_train_loader
    from jaxgluon.data.loader import DECODED

    base = _indexed(10)
    src = _Counting(base.images, base.labels, base.class_names)
    norm = dict(batch_size=4, image_size=8, mean=MEAN, std=STD)
    decoded = DecodedImages()
    train = make_train_loader(src, seed=3, num_epochs=2, batch_augment="grain", decoded=decoded, **norm)
    reads = _Counting.reads
    assert reads == 10 and decoded.for_source(src) and not DECODED.for_source(src)   # decoded into its owner
    again = make_train_loader(src, seed=3, num_epochs=2, batch_augment="grain", decoded=decoded, **norm)
    assert _Counting.reads == reads                                                   # read back, not decoded
    np.testing.assert_array_equal(np.stack([b["image"] for b in train]), np.stack([b["image"] for b in again]))
    same = make_loader(src, train=True, seed=3, num_epochs=2, batch_augment="grain", cache=False, **norm)
    np.testing.assert_array_equal(np.stack([b["image"] for b in train]), np.stack([b["image"] for b in same]))
    reads = _Counting.reads
    evals = make_eval_loader(src, decoded=decoded, **norm)
    assert len(evals) == 3 and evals.augment == "" and _Counting.reads == reads + 10   # the eval stage's decode
    assert [list(_indices(b)[b["mask"]]) for b in evals] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # make_loader(train=False) ignores the train-only arguments (an eval pass has no seed or epochs)
    assert len(make_loader(src, train=False, seed=5, num_epochs=3, augment="flip", decoded=decoded, **norm)) == 3
    assert _Counting.reads == reads + 10
    make_eval_loader(src, decoded=DecodedImages(), **norm)
    assert _Counting.reads == reads + 20       # another owner decodes again
