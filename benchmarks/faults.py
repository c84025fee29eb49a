"""The reliability attack of issue 19, rerun end to end: hangs, killed drivers, racing resumes, a slow restore.

    python benchmarks/faults.py            # ~4 min on 2 CPU cores
    python benchmarks/faults.py --kills 3 --race-tries 1 --observations 30 --time-limits 6   # a quick look

1. **Hang**: ``ag.tune(fn, space, num_trials=6, epochs=5, time_limits=10)`` where trial 2 calls ``time.sleep(1e6)``,
   in every executor (default, 'in_process', 'process_pool'); with the default ``trial_timeout='auto'`` (the hung
   trial is killed, the search goes on) and with ``trial_timeout=None`` (only the time limit can end it).
   Figure: seconds past ``time_limits`` when ``tune`` returned (target: <= 2).
2. **Killed drivers**: a random search in a 2-worker process pool, its driver SIGKILLed ``--kills`` times at random
   moments, each time resumed; then run to the end. Peer: the same search uninterrupted. Figures: epochs run twice
   (an epoch a trial logged twice: only a kill between an epoch's save and its report should cause one), epochs
   the journal recorded twice or never (a COMPLETED trial missing an epoch's result), worker processes alive 1 s
   after a kill and at the end, whether the best config equals the uninterrupted run's.
3. **Resume race**: a second ``resume=True`` driver started while the first is finishing (the issue's 2-in-5
   failure). Figures: tries that re-ran or failed a finished trial, or saw the journal's clock go backwards.
4. **Searcher restore**: resuming a bayesopt experiment of ``--observations`` GP-suggested trials whose scheduler
   snapshot is gone (a driver killed before it); and at ``--peer-observations``, timed next to the same restore
   with the GP suggestions recomputed (what main 33840c7 did). Target: <= 2 s for 100 observations.
5. The artifact attacks of ``benchmarks/faults_artifacts.py`` (saved models, weights files, data), when present.

Ends with one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings

HERE = pathlib.Path(__file__).resolve().parent
import _common  # noqa: F401,E402 -- first: puts this checkout's jaxgluon first on sys.path

import jaxgluon as ag  # noqa: E402
from jaxgluon.tune import tune  # noqa: E402
from jaxgluon.tune.journal import read_journal  # noqa: E402

HANG_TRIAL = 2


def trial(config: dict, reporter) -> None:
    """A fake training run: ``config['sleep']`` s per epoch, its state (the epoch) saved atomically in the trial's
    checkpoint_dir before each report, every finished epoch logged with the process that ran it. It resumes as
    the Reporter protocol says (``train_trial`` does the same through ``TrialCheckpointer.resume_epoch``): from
    its saved epoch, but no later than ``reporter.reported_epoch``, so an epoch saved by a process killed before
    it reported is trained and reported again rather than never reported."""
    folder = reporter.checkpoint_dir
    with open(folder / "pids.log", "a") as f:
        f.write(f"{os.getpid()}\n")
    state = folder / "state.json"
    saved = json.loads(state.read_text())["epoch"] if state.exists() else 0
    epoch = min(saved, reporter.reported_epoch)
    if config.get("hang") and reporter.trial_id == HANG_TRIAL:
        time.sleep(1e6)
    while epoch < reporter.max_epochs:
        epoch += 1
        time.sleep(config.get("sleep", 0.2))
        tmp = folder / "state.json.tmp"
        tmp.write_text(json.dumps({"epoch": epoch}))
        os.replace(tmp, state)
        with open(folder / "epochs.log", "a") as f:
            f.write(f"{epoch} {os.getpid()}\n")
        reward = 1.0 - (config["x"] - 0.37) ** 2 - 0.5 / epoch
        if reporter(epoch=epoch, reward=reward) != "CONTINUE":
            return


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def worker_pids(exp: pathlib.Path) -> set[int]:
    return {int(line) for log in exp.glob("trials/*/pids.log") for line in log.read_text().split()}


def epochs_run_twice(exp: pathlib.Path) -> int:
    """Epochs a trial trained more than once (a kill between an epoch's save and its report re-runs it, by design)."""
    twice = 0
    for log in exp.glob("trials/*/epochs.log"):
        epochs = [int(line.split()[0]) for line in log.read_text().splitlines()]
        twice += len(epochs) - len(set(epochs))
    return twice


def report_faults(exp: pathlib.Path, epochs: int) -> tuple[int, int]:
    """``(epochs the journal recorded twice for one trial, epochs missing from a COMPLETED trial's results)``."""
    recorded: dict[int, list] = {}   # trial id -> the epochs of its result records, in journal order
    ended = {}
    for event in read_journal(exp / "journal.jsonl"):
        if event["event"] == "result":
            recorded.setdefault(event["trial_id"], []).append(event["result"].get("epoch"))
        elif event["event"] == "end":
            ended[event["trial_id"]] = event["status"]
    twice = sum(len(e) - len(set(e)) for e in recorded.values())
    missing = sum(len(set(range(1, epochs + 1)) - set(recorded.get(tid, ())))
                  for tid, status in ended.items() if status == "COMPLETED")
    return twice, missing


# ---- 1. hangs --------------------------------------------------------------------------------------------
def hang_attack(root: pathlib.Path, time_limits: float) -> dict:
    space = {"x": ag.Real(0.0, 1.0), "sleep": 0.2, "hang": True}
    out = {}
    for executor in (None, "in_process", "process_pool"):
        for timeout in ("auto", None):
            name = f"{executor or 'default'}/trial_timeout={timeout}"
            start = time.monotonic()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = tune(trial, space, num_trials=6, epochs=5, time_limits=time_limits, executor=executor,
                              trial_timeout=timeout, output_directory=root / name.replace("/", "_"))
            elapsed = time.monotonic() - start
            hung = result.trials[HANG_TRIAL]
            out[name] = {"seconds": round(elapsed, 2), "past_limit_s": round(max(0.0, elapsed - time_limits), 2),
                         "hung_trial": hung["status"], "trials": len(result.trials)}
            print(f"hang  {name:36s} returned after {elapsed:5.1f} s (time_limits {time_limits:g} s): hung trial "
                  f"{hung['status']}, {len(result.trials)} trials", flush=True)
    return out


# ---- 2. killed drivers -----------------------------------------------------------------------------------
DRIVER = """
import sys
sys.path[:0] = {paths!r}
from faults import trial
from jaxgluon.tune import tune
tune(trial, {{"x": __import__("jaxgluon").Real(0.0, 1.0), "sleep": {sleep!r}}}, search_strategy="random",
     num_trials={num_trials}, epochs={epochs}, num_workers=2, executor="process_pool", seed=3,
     output_directory={exp!r}, resume={resume!r})
"""


def _sessions(exp: pathlib.Path) -> int:
    path = exp / "journal.jsonl"
    return sum(e["event"] == "session" for e in read_journal(path)) if path.exists() else 0


def run_driver(exp: pathlib.Path, kill_after: float | None, **search) -> bool:
    """Runs one driver (a resume when the experiment exists); with ``kill_after``, SIGKILLs it that many seconds
    after it has started its session. Returns True when it was killed."""
    before = _sessions(exp)
    script = DRIVER.format(paths=[str(HERE.parent), str(HERE)], exp=str(exp), resume=before > 0, **search)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    if kill_after is None:
        proc.wait()
        return False
    while _sessions(exp) == before and proc.poll() is None:
        time.sleep(0.01)
    try:
        proc.wait(timeout=kill_after)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def kill_attack(root: pathlib.Path, kills: int, seed: int) -> dict:
    search = dict(num_trials=24, epochs=5, sleep=0.3)
    reference = root / "uninterrupted"
    start = time.monotonic()
    run_driver(reference, None, **search)
    reference_s = time.monotonic() - start
    rng = random.Random(seed)
    exp = root / "killed"
    mid_search = orphans_after_kill = 0
    start = time.monotonic()
    for i in range(kills):
        was_killed = run_driver(exp, kill_after=rng.uniform(0.0, 1.5), **search)
        journal = exp / "journal.jsonl"
        finished = journal.exists() and any(e["event"] == "finish" for e in read_journal(journal))
        mid_search += was_killed and not finished
        time.sleep(1.0)
        orphans_after_kill += sum(alive(pid) for pid in worker_pids(exp))
    run_driver(exp, kill_after=None, **search)
    killed_s = time.monotonic() - start
    best = {}
    for name, folder in (("uninterrupted", reference), ("killed", exp)):
        result = tune(trial, {"x": ag.Real(0.0, 1.0), "sleep": search["sleep"]}, search_strategy="random",
                      num_trials=search["num_trials"], epochs=search["epochs"], seed=3, executor="in_process",
                      output_directory=folder, resume=True)  # nothing left to run: reads the result back
        best[name] = result.best_config
        sessions = result.metadata["num_sessions"] - 1  # not the one that read it back
        errors = result.metadata["num_trials_by_status"]["ERROR"]
        print(f"kill  {name:14s} best {result.best_config} ({result.best_reward:.4f}), {sessions} driver sessions, "
              f"{errors} ERROR trials", flush=True)
    reported_twice, missing = report_faults(exp, search["epochs"])
    out = {"kills": kills, "kills_mid_search": mid_search, "epochs_run_twice": epochs_run_twice(exp),
           "epochs_reported_twice": reported_twice, "reports_missing": missing,
           "orphans_1s_after_kills": orphans_after_kill,
           "orphans_at_end": sum(alive(pid) for pid in worker_pids(exp) | worker_pids(reference)),
           "same_best_config": best["killed"] == best["uninterrupted"],
           "uninterrupted_s": round(reference_s, 1), "killed_and_resumed_s": round(killed_s, 1)}
    print(f"kill  {kills} SIGKILLs ({mid_search} mid-search): {out['epochs_run_twice']} epochs run twice, "
          f"{reported_twice} recorded twice, {missing} never recorded, "
          f"{orphans_after_kill} workers alive 1 s after a kill, {out['orphans_at_end']} at the end; same best config: "
          f"{out['same_best_config']}", flush=True)
    return out


# ---- 3. resume race --------------------------------------------------------------------------------------
def race_attack(root: pathlib.Path, tries: int, seed: int) -> dict:
    rng = random.Random(seed)
    search = dict(num_trials=6, epochs=3, sleep=0.25)
    bad = 0
    for i in range(tries):
        exp = root / f"race{i}"
        run_driver(exp, rng.uniform(0.5, 1.5), **search)  # killed mid-search, then two resumes race
        script = DRIVER.format(paths=[str(HERE.parent), str(HERE)], exp=str(exp), resume=True, **search)
        first = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.0, 4.0))
        second = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
        _, err1 = first.communicate()
        _, err2 = second.communicate()
        events = list(read_journal(exp / "journal.jsonl"))
        clock = [e["t"] for e in events if "t" in e]
        trials = {}
        for e in events:
            if e["event"] == "end":
                trials[e["trial_id"]] = e["status"]
        refused = b"in use by another running experiment driver" in err2
        ok = (all(b >= a for a, b in zip(clock, clock[1:]))
              and "ERROR" not in trials.values() and len(trials) == search["num_trials"]
              and json.loads((exp / "experiment.json").read_text())["seed"] == 3)
        bad += not ok
        print(f"race  try {i}: second driver {'refused (lock held)' if refused else 'ran after the first'}; "
              f"{len(trials)} trials, statuses {sorted(set(trials.values()))}, clock monotonic "
              f"{all(b >= a for a, b in zip(clock, clock[1:]))}: {'ok' if ok else 'BAD'}", flush=True)
    return {"tries": tries, "bad_tries": bad}


