"""Optimizer spaces, ``Optimizers`` and ``Nets``: defaults, name expansion, printing and validation."""
from __future__ import annotations

import jax
import pytest

import jaxgluon as ag
from jaxgluon.space import Nets, Optimizers, compile_space
from jaxgluon.space.optimizer import DEFAULTS, SGD, Adam, AdamW, default_space


def test_omitted_hyperparameters_take_the_fixed_defaults():
    sgd = SGD(learning_rate=ag.LogLinear(1e-4, 1e-1))
    config = compile_space(sgd).sample(jax.random.key(0))
    assert set(config) == {"name", "learning_rate", "momentum", "wd", "nesterov"}
    assert config["name"] == "sgd"
    assert (config["momentum"], config["wd"], config["nesterov"]) == (0.9, 1e-4, False)
    assert 1e-4 <= config["learning_rate"] <= 1e-1
    assert compile_space(Adam()).default() == {"name": "adam", **DEFAULTS["adam"]}
    assert compile_space(AdamW()).default()["wd"] == DEFAULTS["adamw"]["wd"]


def test_names_expand_to_default_spaces():
    opts = Optimizers(["sgd", "ADAM", AdamW(learning_rate=0.01)])
    assert [o.name for o in opts.choices] == ["sgd", "adam", "adamw"]
    assert opts.choices[0] == SGD.default_space() == default_space("sgd")
    assert opts.choices[1] == Adam.default_space()
    assert isinstance(SGD.default_space().params["learning_rate"], ag.Real)


def test_tutorial_spaces_print_as_trees():
    sgd = ag.optimizer.SGD(learning_rate=ag.LogLinear(1e-4, 1e-1), momentum=ag.Linear(0.85, 0.95),
                           wd=ag.LogLinear(1e-6, 1e-2))
    adam = ag.optimizer.Adam(learning_rate=ag.LogLinear(1e-4, 1e-1), wd=ag.LogLinear(1e-6, 1e-2))
    text = repr(ag.Optimizers([sgd, adam]))
    assert text.splitlines()[0] == "Optimizers("
    assert "        SGD(\n            learning_rate=Real(0.0001, 0.1, log=True),\n" in text
    assert "momentum=Real(0.85, 0.95)" in text and "nesterov=False" in text and "Adam(" in text
    nets = ag.Nets(["resnet18_v1", "resnet34_v1", "resnet50_v1"])
    assert str(nets) == "Nets(['resnet18_v1', 'resnet34_v1', 'resnet50_v1'])"
    assert repr(SGD(learning_rate=0.1)) == "SGD(learning_rate=0.1, momentum=0.9, wd=0.0001, nesterov=False)"


def test_nets_config_is_the_name_string():
    cs = compile_space(Nets(["resnet18_v1", "mobilenet_v2"]))
    assert set(cs.sample_batch(jax.random.key(0), 50)) == {"resnet18_v1", "mobilenet_v2"}
    assert cs.categorical_groups == ((0, 1),)


@pytest.mark.parametrize("make, pattern", [
    (lambda: Optimizers(["sgd", "rmsprop"]),
     r"unknown optimizer 'rmsprop'; choose one of \['adam', 'adamw', 'sgd'\]"),
    (lambda: default_space("lamb"), r"unknown optimizer 'lamb'"),
    (lambda: Optimizers("sgd"), r"must be a list of names or optimizer spaces, got 'sgd'"),
    (lambda: Optimizers([ag.Real(0, 1)]), r"optimizers\[0\]=Real\(0.0, 1.0\) is neither an optimizer name"),
    (lambda: Optimizers([]), r"Optimizers: needs at least one choice"),
    (lambda: Optimizers(["sgd", SGD(learning_rate=0.1)]), r"duplicated optimizer 'sgd'"),
    (lambda: SGD(lr=0.1), r"SGD: unknown hyperparameter\(s\) \['lr'\]; SGD takes \['learning_rate', 'momentum'"),
    (lambda: Adam(momentum=0.9), r"Adam: unknown hyperparameter\(s\) \['momentum'\]"),
    (lambda: SGD(learning_rate=-0.1), r"SGD: learning_rate must be > 0, got learning_rate=-0.1"),
    (lambda: SGD(learning_rate=ag.Real(0, 1)), r"learning_rate must be > 0, got learning_rate=Real\(0.0, 1.0\)"),
    (lambda: SGD(momentum=ag.Categorical(0.9, 1.5)), r"momentum must be in \[0, 1\)"),
    (lambda: AdamW(wd=-1e-4), r"wd must be >= 0"),
    (lambda: Nets("resnet18_v1"), r"Nets: names must be a list of network names"),
    (lambda: Nets([]), r"Nets: needs at least one choice"),
    (lambda: Nets(["resnet18_v1", "resnet18_v1"]), r"Nets: duplicated choice 'resnet18_v1'"),
    (lambda: Nets(["resnet18_v1", 3]), r"names\[1\]=3 is not a network name"),
])
def test_validation_errors(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
