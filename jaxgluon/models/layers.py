"""Layers shared by the model zoo.

``Conv`` owns the convolution lowering: its parameters are a ``kernel`` in HWIO layout and an optional ``bias``
(the same layout as ``flax.nnx.Conv``), and how it computes depends on backend and feature-map size.

On GPU/TPU every convolution is ``lax.conv_general_dilated`` (cuDNN and the TPU convolution emitter are fast).
On CPU, XLA's convolutions (and especially the ones autodiff derives for the backward pass) collapse on tiny
output maps: fwd+bwd of a 3x3 convolution on 2x2 maps runs at ~2 GFLOP/s. There the convolution is written as
im2col + one matrix multiply (``conv_im2col``), whose forward and autodiff-derived backward are plain dots
(~60 GFLOP/s per core); 1x1 convolutions are always plain matmuls (``choose_lowering`` holds the rule, measured
per ResNet layer shape). When oneDNN is available (``onednn.conv``, the kernels torch uses on CPU) it takes all
but the tiniest convolutions, 1.2-3x faster than XLA's; otherwise the larger ones stay XLA's but run per batch
chunk (``batch_chunks``), which keeps their working set in cache. ``max_pool`` does the same per-backend choice for max
pooling.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools

from typing import Iterator, Literal, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgluon.models import onednn

Lowering = Literal["xla", "im2col", "depthwise", "onednn"]
Padding = str | int | Sequence[tuple[int, int]]

# On CPU, windows larger than 1x1 use im2col when the output map has at most this many pixels (XLA's backward
# convolutions collapse to ~1-3 GFLOP/s on 2x2 outputs; at 4x4 both lowerings are even, from 7x7 on XLA wins) ...
CPU_IM2COL_MAX_OUTPUT_PIXELS = 4 * 4
# ... or, for strided windows, this many (im2col is even with XLA at 8x8 strided outputs and wins at 7x7).
CPU_IM2COL_MAX_STRIDED_OUTPUT_PIXELS = 8 * 8
# On CPU, XLA convolutions whose input exceeds this many bytes run in batch chunks of at most about this size:
# XLA:CPU's convolutions and their backward run 1.5-3x faster (fwd+bwd CPU time, 2 threads) on ~1.5 MB pieces
# than on a whole batch of 32 (56x56x64: 290 -> 92 ms; 16x16x128: 57 -> 31 ms).
CPU_CONV_CHUNK_BYTES = 2 << 20
# With oneDNN available it takes every CPU convolution but the tiniest, where im2col's one matmul still wins
# (fwd+bwd, batch 32: 3x3 on 2x2 outputs 11 vs 14 ms; 1x1 on 4x4 maps 256->1024 5 vs 7 ms; on 8x8 oneDNN is even or
# ahead, and 1.2-1.6x ahead from 16x16 on). Measured per ResNet layer shape, benchmarks/RESULTS.md.
ONEDNN_IM2COL_MAX_OUTPUT_PIXELS = 2 * 2
ONEDNN_IM2COL_MAX_1X1_OUTPUT_PIXELS = 4 * 4
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return pair  # type: ignore[return-value]


def explicit_padding(padding: Padding, in_hw: Sequence[int], kernel_hw: Sequence[int],
                     strides: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Turns 'SAME'/'VALID', an int, or ((top, bottom), (left, right)) into explicit (low, high) pairs."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID", "SAME_LOWER"):
            raise ValueError(f"padding must be 'SAME', 'VALID', 'SAME_LOWER', an int or pairs, got {padding!r}")
        return tuple(jax.lax.padtype_to_pads(tuple(in_hw), tuple(kernel_hw), tuple(strides),
                                             padding.upper()))  # type: ignore[return-value]
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    pads = tuple(tuple(p) for p in padding)
    if len(pads) != 2 or any(len(p) != 2 for p in pads):
        raise ValueError(f"padding pairs must look like ((top, bottom), (left, right)), got {padding!r}")
    return pads  # type: ignore[return-value]


def conv_xla(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1), padding: Padding = "SAME",
             groups: int = 1) -> jax.Array:
    """NHWC x HWIO convolution with ``lax.conv_general_dilated``."""
    pads = explicit_padding(padding, x.shape[1:3], kernel.shape[:2], strides)
    return jax.lax.conv_general_dilated(x, kernel, tuple(strides), pads, dimension_numbers=_DIMENSION_NUMBERS,
                                        feature_group_count=groups)


def _windows(x: jax.Array, kernel_hw: Sequence[int], strides: Sequence[int],
             pads: tuple[tuple[int, int], tuple[int, int]]) -> list[jax.Array]:
    """The ``kh*kw`` shifted, strided slices [N, Ho, Wo, C] of padded ``x``, in (row, column) order."""
    (kh, kw), (sh, sw) = kernel_hw, strides
    if any(p != 0 for pair in pads for p in pair):
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    n, h, w, c = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} window does not fit a padded {h}x{w} feature map; add padding or "
                         "use a smaller kernel")
    return [jax.lax.slice(x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]


def _patches(x: jax.Array, kernel_hw: Sequence[int], strides: Sequence[int],
             pads: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """[N, Ho, Wo, kh*kw*C] windows of ``x``, ordered (row, column, channel) like an HWIO kernel's reshape."""
    cols = _windows(x, kernel_hw, strides, pads)
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def conv_im2col(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1), padding: Padding = "SAME",
                groups: int = 1) -> jax.Array:
    """The same convolution as ``conv_xla`` written as im2col + one ``dot_general`` (1x1: slice + matmul).

    Its autodiff backward is a dot for the kernel gradient and a dot + col2im (pads and adds) for the input
    gradient, which XLA:CPU runs far faster than its backward convolutions on small maps.

    Example:
        >>> x, k = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 16))
        >>> bool(jnp.allclose(conv_im2col(x, k, (2, 2), 'SAME'), conv_xla(x, k, (2, 2), 'SAME')))
        True
    """
    kh, kw, cg, out = kernel.shape
    pads = explicit_padding(padding, x.shape[1:3], (kh, kw), strides)
    patches = _patches(x, (kh, kw), strides, pads)
    if groups == 1:
        return _pixel_matmul(patches, kernel.reshape(kh * kw * cg, out))
    n, ho, wo, _ = patches.shape
    og = out // groups
    patches = patches.reshape(n, ho, wo, kh * kw, groups, cg)
    k = kernel.reshape(kh * kw, cg, groups, og)
    y = jax.lax.dot_general(patches, k, (((3, 5), (0, 1)), ((4,), (2,))))  # [groups, n, ho, wo, og]
    return jnp.moveaxis(y, 0, 3).reshape(n, ho, wo, out)


