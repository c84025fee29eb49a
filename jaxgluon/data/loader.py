"""The input pipeline: a source -> batches of normalised float32 images, on grain's ``MapDataset``.

Train (:func:`make_train_loader`): each epoch ``e`` is shuffled with a seed derived from ``(seed, e)``, augmented per example
(grain seeds each example's generator from the seed and its index), batched with the remainder dropped (so an
epoch is exactly :func:`steps_per_epoch` batches and never mixes epochs), ``mask`` all True. Epochs run from
``start_epoch`` to ``num_epochs - 1``, so a restored trial continues with the same batches it would have seen.

Eval (:func:`make_eval_loader`): the source in order through the eval transform (:func:`transforms.center_crop`); the last
batch is padded to ``batch_size`` with zero rows whose ``mask`` is False, so each example counts exactly once.

Decode once (``cache=True``, or a byte budget): the first loader for a (source, stage, image size) decodes every
image once, in a thread pool, into host memory as uint8 -- eval images as their final crop, train images at a
working resolution, the shorter side capped at ``WORKING_SIDE_FACTOR * image_size`` (JPEGs decoded at reduced scale
when that is enough) -- and every later loader (later epochs, later trials) of the same source object reads it
(a :class:`DecodedImages` the caller passes as ``decoded=`` and owns; else the process-level :data:`DECODED`). The random-resized crop of a train image is drawn relative to the image, so
its distribution does not depend on the working resolution; resampling from 1.15x instead of a full-size image
is what makes an epoch cheap (tests/data/test_augment_distribution.py checks the distribution). Skipped (with a
log line) when the estimate exceeds the budget (``cache=True``: :func:`cache_budget_bytes`, a fraction of RAM);
such datasets stream from the source through grain (``worker_count`` processes). With ``batch_augment='grain'``
cached and uncached pipelines yield identical batches; by default a cached train source is augmented a batch at
once instead (:mod:`jaxgluon.data.batch_augment`: same distribution, its own deterministic batches; 'pad_crop'
policies: :mod:`jaxgluon.data.pad_crop`, grain's very batches, bit for bit, from one numpy gather).

Example::

    from jaxgluon.data import ImageFolderSource, make_eval_loader, make_train_loader, stratified_split
    train, val = stratified_split(ImageFolderSource("data/train"), seed=0)
    norm = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    for batch in make_train_loader(train, batch_size=32, image_size=64, seed=0, **norm):
        batch["image"].shape, batch["label"].dtype, batch["mask"].all()   # (32, 64, 64, 3), int32, True
    val_batches = make_eval_loader(val, batch_size=64, image_size=64, **norm)   # padded, mask marks real rows

``make_loader(source, train=..., ...)`` picks one of the two.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import math
import os
import sys
import weakref
from typing import Any, Iterator, Sequence

import grain
import numpy as np
from absl import flags as absl_flags

from jaxgluon.data import batch_augment as batch_augment_module
from jaxgluon.data import pad_crop
from jaxgluon.data import transforms
from jaxgluon.data.sources import load_example

logger = logging.getLogger(__name__)

CACHE_RAM_FRACTION = 0.25
"""``cache=True`` keeps decoded images when their estimate fits in this fraction of the machine's RAM."""
TINY_IMAGE_SIDE = 64
"""``augment='auto'`` picks 'pad_crop+flip' when the median shorter side is at most this, else 'resized_crop+flip'."""
WORKING_SIDE_FACTOR = WORKING_SIDE_FACTOR_DEFAULT = 1.15
"""Train images are kept with the shorter side capped at this many times ``image_size`` (258 px for 224)."""


