"""Scheduler vocabulary: decisions, trial statuses, trials, suggestions, and the base class that owns a searcher.

A scheduler answers the runner; it never calls it. The runner asks ``suggest()`` for work, tells the scheduler
about each reported epoch through ``on_trial_result`` and obeys the returned :class:`Decision`.

    >>> Decision.PAUSE == 'PAUSE'
    True
    >>> TrialStatus.parse('done'), TrialStatus.COMPLETED.finished
    (<TrialStatus.COMPLETED: 'COMPLETED'>, True)
    >>> TrialSuggestion(kind='resume', config={'lr': 0.1}, trial_id=3, resume_from_epoch=3, milestone=9).kind
    'resume'
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import math
from typing import Any, Literal, Mapping

_VALID_MODES = ("max", "min")


class Decision(str, enum.Enum):
    """What a running trial should do after reporting an epoch. A ``str`` enum: compare with plain strings."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"

    def __str__(self) -> str:  # so f"{decision}" reads 'STOP', not 'Decision.STOP'
        return self.value


class TrialStatus(str, enum.Enum):
    """A trial's state: the one vocabulary of the scheduler, the runner (``jaxgluon.tune.lifecycle`` holds its
    transitions), the journal and the results. A ``str`` enum whose values are the strings results and journals
    show: compare with plain strings.

    RUNNING: launched, not yet ended. PAUSED: ended after a PAUSE, may be resumed. COMPLETED: ran to its last
    epoch. STOPPED: ended early (a STOP, the time limit). ERROR: failed. The last three are final (``finished``).
    """

    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    STOPPED = "STOPPED"
    ERROR = "ERROR"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """A trial in this state never runs again."""
        return self in _FINISHED

    @classmethod
    def parse(cls, value: Any) -> "TrialStatus":
        """The member for ``value``: a member, its string, or a status saved before the vocabulary was shared
        (a scheduler's 'running'/'paused'/'done'/'error', a simulation's 'completed'/'stopped')."""
        if isinstance(value, cls):
            return value
        text = str(value)
        return cls(_LEGACY.get(text, text.upper()))


_FINISHED = frozenset({TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.ERROR})
_LEGACY = {"done": "COMPLETED"}  # a scheduler state saved before TrialStatus: 'done' was any clean end


@dataclasses.dataclass(frozen=True)
class Trial:
    """A trial as the scheduler sees it: an id it allocated and the config it runs."""

    trial_id: int
    config: dict


@dataclasses.dataclass(frozen=True)
class TrialSuggestion:
    """Work for a free worker.

    ``kind='start'``: a new trial with a fresh ``trial_id`` (allocated by the scheduler) and ``config``.
    ``kind='resume'``: continue the paused trial ``trial_id`` from its own checkpoint; ``resume_from_epoch`` is
    the last epoch it reported (the checkpoint it must restore), ``milestone`` the epoch at which it will next
    be judged (``None``: it may run to the end).
    """

    kind: Literal["start", "resume"]
    config: dict
    trial_id: int | None = None
    resume_from_epoch: int | None = None
    milestone: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("start", "resume"):
            raise ValueError(f"TrialSuggestion.kind must be 'start' or 'resume', got {self.kind!r}")
        if self.kind == "resume" and self.trial_id is None:
            raise ValueError("a 'resume' suggestion needs the trial_id of the paused trial")


def is_searcher(obj: Any) -> bool:
    """Duck-typed check for a searcher object (as opposed to a search space)."""
    return all(callable(getattr(obj, name, None)) for name in ("suggest", "on_trial_result", "on_trial_complete"))


