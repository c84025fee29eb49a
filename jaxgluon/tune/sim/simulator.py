"""A simulated backend: a scheduler driven against a blackbox on a simulated clock with N simulated workers.

Each epoch costs the blackbox's own time; the scheduler's own decision time is measured on the wall clock and
reported separately (it does not advance the simulated clock). Deterministic: the same scheduler (seed) and
blackbox give the same trajectory.

    >>> from jaxgluon.scheduler import get_scheduler
    >>> from jaxgluon.tune.sim import SyntheticCurves, simulate
    >>> bb = SyntheticCurves(max_epochs=9)
    >>> scheduler = get_scheduler('hyperband', bb.search_space, max_t=9, type='promotion', seed=0)
    >>> result = simulate(scheduler, bb, num_workers=4, max_time=200.0)
    >>> result.best_reward > 0.5
    True
"""
from __future__ import annotations

import dataclasses
import heapq
import time
from typing import Any, Sequence

import numpy as np

from jaxgluon.scheduler.base import Decision, Trial
from jaxgluon.tune.sim.blackbox import Curve


@dataclasses.dataclass
class SimulationResult:
    """What happened, in simulated time.

    ``events``: one dict per reported epoch (``time``, ``trial_id``, ``epoch``, ``reward``, ``decision``,
    ``worker``), in time order. ``trials``: per trial id, its ``config``, ``status`` ('running', 'paused',
    'completed', 'stopped') and ``rewards`` by epoch. ``decision_seconds``/``num_decisions``: wall-clock time
    spent inside the scheduler (suggest + result + complete calls) and how many calls.
    """

    events: list[dict[str, Any]]
    trials: dict[int, dict[str, Any]]
    total_time: float
    decision_seconds: float
    num_decisions: int
    mode: str = "max"

    @property
    def best_reward(self) -> float:
        rewards = [e["reward"] for e in self.events]
        if not rewards:
            return float("nan")
        return float(max(rewards) if self.mode == "max" else min(rewards))

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, best reward reported so far) after each reported epoch: the anytime performance."""
        times = np.array([e["time"] for e in self.events], dtype=np.float64)
        rewards = np.array([e["reward"] for e in self.events], dtype=np.float64)
        best = np.maximum.accumulate(rewards) if self.mode == "max" else np.minimum.accumulate(rewards)
        return times, best

    def best_at(self, t: float) -> float:
        """Best reward reported up to simulated time ``t`` (NaN before the first report)."""
        times, best = self.trajectory()
        i = np.searchsorted(times, t, side="right")
        return float(best[i - 1]) if i > 0 else float("nan")

    def time_to_target(self, target: float) -> float:
        """First simulated time the best reward reached ``target`` (``inf`` if never)."""
        times, best = self.trajectory()
        hit = best >= target if self.mode == "max" else best <= target
        return float(times[np.argmax(hit)]) if hit.any() else float("inf")

    @property
    def ms_per_decision(self) -> float:
        return 1e3 * self.decision_seconds / max(self.num_decisions, 1)


def simulate(scheduler: Any, blackbox: Any, *, num_workers: int = 4, max_time: float | None = None,
             max_trials: int | None = None, max_epochs: int | None = None) -> SimulationResult:
    """Run ``scheduler`` against ``blackbox`` until ``max_time`` simulated seconds are used up, or the scheduler
    has nothing left to suggest. With ``max_trials``, no more work is asked for once that many trials started
    (running trials finish; paused ones stay paused).

    A paused trial that is resumed continues from its last epoch (its "checkpoint"): only new epochs cost time.
    Results that would arrive after ``max_time`` are not reported.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if max_time is None and max_trials is None:
        raise ValueError("give a budget: max_time (simulated seconds) and/or max_trials")
    max_epochs = int(max_epochs or blackbox.max_epochs)
    scheduler_max_t = getattr(scheduler, "max_t", None)
    if scheduler_max_t is not None and scheduler_max_t > max_epochs:
        raise ValueError(f"scheduler max_t={scheduler_max_t} exceeds the blackbox's {max_epochs} epochs")
    if scheduler_max_t is not None:
        max_epochs = scheduler_max_t
    horizon = float("inf") if max_time is None else float(max_time)

    events: list[dict[str, Any]] = []
    trials: dict[int, dict[str, Any]] = {}
    curves: dict[int, Curve] = {}
    queue: list[tuple[float, int, int, int, int]] = []  # (finish time, seq, worker, trial_id, epoch)
    free_workers = list(range(num_workers))
    seq = 0
    clock = 0.0
    decision_seconds = 0.0
    num_decisions = 0
    started = 0
    exhausted = False

    def timed(fn, *args):
        nonlocal decision_seconds, num_decisions
        t0 = time.perf_counter()
        out = fn(*args)
        decision_seconds += time.perf_counter() - t0
        num_decisions += 1
        return out

    def schedule(worker: int, trial_id: int, epoch: int, now: float) -> None:
        nonlocal seq
        heapq.heappush(queue, (now + curves[trial_id].epoch_cost(epoch), seq, worker, trial_id, epoch))
        seq += 1

    def fill(now: float) -> None:
        nonlocal started, exhausted
        while free_workers and not exhausted:
            if max_trials is not None and started >= max_trials:
                exhausted = True  # no more work is asked for (paused trials stay paused)
                break
            suggestion = timed(scheduler.suggest)
            if suggestion is None:
                exhausted = True  # retried once a trial finishes: a promotion may become possible
                break
            worker = free_workers.pop(0)
            if suggestion.kind == "start":
                started += 1
                tid = suggestion.trial_id
                trials[tid] = {"config": suggestion.config, "status": "running", "rewards": {}, "epoch": 0}
                curves[tid] = blackbox.curves([suggestion.config])[0]
            else:
                tid = suggestion.trial_id
                trials[tid]["status"] = "running"
            schedule(worker, tid, trials[tid]["epoch"] + 1, now)

    fill(clock)
    while queue:
        finish, _, worker, tid, epoch = heapq.heappop(queue)
        if finish > horizon:
            break
        clock = finish
        record = trials[tid]
        reward = float(curves[tid].rewards[epoch - 1])
        trial = Trial(tid, record["config"])
        decision = timed(scheduler.on_trial_result, trial, {"epoch": epoch, "reward": reward})
        record["epoch"] = epoch
        record["rewards"][epoch] = reward
        events.append({"time": clock, "trial_id": tid, "epoch": epoch, "reward": reward,
                       "decision": str(decision), "worker": worker})
        if decision == Decision.CONTINUE and epoch < max_epochs:
            schedule(worker, tid, epoch + 1, clock)
            continue
        if decision == Decision.PAUSE:
            record["status"] = "paused"
        else:
            record["status"] = "completed" if epoch >= max_epochs else "stopped"
            timed(scheduler.on_trial_complete, trial, {"epoch": epoch, "reward": reward})
        free_workers.append(worker)
        free_workers.sort()
        exhausted = False
        fill(clock)
    total = clock if max_time is None else float(max_time)
    return SimulationResult(events=events, trials=trials, total_time=total, decision_seconds=decision_seconds,
                            num_decisions=num_decisions, mode=getattr(scheduler, "mode", "max"))


def trajectory_on_grid(result: SimulationResult, grid: Sequence[float]) -> np.ndarray:
    """Anytime best reward sampled at the given simulated times (NaN before the first report)."""
    return np.array([result.best_at(t) for t in grid])
