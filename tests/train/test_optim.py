"""Schedules against their formulas under jit; optimizer configs, defaults, errors and the weight-decay mask."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgluon.train.optim import SCHEDULES, TrialConfig, make_optimizer, make_schedule, optimizer_config

SPE, EPOCHS, LR = 7, 8, 0.3
TOTAL = SPE * EPOCHS


def expected_lr(name: str, t: np.ndarray, warmup: int, power: float = 0.9, step_epochs=None, factor=0.1):
    T = TOTAL - warmup
    s = np.clip(t - warmup, 0, None).astype(np.float64)
    if name == "constant":
        main = np.full_like(s, LR)
    elif name == "cosine":
        main = LR * 0.5 * (1 + np.cos(np.pi * np.minimum(s, T) / T))
    elif name == "poly":
        main = LR * (1 - np.minimum(s, T) / T) ** power
    else:
        epochs = step_epochs if step_epochs is not None else (0.5 * EPOCHS, 0.75 * EPOCHS)
        n_passed = sum((t >= round(e * SPE)).astype(int) for e in epochs)   # absolute epochs
        main = LR * factor ** n_passed
    return np.where(t < warmup, LR * t / max(warmup, 1), main)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("warmup_epochs", [0.0, 1.5])
def test_schedule_matches_formula_under_jit(name, warmup_epochs):
    schedule = make_schedule(name, LR, SPE, EPOCHS, warmup_epochs=warmup_epochs)
    t = np.arange(TOTAL + 3)
    got = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(t)))
    want = expected_lr(name, t, int(round(warmup_epochs * SPE)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_schedule_options():
    t = np.arange(TOTAL)
    poly = make_schedule("poly", LR, SPE, EPOCHS, poly_power=2.0)
    np.testing.assert_allclose(jax.jit(jax.vmap(poly))(t), expected_lr("poly", t, 0, power=2.0), rtol=1e-5, atol=1e-7)
    step = make_schedule("step", LR, SPE, EPOCHS, step_epochs=[2, 5], step_factor=0.5, warmup_epochs=1)
    want = expected_lr("step", t, SPE, step_epochs=[2, 5], factor=0.5)
    np.testing.assert_allclose(jax.jit(jax.vmap(step))(t), want, rtol=1e-5, atol=1e-7)
    # a decay inside the warmup applies from the end of the warmup; repeated epochs decay twice
    step = make_schedule("step", LR, SPE, EPOCHS, step_epochs=[0.5, 3, 3], step_factor=0.5, warmup_epochs=1)
    want = expected_lr("step", t, SPE, step_epochs=[0.5, 3, 3], factor=0.5)
    np.testing.assert_allclose(jax.jit(jax.vmap(step))(t), want, rtol=1e-5, atol=1e-7)


def test_unknown_names_give_clear_errors():
    with pytest.raises(ValueError, match=r"unknown optimizer 'rmsprop'.*adam"):
        optimizer_config({"name": "rmsprop", "learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"unknown keys \['lr'\].*learning_rate"):
        optimizer_config({"name": "sgd", "lr": 0.1})
    with pytest.raises(ValueError, match="'name' key"):
        optimizer_config({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        optimizer_config({"name": "adam", "learning_rate": 0.0})
    with pytest.raises(ValueError, match="unknown lr_scheduler 'linear'"):
        make_schedule("linear", 0.1, 10, 2)
    with pytest.raises(ValueError, match=r"unknown trial-config keys \['optimiser'\]"):
        TrialConfig.from_dict({"optimiser": "sgd"})
    with pytest.raises(ValueError, match="label_smoothing"):
        TrialConfig.from_dict({"label_smoothing": 1.5})


def test_trial_defaults_and_bare_names():
    trial = TrialConfig.from_dict({"optimizer": "adamw", "net": "cifar_resnet20_v1"})
    assert trial.optimizer == {"name": "adamw", "learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999,
                               "eps": 1e-8, "wd": 1e-4}
    assert (trial.lr_scheduler, trial.warmup_epochs, trial.label_smoothing, trial.batch_size) == ("cosine", 0, 0, None)
    assert TrialConfig.from_dict({}).optimizer["name"] == "sgd"


def _params():
    return {"conv": {"kernel": jnp.ones((3, 3, 2, 4))}, "bn": {"scale": jnp.ones((4,)), "bias": jnp.ones((4,))}}


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_skips_vectors(name):
    """With zero gradients only weight decay moves parameters: kernels shrink, BN scale/bias stay."""
    tx = make_optimizer({"optimizer": {"name": name, "learning_rate": 0.1, "wd": 0.5}, "lr_scheduler": "constant"},
                        steps_per_epoch=1, epochs=1)
    params = _params()
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    assert float(new["conv"]["kernel"][0, 0, 0, 0]) < 1.0
    np.testing.assert_array_equal(new["bn"]["scale"], 1.0)
    np.testing.assert_array_equal(new["bn"]["bias"], 1.0)


def test_sgd_matches_optax_reference():
    """SGD + momentum + nesterov + coupled L2 equals the hand-chained optax reference on a toy problem."""
    cfg = {"name": "sgd", "learning_rate": 0.05, "momentum": 0.8, "nesterov": True, "wd": 0.01}
    tx = make_optimizer(cfg, steps_per_epoch=5, epochs=1)
    ref = optax.chain(optax.add_decayed_weights(0.01), optax.sgd(0.05, momentum=0.8, nesterov=True))
    w = {"kernel": jnp.arange(6.0).reshape(2, 3)}
    loss = lambda p: jnp.sum(jnp.sin(p["kernel"]))
    a, b = w, w
    sa, sb = tx.init(w), ref.init(w)
    for _ in range(5):
        ua, sa = tx.update(jax.grad(loss)(a), sa, a)
        ub, sb = ref.update(jax.grad(loss)(b), sb, b)
        a, b = optax.apply_updates(a, ua), optax.apply_updates(b, ub)
    np.testing.assert_allclose(a["kernel"], b["kernel"], rtol=1e-6)


def test_bare_optimizer_config_uses_constant_rate():
    tx = make_optimizer({"name": "sgd", "learning_rate": 0.5, "momentum": 0.0, "wd": 0.0}, 3, 2)
    p = {"w": jnp.ones((2, 2))}
    for _ in range(6):   # the whole run: a decaying schedule would shrink the step
        u, _ = tx.update({"w": jnp.ones((2, 2))}, tx.init(p), p)
        np.testing.assert_allclose(u["w"], -0.5)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_trials_share_one_program_whatever_their_optimizer_and_schedule(name):
    """Every number, the optimizer kind and the schedule are optimizer state: one program serves every trial."""
    params = {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)}
    grads = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), params)

    def lowered(optimizer, schedule="cosine"):
        tx = make_optimizer({"optimizer": optimizer, "lr_scheduler": schedule}, steps_per_epoch=7, epochs=3)
        return jax.jit(lambda p, s, g: tx.update(g, s, p)).lower(params, tx.init(params), grads).as_text()

    a = {"name": name, "learning_rate": 0.1, "wd": 1e-4}
    b = {"name": name, "learning_rate": 0.003, "wd": 0.02, **({"momentum": 0.5} if name == "sgd" else {"beta1": 0.8})}
    assert lowered(a) == lowered(b)
    assert lowered(a) == lowered({**a, "name": "adam" if name == "sgd" else "sgd"})
    assert lowered(a) == lowered(b, "poly") == lowered(a, "step")


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("warmup_epochs", [0.0, 1.5])
def test_in_program_schedule_equals_make_schedule(name, warmup_epochs):
    """schedule_shape (the schedule chosen by arrays inside the step) gives make_schedule's values."""
    from jaxgluon.train.optim import schedule_shape, trial_hyperparams
    kw = {"lr_step_epochs": [0.5, 3, 3], "lr_step_factor": 0.5} if name == "step" else {"lr_poly_power": 2.0}
    trial = TrialConfig.from_dict({"lr_scheduler": name, "warmup_epochs": warmup_epochs, **kw})
    h = trial_hyperparams(trial, SPE, EPOCHS)
    t = np.arange(TOTAL + 3)
    got = np.asarray(jax.jit(jax.vmap(lambda c: schedule_shape(h, c)))(jnp.asarray(t)))
    ref = make_schedule(name, 1.0, SPE, EPOCHS, warmup_epochs=warmup_epochs, poly_power=2.0,
                        step_epochs=kw.get("lr_step_epochs"), step_factor=0.5)
    np.testing.assert_allclose(got, np.asarray(jax.vmap(ref)(jnp.asarray(t))), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_matches_optax_reference(name):
    """Adam (coupled L2) / AdamW (decoupled) under the cosine schedule equal optax's own chains."""
    cfg = {"name": name, "learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "wd": 0.01}
    tx = make_optimizer({"optimizer": cfg, "lr_scheduler": "cosine"}, steps_per_epoch=3, epochs=2)
    sched = optax.cosine_decay_schedule(0.05, 6)
    adam = optax.scale_by_adam(b1=0.8, b2=0.99, eps=1e-6)
    decay = optax.add_decayed_weights(0.01, mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p))
    ref = optax.chain(*([adam, decay] if name == "adamw" else [decay, adam]), optax.scale_by_learning_rate(sched))
    w = {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}
    loss = lambda p: jnp.sum(jnp.sin(p["kernel"])) + jnp.sum(p["bias"] ** 2)
    a, b = w, w
    sa, sb = tx.init(w), ref.init(w)
    for _ in range(6):
        ua, sa = jax.jit(tx.update)(jax.grad(loss)(a), sa, a)
        ub, sb = ref.update(jax.grad(loss)(b), sb, b)
        a, b = optax.apply_updates(a, ua), optax.apply_updates(b, ub)
    for k in w:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