# ---- 4. searcher restore ---------------------------------------------------------------------------------
def restore_attack(root: pathlib.Path, observations: int, peer_observations: int) -> dict:
    out = {"observations": observations, "restore_s": _restore_seconds(root / "ours", observations, replay=True)}
    print(f"restore {observations} observations, GP suggestions replayed: {out['restore_s']:.2f} s", flush=True)
    ours = _restore_seconds(root / "ours_small", peer_observations, replay=True)
    peer = _restore_seconds(root / "peer", peer_observations, replay=False)
    print(f"restore {peer_observations} observations: GP suggestions replayed {ours:.2f} s, recomputed (main "
          f"33840c7) {peer:.2f} s: {peer / max(ours, 1e-9):.0f}x", flush=True)
    out.update(peer_observations=peer_observations, replayed_s=round(ours, 3), recomputed_s=round(peer, 3),
               speedup=round(peer / max(ours, 1e-9), 1), restore_s=round(out["restore_s"], 3))
    return out


def _restore_seconds(exp: pathlib.Path, observations: int, replay: bool) -> float:
    """Seconds to resume a bayesopt experiment of ``observations`` trials whose scheduler snapshot is gone (a
    driver killed before it): the GP searcher replays every journaled suggestion."""
    from jaxgluon.scheduler import FIFOScheduler
    from jaxgluon.searcher import GPSearcher
    from jaxgluon.tune.process_pool import ProcessPoolExecutor
    from jaxgluon.tune.runner import Runner
    from jaxgluon.tune.stop import StopCriterion

    space = {"x": ag.Real(0.0, 1.0), "y": ag.Real(0.0, 1.0), "sleep": 0.0}

    def scheduler(num_initial_random: int) -> FIFOScheduler:
        return FIFOScheduler(GPSearcher(space, num_initial_random=num_initial_random, seed=0), max_t=1)

    # the journal, written fast (random suggestions), is then resumed as a GP search from its 6th suggestion on
    tune(trial, space, search_strategy=scheduler(observations), num_trials=observations, epochs=1,
         executor="in_process", output_directory=exp)
    (exp / "scheduler_state.json").unlink()
    with (contextlib.nullcontext() if replay else _without_replay()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        runner = Runner(trial, scheduler(5), ProcessPoolExecutor(1), exp,
                        StopCriterion.from_args(observations, None, None), max_epochs=1, resume=True,
                        settings={"search_strategy": "FIFOScheduler"})
        seconds = time.perf_counter() - start
    runner.run()  # nothing left to run: releases the experiment
    return seconds


@contextlib.contextmanager
def _without_replay():
    from jaxgluon.searcher.base import Searcher

    original = Searcher.replaying
    Searcher.replaying = None  # the runner then recomputes every suggestion, as main 33840c7 did
    try:
        yield
    finally:
        Searcher.replaying = original


# ---- 5. artifacts ----------------------------------------------------------------------------------------
def artifact_attacks() -> list:
    try:
        import faults_artifacts
    except ImportError:
        print("artifacts: benchmarks/faults_artifacts.py is absent on this branch; skipped", flush=True)
        return []
    out = []
    for attack in faults_artifacts.ATTACKS:
        with tempfile.TemporaryDirectory() as tmp:
            record = attack(pathlib.Path(tmp))
        print(f"artifacts {getattr(attack, '__name__', attack)}: {record}", flush=True)
        out.append(record)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--race-tries", type=int, default=5)
    parser.add_argument("--observations", type=int, default=100)
    parser.add_argument("--peer-observations", type=int, default=20, help="restore size timed next to main's way")
    parser.add_argument("--time-limits", type=float, default=10.0, help="the issue's attack used 15")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        figures = {"hang": hang_attack(root / "hang", args.time_limits),
                   "kill": kill_attack(root / "kill", args.kills, args.seed),
                   "race": race_attack(root / "race", args.race_tries, args.seed),
                   "restore": restore_attack(root / "restore", args.observations, args.peer_observations),
                   "artifacts": artifact_attacks()}
    figures["hang_max_past_limit_s"] = max(v["past_limit_s"] for v in figures["hang"].values())
    figures["seconds"] = round(time.monotonic() - start, 1)
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
