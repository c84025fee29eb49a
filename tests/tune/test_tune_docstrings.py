"""The usage examples in the tune package's reliability modules run and give what they show."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["jaxgluon.tune.executor", "jaxgluon.tune.lock", "jaxgluon.tune.liveness", "jaxgluon.tune.ray_connect",
           "jaxgluon.tune.lifecycle", "jaxgluon.tune.records", "jaxgluon.tune.sim.executor",
           "jaxgluon.tune.sim.simulator", "jaxgluon.scheduler.base"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
