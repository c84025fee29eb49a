"""The experiment loop: asks the scheduler for work, hands it to an executor, records everything in the journal.

Durable record (``experiment_dir``):

- ``journal.jsonl``: one event per line (``session``, ``start``, ``result`` with the decision it got, ``end``,
  ``finish``), flushed (and by default fsynced) as it happens. The trial records are rebuilt from it.
- ``scheduler_state.json``: the scheduler's (and so the searcher's) ``state_dict()`` with the journal position it
  reflects, rewritten atomically at session start and end and whenever the journal has doubled (by at least
  64 events) or a minute has passed -- so its O(trials) cost stays amortised O(1) per event. On resume,
  the journal events after that position are replayed into the scheduler in their original order (a start
  replays ``suggest()``, which is deterministic given the scheduler's state, and is checked against the
  journal; a mismatch falls back to ``on_trial_add`` with a warning).
- ``experiment.json``: the settings of the first session; ``trials/<trial_id>/``: each trial's checkpoint_dir.

- ``experiment.lock``: held by the driver from before it reads any of the above until it returns (one driver at a
  time; its modification time is the driver's heartbeat); ``workers.lock``: the writers' fence
  (``jaxgluon.tune.lock``).

Resuming (``Runner(..., resume=True)``): finished trials are kept as they are, trials that were running restart
from their own checkpoint_dir, paused trials wait for the scheduler to promote them, and the time spent in
earlier sessions -- a killed one's up to its last heartbeat -- counts against ``time_limits``. A report a running
trial sent that the killed driver never journaled is recovered from the trial's ``reports.jsonl`` first, and
journaled suggestions are replayed into the searcher without recomputing them (``Searcher.replaying``); the
rebuilding is ``jaxgluon.tune.journal_replay``'s.

Liveness: a trial silent for longer than ``trial_timeout`` is killed as hung (ERROR), and past ``time_limits``
every trial still running is killed after ``DEADLINE_GRACE_S`` (STOPPED), through ``Executor.cancel``
(rules: ``jaxgluon.tune.liveness``).

Every status change of a trial is ``jaxgluon.tune.lifecycle.transition``'s; the runner applies it (``_launch``,
``_on_report``, ``_end``). Experiment time, deadlines and liveness are read from the executor's clock
(``Executor.now``): wall time for real executors, simulated seconds for ``jaxgluon.tune.sim``'s.
"""
from __future__ import annotations

import math
import os
import pathlib
import time
import warnings
from typing import Any, Callable, Sequence

from jaxgluon.scheduler import Decision, Trial
from jaxgluon.tune import lifecycle as L
from jaxgluon.tune import records as R
from jaxgluon.tune.executor import Executor, TrialLaunch, TrialOutcome
from jaxgluon.tune.journal import Journal, dumps, write_json_atomic
from jaxgluon.tune.journal_replay import JOURNAL, SCHEDULER_STATE, SETTINGS, JournalReplay
from jaxgluon.tune.liveness import (DEADLINE_GRACE_S, START_ALLOWANCE_S, auto_timeout, check_trial_timeout,
                                   kill_time)
from jaxgluon.tune.lock import ExperimentLock, fence_stale_writers
from jaxgluon.tune.result import AllTrialsFailedError, ExperimentResult
from jaxgluon.tune.stop import StopCriterion, keep_deadline

LOCK = "experiment.lock"
FENCE = "workers.lock"
SNAPSHOT_MIN_EVENTS = 64
SNAPSHOT_MAX_SECONDS = 60.0


def trial_seed(seed: int, trial_id: int) -> int:
    """The per-trial seed handed to ``reporter.seed``: distinct per trial, reproducible per experiment."""
    return (int(seed) * 1_000_003 + int(trial_id)) % (2**31 - 1)


