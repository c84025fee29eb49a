"""jaxgluon's Ray executor against Ray Tune, on the same local two-node Ray cluster, in the same run.

    python benchmarks/ray_overhead.py                 # starts (and stops) its own 2-node cluster, 1 CPU per node
    python benchmarks/ray_overhead.py --address HOST:PORT   # an existing cluster

Trials are synthetic: ``sleep`` seconds per epoch, then a report (a deterministic reward of the config), so what is
not sleep is the system's overhead. Measured for both systems:

- overhead per trial: ``--trials`` one-epoch trials one after the other (one worker); the time between the first
  trial's start and the last one's end, as the trial functions see it, less their sleep, per gap between two
  trials: everything a trial costs besides its own work (suggest, journal, dispatch, report round trips; for Ray
  Tune also its trial actor's start). Ray Tune runs with its defaults (``reuse_actors=False``: a new actor per
  trial) and with ``reuse_actors=True``. Start-up (connect, first actors; wall time of the call less that span) is
  printed beside it.
- throughput with 1 and 2 workers: trials per second from the first moment ``workers`` trials run at once until the
  last trial ends, counting the trials started in that window (a trial already running at its start is not counted:
  conservative), measured inside the trial functions, so that actor start-up is left out for both systems.
- the same Hyperband search (ASHA: grace period 1, reduction factor 3, max_t epochs, 2 workers) through both:
  wall time of the call, epochs trained, best reward.
- jaxgluon alone, with the cluster this script starts: a node killed mid-trial (SIGKILL of every process of the
  second node once a trial there has reported) against the same seeded search uninterrupted: trials accounted for,
  retries, and whether the best config is the same.

The last line is one JSON object with the key figures.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's jaxgluon (run it from the repository root: Ray's workers import it)


def reward_of(x: float, epoch: int) -> float:
    return x * (1.0 - 0.5 ** epoch)


def jaxgluon_trial(config: dict, reporter) -> None:
    start = time.time()
    for epoch in range(1, reporter.max_epochs + 1):
        time.sleep(config["sleep"])
        if reporter(epoch=epoch, reward=reward_of(config["x"], epoch), t_start=start, t_now=time.time()) != "CONTINUE":
            return


def raytune_trial(config: dict) -> None:
    from ray import tune

    start = time.time()
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config["sleep"])
        tune.report({"reward": reward_of(config["x"], epoch), "epoch": epoch, "t_start": start, "t_now": time.time()})


def run_jaxgluon(trials: int, epochs: int, sleep: float, workers: int, root: pathlib.Path, address: str,
                 strategy: str = "random") -> dict:
    import jaxgluon as ag

    out = pathlib.Path(tempfile.mkdtemp(dir=root))
    start = time.perf_counter()
    result = ag.tune(jaxgluon_trial, {"x": ag.Real(0.0, 1.0), "sleep": sleep}, search_strategy=strategy,
                     num_trials=trials, epochs=epochs, num_workers=workers, executor="ray", ray_address=address,
                     output_directory=out / "exp", seed=0)
    wall = time.perf_counter() - start
    shutil.rmtree(out)
    assert len(result.trials) == trials and all(t["status"] in ("COMPLETED", "STOPPED") for t in result.trials)
    spans = [(t["results"][0]["t_start"], t["results"][-1]["t_now"]) for t in result.trials]
    return {"wall_s": wall, "spans": spans, "epochs": sum(len(t["results"]) for t in result.trials),
            "best": result.best_reward}


def run_raytune(trials: int, epochs: int, sleep: float, workers: int, root: pathlib.Path, reuse: bool = False,
                hyperband: bool = False) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    out = pathlib.Path(tempfile.mkdtemp(dir=root))
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=1, reduction_factor=3)
                 if hyperband else None)
    start = time.perf_counter()
    tuner = tune.Tuner(raytune_trial,
                       param_space={"x": tune.uniform(0.0, 1.0), "sleep": sleep, "epochs": epochs},
                       tune_config=tune.TuneConfig(metric="reward", mode="max", num_samples=trials,
                                                   max_concurrent_trials=workers, scheduler=scheduler,
                                                   reuse_actors=reuse),
                       run_config=tune.RunConfig(storage_path=str(out), name="exp", verbose=0))
    grid = tuner.fit()
    wall = time.perf_counter() - start
    shutil.rmtree(out)
    frames = [r.metrics_dataframe for r in grid]
    assert len(frames) == trials and not grid.errors, grid.errors
    spans = [(float(f["t_start"].min()), float(f["t_now"].max())) for f in frames]
    return {"wall_s": wall, "spans": spans, "epochs": int(sum(len(f) for f in frames)),
            "best": float(grid.get_best_result().metrics["reward"])}


def node_kill(cluster, root: pathlib.Path, address: str, trials: int = 6, epochs: int = 4, sleep: float = 0.3) -> dict:
    """The same seeded random search twice with 2 workers: uninterrupted, then with node2 killed mid-trial."""
    import threading

    import ray

    import jaxgluon as ag

    space = {"x": ag.Real(0.0, 1.0), "sleep": sleep}
    runs = {}
    for kill in (False, True):
        out = pathlib.Path(tempfile.mkdtemp(dir=root)) / "exp"
        box: dict = {}

        def search() -> None:
            box["result"] = ag.tune(node_trial, space, num_trials=trials, epochs=epochs, num_workers=2, seed=0,
                                    executor="ray", ray_address=address, output_directory=out)

        thread = threading.Thread(target=search)
        thread.start()
        if kill:
            node2 = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("node2"))
            end = time.monotonic() + 300
            while thread.is_alive() and time.monotonic() < end and not any(
                    (d / "node").exists() and (d / "node").read_text() == node2 and (d / "reports.jsonl").exists()
                    for d in (out / "trials").glob("*")):
                time.sleep(0.05)
            cluster.kill_node("node2")
        thread.join()
        result = box["result"]
        runs[kill] = {"statuses": [t["status"] for t in result.trials], "best_config": result.best_config,
                      "retries": result.metadata["executor_stats"]["num_retries"]}
    cluster.start_node("node2", num_cpus=1, resources='{"node2": 1}')
    return {"trials": trials, "completed_uninterrupted": runs[False]["statuses"].count("COMPLETED"),
            "completed_killed": runs[True]["statuses"].count("COMPLETED"), "retries": runs[True]["retries"],
            "same_best_config": runs[True]["best_config"] == runs[False]["best_config"]}


def node_trial(config: dict, reporter) -> None:
    """Sleep + report, its epoch checkpointed in its directory (a retry resumes there); writes its node's id."""
    import ray

    ckpt = reporter.checkpoint_dir
    (ckpt / "node").write_text(ray.get_runtime_context().get_node_id())
    start = int((ckpt / "epoch").read_text()) if (ckpt / "epoch").exists() else 0
    for epoch in range(start + 1, reporter.max_epochs + 1):
        time.sleep(config["sleep"])
        (ckpt / "epoch").write_text(str(epoch))
        if reporter(epoch=epoch, reward=reward_of(config["x"], epoch)) != "CONTINUE":
            return


