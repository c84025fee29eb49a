"""``fit``: search networks, optimizers and schedules for an image dataset; return the best model.

    results = fit(dataset, nets, optimizers, lr_scheduler=ag.List('poly', 'cosine'),
                  search_strategy='hyperband', time_limits=600, epochs=8)

The path is short: the search space (a plain dict of ``jaxgluon.space`` domains) and a picklable trial function
(``functools.partial(jaxgluon.train.train_trial, spec=TrialSpec(...))``) go to ``jaxgluon.tune``; the best trial's
checkpoint comes back as a ``TrainedModel``.
"""
from __future__ import annotations

import functools
import logging
import math
import pathlib
import time
from typing import Any

from jaxgluon import models
from jaxgluon.space import Categorical, Nets, Optimizers, Space, SpacedObject, compile_space
from jaxgluon.space.domains import format_space
from jaxgluon.space.optimizer import default_space
from jaxgluon.task.dataset import ImageDataset
from jaxgluon.task.defaults import fit_defaults
from jaxgluon.task.progress import ProgressBar
from jaxgluon.task.results import Results
from jaxgluon.train import SCHEDULES, PopulationTrial, TrialSpec, load_trained, train_trial
from jaxgluon.tune import tune

log = logging.getLogger("jaxgluon.task")

SEARCH_STRATEGIES = ("random", "grid", "bayesopt", "hyperband", "bayesopt_hyperband", "pbt")
#: Seconds kept back from ``time_limits`` for restoring the best model after the search.
FINAL_RESERVE_FRACTION, FINAL_RESERVE_MAX_S = 0.05, 20.0
DEFAULT_NUM_TRIALS = 2  # without time_limits or num_trials (AutoGluon's default)


