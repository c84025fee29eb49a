"""The simulated executor: blackbox trials on a simulated clock, driven by the same ``Runner`` as ``tune()``.

Like Syne Tune's simulator backend: the runner asks the executor for the time (:meth:`SimulatedExecutor.now`),
and each ``poll`` jumps the clock to the next simulated event -- the end of some trial's epoch -- instead of
waiting for it. An epoch of a trial costs its curve's epoch time (:meth:`Curve.epoch_cost`); its reward is the
curve's. The executor keeps each trial's last epoch as its "checkpoint": a resumed (promoted) trial continues
from there, paying only for its new epochs. Ties in time go to the event scheduled first.

Results that would arrive after ``horizon`` (the experiment's time limit) never do: when the next event lies past
it, the clock stops at the horizon and every running trial returns, as a real trial whose
``reporter.time_left()`` ran out returns (the runner records it STOPPED).

    >>> from jaxgluon.tune.executor import TrialLaunch
    >>> from jaxgluon.tune.sim import SyntheticCurves
    >>> ex = SimulatedExecutor(num_workers=1)
    >>> ex.bind(SyntheticCurves(max_epochs=2), on_report=lambda trial_id, result: 'CONTINUE')
    >>> ex.submit(TrialLaunch(trial_id=0, config={'x': 0.5, 'y': 0.0}, checkpoint_dir='', max_epochs=2, seed=0))
    >>> ex.poll(None), ex.now(), [e['epoch'] for e in ex.events]
    ([TrialOutcome(trial_id=0, error=None, traceback=None, cancelled=False)], 2.0, [1, 2])
"""
from __future__ import annotations

import heapq
import math
from typing import Any

from jaxgluon.scheduler import Decision
from jaxgluon.tune.executor import Executor, ReportCallback, TrialLaunch, TrialOutcome
from jaxgluon.tune.sim.blackbox import Curve


class SimulatedExecutor(Executor):
    """``num_workers`` simulated workers running a blackbox's learning curves (bind the blackbox as the train
    function). ``events``: one dict per reported epoch (``time``, ``trial_id``, ``epoch``, ``reward``,
    ``decision``, ``worker``), in time order."""

    name = "simulated"

    def __init__(self, num_workers: int, horizon: float | None = None) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
        self.num_workers = num_workers
        self.horizon = math.inf if horizon is None else float(horizon)
        self.events: list[dict[str, Any]] = []
        self._time = 0.0
        self._queue: list[tuple[float, int, int, int, int]] = []  # (finish time, seq, worker, trial_id, epoch)
        self._seq = 0
        self._free = list(range(num_workers))  # kept sorted: the lowest free worker takes the next trial
        self._running: dict[int, tuple[int, int]] = {}  # trial_id -> (worker, max_epochs)
        self._curves: dict[int, Curve] = {}
        self._epoch: dict[int, int] = {}  # trial_id -> last epoch run: its simulated checkpoint
        self._cancelled: list[TrialOutcome] = []  # returned by the next poll
        self._blackbox: Any = None
        self._on_report: ReportCallback | None = None

    @property
    def capacity(self) -> int:
        return self.num_workers

    @property
    def num_running(self) -> int:
        return len(self._running) + len(self._cancelled)

    def now(self) -> float:
        return self._time

    def bind(self, train_fn: Any, on_report: ReportCallback) -> None:
        if not callable(getattr(train_fn, "curves", None)):
            raise TypeError(f"the simulated executor runs a blackbox (an object with curves(configs) -> [Curve], "
                            f"jaxgluon.tune.sim.Blackbox) as its train function, got {train_fn!r}")
        self._blackbox, self._on_report = train_fn, on_report

    def submit(self, launch: TrialLaunch) -> None:
        if self._on_report is None:
            raise RuntimeError("call bind(blackbox, on_report) before submit")
        if not self._free:
            raise RuntimeError(f"all {self.num_workers} simulated workers are busy; poll() first")
        trial_id = launch.trial_id
        if trial_id not in self._curves:  # a resumed trial keeps its curve (and its checkpoint)
            self._curves[trial_id] = self._blackbox.curves([launch.config])[0]
        worker = self._free.pop(0)
        self._running[trial_id] = (worker, launch.max_epochs)
        self._schedule(worker, trial_id, self._epoch.get(trial_id, 0) + 1)

    def _schedule(self, worker: int, trial_id: int, epoch: int) -> None:
        finish = self._time + self._curves[trial_id].epoch_cost(epoch)
        heapq.heappush(self._queue, (finish, self._seq, worker, trial_id, epoch))
        self._seq += 1

    def poll(self, timeout: float | None) -> list[TrialOutcome]:
        """Run simulated events in time order until a trial ends (``timeout`` is wall-clock waiting, which a
        simulation never does); the clock jumps to each event."""
        assert self._on_report is not None
        if self._cancelled:
            cancelled, self._cancelled = self._cancelled, []
            return cancelled
        ended: list[TrialOutcome] = []
        while self._queue and not ended:
            if self._queue[0][0] > self.horizon:
                return self._stop_at_horizon()
            finish, _, worker, trial_id, epoch = heapq.heappop(self._queue)
            self._time = finish
            reward = float(self._curves[trial_id].rewards[epoch - 1])
            self._epoch[trial_id] = epoch
            decision = Decision(self._on_report(trial_id, {"epoch": epoch, "reward": reward}))
            self.events.append({"time": finish, "trial_id": trial_id, "epoch": epoch, "reward": reward,
                                "decision": decision.value, "worker": worker})
            if decision is Decision.CONTINUE and epoch < self._running[trial_id][1]:
                self._schedule(worker, trial_id, epoch + 1)
                continue
            ended.append(self._release(trial_id))
        return ended

    def _release(self, trial_id: int) -> TrialOutcome:
        worker, _ = self._running.pop(trial_id)
        self._free.append(worker)
        self._free.sort()
        return TrialOutcome(trial_id)

    def _stop_at_horizon(self) -> list[TrialOutcome]:
        self._time = max(self._time, self.horizon)
        self._queue.clear()
        return [self._release(trial_id) for trial_id in sorted(self._running)]

    def cancel(self, trial_id: int) -> bool:
        if trial_id not in self._running:
            return False
        self._queue = [entry for entry in self._queue if entry[3] != trial_id]
        heapq.heapify(self._queue)
        self._release(trial_id)
        self._cancelled.append(TrialOutcome(trial_id, cancelled=True))
        return True

    def resources(self) -> dict:
        return {"simulated_workers": self.num_workers}

    def stats(self) -> dict:
        return {"simulated_time": self._time, "reported_epochs": len(self.events)}
