"""``ImageClassification.Dataset``: where a task's images come from.

    from jaxgluon import ImageClassification as task
    dataset = task.Dataset(train_path='~/data/train')          # a folder per class; 90/10 train/val split
    test = task.Dataset(test_path='~/data/test')
    digits = task.Dataset(name='digits')                       # built in (scikit-learn), offline
    digits_test = task.Dataset(name='digits', train=False)
    dataset.synsets, dataset.init().synsets                    # class names (AutoGluon spelling)

A dataset names its data by *data specs* -- a folder path, ``'digits:train'``, ``'tfds:<name>:<split>'`` or an
``.npz`` -- the picklable strings that ``jaxgluon.train.TrialSpec`` and worker processes load.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

from jaxgluon import data as jdata

BUILTIN = ("digits",)  # a fixed stratified 80/20 train/test split (jaxgluon.data.specs)


class ImageDataset:
    """Training data (split into train/validation when no validation data is given) and/or test data.

    Attributes:
      name: a label (or the built-in / TFDS dataset's name).
      train_data, val_data, test_data: data specs (see the module docstring), or None.
      val_fraction, split_seed: the stratified validation split of ``train_data`` when ``val_data`` is None.
    """

    def __init__(self, name: str | None, train_data: str | None, test_data: str | None, *,
                 val_data: str | None = None, val_fraction: float = 0.1, split_seed: int = 0):
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
        self.name = name
        self.train_data = train_data
        self.val_data = val_data
        self.test_data = test_data
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self._sources: dict[str, Any] = {}

    def _source(self, which: str) -> Any:
        if which not in self._sources:
            spec = {"train": self.train_data, "test": self.test_data}[which]
            if spec is None:
                raise ValueError(f"dataset {self.name or ''!r} has no {which} data; create it with "
                                 f"{'train_path' if which == 'train' else 'test_path'}=<folder> (or "
                                 f"train={which == 'train'} for a built-in/TFDS dataset)")
            source = jdata.open_source(spec)
            if which == "train":   # where a task's training data enters: one class cannot be classified
                jdata.require_classes(source, f"the training data {spec!r}")
            self._sources[which] = source
        return self._sources[which]

    @property
    def has_train(self) -> bool:
        return self.train_data is not None

    @property
    def train_source(self) -> Any:
        """All training images (before the validation split)."""
        return self._source("train")

    @property
    def test_source(self) -> Any:
        return self._source("test")

    def split(self) -> tuple[Any, Any]:
        """(train, validation) sources, as every trial sees them."""
        if self.val_data is not None:
            return self.train_source, jdata.open_source(self.val_data)
        return jdata.stratified_split(self.train_source, val_fraction=self.val_fraction, seed=self.split_seed)

    @property
    def synsets(self) -> list[str]:
        """Class names in label order."""
        source = self._source("train" if self.has_train else "test")
        return list(source.class_names)

    classes = synsets

    @property
    def num_classes(self) -> int:
        return len(self.synsets)

    def init(self) -> "ImageDataset":
        """Returns the dataset itself (AutoGluon's ``dataset.init().synsets`` spelling)."""
        return self

    def __len__(self) -> int:
        return len(self._source("train" if self.has_train else "test"))

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}"] if self.name else []
        parts += [f"{k}={v!r}" for k, v in (("train", self.train_data), ("test", self.test_data)) if v]
        return f"ImageDataset({', '.join(parts)})"


def Dataset(name: str | None = None, train_path: str | os.PathLike | None = None,  # noqa: N802 - AutoGluon name
            test_path: str | os.PathLike | None = None, *, train: bool = True, val_path: str | os.PathLike | None = None,
            val_fraction: float = 0.1, seed: int = 0, data_dir: str | os.PathLike | None = None,
            download: bool = False) -> ImageDataset:
    """A dataset from image folders, the built-in ``'digits'``, or a TFDS dataset.

    Args:
      name: a label for folders; ``'digits'`` (built in); or a TFDS dataset name (prepared in ``data_dir``, or
        downloaded when ``download=True``) when no path is given.
      train_path, test_path, val_path: folders with one subfolder per class (``~`` expanded). Without
        ``val_path`` a stratified ``val_fraction`` of the training folder validates each trial.
      train: for built-in/TFDS names: the training split (True) or the test split (False).
      seed: seeds the validation split.
    """
    if train_path is None and test_path is None and val_path is None:
        if name is None:
            raise ValueError("Dataset needs train_path=<folder> and/or test_path=<folder> (one subfolder per class),"
                             f" a built-in name {BUILTIN}, or a TFDS dataset name")
        return _named_dataset(name, train=train, val_fraction=val_fraction, seed=seed, data_dir=data_dir,
                              download=download)
    train_spec, test_spec, val_spec = (_folder(p, what) for p, what in
                                       ((train_path, "train_path"), (test_path, "test_path"), (val_path, "val_path")))
    dataset = ImageDataset(name, train_spec, test_spec, val_data=val_spec, val_fraction=val_fraction, split_seed=seed)
    # Scan now, so a bad folder fails here (naming it) rather than inside the first trial.
    if train_spec:
        dataset.train_source  # noqa: B018
    if test_spec:
        dataset.test_source  # noqa: B018
    if train_spec and test_spec:
        jdata.check_class_names(dataset.test_source.class_names, dataset.train_source.class_names, test_spec)
    return dataset


def _folder(path: str | os.PathLike | None, what: str) -> str | None:
    if path is None:
        return None
    folder = pathlib.Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"{what}={os.fspath(path)!r}: no such folder ({folder.absolute()}); give a folder "
                                "with one subfolder of images per class")
    if not folder.is_dir():
        raise ValueError(f"{what}={os.fspath(path)!r} is a file; give a folder with one subfolder of images per class")
    return str(folder.absolute())


def _named_dataset(name: str, *, train: bool, val_fraction: float, seed: int, data_dir: Any,
                   download: bool) -> ImageDataset:
    split = "train" if train else "test"
    if name.lower() == "digits":
        spec = f"digits:{split}"
    else:
        spec = f"tfds:{name}:{split}" + (f":{os.fspath(data_dir)}" if data_dir is not None else "")
        if download:
            jdata.TFDSSource(name, split, data_dir=data_dir, download=True)  # prepares it once
    dataset = ImageDataset(name, spec if train else None, None if train else spec, val_fraction=val_fraction,
                           split_seed=seed)
    dataset._source("train" if train else "test")   # fail now with the source's own clear error
    return dataset
