"""Ensemble selection rules compared on finished fits: is greedy selection (the default) the right rule?

Given experiment folders that ``benchmarks/task_quality.py --out DIR`` left (``DIR/seed<s>/<dataset>/default``), it
loads every candidate ``fit``'s ensemble stage considers (``jaxgluon.task.final_model._candidates``: each trial's
best fine-tuned epoch and its scored linear-probe model, the best ``ENSEMBLE_MAX_CANDIDATES`` of them), predicts
the fit's validation split and the dataset's test split, and scores on test the ensemble each rule picks from the
validation predictions:

- **single**: the best candidate by the fit's ranking metric (``metric='auto'``: validation log-loss under 300
  validation images, else top-1; the model a fit without an ensemble serves);
- **greedy**: Caruana et al.'s selection with replacement, by log-loss (``jaxgluon.task.ensemble``, the default);
- **bootstrap greedy**: the mean of greedy selections' weights over ``--bootstraps`` resamples of the
  validation images (a hedge against a small validation set rewarding one model by chance);
- **average all** / **average top 3**: the uniform mean of all candidates / the 3 best by validation log-loss;
- **selection, no contest**: ``jaxgluon.task.ensemble.select_weights``'s choice, served whatever its validation
  score: the uniform mean of the candidates when they come from two or more networks (less those under halfway
  from chance to the best), else greedy selection (what ``fit`` served for two or more nets before 2026-12-06);
- **cross-fit contest**: that choice when it scores better on validation than the single model picked out of fold
  (:func:`out_of_fold_best`: each half of the validation images scored by the candidate best on the other half, so
  its score carries no reward for having been picked on the images that score it), else the single model;
- **cross-fit top-k**: the uniform mean of the k best candidates by validation log-loss, k chosen by out-of-fold
  log-loss (k = 1 is the single model; all of ``average_weights``'s candidates the fit's average);
- **fit's rule**: what ``fit`` serves (``jaxgluon.task.final_model.build_ensemble``): that choice when it scores
  better on validation than the single model by the fit's metric (log-loss or top-1, the other breaking ties),
  else the single model.

Every rule sees the same candidates, the same validation split (rebuilt from the dataset and seed) and the same
test images, so the comparison is within one search. No fit runs here.

Two figures per fit bound what any rule could reach from these candidates (they look at the test labels, so
they are ceilings, not rules): the test images every candidate gets wrong, and the best test top-1 of any
equal-weight pair of candidates (``oracle pair``).

    python benchmarks/task_quality.py --datasets imagenette_small,flowers5 --time-limits 600 --out /tmp/q600
    python benchmarks/ensemble_selection.py /tmp/q600 [/tmp/another_run ...]

With ``--tta`` every candidate is also predicted with test-time augmentation (``TrainedModel.tta``: the mean of
each image's and its mirror image's probabilities, what ``fit(tta='auto')`` serves), validation and test alike; the
rules keep the choice they made from the predictions without it (as ``fit`` does: it chooses from the validation
predictions its trials kept, made without the augmentation), and the summary adds each rule's test top-1 gain from
the augmentation (mean, and the fits it raised / lowered).

    python benchmarks/ensemble_selection.py /tmp/q600 --tta

The output ends with one JSON line: per fit each rule's test top-1 and the two ceilings, and per rule the mean
test top-1 and its wins and losses against single.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from task_quality import SHARED_DATA, datasets_for  # noqa: E402

from jaxgluon.task.ensemble import (average_weights, contest, greedy_selection, score_key,  # noqa: E402
                                   scores, select_weights)
from jaxgluon.task.cross_validation import fold_indices  # noqa: E402
from jaxgluon.task.defaults import ranking_metric  # noqa: E402
from jaxgluon.task.final_model import ENSEMBLE_MAX_CANDIDATES, _candidates  # noqa: E402
from jaxgluon.train import load_trained  # noqa: E402
from jaxgluon.tune.journal import read_journal  # noqa: E402

RULES = ("single", "greedy", "bootstrap greedy", "average all", "average top 3", "selection, no contest",
         "cross-fit contest", "cross-fit top-k", "fit's rule")


def fits_under(roots: list[str]) -> list[tuple[str, int, pathlib.Path]]:
    """``(dataset, seed, experiment dir)`` of every default fit under the given ``--out`` folders."""
    found = []
    for root in map(pathlib.Path, roots):
        for exp in sorted(root.glob("seed*/*/default")):
            if (exp / "trials").is_dir():
                found.append((exp.parent.name, int(exp.parent.parent.name[4:]), exp))
    return found


class _Experiment:
    """The trials of an experiment folder as ``final_model._candidates`` reads them (``trial_id``, ``status``,
    ``results``), rebuilt from its journal."""

    def __init__(self, exp: pathlib.Path):
        trials: dict[int, dict] = {}
        for event in read_journal(exp / "journal.jsonl"):
            tid = event.get("trial_id")
            if event["event"] == "start":
                trials.setdefault(tid, {"trial_id": tid, "status": "RUNNING", "results": []})
            elif event["event"] == "result" and tid in trials:
                trials[tid]["results"].append(event["result"])
            elif event["event"] == "end" and tid in trials:
                trials[tid]["status"] = event["status"]
        self.trials = list(trials.values())


def candidate_predictions(dataset: str, seed: int, exp: pathlib.Path, data_out: pathlib.Path,
                          ttas: tuple[bool, ...] = (False,)):
    """The candidates a fit's ensemble stage considers (``jaxgluon.task.final_model._candidates``: each trial's best
    fine-tuned epoch and its probe; one probe model that several trials share once): their names, nets, validation
    and test labels, and for each test-time augmentation setting in ``ttas`` their validation and test
    probabilities ``[M, N, C]``. Each candidate is loaded once."""
    train, test = datasets_for(dataset, SHARED_DATA, data_out, seed)
    val_source = train.split()[1]
    names, nets, y_val, y_test = [], [], None, None
    probs: dict[bool, tuple[list, list]] = {tta: ([], []) for tta in ttas}
    for _, tid, epoch in _candidates(_Experiment(exp), exp / "trials")[:ENSEMBLE_MAX_CANDIDATES]:   # as fit
        try:
            model = load_trained(exp / "trials" / str(tid), epoch=epoch)
        except (ValueError, FileNotFoundError):       # not kept (a trial cut early; an older retention)
            continue
        names.append(f"{tid}:{epoch}")
        nets.append(model.net)
        for tta, (val, tst) in probs.items():
            model.tta = tta
            pv, y_val = model.predict_proba_source(val_source)
            pt, y_test = model.predict_proba_source(test.test_source)
            val.append(pv)
            tst.append(pt)
    return names, nets, y_val, y_test, {tta: (np.stack(val), np.stack(tst)) for tta, (val, tst) in probs.items()}


def rule_weights(val: np.ndarray, labels: np.ndarray, nets: list[str], bootstraps: int,
                 seed: int = 0) -> dict[str, np.ndarray]:
    order = np.argsort([scores(p, labels)[1] for p in val])
    rng = np.random.default_rng(seed)
    boot = np.zeros(len(val))
    for _ in range(bootstraps):
        idx = rng.integers(0, len(labels), len(labels))
        counts = greedy_selection(val[:, idx], labels[idx])
        boot += counts / counts.sum()
    metric = ranking_metric("auto", len(labels))      # what fit ranks by on this many validation images
    chosen, rule = select_weights(val, labels, nets, metric)
    match = contest(chosen, val, labels, metric)        # fit's own contest: the best member as the rival
    single = np.eye(len(val))[match.best]
    several = np.count_nonzero(chosen) >= 2
    rival = out_of_fold_best(val, labels, metric) if rule == "average" else match.best_score
    return {"single": single, "greedy": greedy_selection(val, labels).astype(float),
            "bootstrap greedy": boot, "average all": np.ones(len(val)),
            "average top 3": np.isin(np.arange(len(val)), order[:3]).astype(float),
            "selection, no contest": chosen,
            "cross-fit contest": (chosen if several and score_key(match.score, metric) < score_key(rival, metric)
                                  else single),
            "cross-fit top-k": crossfit_top_k(val, labels),
            "fit's rule": chosen if match.served else single}


def out_of_fold_best(probs: np.ndarray, labels: np.ndarray, metric: str = "log_loss",
                     repeats: int = 5) -> tuple[float, float]:
    """Validation ``(top-1, log-loss)`` of "the best single candidate" among ``probs [M, N, C]`` with the pick made
    out of fold: for each of ``repeats`` stratified splits of the images into halves, each half is predicted by the
    candidate that ranks best by ``metric`` on the other half; the mean over the splits."""
    totals = np.zeros(2)
    for r in range(repeats):
        halves = fold_indices(labels, 2, seed=r)
        picked = np.empty(probs.shape[1:])
        for held, rest in (halves, halves[::-1]):
            best = min(range(len(probs)), key=lambda i: score_key(scores(probs[i][rest], labels[rest]), metric))
            picked[held] = probs[best][held]
        totals += scores(picked, labels)
    return float(totals[0] / repeats), float(totals[1] / repeats)


def crossfit_top_k(val: np.ndarray, labels: np.ndarray, repeats: int = 5) -> np.ndarray:
    """Uniform weights over the k best candidates by validation log-loss (among ``average_weights``'s), k chosen
    by its out-of-fold log-loss: for each of ``repeats`` stratified splits into halves, each half is scored by the
    mean of the k candidates best on the other half."""
    keep = np.flatnonzero(average_weights(val, labels))
    oof = np.zeros(len(keep))
    for r in range(repeats):
        halves = fold_indices(labels, 2, seed=r)
        for held, rest in (halves, halves[::-1]):
            order = keep[np.argsort([scores(val[i][rest], labels[rest])[1] for i in keep], kind="stable")]
            for k in range(1, len(keep) + 1):
                oof[k - 1] += scores(val[order[:k]].mean(0)[held], labels[held])[1] * len(held)
    k = int(np.argmin(oof)) + 1
    order = keep[np.argsort([scores(val[i], labels)[1] for i in keep], kind="stable")]
    return np.isin(np.arange(len(val)), order[:k]).astype(float)


def mixed(weights: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.tensordot(weights / weights.sum(), probs, axes=1)


def ceilings(tst: np.ndarray, labels: np.ndarray) -> dict:
    """Test images every candidate gets wrong, and the best test top-1 of any equal-weight pair (module doc)."""
    wrong = np.all(np.argmax(tst, -1) != labels, axis=0)
    pairs = [scores((tst[i] + tst[j]) / 2, labels)[0] for i in range(len(tst)) for j in range(i, len(tst))]
    return {"wrong_for_every_candidate": int(wrong.sum()), "oracle_pair_test_top1": round(max(pairs), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("roots", nargs="+", help="--out folders of benchmarks/task_quality.py runs")
    p.add_argument("--bootstraps", type=int, default=20)
    p.add_argument("--tta", action="store_true", help="also score every rule with test-time augmentation")
    args = p.parse_args()
    fits = fits_under(args.roots)
    if not fits:
        sys.exit(f"no default fits (seed*/<dataset>/default/trials) under {args.roots}; run benchmarks/"
                 "task_quality.py --out DIR first")
    rows = []
    for dataset, seed, exp in fits:
        names, nets, y_val, y_test, probs = candidate_predictions(dataset, seed, exp, exp.parent.parent / "_data",
                                                                  (False, True) if args.tta else (False,))
        # as in fit: the rules choose from the validation predictions the trials kept (no augmentation)
        weights = rule_weights(probs[False][0], y_val, nets, args.bootstraps)
        for tta, (val, tst) in probs.items():
            row = {"dataset": dataset, "seed": seed, "tta": tta, "experiment": str(exp), "candidates": names,
                   "nets": nets, "val_images": len(y_val), "test_images": len(y_test),
                   "greedy_weights": weights["greedy"].astype(int).tolist(),
                   "test_top1": {r: round(scores(mixed(w, tst), y_test)[0], 4) for r, w in weights.items()},
                   "val_log_loss": {r: round(scores(mixed(w, val), y_val)[1], 4) for r, w in weights.items()},
                   "val_top1": {r: round(scores(mixed(w, val), y_val)[0], 4) for r, w in weights.items()},
                   "candidate_val_top1": [round(scores(p, y_val)[0], 4) for p in val],
                   "candidate_val_log_loss": [round(scores(p, y_val)[1], 4) for p in val],
                   "candidate_test_top1": [round(scores(p, y_test)[0], 4) for p in tst],
                   **ceilings(tst, y_test)}
            rows.append(row)
            print(f"{dataset} (seed {seed}{', tta' if tta else ''}, {exp}): {len(names)} candidates of "
                  f"{len(set(nets))} net(s), {len(y_val)} val / {len(y_test)} test "
                  "images; test top-1 " + ", ".join(f"{r} {v:.4f}" for r, v in row["test_top1"].items())
                  + f"; ceilings: {row['wrong_for_every_candidate']} test images wrong for every candidate, best "
                  f"pair {row['oracle_pair_test_top1']:.4f}", flush=True)
    summary = {}
    for tta in (False, True) if args.tta else (False,):
        chosen = [r for r in rows if r["tta"] == tta]
        for rule in RULES:
            tops = [r["test_top1"][rule] for r in chosen]
            key = f"{rule} (tta)" if tta else rule
            summary[key] = {"mean_test_top1": round(float(np.mean(tops)), 4),
                            "wins_vs_single": sum(r["test_top1"][rule] > r["test_top1"]["single"] for r in chosen),
                            "losses_vs_single": sum(r["test_top1"][rule] < r["test_top1"]["single"] for r in chosen)}
            print(f"{key}: mean test top-1 {summary[key]['mean_test_top1']:.4f}, beats single on "
                  f"{summary[key]['wins_vs_single']} of {len(chosen)} fits, loses on {summary[key]['losses_vs_single']}")
    if args.tta:
        pairs = list(zip(rows[0::2], rows[1::2]))   # each fit without, then with the augmentation
        for rule in RULES:
            gains = [after["test_top1"][rule] - before["test_top1"][rule] for before, after in pairs]
            summary[f"tta gain: {rule}"] = {"mean_points": round(100 * float(np.mean(gains)), 2),
                                            "raised": sum(g > 0 for g in gains), "lowered": sum(g < 0 for g in gains)}
            print(f"tta gain, {rule}: {100 * np.mean(gains):+.2f} points in the mean, raised {sum(g > 0 for g in gains)}"
                  f" / lowered {sum(g < 0 for g in gains)} of {len(gains)} fits")
    print(json.dumps({"fits": rows, "summary": summary}))


if __name__ == "__main__":
    main()
