"""Orbax checkpoints of one trial: one per epoch, saved asynchronously, the latest few and the best kept.

Each checkpoint (orbax step = epoch number) holds three items:

- ``model``: ``{'params', 'batch_stats'}`` as plain nested dicts (enough to predict);
- ``train``: ``{'step', 'opt_state'}`` (with ``model``, enough to continue training exactly);
- ``meta``: a JSON dict describing the model (net name, classes, image size, mean/std, ...).

Retention keeps the ``max_to_keep`` latest epochs (to resume) plus the single best by ``metrics['reward']``.

    ckpt = TrialCheckpointer(trial_dir / 'checkpoints')
    ckpt.save(epoch, state, reward=val_acc, meta={'net': 'resnet18_v1', ...})
    state = ckpt.restore(ckpt.latest_epoch(), state)      # state is the template (shapes, shardings)
    ckpt.close()
"""
from __future__ import annotations

import pathlib
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from jaxgluon.train.state import TrainState


def _reward(metrics: dict[str, Any]) -> float:
    return float(metrics["reward"])


class TrialCheckpointer:
    """An Orbax ``CheckpointManager`` for one trial's directory (created if missing)."""

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 2, async_save: bool = True,
                 read_only: bool = False):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1 (the latest checkpoint is needed to resume), got {max_to_keep}")
        self.directory = pathlib.Path(directory).absolute()
        policy = ocm.AnyPreservationPolicy([
            ocm.LatestN(n=max_to_keep),
            ocm.BestN(get_metric_fn=_reward, reverse=False, n=1, keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            best_fn=_reward, best_mode="max", preservation_policy=policy, enable_async_checkpointing=async_save,
            create=not read_only, read_only=read_only)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_epoch(self) -> int | None:
        """The last saved epoch, or None for a fresh trial."""
        return self._manager.latest_step()

    def best_epoch(self) -> int | None:
        """The saved epoch with the highest reward."""
        return self._manager.best_step()

    def all_epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state: TrainState, *, reward: float, meta: dict[str, Any]) -> None:
        """Starts saving ``state`` as ``epoch`` (returns once the arrays are copied off the devices)."""
        args = ocp.args.Composite(
            model=ocp.args.StandardSave(state.variables()),
            train=ocp.args.StandardSave({"step": state.step, "opt_state": state.opt_state}),
            meta=ocp.args.JsonSave(meta),
        )
        if not self._manager.save(int(epoch), args=args, metrics={"reward": float(reward)}, force=True):
            raise RuntimeError(f"orbax declined to save epoch {epoch} in {self.directory}")

    def restore(self, epoch: int, template: TrainState) -> TrainState:
        """The full training state of ``epoch``, placed like ``template``'s arrays."""
        restored = self._manager.restore(int(epoch), args=ocp.args.Composite(
            model=ocp.args.StandardRestore(template.variables()),
            train=ocp.args.StandardRestore({"step": template.step, "opt_state": template.opt_state}),
        ))
        state = template.replace_variables(restored["model"])
        return state.replace(step=restored["train"]["step"], opt_state=restored["train"]["opt_state"])

    def restore_variables(self, epoch: int, template: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{'params', 'batch_stats'}`` of ``epoch`` (as saved when no template is given)."""
        arg = ocp.args.StandardRestore(template)
        return self._manager.restore(int(epoch), args=ocp.args.Composite(model=arg))["model"]

    def restore_meta(self, epoch: int) -> dict[str, Any]:
        return self._manager.restore(int(epoch), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def reward(self, epoch: int) -> float | None:
        """The validation reward recorded with ``epoch`` (None if it had none)."""
        metrics = self._manager.metrics(int(epoch))
        return None if metrics is None else _reward(metrics)

    def delete_from(self, epoch: int) -> None:
        """Deletes the checkpoints of ``epoch`` and later (a trial rewound to an earlier state, e.g. a PBT exploit)."""
        self._manager.wait_until_finished()
        for step in self.all_epochs():
            if step >= int(epoch):
                self._manager.delete(step)

    def wait(self) -> None:
        """Blocks until every asynchronous save has been written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "TrialCheckpointer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
