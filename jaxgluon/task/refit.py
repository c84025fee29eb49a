"""Refit: the best config retrained on training + validation images for its best epoch count, inside the budget.

    outcome = refit_best(config, best_epoch, trial, spec, directory, deadline=time.time() + 30)
    outcome.model        # a TrainedModel, or None when skipped (outcome.record['reason'] says why)

The refit runs the ordinary trial function (``jaxgluon.train.train_trial``) in this process with ``max_epochs`` =
the best trial's best epoch, so its learning-rate schedule decays over those epochs, on every image of the split
(training and validation). Its cost is estimated first from what the best trial measured (setup, first step,
seconds per epoch scaled by the larger image count); when that does not fit the time left, it is skipped with a
log line and the reason recorded. A refit model has no held-out validation score: the validation images are in its
training data. It still reports on a slice of them (one eval batch, the cheapest thing the trial function accepts);
those figures are not recorded as validation scores.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import shutil
import time
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from jaxgluon.data import SubsetSource
from jaxgluon.train import LocalReporter, TrainedModel, TrialSpec, load_trained, train_trial
from jaxgluon.tune.stop import KeepSeconds

log = logging.getLogger("jaxgluon.task")

REFIT_DIR = "refit"
#: Margin on the estimate: a refit must be expected to end this much before the deadline (its epochs are longer
#: than the trial's and a loaded machine varies).
REFIT_ESTIMATE_MARGIN = 1.2
#: Most of the search's time limit that ``fit(refit=True)`` keeps for a refit (:class:`RefitKeep`). On 600 s CPU
#: fits of imagenette_small at load 4.6-5.4, reserves of 280-400 s left the search 1-3 trials: one refit was
#: abandoned at the deadline and two lost to the best single trial; on the quieter fits, whose refits won or tied,
#: the reserves stayed under a third (``benchmarks/history/2026-12-06-refit.md``).
REFIT_MAX_SHARE = 1 / 3
#: ``fit(refit='auto')`` (the default) refits when the validation split holds at least this share of the labelled
#: images: the default split of a folder under 800 images holds out a quarter of them (``jaxgluon.task.defaults.
#: default_val_fraction``), which a model served without a refit never trains on. Larger folders hold out 10-20%.
REFIT_AUTO_MIN_VAL_SHARE = 0.2


def refit_wanted(refit: Any, num_train: int, num_val: int) -> tuple[bool, str]:
    """Whether a ``fit(refit=...)`` call refits, and why: True and False as given; 'auto' by the validation share
    (:data:`REFIT_AUTO_MIN_VAL_SHARE`).

    >>> refit_wanted('auto', 184, 61)[0], refit_wanted('auto', 3332, 370)[0], refit_wanted(True, 3332, 370)[0]
    (True, False, True)
    """
    if refit is True or refit is False:
        return refit, f"refit={refit}"
    share = num_val / max(num_train + num_val, 1)
    wanted = share >= REFIT_AUTO_MIN_VAL_SHARE
    return wanted, (f"refit='auto': the validation split holds {share:.0%} of the {num_train + num_val} labelled "
                    f"images ({'at least' if wanted else 'under'} {REFIT_AUTO_MIN_VAL_SHARE:.0%})")


class _ConcatSource:
    """Two sources of the same classes, one after the other (training then validation images)."""

    def __init__(self, first: Any, second: Any):
        self.parts = (first, second)
        self.class_names = list(first.class_names)
        from jaxgluon.data.sources import source_labels

        self.labels = np.concatenate([source_labels(first), source_labels(second)])
        sizes = [getattr(s, "image_sizes", None) for s in self.parts]
        self.image_sizes = None if any(s is None for s in sizes) else np.concatenate([np.asarray(s) for s in sizes])
        self.default_augment = getattr(first, "default_augment", None)

    def __len__(self) -> int:
        return len(self.parts[0]) + len(self.parts[1])

    def _locate(self, index: int) -> tuple[Any, int]:
        n = len(self.parts[0])
        return (self.parts[0], index) if index < n else (self.parts[1], index - n)

    def __getitem__(self, index: int) -> dict:
        source, i = self._locate(int(index))
        return source[i]

    def load(self, index: int, min_side: int | None = None) -> dict:
        from jaxgluon.data.sources import load_example

        source, i = self._locate(int(index))
        return load_example(source, i, min_side)


def combined_sources(train: Any, val: Any, eval_images: int) -> tuple[Any, Any]:
    """``(training + validation images, a slice of ``eval_images`` validation images)``: the refit's sources."""
    if isinstance(train, SubsetSource) and isinstance(val, SubsetSource) and train.source is val.source:
        everything = SubsetSource(train.source, np.concatenate([train.indices, val.indices]))
    else:
        everything = _ConcatSource(train, val)
    return everything, SubsetSource(val, np.arange(min(len(val), max(1, eval_images))))


