"""The trial lifecycle: every state x every event, and the end of a running trial by its decision and progress."""
from __future__ import annotations

import json

import pytest

from jaxgluon.scheduler import Decision, Trial, TrialStatus
from jaxgluon.scheduler.fifo import FIFOScheduler
from jaxgluon.tune import lifecycle as L
from jaxgluon.tune.records import TrialRecord

MAX_EPOCHS = 9
EVENTS = {
    "launch start": L.Launch("start"),
    "launch resume": L.Launch("resume"),
    "launch restart": L.Launch("restart"),
    "report": L.Report(Decision.CONTINUE),
    "bad report": L.Report(Decision.STOP, "reported a non-finite reward (nan) at epoch 4"),
    "return": L.Return(),
    "fail": L.Return("ValueError: boom"),
    "hung": L.Cancel(hung=True, reason="hung: no report for 9.0 s"),
    "killed": L.Cancel(hung=False, grace_s=5.0, executor="process_pool"),
    "interrupted": L.Interrupted(),
    "not restarted": L.NotRestarted("time_limits"),
}
# per state, the record it is in (3 of 9 epochs reported) and the decision it was last given
STATES = {
    TrialStatus.RUNNING: Decision.CONTINUE,
    TrialStatus.PAUSED: Decision.PAUSE,
    TrialStatus.COMPLETED: Decision.STOP,
    TrialStatus.STOPPED: Decision.STOP,
    TrialStatus.ERROR: Decision.STOP,
}
R, P, C, S, E = (TrialStatus.RUNNING, TrialStatus.PAUSED, TrialStatus.COMPLETED, TrialStatus.STOPPED,
                 TrialStatus.ERROR)
X = "illegal"
# expected (status, notify, journal event) per state and event; X: IllegalTransition
TABLE = {
    R: {"launch start": (R, None, "start"), "launch resume": X, "launch restart": (R, None, "start"),
        "report": (R, "result", "result"), "bad report": (E, "error", "result"),
        "return": (C, "complete", "end"),  # it returned on its own before max_epochs, told CONTINUE
        "fail": (E, "error", "end"), "hung": (E, "error", "end"), "killed": (S, "complete", "end"),
        "interrupted": (R, None, None), "not restarted": (S, "complete", "end")},
    P: {**{name: X for name in EVENTS}, "launch resume": (R, None, "start")},
    C: {name: X for name in EVENTS},
    S: {name: X for name in EVENTS},
    E: {**{name: (E, None, "end") for name in EVENTS},
        "launch start": X, "launch resume": X, "launch restart": X, "report": X, "bad report": X},
}


def _record(status, decision, epochs=3):
    return TrialRecord(0, {"x": 1}, status=status, decision=decision,
                       results=[{"epoch": e, "reward": 0.1 * e} for e in range(1, epochs + 1)])


@pytest.mark.parametrize("status", list(TABLE), ids=str)
@pytest.mark.parametrize("name", list(EVENTS))
def test_every_state_and_event(status, name):
    assert set(TABLE) == set(TrialStatus) and all(set(row) == set(EVENTS) for row in TABLE.values())
    record, expected = _record(status, STATES[status]), TABLE[status][name]
    if expected == X:
        with pytest.raises(L.IllegalTransition, match=status.value):
            L.transition(record, EVENTS[name], max_epochs=MAX_EPOCHS)
        return
    change = L.transition(record, EVENTS[name], max_epochs=MAX_EPOCHS)
    assert (change.status, change.notify, change.journal) == expected
    assert record.status == status  # pure: the caller applies it


