"""Worker processes: concurrent trials, pinned CPUs, a worker killed with SIGKILL, a trial that stops reporting."""
import json

import pytest
from tune_trial_fns import ListSearcher, scripted_trial

from jaxgluon.tune import tune


def launches(exp, trial_id):
    return [json.loads(line) for line in (exp / "trials" / str(trial_id) / "launches.jsonl").open()]


def test_sigkilled_worker_and_raising_trial_are_errors_and_the_pool_carries_on(tmp_path):
    configs = [{"x": 0.5, "kill_at": 2}, {"x": 0.6, "fail_at": 1}, {"x": 0.7}, {"x": 0.8}]
    searcher = ListSearcher(configs)
    exp = tmp_path / "exp"
    result = tune(scripted_trial, None, search_strategy=searcher, epochs=3, num_trials=4, num_workers=2,
                  resources_per_trial={"num_cpus": 1}, output_directory=exp)
    status = {t["trial_id"]: t["status"] for t in result.trials}
    assert status == {0: "ERROR", 1: "ERROR", 2: "COMPLETED", 3: "COMPLETED"}
    killed = result.trials[0]
    assert "SIGKILL" in killed["error"] and killed["rewards"] == [0.25]  # its first epoch was recorded
    assert result.trials[1]["error"] == "ZeroDivisionError: planned failure at epoch 1"
    assert sorted(searcher.errors) == [0, 1] and sorted(searcher.completed) == [2, 3]
    assert result.best_config == {"x": 0.8}
    meta = result.metadata
    assert meta["executor"] == "process_pool" and meta["resources_per_trial"]["num_cpus"] == 1
    for trial_id in range(4):  # each trial ran pinned to one core with one thread
        (launch,) = launches(exp, trial_id)
        assert len(launch["affinity"]) == 1 and launch["omp"] == "1"
    assert launches(exp, 0)[0]["pid"] != launches(exp, 3)[0]["pid"]


def test_time_limit_kills_a_trial_that_stops_reporting(tmp_path):
    # 6 s: the worker's spawn and imports (1.5-3.5 s on a loaded 2-core CPU) come out of the budget before epoch 1
    configs = [{"x": 0.5, "sleep": 0.05, "hang_at": 3}, {"x": 0.9}]
    result = tune(scripted_trial, None, search_strategy=ListSearcher(configs), epochs=5, num_trials=2,
                  executor="process_pool", time_limits=6.0, output_directory=tmp_path / "exp",
                  trial_timeout=None)  # the time limit kills it ('auto' would kill it as hung after 0.5 s)
    (trial,) = result.trials
    assert trial["status"] == "STOPPED" and "time limit" in trial["error"] and trial["num_epochs"] == 2
    meta = result.metadata
    assert meta["stop_reason"] == "time_limits" and meta["overrun_s"] > 0


def test_unpicklable_train_fn_is_rejected_before_any_worker_starts(tmp_path):
    with pytest.raises(ValueError, match="cannot be pickled"):
        tune(lambda config, reporter: None, None, search_strategy=ListSearcher([{"x": 1}]), num_workers=2,
             output_directory=tmp_path / "exp")


