"""jaxgluon.optim_facts: the one home of optimizer and schedule names, defaults and rules."""
import doctest

import pytest

from jaxgluon import optim_facts
from jaxgluon.optim_facts import LR_SCHEDULERS, OPTIMIZER_DEFAULTS
from jaxgluon.space import compile_space
from jaxgluon.space.optimizer import KNOWN_OPTIMIZERS, SGD
from jaxgluon.train.optim import OPTIMIZER_KINDS, SCHEDULES, TrialConfig, optimizer_config


def test_docstring_examples():
    assert doctest.testmod(optim_facts).failed == 0


def test_space_and_train_read_the_same_facts():
    assert OPTIMIZER_KINDS == tuple(KNOWN_OPTIMIZERS) == tuple(OPTIMIZER_DEFAULTS)
    assert SCHEDULES == LR_SCHEDULERS
    for name, defaults in OPTIMIZER_DEFAULTS.items():
        assert KNOWN_OPTIMIZERS[name].defaults == defaults
        sampled = compile_space(KNOWN_OPTIMIZERS[name]()).default()
        assert optimizer_config(name) == sampled == {"name": name, **defaults}
    assert TrialConfig.from_dict({}).lr_scheduler == optim_facts.DEFAULT_LR_SCHEDULER


@pytest.mark.parametrize("key, value", [("momentum", 1.0), ("beta2", -0.1), ("eps", 0.0), ("wd", -1e-4)])
def test_one_rule_for_a_space_and_a_trial_config(key, value):
    name = "sgd" if key == "momentum" else "adam"
    with pytest.raises(ValueError, match=f"{key} must be"):
        optimizer_config({"name": name, key: value})
    with pytest.raises(ValueError, match=f"{key} must be"):
        KNOWN_OPTIMIZERS[name](**{key: value})
    assert SGD(momentum=0.5).params["momentum"] == 0.5
