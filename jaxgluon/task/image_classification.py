"""``ImageClassification``: the AutoGluon-style task API.

    from jaxgluon import ImageClassification as task
    dataset = task.Dataset(train_path='~/data/train')
    results = task.fit(dataset, time_limits=600)
    task.evaluate(task.Dataset(test_path='~/data/test'))
    ind, prob = task.predict('~/data/test/ants/1.jpg')
    results.save('model'); task.load('model')

The class-level calls (``evaluate``, ``predict``, ``predict_proba``) act on the last ``fit`` (or ``load``);
``Results`` has the same methods for explicit use without that state.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from jaxgluon.task.dataset import Dataset
from jaxgluon.task.fit import fit as _fit
from jaxgluon.task.results import Results


@functools.wraps(_fit)
def _fit_and_remember(*args: Any, **kwargs: Any) -> Results:
    results = _fit(*args, **kwargs)
    ImageClassification._last = results   # the model the class-level evaluate/predict calls use
    return results


class ImageClassification:
    """Automated image classification (all methods are class-level; see the module docstring)."""

    Dataset = staticmethod(Dataset)
    _last: Results | None = None

    fit = staticmethod(_fit_and_remember)   # fit's real signature and docstring (help(), inspect, IDEs)

    @classmethod
    def _results(cls) -> Results:
        if cls._last is None:
            raise RuntimeError("no fitted model yet: call ImageClassification.fit(...) or .load(path) first")
        return cls._last

    @classmethod
    def evaluate(cls, dataset: Any) -> float:
        """Top-1 accuracy of the last fitted model on ``dataset``'s test data."""
        return cls._results().evaluate(dataset)

    @classmethod
    def predict(cls, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(class index, probability)`` for an image path, PIL image or array (arrays [N] for a list)."""
        return cls._results().predict(images)

    @classmethod
    def predict_proba(cls, images: Any) -> np.ndarray:
        return cls._results().predict_proba(images)

    @classmethod
    def load(cls, path: Any) -> Results:
        """Loads what ``Results.save(path)`` wrote and makes it the model the class-level calls use."""
        results = Results.load(path)
        cls._last = results
        return results
