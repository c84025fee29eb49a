"""A prepared TensorFlow Datasets split as a source, read with ``tfds`` data sources (ArrayRecord; no TensorFlow).

Nothing is downloaded unless ``download=True``. A dataset that is not prepared in ``data_dir`` gives a
``FileNotFoundError`` that says how to prepare it; a failed download (e.g. offline) a ``RuntimeError``.

Example::

    from jaxgluon.data import TFDSSource
    train = TFDSSource("cifar10", "train", data_dir="~/tensorflow_datasets")   # prepared as array_record
    train[0]["image"].shape, train.class_names[:2]                              # (32, 32, 3), ['airplane', ...]
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from jaxgluon.data.images import array_to_rgb


def _open(name: str, split: str, data_dir: str | None, download: bool) -> tuple[Any, Any]:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise ValueError(
            f"TFDS has no dataset named {name!r}; see https://www.tensorflow.org/datasets/catalog for the names"
        ) from err
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; pass download=True to download and "
                f"prepare it (needs internet), or prepare it elsewhere with "
                f"`tfds build {name} --file_format=array_record --data_dir <dir>` and pass data_dir=<dir>"
            )
        try:
            builder.download_and_prepare(file_format="array_record")
        except Exception as err:  # noqa: BLE001 -- network, disk and builder errors all end here
            raise RuntimeError(
                f"could not download and prepare TFDS dataset {name!r} into {builder.data_dir} "
                f"(offline? {type(err).__name__}: {err})"
            ) from err
    try:
        data = builder.as_data_source(split=split)
    except NotImplementedError as err:
        raise ValueError(
            f"TFDS dataset {name!r} in {builder.data_dir} is not stored as array_record, which random access "
            f"needs; prepare it again with file_format='array_record' in another data_dir ({err})"
        ) from err
    return builder, data


class TFDSSource:
    """One split of a prepared TFDS image-classification dataset (features 'image' and a ClassLabel 'label').

    Args:
        name: TFDS name, e.g. 'cifar10', 'tf_flowers', 'mnist' (config/version suffixes allowed).
        split: split spec, e.g. 'train', 'test', 'train[:90%]'.
        data_dir: where prepared datasets live (default: TFDS_DATA_DIR or ~/tensorflow_datasets); ``~`` expanded.
        download: download and prepare the dataset when it is missing (otherwise FileNotFoundError).
        image_key, label_key: feature names when they differ from 'image' and 'label'.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | os.PathLike | None = None,
        download: bool = False,
        *,
        image_key: str = "image",
        label_key: str = "label",
    ):
        self.name, self.split = name, split
        self.data_dir = None if data_dir is None else str(pathlib.Path(data_dir).expanduser())
        self.image_key, self.label_key = image_key, label_key
        builder, self._data = _open(name, split, self.data_dir, download)
        features = builder.info.features
        for key in (image_key, label_key):
            if key not in features:
                raise ValueError(
                    f"TFDS dataset {name!r} has no feature {key!r} (features: {list(features.keys())}); "
                    "pass image_key=/label_key="
                )
        names = getattr(features[label_key], "names", None)
        if not names:
            raise ValueError(f"feature {label_key!r} of TFDS dataset {name!r} is not a ClassLabel with names")
        self.class_names: list[str] = list(names)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_data"] = None  # reopened in the process that unpickles it (grain workers)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._data = _open(self.name, self.split, self.data_dir, False)[1]

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> dict:
        example = self._data[index]
        return {"image": array_to_rgb(np.asarray(example[self.image_key])), "label": int(example[self.label_key])}

    def __repr__(self) -> str:
        return f"TFDSSource({self.name!r}, {self.split!r}: {len(self)} images, {len(self.class_names)} classes)"
