"""Faults a hostile user provokes: hung and crashing trials, racing drivers, a killed driver's workers and its lost
report and time, and a slow searcher restore (issue 19). Each test failed on 33840c7."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from tune_trial_fns import ListSearcher, scripted_trial

import jaxgluon as ag
from jaxgluon.scheduler import FIFOScheduler, get_scheduler
from jaxgluon.tune import journal_replay
from jaxgluon.tune import runner as runner_module
from jaxgluon.tune import tune
from jaxgluon.tune.journal import read_journal
from jaxgluon.tune.process_pool import ProcessPoolExecutor
from jaxgluon.tune.runner import Runner
from jaxgluon.tune.stop import StopCriterion

HERE = pathlib.Path(__file__).parent
REPO = HERE.parents[1]


def launches(exp: pathlib.Path, trial_id: int) -> list[dict]:
    return [json.loads(line) for line in (exp / "trials" / str(trial_id) / "launches.jsonl").open()]


def epoch_log(exp: pathlib.Path, trial_id: int) -> list[int]:
    path = exp / "trials" / str(trial_id) / "epochs.log"
    return [int(line.split()[0]) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped) is not alive
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def journal_events(exp: pathlib.Path, kind: str) -> list[dict]:
    path = exp / "journal.jsonl"
    return [e for e in read_journal(path) if e["event"] == kind] if path.exists() else []


def start_driver(tmp_path: pathlib.Path, body: str) -> subprocess.Popen:
    script = tmp_path / f"driver_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(HERE)!r}, {str(REPO)!r}]
        from tune_trial_fns import ListSearcher, scripted_trial
        from jaxgluon.tune import tune
    """) + textwrap.dedent(body))
    return subprocess.Popen([sys.executable, str(script)])


# ---- 1. hangs cannot outlive the budget; a crashing trial cannot kill the driver -----------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", [None, "in_process", "process_pool"])
def test_a_hung_trial_ends_at_the_time_limit_in_every_executor(tmp_path, executor):
    configs = [{"x": 0.6, "hang_at": 1}, {"x": 0.7}]  # trial 0: time.sleep(3600) before its first report
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=2, num_trials=2,
                  time_limits=3.0, executor=executor, output_directory=tmp_path / "exp",
                  trial_timeout=None)  # the time limit alone must end it
    (trial,) = result.trials
    assert trial["status"] == "STOPPED" and "killed at the time limit" in trial["error"]
    assert result.metadata["executor"] == (executor or "process_pool")
    assert result.metadata["stop_reason"] == "time_limits"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", ["in_process", "process_pool"])
def test_trial_timeout_kills_a_hung_trial_and_the_search_goes_on(tmp_path, executor):
    configs = [{"x": 0.5, "hang_at": 2}, {"x": 0.7}]  # no time limit: only trial_timeout can end trial 0
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=3, num_trials=2,
                  trial_timeout=1.5, executor=executor, output_directory=tmp_path / "exp")
    hung, good = result.trials
    assert hung["status"] == "ERROR" and "hung: no report" in hung["error"] and hung["epochs"] == [1]
    assert good["status"] == "COMPLETED" and good["epochs"] == [1, 2, 3]
    stats = result.metadata["executor_stats"]
    if executor == "process_pool":  # the hung worker was killed and replaced
        assert stats == {"num_worker_processes_started": 2, "num_workers_killed": 1, "num_worker_processes_reused": 0}
        assert launches(tmp_path / "exp", 0)[0]["pid"] != launches(tmp_path / "exp", 1)[0]["pid"]
    else:
        assert stats == {"num_abandoned": 1}


def test_os_exit_in_a_trial_does_not_kill_the_driver_by_default(tmp_path):
    configs = [{"x": 0.5, "exit_at": 2}, {"x": 0.7}, {"x": 0.6}]
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=2, num_trials=3,
                  output_directory=tmp_path / "exp")
    crashed, *rest = result.trials
    assert crashed["status"] == "ERROR" and "exited with code 3" in crashed["error"]
    assert [t["status"] for t in rest] == ["COMPLETED", "COMPLETED"]
    # one persistent worker ran trials 1 and 2 (it keeps its compiled programs and caches); trial 0's died
    pids = [launches(tmp_path / "exp", i)[0]["pid"] for i in range(3)]
    assert pids[1] == pids[2] != pids[0] and os.getpid() not in pids
    assert result.metadata["executor_stats"]["num_worker_processes_started"] == 2


