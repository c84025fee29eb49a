"""``compile_space``: turn a space into an immutable object of pure sample/encode/decode/grid functions.

Encoding into the unit cube ``[0, 1]^dim`` (what searchers such as the GP work in):

- ``Real``: one dim, linear in the value (log of the value when ``log=True``), so the prior is uniform in the cube.
- ``Int``: one dim, ``(v - lower + 0.5) / (upper - lower + 1)`` (log scale of ``[lower - 0.5, upper + 0.5]`` when
  ``log=True``); decoding floors/rounds and clips, so a uniform coordinate gives a uniform (log-uniform) integer.
  ``int_dims`` lists these dims.
- ``Categorical`` with ``k`` choices (also ``Bool``, ``Nets``, ``Optimizers``): ``k`` one-hot dims, listed in
  ``categorical_groups``; decoding takes the argmax. The dims of each choice that is a space follow the one-hot
  block; when that choice is not taken they hold ``INACTIVE_VALUE`` (0.5), so equal configs encode equally and
  sampled configs never carry inactive keys.
- Dicts, lists and spaced objects (``optimizer.SGD(...)``) concatenate their children's dims in order;
  constants take none. ``dim_names`` names every dim.

Example::

    import jax, jaxgluon as ag
    cs = ag.compile_space({'lr': ag.LogLinear(1e-4, 1e-1), 'net': ag.Nets(['resnet18_v1', 'resnet34_v1'])})
    config = cs.sample(jax.random.key(0))       # {'lr': 0.0021..., 'net': 'resnet34_v1'}
    x = cs.encode(config)                       # np.ndarray [cs.dim] in [0, 1]
    assert cs.decode(x) == config
    configs = cs.sample_batch(jax.random.key(1), 10_000)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgluon.space._nodes import (INACTIVE_VALUE, CategoricalNode, ConstNode, DictNode, IntNode, Layout, ListNode,
                                   Node, RealNode)
from jaxgluon.space.domains import Categorical, Int, Real, SpacedObject, Space, check_space, format_space

__all__ = ["compile_space", "CompiledSpace", "INACTIVE_VALUE"]


@dataclasses.dataclass(frozen=True, eq=False)
class CompiledSpace:
    """A compiled search space; every method is a pure function of its arguments.

    Attributes:
        space: the (validated) space it was compiled from.
        dim: number of dims of the encoded cube.
        categorical_groups: index groups of the one-hot blocks, one per categorical.
        int_dims: indices of the dims that encode an ``Int``.
        dim_names: a readable name for every dim (``'optimizer[sgd].learning_rate'``, ``'net=resnet18_v1'``).
        bounds: ``[dim, 2]`` array of the cube bounds (all rows ``[0, 1]``), read-only.
        size: number of distinct configs of a finite space, ``None`` when a ``Real`` can be active.
    """

    space: Any
    dim: int
    categorical_groups: tuple[tuple[int, ...], ...]
    int_dims: tuple[int, ...]
    dim_names: tuple[str, ...]
    bounds: np.ndarray
    size: int | None
    _root: Node = dataclasses.field(repr=False)
    _groups: tuple[tuple[int, int], ...] = dataclasses.field(repr=False)
    _masks: tuple[tuple[int, int, int, int], ...] = dataclasses.field(repr=False)

    # ----------------------------------------------------------------------------------------------- sampling
    def sample_encoded(self, key: jax.Array | int, n: int) -> jax.Array:
        """``n`` prior samples directly in the encoded cube, as a ``[n, dim]`` array.

        Real/Int dims are uniform; each one-hot block is the one-hot of its argmax (a uniform choice); dims of
        choices not taken are ``INACTIVE_VALUE``. ``decode_batch(sample_encoded(key, n)) == sample_batch(key, n)``.
        """
        return jnp.asarray(self._sample_cube(key, n))

    def _sample_cube(self, key: jax.Array | int, n: int) -> np.ndarray:
        u = _uniform(_as_key(key), _check_count(n), self.dim)
        picks = {}
        for start, k in self._groups:
            picks[start] = np.argmax(u[:, start : start + k], axis=1)
            u[:, start : start + k] = np.arange(k) == picks[start][:, None]
        for group, choice, lo, hi in self._masks:
            u[picks[group] != choice, lo:hi] = INACTIVE_VALUE
        return u

    def sample_batch(self, key: jax.Array | int, n: int) -> list:
        """``n`` configs drawn from the prior at once (vectorised; same key, same configs)."""
        return self._root.decode(self._sample_cube(key, n))

    def sample(self, key: jax.Array | int) -> Any:
        """One config drawn from the prior; equal to ``sample_batch(key, 1)[0]``."""
        return self.sample_batch(key, 1)[0]

    # ----------------------------------------------------------------------------------------------- encoding
    def encode(self, config: Any) -> np.ndarray:
        """The config as a ``float64`` vector ``[dim]`` in ``[0, 1]``; ValueError when it is not in the space."""
        out = np.full(self.dim, INACTIVE_VALUE, dtype=np.float64)
        self._root.encode(config, out, "")
        return out

    def encode_batch(self, configs: Sequence[Any]) -> np.ndarray:
        """``[len(configs), dim]`` encodings."""
        if not configs:
            return np.zeros((0, self.dim))
        return np.stack([self.encode(c) for c in configs])

    def decode_batch(self, x: Any) -> list:
        """Configs of the rows of ``x`` (``[n, dim]``, clipped to the cube; each one-hot block decodes to its argmax).

        ``encode_batch(decode_batch(x))`` snaps any points of the cube (e.g. a GP's candidates) to the canonical
        encodings of their configs: integer cell centres, exact one-hots, ``INACTIVE_VALUE`` in inactive dims.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"decode_batch: expected an array of shape [n, {self.dim}], got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("decode_batch: the array holds NaN or infinite values")
        return self._root.decode(np.clip(x, 0.0, 1.0))

    def decode(self, vector: Any) -> Any:
        """The config of one encoded vector ``[dim]``."""
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.dim,):
            raise ValueError(f"decode: expected a vector of shape [{self.dim}], got shape {vector.shape}")
        return self.decode_batch(vector[None])[0]

    def contains(self, config: Any) -> bool:
        """Whether ``config`` is a config of this space."""
        return self._root.matches(config)

    # ------------------------------------------------------------------------------------------- enumeration
    def grid(self, points_per_dim: int) -> list:
        """The deterministic grid: every categorical choice (each branch with its own grid), ``points_per_dim``
        evenly spaced values per Real/Int (ends included, log-spaced when ``log=True``; the default when 1)."""
        if isinstance(points_per_dim, bool) or not isinstance(points_per_dim, (int, np.integer)) or points_per_dim < 1:
            raise ValueError(f"grid: points_per_dim must be a positive integer, got {points_per_dim!r}")
        return self._root.grid(int(points_per_dim))

    def default(self) -> Any:
        """A sensible default config: each Real/Int's default (the cube's midpoint unless given), each categorical's
        first choice."""
        return self._root.default()

    def __repr__(self) -> str:
        return f"CompiledSpace(dim={self.dim}, size={self.size}, space={format_space(self.space, 0)})"


