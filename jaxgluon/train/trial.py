"""The trial function that ``jaxgluon.tune`` runs: one config trained epoch by epoch, reporting validation accuracy.

    from functools import partial
    from jaxgluon.train import TrialSpec, train_trial
    spec = TrialSpec(train_data="~/data/flowers/train", image_size=64, batch_size=32)
    train_fn = partial(train_trial, spec=spec, caches=TrialCaches())   # picklable: tune(train_fn, space, ...)
    train_fn({'net': 'resnet18_v1b', 'optimizer': {'name': 'sgd', 'learning_rate': 0.01}}, reporter)

Per epoch it reports ``reward`` (validation top-1 in [0, 1]), ``train_loss``, ``train_accuracy``, ``val_loss``,
``epoch_seconds`` (train + validation + checkpoint: ``train_seconds``, of which ``input_seconds`` waiting for
batches and ``transfer_seconds`` putting them on the devices, ``eval_seconds``, ``checkpoint_seconds``), ``images_per_sec`` (training throughput, the step that compiled excluded),
``pretrained_loaded``, and on the first epoch of each call ``first_step_seconds`` (first train step: compilation,
or loading it from the persistent cache, plus one step). Each epoch is checkpointed (Orbax, asynchronously) in
``reporter.checkpoint_dir / 'checkpoints'`` before reporting; a later call with the same directory continues from
the latest checkpoint exactly as if it had never stopped (epoch ``e`` always sees the batches derived from
``(reporter.seed, e)``). Any decision but ``'CONTINUE'`` returns after the checkpoint is written. When the
experiment's time limit (``reporter.deadline``) passes in the middle of an epoch, the trial returns at once without
reporting that epoch, so a long epoch does not overrun the limit.

Data-parallel over every local device: the batch size is rounded up to a multiple of the device count (and down to
the training-set size), so training batches are never padded and BatchNorm sees only real examples.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import pathlib
import time
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgluon import data as jdata
from jaxgluon import models
from jaxgluon.train.caches import PROCESS_CACHES, TrialCaches
from jaxgluon.train.checkpoint import CHECKPOINT_SUBDIR, PROBE_EPOCH, TrialCheckpointer
from jaxgluon.train.compile_cache import GPU_AUTOTUNE_LEVEL, enable_compilation_cache, set_compile_flags
from jaxgluon.train.linear_probe import DeadlinePassed, cached_features, fit_linear_head, pooled_features, set_head
from jaxgluon.train.optim import TrialConfig, optimizer_from_trial
from jaxgluon.train.state import TrainState, create_train_state
from jaxgluon.train.compile_count import CompileCounter
from jaxgluon.train.steps import PROGRAMS, CompiledSteps, make_mesh, sum_metrics
from jaxgluon.train.val_predictions import ValidationPass
from jaxgluon.train.warm_start import WarmStart

log = logging.getLogger("jaxgluon.train")

META_FORMAT = "jaxgluon.trained/1"
HEAD_INITS = ("linear_probe", "model")
#: What a trial's ``reward`` (the score the scheduler, searcher and checkpoint retention rank by) measures:
#: 'accuracy': validation top-1; 'log_loss': ``exp(-validation log-loss)``, the geometric-mean probability of the
#: true class (in (0, 1], higher is better, not a step function of a few images). ``val_top1`` is reported either way.
METRICS = ("accuracy", "log_loss")
#: The linear-probe record a pretrained trial writes in its checkpoint directory (see ``_score_probe``).
PROBE_FILE = "probe.json"


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """How a trial gets its data and trains: everything except the sampled config (picklable).

    Attributes:
      train_data: a data spec (``jaxgluon.data.open_source``): a class-per-subfolder image folder, ``'digits'`` /
        ``'digits:train'`` / ``'digits:test'``, ``'tfds:<name>:<split>'``, or an ``.npz`` of :func:`save_array_dataset`.
      val_data: the same kinds; None: a stratified ``val_fraction`` split of ``train_data`` seeded by ``split_seed``.
      image_size: square input side; None: the network's ``model_info(net)['input_size']``.
      batch_size: default training batch size (a config's ``batch_size`` wins); eval uses ``eval_batch_size``
        (default: the training batch size).
      worker_count: grain worker processes per loader (0: threads only).
      pretrained: passed to ``models.get_model`` on a fresh start: True (must load), 'auto' (load, or warn loudly and
        use random init -- recorded as ``pretrained_loaded``), False.
      mixed_precision: bfloat16 compute with float32 parameters/optimizer state; None: on for GPU/TPU, off on CPU.
      augment: the train augmentation for ``data.make_train_loader`` ('auto' picks by image size).
      keep_checkpoints: latest checkpoints kept for resuming (the best one by reward is always kept too); 2 or
        more let a trial killed between an epoch's checkpoint and its report resume from its last reported epoch.
      compilation_cache: turn on the persistent compilation cache (``enable_compilation_cache()``).
      gpu_autotune_level: XLA's GPU convolution autotuning level for a trial process whose backend has not started
        (``train.compile_cache``): 0 (off, the default: a cold start compiles in seconds instead of minutes, and
        the steps run slower), None (XLA's own default; ``fit`` uses it from ``time_limits=600`` on). ``XLA_FLAGS``
        that set a level win.
      head_init: 'linear_probe' (default): when pretrained weights were loaded, a fresh trial first fits the
        classifier on the frozen backbone's features of the training images (``jaxgluon.train.linear_probe``),
        then fine-tunes everything; 'model': keep the network's own classifier init.
      cache: decode each image once and keep it in host memory, in the ``decoded`` images of the trial's
        ``TrialCaches`` (``jaxgluon.train.caches``: one per fit/tune call, else the process-level one):
        True (default: when the decoded images fit in a fraction of RAM), False (stream every epoch), or a budget
        in bytes.
      freeze_batchnorm: keep BatchNorm in inference mode while training (``train_step``). 'auto' (default): when
        fine-tuning pretrained weights with random-resized-crop augmentation, whose crop statistics differ from
        the eval transform's (on hymenoptera, train-mode BatchNorm alone took a linear probe's 0.94 test top-1 to
        0.82 at a zero learning rate); not with random init, nor with pad-and-crop (small images: there adapting
        the statistics to the new domain helps -- CIFAR-10 weights on digits: 0.986 vs 0.975 frozen).
    """

    train_data: str
    val_data: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    worker_count: int = 0
    pretrained: bool | str = "auto"
    mixed_precision: bool | None = None
    augment: str = "auto"
    keep_checkpoints: int = 2
    compilation_cache: bool = True
    gpu_autotune_level: int | None = GPU_AUTOTUNE_LEVEL
    head_init: str = "linear_probe"
    freeze_batchnorm: bool | str = "auto"
    cache: bool | int = True
    metric: str = "accuracy"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if not isinstance(self.cache, (bool, int)) or (not isinstance(self.cache, bool) and self.cache < 0):
            raise ValueError(f"cache must be True, False or a budget in bytes (int >= 0), got {self.cache!r}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if self.freeze_batchnorm not in (True, False, "auto"):
            raise ValueError(f"freeze_batchnorm must be True, False or 'auto', got {self.freeze_batchnorm!r}")
        if self.batch_size < 1 or (self.eval_batch_size is not None and self.eval_batch_size < 1):
            raise ValueError(f"batch sizes must be positive, got {self.batch_size} / {self.eval_batch_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {self.val_fraction}")

    def sources(self, caches: TrialCaches | None = None) -> tuple[Any, Any]:
        """(train, validation) sources, opened once per spec in ``caches`` (default: the process-level
        ``PROCESS_CACHES``); images are decoded lazily."""
        key = (self.train_data, self.val_data, self.val_fraction, self.split_seed)
        return (caches or PROCESS_CACHES).sources.get(key, lambda: _open_sources(*key))

    def use_mixed_precision(self) -> bool:
        if self.mixed_precision is None:
            return jax.default_backend() in ("gpu", "tpu")
        return bool(self.mixed_precision)


def save_array_dataset(path: str | os.PathLike, images: np.ndarray, labels: Sequence[int],
                       class_names: Sequence[str]) -> str:
    """Writes images [N, H, W, 3] (uint8), labels and class names to an ``.npz`` a TrialSpec can name.

    >>> import tempfile, numpy as np
    >>> p = save_array_dataset(tempfile.mkdtemp() + "/d.npz", np.zeros((2, 8, 8, 3), np.uint8), [0, 1], ["a", "b"])
    >>> len(load_source(p))
    2
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"array datasets are .npz files; got {path!r}")
    jdata.ArraySource(images, labels, class_names)  # validates
    np.savez(path, images=np.asarray(images), labels=np.asarray(labels, np.int64),
             class_names=np.asarray(list(class_names), dtype=str))
    return path


