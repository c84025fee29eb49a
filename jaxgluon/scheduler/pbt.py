"""Population Based Training (Jaderberg et al. 2017, "Population Based Training of Neural Networks").

A population of trials trains concurrently. Every ``perturbation_interval`` epochs a reporting member is ranked
against the other live members by their latest reward. One in the bottom ``quantile_fraction`` *exploits* a
member of the top quantile -- it continues from that member's weights and optimizer state -- and *explores*: each
hyperparameter is resampled from the search space with probability ``resample_probability``, else a Real/Int
is multiplied by 0.8 or 1.2 (clipped to its bounds) and a categorical of constants shifts to a neighbouring
choice. Keys in ``fixed_keys`` (the network, the batch size) and the branch of a categorical of spaces (the
optimizer family) never change: the copied weights and optimizer state must fit.

The scheduler never calls the runner. An exploit is a PAUSE of the bottom member; the runner's next
``suggest()`` resumes it with the explored config plus a clone instruction,
``config['pbt_clone'] = {'trial_id': source, 'epoch': source_epoch, 'exploit': n}``. The trial function executes
it: a population executor as an in-memory gather from the source's slot, an ordinary trial through the source's
checkpoint (``jaxgluon.train.population_fn``). The member keeps its trial id and continues at
``source_epoch + 1``. Each exploit is a lineage entry (who copied whom, when, old and new hyperparameters) in
``lineage``, the state dict and ``metadata()['lineage']`` (so in the experiment's results); the journal has each
resume's config with its clone instruction. ``ExperimentResult.plot_pbt(path)`` draws it.

    >>> from jaxgluon.scheduler import PBTScheduler, Trial
    >>> from jaxgluon.space import Real
    >>> pbt = PBTScheduler({'lr': Real(1e-3, 1.0, log=True)}, max_t=9, quantile_fraction=0.5, seed=0)
    >>> a, b = pbt.suggest(), pbt.suggest()
    >>> _ = pbt.on_trial_result(Trial(a.trial_id, a.config), {'epoch': 1, 'reward': 0.9})
    >>> pbt.on_trial_result(Trial(b.trial_id, b.config), {'epoch': 1, 'reward': 0.1})
    <Decision.PAUSE: 'PAUSE'>
    >>> s = pbt.suggest()
    >>> s.kind, s.trial_id, s.config['pbt_clone']
    ('resume', 1, {'trial_id': 0, 'epoch': 1, 'exploit': 0})
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np

from jaxgluon.scheduler.base import Decision, Trial, TrialScheduler, TrialStatus, TrialSuggestion
from jaxgluon.space.domains import Categorical, Int, Real, SpacedObject, Space
from jaxgluon.space import compile_space

#: The config key of the clone instruction (the trial-function protocol;
#: ``jaxgluon.train.population_config.CLONE_KEY``).
CLONE_KEY = "pbt_clone"


class PBTScheduler(TrialScheduler):
    """Population Based Training (module docstring).

    Args:
        searcher_or_space: the search space (or a searcher, whose ``space`` is explored); new members come from
            the searcher ('random' by default).
        perturbation_interval: epochs between a member's exploit/explore checks.
        quantile_fraction: the bottom and top fractions of the ranking (in (0, 0.5]; at least one member each).
        resample_probability: probability that a hyperparameter is resampled rather than perturbed.
        perturbation_factors: the multipliers a perturbed Real/Int draws from.
        fixed_keys: top-level config keys explore never changes (they shape the model).
        max_t: epochs of a full trial; STOP there.
    """

    name = "pbt"

    def __init__(self, searcher_or_space: Any, search_strategy: str = "random", *, perturbation_interval: int = 1,
                 quantile_fraction: float = 0.25, resample_probability: float = 0.25,
                 perturbation_factors: Sequence[float] = (0.8, 1.2), fixed_keys: Sequence[str] = ("net", "batch_size"),
                 max_t: int | None = None, mode: str = "max", seed: int = 0, **searcher_options: Any) -> None:
        if isinstance(perturbation_interval, bool) or not isinstance(perturbation_interval, int) \
                or perturbation_interval < 1:
            raise ValueError(f"perturbation_interval must be a positive int (epochs), got {perturbation_interval!r}")
        if not 0.0 < float(quantile_fraction) <= 0.5:
            raise ValueError(f"quantile_fraction must lie in (0, 0.5], got {quantile_fraction!r}")
        if not 0.0 <= float(resample_probability) <= 1.0:
            raise ValueError(f"resample_probability must lie in [0, 1], got {resample_probability!r}")
        if not perturbation_factors or any(not float(f) > 0 for f in perturbation_factors):
            raise ValueError(f"perturbation_factors must be positive numbers, got {perturbation_factors!r}")
        self.perturbation_interval = perturbation_interval
        self.quantile_fraction = float(quantile_fraction)
        self.resample_probability = float(resample_probability)
        self.perturbation_factors = tuple(float(f) for f in perturbation_factors)
        self.fixed_keys = tuple(fixed_keys)
        self.lineage: list[dict[str, Any]] = []
        self._pending: list[list[int]] = []  # [bottom trial_id, source trial_id] waiting for their resume
        super().__init__(searcher_or_space, search_strategy=search_strategy, max_t=max_t, mode=mode, seed=seed,
                         **searcher_options)
        self.space = compile_space(self.searcher.space).space

    def _on_new_trial(self, trial_id: int, record: dict[str, Any]) -> None:
        record["config"] = {k: v for k, v in record["config"].items() if k != CLONE_KEY}
        record["last_perturbation"] = 0
        record["launch_config"] = None  # what the runner last launched (with its clone instruction), if not config

    # ---- decisions -----------------------------------------------------------------------------------------
    def _decide(self, trial_id: int, epoch: int, reward: float) -> Decision:
        record = self._trials[trial_id]
        self.searcher.on_trial_result(trial_id, record["config"], reward, epoch)
        if self.max_t is not None and epoch >= self.max_t:
            return Decision.STOP
        if epoch - record["last_perturbation"] < self.perturbation_interval:
            return Decision.CONTINUE
        record["last_perturbation"] = epoch
        waiting = {x for x, _ in self._pending}  # ranked with their last reward, never a source
        live = [(self._score(r["reward"]), tid) for tid, r in self._trials.items()
                if r["status"] in (TrialStatus.RUNNING, TrialStatus.PAUSED) and r["reward"] is not None]
        if len(live) < 2:
            return Decision.CONTINUE
        ranked = [tid for _, tid in sorted(live, key=lambda e: (-e[0], e[1]))]
        q = max(1, min(len(ranked) // 2, int(math.floor(len(ranked) * self.quantile_fraction))))
        top = [tid for tid in ranked[:q] if tid not in waiting]
        bottom = ranked[-q:]
        if trial_id not in bottom or not top:
            return Decision.CONTINUE
        rng = np.random.default_rng([self.seed, len(self.lineage) + len(self._pending), trial_id, epoch])
        source = top[int(rng.integers(len(top)))]
        self._pending.append([trial_id, source])
        record["status"] = TrialStatus.PAUSED
        return Decision.PAUSE

    def suggest(self) -> TrialSuggestion | None:
        """Resume the next exploiting member (with its explored config and clone instruction), else a new trial."""
        while self._pending:
            trial_id, source = self._pending.pop(0)
            record, src = self._trials[trial_id], self._trials[source]
            if record["status"] != TrialStatus.PAUSED:  # it failed meanwhile
                continue
            record["status"] = TrialStatus.RUNNING
            at_end = self.max_t is not None and src["epoch"] >= self.max_t
            if src["status"] == TrialStatus.ERROR or src["epoch"] < 1 or at_end:  # nothing to copy: continue as it was
                config = record["launch_config"] or record["config"]
                return TrialSuggestion(kind="resume", config=config, trial_id=trial_id,
                                       resume_from_epoch=record["epoch"])
            exploit = len(self.lineage)
            rng = np.random.default_rng([self.seed, exploit, trial_id, source, 1])
            new = self.explore(src["config"], rng)
            clone = {"trial_id": source, "epoch": src["epoch"], "exploit": exploit}
            self.lineage.append({"exploit": exploit, "trial_id": trial_id, "epoch": record["epoch"],
                                 "reward": record["reward"], "source_trial_id": source, "source_epoch": src["epoch"],
                                 "source_reward": src["reward"], "config_before": record["config"], "config": new})
            record.update(config=new, epoch=src["epoch"], reward=src["reward"], last_perturbation=src["epoch"],
                          launch_config={**new, CLONE_KEY: clone})
            return TrialSuggestion(kind="resume", config=record["launch_config"], trial_id=trial_id,
                                   resume_from_epoch=src["epoch"])
        return self._new_trial_suggestion()

    def on_trial_add(self, trial: Trial) -> None:
        super().on_trial_add(trial)
        if CLONE_KEY in trial.config:
            self._trials[trial.trial_id]["launch_config"] = dict(trial.config)

    def _on_error(self, trial_id: int) -> None:
        self._pending = [p for p in self._pending if p[0] != trial_id]

    # ---- explore -------------------------------------------------------------------------------------------
    def explore(self, config: dict, rng: np.random.Generator) -> dict:
        """A perturbed/resampled copy of ``config`` (module docstring); ``fixed_keys`` are kept."""
        out = {}
        for key, value in config.items():
            sub = self.space.get(key) if isinstance(self.space, dict) else None
            out[key] = value if key in self.fixed_keys or sub is None else self._explore(sub, value, rng)
        return out

    def _explore(self, space: Any, value: Any, rng: np.random.Generator) -> Any:
        if isinstance(space, (Real, Int)):
            if rng.random() < self.resample_probability:
                u = rng.random()
                if space.log:
                    new = math.exp(math.log(space.lower) + u * (math.log(space.upper) - math.log(space.lower)))
                else:
                    new = space.lower + u * (space.upper - space.lower)
            else:
                new = value * self.perturbation_factors[int(rng.integers(len(self.perturbation_factors)))]
            new = min(max(new, space.lower), space.upper)
            return int(round(new)) if isinstance(space, Int) else float(new)
        if isinstance(space, Categorical):
            choices = space.choices
            if all(not isinstance(c, (Space, dict, list)) for c in choices):
                if rng.random() < self.resample_probability:
                    return choices[int(rng.integers(len(choices)))]
                index = choices.index(value) if value in choices else 0
                index = min(max(index + (1 if rng.random() < 0.5 else -1), 0), len(choices) - 1)
                return choices[index]
            for choice in choices:  # a categorical of spaces keeps its branch (the optimizer family)
                if isinstance(choice, SpacedObject) and isinstance(value, dict) and value.get("name") == choice.name \
                        or not isinstance(choice, SpacedObject) and compile_space(choice).contains(value):
                    return self._explore(choice, value, rng)
            return value
        if isinstance(space, SpacedObject):
            return {"name": value["name"], **{k: self._explore(space.params[k], v, rng) if k in space.params else v
                                              for k, v in value.items() if k != "name"}}
        if isinstance(space, dict):
            return {k: self._explore(space[k], v, rng) if k in space else v for k, v in value.items()}
        if isinstance(space, list):
            return [self._explore(s, v, rng) for s, v in zip(space, value)]
        return copy.deepcopy(value)

    # ---- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["lineage"] = copy.deepcopy(self.lineage)
        state["pending"] = [list(p) for p in self._pending]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lineage = copy.deepcopy(list(state.get("lineage", [])))
        self._pending = [[int(a), int(b)] for a, b in state.get("pending", [])]

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        meta.update(perturbation_interval=self.perturbation_interval, quantile_fraction=self.quantile_fraction,
                    resample_probability=self.resample_probability, fixed_keys=list(self.fixed_keys),
                    lineage=copy.deepcopy(self.lineage))
        return meta
