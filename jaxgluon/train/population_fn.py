"""``PopulationTrial``: the train function object for population trials and PBT (the protocol ``jaxgluon.tune``'s
population executor drives).

    from jaxgluon.train import PopulationTrial, TrialSpec
    train_fn = PopulationTrial(TrialSpec(train_data='digits', image_size=8, pretrained=False))
    ag.tune(train_fn, space, population_size=8, epochs=10)              # members trained as one program
    ag.tune(train_fn, space, search_strategy='pbt', population_size=8)  # Population Based Training on top

The protocol (duck-typed; ``tune`` imports nothing from ``train``):

- ``train_fn(config, reporter)``: an ordinary trial function (``train_trial`` with ``spec``), so the same object
  also runs under the in-process and process-pool executors.
- ``train_fn.population_key(config) -> hashable``: configs with equal keys share one compiled program.
- ``train_fn.make_population(config, max_epochs, capacity) -> population`` with ``capacity`` (int),
  ``members`` (``{trial_id: slot}``), ``add(trial_id, config, checkpoint_dir, seed, max_epochs, deadline,
  reported_epoch)`` (a member restarts from no own checkpoint newer than the last epoch it reported),
  ``remove(trial_id)``, ``run_epoch(deadline) -> [(trial_id, result dict | error str)] | None`` and ``close()``.

A config may carry ``config['pbt_clone'] = {'trial_id': Y, 'epoch': e, 'exploit': n}`` (what the PBT scheduler
sends with a resume): the trial starts as a copy of trial ``Y``'s weights and optimizer state at epoch ``e`` --
with its own hyperparameters from the rest of the config -- and continues at epoch ``e + 1``. In a population
that is an in-memory gather from ``Y``'s slot; here, in an ordinary trial, it goes through ``Y``'s checkpoint
(``Y``'s checkpoint_dir is the sibling directory named ``Y``, the runner's ``trials/<id>`` layout). The copy is
recorded in the checkpoint's meta (``pbt_exploit``), so a restart after a crash continues the copy, not redoes it.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping

from jaxgluon import data as jdata
from jaxgluon import models
from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.optim import TrialConfig, optimizer_from_trial
from jaxgluon.train.population import Population
from jaxgluon.train.population_config import CLONE_KEY, population_key, strip_clone, with_hyperparams
from jaxgluon.train.state import create_train_state
from jaxgluon.train.trial import CHECKPOINT_SUBDIR, TrialSpec, _batch_size, _json_plain, train_trial
from jaxgluon.train.steps import make_mesh


@dataclasses.dataclass(frozen=True)
class PopulationTrial:
    """A picklable train function that can also train its configs as populations (module docstring).

    Attributes:
      spec: how trials get data and train (``TrialSpec``).
      shared_batches: members of a population train on the same batches (one input pipeline: faster on a busy
        host) instead of each on its own data order (its trial seed's batches, as an ordinary trial).
    """

    spec: TrialSpec
    shared_batches: bool = False
    vmap_members: int | str = "auto"

    def __call__(self, config: Mapping[str, Any], reporter: Any) -> None:
        clone = config.get(CLONE_KEY)
        resume_at_most = None   # train_trial's default: the trial's last report
        if clone is not None:
            clone_through_checkpoint(strip_clone(config), clone, reporter, self.spec)
            # the copy is a checkpoint to keep, though this trial never reported its epoch
            resume_at_most = max(getattr(reporter, "reported_epoch", 0) or 0, int(clone["epoch"]))
        train_trial(strip_clone(config), reporter, self.spec, resume_at_most=resume_at_most)

    def population_key(self, config: Mapping[str, Any]) -> tuple:
        return population_key(config, self.spec)

    def make_population(self, config: Mapping[str, Any], max_epochs: int, capacity: int | str) -> Population:
        return Population(self.spec, config, max_epochs, capacity=capacity, shared_batches=self.shared_batches,
                          vmap_members=self.vmap_members)


def clone_through_checkpoint(config: dict, clone: Mapping[str, Any], reporter: Any, spec: TrialSpec) -> None:
    """Writes trial ``clone['trial_id']``'s state at ``clone['epoch']`` as this trial's checkpoint of that epoch,
    with this config's optimizer hyperparameters, so ``train_trial`` continues from it. Does nothing when this
    trial's latest checkpoint already records the same copy (a restart)."""
    own_dir = pathlib.Path(reporter.checkpoint_dir)
    source, epoch = int(clone["trial_id"]), int(clone["epoch"])
    with TrialCheckpointer(own_dir / CHECKPOINT_SUBDIR, max_to_keep=spec.keep_checkpoints) as own:
        latest = own.latest_epoch()
        if latest and own.restore_meta(latest).get("pbt_exploit") == clone.get("exploit"):
            return
        trial = TrialConfig.from_dict(config)
        train_src, _ = spec.sources()
        batch_size = _batch_size(trial.batch_size or spec.batch_size, make_mesh().size, len(train_src))
        steps_per_epoch = jdata.steps_per_epoch(len(train_src), batch_size)
        tx = optimizer_from_trial(trial, steps_per_epoch, int(reporter.max_epochs))
        model = models.get_model(trial.net, len(train_src.class_names), pretrained=False)
        template = create_train_state(model, tx)
        src_dir = own_dir.parent / str(source) / CHECKPOINT_SUBDIR
        with TrialCheckpointer(src_dir, read_only=True) as src:
            if epoch not in src.all_epochs():
                raise FileNotFoundError(f"PBT clone source trial {source} has no checkpoint of epoch {epoch} in "
                                        f"{src_dir} (kept: {src.all_epochs()})")
            state, meta = src.restore(epoch, template), src.restore_meta(epoch)
        state = with_hyperparams(state, trial, steps_per_epoch, int(reporter.max_epochs),
                                 bool(meta.get("freeze_batchnorm", False)))
        meta.update(config=_json_plain(config), seed=int(reporter.seed), pbt_exploit=clone.get("exploit"),
                    pbt_source=source)
        own.delete_from(epoch)
        own.save(epoch, state, reward=src_reward(src_dir, epoch), meta=meta)


def src_reward(src_dir: pathlib.Path, epoch: int) -> float:
    with TrialCheckpointer(src_dir, read_only=True) as src:
        reward = src.reward(epoch)
    return 0.0 if reward is None else reward
