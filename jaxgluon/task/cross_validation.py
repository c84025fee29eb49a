"""k-fold cross-validation of a fit's final candidates (``fit(num_folds=k)``): which config to refit and serve.

    chosen, record = cross_validate(experiment, spec, chosen_trial_id, num_folds=5, deadline=time.time() + 60)

On a small validation set the search's ranking is noisy (a handful of images decide it). After the search, the
best few distinct configs (:data:`MAX_CANDIDATES`, best first by their search score) are scored again by
stratified k-fold cross-validation on the training + validation images: each fold trains the config from scratch
(as its trial did: pretrained weights and the linear-probe head included) on the other folds for the trial's best
fine-tuned epoch count -- so its learning-rate schedule decays over those epochs -- and is scored on the held-out
fold after its last epoch by the search's metric (``reward``: top-1, or ``exp(-log_loss)``). The config with the
best mean fold score is the one the fit refits and serves (``jaxgluon.task.final_model``'s rule then applies to
it); ties keep the search's order.

Budget: the cost of each candidate is estimated first from what its trial measured (``jaxgluon.task.refit``'s
estimate for a run on ``(k-1)/k`` of the images, times ``k``, less the first step's compilation after the first
fold: on digits, 3 candidates x 3 folds took 251 s against an estimate of 490 s before that correction);
candidates are taken best first while the running total fits the time left, and cross-validation is skipped -- the search's choice kept, the reason logged and
recorded -- when fewer than two fit. Each fold run stops at the deadline (at most one train step late); a
candidate with an unfinished fold is left out of the comparison. ``metadata['cv']`` records the candidates, their
fold scores, the estimate and the outcome.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import shutil
import time
from typing import Any, Mapping

import numpy as np

from jaxgluon.data import SubsetSource
from jaxgluon.data.sources import source_labels
from jaxgluon.task.refit import REFIT_ESTIMATE_MARGIN, combined_sources, estimate_seconds
from jaxgluon.train import LocalReporter, TrialCaches, TrialSpec, train_trial

log = logging.getLogger("jaxgluon.task")

#: Distinct configs cross-validated at most (the search's best ones).
MAX_CANDIDATES = 3
#: Share of ``time_limits`` the search leaves for cross-validation when ``num_folds`` is given.
CV_SHARE = 0.3
CV_DIR = "cv"


def check_num_folds(num_folds: Any) -> int | None:
    """``num_folds`` as ``fit`` takes it: None (no cross-validation) or an int >= 2."""
    if num_folds is None:
        return None
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
        raise ValueError(f"num_folds must be None (no cross-validation) or an int >= 2 (the number of folds, e.g. "
                         f"5), got {num_folds!r}")
    return int(num_folds)


def fold_indices(labels: np.ndarray, num_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Stratified folds: each class's images, shuffled with ``seed``, dealt round-robin into ``num_folds`` parts
    (a class with fewer images than folds is missing from some). Every index is in exactly one fold.

    >>> [f.tolist() for f in fold_indices(np.array([0, 0, 1, 1]), 2, seed=0)]
    [[0, 2], [1, 3]]
    """
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(num_folds)]
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        for j, index in enumerate(members):
            folds[(offset + j) % num_folds].append(int(index))
        offset += len(members)   # the next class starts where this one stopped: folds stay balanced in size
    return [np.sort(np.asarray(f, np.int64)) for f in folds]


@dataclasses.dataclass(frozen=True)
class FoldSpec(TrialSpec):
    """A ``TrialSpec`` whose sources are fold ``fold`` of ``num_folds`` over the split's training + validation
    images: training on the other folds, validating on this one. Its ``val_data`` names the fold (it keys the
    linear-probe feature cache); ``base_val_data`` is the split's own."""

    base_val_data: str | None = None
    num_folds: int = 2
    fold: int = 0
    fold_seed: int = 0

    def sources(self, caches: Any = None) -> tuple[Any, Any]:
        base = dataclasses.replace(self, val_data=self.base_val_data)
        train, val = TrialSpec.sources(base, caches)
        everything = combined_sources(train, val, 1)[0]
        folds = fold_indices(source_labels(everything), self.num_folds, self.fold_seed)
        rest = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != self.fold]))
        return SubsetSource(everything, rest), SubsetSource(everything, folds[self.fold])


