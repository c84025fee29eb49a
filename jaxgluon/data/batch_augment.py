"""Batch-at-once train augmentation for decoded (cached) images, bypassing grain's per-example work.

For a train source whose images are decoded once (``make_loader(cache=...)``), each epoch's random-resized crops
and flips are drawn for a whole batch at once (:func:`draw_crops`, the distribution of
:func:`jaxgluon.data.transforms.augment_image`), then the ``[B, S, S, 3]`` batch is produced by one of:

- ``'host'``: OpenCV's ``warpAffine`` per image (Pillow's box mapping and bilinear weights, the per-example
  path's resampling without its low-pass filter when a box shrinks) into one uint8 batch, in a thread pool that
  works :data:`AHEAD` batches ahead; the flip and normalisation run in one jitted function
  on the uint8 batch (a single fused pass, instead of numpy's passes over float32). Its batches are ``jax.Array``
  (float32, on the default device), like 'device';
- ``'device'``: every decoded image is packed once into one uint8 array on the default device (edge-padded to
  the largest working size); per batch only the indices, boxes and flips travel, and one jitted function
  (compiled once per shape) gathers, resamples (``jax.image.scale_and_translate``, antialiased linear: PIL's
  bilinear filter), flips and normalises. Its batches are ``jax.Array`` (float32, on the device).

``make_loader(batch_augment='auto')`` picks :data:`DEFAULT_BY_BACKEND` for JAX's default backend (measured:
``benchmarks/input_pipeline.py``, RESULTS.md); 'grain' keeps the per-example path. Policies with 'pad_crop'
and sources that do not fit the cache always stream through grain.

Example::

    import numpy as np
    from jaxgluon.data import ArraySource, make_loader
    src = ArraySource(np.zeros((8, 40, 50, 3), np.uint8), [0, 1] * 4, ["a", "b"])
    for b in make_loader(src, batch_size=4, image_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, train=True,
                         augment="resized_crop+flip", batch_augment="host"):
        b["image"].shape        # (4, 16, 16, 3) float32 (a jax.Array)
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import logging
import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from jaxgluon.data import transforms

MODES = ("auto", "grain", "host", "device")
DEFAULT_BY_BACKEND = {"cpu": "host", "gpu": "device", "cuda": "device", "rocm": "device", "tpu": "device"}
"""What ``batch_augment='auto'`` means on each JAX backend (chosen by ``benchmarks/input_pipeline.py``)."""
TRIES = 10
MAX_PADDING_FACTOR = 4.0
"""'device' keeps images padded to the largest (h, w); when that needs more than this many times their own bytes
(very mixed shapes; hymenoptera at 224 px needs 2.3x), the host path is used instead (with a log line)."""

logger = logging.getLogger(__name__)


def supports(policy: str) -> bool:
    """Whether the batch path implements the train policy (random-resized or center crop, optional flip)."""
    return policy.split("+")[0] in ("resized_crop", "none")


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown batch_augment {mode!r}; choose one of {MODES}")
    if mode != "auto":
        return mode
    import jax

    return DEFAULT_BY_BACKEND.get(jax.default_backend(), "host")


def draw_crops(sizes: np.ndarray, policy: str, rng: np.random.Generator,
               scale: tuple[float, float] = transforms.RRC_SCALE,
               ratio: tuple[float, float] = transforms.RRC_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Crop boxes (left, top, right, bottom; float pixels) and flips for images of ``sizes`` [B, 2] (h, w).

    The distribution of :func:`transforms.random_resized_crop` (the first of 10 valid (area, log-aspect) draws,
    a uniform position, else the largest centered crop within ``ratio``) or of :func:`transforms.center_crop`
    ('none'), and a fair coin per image for '+flip', all drawn at once.
    """
    h, w = np.asarray(sizes, np.float64).T
    b = len(h)
    if policy.split("+")[0] == "resized_crop":
        area = (h * w)[:, None] * rng.uniform(scale[0], scale[1], size=(b, TRIES))
        aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(b, TRIES)))
        cw, ch = np.sqrt(area * aspect), np.sqrt(area / aspect)
        ok = (cw >= 1.0) & (cw <= w[:, None]) & (ch >= 1.0) & (ch <= h[:, None])
        first = np.argmax(ok, axis=1)
        found = ok[np.arange(b), first]
        cw, ch = cw[np.arange(b), first], ch[np.arange(b), first]
        u = rng.uniform(0.0, 1.0, size=(b, 2))
        left, top = u[:, 0] * (w - cw), u[:, 1] * (h - ch)
        # fallback: the largest centered crop whose aspect lies within ratio
        fw = np.where(w / h > ratio[1], h * ratio[1], w)
        fh = np.where(w / h < ratio[0], w / ratio[0], h)
        cw, ch = np.where(found, cw, fw), np.where(found, ch, fh)
        left, top = np.where(found, left, (w - fw) / 2.0), np.where(found, top, (h - fh) / 2.0)
    else:
        side = np.minimum(h, w) * transforms.EVAL_CROP_FRACTION
        cw = ch = side
        left, top = (w - side) / 2.0, (h - side) / 2.0
    boxes = np.stack([left, top, left + cw, top + ch], axis=1)
    flips = rng.random(b) < 0.5 if policy.endswith("flip") else np.zeros(b, bool)
    return boxes, flips


