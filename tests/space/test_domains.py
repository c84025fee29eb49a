"""Constructors of the space language: aliases, immutability, readable printing and every validation error."""
from __future__ import annotations

import copy
import math
import pickle

import jax
import numpy as np
import pytest

import jaxgluon as ag
from jaxgluon.space import Bool, Categorical, Choice, Int, Linear, List, LogLinear, Real
from jaxgluon.space.domains import format_space


def test_aliases_build_equal_domains():
    assert LogLinear(1e-4, 1e-1) == Real(1e-4, 1e-1, log=True)
    assert Linear(0.85, 0.95) == Real(0.85, 0.95)
    assert List("poly", "cosine") == Categorical("poly", "cosine") == Choice("poly", "cosine")
    assert Real(0.0, 1.0) != Real(0.0, 1.0, log=False, default=0.3)
    assert Bool().choices == (False, True)
    assert hash(LogLinear(1e-4, 1e-1)) == hash(Real(1e-4, 1e-1, log=True))


def test_top_level_exports_are_the_space_language():
    assert ag.Real is Real and ag.Int is Int and ag.Categorical is Categorical
    assert ag.List is List and ag.Choice is Choice and ag.Bool is Bool
    assert ag.LogLinear is LogLinear and ag.Linear is Linear
    assert ag.optimizer.SGD is ag.space.optimizer.SGD
    assert ag.compile_space is ag.space.compile_space


def test_bounds_are_normalised():
    r = Real(1, 2)
    assert isinstance(r.lower, float) and r.upper == 2.0
    i = Int(np.int64(2), 10.0)
    assert (i.lower, i.upper) == (2, 10) and isinstance(i.upper, int)


def test_domains_are_immutable():
    r = Real(0, 1)
    with pytest.raises(AttributeError, match="immutable"):
        r.lower = 0.5
    with pytest.raises(AttributeError, match="immutable"):
        Categorical("a", "b").choices = ("c",)


def test_repr_is_readable_and_mirrors_the_constructor():
    assert repr(Real(1e-4, 1e-1, log=True)) == "Real(0.0001, 0.1, log=True)"
    assert repr(Int(16, 256, default=32)) == "Int(16, 256, default=32)"
    assert repr(Categorical("poly", "cosine")) == "Categorical('poly', 'cosine')"
    assert repr(Bool()) == "Bool()"
    nested = format_space({"lr": LogLinear(1e-5, 1e-1), "sched": List("poly", "cosine"), "momentum": Linear(0.8, 0.99),
                   "bs": Int(8, 512, log=True), "epochs": 3})
    assert nested.startswith("{\n    'lr': Real(1e-05, 0.1, log=True),\n")  # long trees break into lines
    assert "'epochs': 3," in nested


def test_categorical_choices_may_be_spaces_and_mixed_types():
    c = Categorical(1, 1.0, True, "1", None, {"a": Real(0, 1)}, [Int(0, 3)])
    assert len(c.choices) == 7                     # 1, 1.0 and True are different JSON values
    # disjoint choices are fine: configs of Real are floats, so the int 3 cannot come from Real(0, 5)
    assert len(Categorical(3, Real(0, 5), Int(6, 9), {"a": 1}, {"a": 1, "b": Int(0, 1)}).choices) == 5
    assert Categorical((1, 2), 3).choices == ([1, 2], 3)  # tuples become lists


@pytest.mark.parametrize("make, pattern", [
    (lambda: Real(1.0, 1.0), r"lower=1.0 must be smaller than upper=1.0"),
    (lambda: Real(2, 1), r"lower=2.0 must be smaller than upper=1.0"),
    (lambda: Int(5, 5), r"Int: lower=5 must be smaller than upper=5"),
    (lambda: Int(7, 3), r"lower=7 must be smaller than upper=3"),
    (lambda: Real(0, 1, log=True), r"log=True needs lower > 0, got lower=0.0"),
    (lambda: Real(-1, 1, log=True), r"log=True needs lower > 0, got lower=-1.0"),
    (lambda: LogLinear(0, 1), r"log=True needs lower > 0"),
    (lambda: Int(0, 10, log=True), r"Int: log=True needs lower > 0, got lower=0"),
    (lambda: Int(1.5, 3), r"Int: lower must be integral, got lower=1.5"),
    (lambda: Int(1, 3.2), r"Int: upper must be integral, got upper=3.2"),
    (lambda: Int(1, math.inf), r"upper must be integral"),
    (lambda: Int(True, 3), r"lower must be an integer, got True"),
    (lambda: Real("0", 1), r"Real: lower must be a real number, got '0'"),
    (lambda: Real(0, math.nan), r"upper must be finite"),
    (lambda: Real(0, 1, default=2), r"default=2.0 lies outside \[lower, upper\]"),
    (lambda: Int(0, 4, default=5), r"default=5 lies outside"),
    (lambda: Categorical(), r"Categorical: needs at least one choice"),
    (lambda: List(), r"needs at least one choice"),
    (lambda: Categorical(["a", "b"]), r"got one choice, the list \['a', 'b'\]; the choices are positional arguments"),
    (lambda: Categorical("a", "b", "a"), r"duplicated choice 'a' \(positions 0 and 2\)"),
    (lambda: Choice(Real(0, 1), Real(0, 1)), r"duplicated choice Real\(0.0, 1.0\)"),
    (lambda: Categorical({"a": 1, "b": 2}, {"b": 2, "a": 1}), r"duplicated choice"),
    (lambda: Categorical(None, Categorical(None, 1)), r"choices 0 \(None\) and 1 \(Categorical\(None, 1\)\) overlap"),
    (lambda: Categorical(Real(0, 1), Real(0.5, 2)), r"choices 0 .* and 1 .* overlap: some config could come from"),
    (lambda: Categorical(0.5, Linear(0, 1)), r"overlap"),
    (lambda: Categorical(3, Int(0, 5)), r"overlap"),
    (lambda: Categorical({"a": 1}, {"a": Int(0, 3)}), r"overlap"),
    (lambda: Categorical(True, Bool()), r"overlap"),
    (lambda: Categorical(object()), r"choice 0: .* is neither a space nor a JSON constant"),
    (lambda: Categorical(math.inf), r"not JSON-serialisable"),
    (lambda: Categorical({1: "a"}), r"dict keys must be strings"),
])
def test_validation_errors_name_the_argument_and_value(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_spaces_pickle_and_copy():
    space = {"opt": ag.Optimizers(["sgd", "adam"]), "net": ag.Nets(["resnet18_v1"]), "b": Bool(), "i": Int(1, 4)}
    for clone in (pickle.loads(pickle.dumps(space)), copy.deepcopy(space)):
        assert clone == space and type(clone["b"]) is Bool and clone["opt"].choices[0].params == \
            space["opt"].choices[0].params
    cs = ag.compile_space(space)
    restored = pickle.loads(pickle.dumps(cs))
    assert restored.sample_batch(jax.random.key(0), 20) == cs.sample_batch(jax.random.key(0), 20)