def test_workers_get_disjoint_cpus_and_devices(monkeypatch):
    from jaxgluon.tune import process_pool

    monkeypatch.setattr(process_pool, "_available_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(process_pool, "_visible_gpus", lambda: ["0", "1", "2", "3"])
    pool = process_pool.ProcessPoolExecutor(num_workers=2, num_devices=2)
    assert pool.resources()["cpu_sets"] == [[0, 1], [2, 3]]  # default: the cores split evenly
    assert [pool.worker_env(i)["CUDA_VISIBLE_DEVICES"] for i in range(2)] == ["0,1", "2,3"]
    assert pool.worker_env(0)["OMP_NUM_THREADS"] == "2"
    with pytest.raises(ValueError, match="needs 6 GPUs, 4 are visible"):
        process_pool.ProcessPoolExecutor(num_workers=3, num_devices=2)

    monkeypatch.setattr(process_pool, "_visible_gpus", lambda: [])  # no GPUs: virtual CPU devices
    pool = process_pool.ProcessPoolExecutor(num_workers=4, num_cpus=1, num_devices=2)
    flags = pool.worker_env(3)["XLA_FLAGS"]
    assert "--xla_force_host_platform_device_count=2" in flags and "intra_op_parallelism_threads=1" in flags
    assert "CUDA_VISIBLE_DEVICES" not in pool.worker_env(3)
    with pytest.warns(UserWarning, match="exceeds the 4 available cores"):
        process_pool.ProcessPoolExecutor(num_workers=3, num_cpus=2)


def test_log_level_env_shows_the_workers_timeline(tmp_path, monkeypatch, capfd):
    """JAXGLUON_LOG_LEVEL=INFO: the driver's and the worker's jaxgluon log lines reach stderr, with the pid."""
    import logging

    from jaxgluon.tune.process_pool import configure_logging_from_env

    logger = logging.getLogger("jaxgluon")
    before = (list(logger.handlers), logger.level, logger.propagate)
    monkeypatch.setenv("JAXGLUON_LOG_LEVEL", "INFO")
    try:
        configure_logging_from_env()
        configure_logging_from_env()   # idempotent: one handler
        assert sum(getattr(h, "_jaxgluon_env", False) for h in logger.handlers) == 1
        tune(scripted_trial, None, search_strategy=ListSearcher([{"x": 0.5}]), epochs=1, num_trials=1,
             executor="process_pool", output_directory=tmp_path / "exp")
    finally:
        logger.handlers[:], logger.level, logger.propagate = before
    err = capfd.readouterr().err
    assert "jaxgluon.tune: worker: trial function loaded" in err            # printed by the worker process
    assert "jaxgluon.tune: worker 0 (pid" in err and "ready" in err         # printed by the driver


def test_a_later_search_reuses_the_idle_worker_with_its_own_trial_function(tmp_path, monkeypatch):
    """WORKER_IDLE_S: the next search of this process (same resources, same environment) runs in the worker the
    last one left idle -- no spawn -- and that worker runs the new search's trial function; an idle worker fences
    no experiment; close_idle_workers() ends it."""
    import functools

    from tune_trial_fns import valued_trial

    from jaxgluon.tune.lock import fence_stale_writers
    from jaxgluon.tune.process_pool import close_idle_workers

    monkeypatch.setenv("JAXGLUON_WORKER_IDLE_S", "120")
    try:
        first = tune(scripted_trial, None, search_strategy=ListSearcher([{"x": 0.5}]), epochs=1, num_trials=1,
                     executor="process_pool", output_directory=tmp_path / "a")
        fence_stale_writers(tmp_path / "a" / "workers.lock", timeout=2)   # the idle worker holds no fence
        second = tune(functools.partial(valued_trial, value=0.25), None, search_strategy=ListSearcher([{"x": 0.9}]),
                      epochs=1, num_trials=1, executor="process_pool", output_directory=tmp_path / "b")
    finally:
        stopped = close_idle_workers()
    assert first.metadata["executor_stats"]["num_worker_processes_started"] == 1
    assert second.metadata["executor_stats"] == {"num_worker_processes_started": 0, "num_workers_killed": 0,
                                                 "num_worker_processes_reused": 1}
    (result,) = second.trials[0]["results"]
    assert result["reward"] == 0.25                                        # the second search's function ran ...
    assert int(result["pid"]) == launches(tmp_path / "a", 0)[0]["pid"]     # ... in the first search's worker
    assert stopped == 1 and close_idle_workers() == 0


def test_trial_timeout_counts_from_the_trial_start_not_the_worker_spawn(tmp_path):
    """A worker that takes 2 s to start (its imports) does not make a trial with trial_timeout=1 s look hung."""
    from slow_import_fns import quick_trial   # the driver pays the import once too; the worker pays it again

    result = tune(quick_trial, None, search_strategy=ListSearcher([{"x": 0.5}]), epochs=2, num_trials=1,
                  executor="process_pool", trial_timeout=1.0, output_directory=tmp_path / "exp")
    (trial,) = result.trials
    assert trial["status"] == "COMPLETED" and trial["epochs"] == [1, 2], trial.get("error")
