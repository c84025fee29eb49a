"""ArraySource, digits, subset views and the stratified split."""
from __future__ import annotations

import numpy as np
import pytest

from jaxgluon.data import ArraySource, SubsetSource, load_digits_source, stratified_split


def test_array_source_converts_and_validates():
    gray = ArraySource(np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5), [0, 1], ["a", "b"])
    assert gray[1]["image"].shape == (4, 5, 3) and gray[1]["label"] == 1
    np.testing.assert_array_equal(gray.image_sizes, [[5, 4], [5, 4]])
    mixed = ArraySource([np.zeros((3, 3)), np.ones((5, 2, 4), np.float32)], [1, 0], ["a", "b"])
    assert mixed[0]["image"].shape == (3, 3, 3) and mixed[1]["image"].shape == (5, 2, 3)
    assert mixed[1]["image"].dtype == np.uint8 and np.all(mixed[1]["image"] == 255)
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ArraySource(np.zeros((2, 4, 4), np.uint8), [0, 1, 0], ["a", "b"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ArraySource(np.zeros((2, 4, 4), np.uint8), [0, 2], ["a", "b"])
    with pytest.raises(ValueError, match="duplicates"):
        ArraySource(np.zeros((2, 4, 4), np.uint8), [0, 1], ["a", "a"])


def test_digits_offline():
    digits = load_digits_source()
    assert len(digits) == 1797 and digits.class_names == [str(i) for i in range(10)]
    item = digits[0]
    assert item["image"].shape == (8, 8, 3) and item["image"].dtype == np.uint8 and item["label"] == 0
    assert digits.images.max() == 255 and digits.images.min() == 0
    assert digits.default_augment == "pad_crop"  # no mirroring for digits


def _labels_source(counts):
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    images = np.arange(len(labels), dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)
    return ArraySource(images, labels, [f"c{k}" for k in range(len(counts))])


def test_stratified_split_deterministic_and_stratified():
    src = _labels_source([50, 20, 3, 2, 1])
    train, val = stratified_split(src, val_fraction=0.1, seed=0)
    again_train, again_val = stratified_split(src, val_fraction=0.1, seed=0)
    np.testing.assert_array_equal(val.indices, again_val.indices)
    np.testing.assert_array_equal(train.indices, again_train.indices)
    other = stratified_split(src, val_fraction=0.1, seed=1)[1]
    assert not np.array_equal(val.indices, other.indices)
    assert set(train.indices).isdisjoint(val.indices)
    assert sorted([*train.indices, *val.indices]) == list(range(len(src)))
    per_class_val = np.bincount(val.labels, minlength=5)
    np.testing.assert_array_equal(per_class_val, [5, 2, 1, 1, 0])  # >= 1 when a class has >= 2; singleton in train
    assert train.class_names == val.class_names == src.class_names
    for view in (train, val):
        for i in range(len(view)):
            assert view[i]["label"] == view.labels[i]
            assert view.load(i)["label"] == view.labels[i]


def test_split_keeps_hints_and_rejects_bad_fraction():
    digits = load_digits_source()
    train, val = stratified_split(digits, val_fraction=0.25, seed=3)
    assert isinstance(train, SubsetSource) and train.default_augment == "pad_crop"
    assert abs(len(val) - 0.25 * len(digits)) <= 10
    assert train.image_sizes.shape == (len(train), 2)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="val_fraction"):
            stratified_split(digits, val_fraction=bad)
    with pytest.raises(ValueError, match="no class has two or more"):
        stratified_split(_labels_source([1, 1]))


def test_fewer_than_two_classes_is_refused_by_require_classes(tmp_path):
    from data_files import solid, write
    from jaxgluon.data import ImageFolderSource, require_classes
    images = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"has 1 class \['only'\]; classification needs at least 2 classes"):
        require_classes(ArraySource(images, [0, 0, 0, 0], ["only"]), "the training data")
    with pytest.raises(ValueError, match=r"has examples of only 1 of its 2 classes \['b'\]"):
        require_classes(ArraySource(images, [1, 1, 1, 1], ["a", "b"]))
    require_classes(ArraySource(images, [0, 1, 0, 1], ["a", "b"]))      # two classes: fine
    write(tmp_path / "train" / "cats" / "1.png", solid((1, 2, 3)))
    one_folder = ImageFolderSource(tmp_path / "train")                  # a source may hold one class (test data)
    with pytest.raises(ValueError, match=r"\['cats'\].*one subfolder of images per class, e.g. .*/train/<class name>"):
        require_classes(one_folder, "train_path")
