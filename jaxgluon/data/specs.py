"""Data specs: the short, picklable strings that name a source, so worker processes can open it themselves.

    open_source('~/data/train')            # an image folder (one subfolder per class)
    open_source('digits')                  # all 1,797 built-in digits
    open_source('digits:train')            # the fixed 80 % of them used for training (stratified, seed 0)
    open_source('digits:test')             # the other 20 %
    open_source('tfds:cifar10:test')       # a prepared TFDS split (optionally ':<data_dir>' after the split)
    open_source('data.npz')                # arrays written by jaxgluon.train.save_array_dataset
"""
from __future__ import annotations

import functools
import os
import pathlib
from typing import Any

import numpy as np

from jaxgluon.data.folder import ImageFolderSource
from jaxgluon.data.sources import ArraySource, load_digits_source, stratified_split
from jaxgluon.data.tfds_source import TFDSSource

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLITS = ("train", "test")


@functools.lru_cache(maxsize=1)
def _digits_splits() -> tuple[Any, Any]:
    return stratified_split(load_digits_source(), val_fraction=DIGITS_TEST_FRACTION, seed=0)


def open_source(spec: str | os.PathLike) -> Any:
    """The data source a spec names (see the module docstring); a clear ValueError for anything else."""
    text = os.fspath(spec)
    if text == "digits":
        return load_digits_source()
    if text.startswith("digits:"):
        split = text.split(":", 1)[1]
        if split not in DIGITS_SPLITS:
            raise ValueError(f"unknown digits split {split!r} in {text!r}; use 'digits:train' or 'digits:test'")
        return _digits_splits()[DIGITS_SPLITS.index(split)]
    if text.startswith("tfds:"):
        parts = text.split(":", 3)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            raise ValueError(f"a TFDS spec is 'tfds:<name>:<split>[:<data_dir>]', got {text!r}")
        return TFDSSource(parts[1], parts[2], data_dir=parts[3] if len(parts) == 4 else None)
    path = pathlib.Path(text).expanduser()
    if text.endswith(".npz"):
        if not path.is_file():
            raise ValueError(f"array dataset {path} does not exist")
        with np.load(path, allow_pickle=False) as z:
            return ArraySource(z["images"], z["labels"], [str(c) for c in z["class_names"]])
    if not path.exists():
        raise FileNotFoundError(f"{text!r}: no such image folder ({path.absolute()}); give a folder with one subfolder "
                                "of images per class, 'digits[:train|:test]', 'tfds:<name>:<split>' or an .npz")
    return ImageFolderSource(path)