@pytest.mark.parametrize("event, decision, epochs, past_deadline, expected", [
    (L.Return(), Decision.PAUSE, 3, False, (P, None, None)),
    (L.Return(), Decision.STOP, 3, False, (S, "complete", None)),
    (L.Return(), Decision.STOP, 9, False, (C, "complete", None)),  # every scheduler says STOP at max_t
    (L.Return(), Decision.CONTINUE, 9, False, (C, "complete", None)),
    (L.Return(), Decision.CONTINUE, 3, True, (S, "complete", None)),  # returned early at the time limit
    (L.Return(), None, 0, False, (E, "error", L.NO_REPORT)),
    (L.Return(), None, 0, True, (S, "error", L.NO_REPORT_AT_DEADLINE)),  # the scheduler forgets it
    (L.Interrupted(), Decision.PAUSE, 3, False, (P, None, None)),
    (L.Interrupted(), Decision.STOP, 3, True, (S, "complete", None)),
    (L.Interrupted(), Decision.STOP, 9, False, (C, "complete", None)),
    (L.Interrupted(), None, 0, False, (R, None, None)),  # to be restarted from its checkpoint
    (L.Cancel(hung=False, grace_s=5.0, executor="in_process"), Decision.CONTINUE, 3, True,
     (S, "complete", "killed at the time limit: it did not return within 5 s of it (in_process executor)")),
    (L.Cancel(hung=True, reason="hung: no report"), Decision.CONTINUE, 3, False, (E, "error", "hung: no report")),
    (L.NotRestarted("time_limits"), None, 2, True,
     (S, "complete", "interrupted with the previous session and not restarted (time_limits)")),
])
def test_how_a_running_trial_ends(event, decision, epochs, past_deadline, expected):
    change = L.transition(_record(R, decision, epochs), event, max_epochs=MAX_EPOCHS, past_deadline=past_deadline)
    assert (change.status, change.notify, change.error) == expected


def test_reports_carry_the_decision_and_launches_clear_it():
    running = _record(R, Decision.CONTINUE)
    for decision in Decision:
        change = L.transition(running, L.Report(decision), max_epochs=MAX_EPOCHS)
        assert change.decision is decision and change.status == R
    assert L.transition(running, L.Report(Decision.CONTINUE, "bad"), max_epochs=9).decision is Decision.STOP
    assert L.transition(_record(P, Decision.PAUSE), L.Launch("resume"), max_epochs=9).decision is None
    # a trial told PAUSE may be promoted before its function has returned (a busy worker): still one launch
    assert L.transition(_record(R, Decision.PAUSE), L.Launch("resume"), max_epochs=9).status == R
    with pytest.raises(ValueError, match="kind"):
        L.transition(running, L.Launch("begin"), max_epochs=9)
    for status in (R, E):
        with pytest.raises(TypeError, match="not a lifecycle event"):
            L.transition(_record(status, None), "STOP", max_epochs=9)


def test_status_vocabulary_is_shared_and_reads_old_spellings():
    assert [s.value for s in TrialStatus] == ["RUNNING", "PAUSED", "COMPLETED", "STOPPED", "ERROR"]
    assert TrialStatus.STOPPED == "STOPPED" and f"{TrialStatus.STOPPED}" == "STOPPED"
    assert json.dumps({"status": TrialStatus.ERROR}) == '{"status": "ERROR"}'
    assert {s for s in TrialStatus if s.finished} == {C, S, E}
    legacy = {"running": R, "paused": P, "done": C, "error": E, "completed": C, "stopped": S, "STOPPED": S}
    assert {text: TrialStatus.parse(text) for text in legacy} == legacy
    record = TrialRecord(0, {}, status=TrialStatus.PAUSED)
    assert type(record.to_dict()["status"]) is str and record.to_dict()["status"] == "PAUSED"


class _Searcher:
    mode = "max"

    def suggest(self, trial_id=None):
        return {"x": 1}

    def on_trial_result(self, *args):
        pass

    def on_trial_complete(self, *args):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_scheduler_uses_the_shared_statuses_and_loads_a_state_saved_with_its_old_ones():
    scheduler = FIFOScheduler(_Searcher(), max_t=3)
    first, second = scheduler.suggest(), scheduler.suggest()
    trial = lambda suggestion: Trial(suggestion.trial_id, suggestion.config)
    assert scheduler.on_trial_result(trial(first), {"epoch": 3, "reward": 0.5}) == Decision.STOP
    scheduler.on_trial_result(trial(second), {"epoch": 1, "reward": 0.5})
    scheduler.on_trial_complete(trial(second), {"epoch": 1, "reward": 0.5})
    assert scheduler.trial_status(first.trial_id) == C and scheduler.trial_status(second.trial_id) == S
    state = json.loads(json.dumps(scheduler.state_dict()))
    assert {t["status"] for t in state["trials"].values()} == {"COMPLETED", "STOPPED"}
    for t, old in zip(state["trials"].values(), ("done", "running")):  # a snapshot written before TrialStatus
        t["status"] = old
    restored = FIFOScheduler(_Searcher(), max_t=3)
    restored.load_state_dict(state)
    assert restored.trial_status(first.trial_id) is C and restored.trial_status(second.trial_id) is R
    with pytest.raises(ValueError, match="already finished"):
        restored.on_trial_result(trial(first), {"epoch": 3, "reward": 0.5})
