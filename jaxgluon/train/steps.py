"""Pure train/eval steps and their data-parallel compilation over a device mesh.

``train_step`` and ``eval_step`` are pure functions of ``(state, batch)``; a batch is
``{'image': float32 [B,H,W,3], 'label': int32 [B], 'mask': bool [B]}`` where ``mask=False`` rows are padding that
counts nowhere. Metrics are masked sums (``loss``, ``correct``, ``count``) so that epoch totals are exact.
The compiled eval step also returns the batch's class probabilities (:data:`PROBS`, ``[B, C]``, split like the
batch; :func:`eval_predict_step`): a trial keeps its validation predictions with each checkpoint, so the ensemble
stage need not predict them again. :func:`sum_metrics` leaves them out.

:func:`compile_steps` jits both once over a 1-D ``Mesh`` with axis ``'data'``: the batch is split across the
devices, the state replicated, and the train step donates its input state. Under ``jit`` with a sharded batch the
BatchNorm batch statistics are reductions over the *global* batch, exactly as on one device.

    steps = compile_steps(make_mesh())
    state = steps.replicate(create_train_state(model, tx))
    for batch in loader:
        state, metrics = steps.train_step(state, steps.shard(batch))
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxgluon.models.common import BatchNorm, frozen_batchnorm
from jaxgluon.train.state import TrainState

Batch = Mapping[str, Any]
Metrics = dict[str, jax.Array]
#: The key of the compiled eval step's per-row class probabilities (not a sum: :func:`sum_metrics` skips it).
PROBS = "probs"


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float | jax.Array = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy in float32, with optional label smoothing (a number or an array)."""
    logits = logits.astype(jnp.float32)
    if isinstance(label_smoothing, (int, float)) and label_smoothing == 0.0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    is_number = isinstance(label_smoothing, (int, float))
    # float32 like an array's, so a number and a population's per-member array give the same bits
    label_smoothing = jnp.asarray(label_smoothing, jnp.float32)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    smoothed = optax.softmax_cross_entropy(logits, targets)
    if is_number:
        return smoothed
    # an array (one per population member under vmap/map): where it is 0, exactly the unsmoothed loss
    return jnp.where(label_smoothing == 0.0, optax.softmax_cross_entropy_with_integer_labels(logits, labels), smoothed)


def _masked_sums(logits: jax.Array, losses: jax.Array, labels: jax.Array, mask: jax.Array) -> Metrics:
    m = mask.astype(jnp.float32)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return {"loss": jnp.sum(losses * m), "correct": jnp.sum(correct * m), "count": jnp.sum(m)}


def _flag_aware(graphdef: Any, params: Any, batch_stats: Any) -> bool:
    """Whether every BatchNorm of the model reads the runtime freeze flag (jaxgluon's ``models.common.BatchNorm``)."""
    model = nnx.merge(graphdef, params, batch_stats, copy=True)
    return all(type(node) is BatchNorm for _, node in nnx.iter_graph(model) if isinstance(node, nnx.BatchNorm))


def train_step(state: TrainState, batch: Batch, label_smoothing: float | None = None,
               freeze_batchnorm: bool | None = None) -> tuple[TrainState, Metrics]:
    """One optimizer step on the masked mean loss. BatchNorm uses (and updates with) batch statistics, or with
    ``freeze_batchnorm`` stays in inference mode (running statistics, not updated; its scale and shift still
    train): the usual way to fine-tune a pretrained net on little data, whose augmented batches would otherwise
    drag the pretrained statistics away from what the features were trained with.

    ``label_smoothing`` and ``freeze_batchnorm`` come from ``state.hparams`` (inputs of the compiled program, so
    one program serves every value); given here, they are constants of the program instead."""
    smoothing = state.hparams["label_smoothing"] if label_smoothing is None else float(label_smoothing)
    freeze = state.hparams["freeze_batchnorm"] if freeze_batchnorm is None else bool(freeze_batchnorm)

    def forward(params, mode):
        """(logits, new batch stats); ``mode``: True/False frozen or not, or a bool array read by BatchNorm."""
        model = nnx.merge(state.graphdef, params, state.batch_stats, copy=True)
        model.train()
        if mode is True:
            model.set_attributes(nnx.BatchNorm, use_running_average=True, raise_if_not_found=False)
        with frozen_batchnorm(None if isinstance(mode, bool) else mode):
            logits = model(batch["image"]).astype(jnp.float32)
        _, _, batch_stats = nnx.split(model, nnx.Param, ...)
        return logits, batch_stats

    def loss_fn(params):
        if isinstance(freeze, bool) or _flag_aware(state.graphdef, params, state.batch_stats):
            logits, batch_stats = forward(params, freeze)
        else:  # a foreign nnx.BatchNorm ignores the flag: both forms in one program, one runs
            logits, batch_stats = jax.lax.cond(freeze, lambda p: forward(p, True), lambda p: forward(p, False),
                                               params)
        losses = cross_entropy(logits, batch["label"], smoothing)
        sums = _masked_sums(logits, losses, batch["label"], batch["mask"])
        return sums["loss"] / jnp.maximum(sums["count"], 1.0), (sums, batch_stats)

    grads, (sums, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
    return new_state, sums


def eval_step(state: TrainState, batch: Batch) -> Metrics:
    """Masked loss/correct/count sums with BatchNorm in inference mode."""
    sums = eval_predict_step(state, batch)
    del sums[PROBS]
    return sums


def eval_predict_step(state: TrainState, batch: Batch) -> Metrics:
    """:func:`eval_step`'s sums and, under :data:`PROBS`, the softmax of every row ``[B, C]`` float32 (padding
    rows included: drop them with the batch's ``mask``)."""
    model = nnx.merge(state.graphdef, state.params, state.batch_stats)
    model.eval()
    logits = model(batch["image"]).astype(jnp.float32)
    losses = cross_entropy(logits, batch["label"])
    return {**_masked_sums(logits, losses, batch["label"], batch["mask"]), PROBS: jax.nn.softmax(logits)}


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``'data'`` over ``devices`` (default: every local device)."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    return Mesh(np.array(devices), ("data",))


def pad_batch(batch: Batch, multiple: int) -> dict[str, np.ndarray]:
    """Pads every array of ``batch`` along axis 0 to a multiple of ``multiple``; padded rows get ``mask=False``.

    A batch without a ``'mask'`` gets one (True for its real rows).

    >>> b = pad_batch({'label': np.arange(3), 'image': np.zeros((3, 2, 2, 3))}, 2)
    >>> b['mask'].tolist(), b['image'].shape
    ([True, True, True, False], (4, 2, 2, 3))
    """
    # a jax.Array (batch_augment='device' batches) stays where it is unless it needs padding
    out = {k: v if isinstance(v, jax.Array) else np.asarray(v) for k, v in batch.items()}
    n = len(out["label"])
    if "mask" not in out:
        out["mask"] = np.ones((n,), bool)
    pad = (-n) % multiple
    if pad:
        out = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in out.items()}
    return out


