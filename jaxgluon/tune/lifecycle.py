"""The trial lifecycle: every status change of a trial, as one pure function.

``transition(record, event, ...) -> Transition`` says, for a trial in ``record.status`` (a
:class:`~jaxgluon.scheduler.TrialStatus`, the vocabulary the scheduler, the runner, the journal and the results
share) and one event, the trial's new status, which scheduler call the runner makes (``notify``), which journal
event it writes, the decision in force afterwards and the error to record. The runner applies it; nothing else
decides a trial's status. An event the lifecycle does not allow in a state raises :class:`IllegalTransition`.

==============  ==========================================  ==========  ===========  =======
event           from                                        to          notify       journal
==============  ==========================================  ==========  ===========  =======
Launch start    RUNNING (new record)                        RUNNING     --           start
Launch resume   PAUSED (or RUNNING told PAUSE, not back)    RUNNING     --           start
Launch restart  RUNNING (interrupted with its driver)       RUNNING     --           start
Report          RUNNING                                     RUNNING     result       result
Report, bad     RUNNING (NaN reward, epoch > max, ...)      ERROR       error        result
Return          RUNNING told PAUSE                          PAUSED      --           end
Return          RUNNING, last epoch reached                 COMPLETED   complete     end
Return          RUNNING told STOP / past the time limit     STOPPED     complete     end
Return          RUNNING, no report, past the time limit     STOPPED     error        end
Return, fails   RUNNING (raised, no report, crashed)        ERROR       error        end
Cancel hung     RUNNING                                     ERROR       error        end
Cancel          RUNNING (killed at the time limit)          STOPPED     complete     end
Interrupted     RUNNING told PAUSE / STOP (on resume)       as Return   as Return    end
Interrupted     RUNNING told CONTINUE (on resume)           RUNNING     --           -- (restart)
NotRestarted    RUNNING (no time left to restart it)        STOPPED     complete     end
any end event   ERROR (failed at a report)                  ERROR       --           end
==============  ==========================================  ==========  ===========  =======

``notify``: 'result' -> ``scheduler.on_trial_result`` (made by the runner before, its decision is the event's),
'complete' -> ``on_trial_complete``, 'error' -> ``on_trial_error``. COMPLETED, STOPPED and ERROR are final.

    >>> from jaxgluon.tune.records import TrialRecord
    >>> r = TrialRecord(0, {'lr': 0.1}, results=[{'epoch': 3, 'reward': 0.9}], decision=Decision.STOP)
    >>> transition(r, Return(), max_epochs=9)
    Transition(status=<TrialStatus.STOPPED: 'STOPPED'>, notify='complete', journal='end', decision=<Decision.STOP: 'STOP'>, error=None)
"""
from __future__ import annotations

from typing import Any, NamedTuple, Union

from jaxgluon.scheduler import Decision, TrialStatus

RUNNING, PAUSED, COMPLETED, STOPPED, ERROR = (TrialStatus.RUNNING, TrialStatus.PAUSED, TrialStatus.COMPLETED,
                                              TrialStatus.STOPPED, TrialStatus.ERROR)
NOTIFY_RESULT, NOTIFY_COMPLETE, NOTIFY_ERROR = "result", "complete", "error"
LAUNCH_KINDS = ("start", "resume", "restart")

NO_REPORT = "train_fn returned without reporting any result; call reporter(epoch=..., reward=...) once per epoch"
NO_REPORT_AT_DEADLINE = "stopped at the time limit before its first report"


class IllegalTransition(RuntimeError):
    """An event the lifecycle does not allow in the trial's current state (a bug in an executor or the runner)."""


class Launch(NamedTuple):
    """The runner submits the trial: ``kind`` 'start' (new), 'resume' (promoted from PAUSED) or 'restart'."""

    kind: str


class Report(NamedTuple):
    """The trial reported an epoch and gets ``decision``; ``error``: the report was rejected (the trial fails)."""

    decision: Decision
    error: str | None = None


_REPORTS = {decision._value_: Report(decision) for decision in Decision}


def report(decision: Decision, error: str | None = None) -> Report:
    """``Report(decision, error)``; the three error-free ones are built once (a report is the runner's hot path)."""
    return _REPORTS[decision._value_] if error is None else Report(decision, error)


class Return(NamedTuple):
    """The trial function ended on its own: returned (``error`` None) or raised/crashed (``error`` says how)."""

    error: str | None = None


class Cancel(NamedTuple):
    """The executor killed the trial on the runner's request: ``hung`` (silent past trial_timeout; ``reason``
    says so) or at the time limit (``grace_s`` after it, on the ``executor`` named)."""

    hung: bool
    reason: str = ""
    grace_s: float = 0.0
    executor: str = ""