class Runner(JournalReplay):
    """Runs one experiment (or resumes it) to a stop criterion. ``run()`` returns an :class:`ExperimentResult`."""

    def __init__(self, train_fn: Callable[[dict, Any], Any], scheduler: Any, executor: Executor,
                 experiment_dir: str | pathlib.Path, stop: StopCriterion, max_epochs: int, seed: int = 0,
                 resume: bool = False, journal_sync: str = "group", settings: dict | None = None,
                 callbacks: Sequence[Callable[[dict], Any]] = (), trial_timeout: float | str | None = "auto",
                 started: float | None = None):
        # experiment time: wall seconds, or a simulated executor's simulated ones (the default's own function,
        # without a method frame per call: the clock is read several times per report)
        self._clock = time.monotonic if type(executor).now is Executor.now else executor.now
        # the session's clock starts at ``started`` (time.monotonic() of the tune() call: its setup counts; a
        # simulated clock ignores it) or now; restoring counts as used time
        now = self._clock()
        self._session_start = (now if started is None or self._clock is not time.monotonic
                               else min(float(started), now))
        self._wall_start = time.time() - (now - self._session_start)
        self.callbacks = list(callbacks)
        self.trial_timeout = check_trial_timeout(trial_timeout)
        self.train_fn, self.scheduler, self.executor = train_fn, scheduler, executor
        self.dir = pathlib.Path(experiment_dir)
        self.stop, self.max_epochs, self.seed = stop, int(max_epochs), int(seed)
        self.settings = {"max_epochs": self.max_epochs, "seed": self.seed, "stop_criterion": stop.as_dict(),
                         **(settings or {})}
        self.records: dict[int, R.TrialRecord] = {}
        self._trials: dict[int, Trial] = {}
        self._restart_queue: list[int] = []
        self._num_started = 0
        self._num_sessions = 0
        self._time_offset = 0.0
        self._stop_reason: str | None = None
        self._first_error: tuple[float, int] | None = None
        self._last_seen: dict[int, float] = {}  # clock time of a running trial's launch or last report
        self._unstarted: set[int] = set()       # launched, its worker not yet started it (Executor.reports_start)
        self._max_interval = 0.0
        self._num_decisions = 0
        self._decision_seconds = 0.0
        self._num_suggestions = 0
        self._suggest_seconds = 0.0
        self._snapshot_seq = -1
        self._snapshot_time = 0.0
        self._cancelled: dict[int, str] = {}  # trial_id -> why the runner had it killed
        self._sent_deadlines: dict[int, float] = {}  # trial_id -> the time.time() deadline its launch carried

        journal_path = self.dir / JOURNAL
        if resume and not journal_path.exists():
            raise ValueError(f"resume=True but {self.dir} holds no experiment journal ({JOURNAL}); pass the "
                             "output_directory of the experiment to continue")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = ExperimentLock(self.dir / LOCK)  # before reading anything: one driver at a time
        try:
            if journal_path.exists() and not resume:
                raise ValueError(f"{self.dir} already holds an experiment ({JOURNAL}); pass resume=True to continue "
                                 "it or choose a new output_directory")
            (self.dir / "trials").mkdir(parents=True, exist_ok=True)
            if resume:
                # opened first: a torn or corrupt line is cut off (and the original kept) before the restore reads
                self.journal = Journal(journal_path, sync=journal_sync)
                self._restore(self._lock.previous_heartbeat)
            else:
                write_json_atomic(self.dir / SETTINGS, self.settings, "fsync")
                _fsync_directory(self.dir)
                self.journal = Journal(journal_path, sync=journal_sync)
        except BaseException:
            if getattr(self, "journal", None) is not None:
                self.journal.close()
            self._lock.release()
            raise
        self._deadline = (None if stop.time_limits is None
                          else self._session_start + stop.time_limits - self._time_offset)
        self._keep_deadline: float | None = None   # the deadline less StopCriterion.keep's seconds, when in force

    def _log(self, event: str, **fields: Any) -> None:
        """Append one event to the journal, then show it to the callbacks (a failing callback is dropped)."""
        record = self.journal.append(event, **fields)
        for callback in list(self.callbacks):
            try:
                callback(record)
            except Exception as err:  # noqa: BLE001 -- a progress display must not end hours of compute
                self.callbacks.remove(callback)
                warnings.warn(f"experiment callback {callback!r} raised {type(err).__name__}: {err}; it is "
                              "disabled for the rest of the run", RuntimeWarning, stacklevel=2)

    # ---- clock ---------------------------------------------------------------------------------------------
    def _now(self) -> float:
        """Experiment time: seconds spent in all sessions so far."""
        return round(self._time_offset + self._clock() - self._session_start, 6)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline

    def _past_sent_deadline(self, trial_id: int) -> bool:
        """Past the wall-clock deadline the trial's launch carried, on the clock the trial itself reads: a trial that
        returned because ``time.time()`` passed it is past its deadline even where the monotonic clock is a little
        behind (the two part when the wall clock is stepped)."""
        deadline = self._sent_deadlines.get(trial_id)
        return deadline is not None and time.time() >= deadline

    def _past_keep(self) -> bool:
        return self._keep_deadline is not None and self._clock() >= self._keep_deadline

    def _update_keep(self) -> None:
        """Re-asks ``StopCriterion.keep`` at a report (the rule: ``jaxgluon.tune.stop.keep_deadline``); a keep
        deadline already reached stands: the search is winding down for it."""
        if (self.stop.keep is not None and self._deadline is not None and self._stop_reason is None
                and not self._past_keep()):
            self._keep_deadline = keep_deadline(self.stop.keep, self.records, self._deadline, self._clock())

    def run(self) -> ExperimentResult:
        try:
            return self._run()
        finally:
            try:
                self.journal.close()  # also on Ctrl-C or a failure: releases the experiment for a resume
            finally:
                self._lock.release()

    def _run(self) -> ExperimentResult:
        self._num_sessions += 1
        self._log("session", session=self._num_sessions, t=self._now(), t0=self._time_offset,
                  wall_start=self._wall_start, wall_time=time.strftime("%Y-%m-%dT%H:%M:%S%z"), settings=self.settings)
        self._snapshot()
        fence_stale_writers(self.dir / FENCE)  # the workers of a killed driver are gone before ours start
        self.executor.bind(self.train_fn, self._on_report)
        self.executor.on_started = self._on_started
        self.executor.on_retry = self._on_retry
        try:
            self._recover_reports()
            for trial_id in list(self._restart_queue):
                if self._settle_if_decided(trial_id):
                    self._restart_queue.remove(trial_id)
            while True:
                self._fill()
                if self.executor.num_running == 0:
                    break
                for outcome in self.executor.poll(self._poll_timeout()):
                    self._on_outcome(outcome)
                self._cancel_hung()
                self._lock.heartbeat()
        finally:
            self.executor.shutdown()
        for trial_id in self._restart_queue:  # interrupted trials the stop criterion left no time to restart
            self._end(trial_id, L.NotRestarted(self._stop_reason))
        self._restart_queue = []
        end_time = self._clock()
        overrun = max(0.0, end_time - self._deadline) if self._deadline is not None and self._past_deadline() else 0.0
        if self._stop_reason is None:
            self._stop_reason = "num_trials" if self.stop.trials_exhausted(self._num_started) else "exhausted"
        self._log("finish", t=self._now(), stop_reason=self._stop_reason, overrun_s=overrun)
        self._snapshot()
        return self._result(overrun)

    def _fill(self) -> None:
        while self.executor.num_running < self.executor.capacity:
            if self._stop_reason is None and self._past_deadline():
                self._stop_reason = "time_limits"
            elif self._stop_reason is None and self._past_keep():
                self._stop_reason = "keep"
            if self._stop_reason is not None:
                return
            self._maybe_snapshot()
            if self._restart_queue:
                self._launch(self._restart_queue.pop(0), kind="restart")
                continue
            start = time.perf_counter()
            suggestion = self._next_suggestion()
            self._num_suggestions += 1
            self._suggest_seconds += time.perf_counter() - start
            if suggestion is None:
                return
            if suggestion.kind == "start":
                self.records[suggestion.trial_id] = R.TrialRecord(suggestion.trial_id, dict(suggestion.config))
                self._num_started += 1
            else:  # a resume may carry a new config (PBT: exploit another trial, explore its hyperparameters)
                self._set_config(suggestion.trial_id, dict(suggestion.config))
            self._launch(suggestion.trial_id, kind=suggestion.kind)

    def _next_suggestion(self) -> Any:
        if not self.stop.trials_exhausted(self._num_started):
            return self.scheduler.suggest()
        if not any(r.status == R.PAUSED for r in self.records.values()):
            return None
        # Trial budget spent: paused trials may still be promoted, but no new trial may start. Ask, and roll
        # the scheduler back if it wanted to start one.
        saved = self.scheduler.state_dict()
        suggestion = self.scheduler.suggest()
        if suggestion is not None and suggestion.kind == "start":
            self.scheduler.load_state_dict(saved)
            return None
        return suggestion

    def _launch(self, trial_id: int, kind: str) -> None:
        record = self.records[trial_id]
        change = L.transition(record, L.Launch(kind), max_epochs=self.max_epochs)
        record.status, record.decision, record.end_time_s = change.status, change.decision, None
        record.num_launches += 1
        self._trials.setdefault(trial_id, Trial(trial_id, record.config))
        checkpoint_dir = self.dir / "trials" / str(trial_id)
        checkpoint_dir.mkdir(exist_ok=True)  # before the start event: its fsync commits the new directory too
        t = self._now()
        if record.start_time_s is None:
            record.start_time_s = t
        self._log("start", trial_id=trial_id, kind=kind, config=record.config, t=t)
        self._last_seen[trial_id] = now = self._clock()
        if self.executor.reports_start:
            self._unstarted.add(trial_id)
        deadline = None if self._deadline is None else time.time() + (self._deadline - now)
        if deadline is not None and self._clock is time.monotonic:
            self._sent_deadlines[trial_id] = deadline
        self.executor.submit(TrialLaunch(trial_id=trial_id, config=record.config, checkpoint_dir=str(checkpoint_dir),
                                         max_epochs=self.max_epochs, seed=trial_seed(self.seed, trial_id),
                                         deadline=deadline, fence=str(self.dir / FENCE)))

    def _set_config(self, trial_id: int, config: dict) -> None:
        if config != self.records[trial_id].config:
            self.records[trial_id].config = config
            self._trials[trial_id] = Trial(trial_id, config)

    def _poll_timeout(self) -> float:
        """Until the next thing the driver must check: the heartbeat, the deadline, a trial's liveness limit."""
        now, wake = self._clock(), [1.0]
        if self._deadline is not None and self._deadline > now:
            wake.append(self._deadline - now)
        if self._keep_deadline is not None and self._keep_deadline > now and self._stop_reason is None:
            wake.append(self._keep_deadline - now)
        for trial_id, seen in self._last_seen.items():
            wake.append(self._kill_time(seen, trial_id) - now)
        return min(max(0.02, w) for w in wake)

    # ---- trial events --------------------------------------------------------------------------------------
    def _on_started(self, trial_id: int) -> None:
        """The trial function began (its worker is up): its silence is counted from now."""
        self._unstarted.discard(trial_id)
        if trial_id in self._last_seen:
            self._last_seen[trial_id] = self._clock()

    def _on_retry(self, trial_id: int, error: str, attempt: int) -> None:
        """The executor launches the trial again (from its checkpoint) after its worker or node died: journaled
        (a ``retry`` event, skipped on resume) and shown to the callbacks."""
        self._log("retry", trial_id=trial_id, attempt=attempt, error=error, t=self._now())

    def _on_report(self, trial_id: int, result: dict) -> Decision:
        start = time.perf_counter()
        record, trial, t = self.records[trial_id], self._trials[trial_id], self._now()
        epoch, reward = result["epoch"], result["reward"]
        error = None
        try:
            dumps(result)
        except (TypeError, ValueError) as err:
            error = f"reported a result that is not JSON-serialisable: {err}"
            result = {"epoch": epoch, "reward": reward}
        if error is None and not math.isfinite(reward):
            error = f"reported a non-finite reward ({reward}) at epoch {epoch}"
        if error is None and epoch > self.max_epochs:
            error = f"reported epoch {epoch} beyond max_epochs={self.max_epochs}"
        decision = Decision.STOP
        record.add_result(result, t)
        # the keep this report sets decides this report too: a new best whose reserve says "wind down now" is not
        # sent on for another epoch, which would spend the time its own refit needs
        self._update_keep()
        if error is None:
            decision = self.scheduler.on_trial_result(trial, result)
            if type(decision) is not Decision:
                decision = Decision(decision)  # a scheduler may answer with the plain string
            if decision is Decision.CONTINUE and self._stop_reason is None and self.stop.reward_reached(reward):
                self._stop_reason = "max_reward"
            if self._stop_reason is None and self._past_keep():
                self._stop_reason = "keep"
            if decision is Decision.CONTINUE and (self._stop_reason is not None or self._past_deadline()):
                decision = Decision.STOP
        change = L.transition(record, L.report(decision, error), max_epochs=self.max_epochs)
        if change.notify == L.NOTIFY_ERROR:
            self.scheduler.on_trial_error(trial)
            self._mark_error(record, error, error, t)
        record.status, record.decision = change.status, change.decision
        self._log("result", trial_id=trial_id, result=result, decision=change.decision._value_, notify=change.notify,
                  error=error, t=t)
        now = self._clock()
        self._max_interval = max(self._max_interval, now - self._last_seen.get(trial_id, now))
        self._last_seen[trial_id] = now
        self._num_decisions += 1
        self._decision_seconds += time.perf_counter() - start
        return change.decision

    def _mark_error(self, record: R.TrialRecord, error: str, traceback: str | None, t: float) -> None:
        record.status, record.error, record.traceback = R.ERROR, error, traceback
        if self._first_error is None or t < self._first_error[0]:
            self._first_error = (t, record.trial_id)

    def _on_outcome(self, outcome: TrialOutcome) -> None:
        trial_id = outcome.trial_id
        self._unwatch(trial_id)
        cancel_reason = self._cancelled.pop(trial_id, "")
        if outcome.error is not None:
            event: L.Event = L.Return(outcome.error)
        elif outcome.cancelled:
            event = L.Cancel(hung=cancel_reason.startswith("hung"), reason=cancel_reason, grace_s=DEADLINE_GRACE_S,
                             executor=self.executor.name)
        else:
            event = L.Return()
        self._end(trial_id, event, outcome.traceback)

    def _end(self, trial_id: int, event: L.Event, traceback: str | None = None) -> bool:
        """Apply the lifecycle's answer to a trial's end (returned, killed, interrupted, not restarted): its status,
        the scheduler call and the ``end`` event. False: nothing ended (an interrupted trial to restart)."""
        record, t = self.records[trial_id], self._now()
        change = L.transition(record, event, max_epochs=self.max_epochs,
                              past_deadline=self._past_deadline() or self._past_sent_deadline(trial_id))
        self._sent_deadlines.pop(trial_id, None)
        if change.journal is None:
            return False
        if change.status == R.ERROR and record.status != R.ERROR:
            self._mark_error(record, change.error or "", traceback, t)
        elif change.error is not None:
            record.error = change.error
        record.status, record.decision = change.status, change.decision
        self._notify(self._trials[trial_id], record, change.notify)
        record.end_time_s = t
        self._log("end", trial_id=trial_id, status=record.status.value, notify=change.notify, error=record.error,
                  traceback=record.traceback, t=t)
        return True

    def _notify(self, trial: Trial, record: R.TrialRecord, notify: str | None) -> None:
        if notify == L.NOTIFY_COMPLETE:
            self.scheduler.on_trial_complete(trial, record.last_result)
        elif notify == L.NOTIFY_ERROR:
            self.scheduler.on_trial_error(trial)

    def trial_timeout_now(self) -> float | None:
        """Seconds a running trial may go without reporting before it is killed as hung (None: no limit); 'auto':
        ``jaxgluon.tune.liveness.auto_timeout``."""
        if self.trial_timeout != "auto":
            return self.trial_timeout  # type: ignore[return-value]
        return auto_timeout(self.stop.time_limits, self._max_interval)

    def _unwatch(self, trial_id: int) -> None:
        """The trial is no longer running: its liveness is not watched any more."""
        self._last_seen.pop(trial_id, None)
        self._unstarted.discard(trial_id)

    def _kill_time(self, seen: float, trial_id: int | None = None) -> float:
        timeout = self.trial_timeout_now()
        if timeout is not None and trial_id in self._unstarted:   # its worker is still starting (spawn, imports)
            timeout += START_ALLOWANCE_S
        return kill_time(seen, self._deadline, timeout)

    def _cancel_hung(self) -> None:
        """Kill trials past the time limit (plus ``DEADLINE_GRACE_S``) or silent for longer than the trial timeout:
        no hung trial outlives the budget, and a hung trial frees its worker for the rest of the search."""
        now = self._clock()
        for trial_id, seen in list(self._last_seen.items()):
            if now < self._kill_time(seen, trial_id):
                continue
            hung = self._deadline is None or now < self._deadline
            if self.executor.cancel(trial_id):
                self._unwatch(trial_id)
                self._cancelled[trial_id] = (
                    f"hung: no report for {now - seen:.1f} s, more than trial_timeout={self.trial_timeout_now():.1f} "
                    f"s; {'abandoned (in-process executor)' if self.executor.name == 'in_process' else 'killed'}"
                    if hung else "deadline")

    # ---- durable state -------------------------------------------------------------------------------------
    def _snapshot(self) -> None:
        write_json_atomic(self.dir / SCHEDULER_STATE,
                          {"journal_seq": self.journal.seq, "scheduler": self.scheduler.state_dict()},
                          self.journal.sync)
        self._snapshot_seq, self._snapshot_time = self.journal.seq, time.monotonic()

    def _maybe_snapshot(self) -> None:
        grown = self.journal.seq - self._snapshot_seq
        if grown >= max(SNAPSHOT_MIN_EVENTS, self._snapshot_seq) or (
                grown > 0 and time.monotonic() - self._snapshot_time > SNAPSHOT_MAX_SECONDS):
            self._snapshot()

    def _settle_if_decided(self, trial_id: int) -> bool:
        """A trial interrupted after it was told PAUSE/STOP (or failed a report) is ended, not restarted."""
        return self._end(trial_id, L.Interrupted())

    # ---- result --------------------------------------------------------------------------------------------
    def _result(self, overrun: float) -> ExperimentResult:
        trials = [self.records[tid].to_dict() for tid in sorted(self.records)]
        by_status = {status.value: sum(1 for t in trials if t["status"] == status) for status in R.STATUSES}
        if trials and by_status[R.ERROR.value] == len(trials):
            assert self._first_error is not None
            first = self.records[self._first_error[1]]
            raise AllTrialsFailedError(
                f"all {len(trials)} trials failed (journal: {self.dir / JOURNAL}); the first failure, trial "
                f"{first.trial_id} with config {first.config}:\n{first.traceback or first.error}")
        best = max((t for t in trials if t["best_reward"] is not None and t["status"] != R.ERROR),
                   key=lambda t: t["best_reward"], default=None)
        scheduler_meta = self.scheduler.metadata() if hasattr(self.scheduler, "metadata") else {}
        metadata = {
            **self.settings,
            "scheduler": scheduler_meta,
            "executor": self.executor.name,
            "executor_stats": self.executor.stats(),
            "trial_timeout": self.trial_timeout,
            "resources_per_trial": self.executor.resources(),
            "stop_reason": self._stop_reason,
            "time_used_s": self._now(),
            "overrun_s": overrun,
            "max_report_interval_s": self._max_interval,
            "num_trials_by_status": by_status,
            "num_sessions": self._num_sessions,
            "journal_sync": self.journal.sync,
            "runner_overhead": {"num_decisions": self._num_decisions,  # reports handled: scheduler + journal
                                "decision_seconds": self._decision_seconds,
                                "num_suggestions": self._num_suggestions,  # scheduler.suggest() (searcher) calls
                                "suggest_seconds": self._suggest_seconds},
            "experiment_dir": str(self.dir),
        }
        return ExperimentResult(best_config=None if best is None else best["config"],
                                best_reward=None if best is None else best["best_reward"],
                                best_trial_id=None if best is None else best["trial_id"],
                                trials=trials, metadata=metadata, experiment_dir=self.dir)


def _fsync_directory(path: pathlib.Path) -> None:
    """Makes a rename in ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
