"""The reporter a trial function calls once per epoch, and the stop signal it raises afterwards.

    def train_fn(config, reporter):
        for epoch in range(1, reporter.max_epochs + 1):
            decision = reporter(epoch=epoch, reward=1 - 1 / epoch, train_loss=1 / epoch)
            if decision != 'CONTINUE':   # 'PAUSE' or 'STOP': save state in reporter.checkpoint_dir and return
                return
"""
from __future__ import annotations

import functools
import json
import numbers
import pathlib
import time
from typing import Any, Callable

#: Each report is appended here (in the trial's checkpoint_dir) before it is sent: a driver killed between a
#: trial's checkpoint and the journal record of its report recovers the report from it on resume.
REPORTS_FILE = "reports.jsonl"


def read_reports(checkpoint_dir: str | pathlib.Path) -> list[dict]:
    """The results a trial sent from ``checkpoint_dir`` (a torn or unreadable line ends the list)."""
    path = pathlib.Path(checkpoint_dir) / REPORTS_FILE
    if not path.exists():
        return []
    results = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        try:
            if not line.endswith("\n"):
                break
            results.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return results


class TrialStopped(Exception):
    """Raised by a reporter called again after it answered STOP (or PAUSE): the trial must return.

    The runner treats a trial that lets this propagate as a trial that returned normally.
    """


@functools.lru_cache(maxsize=None)
def _decision_type() -> Callable[[str], Any]:
    from jaxgluon.scheduler import Decision

    return Decision


def as_decision(value: Any) -> Any:
    """The scheduler's ``Decision`` enum member for ``value``: a ``Decision`` passes through, its string (from
    a worker process's pipe) is looked up."""
    decision_type = _decision_type()
    return value if type(value) is decision_type else decision_type(value)


class Reporter:
    """Callable handed to ``train_fn(config, reporter)``: ``reporter(epoch=, reward=, **metrics) -> Decision``.

    Attributes: ``trial_id``, ``checkpoint_dir`` (``pathlib.Path``; exists; the trial's own state lives here and
    survives pauses, restarts and resumed experiments), ``max_epochs``, ``seed`` (a per-trial seed derived from
    the experiment seed), ``last_decision`` (None until the first report), ``deadline`` (``time.time()`` at which
    the experiment's time limit runs out, or None), ``reported_epoch`` (the last epoch this trial reported in any
    earlier launch, from its ``reports.jsonl``; 0 for none). A long epoch can poll :meth:`time_left` and return
    early rather than overrun the limit (the runner records such a trial as STOPPED). A restarted trial resumes from a
    checkpoint no newer than ``reported_epoch`` (``TrialCheckpointer.resume_epoch``): a process killed between an
    epoch's checkpoint and its report trains and reports that epoch again rather than never reporting it.

    ``send(result) -> Decision | str`` delivers one result dict to the runner and returns its decision; executors
    supply it (the runner's ``Decision`` in-process, its string after a pipe round trip from a worker process).
    """

    def __init__(
        self,
        trial_id: int,
        checkpoint_dir: str | pathlib.Path,
        max_epochs: int,
        seed: int,
        send: Callable[[dict], str],
        deadline: float | None = None,
    ):
        self.trial_id = trial_id
        self.checkpoint_dir = pathlib.Path(checkpoint_dir)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.max_epochs = max_epochs
        self.seed = seed
        self.last_decision: Any = None
        self._send = send
        self._last_epoch = 0
        self.deadline = deadline
        self._reports: Any = None
        self.reported_epoch = max((r["epoch"] for r in read_reports(self.checkpoint_dir)
                                   if isinstance(r.get("epoch"), int)), default=0)

    def time_left(self) -> float | None:
        """Seconds until the experiment's time limit (negative once past it), or None without a limit."""
        return None if self.deadline is None else self.deadline - time.time()

    def __call__(self, epoch: int | None = None, reward: float | None = None, **metrics: Any) -> Any:
        if self.last_decision is not None and self.last_decision != "CONTINUE":
            raise TrialStopped(
                f"trial {self.trial_id} was told {self.last_decision} and must return; "
                "check the reporter's answer: `if reporter(...) != 'CONTINUE': return`"
            )
        if epoch is None:
            epoch = self._last_epoch + 1
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 1:
            raise ValueError(f"reporter(epoch=...) must be an int >= 1 (1-based epoch), got {epoch!r}")
        if reward is None:
            raise ValueError("reporter(...) needs reward=<float> (higher is better), e.g. validation accuracy")
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real) and not hasattr(reward, "__float__"):
            raise TypeError(f"reporter(reward=...) must be a real number, got {type(reward).__name__}: {reward!r}")
        result = {"epoch": int(epoch), "reward": float(reward), **metrics}
        self._last_epoch = int(epoch)
        self._record(result)
        self.last_decision = as_decision(self._send(result))
        return self.last_decision

    def _record(self, result: dict) -> None:
        from jaxgluon.tune.journal import dumps

        try:
            line = dumps(result) + "\n"
        except (TypeError, ValueError):
            return  # the runner rejects it with a clear error
        if self._reports is None:
            self._reports = open(self.checkpoint_dir / REPORTS_FILE, "a", encoding="utf-8")
        self._reports.write(line)
        self._reports.flush()  # in the operating system's hands: survives a kill of this process

    def close(self) -> None:
        """Closes the reports file (the executors call it when the trial function returns)."""
        if self._reports is not None:
            self._reports.close()
            self._reports = None

    def __repr__(self) -> str:
        return (f"Reporter(trial_id={self.trial_id}, max_epochs={self.max_epochs}, "
                f"checkpoint_dir='{self.checkpoint_dir}')")
