"""Budget shrink: when the default config cannot finish one epoch in ``time_limits``, ``fit`` trains a smaller one.

    plan = plan_budget(num_images=3500, image_size=64, epochs=3, time_limits=15, cpus=2)
    plan.shrunk, plan.max_train_images, plan.reason, plan.as_dict()    # what metadata['budget'] records

The estimate is ``jaxgluon.task.defaults``' CPU cost model (seconds per megapixel of a train step, the evaluation
share, a trial's fixed overhead), for the default network on a CPU (the dearest of the default search's nets,
``defaults.net_cost``: the first trial may draw it). A trial must do, before its first fine-tuning
epoch reports: its setup (``CPU_TRIAL_OVERHEAD_S`` on two idle cores), the linear-probe pass over its training
images, one epoch, and the evaluation of the validation split. When that does not fit in the search's share of the
budget, in this order:

1. fewer epochs (the epochs the budget holds, at least 1: the schedule then decays within them);
2. a smaller image side (down to the smallest of ``CPU_IMAGE_SIZES``: ``cpu_size_and_epochs`` already picks it for
   short budgets, so this step rarely applies to a default fit);
3. a stratified subsample of the training images (the same images every epoch, at least
   ``MIN_IMAGES_PER_CLASS`` per class), sized so that setup, probe and one epoch fit; the validation split is
   untouched, so the trials are still scored on the same images.

The anytime fit then has a probe model within the budget whenever the estimate holds, and a fine-tuned epoch
when the budget allows one. The estimate and the outcome go to ``metadata['budget']``; the shrink is logged.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import pathlib
from typing import Any

import numpy as np

from jaxgluon.task import defaults as d

log = logging.getLogger("jaxgluon.task")

MIN_IMAGES_PER_CLASS = 8


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    image_size: int
    epochs: int
    max_train_images: int | None   # None: every training image
    estimate_s: float              # estimated seconds from a trial's start to its first epoch's report
    available_s: float             # the budget those seconds must fit in
    reason: str = ""

    @property
    def shrunk(self) -> bool:
        return bool(self.reason)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "shrunk": self.shrunk}


def first_epoch_seconds(num_train: int, num_val: int, image_size: int, cpus: float, cost: float = 1.0) -> float:
    """Setup + linear-probe pass + one epoch + validation, estimated for one trial on ``cpus`` cores (``cost``:
    the net's step time relative to efficientnet_lite0's)."""
    per_image = d.epoch_seconds(1, image_size, val_fraction=0.0, cpus=cpus, cost=cost)   # one training image
    overhead = d.CPU_TRIAL_OVERHEAD_S / min(1.0, cpus / 2)
    return overhead + per_image * ((1 + d.EVAL_COST_FRACTION) * num_train + d.EVAL_COST_FRACTION * num_val)


def plan_budget(num_train: int, num_val: int, num_classes: int, image_size: int, epochs: int,
                search_seconds: float, cpus: float | None = None, cost: float = 1.0) -> BudgetPlan:
    """The config a default CPU fit trains within ``search_seconds`` (module docstring).

    >>> plan_budget(200, 60, 2, 128, 5, 600, cpus=2).shrunk
    False
    >>> small = plan_budget(3500, 400, 5, 64, 3, 15, cpus=2)
    >>> small.shrunk, small.epochs, 5 * MIN_IMAGES_PER_CLASS <= small.max_train_images < 3500
    (True, 1, True)
    """
    cpus = max(1e-3, cpus or d.available_cpus())
    estimate = first_epoch_seconds(num_train, num_val, image_size, cpus, cost)
    if estimate <= search_seconds:
        return BudgetPlan(image_size, epochs, None, estimate, search_seconds)
    reasons = [f"estimated {estimate:.0f} s to the first epoch's report (setup, probe, one epoch of {num_train} "
               f"images at {image_size} px, validation) > {search_seconds:.0f} s of search budget"]
    if epochs > 1:
        reasons.append(f"epochs {epochs} -> 1")
        epochs = 1
    smaller = [s for s in d.CPU_IMAGE_SIZES if s < image_size]
    for size in smaller:
        image_size = size
        estimate = first_epoch_seconds(num_train, num_val, size, cpus, cost)
        if estimate <= search_seconds:
            break
    if smaller:
        reasons.append(f"image size -> {image_size} px")
    limit = None
    if estimate > search_seconds:
        per_image = (first_epoch_seconds(num_train, num_val, image_size, cpus, cost)
                     - first_epoch_seconds(0, num_val, image_size, cpus, cost)) / max(num_train, 1)
        spare = search_seconds - first_epoch_seconds(0, num_val, image_size, cpus, cost)
        floor = MIN_IMAGES_PER_CLASS * num_classes
        limit = int(min(num_train, max(floor, spare / per_image if spare > 0 else 0)))
        if limit < num_train:
            reasons.append(f"a subsample of {limit} of the {num_train} training images")
            estimate = first_epoch_seconds(limit, num_val, image_size, cpus, cost)
        else:
            limit = None
    return BudgetPlan(image_size, epochs, limit, estimate, search_seconds, "; ".join(reasons))


def subset_spec(source: Any, indices: np.ndarray, directory: pathlib.Path) -> str:
    """A data spec of ``source``'s examples at ``indices``: a folder of symbolic links when the images are files,
    else an ``.npz`` (``jaxgluon.train.save_array_dataset``)."""
    from jaxgluon.data.sources import source_labels

    names, labels = list(source.class_names), source_labels(source)
    paths = file_paths(source)
    if paths is not None:
        for i in indices:
            folder = directory / names[int(labels[i])]
            folder.mkdir(parents=True, exist_ok=True)
            target = pathlib.Path(paths[int(i)]).absolute()
            link = folder / f"{int(i):06d}_{target.name}"
            if not link.exists():
                link.symlink_to(target)
        for name in names:   # every class keeps its folder (and so its label), even with no image in the subset
            (directory / name).mkdir(parents=True, exist_ok=True)
        return str(directory)
    from jaxgluon.train import save_array_dataset

    items = [source[int(i)] for i in indices]
    directory.mkdir(parents=True, exist_ok=True)
    return save_array_dataset(directory / "images.npz", np.stack([it["image"] for it in items]),
                              [int(it["label"]) for it in items], names)


def apply_budget(spec: Any, epochs: int, search_seconds: float, directory: pathlib.Path,
                 seed: int = 0, caches: Any = None, cost: float = 1.0) -> tuple[Any, int, BudgetPlan]:
    """``(spec, epochs, plan)`` for a default CPU fit: unchanged when one epoch fits, else shrunk (the subsample
    and the validation split are written under ``directory`` as data specs, so worker processes read them).
    ``caches``: the fit's ``TrialCaches`` (its sources are already open: no second scan of the folder)."""
    from jaxgluon.data.sources import source_labels
    from jaxgluon.task.pixel_model import _subsample

    train, val = spec.sources(caches)
    plan = plan_budget(len(train), len(val), len(train.class_names), spec.image_size, epochs, search_seconds,
                       cost=cost)
    if not plan.shrunk:
        return spec, epochs, plan
    log.warning("fit: shrinking the default config to fit time_limits: %s", plan.reason)
    changes = {"image_size": plan.image_size}
    if plan.max_train_images is not None:
        keep = _subsample(source_labels(train), plan.max_train_images, seed)
        changes["train_data"] = subset_spec(train, keep, directory / "train")
        changes["val_data"] = subset_spec(val, np.arange(len(val)), directory / "val")
    return dataclasses.replace(spec, **changes), plan.epochs, plan


