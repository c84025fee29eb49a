"""The usage examples in the space package's docstrings run and give what they show."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["jaxgluon.space.domains", "jaxgluon.space.optimizer", "jaxgluon.space.nets", "jaxgluon.space.compiled"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
