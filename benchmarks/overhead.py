"""Runner overhead: many trivial trials through jaxgluon's in-process runner vs Optuna's in-memory study.

    python benchmarks/overhead.py --trials 10000 --epochs 1

The default strategy is 'grid' over a 1-d grid with one point per trial: its searcher is O(1) per suggestion, so
the figures are the runner's own. ('random' works too, but RandomSearcher.suggest re-keys every config suggested
so far on each call -- O(trials) -- which dominates at 10,000 trials; ms/suggest reports it separately.)

Per trial the runner asks the scheduler for a config (searcher), journals the start, hands each report to the
scheduler and journals the result with its decision, then journals the end. "ms per decision" is the time the
runner spends handling one report (scheduler decision + journal append), measured inside the runner;
"ms per trial" is the runner's own session time / trials (suggest, start, the trivial trial, reports, end: all
included; building the scheduler and searcher beforehand is not, it is in "setup s"). The journal is measured in its
three durability modes: 'group' (the default: each event handed to the OS before the trial continues, fsynced by
a background thread within one disk-sync latency -- group commit), 'fsync' (each event on disk before the trial
continues) and 'flush' (handed to the OS: survives a killed driver, not a power cut). Optuna's peer: ``study.optimize`` of a trivial objective with a RandomSampler and
(by default) a NopPruner -- like-for-like with jaxgluon's random FIFO --, one ``trial.report`` +
``trial.should_prune`` per epoch (its "decision"), in-memory storage.
The raw fsync latency of the disk is measured in the same run, because it bounds the 'fsync' mode.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import tempfile
import time

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path


def trivial_trial(config: dict, reporter) -> None:
    for epoch in range(1, reporter.max_epochs + 1):
        if reporter(epoch=epoch, reward=config["x"] * epoch) != "CONTINUE":
            return


def run_jaxgluon(trials: int, epochs: int, sync: str, strategy: str, root: pathlib.Path) -> dict:
    import jaxgluon as ag

    out = pathlib.Path(tempfile.mkdtemp(dir=root))
    start = time.perf_counter()
    options = {"points_per_dim": trials} if strategy == "grid" else None
    result = ag.tune(trivial_trial, {"x": ag.Real(0.0, 1.0)}, search_strategy=strategy, num_trials=trials,
                     epochs=epochs, output_directory=out / "exp", journal_sync=sync, seed=0,
                     scheduler_options=options, executor="in_process")
    wall = time.perf_counter() - start
    overhead = result.metadata["runner_overhead"]
    journal_bytes = (out / "exp" / "journal.jsonl").stat().st_size
    shutil.rmtree(out)
    assert len(result.trials) == trials, len(result.trials)
    run_s = result.metadata["time_used_s"]
    return {"system": f"jaxgluon {strategy} ({sync})", "trials": trials, "decisions": overhead["num_decisions"],
            "wall_s": run_s, "setup_s": wall - run_s, "ms_per_trial": 1e3 * run_s / trials,
            "ms_per_decision": 1e3 * overhead["decision_seconds"] / overhead["num_decisions"],
            "ms_per_suggest": 1e3 * overhead["suggest_seconds"] / max(1, overhead["num_suggestions"]),
            "journal_MB": journal_bytes / 1e6}


def run_optuna(trials: int, epochs: int, pruner: str) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    decision_seconds = 0.0

    def objective(trial):
        nonlocal decision_seconds
        x = trial.suggest_float("x", 0.0, 1.0)
        for epoch in range(1, epochs + 1):
            t = time.perf_counter()
            trial.report(x * epoch, epoch)
            prune = trial.should_prune()
            decision_seconds += time.perf_counter() - t
            if prune:
                raise optuna.TrialPruned()
        return x * epochs

    pruners = {"nop": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
               "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=pruners[pruner]())
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - start
    decisions = trials * epochs
    return {"system": f"optuna {optuna.__version__} random+{pruner} (in-memory)", "trials": trials,
            "decisions": decisions, "wall_s": wall, "setup_s": 0.0, "ms_per_trial": 1e3 * wall / trials,
            "ms_per_decision": 1e3 * decision_seconds / decisions, "ms_per_suggest": None, "journal_MB": None}


def fsync_latency_ms(root: pathlib.Path, n: int = 200) -> float:
    path = root / "fsync_probe.txt"
    times = []
    with open(path, "a") as f:
        for _ in range(n):
            t = time.perf_counter()
            f.write('{"event":"probe"}\n')
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - t)
    path.unlink()
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=1, help="reports (decisions) per trial")
    parser.add_argument("--strategy", default="grid", help="jaxgluon search strategy (scheduler)")
    parser.add_argument("--sync", nargs="+", default=["group", "fsync", "flush"],
                        choices=["group", "fsync", "flush"])
    parser.add_argument("--optuna-pruner", default="nop", choices=["nop", "median", "hyperband"])
    parser.add_argument("--dir", default=None, help="where the experiment directories are written (then removed); "
                        "default: the system temp dir")
    args = parser.parse_args()

    root = pathlib.Path(tempfile.mkdtemp(prefix="overhead-", dir=args.dir))
    probes = [fsync_latency_ms(root)]  # the disk is shared: probe it around every run, its latency moves
    rows = []
    for sync in args.sync:
        rows.append(run_jaxgluon(args.trials, args.epochs, sync, args.strategy, root))
        probes.append(fsync_latency_ms(root))
    rows.append(run_optuna(args.trials, args.epochs, args.optuna_pruner))
    shutil.rmtree(root)

    print(f"{args.trials} trivial trials x {args.epochs} epoch(s); disk fsync latency (median of 200 appends, "
          f"probed before/between/after the runs): {', '.join(f'{p:.3f}' for p in probes)} ms")
    print(f"{'system':46s} {'setup s':>8s} {'run s':>8s} {'ms/trial':>9s} {'ms/decision':>12s} {'ms/suggest':>11s}")
    for row in rows:
        suggest = "-" if row["ms_per_suggest"] is None else f"{row['ms_per_suggest']:.3f}"
        print(f"{row['system']:46s} {row['setup_s']:8.2f} {row['wall_s']:8.2f} {row['ms_per_trial']:9.3f} "
              f"{row['ms_per_decision']:12.4f} "
              f"{suggest:>11s}")
    optuna_row = rows[-1]
    figures = {"trials": args.trials, "epochs": args.epochs, "strategy": args.strategy,
               "optuna_pruner": args.optuna_pruner,
               "fsync_latency_ms_probes": [round(p, 4) for p in probes]}
    for row in rows[:-1]:
        sync = row["system"].rsplit("(", 1)[1].rstrip(")")
        figures[f"jaxgluon_{sync}_ms_per_decision"] = round(row["ms_per_decision"], 4)
        figures[f"jaxgluon_{sync}_ms_per_trial"] = round(row["ms_per_trial"], 4)
        figures[f"jaxgluon_{sync}_vs_optuna_per_trial"] = round(row["ms_per_trial"] / optuna_row["ms_per_trial"], 3)
    figures["optuna_ms_per_decision"] = round(optuna_row["ms_per_decision"], 4)
    figures["optuna_ms_per_trial"] = round(optuna_row["ms_per_trial"], 4)
    default = figures.get("jaxgluon_group_ms_per_decision")
    figures["target_1ms_per_decision_met_default_group"] = None if default is None else default <= 1.0
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
