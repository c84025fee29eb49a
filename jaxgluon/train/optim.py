"""Optax optimizers and learning-rate schedules from a sampled trial config.

A trial config is the plain dict a searcher samples, e.g.::

    {'net': 'resnet18_v1',
     'optimizer': {'name': 'sgd', 'learning_rate': 0.01, 'momentum': 0.9, 'wd': 1e-4, 'nesterov': False},
     'lr_scheduler': 'cosine', 'warmup_epochs': 1, 'label_smoothing': 0.1}

Optimizer configs (``'optimizer'``; a bare name such as ``'adam'`` takes that optimizer's defaults; the names,
defaults and rules live in ``jaxgluon.optim_facts``, shared with the search spaces):

- ``sgd``: ``learning_rate`` (0.01), ``momentum`` (0.9), ``nesterov`` (False), ``wd`` (1e-4). Weight decay is the
  classic coupled L2 term (``grad += wd * param`` before momentum, as in ``torch.optim.SGD``).
- ``adam``: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``eps`` (1e-8), ``wd`` (0.0), coupled L2
  as in ``torch.optim.Adam``.
- ``adamw``: same keys, ``wd`` defaults to 1e-4 and is decoupled (``optax.adamw``).

Weight decay is applied to parameters with two or more dimensions only (conv and dense kernels): BatchNorm
scales/offsets and biases are never decayed, the usual practice for image classifiers.

Schedules (``'lr_scheduler'``; step counts are optimizer steps, epochs are converted with ``steps_per_epoch``):
``'constant'``; ``'cosine'`` (to 0); ``'poly'`` (``lr * (1 - t/T) ** power``, ``lr_poly_power`` default 0.9);
``'step'`` (multiply by ``lr_step_factor`` (0.1) at each epoch of ``lr_step_epochs``, default 50% and 75% of the
epochs). With ``warmup_epochs > 0`` the rate first rises linearly from 0 over the warmup steps (``lr * t / W``) and
the main schedule then runs over the remaining ``T - W`` steps (step boundaries stay at their absolute epochs).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgluon.optim_facts import (DEFAULT_LR_SCHEDULER, LR_SCHEDULERS, MAX_STEP_BOUNDARIES, OPTIMIZER_DEFAULTS,
                                  OPTIMIZER_NAMES, check_hyperparameter, check_lr_scheduler, check_optimizer_name)

SCHEDULES = LR_SCHEDULERS  # the schedule names (jaxgluon.optim_facts), under train's historical name

#: Defaults of the trial-config keys (``batch_size`` defaults to the TrialSpec's).
TRIAL_DEFAULTS: dict[str, Any] = {
    "net": "resnet18_v1",
    "optimizer": "sgd",
    "lr_scheduler": DEFAULT_LR_SCHEDULER,
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "batch_size": None,
    "lr_poly_power": 0.9,
    "lr_step_epochs": None,
    "lr_step_factor": 0.1,
}


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """A validated trial config with every default filled in (see module docstring)."""

    net: str
    optimizer: Mapping[str, Any]
    lr_scheduler: str
    warmup_epochs: float
    label_smoothing: float
    batch_size: int | None
    lr_poly_power: float
    lr_step_epochs: tuple[float, ...] | None
    lr_step_factor: float

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "TrialConfig":
        """Validates ``config``; unknown keys and bad values raise ``ValueError``.

        >>> TrialConfig.from_dict({'optimizer': 'adam'}).optimizer['learning_rate']
        0.001
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"a trial config must be a dict, got {type(config).__name__}")
        unknown = set(config) - set(TRIAL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown trial-config keys {sorted(unknown)}; known keys: {sorted(TRIAL_DEFAULTS)}")
        merged = {**TRIAL_DEFAULTS, **config}
        check_lr_scheduler(merged["lr_scheduler"])
        if not 0.0 <= float(merged["label_smoothing"]) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {merged['label_smoothing']}")
        if float(merged["warmup_epochs"]) < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {merged['warmup_epochs']}")
        if merged["batch_size"] is not None and int(merged["batch_size"]) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {merged['batch_size']}")
        if not isinstance(merged["net"], str):
            raise ValueError(f"'net' must be a model name (str), got {merged['net']!r}")
        step_epochs = merged["lr_step_epochs"]
        if step_epochs is not None and len(step_epochs) > MAX_STEP_BOUNDARIES:
            raise ValueError(f"lr_step_epochs takes at most {MAX_STEP_BOUNDARIES} epochs, got {len(step_epochs)}")
        return cls(
            net=merged["net"],
            optimizer=optimizer_config(merged["optimizer"]),
            lr_scheduler=merged["lr_scheduler"],
            warmup_epochs=float(merged["warmup_epochs"]),
            label_smoothing=float(merged["label_smoothing"]),
            batch_size=None if merged["batch_size"] is None else int(merged["batch_size"]),
            lr_poly_power=float(merged["lr_poly_power"]),
            lr_step_epochs=None if step_epochs is None else tuple(float(e) for e in step_epochs),
            lr_step_factor=float(merged["lr_step_factor"]),
        )


def optimizer_config(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """Validates an optimizer config (or bare name) and fills in its defaults.

    >>> optimizer_config({'name': 'sgd', 'learning_rate': 0.1})['momentum']
    0.9
    """
    if isinstance(config, str):
        config = {"name": config}
    if not isinstance(config, Mapping) or "name" not in config:
        raise ValueError(f"an optimizer config is a name or a dict with a 'name' key, got {config!r}")
    name = check_optimizer_name(config["name"])
    defaults = OPTIMIZER_DEFAULTS[name]
    unknown = set(config) - set(defaults) - {"name"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} for optimizer {name!r}; it takes {sorted(defaults)}")
    out = {"name": name, **defaults, **{k: v for k, v in config.items() if k != "name"}}
    for key, value in out.items():
        check_hyperparameter(f"optimizer {name!r}", key, value)
    return out


def make_schedule(name: str, base_lr: float, steps_per_epoch: int, epochs: int, *, warmup_epochs: float = 0.0,
                  poly_power: float = 0.9, step_epochs: Sequence[float] | None = None,
                  step_factor: float = 0.1) -> optax.Schedule:
    """An optax schedule ``step -> learning rate`` over ``epochs * steps_per_epoch`` steps.

    >>> sched = make_schedule('cosine', 0.1, steps_per_epoch=10, epochs=5, warmup_epochs=1)
    >>> round(float(sched(5)), 6), round(float(sched(10)), 6)     # half-way through warmup; its end
    (0.05, 0.1)
    """
    check_lr_scheduler(name)   # a public entry of its own: trial configs go through TrialConfig instead
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"steps_per_epoch and epochs must be >= 1, got {steps_per_epoch} and {epochs}")
    total = steps_per_epoch * epochs
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
    decay_steps = total - warmup
    if name == "constant":
        main = optax.constant_schedule(base_lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(base_lr, decay_steps)
    elif name == "poly":
        main = _finite_poly(optax.polynomial_schedule(base_lr, 0.0, poly_power, decay_steps), decay_steps)
    else:
        epochs_at = step_epochs if step_epochs is not None else (0.5 * epochs, 0.75 * epochs)
        shifted = sorted(int(round(e * steps_per_epoch)) - warmup for e in epochs_at)
        passed = sum(1 for b in shifted if b <= 0)          # decays that fall inside the warmup
        later = {b: step_factor ** shifted.count(b) for b in shifted if b > 0}
        main = optax.piecewise_constant_schedule(base_lr * step_factor ** passed, later)
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), main], [warmup])


