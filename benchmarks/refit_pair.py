"""Refit alone, the trial model it refits, and their average, compared on finished fits (no fit runs here).

A refit (``jaxgluon.task.refit``) trains the best config again on training + validation images, so nothing can
validate it. ``fit`` serves a fine-tuned refit averaged with the trial model it refits
(``jaxgluon.task.final_model.refit_pair``). This replays that choice on the fits that
``benchmarks/task_quality.py --out DIR`` left: for every fit (column ``default`` or ``refit``) that served a
fine-tuned refit, it loads the refit (``DIR/seed<s>/<dataset>/<column>/refit``) and the trial's best checkpoint
(the run's ``best_trial_id`` / ``best_epoch``), predicts the dataset's test split with and without test-time
augmentation, and reports test top-1 and log-loss of:

- **refit**: the refit alone (what ``fit`` served before the pair);
- **trial**: the trial's own model (the best single trial: what ``fit`` serves without a refit);
- **pair**: their equal-weight average (what ``fit`` serves now).

    python benchmarks/task_quality.py --datasets hymenoptera,imagenette_small --time-limits 600 --out /tmp/q600 \
        --skip fixed,probe,sklearn --seeds 0,1
    python benchmarks/refit_pair.py /tmp/q600 [/tmp/another_run ...]

Each argument is an ``--out`` folder (its ``summary.json``) or a saved log of a ``task_quality.py`` run, whose last
line is the summary; a log from before the summary recorded its ``out`` folder names the folder beside it (the
log's path without its suffix). The output ends with one JSON line: per fit the three models' test top-1 and
log-loss with and without the augmentation, and per setting the means and the wins / losses of each pair of them.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from task_quality import SHARED_DATA, datasets_for  # noqa: E402

from jaxgluon.task.ensemble import scores  # noqa: E402
from jaxgluon.task.final_model import refit_pair  # noqa: E402
from jaxgluon.train import load_trained  # noqa: E402
from jaxgluon.train.trained import predict_source_together  # noqa: E402

MODELS = ("refit", "trial", "pair")


def read_summary(path: pathlib.Path) -> tuple[dict, pathlib.Path]:
    """``(task_quality summary, the --out folder its fits are in)`` from an ``--out`` folder or a saved log."""
    if path.is_dir():
        summary = json.loads((path / "summary.json").read_text())
        return summary, pathlib.Path(summary.get("out") or path)
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError(f"{path} holds no task_quality summary (a JSON line); pass its --out folder instead")
    summary = json.loads(lines[-1])
    return summary, pathlib.Path(summary.get("out") or path.with_suffix(""))


def refit_fits(summary: dict, root: pathlib.Path) -> list[tuple[dict, str, pathlib.Path]]:
    """``(run, column, experiment dir)`` of every fit in the summary that served a fine-tuned refit."""
    found = []
    for run in summary["runs"]:
        for column in ("default", "refit"):
            row = run.get(column)
            if (isinstance(row, dict) and row.get("final_model") == "refit"
                    and (row.get("refit") or {}).get("epochs")):
                found.append((run, column, root / f"seed{run['seed']}" / run["dataset"] / column))
    return found


def compare(run: dict, column: str, exp: pathlib.Path, root: pathlib.Path) -> dict:
    """Test top-1 and log-loss of the refit, the trial's model and their average, with and without TTA."""
    row = run[column]
    test = datasets_for(run["dataset"], SHARED_DATA, root, run["seed"])[1]
    pair = refit_pair(load_trained(exp / "refit", epoch=row["refit"]["epochs"]),
                      load_trained(exp / "trials" / str(row["best_trial_id"]), epoch=row["best_epoch"]),
                      row["best_trial_id"])     # as fit serves it
    out = {"dataset": run["dataset"], "seed": run["seed"], "column": column, "served_top1": row.get("top1")}
    for tta in (True, False):
        pair.tta = tta
        # both members predicted from one decoding of each test batch (the two share their input)
        (refit, labels), (trial, _) = predict_source_together(pair.members, test.test_source)
        probs = {"refit": refit, "trial": trial, "pair": pair._mix([refit, trial])}   # the served weighting
        suffix = "" if tta else "_no_tta"
        for name in MODELS:
            top1, loss = scores(probs[name], labels)
            out[f"{name}_top1{suffix}"], out[f"{name}_log_loss{suffix}"] = round(top1, 4), round(loss, 4)
    return out


def tally(rows: list[dict], suffix: str) -> dict:
    """Means, and for each pair of models the fits where the first is better / worse (top-1; log-loss)."""
    result = {f"mean_{name}_{m}": round(float(np.mean([r[f"{name}_{m}{suffix}"] for r in rows])), 4)
              for name in MODELS for m in ("top1", "log_loss")}
    for a, b in (("pair", "trial"), ("refit", "trial"), ("pair", "refit")):
        top = [np.sign(r[f"{a}_top1{suffix}"] - r[f"{b}_top1{suffix}"]) for r in rows]
        loss = [np.sign(r[f"{b}_log_loss{suffix}"] - r[f"{a}_log_loss{suffix}"]) for r in rows]
        result[f"{a}_vs_{b}"] = {"top1_wins": int(sum(t > 0 for t in top)), "top1_losses": int(sum(t < 0 for t in top)),
                                 "log_loss_wins": int(sum(t > 0 for t in loss)),
                                 "log_loss_losses": int(sum(t < 0 for t in loss))}
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="--out folders of benchmarks/task_quality.py runs, or their saved logs")
    args = p.parse_args(argv)
    rows = []
    for path in map(pathlib.Path, args.runs):
        summary, root = read_summary(path)
        for run, column, exp in refit_fits(summary, root):
            rows.append(compare(run, column, exp, root))
            r = rows[-1]
            print(f"{r['dataset']:>18} seed {r['seed']:>3} {column:>7}: test top-1 refit {r['refit_top1']:.4f} "
                  f"trial {r['trial_top1']:.4f} pair {r['pair_top1']:.4f}; log-loss {r['refit_log_loss']:.4f} "
                  f"{r['trial_log_loss']:.4f} {r['pair_log_loss']:.4f} (with TTA)", flush=True)
    if not rows:
        raise SystemExit("no fit in these runs served a fine-tuned refit")
    summary = {"fits": rows, "tta": tally(rows, ""), "no_tta": tally(rows, "_no_tta")}
    for setting in ("tta", "no_tta"):
        print(setting, json.dumps(summary[setting]))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
