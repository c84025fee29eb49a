"""Asynchronous Hyperband (ASHA): successive halving without synchronisation barriers.

Each trial is assigned a bracket (Hyperband's distribution over the ``brackets`` most aggressive ones) and is
judged whenever it reaches a rung level of its bracket (``scheduler/_rungs.py``):

- ``type='stopping'``: a trial whose reward is below the rung's ``1 - 1/rf`` quantile (over all trials that
  reached that rung so far) gets STOP, the others CONTINUE.
- ``type='promotion'``: a trial reaching a rung PAUSEs unless it is already in the top ``1/rf`` of that rung; a
  free worker's ``suggest()`` resumes the best paused trial that is in the top ``1/rf`` of its rung (higher
  rungs first) before it starts a new one.

    >>> from jaxgluon.scheduler import HyperbandScheduler, Trial
    >>> from jaxgluon.space import Real
    >>> hb = HyperbandScheduler({'lr': Real(1e-3, 1.0, log=True)}, type='promotion', max_t=9)
    >>> hb.rung_levels
    (1, 3, 9)
    >>> s = hb.suggest()
    >>> hb.on_trial_result(Trial(s.trial_id, s.config), {'epoch': 1, 'reward': 0.5})
    <Decision.PAUSE: 'PAUSE'>
"""
from __future__ import annotations

import bisect
from typing import Any, Literal

import numpy as np

from jaxgluon.scheduler import _rungs
from jaxgluon.scheduler.base import Decision, TrialScheduler, TrialStatus, TrialSuggestion


