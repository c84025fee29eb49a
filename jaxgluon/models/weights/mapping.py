"""Map PyTorch state dicts onto the Flax NNX modules of the zoo.

Conversion is by name and layout, independent of the model: the zoo's modules carry torchvision/timm names, a
per-family ``rename`` fixes the few that differ, and each tensor changes layout by what it is
(conv ``weight`` OIHW -> ``kernel`` HWIO, linear ``weight`` (out, in) -> ``kernel`` (in, out), BatchNorm
``weight``/``bias``/``running_mean``/``running_var`` -> ``scale``/``bias``/``mean``/``var``). The result, a flat
``{'layer1.0.conv1.kernel': array}`` dict, is what gets cached; :func:`assign_weights` then checks it against the
model (every variable covered, every shape equal) and writes it in.

Example::

    flat = torch_to_flax(load_torch_checkpoint(path), rename=strip_prefix("module."))
    assign_weights(model, flat, skip_prefixes=("fc.",))    # keep a fresh classifier
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["torch_to_flax", "assign_weights", "model_variables", "classifier_classes", "strip_prefix",
           "WeightMismatchError"]

Rename = Callable[[str], str]


class WeightMismatchError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped tensors (all listed)."""


def strip_prefix(*prefixes: str) -> Rename:
    """A rename that drops any of ``prefixes`` (e.g. DataParallel's ``module.``) from the front of a key."""
    def rename(key: str) -> str:
        for prefix in prefixes:
            if key.startswith(prefix):
                return key[len(prefix):]
        return key
    return rename


_BN_NAMES = {"running_mean": "mean", "running_var": "var"}


def torch_to_flax(state_dict: Mapping[str, np.ndarray], rename: Rename = lambda k: k) -> dict[str, np.ndarray]:
    """Convert a torch ``{name: array}`` state dict to flat Flax keys and layouts (float32)."""
    flat: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        value = np.asarray(value)
        if key.endswith("num_batches_tracked"):
            continue
        module, _, leaf = rename(key).rpartition(".")
        if leaf == "weight" and value.ndim == 4:
            leaf, value = "kernel", value.transpose(2, 3, 1, 0)
        elif leaf == "weight" and value.ndim == 2:
            leaf, value = "kernel", value.T
        elif leaf == "weight" and value.ndim == 1:
            leaf = "scale"
        elif leaf in _BN_NAMES:
            leaf = _BN_NAMES[leaf]
        elif leaf != "bias":
            raise WeightMismatchError(f"don't know how to map tensor {key!r} of shape {value.shape}")
        flat[f"{module}.{leaf}" if module else leaf] = np.ascontiguousarray(value, dtype=np.float32)
    return flat


def model_variables(model: nnx.Module) -> dict[str, nnx.Variable]:
    """The model's parameters and batch statistics by dotted path (``'layer1.0.bn1.mean'``), live references."""
    out = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, (nnx.Param, nnx.BatchStat)):
            out[".".join(map(str, path))] = node
    return out


def classifier_classes(flat: Mapping[str, np.ndarray], classifier: str = "fc") -> int | None:
    """Number of classes of the checkpoint's classifier (``<classifier>.kernel`` is (features, classes))."""
    kernel = flat.get(f"{classifier}.kernel")
    return None if kernel is None else int(kernel.shape[-1])


def assign_weights(model: nnx.Module, flat: Mapping[str, np.ndarray], *, skip_prefixes: Iterable[str] = ()) -> None:
    """Write ``flat`` into ``model``'s variables; variables under ``skip_prefixes`` keep their initial values.

    Raises WeightMismatchError (listing every problem) unless checkpoint and model match exactly elsewhere.
    """
    skip = tuple(skip_prefixes)
    targets = {k: v for k, v in model_variables(model).items() if not k.startswith(skip)}
    given = {k: v for k, v in flat.items() if not k.startswith(skip)}
    missing = sorted(set(targets) - set(given))
    unexpected = sorted(set(given) - set(targets))
    wrong = [f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(targets[k].shape)}"
             for k in sorted(set(targets) & set(given)) if tuple(given[k].shape) != tuple(targets[k].shape)]
    if missing or unexpected or wrong:
        def show(items):
            return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "") or "none"
        raise WeightMismatchError(
            f"checkpoint does not fit {type(model).__name__}: missing {show(missing)}; unexpected "
            f"{show(unexpected)}; wrong shapes {show(wrong)}. Is it a checkpoint of this architecture?")
    for key, var in targets.items():
        var.set_value(jnp.asarray(given[key], dtype=var.dtype))

