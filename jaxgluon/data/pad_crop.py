"""Batch-at-once 'pad_crop' train batches for decoded (cached) images, bit-identical to grain's per-example path.

The CIFAR recipe (``transforms.pad_random_crop``: zero-pad by ``image_size // 8``, random square crop, optional
flip) is a few pixel copies per image, so grain's per-example machinery (a generator, a ``np.pad`` and a Python
call per image, then a stack) costs far more than the work: about 2,000-2,700 images/s on a 16-core GPU host,
which capped both an ordinary CIFAR trial and a population of 32 members on an H200
(benchmarks/history/2026-12-04-gpu.md). Here every image is center-cropped and zero-padded once, and a batch is one
numpy gather of crop windows (``render``) -- for one trial, or for all members of a population at once.

The random draws are grain's, not merely the same distribution: the epoch order is grain's ``shuffle`` of the
same length and seed (then the same shard slice), and each example's crop offsets and flip come from the
generator grain's ``random_map`` gives the example at that position (``RngPool``: Philox with the map's seed,
the position as counter), drawn in ``transforms.augment_image``'s order. So ``make_train_loader`` yields the same
batches, bit for bit, with ``batch_augment='grain'`` and without (tests/data/test_pad_crop.py), and a population
member's batches equal its ordinary trial's.

Example::

    import numpy as np
    from jaxgluon.data import ArraySource, make_loader
    src = ArraySource(np.zeros((8, 32, 32, 3), np.uint8), [0, 1] * 4, ["a", "b"])
    loader = make_loader(src, batch_size=4, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, train=True,
                         augment="pad_crop+flip")
    type(loader.dataset).__name__       # 'PadCropEpochs'
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from grain._src.python.dataset.transformations.map import RngPool
from grain._src.python.experimental.index_shuffle.python import index_shuffle_module as index_shuffle

from jaxgluon.data import transforms


def supports(policy: str) -> bool:
    """Whether ``policy`` is one this module renders ('pad_crop' or 'pad_crop+flip')."""
    return policy in ("pad_crop", "pad_crop+flip")


class PadCropImages:
    """A cached train source's images, center-cropped to ``image_size`` and zero-padded once, ready for crops.

    ``images`` are the cached uint8 images (any sizes), ``labels`` their int labels.
    """

    def __init__(self, images: Sequence[np.ndarray], labels: np.ndarray, image_size: int, policy: str):
        if not supports(policy):
            raise ValueError(f"PadCropImages renders 'pad_crop' or 'pad_crop+flip', not {policy!r}")
        self.size, self.policy, self.flip = int(image_size), policy, policy.endswith("flip")
        self.pad = max(1, self.size // 8)
        p = self.pad
        padded = np.zeros((len(images), self.size + 2 * p, self.size + 2 * p, 3), np.uint8)
        for i, image in enumerate(images):   # transforms.pad_random_crop's base, once per image
            padded[i, p:p + self.size, p:p + self.size] = transforms.center_crop(image, self.size, 1.0)
        self.padded = padded
        # [n, 2p+1, 2p+1, 1, S, S, 3]: every crop window, a view (no copy) whose rows stay contiguous
        self._windows = np.lib.stride_tricks.sliding_window_view(padded, (self.size, self.size, 3), axis=(1, 2, 3))
        self.labels = np.asarray(labels, np.int32)

    def __len__(self) -> int:
        return len(self.labels)

    def epoch_draws(self, order_seed: int, map_seed: int, shard: tuple[int, int] = (0, 1)) -> np.ndarray:
        """One epoch as grain draws it: ``[m, 4]`` int64 rows (image index, dy, dx, flip) in the epoch's order
        (``shuffle(order_seed)``, then this shard's slice; ``random_map(seed=map_seed)`` per position)."""
        n = len(self)
        seed = order_seed % 2**32     # grain's MapDataset.shuffle (its epoch 0): the same index shuffle
        order = np.fromiter((index_shuffle.index_shuffle(i, max_index=n - 1, seed=seed, rounds=4)
                             for i in range(n)), np.int64, count=n)
        index, count = shard
        if count > 1:
            order = order[: n - n % count][index::count]
        draws = np.zeros((len(order), 4), np.int64)
        draws[:, 0] = order
        pool, high = RngPool(map_seed), 2 * self.pad + 1
        for position in range(len(order)):   # augment_image's draws: the crop offsets, then the flip's coin
            rng = pool.acquire_rng(position)
            draws[position, 1:3] = rng.integers(0, high, size=2)
            if self.flip:
                draws[position, 3] = rng.random() < 0.5
            pool.release_rng(rng)
        return draws

    def render(self, draws: np.ndarray) -> np.ndarray:
        """uint8 ``[m, S, S, 3]`` crops of ``draws`` rows (image index, dy, dx, flip): one gather."""
        idx, dy, dx, flip = draws[:, 0], draws[:, 1], draws[:, 2], draws[:, 3].astype(bool)
        out = self._windows[idx, dy, dx, 0]
        if flip.any():
            out[flip] = out[flip, :, ::-1]
        return out


class PadCropEpochs:
    """The train batches of epochs ``[start_epoch, num_epochs)`` (``epoch_seeds``: grain's (shuffle, map) seed
    pair per epoch), remainder dropped; what ``make_train_loader`` iterates for a cached 'pad_crop' source.

    ``draws()`` yields each batch's ``[B, 4]`` draws without rendering them: a population renders the batches of
    all its members in one gather (``PadCropImages.render``) and normalises them at once.
    """

    def __init__(self, images: PadCropImages, *, batch_size: int, mean: np.ndarray, std: np.ndarray,
                 epoch_seeds: Sequence[tuple[int, int]], shard: tuple[int, int]):
        self.images, self.batch_size, self.mean, self.std = images, int(batch_size), mean, std
        self.epoch_seeds, self.shard = list(epoch_seeds), shard

    def draws(self) -> Iterator[np.ndarray]:
        b = self.batch_size
        for order_seed, map_seed in self.epoch_seeds:
            epoch = self.images.epoch_draws(order_seed, map_seed, self.shard)
            for k in range(len(epoch) // b):
                yield epoch[k * b:(k + 1) * b]

    def batch(self, draws: np.ndarray) -> dict:
        """The normalised batch of ``draws`` (as grain's path: ``transforms.normalize`` of the uint8 stack)."""
        return {"image": transforms.normalize(self.images.render(draws), self.mean, self.std),
                "label": self.images.labels[draws[:, 0]], "mask": np.ones(len(draws), np.bool_)}

    def __iter__(self) -> Iterator[dict]:
        for draws in self.draws():
            yield self.batch(draws)


def cached_images(store: dict, images: Sequence[np.ndarray], labels: np.ndarray, image_size: int,
                  policy: str) -> PadCropImages:
    """The ``PadCropImages`` of a cached source, built once per (image size, policy) in ``store`` (the cache
    entry's dict, so later loaders of the same source -- later epochs, trials, members -- share it)."""
    key = ("pad_crop", int(image_size), policy)
    if key not in store:
        store[key] = PadCropImages(images, labels, image_size, policy)
    return store[key]
