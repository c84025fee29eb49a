"""The model ``fit`` returns after its search: the best single trial, a greedy ensemble of trials, or a refit.

The rule (``metadata['final_model']``), applied in this order:

1. ``'ensemble'`` when ``ensemble`` is on and the selection rule (``jaxgluon.task.ensemble.select_weights``) over
   the validation predictions of the best-ranked models kept at least two of them: when they come from two or
   more networks, their uniform average (less any that learned under half as much as the best), because on the
   few validation images a fit has greedy selection overfits them (measured in that module's docstring); else
   greedy selection. Either is served when it scores strictly better on validation than its best member, by the
   fit's metric (log-loss or top-1; the other breaks ties); one that does not has ``status`` 'not better'
   (why the average has this contest too: that module's docstring). The models are each trial's best
   fine-tuned epoch and, beside it, the trial's linear-probe model (epoch 0), whichever of the two scored better:
   a frozen-feature head and the fine-tuned net err differently, so even a one-trial search has an ensemble to
   try. Trials of one pretrained net and image size share one probe model; it is a candidate once.
2. ``'refit'`` otherwise, when ``refit`` is on and the best config's retraining on training + validation images
   (``jaxgluon.task.refit``) fit the budget and finished. A refit model has no held-out validation score, so it
   cannot be compared with an ensemble on validation, and an ensemble of refit members would need one refit per
   member: a refit is only attempted when no ensemble was chosen (``ensemble=False`` to always refit).
   A fine-tuned refit is served averaged with the trial model it refits (:func:`refit_pair`: an
   ``EnsembleModel`` of the two, equal weights, ``meta['final_model'] == 'refit'``; ``model.members[0]`` is the
   refit alone). Nothing can validate a refit: on the 20 600 s CPU fits that served one (hymenoptera and
   imagenette_small, seeds 13-27) the refit alone lost to its own trial's model in test top-1 4 times (won 10).
   The pair (one config trained twice, on different images and shuffles; the log-loss of an average is at most
   the mean of the two) beat the trial's model 12 times and lost once, by one of 153 images where the refit
   alone lost by two; against the refit alone it won 5 and lost 3 (mean test top-1 0.9698 vs 0.9682; the trial's
   model 0.9658). Its test log-loss was below the trial model's in 17 (means: pair 0.095, refit 0.099, trial
   0.105). All with test-time augmentation (``benchmarks/refit_pair.py``,
   ``benchmarks/history/2026-12-06-hyperband.md``). It costs a second forward pass per image in ``predict``
   and nothing in the fit. A linear-probe refit (the same frozen backbone with a head fitted on more images) is
   served alone: the two heads would differ too little to be worth a second pass.
3. ``'single'``: the best trial's best fine-tuned epoch, or ``'linear_probe'`` when that is a probe (epoch 0).

Whatever is served, ``fit(tta=...)`` then sets its test-time augmentation (:func:`serve_tta`; ``metadata['tta']``):
its predictions average each image and its mirror image. 'auto' (default) turns it on when every network served
trained on left-right flipped images (``TrainedModel.flip_trained``: the default augmentation for natural images;
not digits, say, trained without flips), with no validation contest: a mirrored image is a view the network
trained on. On the candidates of fifteen 600 s CPU fits (flowers5, hymenoptera, imagenette_small, seeds 0-4,
``benchmarks/history/2026-12-06-tta.md``) it raised the best-by-validation single model's test top-1 by 1.0 points
in the mean (0 to +2.4, never lower) and the candidates' mean by 0.5 points; the served average gained less, 0.2
points in the mean over eighteen fits (from -1.0 to +1.0: 6 up, 2 down, 10 equal). It doubles the cost of
``predict``; ``tta=False`` (or ``model.tta = False`` later) turns it off. The validation scores in ``metadata``
and the leaderboard are without it.

With ``fit(num_folds=k)``, "the best trial" (the refit's config, the single model) is the one k-fold
cross-validation chose (``jaxgluon.task.cross_validation``), served at the epoch count it cross-validated.

``refit`` / ``ensemble``: True, False or 'auto'. With ``time_limits``, ``ensemble=True`` sets aside a share of the
budget before the search (:data:`ENSEMBLE_RESERVE_FRACTION`, for loading the candidates; 'auto' the same share
without its minimum), and a refit (``refit=True``, or 'auto' on a folder whose validation split holds at least a
fifth of its images: ``jaxgluon.task.refit.refit_wanted``) ends the search early enough for the refit of the best
trial so far: the search's ``tune(keep_seconds=jaxgluon.task.refit.RefitKeep(...))`` re-estimates that refit after
every report (a fixed share, 25% before, was too little for a refit of a long trial and wasted when the refit was
short); a refit estimated at more than ``REFIT_MAX_SHARE`` (a third) of the search's time reserves nothing, and
nothing is reserved while :class:`EnsembleForecast` says an ensemble would be served instead.
Everything here counts in ``time_limits``: each step checks the deadline
(the refit before each train step, the ensemble before each eval batch) and what does not fit is skipped with a
log line and the reason in ``metadata['refit']`` / ``metadata['ensemble']``.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
import types
from typing import Any

import numpy as np

from jaxgluon.task.cross_validation import CV_SHARE
from jaxgluon.task.ensemble import (SELECTION_RULES, EnsembleModel, contest, is_saved_ensemble, load_ensemble,
                                   select_weights)
from jaxgluon.task.refit import REFIT_DIR, refit_best
from jaxgluon.train import TrainedModel, TrialSpec, enable_compilation_cache, load_trained
from jaxgluon.train.checkpoint import PROBE_EPOCH
from jaxgluon.train.trial import read_probe_record
from jaxgluon.train.val_predictions import stored_predictions

log = logging.getLogger("jaxgluon.task")

CHOICES = (True, False, "auto")
#: ``ensemble`` also takes a selection rule of ``jaxgluon.task.ensemble.select_weights`` (built as with True).
ENSEMBLE_CHOICES = CHOICES + tuple(rule for rule in SELECTION_RULES if rule != "auto")
#: Share of ``time_limits`` kept from the search for the ensemble stage (bounded below/above). The stage reads the
#: validation predictions the trials kept (``jaxgluon.train.val_predictions``) and loads each candidate: 4.2 s
#: for 10 candidates of 3 nets at 224 px in a 600 s CPU fit (imagenette_small, 2026-12-05), where predicting
#: them again took 23-25 s, more than the 20 s then kept, and the deadline stopped it after 7.
ENSEMBLE_RESERVE_FRACTION, ENSEMBLE_RESERVE_MIN_S, ENSEMBLE_RESERVE_MAX_S = 0.02, 0.5, 8.0
#: Candidates for the ensemble: the best-ranked models (trials' best checkpoints and probes), at most this many.
ENSEMBLE_MAX_CANDIDATES = 10


def check_choice(name: str, value: Any, choices: tuple = CHOICES) -> Any:
    if not any(value is c or (isinstance(c, str) and value == c) for c in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def selection_rule(ensemble: Any) -> str:
    """The ``select_weights`` rule an ``ensemble`` argument asks for: 'average' or 'greedy' as named, else 'auto'."""
    return ensemble if isinstance(ensemble, str) and ensemble in SELECTION_RULES else "auto"


def serve_tta(model: Any, tta: Any) -> dict[str, Any]:
    """Sets the served ``model``'s test-time augmentation as ``tta`` (True, False, 'auto') asks (module docstring)
    and returns the record for ``metadata['tta']``: ``{'enabled': bool, 'reason': str}``."""
    if not hasattr(model, "flip_trained"):
        record = {"enabled": False, "reason": f"{type(model).__name__} has no test-time augmentation"}
    elif tta is False:
        record = {"enabled": False, "reason": "tta=False"}
    elif tta is True:
        record = {"enabled": True, "reason": "tta=True"}
    elif model.flip_trained:
        record = {"enabled": True, "reason": "every network served trained on left-right flipped images"}
    else:
        record = {"enabled": False, "reason": "a network served trained without left-right flips"}
    if hasattr(model, "flip_trained"):
        model.tta = record["enabled"]
    log.info("fit: test-time augmentation %s (%s)", "on" if record["enabled"] else "off", record["reason"])
    return record


def stage_reserve(time_limits: float | None, ensemble: Any, num_trials: int | None = None,
                  num_folds: int | None = None, probes: bool = False) -> float:
    """Seconds of ``time_limits`` the search leaves for this stage (module docstring; a requested refit's time
    is kept by the search itself, ``jaxgluon.task.refit.RefitKeep``): none for an ensemble of a
    single trial (``num_trials=1``) unless its linear-probe model is a candidate beside its checkpoint
    (``probes``: pretrained nets with ``head_init='linear_probe'``), and no minimum for ``ensemble='auto'``
    (True, 'average' and 'greedy' keep at least ``ENSEMBLE_RESERVE_MIN_S``);
    with ``num_folds``, also ``jaxgluon.task.cross_validation.CV_SHARE`` for cross-validating the final
    candidates (of two or more configs)."""
    if time_limits is None:
        return 0.0
    reserve = 0.0
    if ensemble is not False and (num_trials != 1 or probes):
        low = ENSEMBLE_RESERVE_MIN_S if ensemble is True or selection_rule(ensemble) != "auto" else 0.0
        reserve += min(max(ENSEMBLE_RESERVE_FRACTION * time_limits, low), ENSEMBLE_RESERVE_MAX_S)
    if num_folds is not None and num_trials != 1:
        reserve += CV_SHARE * time_limits
    return min(reserve, 0.5 * time_limits)


@dataclasses.dataclass
class FinalModel:
    model: Any                  # TrainedModel or EnsembleModel
    kind: str                   # 'ensemble' | 'refit' | 'single' | 'linear_probe'
    reward: float | None        # validation top-1 of the served model (None: keep the best trial's)
    metadata: dict


def _candidates(experiment: Any, trials_dir: pathlib.Path,
                duplicates: list[str] | None = None) -> list[tuple[float, int, int]]:
    """``(ranking score, trial_id, epoch)`` of every scored model, best first: each trial's best fine-tuned epoch
    (by reported reward, the latest on ties: the one its checkpoints keep) and its linear-probe model
    (:data:`PROBE_EPOCH`) when the probe was scored. Both are offered even when one scored better: a frozen-feature
    head and the fine-tuned net err differently. Ties rank the fine-tuned model first. A probe model that several
    trials share (the same ``identity`` in their probe records: ``jaxgluon.train.trial.probe_identity``) is listed
    once, for the first of them; the others go to ``duplicates`` as ``'<trial_id>:0'``."""
    found, identities = [], {}
    for trial in experiment.trials:
        if trial["status"] == "ERROR":
            continue
        tuned = [(r["reward"], int(r["epoch"])) for r in trial.get("results", [])
                 if r.get("reward") is not None and isinstance(r.get("epoch"), int) and r["epoch"] != PROBE_EPOCH]
        if tuned:
            reward, epoch = max(tuned)
            found.append((reward, trial["trial_id"], epoch))
        probe = read_probe_record(trials_dir / str(trial["trial_id"])) or {}
        if probe.get("status") == "scored" and probe.get("reward") is not None:
            found.append((probe["reward"], trial["trial_id"], PROBE_EPOCH))
            identities[trial["trial_id"]] = probe.get("identity")
    distinct, shared = [], set()
    for score, tid, epoch in sorted(found, key=lambda c: (-c[0], c[1], c[2] == PROBE_EPOCH)):
        identity = identities.get(tid) if epoch == PROBE_EPOCH else None
        if identity is not None and identity in shared:
            if duplicates is not None:
                duplicates.append(f"{tid}:{epoch}")
            continue
        shared.add(identity)
        distinct.append((score, tid, epoch))
    return distinct


class EnsembleForecast:
    """Whether the ensemble stage would serve an ensemble of the models scored so far: :func:`build_ensemble`'s
    candidates, selection and :func:`jaxgluon.task.ensemble.contest`, on the validation predictions the trials
    kept with their checkpoints (``jaxgluon.train.val_predictions``), as the search goes. ``fit`` hands it to
    ``jaxgluon.task.refit.RefitKeep``: a refit is served only when no ensemble is, so the search keeps no time for
    one while an ensemble would be chosen (at 60 s on hymenoptera the search wound down for a refit 9 s before its
    limit, then the ensemble won and those seconds went unused: ``benchmarks/history/2026-12-06-refit.md``).

    ``forecast(records)`` takes the runner's ``{trial_id: TrialRecord}``; False when fewer than two candidates have
    kept predictions (nothing to forecast: the refit keeps its time). Each candidate's predictions are read once
    and held while it is one.
    """

    def __init__(self, trials_dir: str | pathlib.Path, metric: str, rule: str = "auto"):
        self.trials_dir, self.metric, self.rule = pathlib.Path(trials_dir), metric, rule
        self._read: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, records: Any) -> bool:
        experiment = types.SimpleNamespace(trials=[r.to_dict() for r in records.values()])   # as the stage sees it
        nets = {t["trial_id"]: str(t["config"].get("net")) for t in experiment.trials}
        probs, labels, members = [], None, []
        ranked = _candidates(experiment, self.trials_dir)[:ENSEMBLE_MAX_CANDIDATES]
        current = {(tid, epoch) for _, tid, epoch in ranked}
        self._read = {key: value for key, value in self._read.items() if key in current}   # no longer candidates
        for _, tid, epoch in ranked:
            kept = self._predictions(tid, epoch)
            if kept is None or (labels is not None and not np.array_equal(kept[1], labels)):
                continue
            probs.append(kept[0])
            labels = kept[1]
            members.append(nets[tid])
        if len(probs) < 2:
            return False
        stacked = np.stack(probs)
        counts, _ = select_weights(stacked, labels, members, self.metric, rule=self.rule)
        return bool(contest(counts, stacked, labels, self.metric).served)

    def _predictions(self, tid: int, epoch: int) -> tuple[np.ndarray, np.ndarray] | None:
        if (tid, epoch) not in self._read:
            try:   # a checkpoint still being written, or deleted by its trial's retention: not read this time
                kept = stored_predictions(self.trials_dir / str(tid), epoch)
            except Exception:  # noqa: BLE001
                kept = None
            if kept is None:
                return None
            self._read[(tid, epoch)] = kept
        return self._read[(tid, epoch)]


def first_prediction_estimate(experiment: Any, trial_ids: list[int]) -> float | None:
    """Seconds the first candidate's validation predictions should take in this process: the longest validation
    pass the candidate trials measured plus their longest first step (which compiled the train step: an upper
    bound on compiling the forward pass). None when the trials reported no timings."""
    results = [r for t in experiment.trials if t["trial_id"] in trial_ids for r in t.get("results", [])]
    evals = [r["eval_seconds"] for r in results if r.get("eval_seconds") is not None]
    firsts = [r["first_step_seconds"] for r in results if r.get("first_step_seconds") is not None]
    if not evals:
        return None
    return max(evals) + max(firsts, default=0.0)


def build_ensemble(experiment: Any, trials_dir: pathlib.Path, val_source: Any, single: tuple[int, TrainedModel],
                   metric: str, deadline: float | None, load_seconds: float | None = None,
                   kept_predictions: bool = True, rule: str = "auto") -> tuple[EnsembleModel | None, dict]:
    """Ensemble selection (``record['selection']``: 'average' or 'greedy', ``ensemble.select_weights`` with
    ``rule``) over the validation predictions of the best-ranked trials. With ``kept_predictions``
    (``val_source`` is the split the trials scored, as in ``fit``) those are the predictions each trial kept with
    its checkpoint (``jaxgluon.train.val_predictions``), used when they match ``val_source``'s length and labels
    (``record['stored_predictions']`` counts them); a candidate without them is predicted here with its
    checkpoint's compiled forward pass. Returns the ensemble whenever selection kept two or more models
    (``record['status']``: 'chosen' as the module's rule says; else 'not better'), else None ('skipped', with the
    reason). Trials of one net and image size share one linear-probe model
    (``jaxgluon.train.trial.probe_identity``): it is a candidate once (``record['duplicate_probes']``: the
    others). A candidate is loaded (and predicted) only while the time left covers 1.5x the longest prediction
    so far plus its load: the longest load so far, else ``load_seconds`` (what restoring the single model
    took)."""
    start = time.perf_counter()
    record: dict[str, Any] = {"status": "skipped", "metric": metric}
    duplicates: list[str] = []
    ranked = _candidates(experiment, trials_dir, duplicates)[:ENSEMBLE_MAX_CANDIDATES]
    if len(ranked) < 2:
        record["reason"] = f"{len(ranked)} scored model(s): an ensemble needs two"
        return _skip(record)
    first = first_prediction_estimate(experiment, [tid for _, tid, _ in ranked])
    record["first_prediction_estimate_s"] = first
    # the first candidate's kept predictions (None: it must be predicted, which the estimate is for)
    kept_first = (_kept_predictions(trials_dir / str(ranked[0][1]), ranked[0][2], val_source)
                  if kept_predictions else None)
    if deadline is not None and first is not None and deadline - time.time() < first and kept_first is None:
        record["reason"] = (f"predicting the validation images needs about {first:.1f} s (a validation pass and "
                            f"compiling the forward pass, as the trials measured) and "
                            f"{max(deadline - time.time(), 0.0):.1f} s are left")
        return _skip(record, start)
    members, probs, labels, times, loads, stored = [], [], None, [], [], 0
    for i, (_, tid, epoch) in enumerate(ranked):
        reuse = tid == single[0] and epoch == single[1].meta.get("epoch")
        load = 0.0 if reuse else max(loads, default=load_seconds or 0.0)
        if deadline is not None and times and deadline - time.time() < 1.5 * max(times) + load:
            record["stopped"] = f"the deadline left no time for trial {tid}'s predictions"
            break
        t0 = time.perf_counter()
        try:
            model = single[1] if reuse else load_trained(trials_dir / str(tid), epoch=epoch)
        except (ValueError, FileNotFoundError) as err:   # not kept (a trial cut before it saved; an older retention)
            log.info("fit: ensemble: trial %s has no checkpoint to use (%s)", tid, err)
            continue
        t1 = time.perf_counter()
        if not reuse:
            loads.append(t1 - t0)
        out = kept_first if i == 0 else (_kept_predictions(trials_dir / str(tid), epoch, val_source)
                                         if kept_predictions else None)
        if out is not None:
            stored += 1
        else:
            out = model.predict_proba_source(val_source, deadline=deadline)
            if out is None:
                record["stopped"] = f"the deadline came during trial {tid}'s validation predictions"
                break
        model.meta["trial_id"] = tid
        members.append(model)
        probs.append(out[0])
        labels = out[1]
        times.append(time.perf_counter() - t1)
    record.update(candidates=[_member_id(m) for m in members], prediction_seconds=float(sum(times) + sum(loads)),
                  stored_predictions=stored, duplicate_probes=duplicates)
    if len(members) < 2:
        record["reason"] = record.get("stopped", "fewer than two trials had a checkpoint to predict with")
        return _skip(record, start)
    stacked = np.stack(probs)
    counts, record["selection"] = select_weights(stacked, labels, [m.net for m in members], metric, rule=rule)
    chosen = np.flatnonzero(counts)
    ensemble = EnsembleModel([members[i] for i in chosen], counts[chosen].astype(float),
                             trial_ids=[members[i].meta["trial_id"] for i in chosen], metric=metric)
    match = contest(counts, stacked, labels, metric)
    top1, loss = match.score
    record.update(members=[{**_member_id(members[i]), "net": members[i].net, "weight": int(counts[i])}
                           for i in chosen],
                  val_top1=top1, val_loss=loss, best_member={**_member_id(members[match.best]),
                                                             "val_top1": match.best_score[0],
                                                             "val_loss": match.best_score[1]},
                  seconds=time.perf_counter() - start)
    if len(chosen) < 2:
        record["reason"] = f"{record['selection']} selection kept a single model"
        return _skip(record, start)
    if not match.served:
        record.update(status="not better", reason=f"the {record['selection']} ensemble did not score better on "
                                                  f"validation than its best member")
        log.info("fit: ensemble not used: %s", record["reason"])
        return ensemble, record
    record["status"] = "chosen"
    log.info("fit: ensemble (%s) of trials %s (weights %s): validation top-1 %.4f, log-loss %.4f (best member "
             "%.4f, %.4f)", record["selection"], ensemble.trial_ids, counts[chosen].tolist(), top1, loss,
             *match.best_score)
    return ensemble, record


def _kept_predictions(trial_dir: pathlib.Path, epoch: int,
                      val_source: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation predictions the trial kept with this checkpoint (``jaxgluon.train.val_predictions``) when
    they can be of ``val_source``: as many, and the same labels in the same order when the source lists its labels
    (a source without ``labels`` would be decoded to read them); else None: predict them."""
    kept = stored_predictions(trial_dir, epoch)
    labels = getattr(val_source, "labels", None)
    if kept is None or len(kept[1]) != len(val_source) or (labels is not None and
                                                           not np.array_equal(kept[1], np.asarray(labels))):
        return None
    return kept


