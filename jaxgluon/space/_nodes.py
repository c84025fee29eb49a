"""Compiled nodes of a space: the numeric encoding of each domain in the unit cube.

Encoding (documented in :mod:`jaxgluon.space.compiled`):

- ``Real``: one dim, ``(v - lower) / (upper - lower)``, on the log scale when ``log=True``; so the prior is
  uniform in the cube. Decoded values are rounded to about 10 significant digits (relative to the range), which
  makes ``decode(encode(c)) == c`` exact for every decoded ``c``.
- ``Int``: one dim, ``(v - lower + 0.5) / (upper - lower + 1)`` so a uniform cube coordinate maps to a uniform
  integer (decode: ``floor(x * n) + lower``). With ``log=True`` it is the log scale of ``[lower - 0.5, upper + 0.5]``
  and decode rounds to the nearest integer.
- ``Categorical`` with ``k`` choices: ``k`` one-hot dims (decode takes the argmax), followed by the dims of every
  choice that is itself a space. Dims of the choices not taken (inactive) hold ``INACTIVE_VALUE``.
- Dicts, lists and spaced objects concatenate their children's dims; constants take no dims.

Nodes work on whole batches: ``decode`` maps an ``[n, dim]`` array to ``n`` Python values with numpy
operations per node, never per scalar.
"""
from __future__ import annotations

import itertools
import math
import numbers
from typing import Any, Mapping, Sequence

import numpy as np

INACTIVE_VALUE = 0.5
_SIGNIFICANT_DIGITS = 10


