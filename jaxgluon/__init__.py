"""jaxgluon: automated image classification in JAX.

    import jaxgluon as ag
    from jaxgluon import ImageClassification as task

Names are resolved lazily, so ``import jaxgluon`` stays cheap and importing the search-space language does not
pull in the image stack.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # search-space language
    "Real": "jaxgluon.space",
    "Int": "jaxgluon.space",
    "Categorical": "jaxgluon.space",
    "List": "jaxgluon.space",
    "Choice": "jaxgluon.space",
    "Bool": "jaxgluon.space",
    "LogLinear": "jaxgluon.space",
    "Linear": "jaxgluon.space",
    "Nets": "jaxgluon.space",
    "Optimizers": "jaxgluon.space",
    "compile_space": "jaxgluon.space",
    # HPO
    "get_searcher": "jaxgluon.searcher",
    "get_scheduler": "jaxgluon.scheduler",
    "tune": "jaxgluon.tune",
    # images
    "ImageClassification": "jaxgluon.task",
}
_SUBMODULES = {"space", "searcher", "scheduler", "tune", "models", "data", "train", "task", "optimizer"}


def __getattr__(name: str) -> Any:
    if name == "optimizer":
        return importlib.import_module("jaxgluon.space.optimizer")
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        if name == "tune":
            return module.tune
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f"jaxgluon.{name}")
    raise AttributeError(f"module 'jaxgluon' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
