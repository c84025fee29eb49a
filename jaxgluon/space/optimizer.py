"""Optimizer spaces: ``SGD``, ``Adam``, ``AdamW`` whose hyperparameters may be spaces, and ``Optimizers``.

A sampled optimizer config is a plain dict that always carries every hyperparameter of that optimizer
(arguments left out take the fixed defaults in ``DEFAULTS``, i.e. ``jaxgluon.optim_facts.OPTIMIZER_DEFAULTS``, the
one home of the optimizer names, defaults and rules that ``jaxgluon.train`` reads too), e.g.
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

from typing import Any, ClassVar, Sequence

from jaxgluon.optim_facts import HYPERPARAMETER_RULES, OPTIMIZER_DEFAULTS, check_optimizer_name, hyperparameter_ok
from jaxgluon.space.domains import Categorical, Int, Linear, LogLinear, Real, SpacedObject

__all__ = ["OptimizerSpace", "SGD", "Adam", "AdamW", "Optimizers", "DEFAULTS", "KNOWN_OPTIMIZERS", "default_space"]


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
    """``jaxgluon.optim_facts``'s rule for ``key``, applied to a number or to every bound/choice of a space."""
    if isinstance(value, (Real, Int)):
        bad = [v for v in (value.lower, value.upper) if not hyperparameter_ok(key, v)]
    elif isinstance(value, Categorical):
        bad = [v for v in value.choices
               if isinstance(v, (int, float)) and not isinstance(v, bool) and not hyperparameter_ok(key, v)]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        bad = [] if hyperparameter_ok(key, value) else [value]
    else:
        bad = []
    if bad:
        raise ValueError(f"{cls}: {key} must be {HYPERPARAMETER_RULES[key][1]}, got {key}={value!r}")


class SGD(OptimizerSpace):
    """SGD with momentum: ``learning_rate``, ``momentum``, ``wd`` (L2), ``nesterov``.

    >>> SGD(learning_rate=0.01).params['momentum']
    0.9
    """

    __slots__ = ()
    optimizer_name = "sgd"
    defaults = OPTIMIZER_DEFAULTS["sgd"]

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
    defaults = OPTIMIZER_DEFAULTS["adam"]

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
    defaults = OPTIMIZER_DEFAULTS["adamw"]

    @classmethod
    def default_space(cls) -> "AdamW":
        return cls(learning_rate=LogLinear(1e-5, 1e-2), wd=LogLinear(1e-5, 1e-1))


KNOWN_OPTIMIZERS: dict[str, type[OptimizerSpace]] = {c.optimizer_name: c for c in (SGD, Adam, AdamW)}
DEFAULTS = OPTIMIZER_DEFAULTS  # re-exported: the fixed defaults, from jaxgluon.optim_facts


def default_space(name: str) -> OptimizerSpace:
    """The default search space of the optimizer called ``name`` (case-insensitive).

    >>> default_space('adam').name
    'adam'
    """
    return KNOWN_OPTIMIZERS[check_optimizer_name(name)].default_space()


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
