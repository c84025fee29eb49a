"""TrainState: an NNX model split into a pytree, with its optimizer state.

The model's graph definition and the optax transformation are static (pytree metadata), so the state can be
passed through ``jax.jit`` and donated; ``params`` are the ``nnx.Param`` variables (always float32: the master
weights under mixed precision) and ``batch_stats`` every other variable (BatchNorm running statistics, RNG
counters). ``hparams`` holds the train step's own inputs that are not optimizer state: ``label_smoothing``
(float32) and ``freeze_batchnorm`` (bool), arrays so that trials differing in them share one compiled step.

    state = create_train_state(model, optax.sgd(0.1))
    model = state.model(train=False)      # an nnx.Module again, e.g. for prediction
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct


@struct.dataclass
class TrainState:
    step: jax.Array
    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState
    hparams: dict[str, Any]
    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def model(self, *, train: bool = False) -> nnx.Module:
        """The NNX module with this state's variables, in train or eval mode."""
        module = nnx.merge(self.graphdef, self.params, self.batch_stats)
        if train:
            module.train()
        else:
            module.eval()
        return module

    def variables(self) -> dict[str, Any]:
        """``{'params': ..., 'batch_stats': ...}`` as plain nested dicts of arrays (for saving)."""
        return {"params": nnx.to_pure_dict(self.params), "batch_stats": nnx.to_pure_dict(self.batch_stats)}

    def replace_variables(self, variables: dict[str, Any]) -> "TrainState":
        """A copy with params/batch_stats taken from plain nested dicts shaped like :meth:`variables`."""
        params, batch_stats = self.params, self.batch_stats
        params = jax.tree.map(lambda x: x, params)
        batch_stats = jax.tree.map(lambda x: x, batch_stats)
        nnx.replace_by_pure_dict(params, variables["params"])
        nnx.replace_by_pure_dict(batch_stats, variables["batch_stats"])
        return self.replace(params=params, batch_stats=batch_stats)


def _to_float32(x: jax.Array) -> jax.Array:
    if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != jnp.float32:
        return np.asarray(x, np.float32)
    return x


def step_hparams(label_smoothing: float = 0.0, freeze_batchnorm: bool = False) -> dict[str, np.ndarray]:
    """The ``hparams`` of a :class:`TrainState` (host arrays)."""
    return {"label_smoothing": np.asarray(label_smoothing, np.float32),
            "freeze_batchnorm": np.asarray(bool(freeze_batchnorm), np.bool_)}


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, *, label_smoothing: float = 0.0,
                       freeze_batchnorm: bool = False) -> TrainState:
    """Splits ``model`` (put in train mode) and initialises ``tx`` on its float32 parameters.

    Runs no device program for jaxgluon's own optimizers (their state is built with numpy); place the result
    with ``CompiledSteps.replicate``.

    >>> from flax import nnx
    >>> state = create_train_state(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), optax.sgd(0.1))
    >>> int(state.step)
    0
    """
    model.train()
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, ...)
    params = jax.tree.map(_to_float32, params)
    return TrainState(step=np.zeros((), np.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), hparams=step_hparams(label_smoothing, freeze_batchnorm),
                      graphdef=graphdef, tx=tx)
