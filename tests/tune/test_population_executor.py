"""tune(..., population_size=K): members of populations under FIFO, Hyperband and PBT, failure isolation, resume.

A toy population (tests/tune/population_fns.py) stands in for the vmapped trainer, so these tests exercise the
executor and the runner; tests/train/test_population.py covers the real one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import pathlib

import pytest

from jaxgluon.space import Categorical, Real
from jaxgluon.tune import PopulationExecutor, tune
from jaxgluon.tune.journal import read_journal
from jaxgluon.tune.reporter import read_reports

from population_fns import ToyPopulation, ToyPopulationFn

HERE = pathlib.Path(__file__).parent
SPACE = {"lr": Real(0.1, 1.0)}


@pytest.fixture(autouse=True)
def _clear_log():
    ToyPopulation.log.clear()


def _events(kind):
    return [e for e in ToyPopulation.log if e[0] == kind]


@pytest.mark.parametrize("strategy", ["random", "grid", "bayesopt"])
def test_fifo_members_train_in_lockstep(tmp_path, strategy):
    space = {"lr": Categorical(0.1, 0.2, 0.3, 0.4, 0.5)} if strategy == "grid" else SPACE
    result = tune(ToyPopulationFn(), space, search_strategy=strategy, num_trials=5, epochs=3, population_size=2,
                  output_directory=tmp_path / "exp")
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 5
    assert all(t["epochs"] == [1, 2, 3] for t in result.trials)
    assert len({t["config"]["lr"] for t in result.trials}) == 5       # pending configs are not suggested twice
    assert len(_events("build")) == 1 and len(_events("epoch")) == 9  # 5 trials, 2 at a time, 3 epochs each
    assert max(len(e[2]) for e in _events("epoch")) == 2
    assert result.metadata["executor"] == "population"
    assert result.metadata["resources_per_trial"]["population_size"] == 2


def test_freed_slots_are_refilled_and_keys_get_their_own_population(tmp_path):
    space = {"lr": Real(0.1, 1.0), "family": Categorical("a", "b")}
    result = tune(ToyPopulationFn(), space, num_trials=6, epochs=2, population_size=3, output_directory=tmp_path / "e")
    assert all(t["status"] == "COMPLETED" for t in result.trials)
    builds = _events("build")
    assert sorted(b[1] for b in builds) == ["a", "b"]
    for key in ("a", "b"):
        members = [set(e[2]) for e in _events("epoch") if e[1] == key]
        assert all(len(m) <= 3 for m in members)
    adds = _events("add")
    assert len(adds) == 6 and all(a[3] == "fresh" for a in adds)


def test_a_diverging_member_fails_alone(tmp_path):
    space = {"lr": Categorical(0.2, -5.0, 0.3)}
    result = tune(ToyPopulationFn(), space, search_strategy="grid", num_trials=3, epochs=3, population_size=3,
                  output_directory=tmp_path / "exp")
    by_lr = {t["config"]["lr"]: t for t in result.trials}
    assert by_lr[-5.0]["status"] == "ERROR" and "diverged" in by_lr[-5.0]["error"]
    assert by_lr[0.2]["status"] == by_lr[0.3]["status"] == "COMPLETED"
    assert by_lr[0.3]["epochs"] == [1, 2, 3]


def test_hyperband_stopping(tmp_path):
    result = tune(ToyPopulationFn(), SPACE, search_strategy="hyperband", num_trials=8, epochs=9, population_size=4,
                  output_directory=tmp_path / "exp", scheduler_options={"type": "stopping"})
    statuses = [t["status"] for t in result.trials]
    assert "STOPPED" in statuses and "COMPLETED" in statuses
    assert max(len(e[2]) for e in _events("epoch")) == 4


def test_hyperband_promotion_resumes_paused_members_into_free_slots(tmp_path):
    result = tune(ToyPopulationFn(), SPACE, search_strategy="hyperband", num_trials=6, epochs=9, population_size=2,
                  output_directory=tmp_path / "exp", scheduler_options={"type": "promotion"})
    promoted = [t for t in result.trials if t["num_launches"] > 1]
    assert promoted, "some paused member must be promoted"
    resumed = [a for a in _events("add") if a[3] == "own checkpoint"]
    assert resumed and all(a[4] >= 1 for a in resumed)
    for t in promoted:                                   # continued from its checkpoint: no epoch lost or repeated
        assert t["epochs"] == list(range(1, t["num_epochs"] + 1))


def test_pbt_exploits_in_memory_and_records_lineage(tmp_path):
    result = tune(ToyPopulationFn(), {"lr": Real(0.01, 1.0, log=True)}, search_strategy="pbt", num_trials=4,
                  epochs=6, population_size=4, output_directory=tmp_path / "exp",
                  scheduler_options={"quantile_fraction": 0.25})
    lineage = result.metadata["scheduler"]["lineage"]
    assert lineage and all(t["status"] == "COMPLETED" for t in result.trials)
    clones = [a for a in _events("add") if a[3] in ("in-memory", "checkpoint")]
    assert len(clones) == len(lineage) and any(a[3] == "in-memory" for a in clones)
    starts = [e for e in read_journal(tmp_path / "exp" / "journal.jsonl")
              if e["event"] == "start" and e["kind"] == "resume"]
    assert [s["config"]["pbt_clone"]["exploit"] for s in starts] == [e["exploit"] for e in lineage]
    for entry in lineage:     # the exploiting member continues at the source's epoch + 1
        trial = result.trials[entry["trial_id"]]
        assert trial["config"]["lr"] > 0 and trial["epochs"][-1] == 6
    assert result.lineage == lineage
    fig = result.plot_pbt(tmp_path / "pbt.png")
    assert (tmp_path / "pbt.png").stat().st_size > 0 and len(fig.axes) == 2   # rewards and the explored lr


def test_time_limits_stop_the_population(tmp_path):
    start = time.monotonic()
    result = tune(ToyPopulationFn(sleep=0.2), SPACE, time_limits=1.5, epochs=100, population_size=3,
                  output_directory=tmp_path / "exp")
    assert time.monotonic() - start < 1.5 + 2.0
    assert result.metadata["stop_reason"] == "time_limits"
    assert {t["status"] for t in result.trials} == {"STOPPED"} and all(t["epochs"] for t in result.trials)


def test_trial_timeout_never_kills_members_waiting_for_their_population(tmp_path):
    """Members train in the driver, one epoch of all of them per poll: an epoch longer than trial_timeout is not a
    hang (the executor declines to cancel a member), and each report is in the member's reports.jsonl."""
    result = tune(ToyPopulationFn(sleep=0.3), SPACE, num_trials=3, epochs=2, population_size=2, trial_timeout=0.05,
                  output_directory=tmp_path / "exp")
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 3, result.trials
    for t in result.trials:
        reports = read_reports(tmp_path / "exp" / "trials" / str(t["trial_id"]))
        assert [r["epoch"] for r in reports] == [1, 2]


