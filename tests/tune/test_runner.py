"""The in-process runner: failure isolation, stop criteria, the record it returns."""
import json

import pytest
from tune_trial_fns import ListSearcher, curve, scripted_trial

from jaxgluon.scheduler import FIFOScheduler
from jaxgluon.tune import AllTrialsFailedError, tune
from jaxgluon.tune.journal import read_journal


def run(tmp_path, configs, epochs=3, **kwargs):
    searcher = ListSearcher(configs)
    kwargs.setdefault("num_trials", len(configs))
    kwargs.setdefault("executor", "in_process")  # runner logic; the executors have their own tests
    result = tune(scripted_trial, None, search_strategy=searcher, epochs=epochs,
                  output_directory=tmp_path / "exp", **kwargs)
    return result, searcher


def test_failing_trials_are_recorded_and_the_experiment_continues(tmp_path):
    configs = [{"x": 0.5}, {"x": 0.9, "fail_at": 2}, {"x": 0.7, "nan_at": 2}, {"x": 0.6}]
    result, searcher = run(tmp_path, configs)
    status = {t["trial_id"]: t["status"] for t in result.trials}
    assert status == {0: "COMPLETED", 1: "ERROR", 2: "ERROR", 3: "COMPLETED"}
    raised, nan = result.trials[1], result.trials[2]
    assert raised["error"] == "ZeroDivisionError: planned failure at epoch 2"
    assert "scripted_trial" in raised["traceback"] and raised["rewards"] == [curve(0.9, 1)]
    assert "non-finite reward (nan) at epoch 2" in nan["error"]
    assert nan["num_epochs"] == 2  # the NaN report is recorded, and the trial was told to stop there
    assert sorted(searcher.errors) == [1, 2]  # the searcher is told about both failures
    assert sorted(searcher.completed) == [0, 3]
    assert result.best_trial_id == 3 and result.best_config == {"x": 0.6}
    assert result.best_reward == pytest.approx(curve(0.6, 3))
    assert result.metadata["num_trials_by_status"]["ERROR"] == 2


def test_all_trials_failing_raises_with_the_first_traceback(tmp_path):
    with pytest.raises(AllTrialsFailedError) as info:
        run(tmp_path, [{"x": 0.1, "fail_at": 1}, {"x": 0.2, "nan_at": 1}])
    message = str(info.value)
    assert "all 2 trials failed" in message and "trial 0" in message
    assert "Traceback" in message and "ZeroDivisionError: planned failure at epoch 1" in message
    assert (tmp_path / "exp" / "journal.jsonl").exists()  # the record is kept for inspection


def test_time_limit_stops_a_trial_that_would_run_forever(tmp_path):
    LIMIT = 1.5  # noqa: N806 -- the clock counts tune()'s own setup (the scheduler) too
    result, _ = run(tmp_path, [{"x": 0.5, "forever": True, "sleep": 0.02}, {"x": 0.9}], epochs=10**9,
                    num_trials=2, time_limits=LIMIT)
    forever = result.trials[0]
    assert forever["status"] == "STOPPED" and len(result.trials) == 1  # no trial starts after the deadline
    meta = result.metadata
    assert meta["stop_reason"] == "time_limits" and meta["time_used_s"] >= LIMIT
    # hard limit: every report before the deadline got CONTINUE, the first one after it STOP, and none came later
    reports = [e for e in read_journal(tmp_path / "exp" / "journal.jsonl") if e["event"] == "result"]
    after = [e for e in reports if e["t"] >= LIMIT]
    assert all(e["decision"] == "CONTINUE" for e in reports if e["t"] < LIMIT)
    assert len(after) == 1 and after[0]["decision"] == "STOP"
    assert 0.0 <= meta["overrun_s"] <= meta["time_used_s"] - LIMIT + 1e-6


def test_max_reward_ends_the_experiment(tmp_path):
    configs = [{"x": 0.2}, {"x": 0.95}, {"x": 0.3}]
    result, _ = run(tmp_path, configs, epochs=5, max_reward=0.8)
    assert result.metadata["stop_reason"] == "max_reward"
    assert [t["trial_id"] for t in result.trials] == [0, 1]
    assert result.trials[1]["status"] == "STOPPED" and result.best_reward >= 0.8
    assert result.trials[1]["num_epochs"] < 5


def test_result_record_and_metadata(tmp_path):
    result, _ = run(tmp_path, [{"x": 0.5}, {"x": 0.8}], epochs=2, resources_per_trial={"num_cpus": 1})
    trial = result.trials[1]
    assert {"trial_id", "config", "status", "rewards", "error", "start_time_s", "end_time_s"} <= set(trial)
    assert trial["rewards"] == [curve(0.8, 1), curve(0.8, 2)] and trial["results"][0]["train_loss"] == 1.0
    meta = result.metadata
    assert meta["stop_criterion"] == {"num_trials": 2, "time_limits": None, "max_reward": None}
    assert meta["search_strategy"] == "ListSearcher" and meta["executor"] == "in_process"
    assert meta["resources_per_trial"]["num_cpus"] == 1 and meta["time_used_s"] > 0
    frame = result.to_dataframe()
    assert list(frame["trial_id"]) == [0, 1] and list(frame["config.x"]) == [0.5, 0.8]
    launches = [json.loads(line) for line in (tmp_path / "exp" / "trials" / "1" / "launches.jsonl").open()]
    assert launches[0]["checkpoint_dir"] == str(tmp_path / "exp" / "trials" / "1")
    assert launches[0]["seed"] != json.loads((tmp_path / "exp" / "trials" / "0" / "launches.jsonl").read_text())["seed"]


def test_directory_guards_and_bad_arguments(tmp_path):
    run(tmp_path, [{"x": 0.5}], epochs=1)
    with pytest.raises(ValueError, match="resume=True"):
        run(tmp_path, [{"x": 0.5}], epochs=1)
    with pytest.raises(ValueError, match="holds no experiment"):
        tune(scripted_trial, None, search_strategy=ListSearcher([]), epochs=1, output_directory=tmp_path / "new",
             resume=True)
    with pytest.raises(ValueError, match="resources_per_trial"):
        tune(scripted_trial, None, search_strategy=ListSearcher([]), resources_per_trial={"gpus": 1},
             output_directory=tmp_path / "x")
    with pytest.raises(ValueError, match="max_t"):
        tune(scripted_trial, None, search_strategy=FIFOScheduler(ListSearcher([]), max_t=5), epochs=3,
             output_directory=tmp_path / "y")


def test_callbacks_see_every_journal_event_and_a_failing_one_is_dropped(tmp_path):
    seen = []

    def broken(event):
        raise KeyError("display gone")

    with pytest.warns(RuntimeWarning, match="disabled"):
        result, _ = run(tmp_path, [{"x": 0.5}, {"x": 0.6}], epochs=2, callbacks=[seen.append, broken])
    assert [e["event"] for e in seen] == ["session", "start", "result", "result", "end",
                                          "start", "result", "result", "end", "finish"]
    assert seen == list(read_journal(tmp_path / "exp" / "journal.jsonl"))
    assert len(result.trials) == 2


def test_default_directory_is_fresh_under_runs_and_dataframe_needs_pandas(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = tune(scripted_trial, None, search_strategy=ListSearcher([{"x": 0.5}]), epochs=1)
    (experiment,) = (tmp_path / "runs").iterdir()
    assert (experiment / "journal.jsonl").exists() and result.experiment_dir.resolve() == experiment.resolve()
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        result.to_dataframe()