def cache_budget_bytes() -> int:
    """The default decoded-image budget: :data:`CACHE_RAM_FRACTION` of physical RAM (4 GiB when unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30
    return int(CACHE_RAM_FRACTION * total)


class DecodedImages:
    """Decoded images per source object and (stage, image size): what the loaders given it read after the first
    time. Its owner decides its lifetime, and an entry lives at most as long as its source object:
    ``jaxgluon.train.TrialCaches`` holds one per fit/tune call (dropped with it); :data:`DECODED` is the
    process-level one that loaders built without ``decoded=`` share (direct data-API use)."""

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def for_source(self, source: Any) -> dict:
        try:
            return self._entries.setdefault(source, {})
        except TypeError:  # not weak-referenceable: cache for this loader only
            return {}

    def clear(self) -> None:
        self._entries = weakref.WeakKeyDictionary()


DECODED = DecodedImages()
"""The process-level :class:`DecodedImages` of loaders built without ``decoded=``; lives as long as the process
(``DECODED.clear()`` frees it)."""


def _shard_of(shard: Any) -> tuple[int, int]:
    if shard is None:
        if "jax" not in sys.modules:  # pure data use: no need to import (and initialise) jax for one process
            return 0, 1
        shard = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    if isinstance(shard, grain.sharding.ShardOptions):
        return shard.shard_index, shard.shard_count
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    return int(index), int(count)


def steps_per_epoch(source_or_size: Any, batch_size: int, *, train: bool = True, shard_count: int = 1) -> int:
    """Batches per epoch of :func:`make_loader`: ``n // shard_count // batch_size`` (train, remainder dropped),
    ``ceil(ceil(n / shard_count) / batch_size)`` (eval, last batch padded).

    Example::

        steps_per_epoch(100, 32)                 # 3
        steps_per_epoch(100, 32, train=False)    # 4
    """
    n = source_or_size if isinstance(source_or_size, (int, np.integer)) else len(source_or_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    if train:
        return n // shard_count // batch_size
    return math.ceil(math.ceil(n / shard_count) / batch_size)


def _median_shorter_side(source: Any) -> float:
    sizes = getattr(source, "image_sizes", None)
    if sizes is not None and len(sizes):
        return float(np.median(np.min(np.asarray(sizes), axis=1)))
    picks = np.unique(np.linspace(0, len(source) - 1, num=min(16, len(source))).astype(int))
    return float(np.median([min(source[int(i)]["image"].shape[:2]) for i in picks]))


def resolve_augment(source: Any, augment: str = "auto") -> str:
    """The train augmentation ``augment`` stands for: 'auto' takes ``source.default_augment`` when set, else
    'pad_crop+flip' for tiny images (median shorter side <= :data:`TINY_IMAGE_SIDE`), else 'resized_crop+flip'."""
    if augment != "auto":
        return transforms.check_augment(augment)
    hint = getattr(source, "default_augment", None)
    if hint is not None:
        return transforms.check_augment(hint)
    return "pad_crop+flip" if _median_shorter_side(source) <= TINY_IMAGE_SIDE else "resized_crop+flip"


class _Prepared:
    """Decodes an example and brings it to the stored size of its stage (the part a cache keeps)."""

    def __init__(self, source: Any, train: bool, image_size: int):
        self.source, self.train, self.image_size = source, train, image_size
        self.class_names = source.class_names

    @property
    def min_side(self) -> int:
        if self.train:
            return math.ceil(self.image_size * WORKING_SIDE_FACTOR)
        return transforms.eval_min_side(self.image_size)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        example = load_example(self.source, int(index), self.min_side)
        image = example["image"]
        if self.train:
            image = transforms.cap_shorter_side(image, self.min_side)
        else:
            image = transforms.center_crop(image, self.image_size)
        return {"image": image, "label": int(example["label"])}


@dataclasses.dataclass
class _Cached:
    images: list
    labels: np.ndarray
    on_device: dict = dataclasses.field(default_factory=dict)   # batch_augment's packed images, per cached source

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": int(self.labels[index])}


def _estimate_bytes(source: Any, prepared: _Prepared) -> int:
    if not prepared.train:
        return len(source) * prepared.image_size**2 * 3
    side = prepared.min_side
    sizes = getattr(source, "image_sizes", None)
    if sizes is None:
        return len(source) * side * side * 2 * 3  # assume up to 2:1 aspect
    w, h = np.asarray(sizes, np.float64).T
    scale = np.minimum(1.0, side / np.maximum(1.0, np.minimum(w, h)))
    return int(np.sum(w * scale * h * scale * 3))


def _cached(source: Any, prepared: _Prepared, budget: int, decoded: DecodedImages) -> Any:
    per_source = decoded.for_source(source)
    key = (prepared.train, prepared.image_size)
    if key in per_source:
        return per_source[key]
    estimate = _estimate_bytes(source, prepared)
    if estimate > budget:
        logger.info("not caching %r: about %.2f GiB of decoded images > the %.2f GiB budget; streaming", source,
                    estimate / 2**30, budget / 2**30)
        return prepared
    workers = min(16, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        examples = list(pool.map(prepared.__getitem__, range(len(prepared)), chunksize=8))
    cached = _Cached([e["image"] for e in examples], np.asarray([e["label"] for e in examples], np.int64))
    per_source[key] = cached
    return cached


class _Augment:
    def __init__(self, image_size: int, augment: str):
        self.image_size, self.augment = image_size, augment

    def __call__(self, example: dict, rng: np.random.Generator) -> dict:
        image = transforms.augment_image(example["image"], self.image_size, self.augment, rng)
        return {"image": image, "label": example["label"], "mask": True}


class _PaddedEval:
    """Eval examples with ``mask=True``, followed by zero examples with ``mask=False`` up to ``length``."""

    def __init__(self, source: Any, length: int, image_size: int):
        self.source, self.length, self.image_size = source, length, image_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if index < len(self.source):
            example = self.source[index]
            return {"image": example["image"], "label": example["label"], "mask": True}
        return {"image": np.zeros((self.image_size, self.image_size, 3), np.uint8), "label": 0, "mask": False}


class _Normalize:
    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean, self.std = mean, std

    def __call__(self, batch: dict) -> dict:
        return {
            "image": transforms.normalize(batch["image"], self.mean, self.std),
            "label": np.asarray(batch["label"], np.int32),
            "mask": np.asarray(batch["mask"], np.bool_),
        }


def _epoch_seed(seed: int, epoch: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, salt]).generate_state(1)[0])


@dataclasses.dataclass
class Loader:
    """An iterable of batches (what :func:`make_loader` returns); each ``iter()`` starts from ``start_epoch``.

    Attributes:
        dataset: the grain ``IterDataset`` behind it.
        steps_per_epoch: batches per epoch on this process.
        num_batches: batches in one full iteration (``len(loader)``).
        augment: the resolved train augmentation ('' for eval).
    """

    dataset: Any
    steps_per_epoch: int
    num_batches: int
    augment: str

    def __iter__(self) -> Iterator[dict]:
        iterator = iter(self.dataset)
        try:
            yield from iterator
        finally:  # releases grain's worker processes and shared memory as soon as the loop ends
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __len__(self) -> int:
        return self.num_batches


def make_train_loader(
    source: Any,
    *,
    batch_size: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int = 0,
    num_epochs: int = 1,
    start_epoch: int = 0,
    augment: str = "auto",
    batch_augment: str = "auto",
    cache: bool | int = True,
    decoded: DecodedImages | None = None,
    worker_count: int = 0,
    shard: Any = None,
    num_threads: int | None = None,
) -> Loader:
    """Train batches ``{'image': float32 [B, S, S, 3] normalised, 'label': int32 [B], 'mask': bool [B] (all
    True)}``: each epoch shuffled and augmented from ``(seed, epoch)``, remainder dropped (module doc).

    Args:
        source: a source (``len``, ``[i] -> {'image', 'label'}``, ``class_names``).
        batch_size: examples per batch on this process.
        image_size: S, the square output side.
        mean, std: the model's normalisation, 3 values each on the 0-1 pixel scale.
        seed: non-negative int; with the same seed the batches are identical (any ``worker_count``).
        num_epochs: epochs in one iteration; ``start_epoch``: the first one yielded (a restored trial continues
            with the batches it would have seen).
        augment: 'auto' (see :func:`resolve_augment`) or one of ``transforms.AUGMENTS``.
        batch_augment: for a cached source, augment a batch at once instead of per example through grain
            (:mod:`jaxgluon.data.batch_augment`): 'host', 'device' (batches are float32 ``jax.Array``), 'grain'
            (per example), or 'auto' (``batch_augment.DEFAULT_BY_BACKEND``). Uncached sources always use grain;
            a cached 'pad_crop' source is rendered by :mod:`jaxgluon.data.pad_crop` (host numpy batches, the
            same as grain's) unless this is 'grain'.
        cache: keep decoded images in memory (module doc): True (within :func:`cache_budget_bytes`), False, or
            a budget in bytes.
        decoded: where decoded images are kept and found (:class:`DecodedImages`); the caller owns it and so
            decides how long images live (``jaxgluon.train``: the fit/tune call's ``TrialCaches``). None: the
            process-level :data:`DECODED`.
        worker_count: grain worker processes for prefetch (0: threads in this process only). Workers are
            spawned: the source (and its cache) is pickled into each, and a script needs the
            ``if __name__ == "__main__":`` guard. Worth it for large uncached datasets on many cores.
        shard: ``grain.sharding.ShardOptions`` or (index, count); default one shard per JAX process.
        num_threads: threads per process preparing batches (default min(4, CPUs)).
    """
    if seed < 0 or not 0 <= start_epoch <= num_epochs:
        raise ValueError(f"need seed >= 0 and 0 <= start_epoch <= num_epochs, got {seed}, {start_epoch}, {num_epochs}")
    if batch_augment not in batch_augment_module.MODES:
        batch_augment_module.resolve_mode(batch_augment)   # raises, naming the choices
    mean_a, std_a, (shard_index, shard_count) = _check_common(source, batch_size, image_size, mean, std, shard)
    policy = resolve_augment(source, augment)
    prepared = _prepared(source, True, image_size, cache, decoded)
    n = len(prepared)
    threads = _threads(num_threads)
    steps = steps_per_epoch(n, batch_size, train=True, shard_count=shard_count)
    if steps == 0:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {n // shard_count} training examples of this shard; "
            "lower batch_size"
        )
    if (batch_augment != "grain" and isinstance(prepared, _Cached) and batch_augment_module.supports(policy)
            and (mode := batch_augment_module.resolve_mode(batch_augment)) != "grain"):
        epochs_ds = batch_augment_module.BatchEpochs(
            prepared.images, prepared.labels, mode=mode, policy=policy, batch_size=batch_size,
            image_size=image_size, mean=mean_a, std=std_a,
            epoch_seeds=[_epoch_seed(seed, e, 0) for e in range(start_epoch, num_epochs)],
            shard=(shard_index, shard_count), threads=threads, store=prepared.on_device)
        return Loader(epochs_ds, steps, steps * (num_epochs - start_epoch), policy)
    if batch_augment != "grain" and isinstance(prepared, _Cached) and pad_crop.supports(policy):
        images = pad_crop.cached_images(prepared.on_device, prepared.images, prepared.labels, image_size, policy)
        epochs_ds = pad_crop.PadCropEpochs(
            images, batch_size=batch_size, mean=mean_a, std=std_a, shard=(shard_index, shard_count),
            epoch_seeds=[(_epoch_seed(seed, e, 0), _epoch_seed(seed, e, 1)) for e in range(start_epoch, num_epochs)])
        return Loader(epochs_ds, steps, steps * (num_epochs - start_epoch), policy)
    base = grain.MapDataset.source(prepared)
    epochs = []
    for epoch in range(start_epoch, num_epochs):
        ds = base.shuffle(seed=_epoch_seed(seed, epoch, 0))
        if shard_count > 1:
            ds = ds[: n - n % shard_count][shard_index::shard_count]
        ds = ds.random_map(_Augment(image_size, policy), seed=_epoch_seed(seed, epoch, 1))
        epochs.append(ds.batch(batch_size, drop_remainder=True))
    if not epochs:
        dataset = grain.MapDataset.source([])
    else:
        dataset = epochs[0] if len(epochs) == 1 else grain.MapDataset.concatenate(epochs)
    return Loader(_iterate(dataset, mean_a, std_a, threads, worker_count), steps,
                  steps * (num_epochs - start_epoch), policy)


def make_eval_loader(
    source: Any,
    *,
    batch_size: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    cache: bool | int = True,
    decoded: DecodedImages | None = None,
    worker_count: int = 0,
    shard: Any = None,
    num_threads: int | None = None,
) -> Loader:
    """Eval batches: the source in order through the eval transform, the last batch padded to ``batch_size``
    with ``mask=False`` rows, so each example counts exactly once. Arguments as :func:`make_train_loader`."""
    mean_a, std_a, (shard_index, shard_count) = _check_common(source, batch_size, image_size, mean, std, shard)
    prepared = _prepared(source, False, image_size, cache, decoded)
    n = len(prepared)
    per_shard = math.ceil(n / shard_count)
    ds = grain.MapDataset.source(_PaddedEval(prepared, per_shard * shard_count, image_size))
    if shard_count > 1:
        ds = ds[shard_index * per_shard:(shard_index + 1) * per_shard]
    pad = functools.partial(grain.experimental.batch_and_pad, batch_size=batch_size)
    steps = steps_per_epoch(n, batch_size, train=False, shard_count=shard_count)
    return Loader(_iterate(ds.batch(batch_size, batch_fn=pad), mean_a, std_a, _threads(num_threads), worker_count),
                  steps, steps, "")


_TRAIN_ONLY = ("seed", "num_epochs", "start_epoch", "augment", "batch_augment")


def make_loader(source: Any, *, train: bool, **kwargs: Any) -> Loader:
    """:func:`make_train_loader` (``train=True``) or :func:`make_eval_loader` (``train=False``, which ignores
    the train-only arguments ``seed``, ``num_epochs``, ``start_epoch``, ``augment``, ``batch_augment``)."""
    if train:
        return make_train_loader(source, **kwargs)
    return make_eval_loader(source, **{k: v for k, v in kwargs.items() if k not in _TRAIN_ONLY})


def _check_common(source: Any, batch_size: int, image_size: int, mean: Sequence[float], std: Sequence[float],
                  shard: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    if batch_size < 1 or image_size < 1:
        raise ValueError(f"batch_size and image_size must be positive ints, got {batch_size} and {image_size}")
    if len(source) == 0:
        raise ValueError(f"the source is empty: {source!r}")
    mean_a, std_a = transforms.check_mean_std(mean, std)
    return mean_a, std_a, _shard_of(shard)


def _prepared(source: Any, train: bool, image_size: int, cache: bool | int | None,
              decoded: DecodedImages | None) -> Any:
    prepared: Any = _Prepared(source, train, image_size)
    if cache is not False and cache is not None:
        budget = cache_budget_bytes() if cache is True else int(cache)
        if budget > 0:
            prepared = _cached(source, prepared, budget, DECODED if decoded is None else decoded)
    return prepared


def _threads(num_threads: int | None) -> int:
    return num_threads if num_threads is not None else min(4, os.cpu_count() or 1)


def _iterate(dataset: Any, mean: np.ndarray, std: np.ndarray, threads: int, worker_count: int) -> Any:
    """The normalised iterable of a batched ``MapDataset``: prefetched by threads, or grain worker processes."""
    iter_ds = dataset.map(_Normalize(mean, std)).to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads + 2))
    if worker_count > 0:
        if not absl_flags.FLAGS.is_parsed():  # grain's worker start reads absl flags; outside absl.app use defaults
            absl_flags.FLAGS.mark_as_parsed()
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter_ds