@jax.custom_vjp
def _pixel_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x [N, H, W, K] @ w [K, O]``, with the kernel gradient written as one dot over all pixels.

    Autodiff's kernel gradient makes XLA:CPU transpose the output gradient to [O, pixels] in a slow strided loop
    fused with the BatchNorm backward (18% of a ResNet-50 128 px train step); contracting the pixel axis of
    ``x`` and ``g`` in place avoids it (ResNet-50 128 px: 11.4 -> 15.3 img/s).
    """
    return jax.lax.dot_general(x, w, (((3,), (0,)), ((), ())))


def _pixel_matmul_fwd(x, w):
    return _pixel_matmul(x, w), (x, w)


def _pixel_matmul_bwd(residuals, g):
    x, w = residuals
    k, o = w.shape
    dx = jax.lax.dot_general(g, w, (((3,), (1,)), ((), ())))
    dw = jax.lax.dot_general(x.reshape(-1, k), g.reshape(-1, o), (((0,), (0,)), ((), ())))
    return dx, dw


_pixel_matmul.defvjp(_pixel_matmul_fwd, _pixel_matmul_bwd)


def conv_depthwise(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
                   padding: Padding = "SAME") -> jax.Array:
    """A depthwise convolution (HWIO kernel ``[kh, kw, 1, C]``, ``groups == C``) as the sum of ``kh*kw`` shifted,
    strided slices of ``x`` times one kernel row each: elementwise work that XLA fuses into one loop, forward and
    backward, where XLA:CPU's grouped convolution runs far below the machine's speed.

    Example:
        >>> x, k = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 1, 4))
        >>> bool(jnp.allclose(conv_depthwise(x, k, (2, 2)), conv_xla(x, k, (2, 2), 'SAME', groups=4)))
        True
    """
    kh, kw, one, c = kernel.shape
    if one != 1 or x.shape[-1] != c:
        raise ValueError(f"conv_depthwise needs a [kh, kw, 1, C] kernel for C = {x.shape[-1]} input channels, "
                         f"got kernel shape {kernel.shape}")
    pads = explicit_padding(padding, x.shape[1:3], (kh, kw), strides)
    windows = _windows(x, (kh, kw), strides, pads)
    return functools.reduce(jnp.add, (window * kernel[i // kw, i % kw, 0] for i, window in enumerate(windows)))


def choose_lowering(backend: str, input_shape: Sequence[int], kernel_shape: Sequence[int],
                    strides: Sequence[int] = (1, 1), groups: int = 1, onednn_ok: bool = False) -> Lowering:
    """The convolution lowering ``Conv`` uses for one layer on ``backend`` ('cpu', 'gpu', 'tpu', ...).

    ``onednn_ok`` says the oneDNN lowering can run (``onednn.supports``); on CPU it then takes every convolution
    but the tiniest maps.

    Example:
        >>> choose_lowering('cpu', (32, 2, 2, 512), (3, 3, 512, 512))
        'im2col'
        >>> choose_lowering('cpu', (32, 32, 32, 128), (3, 3, 128, 128))
        'xla'
        >>> choose_lowering('cpu', (32, 32, 32, 128), (3, 3, 128, 128), onednn_ok=True)
        'onednn'
        >>> choose_lowering('gpu', (32, 32, 32, 128), (3, 3, 128, 128), onednn_ok=True)
        'xla'
        >>> choose_lowering('cpu', (32, 40, 40, 144), (3, 3, 1, 144), groups=144, onednn_ok=True)
        'onednn'
        >>> choose_lowering('cpu', (32, 40, 40, 144), (3, 3, 1, 144), groups=144)
        'depthwise'
    """
    if backend != "cpu":
        return "xla"
    if groups != 1 and onednn_ok:  # oneDNN's grouped kernels: EfficientNet's depthwise convolutions ran 4-20x
        return "onednn"            # faster backward (and 3-5x forward) than the shifted slices below
    if groups != 1:  # depthwise without oneDNN: shifted slices beat XLA:CPU's grouped convolution
        return "depthwise" if groups == kernel_shape[3] == input_shape[3] and kernel_shape[2] == 1 else "xla"
    kh, kw, cin, _ = kernel_shape
    h, w = input_shape[1], input_shape[2]
    out_pixels = -(-h // strides[0]) * -(-w // strides[1])
    if onednn_ok:
        limit = ONEDNN_IM2COL_MAX_1X1_OUTPUT_PIXELS if kh == kw == 1 else ONEDNN_IM2COL_MAX_OUTPUT_PIXELS
        return "im2col" if out_pixels <= limit else "onednn"
    if kh == kw == 1:
        return "im2col"
    if cin < 16:  # an RGB stem: K = kh*kw*3 is too thin for a good matmul, XLA's direct convolution wins
        return "xla"
    if out_pixels <= CPU_IM2COL_MAX_OUTPUT_PIXELS:
        return "im2col"
    if max(strides) > 1 and out_pixels <= CPU_IM2COL_MAX_STRIDED_OUTPUT_PIXELS:
        return "im2col"
    return "xla"


def batch_chunks(input_shape: Sequence[int], itemsize: int, max_bytes: int = CPU_CONV_CHUNK_BYTES) -> int:
    """How many equal batch chunks keep each under ``max_bytes`` (1 when the input is small; a divisor of N).

    Example:
        >>> batch_chunks((32, 56, 56, 64), 4), batch_chunks((32, 8, 8, 128), 4)
        (16, 1)
    """
    n = input_shape[0]
    nbytes = itemsize * n * input_shape[1] * input_shape[2] * input_shape[3]
    if nbytes <= max_bytes:
        return 1
    want = min(n, -(-nbytes // max_bytes))
    return next(d for d in range(want, n + 1) if n % d == 0)


_FORCED_LOWERING: contextvars.ContextVar = contextvars.ContextVar("jaxgluon_conv_lowering", default=None)
_CONV_LOG: contextvars.ContextVar = contextvars.ContextVar("jaxgluon_conv_log", default=None)


@contextlib.contextmanager
def forced_lowering(lowering: Lowering) -> Iterator[None]:
    """Within the block, ``conv2d(lowering='auto')`` uses ``lowering`` (e.g. 'xla', whose convolutions XLA's cost
    analysis counts; oneDNN's custom calls count as zero FLOPs there)."""
    token = _FORCED_LOWERING.set(lowering)
    try:
        yield
    finally:
        _FORCED_LOWERING.reset(token)


@contextlib.contextmanager
def logged_convs(log: list) -> Iterator[list]:
    """Within the block, every :class:`Conv` call appends ``(input_shape, output_shape, kernel_shape, groups,
    strides, ((pad_top, pad_bottom), (pad_left, pad_right)))`` to ``log`` (shapes only: run the model under ``jax.eval_shape``). Used by ``jaxgluon.models.flops``."""
    token = _CONV_LOG.set(log)
    try:
        yield log
    finally:
        _CONV_LOG.reset(token)


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1), padding: Padding = "SAME",
           groups: int = 1, lowering: Lowering | Literal["auto"] = "auto") -> jax.Array:
    """NHWC x HWIO convolution, lowered per backend and map size (``choose_lowering``) unless told otherwise.

    With ``lowering='auto'`` on CPU, large convolutions run on oneDNN when it is available (``onednn.supports``),
    else on XLA per batch chunk (``batch_chunks``).
    """
    chunks = 1
    if lowering == "auto" and _FORCED_LOWERING.get() is not None:
        lowering = _FORCED_LOWERING.get()
    if lowering == "auto":
        backend = jax.default_backend()
        onednn_ok = backend == "cpu" and onednn.supports(x.shape, x.dtype, groups)
        lowering = choose_lowering(backend, x.shape, kernel.shape, strides, groups, onednn_ok)
        if backend == "cpu" and lowering == "xla":
            chunks = batch_chunks(x.shape, x.dtype.itemsize, CPU_CONV_CHUNK_BYTES)
    if lowering == "xla" and chunks > 1:
        return jnp.concatenate([conv_xla(part, kernel, strides, padding, groups)
                                for part in jnp.split(x, chunks)])
    if lowering == "xla":
        return conv_xla(x, kernel, strides, padding, groups)
    if lowering == "im2col":
        return conv_im2col(x, kernel, strides, padding, groups)
    if lowering == "depthwise":
        return conv_depthwise(x, kernel, strides, padding)
    if lowering == "onednn":
        return onednn.conv(x, kernel, strides, explicit_padding(padding, x.shape[1:3], kernel.shape[:2], strides))
    raise ValueError(f"lowering must be 'auto', 'xla', 'im2col', 'depthwise' or 'onednn', got {lowering!r}")