@dataclasses.dataclass(frozen=True)
class RefitSpec(TrialSpec):
    """A ``TrialSpec`` whose training source is the original split's training and validation images together.

    Its ``val_data`` names the refit (it only keys the linear-probe feature cache, so a refit's probe is fitted on
    the features of every image, not on the trials' cached training-only ones)."""

    base_val_data: str | None = None

    def sources(self, caches: Any = None) -> tuple[Any, Any]:
        base = dataclasses.replace(self, val_data=self.base_val_data)
        train, val = TrialSpec.sources(base, caches)
        return combined_sources(train, val, self.eval_batch_size or self.batch_size)


def refit_spec(spec: TrialSpec) -> RefitSpec:
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(TrialSpec)}
    fields["val_data"] = f"refit:{spec.val_data or f'split:{spec.val_fraction}:{spec.split_seed}'}"
    return RefitSpec(**fields, base_val_data=spec.val_data)


def refit_scale(train: Any, val: Any) -> float:
    """Images a refit trains on over the images its trial trained on: (training + validation) / training."""
    return (len(train) + len(val)) / max(len(train), 1)


def estimate_seconds(trial: Mapping[str, Any], epochs: int, scale: float,
                     peers: Iterable[Mapping[str, Any]] = ()) -> float | None:
    """Seconds a refit of ``trial`` for ``epochs`` epochs should take, from the trial's reports: its setup (data,
    weights; its linear probe, whose features a refit computes for ``scale`` times the images) and first step
    (compilation or a cache load), plus ``epochs`` x its mean seconds per epoch with the training part scaled by
    ``scale`` (images refit / images the trial trained on). The first step is counted once: the training seconds of
    the epoch that ran it are taken without it. None without reports.

    The refit runs in the fit's own process, which has built nothing for the trial's net, so its setup is the
    largest of the trial's and its ``peers``' of the same net (the trials of a search, some of which ran in a
    fresh worker): a trial whose worker had already run its net reports a setup of about a second and a cached
    probe, where the refit measured 16.9 s (hymenoptera, efficientnet_lite2: a refit estimated at 24.5 s took 40.8,
    ``benchmarks/history/2026-12-06-hyperband.md``).

    >>> first = {'epoch_seconds': 3.0, 'train_seconds': 2.0, 'first_step_seconds': 1.0, 'setup_seconds': 4.0,
    ...          'linear_probe_seconds': 2.0}
    >>> estimate_seconds({'results': [first, {'epoch_seconds': 3.0, 'train_seconds': 2.0}]}, 2, 1.5)
    12.5
    >>> cold = {'config': {}, 'results': [{**first, 'setup_seconds': 9.0}]}    # the same net in a fresh worker
    >>> estimate_seconds({'config': {}, 'results': [first, {'epoch_seconds': 3.0, 'train_seconds': 2.0}]}, 2, 1.5,
    ...                  peers=[cold])
    17.5
    """
    results = [r for r in trial.get("results", []) if r.get("epoch_seconds") is not None]
    if not results:
        return None
    train = float(np.mean([max(0.0, r.get("train_seconds", r["epoch_seconds"]) - (r.get("first_step_seconds") or 0.0))
                           for r in results]))
    rest = float(np.mean([r["epoch_seconds"] - r.get("train_seconds", r["epoch_seconds"]) for r in results]))
    setup = max(_setup_seconds(first, scale) for first in _net_first_reports(trial, peers))
    return setup + epochs * (train * scale + rest)


def _net_key(trial: Mapping[str, Any]) -> tuple:
    config = trial.get("config") or {}
    return config.get("net"), config.get("image_size")


