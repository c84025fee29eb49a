"""The fit progress display: a widget in Jupyter, a redrawn bar in a terminal, plain lines in logs."""
import io
import warnings

import pytest

from jaxgluon.task.progress import ProgressBar, display_mode


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _events(bar: ProgressBar, trials: int, epochs: int) -> None:
    for trial in range(trials):
        for epoch in range(1, epochs + 1):
            bar.on_event({"event": "result", "trial_id": trial, "result": {"epoch": epoch, "reward": 0.1 * trial}})
        bar.on_event({"event": "end", "trial_id": trial, "status": "COMPLETED"})


def test_mode_follows_where_it_writes():
    assert display_mode(io.StringIO()) == "log"          # a log file, a pipe, CI: outside Jupyter
    assert display_mode(_Tty()) == "terminal"
    with pytest.raises(ValueError, match="mode must be one of"):
        ProgressBar(3, None, mode="widget")


def test_log_mode_writes_one_plain_line_per_finished_trial_and_no_warnings():
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no TqdmWarning / experimental-mode warning
        with ProgressBar(total_trials=3, time_limits=60.0, stream=stream) as bar:
            _events(bar, trials=3, epochs=4)
    out = stream.getvalue()
    assert bar.mode == "log" and "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3 + 1   # the 12 epoch results add no line within log_interval_s; one line at the end
    assert lines[0].startswith("fit: 1/3 trials done, best 0.000, left ")
    assert lines[2].startswith("fit: 3/3 trials done, best 0.200")
    assert lines[-1].endswith("finished")


def test_log_mode_reports_long_trials_every_interval():
    stream = io.StringIO()
    with ProgressBar(total_trials=None, time_limits=None, stream=stream, log_interval_s=0.0, desc="tune") as bar:
        _events(bar, trials=1, epochs=3)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 + 1 + 1 and lines[0].startswith("tune: 0 trials done, best 0.000")
    assert "left" not in lines[0]


def test_terminal_mode_is_a_tqdm_bar_and_disabled_shows_nothing():
    stream = _Tty()
    with ProgressBar(total_trials=2, time_limits=None, stream=stream) as bar:
        _events(bar, trials=2, epochs=2)
    assert bar.mode == "terminal" and "2/2" in stream.getvalue() and "best=0.100" in stream.getvalue()
    quiet = io.StringIO()
    with ProgressBar(total_trials=2, time_limits=None, enabled=False, stream=quiet) as bar:
        _events(bar, trials=2, epochs=2)
    assert quiet.getvalue() == "" and bar.done == 2
