"""Orbax checkpoints of one trial: one per epoch, saved asynchronously, the latest few and the best kept.

Each checkpoint (orbax step = epoch number) holds three items:

- ``model``: ``{'params', 'batch_stats'}`` as plain nested dicts (enough to predict);
- ``train``: ``{'step', 'opt_state'}`` (with ``model``, enough to continue training exactly);
- ``meta``: a JSON dict describing the model (net name, classes, image size, mean/std, ...);
- ``predictions`` (optional): ``{'probs': float32 [N, C], 'labels': int32 [N]}``, the model's predictions on its
  trial's validation split (``jaxgluon.train.val_predictions``), so the ensemble stage reads them instead of
  predicting again. Retention deletes them with their checkpoint.

Retention keeps the ``max_to_keep`` latest epochs (to resume), the best fine-tuned epoch by ``metrics['reward']``
(the latest on ties, as ``best_epoch``), and epoch 0 (a trial's linear-probe model) when there is one. So a
trial whose probe scored best still keeps its best fine-tuned net: both are ensemble candidates.

With ``background=True`` (a trial's own checkpointer) ``save`` only copies the arrays to host memory; Orbax's own
work -- its synchronous part cost 0.4-1.1 s per save of efficientnet_lite0 on CPU and ~0.7 s on an H200, as long as
the epoch itself there -- runs in one writer thread. Every other method first waits for that writer, so reads see
every save made before them; ``save(..., on_written=f)`` calls ``f()`` in the writer once the checkpoint is on disk.

    ckpt = TrialCheckpointer(trial_dir / 'checkpoints')
    ckpt.save(epoch, state, reward=val_acc, meta={'net': 'resnet18_v1', ...})
    state = ckpt.restore(ckpt.latest_epoch(), state)      # state is the template (shapes, shardings)
    ckpt.close()
"""
from __future__ import annotations

import concurrent.futures
import logging
import pathlib
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from jaxgluon.train.state import TrainState

log = logging.getLogger(__name__)



class _ReadOnlyNotices(logging.Filter):
    """Drops the warnings Orbax logs (through absl) for every read-only ``CheckpointManager``: that its options
    were adjusted to read-only and that the directory is read-only. ``TrialCheckpointer(read_only=True)`` asks for
    exactly that, and every ``load_trained`` / ensemble candidate printed two to eight such lines."""

    PREFIXES = ("CheckpointManagerOptions.read_only=True", "Given directory is read only")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.PREFIXES))


logging.getLogger("absl").addFilter(_ReadOnlyNotices())

#: The folder of a trial's checkpoints inside its directory.
CHECKPOINT_SUBDIR = "checkpoints"
#: The checkpoint item holding an epoch's validation predictions (module docstring).
PREDICTIONS_ITEM = "predictions"
#: The epoch number of a trial's linear-probe model (``jaxgluon.train.trial``): always kept (module docstring).
PROBE_EPOCH = 0


def _reward(metrics: dict[str, Any]) -> float:
    return float(metrics["reward"])


def _fine_tuned_reward(metrics: dict[str, Any]) -> float:
    """The reward of a fine-tuned epoch; the probe (epoch 0, kept anyway) ranks below every one."""
    return _reward(metrics) if metrics.get("fine_tuned", True) else float("-inf")


