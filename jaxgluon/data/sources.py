"""In-memory sources, subset views and the stratified train/validation split.

A source is anything with ``__len__``, ``__getitem__(i) -> {'image': uint8 (H, W, 3), 'label': int}`` and
``class_names``; grain reads it by index. Sources here may also carry ``labels`` (int array, lets
:func:`stratified_split` work without decoding), ``image_sizes`` ((width, height) per image) and
``default_augment`` (the train augmentation ``make_loader(augment='auto')`` picks, e.g. no flip for digits).

Example::

    from jaxgluon.data import load_digits_source, stratified_split
    digits = load_digits_source()                        # 1797 8x8 images, classes '0'..'9'
    train, val = stratified_split(digits, val_fraction=0.1, seed=0)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxgluon.data.images import array_to_rgb


def source_labels(source: Any) -> np.ndarray:
    """The int64 labels of every example: ``source.labels`` when present, else read item by item."""
    labels = getattr(source, "labels", None)
    if labels is None:
        labels = [source[i]["label"] for i in range(len(source))]
    return np.asarray(labels, dtype=np.int64)


#: Classification needs at least this many classes with examples (one class: every prediction is that class).
MIN_CLASSES = 2


def require_classes(source: Any, what: str = "the training data") -> None:
    """Raises ValueError unless ``source`` has at least :data:`MIN_CLASSES` classes with examples.

    Called where training data enters (``task.Dataset``, ``train_trial``); test data may hold fewer classes.

    Example::

        require_classes(ImageFolderSource("~/data/train"), "train_path")   # one class folder: ValueError
    """
    names = list(source.class_names)
    labels = getattr(source, "labels", None)   # without labels (TFDS): the declared classes
    present = sorted(set(np.asarray(labels, dtype=np.int64).tolist())) if labels is not None else range(len(names))
    if len(present) >= MIN_CLASSES:
        return
    shown = [names[i] for i in present if 0 <= i < len(names)]
    if len(names) < MIN_CLASSES:
        found = f"has {len(names)} class{'' if len(names) == 1 else 'es'} {names}"
    else:
        found = f"has examples of only {len(present)} of its {len(names)} classes {shown}"
    root = getattr(source, "root", None)
    hint = (f" (for a folder: one subfolder of images per class, e.g. {root}/<class name>/1.jpg)"
            if root is not None else "")
    raise ValueError(f"{what} {found}; classification needs at least {MIN_CLASSES} classes with examples{hint}. "
                     "With one class every prediction would be that class at probability 1.0")


def load_example(source: Any, index: int, min_side: int | None = None) -> dict:
    """``source.load(index, min_side)`` when the source has it (reduced-scale decoding), else ``source[index]``."""
    load = getattr(source, "load", None)
    return source[index] if load is None else load(index, min_side)


class ArraySource:
    """Images held in memory.

    Args:
        images: an array [N, H, W], [N, H, W, 1|3|4] or a sequence of per-image arrays (sizes may differ), any
            dtype :func:`jaxgluon.data.images.array_to_rgb` accepts; stored as uint8 RGB.
        labels: N ints in ``[0, len(class_names))``.
        class_names: the class names, label order.
        default_augment: the augmentation ``make_loader(augment='auto')`` should use (None: decide by image size).

    Example::

        src = ArraySource(np.zeros((4, 8, 8), np.uint8), [0, 1, 0, 1], ["a", "b"])
        src[1]["image"].shape      # (8, 8, 3)
    """

    def __init__(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        *,
        default_augment: str | None = None,
    ):
        class_names = [str(c) for c in class_names]
        if not class_names:
            raise ValueError("class_names is empty; give one name per class")
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names has duplicates: {class_names}")
        labels = np.asarray(labels)
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise ValueError(f"labels must be a 1-D sequence of ints, got shape {labels.shape} dtype {labels.dtype}")
        if len(images) != len(labels):
            raise ValueError(f"got {len(images)} images but {len(labels)} labels")
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(
                f"labels must lie in [0, {len(class_names)}) for {len(class_names)} class names, "
                f"got min {labels.min()} max {labels.max()}"
            )
        arr = images if isinstance(images, np.ndarray) else None
        if arr is not None and arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[-1] == 3:
            self.images: np.ndarray | list[np.ndarray] = arr
        elif arr is not None and arr.dtype == np.uint8 and arr.ndim == 3:
            self.images = np.repeat(arr[..., None], 3, axis=3)
        else:
            converted = [array_to_rgb(np.asarray(im)) for im in images]
            same = len({im.shape for im in converted}) <= 1
            self.images = np.stack(converted) if same and converted else converted
        self.labels: np.ndarray = labels.astype(np.int64)
        self.class_names: list[str] = class_names
        self.image_sizes = np.asarray([(im.shape[1], im.shape[0]) for im in self.images], dtype=np.int64)
        self.default_augment = default_augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": int(self.labels[index])}

    def __repr__(self) -> str:
        return f"ArraySource({len(self)} images, {len(self.class_names)} classes)"


class SubsetSource:
    """A view of ``source`` restricted to ``indices`` (keeps its class names, labels, sizes and augment hint)."""

    def __init__(self, source: Any, indices: Sequence[int] | np.ndarray):
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(source)):
            raise IndexError(f"subset indices must lie in [0, {len(source)})")
        self.class_names: list[str] = list(source.class_names)
        self.labels: np.ndarray = source_labels(source)[self.indices]
        sizes = getattr(source, "image_sizes", None)
        self.image_sizes = None if sizes is None else np.asarray(sizes)[self.indices]
        self.default_augment = getattr(source, "default_augment", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.source[int(self.indices[index])]

    def load(self, index: int, min_side: int | None = None) -> dict:
        """Like ``[index]``, passing ``min_side`` on to sources that can decode at reduced scale."""
        return load_example(self.source, int(self.indices[index]), min_side)

    def __repr__(self) -> str:
        return f"SubsetSource({len(self)} of {self.source!r})"


def stratified_split(source: Any, val_fraction: float = 0.1, seed: int = 0) -> tuple[SubsetSource, SubsetSource]:
    """Splits ``source`` into (train, val) views, class by class, deterministically given ``seed``.

    Each class puts ``round(val_fraction * n)`` of its ``n`` images into val, but at least one and at most
    ``n - 1`` when ``n >= 2`` (so every class with two or more images is in both parts); a class with one image
    stays in train.

    Example::

        train, val = stratified_split(ImageFolderSource("data/train"), val_fraction=0.1, seed=0)
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    labels = source_labels(source)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in range(len(source.class_names)):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_val = 0 if n < 2 else min(n - 1, max(1, int(round(val_fraction * n))))
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    train = np.sort(np.concatenate(train_idx)) if train_idx else np.zeros(0, np.int64)
    val = np.sort(np.concatenate(val_idx)) if val_idx else np.zeros(0, np.int64)
    if len(val) == 0:
        raise ValueError(
            f"cannot split off a validation set: no class has two or more images ({len(labels)} images); "
            "give a separate validation folder"
        )
    return SubsetSource(source, train), SubsetSource(source, val)


def load_digits_source() -> ArraySource:
    """scikit-learn's 1,797 handwritten digits (8x8, bundled, offline) as uint8 RGB; classes '0'..'9'.

    Pixel values 0..16 are scaled to 0..255. The augment hint is 'pad_crop' (digits must not be mirrored).

    Example::

        digits = load_digits_source(); len(digits), digits.class_names[:3]    # 1797, ['0', '1', '2']
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.rint(np.asarray(data.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    return ArraySource(
        images, data.target, [str(int(n)) for n in data.target_names], default_augment="pad_crop"
    )
