"""Durable record: a driver killed with kill -9 resumes with nothing lost; paused trials resume from checkpoints."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
from tune_trial_fns import ListSearcher, scripted_trial

from jaxgluon.scheduler import FIFOScheduler, HyperbandScheduler
from jaxgluon.tune import tune
from jaxgluon.tune.journal import read_journal

HERE = pathlib.Path(__file__).parent
CONFIGS = [{"x": x, "sleep": 0.1} for x in (0.3, 0.8, 0.5, 0.6, 0.9, 0.4)]


def launches(exp: pathlib.Path, trial_id: int) -> list[dict]:
    return [json.loads(line) for line in (exp / "trials" / str(trial_id) / "launches.jsonl").open()]


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the driver")


def test_driver_killed_mid_run_resumes_without_losing_finished_trials(tmp_path):
    exp = tmp_path / "exp"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from tune_trial_fns import ListSearcher, scripted_trial
        from jaxgluon.tune import tune
        tune(scripted_trial, None, search_strategy=ListSearcher({CONFIGS!r}), epochs=4, num_trials=6,
             output_directory={str(exp)!r})
    """))
    proc = subprocess.Popen([sys.executable, str(driver)])
    journal = exp / "journal.jsonl"

    def third_trial_half_done():
        if not journal.exists():
            return False
        return any(e["event"] == "result" and e["trial_id"] == 2 and e["result"]["epoch"] >= 2
                   for e in read_journal(journal))

    try:
        wait_for(third_trial_half_done)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = list(read_journal(journal))
    ended = {e["trial_id"]: e for e in before if e["event"] == "end"}
    assert set(ended) >= {0, 1} and 2 not in ended  # killed while trial 2 was running
    rewards_before = {tid: [e["result"]["reward"] for e in before if e["event"] == "result" and e["trial_id"] == tid]
                      for tid in ended}

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the scheduler's replay matches the journal exactly
        result = tune(scripted_trial, None, search_strategy=ListSearcher(CONFIGS), epochs=4, num_trials=6,
                      output_directory=exp, resume=True)
    trials = {t["trial_id"]: t for t in result.trials}
    assert sorted(trials) == list(range(6))  # exactly the trial budget, no config repeated or lost
    assert [t["config"]["x"] for t in result.trials] == [c["x"] for c in CONFIGS]
    for tid, rewards in rewards_before.items():  # finished trials kept as they were, not re-run
        assert trials[tid]["status"] == ended[tid]["status"] and trials[tid]["rewards"] == rewards
        assert len(launches(exp, tid)) == 1
    assert all(t["status"] == "COMPLETED" and t["epochs"] == [1, 2, 3, 4] for t in result.trials)
    restarted = launches(exp, 2)  # the interrupted trial restarted from its own checkpoint
    assert len(restarted) == 2 and restarted[0]["checkpoint_dir"] == restarted[1]["checkpoint_dir"]
    assert restarted[1]["start_epoch"] >= 2 and trials[2]["num_launches"] == 2
    assert result.metadata["num_sessions"] == 2
    assert result.metadata["time_used_s"] > max(e["t"] for e in before)  # the first session's time counts


def promotion_scheduler(configs):
    return HyperbandScheduler(ListSearcher(configs), type="promotion", grace_period=1, reduction_factor=3, max_t=9)


def check_promotions(exp, result):
    promoted = [t for t in result.trials if t["num_launches"] > 1]
    assert promoted, "no trial was promoted"
    for trial in promoted:
        runs = launches(exp, trial["trial_id"])
        assert {r["checkpoint_dir"] for r in runs} == {str(exp / "trials" / str(trial["trial_id"]))}
        assert runs[0]["start_epoch"] == 0 and all(r["start_epoch"] > 0 for r in runs[1:])
        assert trial["epochs"] == list(range(1, trial["num_epochs"] + 1))  # continued, never repeated an epoch
    return promoted


def test_promotion_resumes_paused_trials_from_their_checkpoint_dir(tmp_path):
    configs = [{"x": x} for x in (0.2, 0.9, 0.5, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4)]
    result = tune(scripted_trial, None, search_strategy=promotion_scheduler(configs), epochs=9, num_trials=9,
                  output_directory=tmp_path / "exp")
    check_promotions(tmp_path / "exp", result)
    # the trial budget counts new trials only: promotions continue after the last one started
    assert any(t["status"] == "COMPLETED" and t["num_epochs"] == 9 for t in result.trials)
    assert len(result.trials) == 9