def fold_spec(spec: TrialSpec, num_folds: int, fold: int, seed: int) -> FoldSpec:
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(TrialSpec)}
    split = spec.val_data or f"split:{spec.val_fraction}:{spec.split_seed}"
    fields["val_data"] = f"cv:{num_folds}:{fold}:{seed}:{split}"
    return FoldSpec(**fields, base_val_data=spec.val_data, num_folds=num_folds, fold=fold, fold_seed=seed)


def best_fine_tuned_epoch(trial: Mapping[str, Any]) -> tuple[int, float] | None:
    """``(epoch, reward)`` of the trial's best reported fine-tuning epoch (earliest on ties), or None."""
    reported = [(r["reward"], -r["epoch"]) for r in trial.get("results", [])
                if r.get("reward") is not None and r.get("epoch", 0) >= 1]
    if not reported:
        return None
    reward, neg_epoch = max(reported)
    return -neg_epoch, float(reward)


def candidates(experiment: Any, limit: int = MAX_CANDIDATES) -> tuple[list[dict], list[dict]]:
    """``(candidates, left out)``: the trials with a fine-tuned epoch, best search score first (earlier trial on
    ties), one per distinct config, at most ``limit``; left out: trials with none to repeat (probe-only, failed)."""
    ranked, left_out = [], []
    for trial in experiment.trials:
        best = best_fine_tuned_epoch(trial) if trial["status"] != "ERROR" else None
        if best is None:
            left_out.append({"trial_id": trial["trial_id"], "reason": "no fine-tuning epoch reported"})
            continue
        ranked.append({"trial_id": trial["trial_id"], "config": dict(trial["config"]), "epochs": best[0],
                       "validation_score": best[1]})
    ranked.sort(key=lambda c: (-c["validation_score"], c["trial_id"]))
    chosen, seen = [], set()
    for c in ranked:
        key = json.dumps(c["config"], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(c)
    return chosen[:limit], left_out


def _run_candidate(candidate: dict, spec: TrialSpec, num_folds: int, directory: pathlib.Path,
                   deadline: float | None, seed: int, caches: TrialCaches) -> None:
    """Trains and scores ``candidate`` on every fold; fills its ``fold_scores`` / ``fold_top1`` / ``status``."""
    candidate.update(fold_scores=[], fold_top1=[], status="running")
    start = time.perf_counter()
    for fold in range(num_folds):
        folder = directory / f"trial{candidate['trial_id']}_fold{fold}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        reporter = LocalReporter(folder, candidate["epochs"], seed=seed, deadline=deadline,
                                 trial_id=f"cv trial {candidate['trial_id']} fold {fold}")
        try:
            train_trial(dict(candidate["config"]), reporter, fold_spec(spec, num_folds, fold, seed), caches)
        except Exception as err:  # noqa: BLE001 -- a failed fold leaves this candidate out; the error is recorded
            log.warning("fit: cross-validation of trial %s, fold %d failed (%s: %s)", candidate["trial_id"], fold,
                        type(err).__name__, err)
            candidate.update(status="failed", reason=f"fold {fold}: {type(err).__name__}: {err}")
            break
        finally:
            shutil.rmtree(folder, ignore_errors=True)   # the fold's checkpoints are not served
        last = [r for r in reporter.results if r["epoch"] == candidate["epochs"]]
        if not last:
            candidate.update(status="incomplete", reason=f"the deadline came during fold {fold}")
            break
        candidate["fold_scores"].append(float(last[0]["reward"]))
        candidate["fold_top1"].append(float(last[0]["val_top1"]))
    else:
        candidate.update(status="completed", mean_score=float(np.mean(candidate["fold_scores"])),
                         mean_top1=float(np.mean(candidate["fold_top1"])))
    candidate["seconds"] = time.perf_counter() - start


