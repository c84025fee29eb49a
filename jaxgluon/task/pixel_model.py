"""A kernel model on raw pixels: a candidate ``fit`` ranks beside the networks on small images.

    candidate = fit_pixel_kernel(train_source, val_source, metric='log_loss')   # PixelCandidate | None
    candidate.reward, candidate.val_top1                  # validation scores, on the trials' scale
    model = candidate.refit(train_source, val_source)     # the final model: trained on train + validation
    model.predict_proba(images); model.evaluate(source); model.save('dir'); load_pixel_model('dir')

Why: on 8-32 px images an RBF kernel on the pixels is the baseline a user tries first, and it is strong (digits:
scikit-learn's ``SVC(C=10)`` 0.986 test top-1 in 0.1 s, where fine-tuning a CIFAR-10 ResNet-20 for 120 s on a
2-core CPU reached 0.953-0.964). AutoGluon's tabular predictor trains such simple models beside the deep ones and
keeps whichever validates best; ``fit`` does the same (``jaxgluon.task.defaults.use_pixel_model`` says when).

The model is kernel ridge regression on one-hot labels with an RBF kernel (numpy: see :func:`rbf_kernel`), one
output per class, with class probabilities ``softmax(temperature * scores)``:

- Features: each image resized (whole, no crop) to ``side`` x ``side`` RGB (``side`` = the median image side,
  at most ``MAX_SIDE``), scaled to 0-1 and flattened.
- Its width ``gamma`` (multiples ``GAMMA_FACTORS`` of the median-distance heuristic) and ridge ``alpha``
  (``RIDGES``) are chosen by exact leave-one-out top-1 on the training split (one eigendecomposition per width
  gives every ridge's leave-one-out predictions), ties broken by leave-one-out log-loss, and the temperature by
  leave-one-out log-loss: the validation split stays untouched, so its score ranks the model fairly against the
  networks' epochs.
- One BLAS thread (``BLAS_THREADS``): robust to a loaded machine.
- At most ``MAX_TRAIN_IMAGES`` training images (a stratified subsample above that: the solve is cubic).
- The final model is refitted on training + validation images with the chosen settings (one linear solve).

Saved as ``pixel_model.json`` (settings, class names, validation scores) and ``pixel_model.npz`` (the training
features and the dual coefficients: plain arrays, no pickle), then the folder's ``manifest.json``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from jaxgluon import data as jdata
from jaxgluon.data.sources import source_labels
from jaxgluon.data.transforms import center_crop
from jaxgluon.train.integrity import (MANIFEST_FIELD, MANIFEST_FILE, SavedModelError, check_saved, read_json_file,
                                      verify_manifest, write_json, write_manifest)

KIND = "pixel_kernel"
#: ``fit``'s final-choice marker for this model (trial ids are >= 0).
PIXEL_CHOICE = -1
#: At most this share of ``fit``'s ``time_limits`` goes to the kernel model (checked between kernel widths).
BUDGET_FRACTION = 0.25
META_FILE, ARRAYS_FILE = "pixel_model.json", "pixel_model.npz"
MAX_SIDE = 32
MAX_TRAIN_IMAGES = 2000
#: Training images of the fallback kernel model on larger images (``defaults.use_pixel_model`` is False there): a
#: model within seconds when no network reports in time, not a contender.
FALLBACK_MAX_IMAGES = 500
GAMMA_FACTORS = (0.5, 1.0, 2.0, 4.0)
RIDGES = (1e-3, 1e-2, 1e-1, 1.0)
TEMPERATURES = tuple(np.geomspace(0.3, 300.0, 49).tolist())
PREDICT_BATCH = 512
log = logging.getLogger("jaxgluon.task")
#: BLAS threads for the eigendecompositions and solves: on a shared 2-core CPU, one thread ran a 1,239-image
#: eigendecomposition in 0.9 s where two contending threads took 6.5 s (numpy/OpenBLAS, load average 14).
BLAS_THREADS = 1


def pixel_features(images: Any, side: int) -> np.ndarray:
    """float32 [N, side * side * 3] in 0-1: each image (path, PIL, array; or an [N, H, W, C] array) resized whole."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        batch = list(images)
    elif isinstance(images, (list, tuple)):
        batch = list(images)
    else:
        batch = [images]
    if not batch:
        raise ValueError("pixel_features got no images")
    from jaxgluon.data.images import decode_file

    rgb = [center_crop(decode_file(im, min_side=side) if isinstance(im, (str, os.PathLike)) else jdata.load_image(im),
                       side, crop_fraction=1.0) for im in batch]
    return (np.stack(rgb).reshape(len(rgb), -1).astype(np.float32) / np.float32(255.0))


