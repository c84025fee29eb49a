"""oneDNN convolutions for JAX on CPU: the lowering ``Conv`` uses for large CPU convolutions.

XLA:CPU's convolution kernels run the large-map 3x3 convolutions of a ResNet 1.2-1.6x slower (fwd+bwd) than
oneDNN's, the kernels torch uses on CPU. This module calls oneDNN directly through XLA's FFI: ``conv`` is an
NHWC x HWIO float32 convolution (grouped or not: EfficientNet's depthwise ones too) whose forward, input gradient
and kernel gradient are three oneDNN primitives (``csrc/onednn_conv.cc``), with a custom VJP so ``jax.grad`` and
``jax.jit`` work as with ``lax.conv``.
Under ``jax.vmap`` (a population's members) each call either runs once per member or, with ``VMAP_LOWERING``
'grouped' (the default 'auto' does it for already-grouped, i.e. depthwise, convolutions), as ONE grouped oneDNN
call with the members on the channel axis; values and gradients match ``lax.conv`` under the same vmap.

The shim is compiled on first use with the system C++ compiler against the ``onednn-cpu-gomp`` wheel (headers from
``onednn-devel-cpu-gomp``), cached in ``$JAXGLUON_HOME/onednn`` (default ``~/.jaxgluon/onednn``) by a hash of its
inputs, and registered as an FFI target. Where that cannot happen (no compiler, no wheel), ``available()`` is False,
one warning says why, and convolutions keep XLA's lowering; off Linux x86-64 (where the wheels don't exist) it is
quietly False. ``JAXGLUON_ONEDNN=0`` turns the oneDNN lowering off.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxgluon.models import onednn
    >>> x, kernel = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 16))
    >>> y = onednn.conv(x, kernel, strides=(2, 2), padding=((1, 1), (1, 1))) if onednn.available() else None
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import platform
import shutil
import sys
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name("csrc") / "onednn_conv.cc"
LIBRARY_DIST = "onednn-cpu-gomp"
HEADERS_DIST = "onednn-devel-cpu-gomp"
_TARGETS = {"forward": "JgConvForward", "backward_data": "JgConvBackwardData",
            "backward_weights": "JgConvBackwardWeights"}
_TARGET_PREFIX = "jaxgluon_onednn_"


class OneDNNUnavailable(RuntimeError):
    """The oneDNN shim cannot be built or loaded here; the message says why and what to do."""


def _dist_file(dist: str, suffix: str) -> Path:
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        raise OneDNNUnavailable(f"the {dist!r} package is not installed (pip install {dist}==2023.2.0)") from None
    for f in distribution.files or []:
        if str(f).endswith(suffix):
            return Path(distribution.locate_file(f)).resolve()
    raise OneDNNUnavailable(f"the {dist!r} package has no file ending in {suffix!r}; reinstall it")


def cache_dir() -> Path:
    """``$JAXGLUON_HOME/onednn`` (default ``~/.jaxgluon/onednn``): the compiled shims."""
    return Path(os.environ.get("JAXGLUON_HOME") or Path.home() / ".jaxgluon").expanduser() / "onednn"


def build(out_dir: Path | None = None) -> Path:
    """Compiles the shim (if not already cached) and returns the shared library's path.

    Raises:
        OneDNNUnavailable: no C++ compiler, no oneDNN wheel, or the compiler failed (its output is in the message).
    """
    lib = _dist_file(LIBRARY_DIST, "/libdnnl.so.3")
    header = _dist_file(HEADERS_DIST, "/oneapi/dnnl/dnnl.hpp")
    include = header.parent.parent.parent
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise OneDNNUnavailable("no C++ compiler found (install g++, or set CXX)")
    source = SOURCE.read_bytes()
    flags = ["-O2", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{include}", f"-I{jax.ffi.include_dir()}",
             str(SOURCE), f"-L{lib.parent}", f"-l:{lib.name}", f"-Wl,-rpath,{lib.parent}"]
    digest = hashlib.sha256(b"\0".join([source, jax.__version__.encode(), str(lib).encode(),
                                        compiler.encode(), " ".join(flags).encode()])).hexdigest()[:16]
    out_dir = Path(out_dir) if out_dir is not None else cache_dir()
    target = out_dir / f"libjaxgluon_onednn_{digest}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)  # build beside the target, then rename: atomic for
    os.close(fd)                                           # concurrent trial processes building at once
    try:
        proc = subprocess.run([compiler, *flags, "-o", tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OneDNNUnavailable(f"compiling {SOURCE.name} failed ({compiler}):\n{proc.stderr[-4000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.cache
def _load() -> str | None:
    """Builds, loads and registers the FFI targets once per process; the reason when that fails, else None."""
    if os.environ.get("JAXGLUON_ONEDNN", "1").strip().lower() in ("0", "false", "no", "off"):
        return "disabled by JAXGLUON_ONEDNN=0"
    if not (sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")):  # nothing to fix: no warning
        return f"the oneDNN wheels are Linux x86-64 only (this is {sys.platform} {platform.machine()})"
    try:
        library = ctypes.cdll.LoadLibrary(str(build()))
        for name, symbol in _TARGETS.items():
            jax.ffi.register_ffi_target(_TARGET_PREFIX + name, jax.ffi.pycapsule(getattr(library, symbol)),
                                        platform="cpu")
    except (OneDNNUnavailable, OSError) as exc:
        warnings.warn(f"jaxgluon: oneDNN convolutions are unavailable, CPU convolutions use XLA's (slower): {exc}. "
                      "Set JAXGLUON_ONEDNN=0 to silence this.", RuntimeWarning, stacklevel=3)
        return str(exc)
    return None


def available() -> bool:
    """True when the oneDNN lowering can run here (built, loaded and not turned off); warns once when not."""
    return _load() is None


def supports(x_shape: Sequence[int], dtype, groups: int = 1) -> bool:
    """Whether ``conv`` handles this call: float32, a non-empty rank-4 input whose channels split into ``groups``,
    and oneDNN available.

    Under a multi-device CPU mesh the call would be gathered onto every device (XLA cannot partition a custom
    call), so the oneDNN lowering is used only with one local device.
    """
    return (len(x_shape) == 4 and min(x_shape) > 0 and np.dtype(dtype) == np.float32 and groups >= 1
            and x_shape[3] % groups == 0
            and jax.local_device_count() == 1 and available())


def _attrs(strides, padding) -> dict:
    (pt, pb), (pl, pr) = padding
    return dict(sh=np.int64(strides[0]), sw=np.int64(strides[1]), pt=np.int64(pt), pb=np.int64(pb),
                pl=np.int64(pl), pr=np.int64(pr))


def _call(name: str, shape, dtype, *args, strides, padding):
    return jax.ffi.ffi_call(_TARGET_PREFIX + name, jax.ShapeDtypeStruct(tuple(shape), dtype),
                            vmap_method="sequential")(*args, **_attrs(strides, padding))


def _output_shape(x_shape, kernel_shape, strides, padding):
    n, h, w, _ = x_shape
    kh, kw, _, o = kernel_shape
    (pt, pb), (pl, pr) = padding
    return (n, (h + pt + pb - kh) // strides[0] + 1, (w + pl + pr - kw) // strides[1] + 1, o)


# Under ``jax.vmap`` (a population's members) each of the three oneDNN calls can become ONE grouped oneDNN call
# instead of K calls in a row: the members go on the channel axis, member-major (x [K, N, H, W, C] -> [N, H, W, K*C],
# kernel [K, kh, kw, C/G, O] -> [kh, kw, C/G, K*O]), so member m's channels are groups m*G .. m*G+G-1 of a K*G-group
# convolution (the group count is the input's channels over the kernel's, as everywhere in this module). A member
# axis on the activations only (a shared kernel) folds into the batch instead; an unbatched operand beside a
# batched one is reused as is where the layout allows (an ungrouped conv of a shared input with the members'
# kernels is one conv with K*O outputs) and tiled otherwise. Nested vmaps apply the rule once per level.
#: How vmapped oneDNN convolutions run: 'grouped' (one K*G-group call, above), 'members' (one call per member, in a
#: loop) or 'auto': grouped when the members' convolutions are grouped already (depthwise), else per member --
#: oneDNN's grouped brgconv on NHWC with 16-64 channels per group ran ResNet-20's 3x3 convs 1.1-2.7x slower (fwd+bwd,
#: 8 members) than 8 ungrouped calls (benchmarks/history/2026-12-04-population.md).
VMAP_LOWERING = "auto"


def _to_channels(a, batched: bool, k: int, tile: bool = True):
    """[K, N, H, W, C] -> [N, H, W, K*C] (member-major channels); an unbatched [N, H, W, C] is tiled K times."""
    if not batched:
        return jnp.tile(a, (1, 1, 1, k)) if tile else a
    return jnp.moveaxis(a, 0, 3).reshape(*a.shape[1:4], k * a.shape[4])


def _from_channels(a, k: int):
    """[A, B, C, K*O] -> [K, A, B, C, O]: the inverse of ``_to_channels`` (and of the kernels' layout)."""
    return jnp.moveaxis(a.reshape(*a.shape[:3], k, a.shape[3] // k), 3, 0)


def _batched(name, out_shape, strides, padding, k, in_batched, a, b):
    """The vmap rule of ``_op``: the ``k`` members' calls as one oneDNN call, or in a loop (``VMAP_LOWERING``)."""
    a_batched, b_batched = in_batched
    if not (a_batched or b_batched):
        return _op(name, out_shape, strides, padding)(a, b), False
    if name != "backward_weights" and not b_batched:  # a shared kernel: the members are more images
        n = a.shape[1]
        y = _op(name, (k * n, *out_shape[1:]), strides, padding)(a.reshape(k * n, *a.shape[2:]), b)
        return y.reshape(k, n, *y.shape[1:]), True
    groups = (a.shape[-1] if name != "backward_data" else out_shape[3]) // (
        b.shape[-2] if name != "backward_weights" else out_shape[2])
    if VMAP_LOWERING not in ("auto", "grouped", "members"):
        raise ValueError(f"onednn.VMAP_LOWERING must be 'auto', 'grouped' or 'members', got {VMAP_LOWERING!r}")
    if VMAP_LOWERING == "members" or (VMAP_LOWERING == "auto" and groups == 1):  # one oneDNN call per member
        op = _op(name, out_shape, strides, padding)
        if a_batched and b_batched:
            return jax.lax.map(lambda ab: op(*ab), (a, b)), True
        return (jax.lax.map(lambda a1: op(a1, b), a) if a_batched else jax.lax.map(lambda b1: op(a, b1), b)), True
    if name == "backward_weights":  # (x, g) -> kernel [kh, kw, C/G, O]
        ungrouped = out_shape[2] == a.shape[-1]  # G == 1: a shared x needs no tiling
        x = _to_channels(a, a_batched, k, tile=not ungrouped)
        g = _to_channels(b, b_batched, k)
    else:  # forward (x, kernel) -> y, backward_data (g, kernel) -> dx: the kernel is batched
        ungrouped = name == "forward" and b.shape[3] == a.shape[-1]
        x = _to_channels(a, a_batched, k, tile=not ungrouped)
        g = _to_channels(b, True, k)  # the kernels [K, kh, kw, C/G, O] -> [kh, kw, C/G, K*O], same layout
    shape = (*out_shape[:3], k * out_shape[3])  # y [N, H', W', K*O], dx [N, H, W, K*C], dk [kh, kw, C/G, K*O]
    return _from_channels(_op(name, shape, strides, padding)(x, g), k), True


@functools.cache
def _op(name: str, out_shape: tuple, strides: tuple, padding: tuple):
    """The oneDNN call ``name`` (result shape ``out_shape``) as a function of its two arrays, batched by ``_batched``."""
    @jax.custom_batching.custom_vmap
    def op(a, b):
        return _call(name, out_shape, a.dtype, a, b, strides=strides, padding=padding)

    op.def_vmap(functools.partial(_batched, name, out_shape, strides, padding))
    return op


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, strides, padding):
    return _op("forward", _output_shape(x.shape, kernel.shape, strides, padding), strides, padding)(x, kernel)


def _conv_fwd(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, residuals, g):
    x, kernel = residuals
    dx = _op("backward_data", x.shape, strides, padding)(g, kernel)
    dk = _op("backward_weights", kernel.shape, strides, padding)(x, g)
    return dx, dk


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
         padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0))) -> jax.Array:
    """NHWC x HWIO float32 convolution by oneDNN, differentiable; ``padding`` is explicit (low, high) pairs.

    A kernel with fewer input channels than ``x`` makes a grouped convolution of ``x.shape[3] // kernel.shape[2]``
    groups, as ``lax.conv_general_dilated``'s ``feature_group_count`` (a depthwise kernel is ``[kh, kw, 1, C]``).

    Raises:
        ValueError: a shape, dtype or padding this lowering does not handle (use ``layers.conv2d``, which falls back).
        OneDNNUnavailable: the shim could not be built or loaded (see ``available``).
    """
    if (x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] < 1 or x.shape[3] % kernel.shape[2]
            or kernel.shape[3] % (x.shape[3] // kernel.shape[2])):
        raise ValueError(f"onednn.conv needs NHWC x HWIO whose channels match (or split into groups: input "
                         f"channels a multiple of the kernel's, output channels a multiple of the group count), "
                         f"got {x.shape} and {kernel.shape}")
    if x.dtype != np.float32 or kernel.dtype != np.float32:
        raise ValueError(f"onednn.conv computes in float32, got {x.dtype} and {kernel.dtype}")
    strides = tuple(int(s) for s in strides)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(strides) != 2 or len(padding) != 2 or min(strides) < 1 or min(min(p) for p in padding) < 0:
        raise ValueError(f"strides must be 2 positive ints and padding 2 (low, high) pairs >= 0, got "
                         f"{strides} and {padding}")
    if min(_output_shape(x.shape, kernel.shape, strides, padding)[1:3]) < 1:
        raise ValueError(f"kernel {kernel.shape[:2]} with padding {padding} is larger than the input {x.shape[1:3]}")
    reason = _load()
    if reason is not None:
        raise OneDNNUnavailable(reason)
    return _conv(x, kernel, strides, padding)
