"""Optimizer spaces: ``SGD``, ``Adam``, ``AdamW`` whose hyperparameters may be spaces, and ``Optimizers``.

A sampled optimizer config is a plain dict that always carries every hyperparameter of that optimizer
(arguments left out take the fixed defaults in ``DEFAULTS``), e.g.
``{'name': 'sgd', 'learning_rate': 0.003, 'momentum': 0.9, 'wd': 0.0001, 'nesterov': False}``.
``jaxgluon.train`` turns such a config into an optax transformation; ``wd`` is L2 weight decay for ``sgd`` and
``adam`` and decoupled weight decay for ``adamw``.

Example::

    import jaxgluon as ag
    sgd = ag.optimizer.SGD(learning_rate=ag.LogLinear(1e-4, 1e-1), momentum=ag.Linear(0.85, 0.95))
    adam = ag.optimizer.Adam(learning_rate=ag.LogLinear(1e-4, 1e-1), wd=ag.LogLinear(1e-6, 1e-2))
    optimizers = ag.Optimizers([sgd, adam])     # picking adam activates only adam's hyperparameters
    ag.Optimizers(['sgd', 'adam'])              # names expand to each optimizer's default_space()
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from jaxgluon.space.domains import Categorical, Int, Linear, LogLinear, Real, SpacedObject

__all__ = ["OptimizerSpace", "SGD", "Adam", "AdamW", "Optimizers", "DEFAULTS", "KNOWN_OPTIMIZERS", "default_space"]


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _unit_interval(v: float) -> bool:
    return 0 <= v < 1


def _any(v: Any) -> bool:
    return True


_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "learning_rate": (_positive, "> 0"),
    "wd": (_non_negative, ">= 0"),
    "momentum": (_unit_interval, "in [0, 1)"),
    "beta1": (_unit_interval, "in [0, 1)"),
    "beta2": (_unit_interval, "in [0, 1)"),
    "eps": (_positive, "> 0"),
}


class OptimizerSpace(SpacedObject):
    """Base of the optimizer spaces: fixed ``defaults`` for omitted arguments and a ``default_space()``."""

    __slots__ = ()
    optimizer_name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]

    def __init__(self, **params: Any) -> None:
        cls = type(self).__name__
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(f"{cls}: unknown hyperparameter(s) {unknown}; {cls} takes {sorted(self.defaults)}")
        for key, value in params.items():
            _check_rule(cls, key, value)
        merged = {k: params.get(k, v) for k, v in self.defaults.items()}
        super().__init__(self.optimizer_name, merged)

    @classmethod
    def default_space(cls) -> "OptimizerSpace":
        """The space that ``Optimizers([name])`` expands a bare name to."""
        raise NotImplementedError


def _check_rule(cls: str, key: str, value: Any) -> None:
    rule, text = _RULES.get(key, (_any, ""))
    if isinstance(value, (Real, Int)):
        bad = [v for v in (value.lower, value.upper) if not rule(v)]
    elif isinstance(value, Categorical):
        bad = [v for v in value.choices if isinstance(v, (int, float)) and not isinstance(v, bool) and not rule(v)]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        bad = [] if rule(value) else [value]
    else:
        bad = []
    if bad:
        raise ValueError(f"{cls}: {key} must be {text}, got {key}={value!r}")


class SGD(OptimizerSpace):
    """SGD with momentum: ``learning_rate``, ``momentum``, ``wd`` (L2), ``nesterov``.

    >>> SGD(learning_rate=0.01).params['momentum']
    0.9
    """

    __slots__ = ()
    optimizer_name = "sgd"
    defaults = {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4, "nesterov": False}

    @classmethod
    def default_space(cls) -> "SGD":
        return cls(learning_rate=LogLinear(1e-4, 1e-1), momentum=Linear(0.85, 0.95), wd=LogLinear(1e-6, 1e-2))


class Adam(OptimizerSpace):
    """Adam: ``learning_rate``, ``wd`` (L2 added to the gradient), ``beta1``, ``beta2``, ``eps``.

    >>> Adam().params['learning_rate']
    0.001
    """

    __slots__ = ()
    optimizer_name = "adam"
    defaults = {"learning_rate": 1e-3, "wd": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

    @classmethod
    def default_space(cls) -> "Adam":
        return cls(learning_rate=LogLinear(1e-5, 1e-2), wd=LogLinear(1e-6, 1e-2))


class AdamW(OptimizerSpace):
    """AdamW: like ``Adam`` but ``wd`` is decoupled weight decay.

    >>> AdamW().params['wd']
    0.0001
    """

    __slots__ = ()
    optimizer_name = "adamw"
    defaults = {"learning_rate": 1e-3, "wd": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

    @classmethod
    def default_space(cls) -> "AdamW":
        return cls(learning_rate=LogLinear(1e-5, 1e-2), wd=LogLinear(1e-5, 1e-1))


KNOWN_OPTIMIZERS: dict[str, type[OptimizerSpace]] = {c.optimizer_name: c for c in (SGD, Adam, AdamW)}
DEFAULTS: dict[str, dict[str, Any]] = {name: dict(c.defaults) for name, c in KNOWN_OPTIMIZERS.items()}


def default_space(name: str) -> OptimizerSpace:
    """The default search space of the optimizer called ``name`` (case-insensitive).

    >>> default_space('adam').name
    'adam'
    """
    cls = KNOWN_OPTIMIZERS.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown optimizer name {name!r}; known optimizers: {sorted(KNOWN_OPTIMIZERS)}")
    return cls.default_space()


class Optimizers(Categorical):
    """A conditional choice between optimizer spaces; bare names expand to ``default_space(name)``.

    >>> [o.name for o in Optimizers(['sgd', 'adam']).choices]
    ['sgd', 'adam']
    """

    __slots__ = ()

    def __init__(self, optimizers: Sequence[OptimizerSpace | str]) -> None:
        if isinstance(optimizers, (str, OptimizerSpace)) or not isinstance(optimizers, Sequence):
            raise ValueError(f"Optimizers: optimizers must be a list of names or optimizer spaces, got "
                             f"{optimizers!r}; e.g. Optimizers(['sgd', 'adam'])")
        spaces = []
        for i, opt in enumerate(optimizers):
            if isinstance(opt, str):
                opt = default_space(opt)
            elif not isinstance(opt, OptimizerSpace):
                raise ValueError(f"Optimizers: optimizers[{i}]={opt!r} is neither an optimizer name "
                                 f"({sorted(KNOWN_OPTIMIZERS)}) nor an optimizer space like optimizer.SGD(...)")
            spaces.append(opt)
        names = [o.name for o in spaces]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Optimizers: duplicated optimizer {dup[0]!r} in {names}; each optimizer may appear once "
                             f"(its config is told apart by config['name'])")
        super().__init__(*spaces)

    def _repr_parts(self):
        return "Optimizers", [(None, list(self.choices))]
