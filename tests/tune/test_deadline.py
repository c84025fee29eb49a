"""Trials see the experiment's deadline and may return mid-epoch; the runner records them as STOPPED, not ERROR."""
from __future__ import annotations

import time

import jaxgluon as ag


def _slow_epochs(config, reporter):
    """Epochs of ~0.4 s made of small steps; returns as soon as the time limit has passed (like train_trial)."""
    for epoch in range(1, reporter.max_epochs + 1):
        for _ in range(40):
            if reporter.time_left() is not None and reporter.time_left() <= 0:
                return
            time.sleep(0.01)
        if reporter(epoch=epoch, reward=config["x"] * epoch) != "CONTINUE":
            return


def test_reporter_knows_the_deadline_and_long_epochs_stop_within_it(tmp_path):
    start = time.monotonic()
    result = ag.tune(_slow_epochs, {"x": ag.Real(0.0, 1.0)}, num_trials=50, time_limits=2.0, epochs=100,
                     output_directory=tmp_path / "exp", journal_sync="flush", executor="in_process")
    elapsed = time.monotonic() - start
    assert elapsed < 2.0 + 0.4 + 1.0  # at most one step past the limit (setup counts) -- not a whole 0.4 s epoch more
    assert result.trials[0]["status"] == "STOPPED"
    assert result.trials[0]["num_epochs"] >= 1
    assert all(t["status"] == "STOPPED" for t in result.trials)


def test_trial_cut_before_its_first_report_is_stopped_not_failed(tmp_path):
    def never_reports_in_time(config, reporter):
        while reporter.time_left() > 0:
            time.sleep(0.01)

    result = ag.tune(never_reports_in_time, {"x": ag.Real(0.0, 1.0)}, num_trials=3, time_limits=0.3, epochs=2,
                     output_directory=tmp_path / "exp", journal_sync="flush", executor="in_process")
    assert [t["status"] for t in result.trials] == ["STOPPED"]
    assert "time limit" in result.trials[0]["error"]
    assert result.best_trial_id is None


def test_time_limits_count_from_the_call_including_setup(tmp_path, monkeypatch):
    """Building the scheduler (space compilation, imports) happens inside tune()'s clock: a slow setup shortens
    the search and shows in time_used_s instead of going unrecorded past the deadline (issue 18)."""
    from jaxgluon.tune import api

    make_scheduler = api._make_scheduler

    def slow_setup(*args, **kwargs):
        time.sleep(0.6)
        return make_scheduler(*args, **kwargs)

    monkeypatch.setattr(api, "_make_scheduler", slow_setup)
    result = ag.tune(_slow_epochs, {"x": ag.Real(0.0, 1.0)}, num_trials=50, time_limits=1.0, epochs=100,
                     output_directory=tmp_path / "exp", journal_sync="flush", executor="in_process")
    meta = result.metadata
    assert meta["time_used_s"] >= 0.6
    # the trial ran in what the setup left: it started at least 0.6 s into the experiment's clock
    assert result.trials[0]["start_time_s"] >= 0.6


def test_a_trial_that_returns_at_its_wall_clock_deadline_is_stopped_when_the_wall_clock_runs_ahead(tmp_path,
                                                                                                   monkeypatch):
    """Trials read the deadline on ``time.time()``, the runner on the monotonic clock: after a forward step of the
    wall clock the trial returns at its deadline while the runner's clock still shows time left. It was cut at the
    deadline (STOPPED), not run to its end (COMPLETED): CI once saw COMPLETED for a fit's only trial."""
    real_time, step = time.time, {"s": 0.0}

    def stepped_after_first_report(config, reporter):
        reporter(epoch=1, reward=0.5)
        step["s"] = 1.5   # the wall clock jumps 1.5 s ahead of the monotonic one
        while reporter.time_left() > 0:
            time.sleep(0.01)

    monkeypatch.setattr(time, "time", lambda: real_time() + step["s"])
    start = time.monotonic()
    result = ag.tune(stepped_after_first_report, {"x": ag.Real(0.0, 1.0)}, num_trials=1, time_limits=3.0,
                     epochs=5, output_directory=tmp_path / "exp", journal_sync="flush", executor="in_process",
                     trial_timeout=None)
    assert time.monotonic() - start < 3.0   # it returned before the runner's own clock reached the limit
    assert [t["status"] for t in result.trials] == ["STOPPED"]
