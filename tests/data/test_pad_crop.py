"""The batch-at-once 'pad_crop' path (jaxgluon.data.pad_crop) yields grain's per-example batches bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from jaxgluon.data import ArraySource, make_loader
from jaxgluon.data import pad_crop

NORM = dict(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def _source(n: int = 50, side: int = 12) -> ArraySource:
    rng = np.random.default_rng(0)
    # mixed sizes: the base is a center crop resized to image_size, as transforms.pad_random_crop's
    images = [rng.integers(0, 256, size=(side + i % 3, side + (i * 7) % 5, 3), dtype=np.uint8) for i in range(n)]
    return ArraySource(images, [i % 3 for i in range(n)], ["a", "b", "c"])


@pytest.mark.parametrize("augment", ["pad_crop+flip", "pad_crop"])
@pytest.mark.parametrize("shard", [(0, 1), (1, 3)])
def test_batches_equal_grains_bit_for_bit(augment, shard):
    src = _source()
    kwargs = dict(batch_size=4, image_size=8, seed=3, start_epoch=1, num_epochs=3, augment=augment, shard=shard,
                  train=True, **NORM)
    fast = make_loader(src, **kwargs)
    assert isinstance(fast.dataset, pad_crop.PadCropEpochs)
    slow = list(make_loader(src, batch_augment="grain", **kwargs))
    got = list(fast)
    assert len(got) == len(slow) == len(fast) > 0
    for a, b in zip(got, slow):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


def test_draws_render_many_batches_in_one_gather():
    src = _source()
    loader = make_loader(src, batch_size=5, image_size=8, seed=1, num_epochs=1, augment="pad_crop+flip",
                         train=True, **NORM)
    draws = list(loader.dataset.draws())
    together = loader.dataset.images.render(np.concatenate(draws))
    for k, (batch, d) in enumerate(zip(loader, draws)):
        assert np.array_equal(loader.dataset.batch(d)["image"], batch["image"])
        assert np.array_equal(together[5 * k:5 * (k + 1)], loader.dataset.images.render(d))


def test_rejects_other_policies():
    with pytest.raises(ValueError, match="pad_crop"):
        pad_crop.PadCropImages([np.zeros((8, 8, 3), np.uint8)], np.zeros(1), 8, "resized_crop+flip")
