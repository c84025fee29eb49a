"""Optax optimizers and learning-rate schedules from a sampled trial config.

A trial config is the plain dict a searcher samples, e.g.::

    {'net': 'resnet18_v1',
     'optimizer': {'name': 'sgd', 'learning_rate': 0.01, 'momentum': 0.9, 'wd': 1e-4, 'nesterov': False},
     'lr_scheduler': 'cosine', 'warmup_epochs': 1, 'label_smoothing': 0.1}

Optimizer configs (``'optimizer'``; a bare name such as ``'adam'`` takes that optimizer's defaults):

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
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "cosine", "poly", "step")

_OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"learning_rate": 0.01, "momentum": 0.9, "nesterov": False, "wd": 1e-4},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 0.0},
    "adamw": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 1e-4},
}

#: Defaults of the trial-config keys (``batch_size`` defaults to the TrialSpec's).
TRIAL_DEFAULTS: dict[str, Any] = {
    "net": "resnet18_v1",
    "optimizer": "sgd",
    "lr_scheduler": "cosine",
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
        if merged["lr_scheduler"] not in SCHEDULES:
            raise ValueError(f"unknown lr_scheduler {merged['lr_scheduler']!r}; choose one of {SCHEDULES}")
        if not 0.0 <= float(merged["label_smoothing"]) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {merged['label_smoothing']}")
        if float(merged["warmup_epochs"]) < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {merged['warmup_epochs']}")
        if merged["batch_size"] is not None and int(merged["batch_size"]) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {merged['batch_size']}")
        if not isinstance(merged["net"], str):
            raise ValueError(f"'net' must be a model name (str), got {merged['net']!r}")
        step_epochs = merged["lr_step_epochs"]
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
    name = str(config["name"]).lower()
    if name not in _OPTIMIZER_DEFAULTS:
        raise ValueError(f"unknown optimizer {config['name']!r}; choose one of {sorted(_OPTIMIZER_DEFAULTS)}")
    defaults = _OPTIMIZER_DEFAULTS[name]
    unknown = set(config) - set(defaults) - {"name"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} for optimizer {name!r}; it takes {sorted(defaults)}")
    out = {"name": name, **defaults, **{k: v for k, v in config.items() if k != "name"}}
    if not float(out["learning_rate"]) > 0:
        raise ValueError(f"learning_rate must be > 0, got {out['learning_rate']}")
    if float(out["wd"]) < 0:
        raise ValueError(f"wd (weight decay) must be >= 0, got {out['wd']}")
    return out


def make_schedule(name: str, base_lr: float, steps_per_epoch: int, epochs: int, *, warmup_epochs: float = 0.0,
                  poly_power: float = 0.9, step_epochs: Sequence[float] | None = None,
                  step_factor: float = 0.1) -> optax.Schedule:
    """An optax schedule ``step -> learning rate`` over ``epochs * steps_per_epoch`` steps.

    >>> sched = make_schedule('cosine', 0.1, steps_per_epoch=10, epochs=5, warmup_epochs=1)
    >>> round(float(sched(5)), 6), round(float(sched(10)), 6)     # half-way through warmup; its end
    (0.05, 0.1)
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr_scheduler {name!r}; choose one of {SCHEDULES}")
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


def _decay_mask(params: Any) -> Any:
    """True for parameters that take weight decay: kernels (ndim >= 2), not BatchNorm/bias vectors."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


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


def optimizer_from_trial(trial: TrialConfig, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
    """The optax optimizer of a validated :class:`TrialConfig`.

    Every numeric hyperparameter (learning rate, momentum, betas, eps, weight decay) is injected as optimizer
    *state* (``optax.inject_hyperparams``) and the schedule is applied as its shape (peak 1) times that learning
    rate. So two trials that differ only in those numbers trace to the same XLA program: the persistent compilation
    cache serves the second one instead of compiling again -- in an HPO search that is most trials.
    """
    opt = trial.optimizer
    shape = make_schedule(trial.lr_scheduler, 1.0, steps_per_epoch, epochs, warmup_epochs=trial.warmup_epochs,
                          poly_power=trial.lr_poly_power, step_epochs=trial.lr_step_epochs,
                          step_factor=trial.lr_step_factor)
    name = opt["name"]
    hyper = {"learning_rate": float(opt["learning_rate"]), "wd": float(opt["wd"])}
    if name == "sgd":
        hyper["momentum"] = float(opt["momentum"])
        factory = optax.inject_hyperparams(_sgd, static_args=("shape", "nesterov"))
        return factory(shape=shape, nesterov=bool(opt["nesterov"]), **hyper)
    hyper.update(b1=float(opt["beta1"]), b2=float(opt["beta2"]), eps=float(opt["eps"]))
    factory = optax.inject_hyperparams(_adam, static_args=("shape", "decoupled"))
    return factory(shape=shape, decoupled=name == "adamw", **hyper)


def _sgd(learning_rate: float, momentum: float, wd: float, shape: optax.Schedule,
         nesterov: bool) -> optax.GradientTransformation:
    """``torch.optim.SGD``: coupled L2 (``grad += wd * param``), then momentum, then ``-lr(t)``."""
    return optax.chain(optax.add_decayed_weights(wd, mask=_decay_mask), optax.trace(decay=momentum, nesterov=nesterov),
                       optax.scale_by_schedule(shape), optax.scale_by_learning_rate(learning_rate))


def _adam(learning_rate: float, b1: float, b2: float, eps: float, wd: float, shape: optax.Schedule,
          decoupled: bool) -> optax.GradientTransformation:
    """Adam with coupled L2 (``torch.optim.Adam``), or AdamW (decoupled decay scaled by ``lr(t)``, as
    ``optax.adamw``)."""
    decay = optax.add_decayed_weights(wd, mask=_decay_mask)
    adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)
    steps = [adam, decay] if decoupled else [decay, adam]
    return optax.chain(*steps, optax.scale_by_schedule(shape), optax.scale_by_learning_rate(learning_rate))


def steps_for(num_examples: int, batch_size: int) -> int:
    """Optimizer steps per epoch when the last incomplete batch is dropped (at least one)."""
    return max(1, num_examples // batch_size)