def compile_space(space: Any) -> CompiledSpace:
    """Compile a space (domain, spaced object, or nested dict/list of spaces and constants).

    An already compiled space is returned as it is.

    >>> import jax, jaxgluon as ag
    >>> cs = compile_space({'lr': ag.LogLinear(1e-4, 1e-1), 'opt': ag.Categorical('sgd', 'adam'), 'epochs': 3})
    >>> cs.dim, cs.categorical_groups, cs.size
    (3, ((1, 2),), None)
    >>> cs.decode(cs.encode({'lr': 0.001, 'opt': 'adam', 'epochs': 3}))
    {'lr': 0.001, 'opt': 'adam', 'epochs': 3}
    """
    if isinstance(space, CompiledSpace):
        return space
    space = check_space(space)
    root = _build(space)
    layout = Layout()
    root.layout(0, "", layout)  # a bare domain names its dims "value"
    bounds = np.tile(np.array([0.0, 1.0]), (root.dim, 1))
    bounds.setflags(write=False)
    return CompiledSpace(
        space=space,
        dim=root.dim,
        categorical_groups=tuple(tuple(range(s, s + k)) for s, k in layout.groups),
        int_dims=tuple(layout.int_dims),
        dim_names=tuple(layout.names),
        bounds=bounds,
        size=root.size,
        _root=root,
        _groups=tuple(layout.groups),
        _masks=tuple(layout.masks),
    )


def _build(obj: Any) -> Node:
    if isinstance(obj, Real):
        return RealNode(obj.lower, obj.upper, obj.log, obj.default)
    if isinstance(obj, Int):
        return IntNode(obj.lower, obj.upper, obj.log, obj.default)
    if isinstance(obj, Categorical):
        return CategoricalNode([_build(c) for c in obj.choices], [_label(c, i) for i, c in enumerate(obj.choices)])
    if isinstance(obj, SpacedObject):
        return DictNode({"name": ConstNode(obj.name), **{k: _build(v) for k, v in obj.params.items()}})
    if isinstance(obj, Space):
        raise ValueError(f"compile_space: do not know how to compile {type(obj).__name__}")
    if isinstance(obj, dict):
        return DictNode({k: _build(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return ListNode([_build(v) for v in obj])
    return ConstNode(obj)


def _label(choice: Any, index: int) -> str:
    if isinstance(choice, SpacedObject):
        return choice.name
    if isinstance(choice, (str, int, float, bool)) or choice is None:
        return str(choice)
    return str(index)


def _uniform(key: jax.Array, n: int, dim: int) -> np.ndarray:
    """``[n, dim]`` uniforms in ``[0, 1)`` from ``jax.random.bits``, on the float32 grid of step ``2**-24``.

    Being exact in float32, ``sample_encoded`` (a float32 jax array) decodes to exactly ``sample_batch``'s configs.

    The draw size is rounded up to a power of two, so spaces and batch sizes share a handful of compiled
    shapes instead of compiling the random-bit generator for every ``(n, dim)``.
    """
    size = n * dim
    if size == 0:
        return np.zeros((n, dim))
    bucket = max(1024, 1 << (size - 1).bit_length())
    bits = np.asarray(jax.random.bits(key, (bucket,), dtype=jnp.uint32))
    return ((bits[:size] >> 8).astype(np.float64) * 2.0**-24).reshape(n, dim)


def _as_key(key: Any) -> jax.Array:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    return key


def _check_count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got n={n!r}")
    return int(n)