class HyperbandScheduler(TrialScheduler):
    """Asynchronous Hyperband with stopping or promotion (ASHA) decisions.

    Args:
        searcher_or_space: a searcher object, or a search space for ``search_strategy``.
        type: 'stopping' (default) or 'promotion'.
        grace_period: minimum epochs before a trial is first judged.
        reduction_factor: keep the top ``1/reduction_factor`` at each rung.
        max_t: epochs of a full trial (required).
        brackets: number of Hyperband brackets (1 = plain asynchronous successive halving).
        searcher_data: 'rungs' (default) forwards only rung-level results to the searcher (what a
            multi-fidelity model is fitted on), 'all' forwards every epoch.

    The defaults (one bracket, grace_period 1, reduction_factor 3: plain ASHA) were checked on LCBench tasks other
    than the multifidelity benchmark's (``benchmarks/hyperband_defaults.py``, anytime best accuracy): 2, 3 or all
    brackets were worse on 5 of 6 held-out tasks; grace_period 3 was better on 3 of those 6 but worse on 18 of the
    other 24. Raise ``grace_period`` when early epochs are known to rank configs poorly.

    A trial stopped at a rung is completed in the searcher with its rung-level reward, so a model-based searcher
    should be multi-fidelity (``get_scheduler('bayesopt_hyperband', ...)`` builds ``GPSearcher(multi_fidelity=True)``).
    At ``max_t`` the decision is STOP: the trial is finished.
    """

    name = "hyperband"

    def __init__(self, searcher_or_space: Any, search_strategy: str = "random", *,
                 type: Literal["stopping", "promotion"] = "stopping", grace_period: int = 1,
                 reduction_factor: float = 3, max_t: int | None = None, brackets: int = 1, mode: str = "max",
                 seed: int = 0, searcher_data: Literal["rungs", "all"] = "rungs", **searcher_options: Any) -> None:
        if type not in ("stopping", "promotion"):
            raise ValueError(f"HyperbandScheduler type must be 'stopping' or 'promotion', got {type!r}")
        if max_t is None:
            raise ValueError("HyperbandScheduler needs max_t (the epochs of a full trial, e.g. max_t=epochs)")
        if searcher_data not in ("rungs", "all"):
            raise ValueError(f"searcher_data must be 'rungs' or 'all', got {searcher_data!r}")
        self.type = type
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        self.rung_levels = _rungs.rung_levels(grace_period, reduction_factor, max_t)
        self.brackets = int(brackets)
        self._bracket_probs = _rungs.bracket_probabilities(len(self.rung_levels), reduction_factor, self.brackets)
        self.searcher_data = searcher_data
        # per bracket, per rung level: ascending list of (-score, trial_id); promoted trial ids
        self._rungs: list[dict[int, list[tuple[float, int]]]] = []
        self._promoted: list[dict[int, set[int]]] = []
        self._reset_rungs()
        super().__init__(searcher_or_space, search_strategy=search_strategy, max_t=max_t, mode=mode, seed=seed,
                         **searcher_options)

    def _reset_rungs(self) -> None:
        self._rungs = [{lvl: [] for lvl in _rungs.bracket_rung_levels(self.rung_levels, b)[:-1]}
                       for b in range(self.brackets)]
        self._promoted = [{lvl: set() for lvl in rungs} for rungs in self._rungs]

    def _on_new_trial(self, trial_id: int, record: dict[str, Any]) -> None:
        record["bracket"] = _rungs.sample_bracket(self._bracket_probs, self.seed, trial_id)
        record["rungs_done"] = []
        record["paused_at"] = None

    # ---- decisions -----------------------------------------------------------------------------------------
    def _decide(self, trial_id: int, epoch: int, reward: float) -> Decision:
        record = self._trials[trial_id]
        bracket = record["bracket"]
        levels = _rungs.bracket_rung_levels(self.rung_levels, bracket)
        reached = [lvl for lvl in levels if lvl <= epoch and lvl not in record["rungs_done"]]
        score = self._score(reward)
        for lvl in reached:
            record["rungs_done"].append(lvl)
            if lvl < self.max_t:
                bisect.insort(self._rungs[bracket][lvl], (-score, trial_id))
        if reached or self.searcher_data == "all":
            self.searcher.on_trial_result(trial_id, record["config"], reward, epoch)
        if epoch >= self.max_t:
            return Decision.STOP
        if not reached:
            return Decision.CONTINUE
        level = reached[-1]
        if self.type == "stopping":
            return self._stopping_decision(bracket, level, score)
        if self._in_top(bracket, level, trial_id):
            self._promoted[bracket][level].add(trial_id)
            return Decision.CONTINUE
        record["status"] = TrialStatus.PAUSED
        record["paused_at"] = level
        return Decision.PAUSE

    def _stopping_decision(self, bracket: int, level: int, score: float) -> Decision:
        scores = -np.array([neg for neg, _ in self._rungs[bracket][level]])
        cutoff = np.quantile(scores, 1.0 - 1.0 / self.reduction_factor)
        return Decision.CONTINUE if score >= cutoff else Decision.STOP

    def _top(self, bracket: int, level: int) -> list[tuple[float, int]]:
        rung = self._rungs[bracket][level]
        return rung[: _rungs.num_to_promote(len(rung), self.reduction_factor)]

    def _in_top(self, bracket: int, level: int, trial_id: int) -> bool:
        return any(tid == trial_id for _, tid in self._top(bracket, level))

    def _promotable(self) -> tuple[int, int] | None:
        """(trial_id, level) of the paused trial to resume: highest rung first, then best reward."""
        best: tuple[int, float, int, int] | None = None  # (-level, -score, trial_id, level)
        for bracket, rungs in enumerate(self._rungs):
            for level, rung in rungs.items():
                promoted = self._promoted[bracket][level]
                for neg_score, tid in self._top(bracket, level):
                    if tid in promoted or self._trials[tid]["status"] != TrialStatus.PAUSED:
                        continue
                    key = (-level, neg_score, tid, level)
                    if best is None or key < best:
                        best = key
                    break  # the rung is sorted: its first candidate is its best
        return None if best is None else (best[2], best[3])

    def suggest(self) -> TrialSuggestion | None:
        """Resume the best promotable paused trial if there is one, otherwise start a new trial."""
        if self.type == "promotion":
            found = self._promotable()
            if found is not None:
                trial_id, level = found
                record = self._trials[trial_id]
                self._promoted[record["bracket"]][level].add(trial_id)
                record["status"] = TrialStatus.RUNNING
                record["paused_at"] = None
                levels = _rungs.bracket_rung_levels(self.rung_levels, record["bracket"])
                milestone = next(lvl for lvl in levels if lvl > level)
                return TrialSuggestion(kind="resume", config=record["config"], trial_id=trial_id,
                                       resume_from_epoch=record["epoch"], milestone=milestone)
        return self._new_trial_suggestion()

    def _on_error(self, trial_id: int) -> None:
        bracket = self._trials[trial_id]["bracket"]
        for level, rung in self._rungs[bracket].items():
            rung[:] = [entry for entry in rung if entry[1] != trial_id]
            self._promoted[bracket][level].discard(trial_id)

    def paused_trials(self) -> list[int]:
        """Ids of trials currently paused at a rung, waiting for promotion."""
        return sorted(tid for tid, rec in self._trials.items() if rec["status"] == TrialStatus.PAUSED)

    # ---- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["type"] = self.type
        state["rung_levels"] = list(self.rung_levels)
        state["rungs"] = [{str(lvl): [[tid, -neg] for neg, tid in rung] for lvl, rung in rungs.items()}
                          for rungs in self._rungs]
        state["promoted"] = [{str(lvl): sorted(ids) for lvl, ids in prom.items()} for prom in self._promoted]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state.get("rung_levels", ())) != self.rung_levels or state.get("type") != self.type:
            raise ValueError(f"state has type={state.get('type')!r}, rung levels {state.get('rung_levels')}; this "
                             f"scheduler has type={self.type!r}, rung levels {list(self.rung_levels)}")
        if len(state["rungs"]) != self.brackets:
            raise ValueError(f"state has {len(state['rungs'])} brackets, this scheduler {self.brackets}")
        super().load_state_dict(state)
        self._reset_rungs()
        for bracket, rungs in enumerate(state["rungs"]):
            for lvl, entries in rungs.items():
                self._rungs[bracket][int(lvl)] = sorted((-float(score), int(tid)) for tid, score in entries)
        for bracket, prom in enumerate(state["promoted"]):
            for lvl, ids in prom.items():
                self._promoted[bracket][int(lvl)] = {int(i) for i in ids}

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        meta.update(type=self.type, grace_period=self.grace_period, reduction_factor=self.reduction_factor,
                    brackets=self.brackets, rung_levels=list(self.rung_levels), searcher_data=self.searcher_data)
        return meta
