"""How a resumed :class:`jaxgluon.tune.runner.Runner` rebuilds its state from the experiment's journal.

``_restore`` checks the settings a resumed session must keep, loads the scheduler's last snapshot and replays the
journal's events after it (``_apply``; a ``start`` replays ``suggest()``, checked against the journal by
``_replay_suggest``), charges a killed driver's time up to its last heartbeat, and queues the trials that were
running for a restart. ``_recover_reports`` then replays the reports those trials wrote to their
``reports.jsonl`` that the killed driver never journaled. The runner's own methods (``_on_report``,
``_mark_error``, ``_notify``, ``_unwatch``) apply what they find, so every state change still goes through the
runner.
"""
from __future__ import annotations

import json
import warnings

from jaxgluon.scheduler import Decision, Trial
from jaxgluon.tune import records as R
from jaxgluon.tune.journal import dumps, read_journal, read_json
from jaxgluon.tune.reporter import read_reports

JOURNAL = "journal.jsonl"
SCHEDULER_STATE = "scheduler_state.json"
SETTINGS = "experiment.json"
_RESUME_CHECKED = ("max_epochs", "search_strategy", "seed")  # settings a resumed session must keep


class JournalReplay:
    """The resume half of ``Runner`` (module docstring); it has no state of its own."""

    def _restore(self, previous_heartbeat: float | None = None) -> None:
        saved = read_json(self.dir / SETTINGS) if (self.dir / SETTINGS).exists() else {}
        for key in _RESUME_CHECKED:
            if key in saved and key in self.settings and saved[key] != self.settings[key]:
                raise ValueError(f"cannot resume {self.dir}: it ran with {key}={saved[key]!r}, this call has "
                                 f"{key}={self.settings[key]!r}; resume with the experiment's own settings")
        events = list(read_journal(self.dir / JOURNAL))
        snapshot = read_json(self.dir / SCHEDULER_STATE) if (self.dir / SCHEDULER_STATE).exists() else None
        replay_from = 0  # without a snapshot, the freshly built scheduler replays the whole journal
        if snapshot is not None and snapshot["journal_seq"] > len(events):
            # the journal lost records the snapshot had already seen (a recovered corrupt line): the snapshot is
            # ahead of the journal, so rebuild the scheduler from the journal alone
            snapshot = None
        if snapshot is not None:
            self.scheduler.load_state_dict(snapshot["scheduler"])
            replay_from = snapshot["journal_seq"]
        for event in events:
            self._apply(event, replay=event["seq"] >= replay_from)
        sessions = [i for i, e in enumerate(events) if e["event"] == "session"]
        if sessions and previous_heartbeat is not None:  # charge a killed driver's time up to its last heartbeat
            last = events[sessions[-1]]
            killed = not any(e["event"] == "finish" for e in events[sessions[-1]:])
            if killed and "t0" in last and "wall_start" in last:
                ran = max(0.0, previous_heartbeat - float(last["wall_start"]))
                self._time_offset = max(self._time_offset, float(last["t0"]) + ran)
        self._num_started = len(self.records)
        self._restart_queue = sorted(tid for tid, rec in self.records.items() if rec.status == R.RUNNING)

    def _apply(self, event: dict, replay: bool) -> None:
        """Rebuild the records from one journal event; with ``replay``, repeat the scheduler call it records."""
        kind = event["event"]
        self._time_offset = max(self._time_offset, float(event.get("t", 0.0)))
        if kind == "session":
            self._num_sessions = max(self._num_sessions, int(event["session"]))
            return
        if kind not in ("start", "result", "end"):
            return
        trial_id = int(event["trial_id"])
        if kind == "start":
            record = self.records.get(trial_id)
            if record is None:
                record = self.records[trial_id] = R.TrialRecord(trial_id, event["config"], start_time_s=event["t"])
            record.status, record.decision, record.end_time_s = R.RUNNING, None, None
            record.num_launches += 1
            record.config = event["config"]  # a resume may have changed it (PBT)
            self._trials[trial_id] = Trial(trial_id, record.config)
            if replay and event["kind"] != "restart":
                self._replay_suggest(event)
            return
        record, trial = self.records[trial_id], self._trials[trial_id]
        if kind == "result":
            record.add_result(event["result"], event["t"])
            record.decision = Decision(event["decision"])
            if event.get("error"):
                self._mark_error(record, event["error"], event["error"], event["t"])
            if replay and event.get("notify") == "result":
                self.scheduler.on_trial_result(trial, event["result"])
            elif replay and event.get("notify") == "error":
                self.scheduler.on_trial_error(trial)
        else:
            record.status, record.end_time_s = R.TrialStatus.parse(event["status"]), event["t"]
            record.error, record.traceback = event.get("error"), event.get("traceback")
            if record.status == R.ERROR:
                self._mark_error(record, record.error or "", record.traceback, event["t"])
            if replay:
                self._notify(trial, record, event.get("notify"))

    def _replay_suggest(self, event: dict) -> None:
        saved = self.scheduler.state_dict()
        searcher = getattr(self.scheduler, "searcher", None)
        if callable(getattr(searcher, "replaying", None)):  # no recomputation (a GP fit) of a known answer
            with searcher.replaying(event["config"]):
                suggestion = self.scheduler.suggest()
        else:
            suggestion = self.scheduler.suggest()
        if suggestion is not None and (suggestion.kind, suggestion.trial_id) == (event["kind"], event["trial_id"]) \
                and json.loads(dumps(suggestion.config)) == event["config"]:
            return
        self.scheduler.load_state_dict(saved)
        warnings.warn(f"resuming {self.dir}: the scheduler's replayed suggestion ({suggestion}) differs from the "
                      f"journal's {event['kind']} of trial {event['trial_id']}; registering the journal's trial "
                      "instead (a non-deterministic searcher?)", RuntimeWarning, stacklevel=2)
        self.scheduler.on_trial_add(Trial(event["trial_id"], event["config"]))

    def _recover_reports(self) -> None:
        """Reports a trial made before the previous driver died, but which never reached its journal (a kill
        between the trial's checkpoint and the journal line): replayed now, so the scheduler judges the trial at
        the epoch it reached, not one epoch late."""
        for trial_id in list(self._restart_queue):
            record = self.records[trial_id]
            reports, last = read_reports(self.dir / "trials" / str(trial_id)), record.last_result
            start = 0  # only what the trial sent after the journal's last result of it
            for i, report in enumerate(reports):
                if last is not None and (report.get("epoch"), report.get("reward")) == (last["epoch"], last["reward"]):
                    start = i + 1
            for result in reports[start:]:
                epoch = result.get("epoch")
                if isinstance(epoch, int) and record.last_epoch < epoch <= self.max_epochs and \
                        record.decision in (None, Decision.CONTINUE) and record.status == R.RUNNING:
                    self._on_report(trial_id, result)
            self._unwatch(trial_id)
