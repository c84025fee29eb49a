"""``PopulationExecutor``: runs trials as members of populations, many configs trained as one compiled program.

The executor is generic: the train function object provides the populations (``jaxgluon.train.PopulationTrial``
implements the protocol; see its module docstring), so ``tune`` imports nothing from ``train``.

- ``capacity`` is the population size K: at most K members run at once. Configs whose
  ``train_fn.population_key(config)`` differ (another net, image size or batch size) go to
  separate populations, each built (and compiled) once and kept for later members of its key.
- ``poll`` advances every population that has members by one epoch and sends each member's result through
  ``on_report``, one trial at a time, exactly as an ordinary trial's reporter would. A member told anything but
  CONTINUE (STOP, PAUSE, or the last epoch) leaves its slot, which the runner fills with its next launch (a new
  config, a promoted paused trial restored from its checkpoint, or a PBT exploit copied in memory).
- A member whose training diverges (non-finite loss) ends in error alone; a population that fails as a whole
  (e.g. it cannot be built) fails only the trials that were in it.
- Each member reports through an ordinary ``Reporter`` (its results appended to its ``reports.jsonl`` before the
  runner sees them, so a resumed experiment recovers a report its killed driver never journaled).
- Populations train in the driver's process, one epoch of every member per ``poll``: the runner cannot see a
  member as hung while it waits, and ``cancel`` declines (a member cannot be killed alone; the time limit is
  honoured inside ``run_epoch``, which returns at the deadline).

    ex = PopulationExecutor(population_size=8)
    ag.tune(PopulationTrial(spec), space, executor=ex, epochs=10)   # or simply population_size=8
"""
from __future__ import annotations

import functools
import traceback as traceback_module
from typing import Any, Callable

from jaxgluon.tune.executor import Executor, ReportCallback, TrialLaunch, TrialOutcome
from jaxgluon.tune.reporter import Reporter, TrialStopped

_PROTOCOL = ("population_key", "make_population")


def _is_size(value: Any) -> bool:
    return value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