def load_source(spec: str | os.PathLike) -> Any:
    """A data source from a data spec: a folder path, ``'digits[:train|:test]'``, ``'tfds:<name>:<split>'`` or an
    ``.npz`` of :func:`save_array_dataset` (see ``jaxgluon.data.open_source``)."""
    return jdata.open_source(spec)


def _open_sources(train_data: str, val_data: str | None, val_fraction: float, split_seed: int) -> tuple[Any, Any]:
    train = load_source(train_data)
    jdata.require_classes(train, f"the training data {train_data!r}")   # where a trial's data enters
    if val_data is None:
        return jdata.stratified_split(train, val_fraction=val_fraction, seed=split_seed)
    val = load_source(val_data)
    if list(val.class_names) != list(train.class_names):
        raise ValueError(f"validation classes {val.class_names} differ from training classes {train.class_names} "
                         f"({val_data} vs {train_data})")
    return train, val


@functools.lru_cache(maxsize=64)
def _batch_size(requested: int, num_devices: int, num_train: int) -> int:
    """The batch size a trial uses: ``requested`` rounded up to the devices, at most the training set. Cached so
    that the warning about a smaller batch is logged once per process, not once per trial."""
    size = -(-requested // num_devices) * num_devices
    if size > num_train:
        size = max(num_devices, num_train // num_devices * num_devices)
        log.warning("batch size %d exceeds the %d training images; using %d", requested, num_train, size)
    return size


class _EpochTimer:
    """Training throughput that leaves out the first step of the call (compilation or cache load)."""

    def __init__(self) -> None:
        self.first_step_seconds: float | None = None
        self._skip_images = self._skip_seconds = 0.0

    def train(self, steps: CompiledSteps, state: TrainState, batches: Iterator[dict],
              deadline: float | None = None) -> tuple[TrainState, dict | None]:
        """One epoch's steps; ``(state, None)`` when the wall-clock ``deadline`` passes before the epoch ends."""
        start = time.perf_counter()
        metrics = []
        input_seconds = transfer_seconds = 0.0
        batches = iter(batches)
        while True:
            fetch = time.perf_counter()
            batch = next(batches, None)
            input_seconds += time.perf_counter() - fetch
            if batch is None:
                break
            if deadline is not None:
                if metrics:  # steps run asynchronously: wait for the one in flight, so the clock is honest
                    jax.block_until_ready(metrics[-1])
                if time.time() >= deadline:
                    return state, None
            step_start = time.perf_counter()
            batch = steps.shard(batch)
            transfer_seconds += time.perf_counter() - step_start
            state, m = steps.train_step(state, batch)
            metrics.append(m)
            if self.first_step_seconds is None:
                jax.block_until_ready(m)
                self.first_step_seconds = self._skip_seconds = time.perf_counter() - step_start
                self._skip_images = float(len(batch["label"]))
        sums = sum_metrics(metrics)                       # waits for the last step
        images, seconds = sums["count"] - self._skip_images, time.perf_counter() - start - self._skip_seconds
        if images <= 0:
            images, seconds = sums["count"], seconds + self._skip_seconds
        self._skip_images = self._skip_seconds = 0.0
        return state, {**sums, "images_per_sec": images / max(seconds, 1e-9), "input_seconds": input_seconds,
                       "transfer_seconds": transfer_seconds}


def _json_plain(config: Mapping[str, Any]) -> dict:
    """``config`` with numpy scalars turned into Python numbers (checkpoint metadata is JSON)."""
    return json.loads(json.dumps(dict(config), default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _initial_meta(trial: TrialConfig, config: Mapping[str, Any], model: Any, class_names: list[str],
                  image_size: int, mean: Sequence[float], std: Sequence[float], seed: int, dtype: Any) -> dict:
    return {
        "format": META_FORMAT, "net": trial.net, "num_classes": len(class_names), "class_names": class_names,
        "image_size": image_size, "mean": list(mean), "std": list(std), "config": _json_plain(config), "seed": seed,
        "compute_dtype": jnp.dtype(dtype).name,
        "pretrained_loaded": bool(getattr(model, "pretrained_loaded", False)),
        "pretrained_source": getattr(model, "pretrained_source", None),
    }


def train_trial(config: Mapping[str, Any], reporter: Any, spec: TrialSpec, caches: TrialCaches | None = None, *,
                resume_at_most: int | None = None) -> None:
    """Trains ``config`` for up to ``reporter.max_epochs`` epochs (module docstring); the tune trial protocol.

    ``caches``: the sources, decoded images and linear-probe features this trial shares with the other trials
    of its search (``jaxgluon.train.caches``; ``fit`` passes one per call); default the process-level
    ``PROCESS_CACHES``. Compiled programs are shared per process either way (``steps.PROGRAMS``).
    ``resume_at_most``: the newest own checkpoint a restart may continue from (``TrialCheckpointer.resume_epoch``);
    default ``reporter.reported_epoch``, the last epoch it reported (a PBT copy passes the copied epoch)."""
    if resume_at_most is None:
        resume_at_most = getattr(reporter, "reported_epoch", None)
    with CompileCounter() as counter:
        _train_trial(config, reporter, spec, caches or PROCESS_CACHES, counter, time.perf_counter(), resume_at_most)


def _phase(reporter: Any, called: float, what: str) -> None:
    """One line of a trial's start-up timeline (``JAXGLUON_LOG_LEVEL=INFO`` shows it from worker processes too)."""
    log.info("trial %s: %s at %.2f s", getattr(reporter, "trial_id", "?"), what, time.perf_counter() - called)


def _train_trial(config: Mapping[str, Any], reporter: Any, spec: TrialSpec, caches: TrialCaches,
                 counter: CompileCounter, called: float, resume_at_most: int | None) -> None:
    trial = TrialConfig.from_dict(config)
    _phase(reporter, called, f"started ({trial.net})")
    set_compile_flags(spec.gpu_autotune_level)   # a fresh worker: before its backend starts (compile_cache)
    if spec.compilation_cache:
        enable_compilation_cache()
    train_src, val_src = spec.sources(caches)
    class_names = list(train_src.class_names)
    info = models.model_info(trial.net)
    image_size = int(spec.image_size or info["input_size"])
    mean, std = tuple(info["mean"]), tuple(info["std"])
    mesh = make_mesh()
    _phase(reporter, called, f"data sources and {mesh.size} device(s) ready ({jax.default_backend()})")
    steps = PROGRAMS.steps(mesh)
    batch_size = _batch_size(trial.batch_size or spec.batch_size, mesh.size, len(train_src))
    eval_batch_size = -(-(spec.eval_batch_size or batch_size) // mesh.size) * mesh.size
    max_epochs, seed = int(reporter.max_epochs), int(reporter.seed)
    tx = optimizer_from_trial(trial, jdata.steps_per_epoch(len(train_src), batch_size), max_epochs)
    dtype = jnp.bfloat16 if spec.use_mixed_precision() else jnp.float32

    with TrialCheckpointer(pathlib.Path(reporter.checkpoint_dir) / CHECKPOINT_SUBDIR,
                           max_to_keep=spec.keep_checkpoints, background=True) as ckpt:
        start = ckpt.resume_epoch(resume_at_most) or 0
        if start >= max_epochs:
            return
        model = models.get_model(trial.net, len(class_names), pretrained=spec.pretrained if start == 0 else False,
                                 dtype=dtype, seed=seed)
        _phase(reporter, called, "model built")
        meta = (ckpt.restore_meta(start) if start else
                _initial_meta(trial, config, model, class_names, image_size, mean, std, seed, dtype))
        # the eval and train steps compile in the background while the probe runs (once per shape and process)
        warm = WarmStart.begin(steps, (trial.net, str(dtype), len(class_names)),
                               lambda: create_train_state(model, tx), train_batch=batch_size,
                               eval_batch=eval_batch_size, image_size=image_size)
        first_result: dict[str, Any] = {}
        probed = False
        if start == 0 and spec.head_init == "linear_probe" and meta["pretrained_loaded"]:
            probe_start = time.perf_counter()
            key = (trial.net, meta["pretrained_source"], meta["compute_dtype"], image_size, spec.train_data,
                   spec.val_data, spec.val_fraction, spec.split_seed)

            def extract() -> tuple[np.ndarray, np.ndarray]:  # only on a cache miss: the loader is built here
                loader = jdata.make_eval_loader(train_src, batch_size=eval_batch_size, image_size=image_size,
                                                mean=mean, std=std, worker_count=spec.worker_count,
                                                cache=spec.cache, decoded=caches.decoded)
                probe = steps.replicate(create_train_state(model, tx))
                features = lambda batch: steps.features_step(probe, steps.shard(batch)["image"])  # noqa: E731
                return pooled_features(features, loader, getattr(reporter, "deadline", None))

            try:
                feats, labels = cached_features(key, extract, caches.features)
            except DeadlinePassed as passed:
                log.info("trial %s: time limit reached while fitting the linear-probe head", reporter.trial_id)
                _write_probe_record(reporter.checkpoint_dir, {
                    "status": "incomplete", "setup_seconds": probe_start - called,
                    "feature_seconds": passed.seconds, "images_done": passed.images_done,
                    "first_batch_images": passed.first_batch[0], "first_batch_seconds": passed.first_batch[1],
                    "images_total": len(train_src)})
                return
            _phase(reporter, called, f"probe features of {len(labels)} images ready")
            set_head(model, *fit_linear_head(feats, labels, len(class_names)))
            meta["head_init"] = "linear_probe"
            first_result["linear_probe_seconds"] = time.perf_counter() - probe_start
            probed = True
        meta.setdefault("augment", jdata.resolve_augment(train_src, spec.augment))   # for test-time augmentation
        if "freeze_batchnorm" not in meta:  # a resumed trial keeps its first choice
            meta["freeze_batchnorm"] = (
                meta["pretrained_loaded"] and meta["augment"].startswith("resized_crop")
                if spec.freeze_batchnorm == "auto" else bool(spec.freeze_batchnorm))
        freeze = bool(meta["freeze_batchnorm"])
        state = steps.replicate(create_train_state(model, tx, label_smoothing=trial.label_smoothing,
                                                   freeze_batchnorm=freeze))
        if start:
            state = ckpt.restore(start, state)
            log.info("trial %s: resuming after epoch %d from %s", reporter.trial_id, start, ckpt.directory)
        val_loader = jdata.make_eval_loader(val_src, batch_size=eval_batch_size, image_size=image_size, mean=mean,
                                            std=std, worker_count=spec.worker_count, cache=spec.cache,
                                            decoded=caches.decoded)
        if probed:  # the linear-probe model is the trial's first model: scored and checkpointed as epoch 0
            _phase(reporter, called, "probe head fitted")
            warm.wait_eval()
            _phase(reporter, called, "eval step compiled")
            probe = _score_probe(steps, state, val_loader, ckpt, meta, spec.metric, reporter, called,
                                 probe_identity(key))
            if probe is None:
                return
            first_result.update(probe)
        # one iterator over the remaining epochs: epoch e's batches derive from (seed, e) wherever we start
        train_loader = jdata.make_train_loader(train_src, batch_size=batch_size, image_size=image_size, mean=mean,
                                               std=std, seed=seed, start_epoch=start, num_epochs=max_epochs,
                                               worker_count=spec.worker_count, augment=spec.augment,
                                               cache=spec.cache, decoded=caches.decoded)
        with contextlib.closing(iter(train_loader)) as batches:      # releases loader workers on PAUSE/STOP
            if probed:
                _phase(reporter, called, "probe scored")
            warm.wait_train()
            _phase(reporter, called, "train step compiled; epochs start")
            first_result["setup_seconds"] = time.perf_counter() - called
            _run_epochs(steps, state, batches, train_loader.steps_per_epoch, val_loader, ckpt, meta, reporter,
                        range(start + 1, max_epochs + 1), first_result, counter, spec.metric)


def validation_scores(sums: Mapping[str, float], metric: str = "accuracy") -> tuple[float, float, float]:
    """``(reward, top1, log_loss)`` of summed eval metrics; ``reward`` as :data:`METRICS` says."""
    count = max(float(sums["count"]), 1.0)
    top1, val_loss = float(sums["correct"]) / count, float(sums["loss"]) / count
    return (top1 if metric == "accuracy" else math.exp(-val_loss)), top1, val_loss


def _write_probe_record(directory: Any, record: dict) -> None:
    path = pathlib.Path(directory) / PROBE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)   # atomic: a reader never sees half a record


def read_probe_record(directory: Any) -> dict | None:
    """The linear-probe record of a trial directory (``reward``, ``val_top1``, ``val_loss``, ``identity``
    (:func:`probe_identity`), ``status``: 'scored' when epoch 0 holds the probe model; 'incomplete' with ``setup_seconds``/``feature_seconds``/``images_done``/
    ``images_total`` when the deadline came first), or None."""
    try:
        return json.loads((pathlib.Path(directory) / PROBE_FILE).read_text())
    except (OSError, ValueError):
        return None


def probe_identity(features_key: tuple) -> str:
    """Which linear-probe model a trial has: a digest of its features' cache key (net, pretrained weights, dtype,
    image size, data). The head is a deterministic fit of those features, so trials with the same identity hold
    the same probe model whatever their optimizer (the ensemble stage predicts it once)."""
    return hashlib.sha256(repr(features_key).encode()).hexdigest()[:16]


def _score_probe(steps: CompiledSteps, state: TrainState, val_loader: Any, ckpt: TrialCheckpointer, meta: dict,
                 metric: str, reporter: Any, called: float, identity: str | None = None) -> dict | None:
    """Scores the linear-probe model on validation like an epoch and checkpoints it as epoch 0 (so a fit whose
    budget ends before any fine-tuning epoch still has a model); None when the deadline passed first.
    ``identity``: :func:`probe_identity`, kept in the probe record."""
    deadline = getattr(reporter, "deadline", None)
    start = time.perf_counter()
    val = ValidationPass()
    for batch in val_loader:
        if deadline is not None:
            if val.outputs:
                jax.block_until_ready(val.outputs[-1])
            if time.time() >= deadline:
                log.info("trial %s: time limit reached while scoring the linear probe", reporter.trial_id)
                _write_probe_record(reporter.checkpoint_dir, {"status": "incomplete", "setup_seconds":
                                                              start - called, "scoring": True})
                return None
        val.add(steps, state, batch)
    reward, top1, val_loss = validation_scores(val.sums(), metric)
    record = {"status": "scored", "reward": reward, "val_top1": top1, "val_loss": val_loss,
              "seconds": time.perf_counter() - called, "identity": identity}
    # the record promises a complete checkpoint: the writer thread writes it once epoch 0 is on disk
    written = lambda: _write_probe_record(reporter.checkpoint_dir, record)  # noqa: E731
    if PROBE_EPOCH not in ckpt.all_epochs():
        ckpt.save(PROBE_EPOCH, state, reward=reward, meta={**meta, "val_top1": top1, "val_loss": val_loss},
                  on_written=written, predictions=val.predictions())
    else:
        written()
    seconds = time.perf_counter() - start
    return {"probe_reward": reward, "probe_top1": top1, "probe_val_loss": val_loss, "probe_eval_seconds": seconds}


def _run_epochs(steps: CompiledSteps, state: TrainState, batches: Iterator[dict], steps_per_epoch: int,
                val_loader: Any, ckpt: TrialCheckpointer, meta: dict, reporter: Any, epochs: range,
                first_result: dict | None = None, counter: CompileCounter | None = None,
                metric: str = "accuracy") -> None:
    timer = _EpochTimer()
    deadline = getattr(reporter, "deadline", None)
    for epoch in epochs:
        epoch_start = time.perf_counter()
        state, train = timer.train(steps, state, itertools.islice(batches, steps_per_epoch), deadline)
        if train is None:  # the experiment's time limit ran out mid-epoch: stop now rather than overrun it
            log.info("trial %s: time limit reached during epoch %d; stopping (latest checkpoint: epoch %d)",
                     reporter.trial_id, epoch, epoch - 1)
            return
        eval_start = time.perf_counter()
        val = ValidationPass.over(steps, state, val_loader)
        reward, top1, val_loss = validation_scores(val.sums(), metric)
        save_start = time.perf_counter()
        ckpt.save(epoch, state, reward=reward, meta={**meta, "val_top1": top1, "val_loss": val_loss},
                  predictions=val.predictions())
        save_end = time.perf_counter()
        result = {
            "reward": reward,
            "val_top1": top1,
            "train_loss": train["loss"] / max(train["count"], 1.0),
            "train_accuracy": train["correct"] / max(train["count"], 1.0),
            "val_loss": val_loss,
            "epoch_seconds": save_end - epoch_start,
            "train_seconds": eval_start - epoch_start,
            "input_seconds": train["input_seconds"],
            "transfer_seconds": train["transfer_seconds"],
            "eval_seconds": save_start - eval_start,
            "checkpoint_seconds": save_end - save_start,
            "images_per_sec": train["images_per_sec"],
            "pretrained_loaded": bool(meta["pretrained_loaded"]),
        }
        if counter is not None:  # cumulative over this call: later epochs add nothing once compiled
            result.update(compilations=counter.compilations, compile_seconds=counter.compile_seconds)
        if epoch == epochs.start:
            result.update(first_step_seconds=timer.first_step_seconds, **(first_result or {}))
        if reporter(epoch=epoch, **result) != "CONTINUE":
            return