def _net_first_reports(trial: Mapping[str, Any], peers: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The first report (its setup timings) of ``trial`` and of each of ``peers`` that trained the same net."""
    net = _net_key(trial)
    return [t["results"][0] for t in (trial, *peers) if t.get("results") and (t is trial or _net_key(t) == net)]


def net_probe_seconds(trial: Mapping[str, Any], peers: Iterable[Mapping[str, Any]] = (),
                      own: float | None = None) -> float | None:
    """What a linear probe of ``trial``'s net takes in a fresh process, as a probe refit runs: the largest probe
    time of the trial (``own``: its probe record's, if any) and of its ``peers`` of the same net. A worker that had
    already run the net reused its features and reports about a second.

    >>> warm = {'config': {'net': 'a'}, 'results': [{'linear_probe_seconds': 0.9}]}
    >>> cold = {'config': {'net': 'a'}, 'results': [{'linear_probe_seconds': 14.0}]}
    >>> net_probe_seconds(warm, [cold], own=1.1), net_probe_seconds(warm), net_probe_seconds({'results': []})
    (14.0, 0.9, None)
    """
    probes = [own, *(first.get("linear_probe_seconds") for first in _net_first_reports(trial, peers))]
    return max((float(p) for p in probes if p is not None), default=None)


def _setup_seconds(first: Mapping[str, Any], scale: float) -> float:
    """A trial's setup as a refit on ``scale`` times its images would repeat it (its first report's timings)."""
    probe = float(first.get("linear_probe_seconds") or 0.0)
    return (float(first.get("setup_seconds") or 0.0) + probe * (scale - 1)
            + float(first.get("first_step_seconds") or 0.0))


def step_seconds(trial: Mapping[str, Any], batch_size: int) -> float:
    """The slowest train step the trial measured (``batch_size`` over its lowest ``images_per_sec``, the step that
    compiled excluded); 0.0 without a measurement. The refit stops this long before its deadline, so the step in
    flight when the deadline comes does not overrun it (efficientnet_lite2 on 224 px images took about 3.5 s a step
    on a loaded 2-core CPU, 67 s epochs of 19 steps, where a refit once ran 4.9 s past a 600 s fit's limit).

    >>> step_seconds({'results': [{'images_per_sec': 16.0}, {'images_per_sec': 8.0}, {}]}, 32)
    4.0
    """
    rates = [r["images_per_sec"] for r in trial.get("results", []) if (r.get("images_per_sec") or 0) > 0]
    return float(batch_size) / min(rates) if rates else 0.0


class RefitKeep:
    """``tune(keep_seconds=RefitKeep(scale))`` under ``fit(refit=True)``: the seconds to keep at the end of the
    search for a refit of the best trial so far (by its reported ``reward``): :func:`estimate_seconds` for its
    best epoch count (a linear-probe refit when its probe scored best) times the margin, plus the longest epoch
    reported (the epoch in flight when the search winds down), as a ``jaxgluon.tune.KeepSeconds`` whose least is
    the refit's part: past the time left, the search winds down at once only while that still fits, and else keeps
    its time (the refit is then skipped either way). None before any report, and None when that is more
    than ``max_seconds``: a refit is not worth more than that share of the search (:data:`REFIT_MAX_SHARE`); the
    search keeps its time and the refit is skipped for want of it. None too while ``ensemble_served(records)``
    says the ensemble stage would serve an ensemble (``jaxgluon.task.final_model.EnsembleForecast``), which a
    refit is not served beside.

    >>> from jaxgluon.tune.records import TrialRecord
    >>> r = TrialRecord(0, {}, results=[{'epoch': 1, 'reward': 0.5, 'epoch_seconds': 10.0},
    ...                                 {'epoch': 2, 'reward': 0.7, 'epoch_seconds': 12.0}])
    >>> RefitKeep(scale=1.0, margin=1.0)({0: r})      # 2 epochs of 11 s, plus the longest epoch
    KeepSeconds(seconds=34.0, least=22.0)
    >>> RefitKeep(scale=1.0, margin=1.0, max_seconds=30.0)({0: r}) is None
    True
    >>> RefitKeep(scale=1.0, margin=1.0, ensemble_served=lambda records: True)({0: r}) is None
    True
    """

    def __init__(self, scale: float, margin: float = REFIT_ESTIMATE_MARGIN, max_seconds: float | None = None,
                 ensemble_served: Callable[[Mapping[int, Any]], bool] | None = None):
        self.scale, self.margin, self.max_seconds = float(scale), float(margin), max_seconds
        self.ensemble_served = ensemble_served
        self.released = 0   # reports after which the forecast ensemble released the reserve

    def __call__(self, records: Mapping[int, Any]) -> KeepSeconds | None:
        kept = self._seconds(records)
        if kept is None or (self.max_seconds is not None and kept.seconds > self.max_seconds):
            return None
        if self.ensemble_served is not None:
            try:
                served = self.ensemble_served(records)
            except Exception as err:  # noqa: BLE001 -- a failed forecast keeps the refit's time
                log.info("fit: the ensemble forecast failed (%s: %s); the refit keeps its time", type(err).__name__,
                         err)
                served = False
            if served:
                self.released += 1
                return None
        return kept

    def _seconds(self, records: Mapping[int, Any]) -> KeepSeconds | None:
        best, best_reward = None, -np.inf
        for record in records.values():
            for result in record.results:
                if result.get("reward") is not None and result["reward"] > best_reward:
                    best, best_reward = (record, int(result["epoch"])), result["reward"]
        if best is None:
            return None
        record, epoch = best
        first = record.results[0]
        longest = max(r.get("epoch_seconds") or 0.0 for rec in records.values() for r in rec.results)
        trial = {"config": record.config, "results": record.results}
        peers = [{"config": r.config, "results": r.results} for r in records.values() if r is not record]
        if first.get("probe_reward") is not None and first["probe_reward"] > best_reward:
            probe = net_probe_seconds(trial, peers)
            refit = None if probe is None else probe * self.scale * self.margin
        else:
            estimate = estimate_seconds(trial, epoch, self.scale, peers)
            refit = None if estimate is None else estimate * self.margin
        return None if refit is None else KeepSeconds(refit + longest, refit)


@dataclasses.dataclass
class RefitOutcome:
    model: TrainedModel | None
    record: dict


def refit_best(config: Mapping[str, Any], epochs: int | None, trial: Mapping[str, Any], spec: TrialSpec,
               directory: pathlib.Path, *, deadline: float | None, seed: int = 0,
               estimate_margin: float = REFIT_ESTIMATE_MARGIN, probe: TrainedModel | None = None,
               probe_seconds: float | None = None, caches: Any = None,
               peers: Iterable[Mapping[str, Any]] = ()) -> RefitOutcome:
    """Retrains ``config`` on training + validation images for ``epochs`` epochs (module docstring). When the
    best model is a linear probe (``epochs == 0``), the refit is that probe's head fitted again on the features of
    every image (``probe``: the probe model; its backbone is the pretrained one), estimated from ``probe_seconds``
    (what the trial's probe took from its start) or its net's longest probe among ``peers``
    (:func:`net_probe_seconds`), scaled by the image count.

    ``deadline``: wall clock (``time.time()``) by which the refit must end; it is skipped when its estimate does
    not fit and abandoned (None model, reason recorded) if the deadline passes mid-epoch (at most one step late).
    ``caches``: the fit's ``TrialCaches`` (its opened sources are reused, not scanned again). ``peers``: the
    search's other trials (their setup of the same net is the estimate's, :func:`estimate_seconds`).
    """
    record: dict[str, Any] = {"trial_id": trial.get("trial_id"), "epochs": epochs, "status": "skipped"}
    train, val = spec.sources(caches)
    scale = refit_scale(train, val)
    if not epochs:
        if probe is None:
            record["reason"] = "the best model is a linear probe (epoch 0) and no probe model was given to refit"
            return _skip(record)
        probe_seconds = net_probe_seconds(trial, peers, own=probe_seconds)
        estimate = None if probe_seconds is None else probe_seconds * scale
        left = None if deadline is None else deadline - time.time()
        record["estimate_s"] = estimate
        if left is not None and (estimate is None or estimate * estimate_margin > left):
            record["reason"] = ("no probe timing to estimate its refit from" if estimate is None else
                                f"refitting the linear probe on {len(train) + len(val)} images needs about "
                                f"{estimate:.1f} s (x{estimate_margin} margin) and {max(left, 0.0):.1f} s are left")
            return _skip(record)
        return _refit_probe(probe, train, val, record, deadline)
    estimate = estimate_seconds(trial, epochs, scale, peers)
    record.update(estimate_s=estimate, num_images=len(train) + len(val))
    left = None if deadline is None else deadline - time.time()
    if estimate is None:
        record["reason"] = f"trial {trial.get('trial_id')} reported no epoch timings to estimate a refit from"
        return _skip(record)
    if left is not None and estimate * estimate_margin > left:
        record["reason"] = (f"a refit of {epochs} epoch(s) on {len(train) + len(val)} images needs about "
                            f"{estimate:.1f} s (x{estimate_margin} margin) and {max(left, 0.0):.1f} s are left")
        return _skip(record)
    if directory.exists():   # a former call's refit (a resumed fit; maybe another config): start afresh
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    # a train step starts only if it should end by the deadline: the trial function checks it before each step
    step = step_seconds(trial, int(config.get("batch_size") or spec.batch_size))
    record["step_s"] = step
    reporter = LocalReporter(directory, epochs, seed=seed, trial_id="refit",
                             deadline=None if deadline is None else deadline - step)
    start = time.perf_counter()
    try:
        train_trial(dict(config), reporter, refit_spec(spec), caches=caches)
    except Exception as err:  # noqa: BLE001 -- a failed refit keeps the search's model; the error is recorded
        log.warning("fit: the refit failed (%s: %s); keeping the search's model", type(err).__name__, err)
        record.update(status="failed", reason=f"{type(err).__name__}: {err}", seconds=time.perf_counter() - start)
        return RefitOutcome(None, record)
    record["seconds"] = time.perf_counter() - start
    if reporter.results:   # what it took, beside the estimate
        first = reporter.results[0]
        record.update(setup_seconds=first.get("setup_seconds"), first_step_seconds=first.get("first_step_seconds"),
                      epoch_seconds=[r.get("epoch_seconds") for r in reporter.results])
    done = [r["epoch"] for r in reporter.results]
    if epochs not in done:
        record.update(status="incomplete", reason=f"the deadline came during refit epoch {max(done, default=0) + 1} "
                                                   f"of {epochs}")
        log.info("fit: refit abandoned: %s", record["reason"])
        return RefitOutcome(None, record)
    model = load_trained(directory, epoch=epochs)
    model.meta.update(final_model="refit", refit_of_trial=trial.get("trial_id"), num_train_images=len(train) + len(val))
    for key in ("reward", "val_top1", "val_loss"):   # measured on images it trained on: not validation scores
        model.meta.pop(key, None)
    record["status"] = "completed"
    log.info("fit: refit trial %s's config on %d images for %d epoch(s) in %.1f s (estimated %.1f s)",
             trial.get("trial_id"), len(train) + len(val), epochs, record["seconds"], estimate)
    return RefitOutcome(model, record)


def _skip(record: dict) -> RefitOutcome:
    log.info("fit: refit skipped: %s", record["reason"])
    return RefitOutcome(None, record)


def _refit_probe(probe: TrainedModel, train: Any, val: Any, record: dict, deadline: float | None) -> RefitOutcome:
    """The probe's classifier refitted on the pooled features of training + validation images (same backbone)."""
    from jaxgluon import data as jdata
    from jaxgluon.train.linear_probe import DeadlinePassed, fit_linear_head, pooled_features

    everything = combined_sources(train, val, 1)[0]
    record.update(num_images=len(everything), kind="linear_probe")
    start = time.perf_counter()
    loader = jdata.make_loader(everything, batch_size=probe.batch_size, image_size=probe.image_size,
                               mean=probe.mean, std=probe.std, train=False)
    steps = probe._steps
    try:
        feats, labels = pooled_features(lambda b: steps.features_step(probe.state, steps.shard(b)["image"]), loader,
                                        deadline)
    except DeadlinePassed as passed:
        record.update(status="incomplete", reason=f"the deadline came while computing the features ({passed})",
                      seconds=time.perf_counter() - start)
        log.info("fit: probe refit abandoned: %s", record["reason"])
        return RefitOutcome(None, record)
    if deadline is not None and time.time() >= deadline:
        record.update(status="incomplete", reason="the deadline came before the head was fitted")
        return RefitOutcome(None, record)
    kernel, bias = fit_linear_head(feats, labels, probe.num_classes)
    variables = probe.state.variables()   # pure dicts: the probe model's own state stays as it is
    fc = variables["params"]["fc"]
    if tuple(fc["kernel"].shape) != tuple(kernel.shape):
        raise ValueError(f"head kernel {kernel.shape} does not fit {probe.net}'s classifier {fc['kernel'].shape}")
    fc = {**fc, "kernel": np.asarray(kernel, fc["kernel"].dtype), "bias": np.asarray(bias, fc["bias"].dtype)}
    state = probe.state.replace_variables({**variables, "params": {**variables["params"], "fc": fc}})
    meta = {k: v for k, v in probe.meta.items() if k not in ("reward", "val_top1", "val_loss", "trial_id")}
    meta.update(final_model="refit", refit_of_trial=record.get("trial_id"), num_train_images=len(everything))
    model = TrainedModel(state, meta, batch_size=probe.batch_size)
    record.update(status="completed", seconds=time.perf_counter() - start)
    log.info("fit: refit trial %s's linear probe on %d images in %.1f s", record.get("trial_id"), len(everything),
             record["seconds"])
    return RefitOutcome(model, record)