@pytest.mark.timeout(120)
def test_auto_trial_timeout_kills_a_hung_trial_well_before_the_time_limit(tmp_path):
    configs = [{"x": 0.5}, {"x": 0.6, "hang_at": 1}, {"x": 0.7}]
    # auto: at least time_limits / 4 = 5 s and 10 x the longest interval between reports (in-process: no worker
    # start-up in the first interval, so the rule's floor decides)
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=2, num_trials=3,
                  time_limits=20.0, executor="in_process", output_directory=tmp_path / "exp")
    assert [t["status"] for t in result.trials] == ["COMPLETED", "ERROR", "COMPLETED"]
    assert "hung: no report" in result.trials[1]["error"]
    assert result.metadata["stop_reason"] == "num_trials"


def test_trial_timeout_is_validated():
    with pytest.raises(ValueError, match="trial_timeout must be a positive number"):
        tune(scripted_trial, None, search_strategy=ListSearcher([{"x": 1}]), trial_timeout=0)


def test_a_closure_runs_in_process_with_a_warning(tmp_path):
    def local_trial(config, reporter):
        reporter(epoch=1, reward=config["x"])

    with pytest.warns(RuntimeWarning, match="cannot be pickled"):
        result = tune(local_trial, {"x": ag.Real(0, 1)}, num_trials=1, epochs=1, output_directory=tmp_path / "exp")
    assert result.metadata["executor"] == "in_process"


# ---- 2. one driver at a time -----------------------------------------------------------------------------
def _runner(exp, resume, seed=0, configs=({"x": 0.5},)):
    return Runner(scripted_trial, FIFOScheduler(ListSearcher(list(configs)), max_t=2),
                  ProcessPoolExecutor(1), exp, StopCriterion.from_args(len(configs), None, None), max_epochs=2,
                  seed=seed, resume=resume)


def test_a_second_resume_fails_before_reading_any_state(tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    tune(scripted_trial, None, search_strategy=ListSearcher([{"x": 0.5}]), epochs=2, num_trials=1,
         executor="in_process", output_directory=exp)
    first = _runner(exp, resume=True)  # holds the experiment, as a driver that is finishing does
    reads = []
    monkeypatch.setattr(journal_replay, "read_journal", lambda path: reads.append(path) or read_journal(path))
    with pytest.raises(RuntimeError, match=r"in use by another running experiment driver \(pid \d+\)"):
        _runner(exp, resume=True)
    assert reads == []  # it never saw the journal that the first driver is still writing
    first.run()
    _runner(exp, resume=True).run()  # the lock is released when a driver returns


def test_a_fresh_start_that_loses_the_race_leaves_the_winner_intact(tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    written, proceed = threading.Event(), threading.Event()
    original = runner_module.write_json_atomic

    def slow_write(path, obj, sync="fsync"):  # the winner pauses between experiment.json and its journal
        original(path, obj, sync)
        if pathlib.Path(path).name == "experiment.json" and not written.is_set():
            written.set()
            proceed.wait(30)

    monkeypatch.setattr(runner_module, "write_json_atomic", slow_write)
    winner: list = []
    thread = threading.Thread(target=lambda: winner.append(_runner(exp, resume=False, seed=1)))
    thread.start()
    assert written.wait(30)
    try:
        with pytest.raises(RuntimeError, match="in use by another running experiment driver"):
            _runner(exp, resume=False, seed=2)
    finally:
        proceed.set()
        thread.join()
    assert json.loads((exp / "experiment.json").read_text())["seed"] == 1
    winner[0].run()
    assert _runner(exp, resume=True, seed=1).run().trials[0]["status"] == "COMPLETED"


# ---- 3. workers die with their driver; no epoch is written twice -------------------------------------------
@pytest.mark.timeout(180)
def test_killed_driver_leaves_no_orphan_worker_and_no_epoch_twice(tmp_path):
    exp = tmp_path / "exp"
    configs = [{"x": 0.5, "sleep": 0.05, "stall_at": 2}, {"x": 0.8, "sleep": 0.05}]
    driver = start_driver(tmp_path, f"""
        tune(scripted_trial, None, search_strategy=ListSearcher({configs!r}), epochs=3, num_trials=2,
             executor="process_pool", output_directory={str(exp)!r})
    """)
    try:  # trial 0 has reported epoch 1; its worker now stalls in epoch 2
        wait_for(lambda: any(e["trial_id"] == 0 for e in journal_events(exp, "result")))
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    (worker,) = {launch["pid"] for launch in launches(exp, 0)}
    wait_for(lambda: not alive(worker), timeout=5.0)  # it died with its driver (it would stall for 60 s)
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=3, num_trials=2,
                  executor="process_pool", output_directory=exp, resume=True)
    assert [t["status"] for t in result.trials] == ["COMPLETED", "COMPLETED"]
    assert epoch_log(exp, 0) == [1, 2, 3] and epoch_log(exp, 1) == [1, 2, 3]
    assert all(not alive(launch["pid"]) for i in (0, 1) for launch in launches(exp, i))


# ---- 7b-d. a lost report, the time a killed driver used, a fast searcher restore ------------------------
@pytest.mark.timeout(120)
def test_report_lost_between_checkpoint_and_journal_is_recovered(tmp_path):
    exp = tmp_path / "exp"
    configs = [{"x": 0.5}]
    driver = start_driver(tmp_path, f"""
        import os, signal
        from jaxgluon.tune import runner
        on_report = runner.Runner._on_report
        def dies_before_journaling_epoch_2(self, trial_id, result):
            if result["epoch"] == 2:   # the trial checkpointed epoch 2 and reported it; the journal never got it
                os.kill(os.getpid(), signal.SIGKILL)
            return on_report(self, trial_id, result)
        runner.Runner._on_report = dies_before_journaling_epoch_2
        tune(scripted_trial, None, search_strategy=ListSearcher({configs!r}), epochs=4, num_trials=1,
             executor="in_process", output_directory={str(exp)!r})
    """)
    driver.wait(timeout=60)
    assert [e["result"]["epoch"] for e in journal_events(exp, "result")] == [1]
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=4, num_trials=1,
                  executor="in_process", output_directory=exp, resume=True)
    (trial,) = result.trials
    assert trial["epochs"] == [1, 2, 3, 4] and trial["status"] == "COMPLETED"
    assert [launch["start_epoch"] for launch in launches(exp, 0)] == [0, 2]
    events = [(e["event"], e.get("result", {}).get("epoch")) for e in read_journal(exp / "journal.jsonl")]
    restart = events.index(("start", None), events.index(("session", None), 1))
    assert ("result", 2) in events[:restart]  # the scheduler judged epoch 2 before the trial went on


