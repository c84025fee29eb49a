"""Simulated tuning: ``simulate`` runs a scheduler against a blackbox through the same ``Runner`` as ``tune()``,
with a :class:`~jaxgluon.tune.sim.executor.SimulatedExecutor` (N simulated workers, a simulated clock) in place of
real trials.

Each epoch costs the blackbox's own time; the scheduler's own decision time is measured on the wall clock and
reported separately (it does not advance the simulated clock). Deterministic: the same scheduler (seed) and
blackbox give the same trajectory. The runner journals the run as it journals any experiment (in a temporary
folder unless ``output_directory`` is given), so a simulation exercises the loop users run.

    >>> from jaxgluon.scheduler import get_scheduler
    >>> from jaxgluon.tune.sim import SyntheticCurves, simulate
    >>> bb = SyntheticCurves(max_epochs=9)
    >>> scheduler = get_scheduler('hyperband', bb.search_space, max_t=9, type='promotion', seed=0)
    >>> result = simulate(scheduler, bb, num_workers=4, max_time=200.0)
    >>> result.best_reward > 0.5
    True
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from typing import Any, Sequence

import numpy as np

from jaxgluon.tune.runner import Runner
from jaxgluon.tune.sim.executor import SimulatedExecutor
from jaxgluon.tune.stop import StopCriterion


@dataclasses.dataclass
class SimulationResult:
    """What happened, in simulated time.

    ``events``: one dict per reported epoch (``time``, ``trial_id``, ``epoch``, ``reward``, ``decision``,
    ``worker``), in time order. ``trials``: per trial id, its ``config``, ``status`` (the runner's
    :class:`~jaxgluon.scheduler.TrialStatus` in lower case, as simulations always spelled it: 'paused',
    'completed', 'stopped' -- a trial cut off by ``max_time`` is 'stopped', as in ``tune()`` --, 'error') and
    ``rewards`` by epoch. ``decision_seconds``/``num_decisions``: wall-clock time spent inside the scheduler
    (suggest + result + complete calls) and how many calls. ``metadata``: the runner's (``runner_overhead``,
    ``num_trials_by_status``, ``stop_reason``, ...) plus ``wall_seconds``, the whole simulation's wall time.
    """

    events: list[dict[str, Any]]
    trials: dict[int, dict[str, Any]]
    total_time: float
    decision_seconds: float
    num_decisions: int
    mode: str = "max"
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

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


class _TimedScheduler:
    """The scheduler as the runner sees it, with the wall time of its decisions (suggest, result, complete)
    counted apart from the runner's own work; calls a scheduler may lack (error, state) are optional."""

    def __init__(self, scheduler: Any) -> None:
        self.inner, self.seconds, self.calls = scheduler, 0.0, 0

    def _timed(self, fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out

    def suggest(self) -> Any:
        return self._timed(self.inner.suggest)

    def on_trial_result(self, trial: Any, result: dict) -> Any:
        return self._timed(self.inner.on_trial_result, trial, result)

    def on_trial_complete(self, trial: Any, result: dict | None) -> None:
        self._timed(self.inner.on_trial_complete, trial, result)

    def on_trial_error(self, trial: Any) -> None:
        on_error = getattr(self.inner, "on_trial_error", None)
        if on_error is not None:
            on_error(trial)

    def state_dict(self) -> Any:
        state_dict = getattr(self.inner, "state_dict", None)
        return None if state_dict is None else state_dict()

    def __getattr__(self, name: str) -> Any:  # metadata, load_state_dict, searcher, mode, ...
        return getattr(self.inner, name)


def _memory_folder() -> str | None:
    """A RAM-backed folder for the throw-away journal of a simulation where there is one (Linux's /dev/shm): the
    runner's files then cost no disk time (its fixed cost per run was ~0.25 s of mkdir/rmdir/fsync on a busy
    disk); elsewhere the default temporary folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def simulate(scheduler: Any, blackbox: Any, *, num_workers: int = 4, max_time: float | None = None,
             max_trials: int | None = None, max_epochs: int | None = None,
             output_directory: str | None = None) -> SimulationResult:
    """Run ``scheduler`` against ``blackbox`` until ``max_time`` simulated seconds are used up, or the scheduler
    has nothing left to suggest. With ``max_trials``, no new trial starts once that many trials started (running
    trials finish; a paused trial may still be promoted, as in ``tune(num_trials=...)``).

    A paused trial that is resumed continues from its last epoch (its "checkpoint"): only new epochs cost time.
    Results that would arrive after ``max_time`` are not reported. ``output_directory``: where the runner keeps
    the experiment's journal (default: a temporary folder, removed afterwards).
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
    start = time.perf_counter()
    timed = _TimedScheduler(scheduler)
    executor = SimulatedExecutor(num_workers, horizon=max_time)
    stop = StopCriterion(num_trials=max_trials, time_limits=None if max_time is None else float(max_time),
                         max_reward=None)
    folder = (tempfile.TemporaryDirectory(prefix="jaxgluon-sim-", dir=_memory_folder()) if output_directory is None
              else contextlib.nullcontext(output_directory))
    with folder as experiment_dir:
        # 'flush': a simulation needs no power-cut durability, and no fsync thread per run
        runner = Runner(blackbox, timed, executor, experiment_dir, stop, max_epochs,
                        seed=int(getattr(scheduler, "seed", 0) or 0), journal_sync="flush", trial_timeout=None,
                        settings={"simulated": True, "num_workers": num_workers,
                                  "search_strategy": getattr(scheduler, "search_strategy", type(scheduler).__name__)})
        outcome = runner.run()
    trials = {t["trial_id"]: {"config": t["config"], "status": t["status"].lower(), "epoch": t["num_epochs"],
                              "rewards": {int(r["epoch"]): float(r["reward"]) for r in t["results"]}}
              for t in outcome.trials}
    total = executor.now() if max_time is None else float(max_time)
    return SimulationResult(events=executor.events, trials=trials, total_time=total, decision_seconds=timed.seconds,
                            num_decisions=timed.calls, mode=getattr(scheduler, "mode", "max"),
                            metadata={**outcome.metadata, "wall_seconds": time.perf_counter() - start})


def trajectory_on_grid(result: SimulationResult, grid: Sequence[float]) -> np.ndarray:
    """Anytime best reward sampled at the given simulated times (NaN before the first report)."""
    return np.array([result.best_at(t) for t in grid])
