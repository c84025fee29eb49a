"""Optimizer and learning-rate-schedule facts: names, defaults and rules, in one place.

``jaxgluon.space.optimizer`` (the search-space language) and ``jaxgluon.train.optim`` (optax from a config) both
read them; this module imports nothing (not even numpy), so either may import it without depending on the other.

    >>> OPTIMIZER_DEFAULTS['sgd']['momentum'], LR_SCHEDULERS
    (0.9, ('constant', 'cosine', 'poly', 'step'))
    >>> check_lr_scheduler('cosine')
    'cosine'
    >>> check_hyperparameter('SGD', 'momentum', 1.0)
    Traceback (most recent call last):
    ...
    ValueError: SGD: momentum must be in [0, 1), got momentum=1.0

A value is checked once, where it enters the library: the space constructors (``optimizer.SGD(...)``), ``fit``'s
arguments, and a trial config entering ``jaxgluon.train`` (``TrialConfig.from_dict``, the trial function's door:
configs reach it from any searcher or from a user calling ``train_trial`` directly). Past those doors the code
trusts the value.
"""
from __future__ import annotations

from typing import Any, Callable

#: Each optimizer's hyperparameters and their fixed defaults (what an argument left out takes). The order of the
#: names is the optimizer's ``kind`` index inside the compiled train step (``train.optim.TrialOptState``).
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4, "nesterov": False},
    "adam": {"learning_rate": 1e-3, "wd": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adamw": {"learning_rate": 1e-3, "wd": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
OPTIMIZER_NAMES: tuple[str, ...] = tuple(OPTIMIZER_DEFAULTS)

#: Learning-rate schedules by name; the order is the schedule's index inside the compiled train step.
LR_SCHEDULERS: tuple[str, ...] = ("constant", "cosine", "poly", "step")
DEFAULT_LR_SCHEDULER = "cosine"

#: Most ``lr_step_epochs`` a trial may give (the boundaries are a fixed-size array of optimizer state).
MAX_STEP_BOUNDARIES = 8

HYPERPARAMETER_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "learning_rate": (lambda v: v > 0, "> 0"),
    "wd": (lambda v: v >= 0, ">= 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "eps": (lambda v: v > 0, "> 0"),
}


def check_hyperparameter(owner: str, key: str, value: Any) -> None:
    """Raises ``ValueError`` naming ``owner`` when the number ``value`` breaks ``key``'s rule (other values and
    keys without a rule pass: spaces check their bounds through :func:`hyperparameter_ok`)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not hyperparameter_ok(key, value):
        raise ValueError(f"{owner}: {key} must be {HYPERPARAMETER_RULES[key][1]}, got {key}={value!r}")


def hyperparameter_ok(key: str, value: float) -> bool:
    """Whether the number ``value`` obeys ``key``'s rule (True for keys without one)."""
    rule = HYPERPARAMETER_RULES.get(key)
    return rule is None or bool(rule[0](value))


def check_optimizer_name(name: Any) -> str:
    """The lower-cased optimizer name, or ``ValueError`` listing the known ones."""
    lowered = name.lower() if isinstance(name, str) else None
    if lowered not in OPTIMIZER_DEFAULTS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZER_DEFAULTS)}")
    return lowered


def check_lr_scheduler(name: Any) -> str:
    """``name`` when it is a known schedule, else ``ValueError`` listing them."""
    if not isinstance(name, str) or name not in LR_SCHEDULERS:
        raise ValueError(f"unknown lr_scheduler {name!r}; choose one of {LR_SCHEDULERS}")
    return name