class Interrupted(NamedTuple):
    """On resume: the trial was running when the previous driver died."""


class NotRestarted(NamedTuple):
    """The session ends before an interrupted trial could be restarted (``reason``: the stop reason)."""

    reason: str | None


Event = Union[Launch, Report, Return, Cancel, Interrupted, NotRestarted]


class Transition(NamedTuple):
    """What an event does to a trial; the runner sets ``status``/``decision``, makes the ``notify`` call and writes
    the ``journal`` event."""

    status: TrialStatus
    notify: str | None  # NOTIFY_RESULT | NOTIFY_COMPLETE | NOTIFY_ERROR | None
    journal: str | None  # 'start' | 'result' | 'end' | None (nothing happened: an interrupted trial to restart)
    decision: Decision | None  # the decision in force for the trial afterwards (None: none yet)
    error: str | None  # why it failed or stopped, to record (None: keep the record's)


_REPORTED = {d._value_: Transition(RUNNING, NOTIFY_RESULT, "result", d, None) for d in Decision}


def _illegal(status: TrialStatus, event: Any) -> IllegalTransition:
    return IllegalTransition(f"{type(event).__name__} is not allowed for a trial in state {status.value}")


def _ended(record: Any, max_epochs: int, past_deadline: bool) -> Transition:
    """A trial that reported and returned: paused, completed or stopped, by its last decision."""
    decision = record.decision
    if decision == Decision.PAUSE:
        return Transition(PAUSED, None, "end", decision, None)
    stopped = record.last_epoch < max_epochs and (decision == Decision.STOP or past_deadline)
    return Transition(STOPPED if stopped else COMPLETED, NOTIFY_COMPLETE, "end", decision, None)


def transition(record: Any, event: Event, *, max_epochs: int, past_deadline: bool = False) -> Transition:
    """The effect of ``event`` on a trial whose record (``status``, ``decision``, ``results``, ``last_epoch``)
    is ``record``. Pure: the caller applies the result. ``past_deadline``: the experiment's time limit is spent."""
    status = record.status
    if type(event) is Report:  # first: once per reported epoch
        if status != RUNNING:
            raise _illegal(status, event)
        if event.error is not None:
            return Transition(ERROR, NOTIFY_ERROR, "result", Decision.STOP, event.error)
        return _REPORTED[event.decision._value_]
    if isinstance(event, Launch):
        if event.kind not in LAUNCH_KINDS:
            raise ValueError(f"Launch.kind must be one of {LAUNCH_KINDS}, got {event.kind!r}")
        allowed = (status == PAUSED or status == RUNNING and record.decision == Decision.PAUSE
                   if event.kind == "resume" else status == RUNNING)
        if not allowed:
            raise _illegal(status, event)
        return Transition(RUNNING, None, "start", None, None)
    if not isinstance(event, (Return, Cancel, Interrupted, NotRestarted)):
        raise TypeError(f"not a lifecycle event: {event!r}")
    if status == ERROR:  # failed at a report: the scheduler was told then; the end is only journaled
        return Transition(ERROR, None, "end", record.decision, None)
    if status != RUNNING:
        raise _illegal(status, event)
    if isinstance(event, Return):
        if event.error is not None:
            return Transition(ERROR, NOTIFY_ERROR, "end", record.decision, event.error)
        if not record.results:
            if past_deadline:  # nothing to learn from: the scheduler forgets it
                return Transition(STOPPED, NOTIFY_ERROR, "end", record.decision, NO_REPORT_AT_DEADLINE)
            return Transition(ERROR, NOTIFY_ERROR, "end", record.decision, NO_REPORT)
        return _ended(record, max_epochs, past_deadline)
    if isinstance(event, Cancel):
        if event.hung:
            return Transition(ERROR, NOTIFY_ERROR, "end", record.decision, event.reason)
        return Transition(STOPPED, NOTIFY_COMPLETE, "end", record.decision,
                          f"killed at the time limit: it did not return within {event.grace_s:g} s of it "
                          f"({event.executor} executor)")
    if isinstance(event, Interrupted):
        if record.decision in (None, Decision.CONTINUE):
            return Transition(RUNNING, None, None, record.decision, None)  # to be restarted
        return _ended(record, max_epochs, past_deadline=False)
    return Transition(STOPPED, NOTIFY_COMPLETE, "end", record.decision,  # NotRestarted
                      f"interrupted with the previous session and not restarted ({event.reason})")