def cross_validate(experiment: Any, spec: TrialSpec, chosen: int, *, num_folds: int,
                   deadline: float | None, seed: int = 0, limit: int = MAX_CANDIDATES,
                   estimate_margin: float = REFIT_ESTIMATE_MARGIN, caches: TrialCaches | None = None
                   ) -> tuple[int, dict]:
    """``(trial_id, record)``: the trial whose config scored the best mean over the folds (module docstring), or
    ``chosen`` (the search's choice) when cross-validation was skipped or could not compare two candidates.
    ``deadline``: wall clock (``time.time()``); ``caches``: the fit's (its opened sources are reused)."""
    start = time.perf_counter()
    record: dict[str, Any] = {"num_folds": num_folds, "metric": spec.metric, "status": "skipped",
                              "validation_choice": chosen, "chosen_trial_id": chosen}
    found, left_out = candidates(experiment, limit)
    record["left_out"] = left_out
    caches = caches or TrialCaches()
    train, val = spec.sources(caches)
    total = len(train) + len(val)
    scale = total * (num_folds - 1) / num_folds / max(len(train), 1)
    for c in found:
        trial = next(t for t in experiment.trials if t["trial_id"] == c["trial_id"])
        per_fold = estimate_seconds(trial, c["epochs"], scale)
        # the first step compiled in the trial's worker; here the folds after the first reuse the programs
        first_step = float(next(iter(trial.get("results") or []), {}).get("first_step_seconds") or 0.0)
        c["estimate_s"] = None if per_fold is None else num_folds * per_fold - (num_folds - 1) * first_step
    record["candidates"] = found
    if len(found) < 2:
        record["reason"] = (f"{len(found)} distinct config(s) with a fine-tuning epoch: cross-validation needs two "
                            "to choose between")
        return _skip(chosen, record, start)
    if num_folds > total:
        record["reason"] = f"num_folds={num_folds} is more than the {total} training + validation images"
        return _skip(chosen, record, start)
    left = None if deadline is None else deadline - time.time()
    planned, running = [], 0.0
    for c in found:
        if c["estimate_s"] is None:
            c["status"] = "no estimate"
            continue
        if left is not None and (running + c["estimate_s"]) * estimate_margin > left:
            c["status"] = "does not fit"
            continue
        planned.append(c)
        running += c["estimate_s"]
    record.update(estimate_s=running, time_left_s=left)
    if len(planned) < 2:
        estimates = sorted(c["estimate_s"] for c in found if c["estimate_s"] is not None)
        need = sum(estimates[:2]) if len(estimates) >= 2 else None
        record["reason"] = ("the trials reported no epoch timings to estimate it from" if need is None else
                            f"{num_folds}-fold cross-validation of two configs needs about {need:.1f} s "
                            f"(x{estimate_margin} margin) and {max(left or 0.0, 0.0):.1f} s are left")
        return _skip(chosen, record, start)
    directory = pathlib.Path(experiment.experiment_dir) / CV_DIR
    for c in planned:
        _run_candidate(c, spec, num_folds, directory, deadline, seed, caches)
        if c["status"] != "completed":
            break      # a deadline or a failure: the rest would not have time either
    shutil.rmtree(directory, ignore_errors=True)
    done = [c for c in planned if c["status"] == "completed"]
    record["seconds"] = time.perf_counter() - start
    if len(done) < 2:
        unfinished = next((c for c in planned if c["status"] != "completed"), None)
        record.update(status="incomplete", reason=f"{len(done)} candidate(s) finished every fold"
                      + (f"; trial {unfinished['trial_id']}: {unfinished.get('reason')}" if unfinished else ""))
        log.info("fit: cross-validation incomplete, keeping the search's choice: %s", record["reason"])
        return chosen, record
    best = max(done, key=lambda c: c["mean_score"])    # max keeps the first (the search's order) on ties
    record.update(status="changed" if best["trial_id"] != chosen else "confirmed", chosen_trial_id=best["trial_id"])
    log.info("fit: %d-fold cross-validation (%s): %s; serving trial %s's config (%.1f s)", num_folds, spec.metric,
             ", ".join(f"trial {c['trial_id']} {c['mean_score']:.4f}" for c in done), best["trial_id"],
             record["seconds"])
    return best["trial_id"], record


def _skip(chosen: int, record: dict, start: float) -> tuple[int, dict]:
    record["seconds"] = time.perf_counter() - start
    log.info("fit: cross-validation skipped: %s", record["reason"])
    return chosen, record