def features_step(state: TrainState, images: jax.Array) -> jax.Array:
    """The model's pooled features (``model.features``, eval mode) as float32 [B, D]."""
    model = nnx.merge(state.graphdef, state.params, state.batch_stats)
    model.eval()
    return model.features(images).astype(jnp.float32)


class CompiledSteps(NamedTuple):
    """The jitted steps over one mesh plus the helpers that place data on it."""

    mesh: Mesh
    train_step: Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
    eval_step: Callable[[TrainState, Batch], Metrics]          # eval_predict_step: sums and PROBS
    features_step: Callable[[TrainState, jax.Array], jax.Array] | None = None

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def shard(self, batch: Batch) -> dict[str, jax.Array]:
        """Pads a host batch to a multiple of the device count and splits it along the mesh axis ``'data'``.

        Padded rows are masked out of the loss and metrics, but a training step's BatchNorm would still see them:
        give training batches a size divisible by the device count (``train_trial`` does).
        """
        padded = pad_batch(batch, self.mesh.size)
        sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        return {k: jax.device_put(v, sharding) for k, v in padded.items()}

    def replicate(self, tree: Any) -> Any:
        """Places a pytree (e.g. a TrainState) on every device of the mesh."""
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))


def compile_steps(mesh: Mesh, *, label_smoothing: float | None = None,
                  freeze_batchnorm: bool | None = None) -> CompiledSteps:
    """Data-parallel jitted ``train_step`` (state donated), ``eval_predict_step`` (as ``eval_step``) and
    ``features_step`` over ``mesh``.

    ``label_smoothing`` / ``freeze_batchnorm`` default to the state's ``hparams`` (program inputs); given, they are
    baked into this train step. Each call makes new ``jit`` objects: to share compiled programs between the trials
    of a process, take them from :data:`PROGRAMS` instead.

    >>> steps = compile_steps(make_mesh(), label_smoothing=0.1)
    >>> steps.mesh.axis_names
    ('data',)
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("data"))
    step = train_step
    if label_smoothing is not None or freeze_batchnorm is not None:
        step = functools.partial(train_step, label_smoothing=label_smoothing, freeze_batchnorm=freeze_batchnorm)
    train = jax.jit(step, in_shardings=(replicated, split), out_shardings=(replicated, replicated), donate_argnums=0)
    sums = {"loss": replicated, "correct": replicated, "count": replicated}
    evaluate = jax.jit(eval_predict_step, in_shardings=(replicated, split), out_shardings={**sums, PROBS: split})
    features = jax.jit(features_step, in_shardings=(replicated, split), out_shardings=split)
    return CompiledSteps(mesh=mesh, train_step=train, eval_step=evaluate, features_step=features)


class StepPrograms:
    """The process's jitted steps, one :class:`CompiledSteps` per mesh (its devices and axis names).

    ``jax.jit`` keeps one executable per input structure inside each jitted function, so with these shared every
    distinct (net, image size, batch size, dtype, mesh) is traced and compiled once per process, and every later
    trial of that shape runs the same executables (hyperparameters are state, see ``TrainState.hparams`` and
    ``train.optim``). Owned by :mod:`jaxgluon.train.steps` (the instance :data:`PROGRAMS`); ``train_trial`` uses it.
    """

    def __init__(self) -> None:
        self._steps: dict[tuple, CompiledSteps] = {}

    def steps(self, mesh: Mesh) -> CompiledSteps:
        key = (tuple(d.id for d in mesh.devices.flat), tuple(mesh.axis_names), mesh.devices.shape)
        if key not in self._steps:
            self._steps[key] = compile_steps(mesh)
        return self._steps[key]

    def clear(self) -> None:
        """Forgets every program (the next trial compiles again)."""
        self._steps.clear()


PROGRAMS = StepPrograms()


def sum_metrics(metrics: Sequence[Metrics]) -> dict[str, float]:
    """Adds per-step metric dicts on the host (one device transfer for all of them); :data:`PROBS` is not a sum
    and is left out."""
    if not metrics:
        return {"loss": 0.0, "correct": 0.0, "count": 0.0}
    host = jax.device_get([{k: v for k, v in m.items() if k != PROBS} for m in metrics])
    return {k: float(np.sum([m[k] for m in host], dtype=np.float64)) for k in host[0]}