AHEAD = 2
"""Host path: batches whose crops are being made while the current one is consumed."""


MAX_WARP_SHRINK = 1.5
"""Host path: a box shrunk by more than this (per side) is resized by Pillow, whose low-pass filter matters there;
up to it, OpenCV's warp (no filter) is within a level or so of Pillow on photographs (:class:`HostAugment`)."""


def crop_into(out: np.ndarray, image: np.ndarray, box: np.ndarray) -> None:
    """Writes ``image``'s crop ``box`` (left, top, right, bottom; float pixels) resized to ``out``'s [S, S, 3]:
    output pixel ``i`` samples the image at ``left + (i + 0.5) * (right - left) / S - 0.5``, bilinear (Pillow's
    box mapping); outside the image the edge pixel repeats. Boxes shrunk beyond :data:`MAX_WARP_SHRINK` go
    through Pillow's filter (the per-example path's resampling, exactly)."""
    import cv2

    size = out.shape[0]
    left, top, right, bottom = (float(v) for v in box)
    sx, sy = (right - left) / size, (bottom - top) / size
    if max(sx, sy) > MAX_WARP_SHRINK:
        out[...] = transforms._resize_box(image, (size, size), (left, top, right, bottom))
        return
    inverse = np.array([[sx, 0.0, left + 0.5 * sx - 0.5], [0.0, sy, top + 0.5 * sy - 0.5]])
    cv2.warpAffine(image, inverse, (size, size), dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                   borderMode=cv2.BORDER_REPLICATE)