def source_features(source: Any, side: int, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``source``'s examples at ``indices`` (all by default). Image files are read straight
    from disk, JPEGs at a reduced DCT scale (``decode_file(min_side=side)``): a photo folder costs milliseconds per
    image instead of a full decode."""
    from jaxgluon.data.images import decode_file
    from jaxgluon.task.budget import file_paths

    indices = np.arange(len(source)) if indices is None else np.asarray(indices)
    labels = source_labels(source)[indices]
    paths = file_paths(source)
    if paths is not None:
        images = [decode_file(paths[int(i)], min_side=side) for i in indices]
    else:
        images = [source[int(i)]["image"] for i in indices]
    return pixel_features(images, side), labels.astype(np.int64)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances [len(a), len(b)] (float32 rows, clipped at 0)."""
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(-gamma * |a_i - b_j|^2)``. In numpy rather than scikit-learn's ``rbf_kernel``/``KernelRidge``:
    importing scikit-learn (scipy.stats and all) took 24 s of a fit's budget on a loaded 2-core CPU."""
    return np.exp(-gamma * squared_distances(a, b))


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_loss(scores: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = temperature * scores
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def _subsample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of a stratified subsample of at most ``limit`` of ``labels`` (all of them when fewer)."""
    if len(labels) <= limit:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep.append(rng.choice(members, size=max(1, round(len(members) * limit / len(labels))), replace=False))
    return np.sort(np.concatenate(keep))[:limit]


@dataclasses.dataclass
class PixelCandidate:
    """The kernel model fitted on the training split, with its validation scores (``reward`` on the scale the
    trials are ranked by: top-1, or ``exp(-log_loss)``)."""

    model: "PixelKernelModel"
    reward: float
    val_top1: float
    val_loss: float
    loo_top1: float
    seconds: float
    side: int
    features: tuple = dataclasses.field(default=(), repr=False)   # (x_train, y_train, x_val, y_val), for refit

    @property
    def config(self) -> dict:
        m = self.model.meta
        return {"net": KIND, "gamma": m["gamma"], "ridge": m["ridge"], "temperature": m["temperature"],
                "side": m["side"]}

    def summary(self) -> dict:
        return {"model": KIND, **self.config, "reward": self.reward, "val_top1": self.val_top1,
                "val_loss": self.val_loss, "loo_top1": self.loo_top1, "seconds": round(self.seconds, 3),
                "train_images": self.model.meta["train_images"]}

    def refit(self, train_source: Any, val_source: Any, seed: int = 0) -> "PixelKernelModel":
        """The same settings fitted on training + validation images (the model ``fit`` returns; the features
        computed for the candidate are reused, so this is one linear solve)."""
        if self.features:
            x_train, y_train, x_val, y_val = self.features
        else:
            x_train, y_train = _features_capped(train_source, self.side, seed)
            x_val, y_val = source_features(val_source, self.side)
        x, y = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
        keep = _subsample(y, min(MAX_TRAIN_IMAGES, self.model.meta["train_images"] + len(y_val)), seed)
        meta = dict(self.model.meta, refit=True, train_images=int(len(keep)))
        with threadpool_limits(BLAS_THREADS):
            return PixelKernelModel.fit(x[keep], y[keep], meta)


def _features_capped(source: Any, side: int, seed: int, limit: int = MAX_TRAIN_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(source_labels(source), np.int64)
    return source_features(source, side, _subsample(labels, limit, seed))


class PixelKernelModel:
    """Kernel ridge regression on pixels with softmax probabilities; the interface of ``train.TrainedModel``
    (``predict_proba``, ``predict``, ``evaluate``, ``save``, ``class_names``, ``meta``)."""

    def __init__(self, support: np.ndarray, dual: np.ndarray, offset: np.ndarray, meta: dict):
        self.support = np.asarray(support, np.float32)
        self.dual = np.asarray(dual, np.float32)
        self.offset = np.asarray(offset, np.float32)
        self.meta = dict(meta)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, meta: dict) -> "PixelKernelModel":
        targets = np.eye(int(meta["num_classes"]))[y]
        offset = targets.mean(axis=0)
        gram = rbf_kernel(x, x, meta["gamma"]).astype(np.float64)
        gram[np.diag_indices_from(gram)] += meta["ridge"]
        dual = np.linalg.solve(gram, targets - offset)   # kernel ridge: (K + ridge I) dual = centred one-hot labels
        return cls(x, dual, offset, meta)

    net = property(lambda self: KIND)
    class_names = property(lambda self: list(self.meta["class_names"]))
    num_classes = property(lambda self: int(self.meta["num_classes"]))

    def scores(self, x: np.ndarray) -> np.ndarray:
        out = [rbf_kernel(x[i:i + PREDICT_BATCH], self.support, self.meta["gamma"]) @ self.dual + self.offset
               for i in range(0, len(x), PREDICT_BATCH)]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def proba_of_features(self, x: np.ndarray) -> np.ndarray:
        return _softmax(self.meta["temperature"] * self.scores(x)).astype(np.float32)

    def predict_proba(self, images: Any) -> np.ndarray:
        """Class probabilities [N, num_classes] for one image or a sequence/array of images."""
        return self.proba_of_features(pixel_features(images, int(self.meta["side"])))

    def predict(self, images: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(images), axis=-1)

    def evaluate(self, source: Any, **_: Any) -> float:
        """Top-1 accuracy on a data source (its ``class_names`` must match the model's)."""
        if list(source.class_names) != self.class_names:
            raise ValueError(f"the source's classes {list(source.class_names)} differ from the model's "
                             f"{self.class_names}")
        correct = 0
        for start in range(0, len(source), PREDICT_BATCH):
            x, y = source_features(source, int(self.meta["side"]),
                                   np.arange(start, min(len(source), start + PREDICT_BATCH)))
            correct += int(np.sum(np.argmax(self.scores(x), axis=1) == y))
        return correct / max(len(source), 1)

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Writes ``pixel_model.json``, ``pixel_model.npz`` and last ``manifest.json`` (see :func:`load_pixel_model`)."""
        directory = pathlib.Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        if any((directory / name).exists() for name in (META_FILE, ARRAYS_FILE, MANIFEST_FILE)):
            raise ValueError(f"{directory} already holds a saved model; choose an empty directory")
        with open(directory / ARRAYS_FILE, "wb") as f:
            np.savez(f, support=self.support, dual=self.dual, offset=self.offset)
        write_json(directory / META_FILE, {**self.meta, MANIFEST_FIELD: MANIFEST_FILE}, indent=2, sort_keys=True)
        write_manifest(directory)
        return directory

    def __repr__(self) -> str:
        return (f"PixelKernelModel(classes={self.num_classes}, side={self.meta['side']}, "
                f"train_images={self.meta['train_images']})")


def is_pixel_model(directory: str | pathlib.Path) -> bool:
    return (pathlib.Path(directory) / META_FILE).is_file()


def load_pixel_model(directory: str | pathlib.Path) -> PixelKernelModel:
    """Reads what :meth:`PixelKernelModel.save` wrote, after checking the manifest (no pickle is loaded)."""
    directory = pathlib.Path(directory).expanduser().absolute()
    verified = verify_manifest(directory)
    meta = read_json_file(directory / META_FILE, "the saved pixel model is corrupt; save it again")
    if not verified:
        check_saved(directory, meta, META_FILE)
    meta.pop(MANIFEST_FIELD, None)
    if meta.get("kind") != KIND:
        raise SavedModelError(f"{directory / META_FILE} is not a {KIND} model (kind={meta.get('kind')!r})")
    with np.load(directory / ARRAYS_FILE, allow_pickle=False) as arrays:
        support, dual, offset = arrays["support"], arrays["dual"], arrays["offset"]
    n, c = len(meta["class_names"]), int(meta["num_classes"])
    side = int(meta["side"])
    if n != c or dual.shape != (len(support), c) or offset.shape != (c,) or support.shape[1:] != (side * side * 3,):
        raise SavedModelError(f"{directory}: the arrays' shapes {support.shape}, {dual.shape}, {offset.shape} do not "
                              f"match {META_FILE} ({c} classes, side {side}); save the model again")
    return PixelKernelModel(support, dual, offset, meta)


def _loo_search(x: np.ndarray, y: np.ndarray, num_classes: int, deadline: float | None) -> tuple[dict, float]:
    """Width, ridge and temperature by exact leave-one-out on ``(x, y)``; returns (settings, loo top-1)."""
    targets = np.eye(num_classes)[y]
    centred = targets - targets.mean(axis=0)
    probe = x[_subsample(y, 500, 0)]
    d2 = squared_distances(probe, probe)
    base = 1.0 / float(np.median(d2[d2 > 0])) if np.any(d2 > 0) else 1.0
    best: tuple | None = None
    for factor in GAMMA_FACTORS:
        if best is not None and deadline is not None and time.perf_counter() > deadline:
            break
        gamma = base * factor
        s, u = np.linalg.eigh(rbf_kernel(x, x, gamma).astype(np.float64))
        s = np.clip(s, 0.0, None)
        proj = u.T @ centred
        for ridge in RIDGES:
            w = s / (s + ridge)
            fitted = u @ (w[:, None] * proj)
            hat = np.minimum((u ** 2) @ w, 1.0 - 1e-6)
            loo = (fitted - hat[:, None] * centred) / (1.0 - hat)[:, None] + targets.mean(axis=0)
            top1 = float(np.mean(np.argmax(loo, axis=1) == y))
            losses = [_log_loss(loo, y, t) for t in TEMPERATURES]
            t_best = int(np.argmin(losses))
            key = (top1, -losses[t_best])
            if best is None or key > best[0]:
                best = (key, {"gamma": gamma, "ridge": ridge, "temperature": TEMPERATURES[t_best]})
    assert best is not None
    return best[1], best[0][0]


def fit_pixel_kernel(train_source: Any, val_source: Any, metric: str, *, deadline: float | None = None,
                     seed: int = 0, max_train_images: int = MAX_TRAIN_IMAGES) -> PixelCandidate:
    """Fits the kernel model on (at most ``max_train_images`` of) ``train_source`` and scores it on
    ``val_source``; past ``deadline`` (``time.perf_counter()`` seconds) no further kernel width is tried."""
    started = time.perf_counter()
    from jaxgluon.task.defaults import median_image_side

    side = int(min(MAX_SIDE, max(1, round(median_image_side(train_source)))))
    x, y = _features_capped(train_source, side, seed, max_train_images)
    num_classes = len(train_source.class_names)
    with threadpool_limits(BLAS_THREADS):
        settings, loo_top1 = _loo_search(x, y, num_classes, deadline)
        meta = {"kind": KIND, "class_names": list(train_source.class_names), "num_classes": num_classes,
                "side": side, "train_images": int(len(y)), "refit": False, **settings}
        model = PixelKernelModel.fit(x, y, meta)
    x_val, y_val = source_features(val_source, side)
    scores = model.scores(x_val)
    val_top1 = float(np.mean(np.argmax(scores, axis=1) == y_val))
    val_loss = _log_loss(scores, y_val, settings["temperature"])
    reward = math.exp(-val_loss) if metric == "log_loss" else val_top1
    model.meta.update(val_top1=val_top1, val_loss=val_loss, reward=reward, loo_top1=loo_top1)
    return PixelCandidate(model, reward, val_top1, val_loss, loo_top1, time.perf_counter() - started, side,
                          (x, y, x_val, y_val))



def pixel_candidate(train_source: Any, val_source: Any, metric: str, *, started: float,
                    time_limits: float | None, seed: int = 0,
                    max_train_images: int = MAX_TRAIN_IMAGES) -> PixelCandidate | None:
    """``fit``'s stage: :func:`fit_pixel_kernel`, trying further kernel widths only within ``BUDGET_FRACTION`` of
    ``time_limits`` (counted from ``started``, a ``time.perf_counter()`` time). A failure is logged and warned
    about, never raised: the networks' search goes on without this candidate."""
    deadline = None if time_limits is None else started + BUDGET_FRACTION * time_limits
    try:
        candidate = fit_pixel_kernel(train_source, val_source, metric, deadline=deadline, seed=seed,
                                     max_train_images=max_train_images)
    except Exception as err:  # noqa: BLE001 -- an optional candidate must not end the fit
        import warnings

        warnings.warn(f"the kernel model on pixels failed ({type(err).__name__}: {err}); searching networks only",
                      RuntimeWarning, stacklevel=3)
        return None
    log.info("fit: kernel model on %dx%d pixels: validation top-1 %.4f, log-loss %.4f (%.1f s)",
             candidate.side, candidate.side, candidate.val_top1, candidate.val_loss, candidate.seconds)
    return candidate
