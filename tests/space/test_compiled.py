"""compile_space: the encoding layout, encode/decode, grid, default, size, reproducibility and error paths."""
from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

import jaxgluon as ag
from jaxgluon.space import INACTIVE_VALUE, CompiledSpace, compile_space


@pytest.fixture(scope="module")
def tutorial_space():
    sgd = ag.optimizer.SGD(learning_rate=ag.LogLinear(1e-4, 1e-1), momentum=ag.Linear(0.85, 0.95),
                           wd=ag.LogLinear(1e-6, 1e-2))
    adam = ag.optimizer.Adam(learning_rate=ag.LogLinear(1e-4, 1e-1), wd=ag.LogLinear(1e-6, 1e-2))
    return {
        "net": ag.Nets(["resnet18_v1", "resnet34_v1", "resnet50_v1"]),
        "optimizer": ag.Optimizers([sgd, adam]),
        "lr_scheduler": ag.List("poly", "cosine"),
        "batch_size": ag.Int(16, 64, log=True),
        "epochs": 3,
    }


@pytest.fixture(scope="module")
def cs(tutorial_space):
    return compile_space(tutorial_space)


def test_layout_of_the_tutorial_space(cs):
    assert cs.dim == 3 + 2 + 3 + 2 + 2 + 1
    assert cs.categorical_groups == ((0, 1, 2), (3, 4), (10, 11))
    assert cs.int_dims == (12,)
    assert cs.dim_names[:6] == ("net=resnet18_v1", "net=resnet34_v1", "net=resnet50_v1", "optimizer=sgd",
                                "optimizer=adam", "optimizer[sgd].learning_rate")
    assert cs.dim_names[8:10] == ("optimizer[adam].learning_rate", "optimizer[adam].wd")
    assert cs.bounds.shape == (cs.dim, 2) and (cs.bounds == [0.0, 1.0]).all()
    assert cs.size is None
    assert compile_space(cs) is cs
    assert "CompiledSpace(dim=13" in repr(cs)


def test_compiled_space_is_immutable(cs):
    with pytest.raises(AttributeError):
        cs.dim = 3
    with pytest.raises(ValueError):
        cs.bounds[0, 0] = 0.5