@functools.lru_cache(maxsize=None)
def _finish_fn() -> Any:
    """Host path: one jitted flip + normalise of a uint8 batch (compiled once per batch shape)."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def finish(crops, flips, offset, scale):
        flipped = jnp.where(flips[:, None, None, None], crops[:, :, ::-1], crops)
        return (flipped.astype(jnp.float32) - offset) * scale   # transforms.normalize, bit for bit

    return finish


class HostAugment:
    """Crops and resizes on the host (OpenCV, a thread pool), flips and normalises in one jitted function.

    Each crop is one ``cv2.warpAffine`` of the decoded image: the box mapped onto the output's pixel centres as
    Pillow's ``resize(size, BILINEAR, box=...)`` maps it (the per-example path), bilinear, edges replicated. It
    is ~8x faster than Pillow's resize (0.086 vs 0.69 ms per 224 px crop of hymenoptera's 258 px working images,
    one core) and releases the GIL, so the pool's threads run in parallel. It does not low-pass filter
    before downscaling, as Pillow's filter does: over 240 random-resized crops of hymenoptera (36% shrink their
    box, at most 1.5x) the two differ by a mean 0.16 uint8 levels (99th percentile 1.0) where the box grows, 0.26
    / 0.45 / 0.72 (p99 1.6 / 3.9 / 6.3) where it shrinks by up to 1.1 / 1.25 / 1.5x; boxes shrunk more go
    through Pillow (:func:`crop_into`). ``tests/data/test_batch_augment.py`` bounds the difference.

    The pool keeps working on the next :data:`AHEAD` batches while one is consumed (:meth:`submit`). Flip and
    normalisation (``transforms.normalize``'s arithmetic) run in XLA, one fused pass over the batch, on the
    default device: the batch travels there as uint8, a quarter of float32's bytes.
    """

    def __init__(self, images: Sequence[np.ndarray], image_size: int, mean: np.ndarray, std: np.ndarray,
                 threads: int):
        self.images, self.size = images, image_size
        self.offset, self.scale = transforms.normalize_constants(mean, std)
        self.threads = max(1, threads)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.threads)
        self.finish = _finish_fn()

    def _crops(self, out: np.ndarray, idx: np.ndarray, boxes: np.ndarray, lo: int, hi: int) -> None:
        for j in range(lo, hi):
            crop_into(out[j], self.images[idx[j]], boxes[j])

    def submit(self, idx: np.ndarray, boxes: np.ndarray, flips: np.ndarray) -> Callable[[], Any]:
        """Starts the batch's crops in the pool; returns a function that waits for them and returns the batch."""
        out = np.empty((len(idx), self.size, self.size, 3), np.uint8)
        cuts = np.linspace(0, len(idx), min(len(idx), 2 * self.threads) + 1).astype(int)   # a few images per task
        tasks = [self.pool.submit(self._crops, out, idx, boxes, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])]

        def result() -> Any:
            for task in tasks:
                task.result()
            return self.finish(out, np.asarray(flips, np.bool_), self.offset, self.scale)

        return result

    def __call__(self, idx: np.ndarray, boxes: np.ndarray, flips: np.ndarray) -> Any:
        return self.submit(idx, boxes, flips)()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@functools.lru_cache(maxsize=None)
def _device_fn(size: int) -> Any:
    import jax
    import jax.numpy as jnp

    def one(image, box, flip):
        scale = jnp.stack([size / (box[3] - box[1]), size / (box[2] - box[0])])
        translation = -jnp.stack([box[1], box[0]]) * scale
        out = jax.image.scale_and_translate(image.astype(jnp.float32), (size, size, 3), (0, 1), scale, translation,
                                            method="linear", antialias=True)
        out = jnp.where(flip, out[:, ::-1], out)
        return jnp.clip(jnp.round(out), 0.0, 255.0)   # uint8 values, as the host path's crops

    @jax.jit
    def augment(canvas, idx, boxes, flips, offset, scale):
        crops = jax.vmap(one)(canvas[idx], boxes.astype(jnp.float32), flips)
        return (crops - offset) * scale   # transforms.normalize's arithmetic

    return augment


class DeviceAugment:
    """Keeps the decoded images on the default device; one jitted gather-resample-flip-normalise per batch."""

    def __init__(self, images: Sequence[np.ndarray], image_size: int, mean: np.ndarray, std: np.ndarray,
                 store: dict | None = None):
        import jax

        store = {} if store is None else store
        if "canvas" not in store:   # packed and shipped once per cached source (later trials reuse it)
            store["canvas"] = self._pack(images)
        self.canvas = store["canvas"]
        self.offset, self.scale = map(jax.device_put, transforms.normalize_constants(mean, std))
        self.fn = _device_fn(image_size)

    @staticmethod
    def _pack(images: Sequence[np.ndarray]) -> Any:
        import jax

        hmax = max(im.shape[0] for im in images)
        wmax = max(im.shape[1] for im in images)
        canvas = np.empty((len(images), hmax, wmax, 3), np.uint8)
        for i, im in enumerate(images):   # edge padding: the resampling kernel near an image edge sees its edge
            canvas[i] = np.pad(im, ((0, hmax - im.shape[0]), (0, wmax - im.shape[1]), (0, 0)), mode="edge")
        return jax.device_put(canvas)

    def __call__(self, idx: np.ndarray, boxes: np.ndarray, flips: np.ndarray) -> Any:
        return self.fn(self.canvas, idx.astype(np.int32), boxes.astype(np.float32), flips, self.offset, self.scale)

    def close(self) -> None:
        pass


