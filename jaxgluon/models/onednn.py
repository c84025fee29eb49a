"""oneDNN convolutions for JAX on CPU: the lowering ``Conv`` uses for large CPU convolutions.

XLA:CPU's convolution kernels run the large-map 3x3 convolutions of a ResNet 1.2-1.6x slower (fwd+bwd) than
oneDNN's, the kernels torch uses on CPU. This module calls oneDNN directly through XLA's FFI: ``conv`` is an
NHWC x HWIO float32 convolution (grouped or not: EfficientNet's depthwise ones too) whose forward, input gradient and kernel gradient are three oneDNN primitives
(``csrc/onednn_conv.cc``), with a custom VJP so ``jax.grad`` and ``jax.jit`` work as with ``lax.conv``.

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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, strides, padding):
    shape = _output_shape(x.shape, kernel.shape, strides, padding)
    return _call("forward", shape, x.dtype, x, kernel, strides=strides, padding=padding)


def _conv_fwd(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, residuals, g):
    x, kernel = residuals
    dx = _call("backward_data", x.shape, x.dtype, g, kernel, strides=strides, padding=padding)
    dk = _call("backward_weights", kernel.shape, kernel.dtype, x, g, strides=strides, padding=padding)
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