class Layout:
    """What a walk over the nodes collects: names of dims, integer dims, one-hot groups, branch masks."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.int_dims: list[int] = []
        self.groups: list[tuple[int, int]] = []               # (start, k)
        self.masks: list[tuple[int, int, int, int]] = []      # (group start, choice, branch start, branch stop)


class Node:
    dim: int = 0

    def decode(self, x: np.ndarray) -> list:
        raise NotImplementedError

    def encode(self, value: Any, out: np.ndarray, path: str) -> None:
        raise NotImplementedError

    def matches(self, value: Any, strict: bool = False) -> bool:
        raise NotImplementedError

    def grid(self, points: int) -> list:
        raise NotImplementedError

    def default(self) -> Any:
        raise NotImplementedError

    @property
    def size(self) -> int | None:
        raise NotImplementedError

    def layout(self, offset: int, name: str, out: Layout) -> None:
        raise NotImplementedError


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _unique(values: list) -> list:
    """``values`` without repeats (first occurrence kept; ``1`` and ``1.0`` stay distinct), in linear time."""
    seen: set = set()
    out: list = []
    for v in values:
        key = (type(v), v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


class ConstNode(Node):
    def __init__(self, value: Any) -> None:
        self.value = value

    def decode(self, x: np.ndarray) -> list:
        return [self.value] * x.shape[0]

    def matches(self, value: Any, strict: bool = False) -> bool:
        if type(value) is type(self.value):
            return bool(value == self.value)
        if strict or isinstance(value, bool) or isinstance(self.value, bool):
            return False
        return _is_number(value) and _is_number(self.value) and value == self.value

    def encode(self, value: Any, out: np.ndarray, path: str) -> None:
        if not self.matches(value):
            raise ValueError(f"config{path}: expected the constant {self.value!r}, got {value!r}")

    def grid(self, points: int) -> list:
        return [self.value]

    def default(self) -> Any:
        return self.value

    @property
    def size(self) -> int:
        return 1

    def layout(self, offset: int, name: str, out: Layout) -> None:
        pass


class RealNode(Node):
    dim = 1

    def __init__(self, lower: float, upper: float, log: bool, default: float | None) -> None:
        self.lower, self.upper, self.log, self._default = lower, upper, log, default
        self._a, self._b = (math.log(lower), math.log(upper)) if log else (lower, upper)
        self._decimals = _SIGNIFICANT_DIGITS - math.floor(math.log10(upper - lower))

    def from_cube(self, x: np.ndarray) -> np.ndarray:
        v = self._a + x * (self._b - self._a)
        if self.log:
            v = np.exp(v)
            digits = np.clip(_SIGNIFICANT_DIGITS - 1 - np.floor(np.log10(v)), -300, 300)
            scale = 10.0 ** digits
            v = np.round(v * scale) / scale
        else:
            v = np.round(v, self._decimals)
        return np.clip(v, self.lower, self.upper) + 0.0    # + 0.0 turns -0.0 into 0.0

    def to_cube(self, v: float) -> float:
        t = math.log(v) if self.log else v
        return min(max((t - self._a) / (self._b - self._a), 0.0), 1.0)

    def decode(self, x: np.ndarray) -> list:
        return self.from_cube(x[:, 0]).tolist()

    def matches(self, value: Any, strict: bool = False) -> bool:
        if strict and not isinstance(value, float):
            return False
        return _is_number(value) and self.lower <= value <= self.upper

    def encode(self, value: Any, out: np.ndarray, path: str) -> None:
        if not self.matches(value):
            raise ValueError(f"config{path}: expected a real number in [{self.lower!r}, {self.upper!r}], got {value!r}")
        out[0] = self.to_cube(float(value))

    def grid(self, points: int) -> list:
        if points == 1:
            return [self.default()]
        return _unique(self.from_cube(np.linspace(0.0, 1.0, points)).tolist())

    def default(self) -> float:
        if self._default is not None:
            return self._default
        return float(self.from_cube(np.array([0.5]))[0])

    @property
    def size(self) -> None:
        return None

    def layout(self, offset: int, name: str, out: Layout) -> None:
        out.names.append(name or "value")


class IntNode(Node):
    dim = 1

    def __init__(self, lower: int, upper: int, log: bool, default: int | None) -> None:
        self.lower, self.upper, self.log, self._default = lower, upper, log, default
        self.count = upper - lower + 1
        if log:
            self._a, self._b = math.log(lower - 0.5), math.log(upper + 0.5)

    def from_cube(self, x: np.ndarray) -> np.ndarray:
        if self.log:
            v = np.rint(np.exp(self._a + x * (self._b - self._a)))
        else:
            v = np.floor(x * self.count) + self.lower
        return np.clip(v, self.lower, self.upper).astype(np.int64)

    def to_cube(self, v: int) -> float:
        if self.log:
            return (math.log(v) - self._a) / (self._b - self._a)
        return (v - self.lower + 0.5) / self.count

    def decode(self, x: np.ndarray) -> list:
        return self.from_cube(x[:, 0]).tolist()

    def matches(self, value: Any, strict: bool = False) -> bool:
        if not _is_number(value) or not self.lower <= value <= self.upper:
            return False
        return isinstance(value, numbers.Integral) or (not strict and float(value).is_integer())

    def encode(self, value: Any, out: np.ndarray, path: str) -> None:
        if not self.matches(value):
            raise ValueError(f"config{path}: expected an integer in [{self.lower}, {self.upper}], got {value!r}")
        out[0] = self.to_cube(int(value))

    def grid(self, points: int) -> list:
        if points == 1:
            return [self.default()]
        if points >= self.count:
            return list(range(self.lower, self.upper + 1))
        spacing = np.geomspace if self.log else np.linspace
        spaced = spacing(self.lower, self.upper, points)
        return sorted(set(np.rint(spaced).astype(np.int64).tolist()))

    def default(self) -> int:
        if self._default is not None:
            return self._default
        return int(self.from_cube(np.array([0.5]))[0])

    @property
    def size(self) -> int:
        return self.count

    def layout(self, offset: int, name: str, out: Layout) -> None:
        out.names.append(name or "value")
        out.int_dims.append(offset)


class CategoricalNode(Node):
    def __init__(self, choices: Sequence[Node], labels: Sequence[str]) -> None:
        self.choices = list(choices)
        self.labels = list(labels)
        self.k = len(self.choices)
        self.starts = list(itertools.accumulate([self.k] + [c.dim for c in self.choices]))[:-1]
        self.dim = self.k + sum(c.dim for c in self.choices)

    def decode(self, x: np.ndarray) -> list:
        idx = np.argmax(x[:, : self.k], axis=1)
        out: list = [None] * x.shape[0]
        for b, (child, start) in enumerate(zip(self.choices, self.starts)):
            rows = np.flatnonzero(idx == b)
            if rows.size == 0:
                continue
            values = child.decode(x[rows, start : start + child.dim])
            for r, v in zip(rows.tolist(), values):
                out[r] = v
        return out

    def find(self, value: Any) -> int | None:
        for strict in (True, False):
            for b, child in enumerate(self.choices):
                if child.matches(value, strict):
                    return b
        return None

    def matches(self, value: Any, strict: bool = False) -> bool:
        return any(child.matches(value, strict) for child in self.choices)

    def encode(self, value: Any, out: np.ndarray, path: str) -> None:
        b = self.find(value)
        if b is None:
            raise ValueError(f"config{path}: {value!r} matches none of the choices {self.labels}")
        out[: self.k] = 0.0
        out[b] = 1.0
        child, start = self.choices[b], self.starts[b]
        child.encode(value, out[start : start + child.dim], path)

    def grid(self, points: int) -> list:
        return [v for child in self.choices for v in child.grid(points)]

    def default(self) -> Any:
        return self.choices[0].default()

    @property
    def size(self) -> int | None:
        sizes = [c.size for c in self.choices]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]

    def layout(self, offset: int, name: str, out: Layout) -> None:
        out.groups.append((offset, self.k))
        name = name or "value"
        out.names.extend(f"{name}={label}" for label in self.labels)
        for b, (child, start, label) in enumerate(zip(self.choices, self.starts, self.labels)):
            if child.dim:
                out.masks.append((offset, b, offset + start, offset + start + child.dim))
                child.layout(offset + start, f"{name}[{label}]", out)


class DictNode(Node):
    def __init__(self, children: Mapping[str, Node]) -> None:
        self.keys = list(children)
        self.children = list(children.values())
        self.starts = list(itertools.accumulate([0] + [c.dim for c in self.children]))[:-1]
        self.dim = sum(c.dim for c in self.children)

    def _columns(self, x: np.ndarray) -> list[list]:
        return [c.decode(x[:, s : s + c.dim]) for c, s in zip(self.children, self.starts)]

    def decode(self, x: np.ndarray) -> list:
        if not self.keys:
            return [{} for _ in range(x.shape[0])]
        return [dict(zip(self.keys, row)) for row in zip(*self._columns(x))]

    def matches(self, value: Any, strict: bool = False) -> bool:
        return (isinstance(value, Mapping) and set(value) == set(self.keys)
                and all(c.matches(value[k], strict) for k, c in zip(self.keys, self.children)))

    def encode(self, value: Any, out: np.ndarray, path: str) -> None:
        if not isinstance(value, Mapping):
            raise ValueError(f"config{path}: expected a dict with keys {self.keys}, got {value!r}")
        missing = [k for k in self.keys if k not in value]
        extra = [k for k in value if k not in self.keys]
        if missing or extra:
            raise ValueError(f"config{path}: keys {list(value)} differ from the space's {self.keys} "
                             f"(missing {missing}, unexpected {extra}; inactive keys must be left out)")
        for k, c, s in zip(self.keys, self.children, self.starts):
            c.encode(value[k], out[s : s + c.dim], f"{path}[{k!r}]")

    def grid(self, points: int) -> list:
        return [dict(zip(self.keys, combo)) for combo in itertools.product(*(c.grid(points) for c in self.children))]

    def default(self) -> dict:
        return {k: c.default() for k, c in zip(self.keys, self.children)}

    @property
    def size(self) -> int | None:
        sizes = [c.size for c in self.children]
        return None if None in sizes else math.prod(sizes)  # type: ignore[arg-type]

    def layout(self, offset: int, name: str, out: Layout) -> None:
        for k, c, s in zip(self.keys, self.children, self.starts):
            c.layout(offset + s, f"{name}.{k}" if name else k, out)


class ListNode(Node):
    def __init__(self, children: Sequence[Node]) -> None:
        self._dict = DictNode({str(i): c for i, c in enumerate(children)})
        self.dim = self._dict.dim
        self.n = len(children)

    def decode(self, x: np.ndarray) -> list:
        if not self.n:
            return [[] for _ in range(x.shape[0])]
        return [list(row) for row in zip(*self._dict._columns(x))]

    def matches(self, value: Any, strict: bool = False) -> bool:
        return (isinstance(value, (list, tuple)) and len(value) == self.n
                and all(c.matches(v, strict) for c, v in zip(self._dict.children, value)))

    def encode(self, value: Any, out: np.ndarray, path: str) -> None:
        if not isinstance(value, (list, tuple)) or len(value) != self.n:
            raise ValueError(f"config{path}: expected a list of length {self.n}, got {value!r}")
        for i, (c, s) in enumerate(zip(self._dict.children, self._dict.starts)):
            c.encode(value[i], out[s : s + c.dim], f"{path}[{i}]")

    def grid(self, points: int) -> list:
        return [list(combo) for combo in itertools.product(*(c.grid(points) for c in self._dict.children))]

    def default(self) -> list:
        return [c.default() for c in self._dict.children]

    @property
    def size(self) -> int | None:
        return self._dict.size

    def layout(self, offset: int, name: str, out: Layout) -> None:
        for i, (c, s) in enumerate(zip(self._dict.children, self._dict.starts)):
            c.layout(offset + s, f"{name}[{i}]", out)