def _pool_windows(x: jax.Array, kernel_hw: tuple[int, int], strides: tuple[int, int],
                  pads: tuple[tuple[int, int], tuple[int, int]]) -> list[jax.Array]:
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    return _windows(x, kernel_hw, strides, ((0, 0), (0, 0)))


def _max_of_windows(x, kernel_hw, strides, pads):
    return functools.reduce(jnp.maximum, _pool_windows(x, kernel_hw, strides, pads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_slices(x, kernel_hw, strides, pads):
    return _max_of_windows(x, kernel_hw, strides, pads)


def _max_pool_slices_fwd(x, kernel_hw, strides, pads):
    out = _max_of_windows(x, kernel_hw, strides, pads)
    return out, (x, out)


def _max_pool_slices_bwd(kernel_hw, strides, pads, residuals, g):
    # Each output's gradient goes to the inputs equal to its maximum, split equally between exact ties. Every
    # term reads x and out directly, so XLA's fused loop does a few compares per element instead of re-deriving
    # the chain of maxima (which autodiff of the chain does: ~10x slower fwd+bwd at 64x64x64, batch 32).
    x, out = residuals
    (_, kw), (sh, sw) = kernel_hw, strides
    n, h, w, c = x.shape
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    _, ho, wo, _ = g.shape
    zero = jnp.zeros((), g.dtype)
    masks = [win == out for win in _pool_windows(x, kernel_hw, strides, pads)]
    share = g / functools.reduce(jnp.add, (m.astype(g.dtype) for m in masks))
    dx = None
    for i, mask in enumerate(masks):
        r, s = divmod(i, kw)
        part = jax.lax.pad(jnp.where(mask, share, zero), zero,
                           ((0, 0, 0), (r, hp - r - sh * (ho - 1) - 1, sh - 1),
                            (s, wp - s - sw * (wo - 1) - 1, sw - 1), (0, 0, 0)))
        dx = part if dx is None else dx + part
    (top, _), (left, _) = pads
    return (jax.lax.slice(dx, (0, top, left, 0), (n, top + h, left + w, c)),)


_max_pool_slices.defvjp(_max_pool_slices_fwd, _max_pool_slices_bwd)


def max_pool(x: jax.Array, window: int | Sequence[int] = 3, strides: int | Sequence[int] = 2,
             padding: int | Sequence[tuple[int, int]] = 1, lowering: Lowering | Literal["auto"] = "auto") -> jax.Array:
    """NHWC max pooling with -inf padding (torch ``MaxPool2d``), lowered per backend.

    On CPU it is the elementwise maximum of the window's strided slices ('im2col') with a custom gradient that
    routes each output's gradient to the inputs equal to it (split equally between exactly tied maxima, as JAX's
    own gradient of ``maximum`` does; torch gives it all to the first). XLA:CPU's autodiff of ``reduce_window``,
    or of the chain of maxima, costs several times the pooling itself.

    Example:
        >>> max_pool(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0].tolist()
        [[5.0, 7.0], [13.0, 15.0]]
    """
    (kh, kw), (sh, sw) = _pair(window, "window"), _pair(strides, "strides")
    pads = explicit_padding(padding, x.shape[1:3], (kh, kw), (sh, sw))
    if lowering == "auto":
        lowering = "im2col" if jax.default_backend() == "cpu" else "xla"
    if lowering == "xla":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, kh, kw, 1), (1, sh, sw, 1),
                                     ((0, 0), *pads, (0, 0)))
    if lowering != "im2col":
        raise ValueError(f"lowering must be 'auto', 'xla' or 'im2col', got {lowering!r}")
    pads = tuple(tuple(int(p) for p in pair) for pair in pads)
    return _max_pool_slices(x, (kh, kw), (sh, sw), pads)