@pytest.mark.timeout(120)
def test_time_used_by_a_killed_driver_counts_against_time_limits(tmp_path):
    exp = tmp_path / "exp"
    configs = [{"x": 0.5, "sleep": 0.05, "stall_at": 2}]
    driver = start_driver(tmp_path, f"""
        tune(scripted_trial, None, search_strategy=ListSearcher({configs!r}), epochs=3, num_trials=1,
             executor="in_process", time_limits=600, output_directory={str(exp)!r})
    """)
    try:
        wait_for(lambda: journal_events(exp, "result"))
        seen_running = time.time()
        time.sleep(3.0)  # the driver lives on without writing to its journal (its trial stalls)
    finally:
        killed = time.time()
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    last_t = max(e["t"] for e in read_journal(exp / "journal.jsonl"))
    tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=3, num_trials=1,
         executor="in_process", time_limits=600, output_directory=exp, resume=True)
    second = journal_events(exp, "session")[1]
    # charged at least up to its last heartbeat (at most a second before the kill), not only to its last event
    assert second["t"] >= last_t + (killed - seen_running) - 1.5


def test_bayesopt_resume_replays_the_searcher_without_gp_fits(tmp_path, monkeypatch):
    from jaxgluon.searcher import _gp

    exp = tmp_path / "exp"
    space = {"x": ag.Real(0.0, 1.0)}
    kwargs = dict(search_strategy="bayesopt", num_trials=9, epochs=1, executor="in_process", output_directory=exp)
    tune(scripted_trial, space, **kwargs)
    (exp / "scheduler_state.json").unlink()  # a driver killed before its snapshot: the whole journal replays
    fits = []
    original = _gp.fit_hyperparameters
    monkeypatch.setattr(_gp, "fit_hyperparameters", lambda *a, **k: fits.append(1) or original(*a, **k))
    runner = Runner(scripted_trial, get_scheduler("bayesopt", space, max_t=1), ProcessPoolExecutor(1),
                    exp, StopCriterion.from_args(9, None, None), max_epochs=1, resume=True,
                    settings={"search_strategy": "bayesopt"})
    assert fits == []  # 4 of the 9 suggestions were GP fits: none is redone
    searcher = runner.scheduler.searcher
    assert len(searcher.results) == 9 and searcher._num_suggestions == 9
    runner.run()