def _finite_poly(poly: optax.Schedule, decay_steps: int) -> optax.Schedule:
    """``poly`` with its end value (0) from ``decay_steps`` on.

    Under ``jit`` XLA rewrites optax's ``1 - t / T`` as ``1 - t * (1 / T)``, which is slightly negative at
    ``t == T``, and a negative base to a fractional power is NaN: a NaN learning rate would wipe the parameters.
    """
    return lambda count: jnp.where(count >= decay_steps, 0.0, poly(count))


def make_optimizer(config: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
    """The optax optimizer (with its schedule) of a trial config, or of a bare optimizer config.

    >>> tx = make_optimizer({'optimizer': {'name': 'sgd', 'learning_rate': 0.1}, 'lr_scheduler': 'poly'},
    ...                     steps_per_epoch=100, epochs=10)
    >>> tx = make_optimizer({'name': 'adamw', 'learning_rate': 3e-4}, steps_per_epoch=100, epochs=10)  # constant
    """
    if "name" in config:
        trial = TrialConfig.from_dict({"optimizer": config, "lr_scheduler": "constant"})
    else:
        trial = TrialConfig.from_dict(config)
    return optimizer_from_trial(trial, steps_per_epoch, epochs)


OPTIMIZER_KINDS = OPTIMIZER_NAMES  # kind index of the compiled step: its position here (jaxgluon.optim_facts)


class TrialOptState(NamedTuple):
    """The state of :func:`optimizer_from_trial`'s transformation, the same structure for every trial.

    ``mu`` is SGD's momentum buffer or Adam's first moment, ``nu`` Adam's second moment (zeros under SGD), and
    ``hyperparams`` every number of the config -- optimizer kind, learning rate, momentum, betas, eps, weight
    decay and the schedule's kind and shape -- as float32 arrays, so that they are inputs of one compiled program.
    """

    count: Any
    mu: Any
    nu: Any
    hyperparams: dict[str, Any]


def trial_hyperparams(trial: TrialConfig, steps_per_epoch: int, epochs: int) -> dict[str, np.ndarray]:
    """The numbers of ``trial`` as float32 arrays (host numpy): the ``hyperparams`` of :class:`TrialOptState`.

    >>> h = trial_hyperparams(TrialConfig.from_dict({'optimizer': 'adam', 'lr_scheduler': 'poly'}), 10, 3)
    >>> float(h['kind']), float(h['schedule']), float(h['decay_steps'])
    (1.0, 2.0, 30.0)
    """
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"steps_per_epoch and epochs must be >= 1, got {steps_per_epoch} and {epochs}")
    opt = trial.optimizer
    total = steps_per_epoch * epochs
    warmup = min(int(round(trial.warmup_epochs * steps_per_epoch)), total - 1)
    epochs_at = trial.lr_step_epochs if trial.lr_step_epochs is not None else (0.5 * epochs, 0.75 * epochs)
    shifted = sorted(int(round(e * steps_per_epoch)) - warmup for e in epochs_at)
    passed = sum(1 for b in shifted if b <= 0)          # decays that fall inside the warmup
    boundaries = np.full((MAX_STEP_BOUNDARIES,), np.inf, np.float32)
    later = [b for b in shifted if b > 0]
    boundaries[:len(later)] = later
    sgd = opt["name"] == "sgd"
    values = {
        "kind": OPTIMIZER_KINDS.index(opt["name"]), "nesterov": float(bool(opt.get("nesterov", False))),
        "learning_rate": opt["learning_rate"], "wd": opt["wd"],
        "momentum": opt["momentum"] if sgd else 0.0,
        "b1": 0.9 if sgd else opt["beta1"], "b2": 0.999 if sgd else opt["beta2"], "eps": 1e-8 if sgd else opt["eps"],
        "schedule": SCHEDULES.index(trial.lr_scheduler), "warmup_steps": warmup, "decay_steps": total - warmup,
        "poly_power": trial.lr_poly_power, "step_factor": trial.lr_step_factor,
        "step_base": trial.lr_step_factor ** passed,
    }
    out = {k: np.asarray(float(v), np.float32) for k, v in values.items()}
    out["step_boundaries"] = boundaries
    return out