class BatchEpochs:
    """The train batches of epochs ``start_epoch..num_epochs-1`` of a cached source, augmented a batch at once.

    Each epoch is a permutation seeded by ``epoch_seeds[e]`` (then this shard's slice), cut into full batches;
    each batch's crops come from a generator seeded by (epoch seed, batch index), so batches do not depend on
    where iteration starts. The host path works on the next :data:`AHEAD` batches while one is consumed.
    """

    def __init__(self, images: Sequence[np.ndarray], labels: np.ndarray, *, mode: str, policy: str,
                 batch_size: int, image_size: int, mean: np.ndarray, std: np.ndarray, epoch_seeds: Sequence[int],
                 shard: tuple[int, int], threads: int, store: dict | None = None):
        self.images, self.labels, self.mode, self.policy = images, labels, mode, policy
        self.batch_size, self.image_size, self.mean, self.std = batch_size, image_size, mean, std
        self.epoch_seeds, self.shard, self.threads, self.store = list(epoch_seeds), shard, threads, store
        self.sizes = np.asarray([im.shape[:2] for im in images], np.int64)
        self._augment: Any = None

    def _make_augment(self) -> Any:
        if self._augment is None:
            if self.mode == "device" and not self._fits_on_device():
                self.mode = "host"
            if self.mode == "device":
                self._augment = DeviceAugment(self.images, self.image_size, self.mean, self.std, self.store)
            else:
                self._augment = HostAugment(self.images, self.image_size, self.mean, self.std, self.threads)
        return self._augment

    def _fits_on_device(self) -> bool:
        own = float(np.sum(np.prod(self.sizes, axis=1)))
        padded = float(len(self.sizes) * self.sizes[:, 0].max() * self.sizes[:, 1].max())
        if padded > MAX_PADDING_FACTOR * own:
            logger.info("batch_augment='device': padding the images to one shape would take %.1fx their memory; "
                        "augmenting on the host instead", padded / own)
            return False
        return True

    def _plan(self) -> Iterator[tuple[np.ndarray, int]]:
        n = len(self.labels)
        index, count = self.shard
        for seed in self.epoch_seeds:
            order = np.random.default_rng(seed).permutation(n)
            if count > 1:
                order = order[: n - n % count][index::count]
            for k in range(len(order) // self.batch_size):
                yield order[k * self.batch_size:(k + 1) * self.batch_size], int(
                    np.random.SeedSequence([seed, k]).generate_state(1)[0])

    def _batch(self, augment: Any, idx: np.ndarray, seed: int) -> dict:
        boxes, flips = draw_crops(self.sizes[idx], self.policy, np.random.default_rng(seed))
        return {"image": augment(idx, boxes, flips), "label": self.labels[idx].astype(np.int32),
                "mask": np.ones(len(idx), np.bool_)}

    def __iter__(self) -> Iterator[dict]:
        augment = self._make_augment()
        plan = self._plan()
        if self.mode == "device":   # jax dispatch is asynchronous already
            for idx, seed in plan:
                yield self._batch(augment, idx, seed)
            return
        try:   # host: the pool works on the next AHEAD batches while this one is consumed
            pending: collections.deque = collections.deque()
            for idx, seed in plan:
                boxes, flips = draw_crops(self.sizes[idx], self.policy, np.random.default_rng(seed))
                pending.append((idx, augment.submit(idx, boxes, flips)))
                if len(pending) > AHEAD:
                    yield self._finished(*pending.popleft())
            while pending:
                yield self._finished(*pending.popleft())
        finally:   # the loop ended or was closed (a trial's PAUSE/STOP): release the threads
            augment.close()
            self._augment = None

    def _finished(self, idx: np.ndarray, result: Callable[[], Any]) -> dict:
        return {"image": result(), "label": self.labels[idx].astype(np.int32), "mask": np.ones(len(idx), np.bool_)}
