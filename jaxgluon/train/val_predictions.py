"""Validation predictions kept with a trial's checkpoints, for the ensemble stage.

A trial scores every epoch (and its linear-probe model) on its validation split with the compiled eval step, which
also returns each row's class probabilities (``jaxgluon.train.steps.PROBS``). :class:`ValidationPass` gathers
them beside the sums; the trial saves them with that epoch's checkpoint (``TrialCheckpointer.save(...,
predictions=...)``), so retention keeps them exactly as long as the model they came from.
``jaxgluon.task.final_model`` reads them back with :func:`stored_predictions` instead of loading each candidate's
forward pass and predicting the validation images again: on 2 CPU cores that was 17-25 s of a 600 s fit (150
images at 224 px, 10 candidates of 3 nets), and a deadline could stop it before the last candidates.

    val = ValidationPass()
    for batch in val_loader:
        val.add(steps, state, batch)
    sums, predictions = val.sums(), val.predictions()      # predictions: {'probs', 'labels'} or None
    ckpt.save(epoch, state, reward=..., meta=..., predictions=predictions)
    probs, labels = stored_predictions(trial_dir, epoch)   # or None

Predictions over :data:`MAX_STORED_VALUES` values (images x classes) are not kept: the ensemble stage predicts
those itself, as it does for checkpoints saved without them (by a jaxgluon before they were kept). Population
members (``jaxgluon.train.population``) keep theirs the same way.
"""
from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from jaxgluon.train.checkpoint import CHECKPOINT_SUBDIR, TrialCheckpointer
from jaxgluon.train.state import TrainState
from jaxgluon.train.steps import PROBS, CompiledSteps, sum_metrics

#: The most ``images x classes`` values kept per checkpoint (16 MiB of float32): a 10,000-image validation split
#: of 400 classes, far above the small-data fits whose ensembles the stored predictions speed up.
MAX_STORED_VALUES = 2 ** 22


class ValidationPass:
    """The eval-step outputs of one pass over a validation loader, with each batch's mask and labels."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, jax.Array]] = []
        self._masks: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    @classmethod
    def over(cls, steps: CompiledSteps, state: TrainState, loader: Any) -> "ValidationPass":
        """The pass over every batch of ``loader``."""
        val = cls()
        for batch in loader:
            val.add(steps, state, batch)
        return val

    def add(self, steps: CompiledSteps, state: TrainState, batch: dict[str, Any]) -> None:
        """Dispatches the eval step on one host batch (asynchronously, like the step itself)."""
        self._masks.append(np.asarray(batch["mask"], bool))
        self._labels.append(np.asarray(batch["label"]))
        self.outputs.append(steps.eval_step(state, steps.shard(batch)))

    def sums(self) -> dict[str, float]:
        """``{'loss', 'correct', 'count'}`` over the pass (``jaxgluon.train.steps.sum_metrics``)."""
        return sum_metrics(self.outputs)

    def predictions(self, cap: bool = True) -> dict[str, np.ndarray] | None:
        """``{'probs': float32 [N, C], 'labels': int32 [N]}`` of the unpadded rows in loader order, or None when
        the pass is empty or (``cap``: predictions to keep) larger than :data:`MAX_STORED_VALUES`."""
        if not self.outputs or (cap and not fits(self._masks, self.outputs[0][PROBS].shape[-1])):
            return None
        return gather(jax.device_get([out[PROBS] for out in self.outputs]), self._masks, self._labels)


def fits(masks: list[np.ndarray], num_classes: int) -> bool:
    """Whether a pass's predictions (its batches' ``mask`` rows x ``num_classes``) are small enough to keep."""
    return sum(int(np.sum(m)) for m in masks) * int(num_classes) <= MAX_STORED_VALUES


def gather(probs: list[Any], masks: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, np.ndarray]:
    """One pass's predictions from its batches' host probabilities ``[B', C]`` (``B' >= len(mask)``: the eval
    step's own padding rows come last), ``mask`` and ``label`` arrays: the rows the mask keeps, in order."""
    kept = np.concatenate([np.asarray(p, np.float32)[:len(m)][m] for p, m in zip(probs, masks)])
    return {"probs": kept, "labels": np.concatenate([np.asarray(y)[m] for y, m in zip(labels, masks)]).astype(np.int32)}


def stored_predictions(trial_dir: str | pathlib.Path, epoch: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(probabilities [N, C] float64, labels [N] int64)`` saved with a trial's checkpoint of ``epoch``, or None
    when it has none (module docstring) or the trial has no such checkpoint."""
    directory = pathlib.Path(trial_dir) / CHECKPOINT_SUBDIR
    if not (directory / str(int(epoch))).is_dir():
        return None
    with TrialCheckpointer(directory, read_only=True) as ckpt:
        saved = ckpt.restore_predictions(epoch)
    if saved is None:
        return None
    return saved["probs"].astype(np.float64), saved["labels"].astype(np.int64)
