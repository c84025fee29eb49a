"""Tiny real-file image folders, fast fit settings and what a fit hands its search, for the task tests."""
from __future__ import annotations

import importlib
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxgluon import ImageClassification as task
from jaxgluon.space.optimizer import Adam

def write_folder(root: pathlib.Path, per_class: int, seed: int, classes=("dark", "light")) -> pathlib.Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = 50 if label == 0 else 200
            img = np.clip(base + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{name}_{i}.png")
    return root


#: Small and fast: a CIFAR ResNet-20 on 16 px images, random init, one optimizer, no refit (these folders hold out
#: a quarter of their images, so ``refit='auto'`` would refit: tests of the refit ask for it).
FAST = dict(net="cifar_resnet20_v1", optimizer=Adam(learning_rate=3e-3), image_size=16, batch_size=8,
            pretrained=False, verbose=False, refit=False)


def search_arguments(monkeypatch, dataset, **kwargs) -> dict:
    """The keyword arguments ``task.fit(dataset, time_limits=60, ensemble=False, **FAST, **kwargs)`` hands its
    search (``jaxgluon.tune.tune``, not run: the fit stops there)."""
    fit_module = importlib.import_module("jaxgluon.task.fit")   # the package's ``fit`` attribute is the function

    class Searched(Exception):
        pass

    asked = {}

    def no_search(*args, **kw):
        asked.update(kw)
        raise Searched

    monkeypatch.setattr(fit_module, "tune", no_search)
    with pytest.raises(Searched):
        task.fit(dataset, time_limits=60, **{**FAST, "ensemble": False, **kwargs})
    return asked
