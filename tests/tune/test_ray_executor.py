"""The Ray executor on a real two-node Ray cluster that these tests start (and stop) themselves.

One cluster for the module: a head node and a second node with a custom resource ``node2``, one CPU each, so at
most two trials run at once. Every wait is bounded: a wedged cluster fails a test, it never hangs CI.
"""
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

ray = pytest.importorskip("ray", reason="the ray package is not installed (pip install 'jaxgluon[ray]')")

import jaxgluon as ag  # noqa: E402
from jaxgluon.tune import TrialLaunch  # noqa: E402
from jaxgluon.tune.journal import read_journal  # noqa: E402
from jaxgluon.tune.ray_executor import RayExecutor  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ray_trial_fns  # noqa: E402
from ray_cluster import LocalRayCluster  # noqa: E402

pytestmark = pytest.mark.ray
WAIT_S = 120.0  # bound on every wait for the cluster


@pytest.fixture(scope="module")
def cluster():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(ray_trial_fns)  # the cluster's workers cannot import this test folder
    c = LocalRayCluster()
    try:
        c.start_node("head", num_cpus=1)
        c.start_node("node2", num_cpus=1, resources='{"node2": 1}')
        yield c
    finally:
        c.stop()
        cloudpickle.unregister_pickle_by_value(ray_trial_fns)


def node_ids(c: LocalRayCluster) -> dict[str, str]:
    """'head' / 'node2' -> Ray node id."""
    out = {}
    for node in c.alive_nodes():
        out["node2" if node["Resources"].get("node2") else "head"] = node["NodeID"]
    return out