def make_searcher(searcher_or_space: Any, search_strategy: str, mode: str, seed: int, **searcher_options: Any):
    """Return ``searcher_or_space`` if it is a searcher, else build ``search_strategy`` over that space."""
    if is_searcher(searcher_or_space):
        if searcher_options:
            raise ValueError(f"searcher options {sorted(searcher_options)} were given together with a searcher "
                             "object; configure the searcher itself instead")
        searcher_mode = getattr(searcher_or_space, "mode", mode)
        if searcher_mode != mode:
            raise ValueError(f"the searcher optimises mode={searcher_mode!r} but the scheduler got mode={mode!r}; "
                             "build both with the same mode")
        return searcher_or_space
    from jaxgluon.searcher import get_searcher  # scheduler -> searcher is an allowed dependency

    return get_searcher(search_strategy, searcher_or_space, mode=mode, seed=seed, **searcher_options)


def check_mode(mode: str) -> str:
    if mode not in _VALID_MODES:
        raise ValueError(f"mode must be 'max' (higher reward is better) or 'min', got {mode!r}")
    return mode


def parse_result(result: Mapping[str, Any], max_t: int | None) -> tuple[int, float]:
    """Validate a reported result and return ``(epoch, reward)``."""
    if "epoch" not in result or "reward" not in result:
        raise ValueError(f"a result needs 'epoch' (1-based int) and 'reward' (float); got keys {sorted(result)}")
    epoch = result["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) and not (hasattr(epoch, "__index__")):
        raise ValueError(f"result['epoch'] must be an int, got {epoch!r}")
    epoch = int(epoch)
    if epoch < 1:
        raise ValueError(f"result['epoch'] is 1-based, got {epoch}")
    if max_t is not None and epoch > max_t:
        raise ValueError(f"result['epoch']={epoch} is beyond max_t={max_t}; the runner must stop trials at max_t")
    reward = float(result["reward"])
    if not math.isfinite(reward):
        raise ValueError(f"result['reward'] must be finite, got {reward}; report a NaN/inf trial through "
                         "on_trial_error instead")
    return epoch, reward


class TrialScheduler:
    """Shared machinery: searcher ownership, trial-id allocation, trial bookkeeping, state round trip.

    Subclasses implement ``_decide(trial_id, epoch, reward) -> Decision`` and may override ``suggest``.
    """

    name = "base"

    def __init__(self, searcher_or_space: Any, search_strategy: str = "random", max_t: int | None = None,
                 mode: str = "max", seed: int = 0, **searcher_options: Any) -> None:
        self.mode = check_mode(mode)
        if max_t is not None and (not isinstance(max_t, int) or max_t < 1):
            raise ValueError(f"max_t must be a positive int (the epochs of a full trial) or None, got {max_t!r}")
        self.max_t = max_t
        self.seed = int(seed)
        self.search_strategy = search_strategy if not is_searcher(searcher_or_space) else type(
            searcher_or_space).__name__
        self.searcher = make_searcher(searcher_or_space, search_strategy, mode, seed, **searcher_options)
        self._next_trial_id = 0
        # per trial: config, status (a TrialStatus), last epoch and reward
        self._trials: dict[int, dict[str, Any]] = {}

    # ---- helpers -------------------------------------------------------------------------------------------
    def _score(self, reward: float) -> float:
        """Internal orientation: higher is better."""
        return reward if self.mode == "max" else -reward

    def _new_trial_suggestion(self) -> TrialSuggestion | None:
        trial_id = self._next_trial_id
        config = self.searcher.suggest(trial_id=trial_id)
        if config is None:
            return None
        self._next_trial_id += 1
        self._register(trial_id, config)
        return TrialSuggestion(kind="start", config=config, trial_id=trial_id)

    def _register(self, trial_id: int, config: dict) -> dict[str, Any]:
        record = self._trials.get(trial_id)
        if record is None:
            record = {"config": config, "status": TrialStatus.RUNNING, "epoch": 0, "reward": None}
            self._trials[trial_id] = record
            self._on_new_trial(trial_id, record)
        return record

    def _on_new_trial(self, trial_id: int, record: dict[str, Any]) -> None:
        """Hook for subclasses (e.g. bracket assignment)."""

    def _record(self, trial: Trial) -> dict[str, Any]:
        if trial.trial_id not in self._trials:
            raise ValueError(f"unknown trial_id {trial.trial_id}; start trials through suggest() or on_trial_add()")
        return self._trials[trial.trial_id]

    def _finish(self, trial_id: int, reward: float | None) -> None:
        record = self._trials[trial_id]
        if record["status"].finished:
            return
        early = self.max_t is not None and record["epoch"] < self.max_t
        record["status"] = TrialStatus.STOPPED if early else TrialStatus.COMPLETED
        if reward is not None:
            self.searcher.on_trial_complete(trial_id, record["config"], reward)

    # ---- public interface ----------------------------------------------------------------------------------
    def suggest(self) -> TrialSuggestion | None:
        """A new trial from the searcher, or ``None`` when the searcher is exhausted."""
        return self._new_trial_suggestion()

    def on_trial_add(self, trial: Trial) -> None:
        """Register a trial the runner started (trials from ``suggest()`` are registered already)."""
        if trial.trial_id < 0:
            raise ValueError(f"trial_id must be >= 0, got {trial.trial_id}")
        self._register(trial.trial_id, dict(trial.config))
        self._next_trial_id = max(self._next_trial_id, trial.trial_id + 1)

    def on_trial_result(self, trial: Trial, result: Mapping[str, Any]) -> Decision:
        """Record one reported epoch and decide whether the trial continues, pauses or stops."""
        record = self._record(trial)
        epoch, reward = parse_result(result, self.max_t)
        if record["status"].finished:
            raise ValueError(f"trial {trial.trial_id} already finished ({record['status']}); it cannot report again")
        record["status"] = TrialStatus.RUNNING
        record["epoch"], record["reward"] = epoch, reward
        decision = self._decide(trial.trial_id, epoch, reward)
        if decision == Decision.STOP:
            self._finish(trial.trial_id, reward)
        return decision

    def _decide(self, trial_id: int, epoch: int, reward: float) -> Decision:
        raise NotImplementedError

    def on_trial_complete(self, trial: Trial, result: Mapping[str, Any] | None = None) -> None:
        """The trial function returned (after its last epoch or a STOP); tells the searcher once."""
        record = self._record(trial)
        reward = record["reward"]
        if result and "reward" in result:
            reward = float(result["reward"])
        self._finish(trial.trial_id, reward)

    def on_trial_error(self, trial: Trial) -> None:
        """The trial failed; it is dropped from every decision and the searcher is told."""
        record = self._record(trial)
        if record["status"] == TrialStatus.ERROR:
            return
        record["status"] = TrialStatus.ERROR
        self._on_error(trial.trial_id)
        on_error = getattr(self.searcher, "on_trial_error", None)
        if on_error is not None:
            on_error(trial.trial_id, record["config"])

    def _on_error(self, trial_id: int) -> None:
        """Hook for subclasses."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (trial ids, bookkeeping and the searcher's own state)."""
        searcher_state = copy.deepcopy(self.searcher.state_dict()) if hasattr(self.searcher, "state_dict") else None
        return {
            "scheduler": self.name,
            "next_trial_id": self._next_trial_id,
            "trials": {str(k): copy.deepcopy(v) for k, v in self._trials.items()},
            "searcher": searcher_state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("scheduler") != self.name:
            raise ValueError(f"state was saved by a {state.get('scheduler')!r} scheduler, this one is {self.name!r}")
        self._next_trial_id = int(state["next_trial_id"])
        self._trials = {int(k): {**copy.deepcopy(dict(v)), "status": TrialStatus.parse(v["status"])}
                        for k, v in state["trials"].items()}
        if state.get("searcher") is not None:
            self.searcher.load_state_dict(state["searcher"])

    def metadata(self) -> dict[str, Any]:
        return {"scheduler": self.name, "search_strategy": self.search_strategy, "mode": self.mode,
                "max_t": self.max_t, "seed": self.seed, "num_trials": len(self._trials)}

    @property
    def trial_ids(self) -> list[int]:
        return sorted(self._trials)

    def trial_status(self, trial_id: int) -> TrialStatus:
        """The scheduler's view of the trial (COMPLETED and STOPPED are both "finished" to it)."""
        return self._trials[trial_id]["status"]
