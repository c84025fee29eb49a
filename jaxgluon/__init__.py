"""jaxgluon: automated image classification in JAX.

    import jaxgluon as ag
    from jaxgluon import ImageClassification as task

Names are resolved lazily, except ``tune``: importing the search-space language does not pull in the image stack.

``jaxgluon.tune`` (what users call as ``ag.tune``) is the plain function :func:`jaxgluon.tune.api.tune`, with its real
signature for ``help()`` and IDEs. The package of the same name is reached by importing it
(``from jaxgluon.tune import tune, ExperimentResult``; ``from jaxgluon.tune.sim import simulate``): Python binds a
package to its parent's attribute only when the package is first imported, which happens at the end of this file,
so later imports of its submodules leave the attribute the function.
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
    # images
    "ImageClassification": "jaxgluon.task",
}
_SUBMODULES = {"space", "searcher", "scheduler", "models", "data", "train", "task", "optimizer"}


def __getattr__(name: str) -> Any:
    if name == "optimizer":
        return importlib.import_module("jaxgluon.space.optimizer")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"jaxgluon.{name}")
    raise AttributeError(f"module 'jaxgluon' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)


# Last, once __getattr__ exists (the tune package's imports reach jaxgluon's other subpackages): importing the
# package binds ``jaxgluon.tune`` to it, and this line rebinds the name to the function for good.
from jaxgluon.tune.api import tune  # noqa: E402

# ``import jaxgluon.tune.lineage as lineage`` reads the attribute ``jaxgluon.tune`` (now the function) and, finding no
# ``lineage`` on it, falls back to ``sys.modules[f"{tune.__name__}.lineage"]``: with the package's full name there,
# that is the submodule, so ``import jaxgluon.tune.<sub> as x`` keeps working (help() titles it jaxgluon.tune(...)).
tune.__name__ = "jaxgluon.tune"