def test_resumed_experiment_promotes_trials_paused_in_an_earlier_session(tmp_path):
    configs = [{"x": x} for x in (0.2, 0.9, 0.5, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4)]
    exp = tmp_path / "exp"
    first = tune(scripted_trial, None, search_strategy=promotion_scheduler(configs), epochs=9, num_trials=4,
                 output_directory=exp)
    paused_before = {t["trial_id"] for t in first.trials if t["status"] == "PAUSED"}
    assert paused_before
    second = tune(scripted_trial, None, search_strategy=promotion_scheduler(configs), epochs=9, num_trials=9,
                  output_directory=exp, resume=True)
    assert len(second.trials) == 9
    promoted = check_promotions(exp, second)
    assert paused_before & {t["trial_id"] for t in promoted}  # promoted in the second session


def test_time_spent_in_earlier_sessions_counts_against_the_limit(tmp_path):
    configs = [{"x": 0.5, "sleep": 0.05, "forever": True}, {"x": 0.6}]
    kwargs = dict(epochs=10**6, num_trials=2, time_limits=0.3, output_directory=tmp_path / "exp")
    first = tune(scripted_trial, None, search_strategy=FIFOScheduler(ListSearcher(configs), max_t=10**6), **kwargs)
    second = tune(scripted_trial, None, search_strategy=FIFOScheduler(ListSearcher(configs), max_t=10**6),
                  resume=True, **kwargs)
    assert first.metadata["stop_reason"] == second.metadata["stop_reason"] == "time_limits"
    assert [t["status"] for t in second.trials] == ["STOPPED"]  # nothing new ran: the time was already spent
    assert second.trials == first.trials


def test_resume_without_a_scheduler_snapshot_replays_the_journal(tmp_path):
    exp = tmp_path / "exp"
    configs = [{"x": 0.2}, {"x": 0.4}, {"x": 0.6}]
    first = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=2, num_trials=2,
                 output_directory=exp)
    (exp / "scheduler_state.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        second = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=2, num_trials=3,
                      output_directory=exp, resume=True)
    assert second.trials[:2] == first.trials and second.trials[2]["config"] == {"x": 0.6}
    # a searcher that suggests differently than the journal recorded: the journal wins, with a warning
    (exp / "scheduler_state.json").unlink()
    other = [{"x": 0.9}, {"x": 0.8}, {"x": 0.7}, {"x": 0.1}]
    with pytest.warns(RuntimeWarning, match="differs from the journal"):
        third = tune(scripted_trial, None, search_strategy=ListSearcher(other), epochs=2, num_trials=4,
                     output_directory=exp, resume=True)
    assert third.trials[:3] == second.trials and len(third.trials) == 4


def test_interrupted_trial_restarts_or_is_stopped_when_no_time_is_left(tmp_path):
    configs = [{"x": 0.5, "interrupt_at": 2, "sleep": 0.01}, {"x": 0.7}]
    # Ctrl-C reaches a trial only when it runs in the driver's process
    kwargs = dict(epochs=3, num_trials=2, output_directory=tmp_path / "a", executor="in_process")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the driver: the journal holds trial 0 as running
        tune(scripted_trial, None, search_strategy=ListSearcher(configs), **kwargs)
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), resume=True, **kwargs)
    assert [t["status"] for t in result.trials] == ["COMPLETED", "COMPLETED"]
    assert result.trials[0]["epochs"] == [1, 2, 3] and result.trials[0]["num_launches"] == 2

    kwargs = dict(epochs=3, num_trials=2, output_directory=tmp_path / "b", executor="in_process")
    with pytest.raises(KeyboardInterrupt):
        tune(scripted_trial, None, search_strategy=ListSearcher(configs), time_limits=60, **kwargs)
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), resume=True, time_limits=1e-6,
                  **kwargs)  # the first session used more than that already
    (trial,) = result.trials
    assert trial["status"] == "STOPPED" and "not restarted (time_limits)" in trial["error"]
    assert result.checkpoint_dir() == tmp_path / "b" / "trials" / "0"
