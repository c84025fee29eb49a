"""The domains of the search-space language: ``Real``, ``Int``, ``Categorical``, ``Bool`` and spaced objects.

A *space* is any of these domains, a :class:`SpacedObject` (an object whose arguments are spaces, such as
``optimizer.SGD``), or any nested ``dict``/``list`` of spaces and JSON constants. Domains only describe and
validate; :func:`jaxgluon.space.compile_space` turns a space into pure sample/encode/decode functions.

Example::

    import jaxgluon as ag
    space = {
        'lr': ag.Real(1e-4, 1e-1, log=True),          # same as ag.LogLinear(1e-4, 1e-1)
        'momentum': ag.Linear(0.85, 0.95),
        'batch_size': ag.Int(16, 256, log=True),       # inclusive bounds
        'schedule': ag.Categorical('poly', 'cosine'),  # aliases ag.List, ag.Choice
        'nesterov': ag.Bool(),
        'epochs': 10,                                  # constants pass through
    }
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np

__all__ = [
    "Space", "Real", "Int", "Categorical", "List", "Choice", "Bool", "LogLinear", "Linear", "SpacedObject",
    "format_space",
]

_LINE_WIDTH = 88
_JSON_SCALARS = (str, bool, int, float, type(None))


class Space:
    """Base class of every search-space domain; subclasses are immutable after construction."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one instead of setting {name!r}")

    def _init(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _key(self) -> tuple:
        raise NotImplementedError

    def __reduce__(self):  # pickle and copy despite the immutability guard
        slots = [name for klass in type(self).__mro__ for name in getattr(klass, "__slots__", ())]
        return _restore, (type(self), {name: getattr(self, name) for name in slots})

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and _canonical(self) == _canonical(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, _canonical(self._key())))

    def __repr__(self) -> str:
        return format_space(self)

    def _repr_parts(self) -> tuple[str, list[tuple[str | None, Any]]]:
        """(head, [(keyword or None, child)]) used by :func:`format_space`."""
        raise NotImplementedError


def _restore(cls: type, state: dict[str, Any]) -> Space:
    obj = cls.__new__(cls)
    for name, value in state.items():
        object.__setattr__(obj, name, value)
    return obj