def schedule_shape(h: Mapping[str, jax.Array], count: jax.Array) -> jax.Array:
    """The schedule of ``hyperparams`` at step ``count``, peak 1 (the same values as :func:`make_schedule` with
    ``base_lr=1``), computed from arrays so that every schedule is one program."""
    t = jnp.asarray(count, jnp.float32)
    warmup, decay = h["warmup_steps"], h["decay_steps"]
    s = jnp.maximum(t - warmup, 0.0)
    frac = jnp.minimum(s, decay) / decay
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    poly = jnp.where(s >= decay, 0.0, jnp.maximum(1.0 - frac, 0.0) ** h["poly_power"])
    decays = jnp.sum((s >= h["step_boundaries"]).astype(jnp.float32))
    step = h["step_base"] * h["step_factor"] ** decays
    main = jnp.select([h["schedule"] == i for i in range(len(SCHEDULES))], [jnp.ones_like(t), cosine, poly, step])
    return jnp.where(t < warmup, t / jnp.maximum(warmup, 1.0), main)


class _TrialInit:
    """``init`` of a trial's optimizer: zero moments and the trial's hyperparameters, on the host (numpy: no
    device program). Instances compare equal whatever their values, because the values are state, not program:
    a TrainState keeps the transformation as static metadata, and equal metadata lets ``jit`` reuse its program."""

    def __init__(self, hyperparams: Mapping[str, np.ndarray]):
        self.hyperparams = dict(hyperparams)

    def __call__(self, params: Any) -> TrialOptState:
        zeros = jax.tree.map(lambda p: np.zeros(np.shape(p), np.float32), params)
        return TrialOptState(np.zeros((), np.int32), zeros, jax.tree.map(np.copy, zeros),
                             {k: np.array(v) for k, v in self.hyperparams.items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TrialInit)

    def __hash__(self) -> int:
        return hash(_TrialInit)


def _trial_update(grads: Any, state: TrialOptState, params: Any = None) -> tuple[Any, TrialOptState]:
    """SGD (momentum, nesterov, coupled L2 as ``torch.optim.SGD``), Adam (coupled L2 as ``torch.optim.Adam``) or
    AdamW (decoupled decay, as ``optax.adamw``), chosen by ``hyperparams['kind']`` inside the program, times
    ``-learning_rate * schedule_shape(count)``. Weight decay applies to kernels only (ndim >= 2)."""
    if params is None:
        raise ValueError("this optimizer needs params (weight decay): tx.update(grads, state, params)")
    h = state.hyperparams
    is_sgd, is_adamw = h["kind"] == 0, h["kind"] == 2
    count_inc = state.count + 1
    scale = -h["learning_rate"] * schedule_shape(h, state.count)
    c1 = 1.0 - h["b1"] ** count_inc.astype(jnp.float32)
    c2 = 1.0 - h["b2"] ** count_inc.astype(jnp.float32)

    def leaf(g, p, mu, nu):
        decay = h["wd"] * p if p.ndim >= 2 else jnp.zeros_like(p)
        g = g + jnp.where(is_adamw, 0.0, 1.0) * decay                    # coupled L2: SGD and Adam
        mu_sgd = g + h["momentum"] * mu
        sgd_dir = jnp.where(h["nesterov"] > 0, g + h["momentum"] * mu_sgd, mu_sgd)
        mu_adam = h["b1"] * mu + (1.0 - h["b1"]) * g
        nu_adam = h["b2"] * nu + (1.0 - h["b2"]) * g * g
        adam_dir = (mu_adam / c1) / (jnp.sqrt(nu_adam / c2) + h["eps"]) + jnp.where(is_adamw, 1.0, 0.0) * decay
        update = jnp.where(is_sgd, sgd_dir, adam_dir) * scale
        return update.astype(p.dtype), jnp.where(is_sgd, mu_sgd, mu_adam), jnp.where(is_sgd, nu, nu_adam)

    out = jax.tree.map(leaf, grads, params, state.mu, state.nu)
    is_triple = lambda x: isinstance(x, tuple) and len(x) == 3  # noqa: E731
    pick = lambda i: jax.tree.map(lambda t: t[i], out, is_leaf=is_triple)  # noqa: E731
    return pick(0), TrialOptState(count_inc, pick(1), pick(2), h)


def optimizer_from_trial(trial: TrialConfig, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
    """The optax transformation of a validated :class:`TrialConfig`.

    Every number of the config (optimizer kind, learning rate, momentum, betas, eps, weight decay, the schedule's
    kind, length, warmup, power, boundaries) is optimizer *state* (:class:`TrialOptState`), and the update picks
    SGD, Adam or AdamW and the schedule from those arrays. So every trial of a search, whatever its optimizer and
    schedule, runs the same compiled train step: only the first trial of a shape compiles.
    """
    return optax.GradientTransformation(_TrialInit(trial_hyperparams(trial, steps_per_epoch, epochs)),
                                        _trial_update)