class Conv(nnx.Module):
    """2-D convolution on NHWC inputs with an HWIO kernel; the lowering is chosen per backend and map size.

    Example:
        >>> conv = Conv(4, 8, 3, strides=2, rngs=nnx.Rngs(0))
        >>> conv(jnp.ones((2, 8, 8, 4))).shape
        (2, 4, 4, 8)
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int], *,
                 strides: int = 1, padding: str | int | Sequence[tuple[int, int]] = "SAME", use_bias: bool = False,
                 groups: int = 1, dtype=None, rngs: nnx.Rngs):
        if groups < 1 or in_features % groups or out_features % groups:
            raise ValueError(f"groups={groups} must divide in_features={in_features} and "
                             f"out_features={out_features}")
        ks = _pair(kernel_size, "kernel_size")
        init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
        self.kernel = nnx.Param(init(rngs.params(), ks + (in_features // groups, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        self.strides = _pair(strides, "strides")
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        self.padding = padding
        self.groups = groups
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        y = conv2d(x, kernel, self.strides, self.padding, self.groups)
        log = _CONV_LOG.get()
        if log is not None:
            pads = explicit_padding(self.padding, x.shape[1:3], kernel.shape[:2], self.strides)
            log.append((tuple(x.shape), tuple(y.shape), tuple(kernel.shape), self.groups, tuple(self.strides),
                        tuple(tuple(p) for p in pads)))
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y
