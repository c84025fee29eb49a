"""Trial records: what the runner knows about one trial, as a plain dict-able dataclass.

A record is rebuilt from the journal on resume, so every field is JSON-serialisable. Its ``status`` is a
:class:`~jaxgluon.scheduler.TrialStatus`; ``jaxgluon.tune.lifecycle`` decides every change of it.

    >>> r = TrialRecord(trial_id=0, config={'lr': 0.1})
    >>> r.add_result({'epoch': 1, 'reward': 0.5}, time_s=1.0)
    >>> r.to_dict()['rewards']
    [0.5]
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxgluon.scheduler import Decision, TrialStatus

RUNNING = TrialStatus.RUNNING
COMPLETED = TrialStatus.COMPLETED
STOPPED = TrialStatus.STOPPED
PAUSED = TrialStatus.PAUSED
ERROR = TrialStatus.ERROR
STATUSES = (RUNNING, COMPLETED, STOPPED, PAUSED, ERROR)  # the order of ``num_trials_by_status``
FINISHED = frozenset(s for s in TrialStatus if s.finished)  # a trial in these states never runs again


@dataclasses.dataclass
class TrialRecord:
    """Everything the runner records about one trial.

    ``results`` holds one dict per reported epoch (``epoch``, ``reward`` and the trial's extra metrics, plus
    ``time_s``, seconds since the experiment started); ``rewards`` in ``to_dict()`` is the reward per
    reported epoch in that order.
    """

    trial_id: int
    config: dict
    status: TrialStatus = RUNNING
    results: list[dict] = dataclasses.field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    start_time_s: float | None = None  # experiment time of the first start
    end_time_s: float | None = None  # experiment time of the last end (None while running/paused)
    num_launches: int = 0  # 1 + number of resumes/restarts
    decision: Decision | None = None  # the decision in force since its last report (None: none since its launch)

    def __post_init__(self) -> None:
        self.status = TrialStatus.parse(self.status)

    def add_result(self, result: dict, time_s: float) -> None:
        """Record one report; a re-reported epoch (a restart from an older checkpoint) replaces the old one."""
        entry = dict(result)
        entry["time_s"] = time_s
        epoch = entry.get("epoch")
        while self.results and epoch is not None and self.results[-1].get("epoch", -1) >= epoch:
            self.results.pop()
        self.results.append(entry)

    @property
    def last_epoch(self) -> int:
        return int(self.results[-1]["epoch"]) if self.results else 0

    @property
    def last_result(self) -> dict | None:
        return self.results[-1] if self.results else None

    @property
    def rewards(self) -> list[float]:
        return [float(r["reward"]) for r in self.results]

    @property
    def best_reward(self) -> float | None:
        finite = [r for r in self.rewards if math.isfinite(r)]
        return max(finite) if finite else None

    def to_dict(self) -> dict[str, Any]:
        rewards = self.rewards
        return {
            "trial_id": self.trial_id,
            "config": self.config,
            "status": self.status.value,  # a plain string in results, dataframes and saved files
            "rewards": rewards,
            "epochs": [int(r["epoch"]) for r in self.results],
            "reward": rewards[-1] if rewards else None,
            "best_reward": self.best_reward,
            "num_epochs": self.last_epoch,
            "results": [dict(r) for r in self.results],
            "error": self.error,
            "traceback": self.traceback,
            "start_time_s": self.start_time_s,
            "end_time_s": self.end_time_s,
            "num_launches": self.num_launches,
        }
