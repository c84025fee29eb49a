"""``fit``: search networks, optimizers and schedules for an image dataset; return the best model.

    results = fit(dataset, nets, optimizers, lr_scheduler=ag.List('poly', 'cosine'),
                  search_strategy='hyperband', time_limits=600, epochs=8)

The path is short: the search space (a plain dict of ``jaxgluon.space`` domains) and a picklable trial function
(``functools.partial(jaxgluon.train.train_trial, spec=TrialSpec(...))``) go to ``jaxgluon.tune``; the best trial's
checkpoint comes back as a ``TrainedModel``.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import pathlib
import tempfile
import time
import warnings
from typing import Any

import jax

from jaxgluon import models
from jaxgluon.optim_facts import DEFAULT_LR_SCHEDULER, check_lr_scheduler
from jaxgluon.space import Categorical, Nets, Optimizers, Space, SpacedObject, compile_space
from jaxgluon.space.domains import format_space
from jaxgluon.space.optimizer import default_space
from jaxgluon.task.budget import apply_budget, warm_restore_templates, warm_search_start
from jaxgluon.task.cross_validation import check_num_folds, cross_validate
from jaxgluon.task.dataset import ImageDataset
from jaxgluon.task.defaults import CPU_IMAGE_SIZES, METRICS, fit_defaults, net_cost, ranking_metric
from jaxgluon.task.final_model import (ENSEMBLE_CHOICES, EnsembleForecast, check_choice, final_stage, selection_rule,
                                      serve_tta, stage_reserve)
from jaxgluon.task.refit import REFIT_MAX_SHARE, RefitKeep, refit_scale, refit_wanted
from jaxgluon.task.pixel_model import (FALLBACK_MAX_IMAGES, MAX_TRAIN_IMAGES, PIXEL_CHOICE, PixelCandidate,
                                      pixel_candidate)
from jaxgluon.task.progress import ProgressBar
from jaxgluon.task.results import Results
from jaxgluon.train import PopulationTrial, TrialCaches, TrialSpec, load_trained, train_trial
from jaxgluon.train.compile_cache import autotune_level_for, backend_started, set_compile_flags
from jaxgluon.train.trial import read_probe_record
from jaxgluon.tune import tune
from jaxgluon.tune.api import experiment_directory

log = logging.getLogger("jaxgluon.task")

SEARCH_STRATEGIES = ("random", "grid", "bayesopt", "hyperband", "bayesopt_hyperband", "pbt")
#: Seconds kept back from ``time_limits`` for what follows the search's deadline: the step a trial has in flight
#: and restoring the final model (into an abstract template: 0.1-0.9 s for cifar_resnet20_v1 on a loaded 2-core
#: CPU, benchmarks/fit_time_limits.py; it was 5-9 s when the template ran the random initialisers). At 15-30 s
#: the search returned 0.2-0.4 s past its own limit and efficientnet_lite0's restore took 0.95-1.01 s quiet, 1.76 s
#: at load 3.6, so a 1.0 s minimum overran by 0.2-1.2 s; 1.5 s centres it (history 2026-12-04-time-limits).
FINAL_RESERVE_MIN_S, FINAL_RESERVE_FRACTION, FINAL_RESERVE_MAX_S = 1.5, 0.02, 10.0
FIT_DEFAULT_NUM_TRIALS = 2  # fit's trials without time_limits or num_trials (AutoGluon's); tune's: stop.py


def fit(dataset: ImageDataset, net: Any = None, optimizer: Any = None, lr_scheduler: Any = DEFAULT_LR_SCHEDULER,
        search_strategy: Any = "random", time_limits: float | None = None, epochs: int | None = None,
        num_trials: int | None = None, batch_size: Any = None, image_size: int | None = None,
        resources_per_trial: dict | None = None, num_workers: int = 1, output_directory: Any = None,
        resume: bool = False, seed: int = 0, scheduler_options: dict | None = None, pretrained: bool | str = "auto",
        max_reward: float | None = None, head_init: str = "linear_probe", freeze_batchnorm: bool | str = "auto",
        cache: bool | int = True, metric: str = "auto", verbose: bool = True, executor: Any = None,
        trial_timeout: float | str | None = "auto", population_size: int | str | None = None,
        ray_address: str | None = None, storage_path: Any = None, max_failures: int | None = None,
        pixel_model: bool | str = "auto", refit: bool | str = "auto", ensemble: bool | str = "auto",
        num_folds: int | None = None, tta: bool | str = "auto") -> Results:
    """Searches ``net`` x ``optimizer`` x ``lr_scheduler`` on ``dataset`` and returns the best model.

    Args:
      dataset: an ``ImageClassification.Dataset`` with training data.
      net: a name, a list of names, ``ag.Nets([...])`` or any categorical of names (default: see
        ``jaxgluon.task.defaults``).
      optimizer: a name ('sgd', 'adam', 'adamw': each's default search space), ``ag.optimizer.SGD(...)``,
        ``ag.Optimizers([...])``, or a list of those.
      lr_scheduler: 'cosine', 'poly', 'step', 'constant' or a categorical of them (``ag.List('poly', 'cosine')``).
      search_strategy: one of 'random', 'grid', 'bayesopt', 'hyperband', 'bayesopt_hyperband', 'pbt' (Population
        Based Training; best with ``population_size``), or a
        ``jaxgluon.scheduler`` / ``jaxgluon.searcher`` object.
      time_limits: seconds for the whole fit, counted from the call (setup, the search and restoring the final
        model; the search stops its trials at its deadline, ``time_limits`` less a reserve for the final restore);
        ``metadata['overrun_s']`` is the wall-clock time past it.
      epochs: epochs of a full trial (the schedulers' max_t).
      num_trials: at most this many trials (default: as many as ``time_limits`` allows; without time_limits, 2).
      batch_size: an int or an ``ag.Int``/categorical to search (default 32 on CPU, 64 on accelerators).
      image_size: input side in pixels (default by data and hardware).
      resources_per_trial: ``{'num_cpus': .., 'num_devices': ..}`` for each worker process.
      num_workers: concurrent trials (worker processes) when above 1.
      output_directory: the experiment folder (journal, checkpoints); ``resume=True`` continues it.
      pretrained: True (must load published weights), 'auto' (load them, else warn loudly and train from a random
        init; recorded in ``metadata['pretrained']``), False.
      head_init: 'linear_probe' (default): a trial of a pretrained net first fits its classifier on the frozen
        features of the training images, then fine-tunes (better on small datasets, costs one forward pass over
        them, shared by the trials of one net); 'model': start from the network's own classifier init.
      freeze_batchnorm: keep BatchNorm in inference mode while training; 'auto' (default): for pretrained nets,
        whose statistics small augmented batches would otherwise pull away from what the features expect.
      cache: decode every image once and keep it in memory for later epochs and trials: True (default: when
        the decoded images fit in a quarter of RAM), False, or a budget in bytes.
      metric: what trials are ranked by (the scheduler, the searcher and the choice of the final model):
        'accuracy' (validation top-1), 'log_loss' (validation log-loss, as ``exp(-log_loss)``: not a step function
        of a few images, so it breaks the ties top-1 makes on small validation sets), or 'auto' (default):
        log-loss when the validation set has under 300 images, else top-1 (top-1 too when ``max_reward`` is given,
        as that is a top-1 threshold). ``results.reward`` and the leaderboard's ``best_reward`` show top-1 either
        way; ``metadata['metric']`` records the choice. The validation split itself defaults by dataset size
        (``Dataset(val_fraction=None)``: 25% of under 800 images, 200 images, 10% from 2,000 images on).
      executor: where trials run (``jaxgluon.tune``): by default a persistent worker process per device set
        (``num_workers`` of them), which keeps its compiled programs across trials and is killed and replaced
        when a trial hangs or crashes; 'in_process' runs them in the calling process (no start-up; a hung trial is
        abandoned at the limits, not killed); 'ray' runs each in a Ray actor on a cluster (``ray_address``: None,
        'auto', '<host>:<port>' or 'ray://<host>:<port>'; ``resources_per_trial`` then takes Ray's ``num_cpus``,
        ``num_gpus`` and custom resources; ``max_failures``: retries of a trial whose actor or node dies;
        ``storage_path``: the folder, reachable from every node, that holds the experiment directory). See
        ``jaxgluon.tune``.
      trial_timeout: seconds a trial may go without reporting an epoch before it is killed as hung ('auto':
        derived from ``time_limits``, see ``jaxgluon.tune``; None: no limit).
      population_size: train up to this many trials of one net (and image size, batch size) at once
        as one vmapped program (an int, or 'auto' from the device's free memory); see ``jaxgluon.train.population``.
      pixel_model: also fit a kernel model on the raw pixels (``jaxgluon.task.pixel_model``: RBF kernel ridge,
        settings by leave-one-out on the training split) before the search and rank it on validation beside
        the trials' epochs and probes; when it validates best, it is the returned model (refitted on training +
        validation images; ``metadata['final_model'] == 'pixel_kernel'``). 'auto' (default): for the default
        search (``net=None``) on small images (``jaxgluon.task.defaults.use_pixel_model``); with ``time_limits``
        also on larger images, fitted on at most ``FALLBACK_MAX_IMAGES`` training images: a fallback within seconds,
        returned only when no network model (an epoch or a linear probe) was scored in time (on a 2-core CPU at
        load 20, no efficientnet_lite0 trial reached its probe in 60 s); True, False.
        ``metadata['pixel_model']`` records its scores, seconds and ``role`` ('contender' or 'fallback').
      refit: after the search, retrain the best config on training + validation images for its best epoch count
        (``jaxgluon.task.refit``). With ``time_limits`` the search winds down when the time left falls to the
        estimated refit of the best trial so far (``jaxgluon.task.refit.RefitKeep``), but keeps its time when that
        refit would take more than a third of it, and while the ensemble stage would serve an ensemble instead
        (forecast from the validation predictions the trials keep, ``jaxgluon.task.final_model.EnsembleForecast``;
        ``metadata['refit']['released_for_ensemble']`` counts those reports). A refit whose estimate does not fit
        the time left is skipped, with the reason in ``metadata['refit']``. True, False, or 'auto' (default): on
        when the validation split holds at least a fifth of the labelled images (``REFIT_AUTO_MIN_VAL_SHARE``; the
        default split of a folder under 800 images holds out a quarter), else off (``metadata['refit']['status']
        == 'off'`` with the reason). On those small folders, in ten 600 s CPU fits at normal load, a refit beat the
        best single trial 4 times, tied 4 times and was skipped twice for want of time, never below it
        (``benchmarks/history/2026-12-06-refit.md``). A fine-tuned refit is served averaged with the trial model
        it refits (``results.model.members[0]`` is the refit alone; ``jaxgluon.task.final_model.refit_pair``).
      ensemble: an ensemble of the best trials' best checkpoints and probes, by their validation probabilities
        (``jaxgluon.task.ensemble.select_weights``): the uniform average of candidates of two or more nets, else
        greedy selection with replacement (Caruana et al. 2004) ranked by ``metric``; either is used when it beats
        its best member on validation. 'auto' (default) and True build it; False never does; 'average' or
        'greedy' build it with that rule whatever the nets (``metadata['ensemble']['selection']`` says which ran).
        ``metadata['final_model']`` says what is served: 'ensemble', 'refit', 'single' or 'linear_probe', by the
        rule in ``jaxgluon.task.final_model`` (an ensemble the selection rule chose, else a finished refit, else the
        best trial); ``metadata['ensemble']`` / ``metadata['refit']`` record what was tried.
      num_folds: k-fold cross-validation of the final candidates (None: off; an int >= 2): after the search, the
        best few distinct configs (up to ``jaxgluon.task.cross_validation.MAX_CANDIDATES``) are each trained on k-1
        folds of the training + validation images for their trial's best epoch count and scored on the held-out
        fold by ``metric``; the best mean score picks the config that is refitted and served (a less noisy choice
        than one small validation split; a chosen ensemble is still served first,
        ``ensemble=False`` to serve the cross-validated choice). With ``time_limits``, ``CV_SHARE`` (30%) of it is
        kept from the search for this; it is skipped, keeping the search's choice, when its estimate does not fit
        the time left.
        ``metadata['cv']`` records each candidate's fold scores and the outcome.
      tta: test-time augmentation of the served model (its predictions average each image and its mirror image):
        'auto' (default: on when every network served trained on flipped images), True, False;
        ``metadata['tta']`` says which and why (``jaxgluon.task.final_model.serve_tta``).
    A pretrained net's trial first fits a linear-probe head; that model is scored on validation like an epoch
    (checkpointed as epoch 0) and competes for the final model. When the budget ends before any fine-tuning epoch
    reports, ``fit`` returns the best probe model with a warning (``metadata['final_model'] == 'linear_probe'``);
    it raises only when no probe was ready either, saying how long one would take. ``time_limits`` counts from the
    call: ``metadata['overrun_s']`` is the wall-clock time past it, restoring the final model included. When the
    default config (``net``, ``image_size`` and ``epochs`` not given, on a CPU) is estimated not to reach one
    epoch's report in the budget, it is shrunk -- fewer epochs, a smaller image side, then a stratified subsample of
    the training images (written under ``output_directory/budget_subsample``) -- with a logged warning;
    ``metadata['budget']`` records the estimate and the outcome (``jaxgluon.task.budget``).
    Default nets (``net=None``) whose pretrained weights cannot be loaded are left out of the search, with one
    warning recorded in ``metadata['default_nets_left_out']``.
    """
    started = time.perf_counter()
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"fit needs a dataset made by ImageClassification.Dataset(...), got {type(dataset).__name__}")
    if not dataset.has_train:
        raise ValueError(f"{dataset!r} has no training data: create it with train_path=<folder> (or a built-in/TFDS "
                         "name with train=True)")
    if time_limits is not None and (isinstance(time_limits, bool) or not isinstance(time_limits, (int, float))
                                    or not math.isfinite(time_limits) or time_limits <= 0):
        raise ValueError(f"time_limits must be a positive number of seconds, got {time_limits!r}")
    if isinstance(search_strategy, str) and search_strategy not in SEARCH_STRATEGIES:
        raise ValueError(f"unknown search_strategy {search_strategy!r}; choose one of {SEARCH_STRATEGIES} or pass a "
                         "scheduler/searcher object")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if pixel_model not in (True, False, "auto"):
        raise ValueError(f"pixel_model must be True, False or 'auto', got {pixel_model!r}")
    check_choice("refit", refit)
    check_choice("ensemble", ensemble, ENSEMBLE_CHOICES)
    check_choice("tta", tta)
    num_folds = check_num_folds(num_folds)
    _start_driver_backend(executor, autotune_level_for(time_limits))
    defaults = fit_defaults(dataset.train_source, time_limits=time_limits,
                            check_weights=net is None and pretrained is not False)
    space = {"net": _net_space(defaults.net if net is None else net),
             "optimizer": _optimizer_space(defaults.optimizer if optimizer is None else optimizer),
             "lr_scheduler": _scheduler_space(lr_scheduler)}
    if batch_size is not None and isinstance(batch_size, Space):
        space["batch_size"] = batch_size
    elif batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or a search space, got {batch_size!r}")
    log.info("fit: defaults chosen at %.2f s", time.perf_counter() - started)
    compiled = compile_space(space)  # validates the whole space before any trial starts; the searcher reuses it
    warm_search_start(compiled, seed)   # the first draw's jax programs compile during the setup below
    space_size = compiled.size
    default_config = net is None and image_size is None and epochs is None   # what the budget shrink may change
    epochs = defaults.epochs if epochs is None else epochs
    if num_trials is None and time_limits is None:
        num_trials = FIT_DEFAULT_NUM_TRIALS
    spec = TrialSpec(train_data=dataset.train_data, val_data=dataset.val_data, val_fraction=dataset.val_fraction,
                     split_seed=dataset.split_seed, image_size=image_size or defaults.image_size,
                     batch_size=batch_size if isinstance(batch_size, int) else defaults.batch_size,
                     pretrained=pretrained, head_init=head_init,
                     freeze_batchnorm=freeze_batchnorm, cache=cache,
                     gpu_autotune_level=autotune_level_for(time_limits))   # off for short budgets (compile_cache)
    caches = TrialCaches()   # this call's sources, decoded images and probe features (jaxgluon.train.caches)
    if spec.val_data is None:   # the split of the folder Dataset() scanned before the call: not scanned again
        caches.sources.get((spec.train_data, None, spec.val_fraction, spec.split_seed), dataset.split)
    num_validation = len(spec.sources(caches)[1])
    # on the labelled images as split, before any budget subsample of the training images
    refit, refit_reason = refit_wanted(refit, len(spec.sources(caches)[0]), num_validation)
    ranked_by = ranking_metric("accuracy" if metric == "auto" and max_reward is not None else metric, num_validation)
    spec = dataclasses.replace(spec, metric=ranked_by)
    reserve = 0.0 if time_limits is None else min(max(FINAL_RESERVE_MIN_S, FINAL_RESERVE_FRACTION * time_limits),
                                                  FINAL_RESERVE_MAX_S, 0.2 * time_limits)
    # the refit / ensemble stage's time (jaxgluon.task.final_model): none for an ensemble of a one-config space
    # without probes (with them, a trial's checkpoint and its probe are two candidates)
    num_models = 1 if space_size == 1 else num_trials
    probes = head_init == "linear_probe" and pretrained is not False   # a trial's probe: a second candidate
    # cross-validation must leave the final restore and the ensemble their time (it runs before both)
    cv_keeps = reserve + stage_reserve(time_limits, ensemble, num_models, probes=probes)
    reserve += stage_reserve(time_limits, ensemble, num_models, num_folds, probes=probes)
    plan = None
    if (time_limits is not None and default_config and not defaults.pixel_model
            and not resume and jax.default_backend() == "cpu" and defaults.image_size in CPU_IMAGE_SIZES):
        folder = (pathlib.Path(output_directory) / "budget_subsample" if output_directory is not None
                  else pathlib.Path(tempfile.mkdtemp(prefix="jaxgluon_subsample_")))
        spec, epochs, plan = apply_budget(spec, epochs, time_limits - reserve - (time.perf_counter() - started),
                                          folder, seed=seed, caches=caches, cost=net_cost(defaults.net))
    pixel, contender = None, False
    # 'auto': a contender on small images; with time_limits on larger ones, a capped fallback (a model within
    # seconds, whatever the load does to the networks' setup), served only when no network model was scored
    if pixel_model is True or (pixel_model == "auto" and net is None
                               and (defaults.pixel_model or time_limits is not None)):
        contender = pixel_model is True or defaults.pixel_model
        pixel = pixel_candidate(*spec.sources(caches), ranked_by, started=started, time_limits=time_limits, seed=seed,
                                max_train_images=MAX_TRAIN_IMAGES if contender else FALLBACK_MAX_IMAGES)
    log.info("fit: data scanned%s at %.2f s", "" if pixel is None else ", pixel model fitted",
             time.perf_counter() - started)
    search_limit = None if time_limits is None else max(time_limits - reserve - (time.perf_counter() - started), 1e-3)
    keep = None   # a refit: the search ends early enough for the refit of its best trial so far
    if refit and time_limits is not None:
        forecast = None   # ... unless an ensemble would be served instead, judged on what the trials keep
        if ensemble is not False:
            output_directory = experiment_directory(output_directory, storage_path)   # named here, tune uses it
            forecast = EnsembleForecast(output_directory / "trials", ranked_by, selection_rule(ensemble))
        keep = RefitKeep(refit_scale(*spec.sources(caches)), max_seconds=REFIT_MAX_SHARE * search_limit,
                         ensemble_served=forecast)
    log.info("fit: %d training / validation images, %d classes; search space %s", len(dataset), dataset.num_classes,
             format_space(space))
    warm_restore_templates(_names(space["net"]), dataset.num_classes)   # off the clock's critical path
    with ProgressBar(total_trials=num_trials, time_limits=search_limit, enabled=verbose) as progress:
        train_fn = (PopulationTrial(spec) if population_size is not None or search_strategy == "pbt"
                    else functools.partial(train_trial, spec=spec, caches=caches))
        experiment = tune(train_fn, compiled, search_strategy=search_strategy, population_size=population_size,
                          num_trials=num_trials, time_limits=search_limit, epochs=epochs, max_reward=max_reward,
                          num_workers=num_workers, resources_per_trial=resources_per_trial,
                          output_directory=output_directory, resume=resume, seed=seed,
                          scheduler_options=scheduler_options, callbacks=[progress.on_event], executor=executor,
                          trial_timeout=trial_timeout, ray_address=ray_address, storage_path=storage_path,
                          max_failures=max_failures, keep_seconds=keep)
    trials_dir = pathlib.Path(experiment.experiment_dir) / "trials"
    search_ended = time.perf_counter() - started
    log.info("fit: search ended at %.2f s", search_ended)
    trial_id, epoch = _final_choice(experiment, trials_dir, time_limits, pixel, pixel_fallback=not contender)
    stage, cv = None, None
    if num_folds is not None and trial_id != PIXEL_CHOICE:   # the candidates' config by k-fold CV, not validation
        trial_id, cv = cross_validate(experiment, spec, trial_id, num_folds=num_folds, seed=seed,
                                      caches=caches,
                                      deadline=_wall_deadline(time_limits, started, keep=cv_keeps))
        epoch = _cv_epoch(cv, trial_id, epoch)
    elif num_folds is not None:
        cv = {"num_folds": num_folds, "status": "skipped", "reason": "the kernel model on pixels validated best; "
              "cross-validation compares the networks' configs"}
        log.info("fit: cross-validation skipped: %s", cv["reason"])
    restore_start = time.perf_counter()
    if trial_id == PIXEL_CHOICE:
        model, final, config = pixel.refit(*spec.sources(caches), seed=seed), "pixel_kernel", pixel.config
        single_epoch, single_reward = None, model.meta.get("val_top1", model.meta.get("reward"))
        restored = time.perf_counter()
    else:
        try:
            model = load_trained(trials_dir / str(trial_id), epoch=epoch)
        except (ValueError, FileNotFoundError):   # CV's epoch not kept (the best and latest are): the best one
            model = load_trained(trials_dir / str(trial_id))
        single_epoch, single_reward = model.meta.get("epoch"), model.meta.get("val_top1", model.meta.get("reward"))
        final = "linear_probe" if model.meta.get("epoch") == 0 else "single"
        config = next(t["config"] for t in experiment.trials if t["trial_id"] == trial_id)
        restored = time.perf_counter()
        # ---- refit / ensemble stage (issue 18 item 2; all of it in jaxgluon.task.final_model) ----
        stage = final_stage(experiment, trials_dir, spec, (trial_id, model), final, refit=refit, ensemble=ensemble,
                            metric=ranked_by, seed=seed, deadline=_wall_deadline(time_limits, started),
                            restore_seconds=restored - restore_start, caches=caches)
        model, final = stage.model, stage.kind
        # ---- end of the refit / ensemble stage ----
    tta_record = serve_tta(model, tta)
    elapsed = time.perf_counter() - started
    metadata = _metadata(experiment, config, space, spec, time_limits, elapsed, epochs)
    # final_model: 'ensemble', 'refit' (jaxgluon.task.final_model), 'single' (a trial's best fine-tuned epoch),
    # 'linear_probe' (its probe model, epoch 0) or 'pixel_kernel' (the kernel model on pixels); best_trial_id /
    # best_epoch: the best single model's
    metadata["pixel_model"] = None if pixel is None else {**pixel.summary(),
                                                          "role": "contender" if contender else "fallback"}
    metadata["cv"] = cv   # None without num_folds
    metadata["tta"] = tta_record
    metadata["budget"] = None if plan is None else plan.as_dict()   # the default config's estimate and any shrink
    metadata.update(final_model=final, best_trial_id=None if trial_id == PIXEL_CHOICE else trial_id,
                    best_epoch=single_epoch, final_restore_seconds=restored - restore_start, final_reserve_s=reserve,
                    search_ended_s=search_ended,   # seconds from the call: where the rest of time_limits went
                    final_stage_seconds=time.perf_counter() - restored,
                    **({} if stage is None else stage.metadata))
    if not refit:   # why no refit ran (a refit that ran or was skipped recorded its outcome)
        metadata["refit"] = {"status": "off", "reason": refit_reason}
    elif stage is None:
        metadata["refit"] = {"status": "skipped", "reason": "the kernel model on pixels validated best (it is "
                             "refitted on training + validation images itself)"}
    if keep is not None:   # reports after which the search kept no time for the refit: an ensemble was forecast
        metadata["refit"]["released_for_ensemble"] = keep.released
    metadata["default_nets_left_out"] = dict(defaults.left_out) if net is None else {}
    metadata.update(metric=ranked_by, num_validation_images=num_validation,
                    val_fraction=None if spec.val_data else spec.val_fraction)
    reward = float(stage.reward if stage is not None and stage.reward is not None else single_reward)
    log.info("fit: best validation top-1 %.4f with %s (%s, %.1f s)", reward, config, final, elapsed)
    return Results(reward, config, metadata, experiment.trials, model, str(experiment.experiment_dir))


#: JAX's GPU memory settings; when the user set none, the driver of worker processes starts without preallocation
MEMORY_ENV = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_CLIENT_MEM_FRACTION",
              "XLA_PYTHON_CLIENT_ALLOCATOR")


def _start_driver_backend(executor: Any, autotune_level: int | None) -> None:
    """Starts this (driver) process's JAX backend, if it has not started, as trials need it:

    - with XLA's GPU autotuning at ``autotune_level`` (``train.compile_cache.autotune_level_for``: off for short
      budgets; the final model's programs compile in the driver after the search's deadline, and at XLA's default
      level that took 14 s of a 60 s fit's budget on an H200), unless ``XLA_FLAGS`` choose a level;
    - without GPU memory preallocation when trials run in other processes: by default JAX takes 75% of a GPU's
      memory at its first operation, and the driver needs little while the trial workers it spawns on the same GPU
      need the memory. Not with ``executor='in_process'`` nor when the user set any of ``MEMORY_ENV``.

    The environment is restored after, so the workers start as their ``TrialSpec`` says and preallocate as usual.
    """
    if backend_started():
        return
    saved = {k: os.environ.get(k) for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE")}
    set_compile_flags(autotune_level)
    if executor != "in_process" and not any(k in os.environ for k in MEMORY_ENV):
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    try:
        jax.devices()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _final_choice(experiment: Any, trials_dir: pathlib.Path, time_limits: float | None,
                  pixel: PixelCandidate | None = None, pixel_fallback: bool = False) -> tuple[int, int | None]:
    """``(trial_id, epoch)`` of the model ``fit`` returns: the best reward over every trial's reported epochs
    (``epoch=None``: that trial's best checkpoint), linear-probe models (``epoch=0``, scored like an epoch) and the
    pixel kernel model (``(PIXEL_CHOICE, None)``; networks win ties). A ``pixel_fallback`` (the capped kernel model
    on larger images) is a candidate only when no network model was scored: its probabilities can out-score weak,
    overconfident networks on a small validation set's log-loss, and then it lost to them on test (hymenoptera at
    60 s: 0.6275 vs 0.82). With no reported epoch, the best probe or pixel model with a warning; with neither, a
    RuntimeError saying how long a probe would have taken."""
    candidates = []     # (reward, fine-tuned first on ties, earlier trial first on ties) -> (trial_id, epoch)
    incomplete = []
    for trial in experiment.trials:
        tid = trial["trial_id"]
        if trial.get("best_reward") is not None and trial["status"] != "ERROR":
            candidates.append(((trial["best_reward"], 1, -tid), (tid, None)))
        probe = read_probe_record(trials_dir / str(tid))
        if probe and probe.get("status") == "scored":
            candidates.append(((probe["reward"], 0, -tid), (tid, 0)))
        elif probe:
            incomplete.append(probe)
    if pixel is not None and not (pixel_fallback and candidates):
        candidates.append(((pixel.reward, -1, 0), (PIXEL_CHOICE, None)))
    if not candidates:
        raise RuntimeError(f"no trial reported a validation reward within the budget (time_limits={time_limits}), "
                           f"and no linear-probe model was ready either: {_probe_estimate(incomplete)}. Give a "
                           f"larger time_limits or fewer epochs. Trials: {experiment.trials}")
    (_, _, _), (tid, epoch) = max(candidates, key=lambda c: c[0])
    if experiment.best_trial_id is None and tid == PIXEL_CHOICE:
        warnings.warn(f"the budget (time_limits={time_limits}) ended before any network reported: returning the "
                      "kernel model on pixels; give a larger time_limits to train networks", RuntimeWarning,
                      stacklevel=3)
    elif experiment.best_trial_id is None:
        warnings.warn(f"the budget (time_limits={time_limits}) ended before any fine-tuning epoch reported: "
                      f"returning trial {tid}'s linear-probe model (a classifier fitted on the pretrained features, "
                      "scored on validation); give a larger time_limits to fine-tune", RuntimeWarning, stacklevel=3)
    return tid, epoch


def _wall_deadline(time_limits: float | None, started: float, keep: float = 0.0) -> float | None:
    """The call's deadline on the wall clock (``time.time()``), as the final stages take it, less ``keep`` s."""
    return None if time_limits is None else time.time() + time_limits - keep - (time.perf_counter() - started)


def _cv_epoch(cv: dict, trial_id: int, epoch: int | None) -> int | None:
    """The epoch to serve after cross-validation: the one CV scored (the trial's best fine-tuned epoch) when CV
    compared candidates, else the search's choice."""
    if cv["status"] not in ("changed", "confirmed"):
        return epoch
    return next(c["epochs"] for c in cv["candidates"] if c["trial_id"] == trial_id)


def _probe_estimate(records: list[dict]) -> str:
    """How long a probe would take, from the trials that started one (setup + extrapolated feature pass)."""
    estimates, lower = [], []
    for r in records:
        first_images, first_s = r.get("first_batch_images", 0), r.get("first_batch_seconds", 0.0)
        later_images = r.get("images_done", 0) - first_images
        if first_images and later_images > 0:   # the first batch compiled: extrapolate from the later ones
            rate = (r["feature_seconds"] - first_s) / later_images
            estimates.append(r["setup_seconds"] + first_s + rate * (r["images_total"] - first_images))
        elif first_images:
            lower.append(r["setup_seconds"] + first_s)
    if estimates:
        return (f"a probe needs about {min(estimates):.0f} s from a trial's start (setup, compiling, then the "
                "features of every training image at the rate measured after the first batch)")
    if lower:
        return (f"a probe needs more than {min(lower):.0f} s from a trial's start (setup, then compiling the feature "
                "program and its first batch; the deadline came before a second batch showed the rate)")
    started = [r["setup_seconds"] for r in records if "setup_seconds" in r]
    if started:
        return (f"a trial needed {min(started):.0f} s of setup (loading weights and data, compiling) before its probe "
                "could start, so a probe needs more than that")
    return ("no trial got as far as a probe (its setup -- loading weights and data, compiling -- outlasted the budget, "
            "or the nets have no pretrained weights to probe)")


def _names(space: Any) -> list[str]:
    return list(space.choices) if isinstance(space, Categorical) else [space]


def _net_space(net: Any) -> Any:
    if isinstance(net, (list, tuple)):
        net = Nets(list(net))
    for name in _names(net):
        if not isinstance(name, str):
            raise ValueError(f"net must be model names (see jaxgluon.models.list_models()), got {name!r}")
        models.model_info(name)  # unknown names: an error listing the closest known ones
    return net


def _optimizer_space(optimizer: Any) -> Any:
    if isinstance(optimizer, (list, tuple)):
        return Optimizers(list(optimizer))
    if isinstance(optimizer, str):
        return default_space(optimizer)
    if isinstance(optimizer, (SpacedObject, Categorical, dict)):
        return optimizer
    raise ValueError(f"optimizer must be a name ('sgd', 'adam', 'adamw'), ag.optimizer.SGD(...)/Adam(...), "
                     f"ag.Optimizers([...]) or a list of those; got {optimizer!r}")


def _scheduler_space(lr_scheduler: Any) -> Any:
    for name in _names(lr_scheduler):
        try:
            check_lr_scheduler(name)
        except ValueError as e:
            raise ValueError(f"{e} or a categorical of them (ag.List('poly', 'cosine'))") from None
    return lr_scheduler


def _metadata(experiment: Any, best: dict, space: dict, spec: TrialSpec, time_limits: float | None,
              elapsed: float, epochs: int) -> dict:
    meta = dict(experiment.metadata)
    pretrained: dict[str, bool] = {}
    for trial in experiment.trials:
        for result in trial.get("results", []):
            if "pretrained_loaded" in result:
                net = trial["config"]["net"]
                pretrained[net] = pretrained.get(net, False) or bool(result["pretrained_loaded"])
    completed = sum(1 for t in experiment.trials if t["status"] in ("COMPLETED", "STOPPED"))
    meta.update({
        "net": best["net"], "optimizer": best.get("optimizer"), "lr_scheduler": best.get("lr_scheduler"),
        "search_space": format_space(space), "epochs": epochs, "image_size": spec.image_size,
        "batch_size": best.get("batch_size", spec.batch_size), "pretrained": pretrained, "head_init": spec.head_init,
        "freeze_batchnorm": spec.freeze_batchnorm,
        "num_trials_completed": completed, "time_limits": time_limits, "time_used_s": elapsed,
        # one overrun figure, wall clock from the call to the returned model, against the user's time_limits
        "overrun_s": 0.0 if time_limits is None else max(0.0, elapsed - time_limits),
    })
    return meta

