"""The real hymenoptera folders of ../shared (photos of 167 sizes, one palette GIF); skips without ../shared."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxgluon.data import ImageFolderSource, make_loader, stratified_split

pytestmark = pytest.mark.shared


def test_hymenoptera_scan_split_and_eval_loader(shared_dir):
    root = shared_dir / "data" / "hymenoptera"
    train = ImageFolderSource(root / "train")
    val = ImageFolderSource(root / "val", class_names=train.class_names)
    assert train.class_names == ["ants", "bees"] and (len(train), len(val)) == (245, 153)
    assert train.skipped == [] and val.skipped == []
    palette = [i for i, p in enumerate(train.paths) if Image.open(p).mode == "P"]
    assert len(palette) == 1
    item = train[palette[0]]
    assert item["image"].dtype == np.uint8 and item["image"].shape[2] == 3

    fit, holdout = stratified_split(train, val_fraction=0.1, seed=0)
    assert set(holdout.labels) == {0, 1} and len(fit) + len(holdout) == 245

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    batches = list(make_loader(val, batch_size=64, image_size=32, mean=mean, std=std, train=False))
    assert len(batches) == 3 and sum(int(b["mask"].sum()) for b in batches) == 153
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(labels, val.labels)
    images = np.concatenate([b["image"] for b in batches])
    assert images.shape == (192, 32, 32, 3) and np.isfinite(images).all()
    assert abs(float(images[:153].mean())) < 1.0  # roughly centred by the ImageNet mean/std
    train_batch = next(iter(make_loader(fit, batch_size=16, image_size=32, mean=mean, std=std, train=True, seed=0)))
    assert train_batch["image"].shape == (16, 32, 32, 3) and train_batch["mask"].all()
