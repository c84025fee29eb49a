"""Do the ensemble and the refit beat the best single trial? Test top-1 of each, built from the same search.

Per dataset, one ``task.fit(dataset, time_limits=T, ensemble=True, refit=False)`` with every other argument at its
default (its wall clock and overrun are reported: the ensemble's validation predictions count in T). Then, from the
same trials, without a deadline:

- **single**: the best trial's best checkpoint (what ``fit`` serves with ``ensemble=False``), the peer;
- **ensemble**: greedy selection (``jaxgluon.task.final_model.build_ensemble``) over the best trials' validation
  probabilities, whether or not it beat its best member on validation (so its test top-1 is reported either way);
- **refit**: the best config retrained on training + validation images for its best epoch count
  (``jaxgluon.task.refit.refit_best``), with its wall time.

Datasets: the built-in ``digits`` (80/20 train/test; CIFAR-10 weights from ``../shared`` when present) and the
shared folders (``hymenoptera``: train / val as the test split; ``flowers5``: train / test).

    PYTHONPATH=. python benchmarks/refit_ensemble.py                                  # digits + hymenoptera, 120 s
    PYTHONPATH=. python benchmarks/refit_ensemble.py --datasets digits --time-limits 300 --epochs 3   # more trials

The output ends with one JSON line: per dataset the test top-1 of single / ensemble / refit, ratios to single,
the ensemble's weights and validation figures, the refit's seconds, the fit's wall clock and overrun.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time
import types

from jaxgluon import ImageClassification as task
from jaxgluon.task.final_model import build_ensemble
from jaxgluon.task.refit import refit_best
from jaxgluon.train import TrialSpec, load_trained

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FOLDERS = {"hymenoptera": ("train", "val"), "flowers5": ("train", "test")}


def dataset(name: str):
    if name == "digits":
        return task.Dataset(name="digits"), task.Dataset(name="digits", train=False)
    train, test = FOLDERS[name]
    root = SHARED / "data" / name
    if not root.is_dir():
        raise SystemExit(f"{root} is absent: the shared folders are needed for {name}")
    return task.Dataset(train_path=str(root / train)), task.Dataset(test_path=str(root / test))


def run(name: str, limit: float, epochs: int | None = None) -> dict:
    train, test = dataset(name)
    out = pathlib.Path(tempfile.mkdtemp(prefix=f"refit_ensemble_{name}_"))
    start = time.perf_counter()
    results = task.fit(train, time_limits=limit, output_directory=out / "exp", ensemble=True, refit=False,
                       epochs=epochs, verbose=False)
    wall = time.perf_counter() - start
    meta = results.metadata
    trials_dir = pathlib.Path(results.experiment_dir) / "trials"
    best = meta["best_trial_id"]
    single = load_trained(trials_dir / str(best), epoch=meta["best_epoch"])
    row = {"dataset": name, "time_limits": limit, "epochs": meta["epochs"], "fit_wall_s": wall, "overrun_s": meta["overrun_s"],
           "final_model": meta["final_model"], "trials": len(results.trials), "metric": meta["metric"],
           "single_test_top1": single.evaluate(test.test_source), "single_trial": best,
           "ensemble_in_fit": meta.get("ensemble")}
    spec = TrialSpec(train_data=train.train_data, val_data=train.val_data, val_fraction=train.val_fraction,
                     split_seed=train.split_seed, image_size=meta["image_size"], batch_size=meta["batch_size"],
                     metric=meta["metric"])
    experiment = types.SimpleNamespace(trials=results.trials, experiment_dir=results.experiment_dir)
    t0 = time.perf_counter()
    ensemble, record = build_ensemble(experiment, trials_dir, spec.sources()[1], (best, single), meta["metric"],
                                      None)
    row["ensemble_build_s"] = time.perf_counter() - t0
    row["ensemble"] = {k: record.get(k) for k in ("status", "reason", "members", "val_top1", "val_loss",
                                                  "best_member", "prediction_seconds", "candidates")}
    row["ensemble_test_top1"] = None if ensemble is None else ensemble.evaluate(test.test_source)
    # the alternative to recomputing: validation probabilities saved by each trial at each new best epoch, costing
    # about one validation pass per such epoch (the trials' own eval_seconds) in the workers
    evals = [(r.get("eval_seconds") or 0.0, r.get("reward")) for t in results.trials for r in t.get("results", [])]
    new_best, per_trial_cost = 0, 0.0
    for t in results.trials:
        best_so_far = None
        for r in t.get("results", []):
            if r.get("reward") is not None and (best_so_far is None or r["reward"] > best_so_far):
                best_so_far, new_best, per_trial_cost = r["reward"], new_best + 1, per_trial_cost + (r.get("eval_seconds") or 0.0)
    row["recompute_prediction_s"] = record.get("prediction_seconds")
    row["per_trial_saving_estimate_s"] = per_trial_cost
    row["new_best_epochs"] = new_best
    row["mean_eval_pass_s"] = sum(e for e, _ in evals) / max(len(evals), 1)
    trial = next(t for t in results.trials if t["trial_id"] == best)
    outcome = refit_best(trial["config"], meta["best_epoch"], trial, spec, out / "refit", deadline=None,
                         probe=single if meta["best_epoch"] == 0 else None)
    row["refit"] = outcome.record
    row["refit_test_top1"] = None if outcome.model is None else outcome.model.evaluate(test.test_source)
    for kind in ("ensemble", "refit"):
        value = row[f"{kind}_test_top1"]
        row[f"{kind}_vs_single"] = None if value is None else value / max(row["single_test_top1"], 1e-9)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "hymenoptera"],
                        choices=["digits", *FOLDERS])
    parser.add_argument("--time-limits", type=float, default=120.0)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per trial (default: fit's, chosen for the budget; fewer: more trials)")
    args = parser.parse_args()
    weights = SHARED / "weights" / "cifar10_resnet"
    if weights.is_dir():
        os.environ.setdefault("JAXGLUON_WEIGHTS_PATH", str(weights))
    rows = []
    for name in args.datasets:
        row = run(name, args.time_limits, args.epochs)
        rows.append(row)
        ens, ref = row["ensemble_test_top1"], row["refit_test_top1"]
        print(f"{name}: T={args.time_limits:g} s, {row['trials']} trials, fit {row['fit_wall_s']:.1f} s "
              f"(overrun {row['overrun_s']:.2f} s, served {row['final_model']}); test top-1 single "
              f"{row['single_test_top1']:.4f}, ensemble {'-' if ens is None else f'{ens:.4f}'} "
              f"({row['ensemble']['status']}: {row['ensemble'].get('members')}), refit "
              f"{'-' if ref is None else f'{ref:.4f}'} ({row['refit'].get('status')}, "
              f"{row['refit'].get('seconds') or 0:.1f} s); ratios ensemble/single {row['ensemble_vs_single']}, "
              f"refit/single {row['refit_vs_single']}", flush=True)
    print(json.dumps({"benchmark": "refit_ensemble", "runs": rows}, default=str))


if __name__ == "__main__":
    main()