def fit(dataset: ImageDataset, net: Any = None, optimizer: Any = None, lr_scheduler: Any = "cosine",
        search_strategy: Any = "random", time_limits: float | None = None, epochs: int | None = None,
        num_trials: int | None = None, batch_size: Any = None, image_size: int | None = None,
        resources_per_trial: dict | None = None, num_workers: int = 1, output_directory: Any = None,
        resume: bool = False, seed: int = 0, scheduler_options: dict | None = None, pretrained: bool | str = "auto",
        max_reward: float | None = None, head_init: str = "linear_probe", freeze_batchnorm: bool | str = "auto",
        cache: bool | int = True, verbose: bool = True, executor: Any = None,
        trial_timeout: float | str | None = "auto", population_size: int | str | None = None) -> Results:
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
      time_limits: seconds for the whole fit (the search stops its trials at the deadline; the overrun is
        reported in ``metadata['overrun_s']``).
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
      executor: where trials run (``jaxgluon.tune``): by default a persistent worker process per device set
        (``num_workers`` of them), which keeps its compiled programs across trials and is killed and replaced
        when a trial hangs or crashes; 'in_process' runs them in the calling process (no start-up; a hung trial is
        abandoned at the limits, not killed).
      trial_timeout: seconds a trial may go without reporting an epoch before it is killed as hung ('auto':
        derived from ``time_limits``, see ``jaxgluon.tune``; None: no limit).
      population_size: train up to this many trials of one net (and image size, batch size) at once
        as one vmapped program (an int, or 'auto' from the device's free memory); see ``jaxgluon.train.population``.
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
    defaults = fit_defaults(dataset.train_source, time_limits=time_limits,
                            check_weights=net is None and pretrained is not False)
    space = {"net": _net_space(defaults.net if net is None else net),
             "optimizer": _optimizer_space(defaults.optimizer if optimizer is None else optimizer),
             "lr_scheduler": _scheduler_space(lr_scheduler)}
    if batch_size is not None and isinstance(batch_size, Space):
        space["batch_size"] = batch_size
    elif batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or a search space, got {batch_size!r}")
    compile_space(space)  # validates the whole space before any trial starts
    epochs = defaults.epochs if epochs is None else epochs
    if num_trials is None and time_limits is None:
        num_trials = DEFAULT_NUM_TRIALS
    spec = TrialSpec(train_data=dataset.train_data, val_data=dataset.val_data, val_fraction=dataset.val_fraction,
                     split_seed=dataset.split_seed, image_size=image_size or defaults.image_size,
                     batch_size=batch_size if isinstance(batch_size, int) else defaults.batch_size,
                     pretrained=pretrained, head_init=head_init,
                     freeze_batchnorm=freeze_batchnorm, cache=cache)
    reserve = 0.0 if time_limits is None else min(FINAL_RESERVE_FRACTION * time_limits, FINAL_RESERVE_MAX_S)
    search_limit = None if time_limits is None else max(time_limits - reserve - (time.perf_counter() - started), 1e-3)
    log.info("fit: %d training / validation images, %d classes; search space %s", len(dataset), dataset.num_classes,
             format_space(space))
    with ProgressBar(total_trials=num_trials, time_limits=search_limit, enabled=verbose) as progress:
        train_fn = (PopulationTrial(spec) if population_size is not None or search_strategy == "pbt"
                    else functools.partial(train_trial, spec=spec))
        experiment = tune(train_fn, space, search_strategy=search_strategy, population_size=population_size,
                          num_trials=num_trials, time_limits=search_limit, epochs=epochs, max_reward=max_reward,
                          num_workers=num_workers, resources_per_trial=resources_per_trial,
                          output_directory=output_directory, resume=resume, seed=seed,
                          scheduler_options=scheduler_options, callbacks=[progress.on_event], executor=executor,
                          trial_timeout=trial_timeout)
    if experiment.best_trial_id is None:
        raise RuntimeError(f"no trial reported a validation reward within the budget (time_limits={time_limits}); "
                           f"give a larger time_limits or fewer epochs. Trials: {experiment.trials}")
    model = load_trained(pathlib.Path(experiment.experiment_dir) / "trials" / str(experiment.best_trial_id))
    elapsed = time.perf_counter() - started
    metadata = _metadata(experiment, space, spec, time_limits, elapsed, epochs)
    metadata["default_nets_left_out"] = dict(defaults.left_out) if net is None else {}
    log.info("fit: best validation top-1 %.4f with %s (%.1f s)", experiment.best_reward, experiment.best_config,
             elapsed)
    return Results(float(model.meta.get("reward", experiment.best_reward)), experiment.best_config, metadata,
                   experiment.trials, model, str(experiment.experiment_dir))


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
        if name not in SCHEDULES:
            raise ValueError(f"unknown lr_scheduler {name!r}; choose from {SCHEDULES} or a categorical of them "
                             "(ag.List('poly', 'cosine'))")
    return lr_scheduler


def _metadata(experiment: Any, space: dict, spec: TrialSpec, time_limits: float | None, elapsed: float,
              epochs: int) -> dict:
    meta = dict(experiment.metadata)
    best = experiment.best_config
    pretrained: dict[str, bool] = {}
    for trial in experiment.trials:
        for result in trial.get("results", []):
            if "pretrained_loaded" in result:
                net = trial["config"]["net"]
                pretrained[net] = pretrained.get(net, False) or bool(result["pretrained_loaded"])
    completed = sum(1 for t in experiment.trials if t["status"] in ("COMPLETED", "STOPPED"))
    meta.update({
        "net": best["net"], "optimizer": best["optimizer"], "lr_scheduler": best["lr_scheduler"],
        "search_space": format_space(space), "epochs": epochs, "image_size": spec.image_size,
        "batch_size": best.get("batch_size", spec.batch_size), "pretrained": pretrained, "head_init": spec.head_init,
        "freeze_batchnorm": spec.freeze_batchnorm,
        "num_trials_completed": completed, "time_limits": time_limits, "time_used_s": elapsed,
        "fit_overrun_s": 0.0 if time_limits is None else max(0.0, elapsed - time_limits),
        "best_trial_id": experiment.best_trial_id,
    })
    return meta