def test_population_size_needs_a_population_train_function(tmp_path):
    def plain(config, reporter):
        reporter(epoch=1, reward=0.0)

    with pytest.raises(TypeError, match="PopulationTrial"):
        tune(plain, SPACE, num_trials=1, epochs=1, population_size=2, output_directory=tmp_path / "exp")
    with pytest.raises(ValueError, match="num_workers"):
        tune(ToyPopulationFn(), SPACE, num_trials=1, epochs=1, population_size=2, num_workers=2,
             output_directory=tmp_path / "e2")
    with pytest.raises(ValueError, match="population_size"):
        PopulationExecutor(0)


def test_driver_killed_mid_run_resumes_the_population(tmp_path):
    exp = tmp_path / "exp"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parents[1])!r}]
        from population_fns import ToyPopulationFn
        from jaxgluon.space import Real
        from jaxgluon.tune import tune
        tune(ToyPopulationFn(sleep=0.05), {{'lr': Real(0.1, 1.0)}}, num_trials=4, epochs=6, population_size=2,
             output_directory={str(exp)!r})
    """))
    proc = subprocess.Popen([sys.executable, str(driver)])
    journal = exp / "journal.jsonl"

    def second_pair_started():
        return journal.exists() and any(e["event"] == "result" and e["trial_id"] >= 2 and e["result"]["epoch"] >= 2
                                        for e in read_journal(journal))

    try:
        deadline = time.time() + 120
        while not second_pair_started():
            assert time.time() < deadline and proc.poll() is None, "the driver ended or hung before the kill"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {e["trial_id"]: e for e in read_journal(journal) if e["event"] == "end"}
    assert set(before) >= {0, 1}
    result = tune(ToyPopulationFn(), {"lr": Real(0.1, 1.0)}, num_trials=4, epochs=6, population_size=2,
                  output_directory=exp, resume=True)
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 4
    assert all(t["epochs"] == [1, 2, 3, 4, 5, 6] for t in result.trials)
    restarts = [a for a in _events("add") if a[3] == "own checkpoint"]
    assert {a[1] for a in restarts} == {2, 3} and all(a[4] >= 2 for a in restarts)


def test_a_driver_killed_between_checkpoint_and_report_reports_that_epoch_on_resume(tmp_path):
    """The worst moment: every member's epoch-3 checkpoint is written and none of its reports. The resumed
    members continue from epoch 2, their last report, so epoch 3 is trained and reported, not skipped."""
    exp = tmp_path / "exp"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parents[1])!r}]
        from population_fns import ToyPopulationFn
        from jaxgluon.space import Real
        from jaxgluon.tune import tune
        tune(ToyPopulationFn(die_after_saving=3), {{'lr': Real(0.1, 1.0)}}, num_trials=2, epochs=5,
             population_size=2, output_directory={str(exp)!r})
    """))
    assert subprocess.run([sys.executable, str(driver)], timeout=120).returncode == -signal.SIGKILL
    assert (exp / "trials" / "0" / "toy" / "3.json").exists()
    result = tune(ToyPopulationFn(), SPACE, num_trials=2, epochs=5, population_size=2, output_directory=exp,
                  resume=True)
    assert [t["epochs"] for t in result.trials] == [[1, 2, 3, 4, 5]] * 2
    assert sorted(a[1:] for a in _events("add")) == [(0, 0, "own checkpoint", 2), (1, 1, "own checkpoint", 2)]