def _member_id(model: TrainedModel) -> dict:
    return {"trial_id": model.meta["trial_id"], "epoch": model.meta.get("epoch")}


def _skip(record: dict, start: float | None = None) -> tuple[None, dict]:
    if start is not None:
        record["seconds"] = time.perf_counter() - start
    log.info("fit: no ensemble: %s", record["reason"])
    return None, record


def final_stage(experiment: Any, trials_dir: pathlib.Path, spec: TrialSpec, single: tuple[int, TrainedModel],
                kind: str, *, refit: Any, ensemble: Any, metric: str, deadline: float | None,
                seed: int = 0, restore_seconds: float | None = None, caches: Any = None) -> FinalModel:
    """Runs the ensemble and refit steps as the module's rule says; ``deadline`` is wall clock (``time.time()``);
    ``restore_seconds``: what restoring ``single`` took (the first estimate of loading another candidate);
    ``caches``: the fit's ``TrialCaches`` (its opened sources are reused, not scanned again)."""
    metadata: dict[str, Any] = {}
    if spec.compilation_cache:   # the forward passes compiled here persist for later fits, as the trials' do
        enable_compilation_cache()
    if ensemble is not False:
        model, metadata["ensemble"] = build_ensemble(experiment, trials_dir, spec.sources(caches)[1], single, metric,
                                                     deadline, load_seconds=restore_seconds,
                                                     rule=selection_rule(ensemble))
        if metadata["ensemble"]["status"] == "chosen":
            if refit is not False:
                metadata["refit"] = {"status": "skipped", "reason": "the ensemble was chosen (module docstring of "
                                     "jaxgluon.task.final_model: ensemble=False to refit instead)"}
            return FinalModel(model, "ensemble", metadata["ensemble"]["val_top1"], metadata)
    if refit is not False:
        tid, model = single
        trial = next(t for t in experiment.trials if t["trial_id"] == tid)
        epochs = model.meta.get("epoch")
        probe = read_probe_record(trials_dir / str(tid)) or {}
        outcome = refit_best(trial["config"], epochs, trial, spec, pathlib.Path(experiment.experiment_dir) / REFIT_DIR,
                             deadline=deadline, seed=seed, probe=model if epochs == 0 else None,
                             probe_seconds=probe.get("seconds"), caches=caches, peers=experiment.trials)
        metadata["refit"] = outcome.record
        if outcome.model is not None:
            served = outcome.model
            if epochs:   # a fine-tuned refit: averaged with the trial model it refits (module docstring)
                served = refit_pair(outcome.model, model, tid, metric)
                metadata["refit"]["served_with"] = {"trial_id": tid, "epoch": epochs}
            return FinalModel(served, "refit", None, metadata)
    return FinalModel(single[1], kind, None, metadata)


def refit_pair(refit: TrainedModel, trial_model: TrainedModel, trial_id: int,
               metric: str = "log_loss") -> EnsembleModel:
    """The served refit (module docstring): the equal-weight average of ``refit`` (first) and ``trial_model``, the
    trial's own model of the same config, as an ``EnsembleModel`` whose ``meta['final_model']`` is 'refit'."""
    return EnsembleModel([refit, trial_model], [1.0, 1.0], trial_ids=[None, trial_id], metric=metric,
                         final_model="refit")


def load_final_model(path: str | pathlib.Path) -> Any:
    """The model a saved ``Results`` serves: an :class:`EnsembleModel` or a ``TrainedModel``."""
    return load_ensemble(path) if is_saved_ensemble(path) else load_trained(path)