def file_paths(source: Any) -> list[str] | None:
    """The image file of every example of ``source`` (a folder or a subset of one), or None."""
    paths = getattr(source, "paths", None)
    if paths is not None:
        return list(paths)
    inner, indices = getattr(source, "source", None), getattr(source, "indices", None)
    if inner is not None and indices is not None:
        inner_paths = file_paths(inner)
        return None if inner_paths is None else [inner_paths[int(i)] for i in indices]
    return None


def warm_restore_templates(net_names: list[str], num_classes: int) -> threading.Thread:
    """Traces the abstract template the final restore (``train.load_trained``) needs for each net, in a daemon
    thread of the driver while the trials run in workers: that trace is cached per process
    (``models.registry.INITIALIZERS``), and after the deadline it cost efficientnet_lite0 17 s on a loaded 2-core
    CPU (a 600 s fit on hymenoptera returned 19 s late). A failure here only means the restore traces it later."""
    from jaxgluon import models

    def work() -> None:
        for name in net_names:
            try:
                models.abstract_model(name, num_classes)
            except Exception as err:  # noqa: BLE001 -- a warm-up; the restore reports real errors
                log.debug("fit: warming the restore template of %s failed: %s", name, err)

    thread = threading.Thread(target=work, name="jaxgluon-restore-template", daemon=True)
    thread.start()
    return thread


def warm_search_start(space: Any, seed: int = 0) -> threading.Thread:
    """Draws one config from ``space`` (a compiled space) with a throwaway random searcher, in a daemon thread of
    the driver while ``fit`` scans data and fits the pixel model: the draw compiles the few jax random-bit programs
    every searcher's first suggestion needs (1.5 s on a 2-core CPU, 4 s at load 10), which otherwise happened
    inside the search, after its deadline was fixed (flowers5 and cifar10_test_1k at ``time_limits=15`` returned
    2.6-4.3 s late: their search had ~1 s left and launched its first trial after the deadline). A failure here
    only means the search compiles them itself."""
    def work() -> None:
        try:
            from jaxgluon.searcher import RandomSearcher

            RandomSearcher(space, seed=seed).suggest()
        except Exception as err:  # noqa: BLE001 -- a warm-up; the search reports real errors
            log.debug("fit: warming the searcher's first draw failed: %s", err)

    thread = threading.Thread(target=work, name="jaxgluon-search-start", daemon=True)
    thread.start()
    return thread