def _check_number(name: str, value: Any, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: {name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return value


def _check_bounds(owner: str, lower: float, upper: float, log: bool) -> None:
    if lower >= upper:
        raise ValueError(f"{owner}: lower={lower!r} must be smaller than upper={upper!r}; "
                         f"use a constant instead of a space for a single value")
    if log and lower <= 0:
        raise ValueError(f"{owner}: log=True needs lower > 0, got lower={lower!r}; use log=False or a positive lower")


class _Range(Space):
    """What Real and Int share: ``lower``, ``upper``, ``log``, ``default``, their identity and their repr."""

    __slots__ = ()

    def _key(self) -> tuple:
        return (self.lower, self.upper, self.log, self.default)

    def _repr_parts(self):
        args: list[tuple[str | None, Any]] = [(None, self.lower), (None, self.upper)]
        if self.log:
            args.append(("log", True))
        if self.default is not None:
            args.append(("default", self.default))
        return type(self).__name__, args


class Real(_Range):
    """A real hyperparameter in ``[lower, upper]``; ``log=True`` samples log-uniformly (equal mass per decade).

    ``default`` (what :meth:`CompiledSpace.default` returns) defaults to the midpoint, the geometric midpoint
    when ``log=True``.

    >>> Real(1e-4, 1e-1, log=True) == LogLinear(1e-4, 1e-1)
    True
    """

    __slots__ = ("lower", "upper", "log", "default")

    def __init__(self, lower: float, upper: float, log: bool = False, default: float | None = None) -> None:
        lower = _check_number("lower", lower, "Real")
        upper = _check_number("upper", upper, "Real")
        _check_bounds("Real", lower, upper, bool(log))
        if default is not None:
            default = _check_number("default", default, "Real")
            if not lower <= default <= upper:
                raise ValueError(f"Real: default={default!r} lies outside [lower, upper] = [{lower!r}, {upper!r}]")
        self._init(lower=lower, upper=upper, log=bool(log), default=default)



class Int(_Range):
    """An integer hyperparameter in ``[lower, upper]`` (both inclusive); ``log=True`` samples log-uniformly.

    >>> Int(16, 256).upper
    256
    """

    __slots__ = ("lower", "upper", "log", "default")

    def __init__(self, lower: int, upper: int, log: bool = False, default: int | None = None) -> None:
        lower = _check_integral("lower", lower)
        upper = _check_integral("upper", upper)
        _check_bounds("Int", lower, upper, bool(log))
        if default is not None:
            default = _check_integral("default", default)
            if not lower <= default <= upper:
                raise ValueError(f"Int: default={default!r} lies outside [lower, upper] = [{lower!r}, {upper!r}]")
        self._init(lower=lower, upper=upper, log=bool(log), default=default)



def _check_integral(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Int: {name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not (math.isfinite(value) and float(value).is_integer()):
        raise ValueError(f"Int: {name} must be integral, got {name}={value!r}; use Real for continuous values "
                         f"or round the bound")
    return int(value)


class Categorical(Space):
    """One of ``choices``: JSON constants, or spaces (then picking a choice activates only that branch).

    Aliases: ``List``, ``Choice``. The default is the first choice.

    >>> Categorical('poly', 'cosine').choices
    ('poly', 'cosine')
    """

    __slots__ = ("choices",)

    def __init__(self, *choices: Any) -> None:
        owner = type(self).__name__
        if not choices:
            raise ValueError(f"{owner}: needs at least one choice, got none; e.g. {owner}('a', 'b')")
        if len(choices) == 1 and isinstance(choices[0], (list, tuple)) and type(self) is Categorical:
            raise ValueError(f"{owner}: got one choice, the list {choices[0]!r}; the choices are positional "
                             f"arguments: {owner}(*{choices[0]!r}); use the list itself for a constant")
        checked = tuple(check_space(c, f"{owner} choice {i}") for i, c in enumerate(choices))
        seen: dict[Any, int] = {}
        for i, choice in enumerate(checked):
            key = _canonical(choice)
            if key in seen:
                raise ValueError(f"{owner}: duplicated choice {choice!r} (positions {seen[key]} and {i}); "
                                 f"each choice must appear once")
            seen[key] = i
        for j, b in enumerate(checked):
            for i, a in enumerate(checked[:j]):
                if overlap(a, b):
                    raise ValueError(f"{owner}: choices {i} ({a!r}) and {j} ({b!r}) overlap: some config could come "
                                     f"from either; make the choices disjoint")
        self._init(choices=checked)

    def _key(self) -> tuple:
        return (self.choices,)

    def _repr_parts(self):
        return type(self).__name__, [(None, c) for c in self.choices]


List = Categorical
Choice = Categorical


class Bool(Categorical):
    """``Categorical(False, True)``: a boolean hyperparameter, default ``False``.

    >>> Bool().choices
    (False, True)
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(False, True)

    def _repr_parts(self):
        return "Bool", []


def LogLinear(lower: float, upper: float, default: float | None = None) -> Real:  # noqa: N802 - tutorial name
    """``Real(lower, upper, log=True)``: log-uniform in ``[lower, upper]``.

    >>> LogLinear(1e-4, 1e-1).log
    True
    """
    return Real(lower, upper, log=True, default=default)


def Linear(lower: float, upper: float, default: float | None = None) -> Real:  # noqa: N802 - tutorial name
    """``Real(lower, upper)``: uniform in ``[lower, upper]``.

    >>> Linear(0.85, 0.95).log
    False
    """
    return Real(lower, upper, log=False, default=default)


class SpacedObject(Space):
    """An object whose arguments may be spaces; a sampled config is ``{'name': name, **sampled arguments}``.

    Subclasses (e.g. ``optimizer.SGD``) set ``name`` and validate ``params``.
    """

    __slots__ = ("name", "params")

    def __init__(self, name: str, params: Mapping[str, Any]) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string, got {name!r}")
        if "name" in params:
            raise ValueError(f"{type(self).__name__}: 'name' is reserved for the object's name, not a parameter")
        checked = {k: check_space(v, f"{type(self).__name__}({k}=...)") for k, v in params.items()}
        self._init(name=name, params=checked)

    def _key(self) -> tuple:
        return (self.name, tuple(self.params.items()))

    def _repr_parts(self):
        return type(self).__name__, list(self.params.items())


def check_space(obj: Any, where: str = "space") -> Any:
    """Validate that ``obj`` is a space or JSON constant and return it normalised.

    Numpy scalars become Python scalars, tuples become lists; dict keys must be strings.
    """
    if isinstance(obj, Space):
        return obj
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where}: constant {obj!r} is not JSON-serialisable; use a finite number")
    if isinstance(obj, _JSON_SCALARS):
        return obj
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: dict keys must be strings (configs are JSON), got key {k!r}")
            out[k] = check_space(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [check_space(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise ValueError(f"{where}: {obj!r} of type {type(obj).__name__} is neither a space nor a JSON constant "
                     f"(str, int, float, bool, None, dict, list)")


def _canonical(obj: Any) -> Any:
    """A hashable, type-aware key: ``1``, ``1.0`` and ``True`` stay distinct."""
    if isinstance(obj, Space):
        return (type(obj).__name__, _canonical(obj._key()))
    if isinstance(obj, Mapping):
        return ("dict", tuple(sorted((k, _canonical(v)) for k, v in obj.items())))
    if isinstance(obj, (list, tuple)):
        return ("list", tuple(_canonical(v) for v in obj))
    return (type(obj).__name__, obj)


def overlap(a: Any, b: Any) -> bool:
    """Whether some config could be sampled from both spaces ``a`` and ``b`` (JSON types: ``1 != 1.0 != True``)."""
    if isinstance(a, Categorical) or isinstance(b, Categorical):
        if not isinstance(a, Categorical):
            a, b = b, a
        return any(overlap(choice, b) for choice in a.choices)
    if isinstance(a, SpacedObject):
        a = {"name": a.name, **a.params}
    if isinstance(b, SpacedObject):
        b = {"name": b.name, **b.params}
    if isinstance(b, (Real, Int)) and not isinstance(a, (Real, Int)):
        a, b = b, a
    if isinstance(a, (Real, Int)):
        kind = float if isinstance(a, Real) else int
        if isinstance(b, (Real, Int)):
            return type(a) is type(b) and max(a.lower, b.lower) <= min(a.upper, b.upper)
        return type(b) is kind and a.lower <= b <= a.upper
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(overlap(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(overlap(x, y) for x, y in zip(a, b))
    return _canonical(a) == _canonical(b)


def format_space(obj: Any, indent: int = 0) -> str:
    """Readable tree of a space: one line when it fits, otherwise one child per indented line."""
    if isinstance(obj, Space):
        head, parts = obj._repr_parts()
        items = [(k, format_space(v, indent + 4)) for k, v in parts]
        open_, close = f"{head}(", ")"
    elif isinstance(obj, Mapping):
        items = [(repr(k), format_space(v, indent + 4)) for k, v in obj.items()]
        open_, close = "{", "}"
    elif isinstance(obj, list):
        items = [(None, format_space(v, indent + 4)) for v in obj]
        open_, close = "[", "]"
    else:
        return repr(obj)
    sep = ": " if open_ == "{" else "="
    rendered = [f"{k}{sep}{v}" if k is not None else v for k, v in items]
    one_line = open_ + ", ".join(rendered) + close
    if len(one_line) + indent <= _LINE_WIDTH and "\n" not in one_line:
        return one_line
    pad = " " * (indent + 4)
    return open_ + "\n" + "".join(f"{pad}{r},\n" for r in rendered) + " " * indent + close