def test_encoding_of_a_known_config(cs):
    config = {"net": "resnet34_v1",
              "optimizer": {"name": "adam", "learning_rate": 1e-3, "wd": 1e-4, "beta1": 0.9, "beta2": 0.999,
                            "eps": 1e-8},
              "lr_scheduler": "cosine", "batch_size": 16, "epochs": 3}
    x = cs.encode(config)
    assert x.dtype == np.float64 and x.shape == (cs.dim,)
    np.testing.assert_array_equal(x[0:5], [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(x[5:8], [INACTIVE_VALUE] * 3)   # sgd's dims are inactive
    np.testing.assert_allclose(x[8], 1 / 3)                      # log10(1e-3) is 1/3 of the way from -4 to -1
    np.testing.assert_allclose(x[9], 0.5)
    np.testing.assert_array_equal(x[10:12], [0, 1])
    np.testing.assert_allclose(x[12], (math.log(16) - math.log(15.5)) / (math.log(64.5) - math.log(15.5)))
    assert cs.decode(x) == config
    assert cs.contains(config)


def test_int_encoding_maps_cells_to_integers():
    cs = compile_space(ag.Int(0, 3))
    np.testing.assert_allclose(cs.encode_batch([0, 1, 2, 3])[:, 0], [0.125, 0.375, 0.625, 0.875])
    assert cs.decode_batch(np.array([[0.0], [0.2499], [0.25], [0.999], [1.0], [1.7], [-3.0]])) == [0, 0, 1, 3, 3, 3, 0]


def test_decode_takes_the_argmax_and_clips(cs):
    x = np.full(cs.dim, 0.3)
    x[2] = 0.9        # net
    x[3] = 0.7        # sgd
    x[5:8] = [2.0, -1.0, 0.5]
    config = cs.decode(x)
    assert config["net"] == "resnet50_v1"
    assert config["optimizer"]["learning_rate"] == 0.1 and config["optimizer"]["momentum"] == 0.85
    assert set(config["optimizer"]) == {"name", "learning_rate", "momentum", "wd", "nesterov"}


def test_equal_configs_encode_equally_whatever_the_inactive_dims(cs):
    x = np.asarray(cs.sample_encoded(jax.random.key(3), 64), dtype=np.float64)
    configs = cs.decode_batch(x)
    noisy = x.copy()
    inactive = x == INACTIVE_VALUE
    noisy[inactive] = np.random.default_rng(0).uniform(size=inactive.sum())
    assert inactive.any() and cs.decode_batch(noisy) == configs
    encoded = cs.encode_batch(configs)
    assert (encoded[inactive] == INACTIVE_VALUE).all()
    np.testing.assert_array_equal(cs.encode_batch(cs.decode_batch(encoded)), encoded)


def test_sample_encoded_is_the_cube_sample_batch_decodes(cs):
    key = jax.random.key(11)
    x = cs.sample_encoded(key, 500)
    assert isinstance(x, jax.Array) and x.shape == (500, cs.dim)
    xa = np.asarray(x)
    assert xa.min() >= 0.0 and xa.max() <= 1.0
    for group in cs.categorical_groups:
        np.testing.assert_array_equal(xa[:, group].sum(axis=1), 1.0)
    assert cs.decode_batch(x) == cs.sample_batch(key, 500)


def test_reproducibility(cs):
    key = jax.random.key(42)
    first = cs.sample_batch(key, 200)
    assert cs.sample_batch(key, 200) == first
    assert cs.sample(key) == cs.sample(key) == cs.sample_batch(key, 1)[0]
    assert cs.sample_batch(jax.random.key(43), 200) != first
    assert len({json.dumps(c, sort_keys=True) for c in first}) > 150     # draws within a batch differ too
    assert cs.sample_batch(7, 5) == cs.sample_batch(jax.random.key(7), 5)  # an int seed is a key
    assert cs.sample_batch(jax.random.PRNGKey(7), 5) == cs.sample_batch(jax.random.key(7), 5)
    assert cs.sample_batch(key, 0) == [] and cs.sample_encoded(key, 0).shape == (0, cs.dim)


def test_configs_are_plain_json_types(cs):
    configs = cs.sample_batch(jax.random.key(5), 100) + [cs.default()] + cs.grid(2)

    def check(value):
        if isinstance(value, dict):
            for v in value.values():
                check(v)
        else:
            assert type(value) in (str, int, float, bool), (value, type(value))

    for c in configs:
        check(c)
        assert cs.encode(json.loads(json.dumps(c))).tolist() == cs.encode(c).tolist()


def test_default(cs):
    d = cs.default()
    assert d["net"] == "resnet18_v1" and d["optimizer"]["name"] == "sgd" and d["lr_scheduler"] == "poly"
    assert d["optimizer"]["momentum"] == 0.9
    assert math.isclose(d["optimizer"]["learning_rate"], math.sqrt(1e-4 * 1e-1), rel_tol=1e-9)
    assert d["batch_size"] == round(math.sqrt(15.5 * 64.5)) and d["epochs"] == 3
    assert compile_space(ag.Real(0, 1, default=0.25)).default() == 0.25
    assert compile_space(ag.Int(1, 9, default=2)).default() == 2
    assert cs.decode(cs.encode(d)) == d


def test_grid_of_a_conditional_space():
    space = {"opt": ag.Categorical("sgd", {"lr": ag.LogLinear(1e-3, 1e-1)}), "bs": ag.Int(1, 3), "f": ag.Bool()}
    cs = compile_space(space)
    grid = cs.grid(3)
    assert grid == cs.grid(3)
    lrs = [g["opt"]["lr"] for g in grid if isinstance(g["opt"], dict)]
    assert sorted(set(lrs)) == pytest.approx([1e-3, 1e-2, 1e-1])
    assert len(grid) == (1 + 3) * 3 * 2
    assert len({json.dumps(g, sort_keys=True) for g in grid}) == len(grid)
    assert all(cs.decode(cs.encode(g)) == g for g in grid)
    assert cs.size is None
    assert compile_space(ag.Real(0, 1)).grid(1) == [0.5]
    assert compile_space(ag.Real(0, 1)).grid(5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_size_and_full_grid_of_finite_spaces():
    space = {"a": ag.Int(1, 4), "b": ag.Categorical("x", {"y": ag.Int(0, 2), "z": ag.Bool()}), "c": [ag.Bool(), 1]}
    cs = compile_space(space)
    assert cs.size == 4 * (1 + 3 * 2) * 2
    grid = cs.grid(10)
    assert len(grid) == cs.size == len({json.dumps(g, sort_keys=True) for g in grid})
    assert compile_space(ag.Int(1, 100)).grid(4) == [1, 34, 67, 100]
    assert compile_space(ag.Int(1, 1000, log=True)).grid(4) == [1, 10, 100, 1000]
    assert compile_space({"k": 3}).size == 1 and compile_space({"k": 3}).grid(2) == [{"k": 3}]
    assert compile_space(ag.Categorical("a", ag.Real(0, 1))).size is None


def test_constant_and_bare_domain_spaces():
    cs = compile_space({"epochs": 3, "nested": {"x": [1, "a"]}})
    assert cs.dim == 0 and cs.sample(jax.random.key(0)) == {"epochs": 3, "nested": {"x": [1, "a"]}}
    assert cs.encode(cs.default()).shape == (0,)
    real = compile_space(ag.Real(-2, 2))
    assert isinstance(real.sample(jax.random.key(0)), float) and real.dim_names == ("value",)


@pytest.mark.parametrize("config, pattern", [
    ({"lr": 0.5, "c": "a"}, r"config\['lr'\]: expected a real number in \[0.001, 0.1\], got 0.5"),
    ({"lr": "0.01", "c": "a"}, r"expected a real number"),
    ({"lr": 0.01}, r"missing \['c'\]"),
    ({"lr": 0.01, "c": "a", "x": 1}, r"unexpected \['x'\]; inactive keys must be left out"),
    ({"lr": 0.01, "c": "z"}, r"config\['c'\]: 'z' matches none of the choices \['a', 'b', '2'\]"),
    ({"lr": 0.01, "c": {"n": 9}}, r"matches none of the choices"),
    ({"lr": 0.01, "c": {"n": 1.5}}, r"matches none"),
    ([0.01, "a"], r"config: expected a dict with keys \['lr', 'c'\]"),
])
def test_encode_rejects_configs_outside_the_space(config, pattern):
    cs = compile_space({"lr": ag.LogLinear(1e-3, 1e-1), "c": ag.Categorical("a", "b", {"n": ag.Int(0, 3)})})
    with pytest.raises(ValueError, match=pattern):
        cs.encode(config)
    assert not cs.contains(config)


def test_encode_accepts_equivalent_numbers():
    cs = compile_space({"n": ag.Int(0, 3), "x": ag.Real(0, 1), "c": ag.Categorical(1, 1.0, True)})
    assert cs.encode({"n": 2.0, "x": 1, "c": 1.0})[3] == 1.0       # 1.0 picks the float choice, not int 1
    assert cs.decode(cs.encode({"n": 2.0, "x": 1, "c": True})) == {"n": 2, "x": 1.0, "c": True}


@pytest.mark.parametrize("call, pattern", [
    (lambda cs: cs.grid(0), r"points_per_dim must be a positive integer, got 0"),
    (lambda cs: cs.grid(2.5), r"points_per_dim must be a positive integer"),
    (lambda cs: cs.sample_batch(jax.random.key(0), -1), r"n must be a non-negative integer, got n=-1"),
    (lambda cs: cs.sample_encoded(jax.random.key(0), 2.0), r"n must be a non-negative integer"),
    (lambda cs: cs.decode(np.zeros(3)), r"decode: expected a vector of shape \[2\], got shape \(3,\)"),
    (lambda cs: cs.decode_batch(np.zeros(2)), r"expected an array of shape \[n, 2\]"),
    (lambda cs: cs.decode(np.array([np.nan, 0.5])), r"NaN or infinite"),
])
def test_argument_errors(call, pattern):
    cs = compile_space({"a": ag.Real(0, 1), "b": ag.Int(0, 1)})
    with pytest.raises(ValueError, match=pattern):
        call(cs)


def test_non_json_constants_are_rejected():
    with pytest.raises(ValueError, match=r"space\['f'\]: .* is neither a space nor a JSON constant"):
        compile_space({"f": object()})
    with pytest.raises(ValueError, match="dict keys must be strings"):
        compile_space({3: ag.Real(0, 1)})
    assert compile_space({"x": np.float32(0.5)}).default() == {"x": 0.5}


def test_compiled_space_is_a_compiled_space(cs):
    assert isinstance(cs, CompiledSpace)