class PopulationExecutor(Executor):
    """Trials as members of vmapped populations (module docstring). ``population_size``: an int K or 'auto' (the
    first population picks K from the device's free memory)."""

    name = "population"

    def __init__(self, population_size: int | str = "auto") -> None:
        if not _is_size(population_size):
            raise ValueError(f"population_size must be a positive int or 'auto', got {population_size!r}")
        self._requested = population_size
        self._capacity: int | None = None if population_size == "auto" else int(population_size)
        self._train_fn: Any = None
        self._on_report: ReportCallback | None = None
        self._populations: dict[Any, Any] = {}
        self._member_of: dict[int, Any] = {}  # trial_id -> population key
        self._launches: dict[int, TrialLaunch] = {}
        self._reporters: dict[int, Reporter] = {}
        self._ended: list[TrialOutcome] = []  # launches that failed before training (reported at the next poll)
        self._num_built = 0

    @property
    def capacity(self) -> int:
        return self._capacity if self._capacity is not None else 1

    @property
    def num_running(self) -> int:
        return len(self._member_of) + len(self._ended)

    def bind(self, train_fn: Callable[[dict, Any], Any], on_report: ReportCallback) -> None:
        missing = [name for name in _PROTOCOL if not callable(getattr(train_fn, name, None))]
        if missing:
            raise TypeError(f"population_size needs a train function that can train populations (methods "
                            f"{list(_PROTOCOL)}; e.g. jaxgluon.train.PopulationTrial(spec)); {train_fn!r} lacks "
                            f"{missing}. Drop population_size to run it as ordinary trials")
        self._train_fn, self._on_report = train_fn, on_report

    def submit(self, launch: TrialLaunch) -> None:
        if self._train_fn is None:
            raise RuntimeError("call bind(train_fn, on_report) before submit")
        try:
            key = self._train_fn.population_key(launch.config)
            population = self._populations.get(key)
            if population is None:
                size = self._requested if self._capacity is None else self._capacity
                population = self._train_fn.make_population(launch.config, launch.max_epochs, size)
                self._populations[key] = population
                self._num_built += 1
                if self._capacity is None:
                    self._capacity = int(population.capacity)
            reporter = Reporter(launch.trial_id, launch.checkpoint_dir, launch.max_epochs, launch.seed,
                                functools.partial(self._send, launch.trial_id), deadline=launch.deadline)
            population.add(launch.trial_id, launch.config, launch.checkpoint_dir, launch.seed,
                           max_epochs=launch.max_epochs, deadline=launch.deadline,
                           reported_epoch=reporter.reported_epoch)
        except Exception as err:  # noqa: BLE001 -- failure isolation: a bad config fails its own trial only
            self._ended.append(TrialOutcome(launch.trial_id, error=f"{type(err).__name__}: {err}",
                                            traceback=traceback_module.format_exc()))
            return
        self._member_of[launch.trial_id] = key
        self._launches[launch.trial_id] = launch
        self._reporters[launch.trial_id] = reporter

    def _send(self, trial_id: int, result: dict) -> str:
        assert self._on_report is not None
        return str(getattr(d := self._on_report(trial_id, result), "value", d))

    def _end(self, trial_id: int, error: str | None = None, traceback: str | None = None) -> TrialOutcome:
        key = self._member_of.pop(trial_id)
        self._launches.pop(trial_id, None)
        reporter = self._reporters.pop(trial_id, None)
        if reporter is not None:
            reporter.close()
        population = self._populations[key]
        if trial_id in population.members:
            population.remove(trial_id)
        return TrialOutcome(trial_id, error=error, traceback=traceback)

    def poll(self, timeout: float | None) -> list[TrialOutcome]:
        outcomes, self._ended = self._ended, []
        assert self._on_report is not None
        for key, population in list(self._populations.items()):
            trial_ids = [t for t, k in self._member_of.items() if k == key]
            if not trial_ids:
                continue
            deadlines = [self._launches[t].deadline for t in trial_ids if self._launches[t].deadline is not None]
            try:
                results = population.run_epoch(min(deadlines) if deadlines else None)
            except Exception as err:  # noqa: BLE001 -- the whole population failed: its members fail, nothing else
                message, tb = f"{type(err).__name__}: {err}", traceback_module.format_exc()
                outcomes.extend(self._end(t, message, tb) for t in trial_ids)
                continue
            if results is None:  # the time limit passed mid-epoch: every member returns without reporting
                outcomes.extend(self._end(t) for t in trial_ids)
                continue
            for trial_id, result in results:
                if isinstance(result, str):
                    outcomes.append(self._end(trial_id, result))
                    continue
                try:
                    decision = str(getattr(d := self._reporters[trial_id](**result), "value", d))
                except TrialStopped:
                    decision = "STOP"
                if decision != "CONTINUE" or result["epoch"] >= self._launches[trial_id].max_epochs:
                    outcomes.append(self._end(trial_id))
        return outcomes

    def resources(self) -> dict:
        return {"population_size": self._capacity if self._capacity is not None else self._requested,
                "populations": self._num_built,
                "note": "members of a population train as one vmapped program on one device"}

    def shutdown(self) -> None:
        for trial_id in list(self._member_of):
            self._end(trial_id)
        for population in self._populations.values():
            population.close()
        self._populations.clear()


def make_population_executor(population_size: int | str, executor: Any, num_workers: int) -> PopulationExecutor:
    """The executor of ``tune(..., population_size=K)``; rejects settings that contradict it."""
    if executor is not None and executor != "population" and not isinstance(executor, PopulationExecutor):
        raise ValueError(f"population_size={population_size!r} runs trials in a population executor; drop "
                         f"executor={executor!r} (or population_size)")
    if num_workers != 1:
        raise ValueError(f"population_size={population_size!r} trains its members in one process: drop "
                         f"num_workers={num_workers} (the population size is the concurrency)")
    if isinstance(executor, PopulationExecutor):
        return executor
    return PopulationExecutor(population_size)