def span_s(spans: list[tuple[float, float]]) -> float:
    return max(end for _, end in spans) - min(start for start, _ in spans)


def throughput(spans: list[tuple[float, float]], workers: int) -> float:
    """Trials per second from the first moment ``workers`` trials ran at once (else the first start) to the last
    end, counting the trials that started in that window."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], -e[1]))
    t0, running = min(start for start, _ in spans), 0
    for t, step in events:
        running += step
        if running >= workers:
            t0 = t
            break
    counted = [end for start, end in spans if start >= t0]
    return len(counted) / (max(counted) - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=None, help="an existing Ray cluster (default: start a 2-node one)")
    parser.add_argument("--trials", type=int, default=12, help="trials of the overhead measurement")
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds per epoch of the overhead trials")
    parser.add_argument("--throughput-trials", type=int, default=12)
    parser.add_argument("--throughput-sleep", type=float, default=0.5)
    parser.add_argument("--hyperband-trials", type=int, default=27)
    parser.add_argument("--hyperband-epochs", type=int, default=9)
    parser.add_argument("--hyperband-sleep", type=float, default=0.1)
    args = parser.parse_args()

    try:
        import ray
        import ray.tune  # noqa: F401 -- the peer
    except ImportError as err:
        sys.exit(f"this benchmark needs Ray and Ray Tune ({err}): pip install 'jaxgluon[ray,bench]'")

    cluster = None
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    root = pathlib.Path(tempfile.mkdtemp(prefix="ray_overhead_"))
    figures: dict = {}
    try:
        if args.address is None:
            sys.path.insert(0, str(REPO / "tests" / "tune"))
            from ray_cluster import LocalRayCluster

            cluster = LocalRayCluster()
            cluster.start_node("head", num_cpus=1)
            cluster.start_node("node2", num_cpus=1, resources='{"node2": 1}')
            address = cluster.address
        else:
            address = args.address
            ray.init(address=address, include_dashboard=False, configure_logging=False)
        print(f"ray {ray.__version__}, cluster {address}: {ray.cluster_resources().get('CPU')} CPUs on "
              f"{len([n for n in ray.nodes() if n['Alive']])} nodes", flush=True)
        # ---- overhead per trial ------------------------------------------------------------------------------
        n, sleep = args.trials, args.sleep
        print(f"\noverhead per trial: {n} one-epoch trials sleeping {sleep} s, one after the other (1 worker)")
        print(f"{'system':16s} {'s/trial':>9s} {'start-up s':>11s} {'wall s':>8s}")
        for name, run in {"jaxgluon": lambda: run_jaxgluon(n, 1, sleep, 1, root, address),
                          "raytune": lambda: run_raytune(n, 1, sleep, 1, root),
                          "raytune_reuse": lambda: run_raytune(n, 1, sleep, 1, root, reuse=True)}.items():
            r = run()
            span = span_s(r["spans"])
            figures[f"{name}_overhead_s_per_trial"] = per_trial = (span - n * sleep) / (n - 1)
            figures[f"{name}_startup_s"] = r["wall_s"] - span
            print(f"{name:16s} {per_trial:9.3f} {r['wall_s'] - span:11.2f} {r['wall_s']:8.2f}", flush=True)
        ours = figures["jaxgluon_overhead_s_per_trial"]
        for peer in ("raytune", "raytune_reuse"):
            figures[f"{peer}_over_jaxgluon_overhead"] = figures[f"{peer}_overhead_s_per_trial"] / max(ours, 1e-3)
            print(f"{peer} / jaxgluon overhead per trial: {figures[f'{peer}_over_jaxgluon_overhead']:.1f}x")

        # ---- throughput with 1 and 2 workers ------------------------------------------------------------------
        n, sleep = args.throughput_trials, args.throughput_sleep
        print(f"\nthroughput: {n} trials x 2 epochs x {sleep} s sleep; trials/s once all workers run (see above)")
        for name, run in {"jaxgluon": lambda w: run_jaxgluon(n, 2, sleep, w, root, address),
                          "raytune": lambda w: run_raytune(n, 2, sleep, w, root)}.items():
            rates = {}
            for workers in (1, 2):
                r = run(workers)
                rates[workers] = throughput(r["spans"], workers)
                print(f"{name:16s} {workers} worker(s): {rates[workers]:.3f} trials/s (ideal "
                      f"{workers / (2 * sleep):.3f}), wall {r['wall_s']:.2f} s", flush=True)
            figures[f"{name}_throughput_1w"], figures[f"{name}_throughput_2w"] = rates[1], rates[2]
            figures[f"{name}_speedup_2w"] = rates[2] / rates[1]
            print(f"{name:16s} 2 workers / 1 worker: {figures[f'{name}_speedup_2w']:.2f}x")

        # ---- the same Hyperband search ------------------------------------------------------------------------
        n, epochs, sleep = args.hyperband_trials, args.hyperband_epochs, args.hyperband_sleep
        print(f"\nHyperband (ASHA, grace 1, rf 3, max_t {epochs}): {n} trials, {sleep} s per epoch, 2 workers")
        ours = run_jaxgluon(n, epochs, sleep, 2, root, address, strategy="hyperband")
        peer = run_raytune(n, epochs, sleep, 2, root, hyperband=True)
        for name, r in (("jaxgluon", ours), ("raytune", peer)):
            print(f"{name:16s} wall {r['wall_s']:7.2f} s, {r['epochs']} epochs trained, best reward {r['best']:.4f}")
            figures[f"{name}_hyperband_wall_s"], figures[f"{name}_hyperband_epochs"] = r["wall_s"], r["epochs"]
            figures[f"{name}_hyperband_best"] = r["best"]
        figures["raytune_over_jaxgluon_hyperband_wall"] = peer["wall_s"] / ours["wall_s"]
        print(f"raytune / jaxgluon Hyperband wall time: {figures['raytune_over_jaxgluon_hyperband_wall']:.2f}x")

        # ---- a node killed mid-trial ------------------------------------------------------------------------------
        if cluster is not None:
            kill = node_kill(cluster, root, address)
            print(f"\nnode killed mid-trial (6 trials x 4 epochs, 2 workers, seed 0): {kill['completed_killed']} of "
                  f"{kill['trials']} trials completed ({kill['completed_uninterrupted']} uninterrupted), "
                  f"{kill['retries']} retried, same best config as the uninterrupted run: {kill['same_best_config']}")
            figures.update({f"node_kill_{k}": v for k, v in kill.items()})
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if cluster is not None:
            cluster.stop()
        elif ray.is_initialized():
            ray.shutdown()
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                      for k, v in {"benchmark": "ray_overhead", "ray": ray.__version__, **figures}.items()}))


if __name__ == "__main__":
    main()