class TrialCheckpointer:
    """An Orbax ``CheckpointManager`` for one trial's directory (created if missing)."""

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 2, async_save: bool = True,
                 read_only: bool = False, background: bool = False):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1 (the latest checkpoint is needed to resume), got {max_to_keep}")
        self.directory = pathlib.Path(directory).absolute()
        policy = ocm.AnyPreservationPolicy([
            ocm.LatestN(n=max_to_keep),
            ocm.BestN(get_metric_fn=_fine_tuned_reward, reverse=False, n=1, keep_checkpoints_without_metrics=False),
            # epoch 0 is the trial's linear-probe model: an ensemble candidate beside its best fine-tuned epoch
            # (jaxgluon.task.final_model), which retention by recency and reward alone deleted by epoch 3; and when
            # the probe scored best, ranking it with the others deleted the best fine-tuned epoch
            ocm.CustomSteps(steps=[PROBE_EPOCH]),
        ])
        options = ocp.CheckpointManagerOptions(
            best_fn=_reward, best_mode="max", preservation_policy=policy, enable_async_checkpointing=async_save,
            create=not read_only, read_only=read_only)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._writer = (concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxgluon-ckpt")
                        if background else None)
        self._pending: concurrent.futures.Future | None = None

    def _flush(self) -> None:
        """Waits for the writer's save in flight, if any; re-raises its error here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def latest_epoch(self) -> int | None:
        """The last saved epoch, or None for a fresh trial."""
        self._flush()
        return self._manager.latest_step()

    def resume_epoch(self, reported: int | None = None) -> int | None:
        """The epoch a restarted trial continues from (None: start fresh): its latest checkpoint, but none newer
        than ``reported``, the last epoch the trial reported (``Reporter.reported_epoch``). A process killed after
        an epoch's checkpoint but before its report leaves one such epoch; it is deleted, so the trial trains and
        reports it again instead of skipping its report (the scheduler would never judge that epoch)."""
        latest = self.latest_epoch()
        if latest is None or reported is None or latest <= reported:
            return latest
        kept = [e for e in self.all_epochs() if e <= reported]
        if reported > 0 and not kept:
            log.warning("%s: no checkpoint at or before the last reported epoch %d survives (retention); resuming "
                        "from epoch %d, whose report is lost", self.directory, reported, latest)
            return latest
        self.delete_from(reported + 1)
        return max(kept, default=None)

    def best_epoch(self) -> int | None:
        """The saved epoch with the highest reward."""
        self._flush()
        return self._manager.best_step()

    def all_epochs(self) -> list[int]:
        self._flush()
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state: TrainState, *, reward: float, meta: dict[str, Any],
             on_written: Callable[[], None] | None = None, predictions: dict[str, Any] | None = None) -> None:
        """Starts saving ``state`` as ``epoch`` (returns once the arrays are copied off the devices; with
        ``background``, before Orbax starts). ``on_written()`` runs once the checkpoint is complete on disk.
        ``predictions``: host arrays kept as the :data:`PREDICTIONS_ITEM` item (module docstring)."""
        variables, train = state.variables(), {"step": state.step, "opt_state": state.opt_state}
        if self._writer is None:
            self._save(int(epoch), variables, train, float(reward), meta, on_written, predictions)
            return
        self._flush()   # one save in flight at most (and its error surfaces here)
        variables, train = jax.device_get((variables, train))   # the host copy: later steps may reuse the buffers
        self._pending = self._writer.submit(self._save, int(epoch), variables, train, float(reward), meta, on_written,
                                            predictions)

    def _save(self, epoch: int, variables: Any, train: Any, reward: float, meta: dict[str, Any],
              on_written: Callable[[], None] | None, predictions: dict[str, Any] | None = None) -> None:
        items = dict(model=ocp.args.StandardSave(variables), train=ocp.args.StandardSave(train),
                     meta=ocp.args.JsonSave(meta))
        if predictions is not None:
            items[PREDICTIONS_ITEM] = ocp.args.StandardSave(predictions)
        args = ocp.args.Composite(**items)
        metrics = {"reward": reward, "fine_tuned": epoch != PROBE_EPOCH}
        if not self._manager.save(epoch, args=args, metrics=metrics, force=True):
            raise RuntimeError(f"orbax declined to save epoch {epoch} in {self.directory}")
        if on_written is not None:
            self._manager.wait_until_finished()
            on_written()

    def restore(self, epoch: int, template: TrainState) -> TrainState:
        """The full training state of ``epoch``, placed like ``template``'s arrays."""
        self._flush()
        restored = self._manager.restore(int(epoch), args=ocp.args.Composite(
            model=ocp.args.StandardRestore(template.variables()),
            train=ocp.args.StandardRestore({"step": template.step, "opt_state": template.opt_state}),
        ))
        state = template.replace_variables(restored["model"])
        return state.replace(step=restored["train"]["step"], opt_state=restored["train"]["opt_state"])

    def restore_variables(self, epoch: int, template: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{'params', 'batch_stats'}`` of ``epoch`` (as saved when no template is given)."""
        self._flush()
        arg = ocp.args.StandardRestore(template)
        return self._manager.restore(int(epoch), args=ocp.args.Composite(model=arg))["model"]

    def restore_meta(self, epoch: int) -> dict[str, Any]:
        self._flush()
        return self._manager.restore(int(epoch), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore_predictions(self, epoch: int) -> dict[str, np.ndarray] | None:
        """The validation predictions saved with ``epoch`` (``{'probs', 'labels'}`` as numpy arrays), or None when
        it has none (saved without them, or by a jaxgluon before they were kept)."""
        self._flush()
        if not (self.directory / str(int(epoch)) / PREDICTIONS_ITEM).is_dir():
            return None
        restored = self._manager.restore(int(epoch), args=ocp.args.Composite(
            **{PREDICTIONS_ITEM: ocp.args.StandardRestore()}))[PREDICTIONS_ITEM]
        return {key: np.asarray(value) for key, value in restored.items()}

    def reward(self, epoch: int) -> float | None:
        """The validation reward recorded with ``epoch`` (None if it had none)."""
        self._flush()
        metrics = self._manager.metrics(int(epoch))
        return None if metrics is None else _reward(metrics)

    def delete_from(self, epoch: int) -> None:
        """Deletes the checkpoints of ``epoch`` and later (a trial rewound to an earlier state, e.g. a PBT exploit)."""
        self._flush()
        self._manager.wait_until_finished()
        for step in self.all_epochs():
            if step >= int(epoch):
                self._manager.delete(step)

    def wait(self) -> None:
        """Blocks until every asynchronous save has been written."""
        self._flush()
        self._manager.wait_until_finished()

    def close(self) -> None:
        try:
            self._flush()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
            self._manager.wait_until_finished()
            self._manager.close()

    def __enter__(self) -> "TrialCheckpointer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