def read_lines(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def epoch_spans(experiment_dir: pathlib.Path) -> list[tuple[float, float, str]]:
    spans = []
    for d in (experiment_dir / "trials").iterdir():
        spans += [(e["t0"], e["t1"], e["node_id"]) for e in read_lines(d / "epochs.jsonl")]
    return spans


def max_overlap(spans) -> int:
    events = sorted([(t0, 1) for t0, _, _ in spans] + [(t1, -1) for _, t1, _ in spans], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_never_more_trials_at_once_than_the_cluster_has_cpus(cluster, tmp_path):
    space = {"x": ag.Real(0.1, 1.0), "sleep": 0.2}
    result = ag.tune(ray_trial_fns.sleepy_trial, space, num_trials=4, epochs=2, num_workers=3,
                     resources_per_trial={"num_cpus": 1}, executor="ray", ray_address=cluster.address,
                     output_directory=tmp_path / "exp")
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 4
    spans = epoch_spans(tmp_path / "exp")
    assert len(spans) == 8
    assert max_overlap(spans) <= 2  # 3 workers asked for, 2 CPUs in the cluster: the third actor never ran
    resources = result.metadata["resources_per_trial"]
    assert resources["num_cpus"] == 1 and resources["num_gpus"] == 0 and resources["nodes"] == 2
    assert resources["cluster_resources"]["CPU"] == 2
    assert {a["assigned"].get("CPU") for a in resources["actors"]} == {1.0}  # what Ray gave each actor
    assert 1 <= len(resources["actors"]) <= 2  # the third actor never got a CPU
    assert result.metadata["executor"] == "ray"
    nodes_by_trial = result.metadata["executor_stats"]["trial_nodes"]
    assert sorted(nodes_by_trial) == [str(i) for i in range(4)]
    assert {n for nodes in nodes_by_trial.values() for n in nodes} <= set(node_ids(cluster).values())
    # an actor that asked for no GPU sees none (JAX in it sees only what Ray gives it)
    launches = read_lines(tmp_path / "exp" / "trials" / "0" / "launches.jsonl")
    assert launches[0]["cuda"] == ""


def test_custom_resources_place_every_trial_on_the_node_that_has_them(cluster, tmp_path):
    result = ag.tune(ray_trial_fns.sleepy_trial, {"x": ag.Real(0.1, 1.0), "sleep": 0.05}, num_trials=3, epochs=1,
                     num_workers=2, resources_per_trial={"num_cpus": 1, "node2": 1}, executor="ray",
                     ray_address=cluster.address, output_directory=tmp_path / "exp")
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 3
    spans = epoch_spans(tmp_path / "exp")
    assert {node for _, _, node in spans} == {node_ids(cluster)["node2"]}
    assert max_overlap(spans) == 1  # node2 has one CPU
    assert result.metadata["resources_per_trial"]["resources"] == {"node2": 1.0}


def test_trials_run_on_both_nodes_and_a_paused_one_resumes_from_its_checkpoint_on_the_other(cluster, tmp_path):
    decisions = {}

    def on_report(trial_id, result):
        decisions.setdefault(trial_id, []).append(result["epoch"])
        return "PAUSE" if (trial_id, result["epoch"]) == (0, 1) else "CONTINUE"

    executor = RayExecutor(num_workers=2, address=cluster.address)
    executor.bind(ray_trial_fns.sleepy_trial, on_report)
    try:
        executor.wait_for_workers(timeout=WAIT_S)  # both actors placed, one per node (SPREAD)

        def launch(trial_id, sleep):
            d = tmp_path / "trials" / str(trial_id)
            d.mkdir(parents=True, exist_ok=True)
            return TrialLaunch(trial_id=trial_id, config={"x": 0.5, "sleep": sleep}, checkpoint_dir=str(d),
                               max_epochs=3, seed=0)

        def run_until(n):
            outcomes, end = [], time.monotonic() + WAIT_S
            while len(outcomes) < n:
                assert time.monotonic() < end, "trials did not end in time"
                outcomes += executor.poll(1.0)
            return outcomes

        executor.submit(launch(0, 0.05))  # the first idle actor
        assert [o.error for o in run_until(1)] == [None]
        executor.submit(launch(1, 1.0))  # takes that same actor, so the paused trial resumes on the other one
        executor.submit(launch(0, 0.05))
        assert [o.error for o in run_until(2)] == [None, None]
    finally:
        executor.shutdown()
    assert decisions[0] == [1, 2, 3]  # paused after epoch 1, resumed at epoch 2 from its checkpoint
    launches = read_lines(tmp_path / "trials" / "0" / "launches.jsonl")
    assert [entry["start_epoch"] for entry in launches] == [0, 1]
    assert launches[0]["node_id"] != launches[1]["node_id"]
    assert set(executor.trial_nodes[0]) == set(node_ids(cluster).values())


def test_hyperband_promotion_pauses_and_resumes_trials_through_ray(cluster, tmp_path):
    result = ag.tune(ray_trial_fns.sleepy_trial, {"x": ag.Real(0.1, 1.0), "sleep": 0.02}, num_trials=6, epochs=3,
                     search_strategy="hyperband", scheduler_options={"type": "promotion"}, num_workers=2,
                     executor="ray", ray_address=cluster.address, output_directory=tmp_path / "exp", seed=1)
    resumed = [t for t in result.trials if t["num_launches"] > 1]
    assert resumed, "promotion resumed no paused trial"
    for trial in resumed:
        launches = read_lines(tmp_path / "exp" / "trials" / str(trial["trial_id"]) / "launches.jsonl")
        assert launches[1]["start_epoch"] >= 1  # restored from its checkpoint, not retrained
        assert [r["epoch"] for r in trial["results"]] == list(range(1, len(trial["results"]) + 1))
    assert result.best_config["x"] == max(t["config"]["x"] for t in result.trials if t["status"] == "COMPLETED")


def test_a_dead_actor_is_retried_then_error_after_max_failures_and_a_hung_trial_is_killed(cluster, tmp_path):
    space = {"x": 0.5, "sleep": 0.05, "mode": ag.Categorical("kill", "hang", "ok")}
    result = ag.tune(ray_trial_fns.sleepy_trial, space, search_strategy="grid", epochs=3, num_workers=2,
                     executor="ray", ray_address=cluster.address, max_failures=1, trial_timeout=3.0,
                     output_directory=tmp_path / "exp")
    by_mode = {t["config"]["mode"]: t for t in result.trials}
    assert by_mode["ok"]["status"] == "COMPLETED"
    killed = by_mode["kill"]  # SIGKILLs its own actor at epoch 2, on every launch
    assert killed["status"] == "ERROR" and "max_failures=1" in killed["error"]
    launches = read_lines(tmp_path / "exp" / "trials" / str(killed["trial_id"]) / "launches.jsonl")
    assert [entry["start_epoch"] for entry in launches] == [0, 1]  # retried once, from its epoch-1 checkpoint
    retries = [e for e in read_journal(tmp_path / "exp" / "journal.jsonl") if e["event"] == "retry"]
    assert [(e["trial_id"], e["attempt"]) for e in retries] == [(killed["trial_id"], 1)]
    hung = by_mode["hang"]  # silent past trial_timeout: its actor is killed (not retried), the search goes on
    assert hung["status"] == "ERROR" and hung["error"].startswith("hung") and hung["num_launches"] == 1
    stats = result.metadata["executor_stats"]
    assert stats["num_retries"] == 1 and stats["num_actors_killed"] == 1


def test_a_node_killed_mid_trial_loses_nothing(cluster, tmp_path):
    """SIGKILL of every process of the second node while a trial runs there: the trial is retried from its
    checkpoint on the head node and finishes; every trial is accounted for and the best config is the one an
    uninterrupted run finds (the rewards are deterministic)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ids = node_ids(cluster)
    exp = tmp_path / "exp"
    space = {"x": ag.Real(0.1, 1.0), "sleep": 0.4}
    box: dict = {}
    # the head's CPU is taken until node2 dies, so the first trials run on node2
    blocker = ray.remote(ray_trial_fns.Blocker).options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node_id=ids["head"], soft=False)).remote()
    ray.get(blocker.ping.remote(), timeout=WAIT_S)

    def run():
        try:
            box["result"] = ag.tune(ray_trial_fns.sleepy_trial, space, num_trials=3, epochs=4, num_workers=2,
                                    executor="ray", ray_address=cluster.address, output_directory=exp, seed=3)
        except BaseException as err:  # noqa: BLE001 -- re-raised in the test's thread
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    victim, end = None, time.monotonic() + WAIT_S
    try:
        while victim is None:
            assert time.monotonic() < end and thread.is_alive(), f"no trial reported on node2: {box}"
            for d in (exp / "trials").glob("*") if (exp / "trials").exists() else []:
                if any(e["node_id"] == ids["node2"] for e in read_lines(d / "epochs.jsonl")):
                    victim = int(d.name)
            time.sleep(0.05)
        cluster.kill_node("node2")
        ray.kill(blocker)  # the head's CPU is free: the retry runs there
        thread.join(WAIT_S)
        assert not thread.is_alive(), "the experiment did not finish after the node was killed"
    finally:
        ray.kill(blocker)
        cluster.start_node("node2", num_cpus=1, resources='{"node2": 1}')  # for the tests after this one
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 3
    victim_trial = result.trials[victim]
    assert [r["epoch"] for r in victim_trial["results"]] == [1, 2, 3, 4]
    launches = read_lines(exp / "trials" / str(victim) / "launches.jsonl")
    assert len(launches) == 2 and launches[1]["start_epoch"] >= 1
    assert (launches[0]["node_id"], launches[1]["node_id"]) == (ids["node2"], ids["head"])
    assert any(e["event"] == "retry" and e["trial_id"] == victim for e in read_journal(exp / "journal.jsonl"))
    assert result.best_config == max((t["config"] for t in result.trials), key=lambda c: c["x"])


DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from ray import cloudpickle
    import jaxgluon as ag
    import ray_trial_fns
    cloudpickle.register_pickle_by_value(ray_trial_fns)
    ag.tune(ray_trial_fns.sleepy_trial, {{'x': ag.Real(0.1, 1.0), 'sleep': 0.3}}, num_trials=3, epochs=2,
            num_workers=2, executor='ray', ray_address={address!r}, output_directory={exp!r}, seed=5)
""")


def test_a_killed_driver_resumes_on_the_running_cluster_without_losing_a_finished_trial(cluster, tmp_path):
    exp = tmp_path / "exp"
    script = DRIVER.format(here=str(HERE), address=cluster.address, exp=str(exp))
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=str(HERE.parents[1]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + WAIT_S
        while True:
            assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
            assert time.monotonic() < end, "no trial finished in time"
            events = list(read_journal(exp / "journal.jsonl")) if (exp / "journal.jsonl").exists() else []
            if any(e["event"] == "end" and e["status"] == "COMPLETED" for e in events):
                break
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.stderr.close()
    finished = {e["trial_id"]: e for e in read_journal(exp / "journal.jsonl")
                if e["event"] == "end" and e["status"] == "COMPLETED"}
    assert finished
    before = {tid: read_lines(exp / "trials" / str(tid) / "launches.jsonl") for tid in finished}
    result = ag.tune(ray_trial_fns.sleepy_trial, {"x": ag.Real(0.1, 1.0), "sleep": 0.3}, num_trials=3, epochs=2,
                     num_workers=2, executor="ray", ray_address=cluster.address, output_directory=exp, seed=5,
                     resume=True)
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * 3
    assert result.metadata["num_sessions"] == 2
    for tid in finished:  # kept as they were: not run again
        assert result.trials[tid]["num_launches"] == 1
        assert read_lines(exp / "trials" / str(tid) / "launches.jsonl") == before[tid]


def test_an_unreachable_cluster_or_a_missing_ray_names_the_fix(monkeypatch, tmp_path):
    from jaxgluon.tune import ray_executor

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as a fresh process would be
    free = ray_executor.socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ConnectionError, match=r"ray start --head"):
        ag.tune(ray_trial_fns.sleepy_trial, {"x": ag.Real(0, 1)}, num_trials=1, epochs=1, executor="ray",
                ray_address=f"127.0.0.1:{port}", output_directory=tmp_path / "a")
    with pytest.raises(ValueError, match=r"ray_address must be"):
        ag.tune(ray_trial_fns.sleepy_trial, {"x": ag.Real(0, 1)}, num_trials=1, epochs=1, executor="ray",
                ray_address="no-port-here", output_directory=tmp_path / "b")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'jaxgluon\[ray\]'"):
        ag.tune(ray_trial_fns.sleepy_trial, {"x": ag.Real(0, 1)}, num_trials=1, epochs=1, executor="ray",
                output_directory=tmp_path / "c")


def test_bad_ray_arguments_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"resources_per_trial\['num_gpus'\] must be a number"):
        RayExecutor(resources_per_trial={"num_gpus": -1})
    with pytest.raises(ValueError, match=r"max_failures must be an int"):
        RayExecutor(max_failures=-1)
    with pytest.raises(ValueError, match=r"apply to executor='ray'"):
        ag.tune(ray_trial_fns.sleepy_trial, {"x": ag.Real(0, 1)}, num_trials=1, epochs=1, executor="process_pool",
                max_failures=2, output_directory=tmp_path / "a")


@pytest.mark.skipif(os.environ.get("JAXGLUON_RAY_FIT") != "1",
                    reason="about 60 s on 2 CPU cores (two actors compile a ResNet at once), over the CI budget of the "
                           "Ray tests; set JAXGLUON_RAY_FIT=1 to run it")
def test_task_fit_runs_its_trials_on_the_cluster(cluster, tmp_path):
    sys.path.insert(0, str(HERE.parent / "task"))
    from task_files import FAST, write_folder

    from jaxgluon import ImageClassification as task

    dataset = task.Dataset(name="tiny", train_path=str(write_folder(tmp_path / "train", 12, 0)))
    results = task.fit(dataset, lr_scheduler=ag.List("cosine", "constant"), num_trials=2, epochs=1,
                       executor="ray", ray_address=cluster.address, num_workers=2, output_directory=tmp_path / "exp",
                       **FAST)
    assert results.metadata["num_trials_completed"] == 2
    assert results.metadata["executor"] == "ray"
    assert results.metadata["resources_per_trial"]["nodes"] == 2
    assert 0.0 <= results.reward <= 1.0
