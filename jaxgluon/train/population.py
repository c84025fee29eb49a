"""Population trials: K configs of one (net, image size, batch size) trained as one program.

Parameters, BatchNorm statistics and optimizer state carry a leading member axis; one ``jax.vmap`` of the ordinary
``train_step``/``eval_step`` (``jaxgluon.train.steps``) is jit-compiled once per population and advances every
member by one step (on CPU the program loops over members with ``jax.lax.map`` inside the same compiled program;
see ``Population``'s ``vmap_members``). What differs between members is data, not program:

- the optimizer kind (SGD, Adam, AdamW), learning rate, momentum / betas / eps, weight decay and the schedule (kind,
  warmup, power, boundaries) are the ``hyperparams`` of the trial optimizer's state (``optim.TrialOptState``, the
  one optimizer program of every trial), so a member's numbers live in its own slice of the stacked optimizer
  state, and members of different optimizer families share the program;
- label smoothing and the frozen-BatchNorm flag are the member's slice of the stacked ``TrainState.hparams``,
  which the ordinary ``train_step`` reads;
- each member has its own data order (its own loader seeded with its trial seed, exactly the batches an ordinary
  trial with that seed sees), or, with ``shared_batches=True``, every member trains on the same batches (one
  loader: faster input pipeline, less diversity). For cached 'pad_crop' sources (CIFAR, digits) the members' own
  batches are already one numpy gather per step (``population_batches.StackedBatches``), so sharing them saves
  little there; each step's batches of all members travel to the device in one ``device_put``.

So changing a member's hyperparameters, or putting a new config in a freed slot, never recompiles. A slot is
(re)filled in place from the pretrained weights with the linear-probe head (``TrialSpec.head_init``), from the
member's own checkpoint (a resumed or promoted trial), or -- for a PBT exploit -- by an in-memory gather of
another member's slot.

    pop = Population(spec, first_config, max_epochs=10, capacity=8)      # compiles once, checks memory
    pop.add(trial_id=0, config=cfg, checkpoint_dir=d0, seed=s0)
    for trial_id, outcome in pop.run_epoch():   # outcome: the epoch's result dict, or an error string (NaN ...)
        ...
    pop.remove(0)

Each member checkpoints every epoch into ``checkpoint_dir/checkpoints`` in the ordinary trial format, so
``load_trained`` and resumes work on a population member like on any trial. The checkpoints of an epoch are
written by a background thread while the next epoch trains, from one copy of the stacked state to the host;
``remove``, ``close`` and ``wait_saves`` wait for them. The train and eval programs are compiled once, side by side,
when the population is built; the validation batches stay on the device between epochs. ``Population.timings``
adds up wall seconds per phase (build, adding members, batch assembly, transfer, steps, eval, checkpoints). The
population runs on one device (the first local device).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import os
import pathlib
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxgluon import data as jdata
from jaxgluon import models
from jaxgluon.train import val_predictions
from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.compile_cache import enable_compilation_cache
from jaxgluon.train.linear_probe import cached_features, fit_linear_head, pooled_features, set_head
from jaxgluon.train.optim import TrialConfig, optimizer_from_trial
from jaxgluon.train.population_batches import PhaseTimes, StackedBatches
from jaxgluon.train.population_config import CLONE_KEY, population_key, strip_clone, with_hyperparams
from jaxgluon.train.population_memory import MEMORY_FRACTION, auto_capacity, compiled_bytes, free_device_memory
from jaxgluon.train.population_program import abstract_args, member_programs
from jaxgluon.train.state import TrainState, create_train_state
from jaxgluon.train.steps import PROBS
from jaxgluon.train.trial import (CHECKPOINT_SUBDIR, TrialSpec, _batch_size, _initial_meta, _json_plain,
                                  validation_scores)

log = logging.getLogger("jaxgluon.train")

#: Validation batches are kept on the device between epochs when they take at most this many bytes.
EVAL_ON_DEVICE_MAX_BYTES = 256 * 2**20


@dataclasses.dataclass
class _Member:
    trial_id: int
    config: dict
    trial: TrialConfig
    seed: int
    max_epochs: int
    epoch: int
    meta: dict
    ckpt: TrialCheckpointer
    first_result: dict


class Population:
    """K member slots of one program (module docstring). Not thread-safe; one driver calls it.

    ``vmap_members``: how many members one ``vmap`` covers; the program loops (``jax.lax.map``) over such groups.
    'auto': all of them (one vmap) on GPU/TPU, where a wider program fills the device; 1 on CPU, where the loop
    runs each member's step exactly as an ordinary trial's (bit-identical results) and a vmapped ResNet step was
    1.6x slower than the loop (oneDNN convolutions run member by member under vmap, batched matmuls lose; K=8
    cifar_resnet20_v1 at 32 px: 0.080 CPU s per member-step looped, 0.132 vmapped, 0.116 for an ordinary trial's
    step; remeasured with ``--step-variants``: looped 1.6x the vmap's img/s, 3.6x the vmap with im2col
    convolutions; benchmarks/history/2026-12-04-population.md).

    ``conv_lowering``: the program's convolutions ('auto': ``models.layers.conv2d``'s per-backend choice; 'xla' or
    'im2col' forced). Under one vmap, XLA turns each convolution into one grouped convolution
    (``feature_group_count`` = members), whose backward pass is known to run as slowly as the dense one on CUDA
    (jax-ml/jax#13800); 'im2col' makes them batched matmuls instead (exact FLOPs, more memory traffic).
    ``benchmarks/population.py --step-variants 1,all,all:im2col`` measures the choices on a device.

    Results: the looped program (``vmap_members=1``) gives each member exactly its ordinary trial's curve, in
    float32 and in bfloat16 (measured bit-identical on CPU). A vmapped program gives the same curve only within
    the arithmetic's rounding as amplified by training: in float32 ~1e-7 relative per op, within 1e-5 relative
    train loss after 2 epochs (tests/train/test_population.py); in bfloat16 (the accelerators' default) 2**-8 per
    op, and after an epoch or two the curves differ as much as the trial's own bfloat16 and float32 curves do
    (digits, CPU: vmapped-vs-looped bf16 4.1e-2 / 2.0e-2 relative train loss at epochs 1 / 2, bf16-vs-f32 of
    the same trial 3.4e-2 / 4.0e-2; H200, K=32, one epoch: 1.7e-2). So under bfloat16 there is no float
    tolerance to state: a vmapped member's curve is the ordinary trial's up to bfloat16 training noise.
    """

    def __init__(self, spec: TrialSpec, config: Mapping[str, Any], max_epochs: int, capacity: int | str = "auto",
                 shared_batches: bool = False, vmap_members: int | str = "auto", blocking_timings: bool = False,
                 conv_lowering: str = "auto"):
        built = time.perf_counter()
        #: wall seconds per phase (``population_batches.PHASES``); ``blocking_timings`` waits for the device after
        #: each transfer and step so that each phase holds only its own time (benchmarks; no host/device overlap)
        self.timings = PhaseTimes()
        self.blocking_timings = bool(blocking_timings)
        if spec.compilation_cache:
            enable_compilation_cache()
        self.spec, self.max_epochs, self.shared_batches = spec, int(max_epochs), bool(shared_batches)
        if vmap_members != "auto" and (isinstance(vmap_members, bool) or not isinstance(vmap_members, int)
                                       or vmap_members < 1):
            raise ValueError(f"vmap_members must be a positive int or 'auto', got {vmap_members!r}")
        self._vmap_members = vmap_members
        if conv_lowering not in ("auto", "xla", "im2col"):
            raise ValueError(f"conv_lowering must be 'auto', 'xla' or 'im2col', got {conv_lowering!r}")
        self.conv_lowering = conv_lowering
        self.key = population_key(config, spec)
        self.family = TrialConfig.from_dict(strip_clone(config))
        self.device = jax.local_devices()[0]
        self.train_src, self.val_src = spec.sources()
        self.class_names = list(self.train_src.class_names)
        info = models.model_info(self.family.net)
        self.image_size = int(spec.image_size or info["input_size"])
        self.mean, self.std = tuple(info["mean"]), tuple(info["std"])
        self.batch_size = _batch_size(self.family.batch_size or spec.batch_size, 1, len(self.train_src))
        self.eval_batch_size = spec.eval_batch_size or self.batch_size
        self.steps_per_epoch = jdata.steps_per_epoch(len(self.train_src), self.batch_size)
        self.dtype = jnp.bfloat16 if spec.use_mixed_precision() else jnp.float32
        self.tx = optimizer_from_trial(self.family, self.steps_per_epoch, self.max_epochs)
        # a template member: the program's shapes (every member's numbers are its own slice of the state)
        template, _ = self._fresh_state(self.family, strip_clone(config), seed=0, probe=False)
        self.graphdef = template.graphdef
        self._build_steps()
        self._eval_compiling: concurrent.futures.Future | None = None
        self.capacity, self._train = self._choose_capacity(capacity, template)
        self._eval_compiled = self._eval_compiling.result()
        # stacked on the host and put once: a per-leaf jnp.stack compiles one tiny program per leaf shape
        self.state = jax.device_put(
            jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], self.capacity, axis=0), template), self.device)
        self.slots: list[_Member | None] = [None] * self.capacity
        self._batches = StackedBatches(self.capacity)
        self._shared_iter: Iterator[dict] | None = None
        self._eval_batches: list[dict] | None = None
        self.num_compiles = 1
        # members' checkpoints are written by one background thread while the next epoch trains (the host thread
        # is otherwise idle then); every step that touches checkpoints on disk first waits for it (``wait_saves``)
        self._saver = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="population-ckpt")
        self._saving: concurrent.futures.Future | None = None
        self._save_error: Exception | None = None
        self.timings.add("build", time.perf_counter() - built)

    # ---- program --------------------------------------------------------------------------------------------
    def _build_steps(self) -> None:
        chunk = self._vmap_members
        if chunk == "auto":
            chunk = 1 if self.device.platform == "cpu" else None
        self.vmap_members = chunk  # None: every member in one vmap
        self._train_fn, self._eval, self._put, self._take = member_programs(chunk, self.shared_batches,
                                                                            self.conv_lowering)

    def _abstract_args(self, k: int, template: TrainState) -> tuple:
        return abstract_args(k, template, self.batch_size, self.image_size, self.shared_batches)

    def _compile_train(self, k: int, template: TrainState) -> Any:
        return self._train_fn.lower(*self._abstract_args(k, template)).compile()

    def _start_eval_compile(self, k: int, template: TrainState) -> None:
        """Compiles the evaluation program of ``k`` members in a thread, beside the train program's compilation
        (XLA compiles without the GIL), so neither the first epoch nor the build waits for it alone."""
        state, _ = self._abstract_args(k, template)
        _, batch = abstract_args(k, template, self.eval_batch_size, self.image_size, shared_batches=True)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="population-compile")
        self._eval_compiling = pool.submit(lambda: self._eval.lower(state, batch).compile())
        pool.shutdown(wait=False)   # the thread ends with its one task

    def _choose_capacity(self, capacity: int | str, template: TrainState) -> tuple[int, Any]:
        """Checks the memory of ``capacity`` members up front (from the compiled step's memory analysis); 'auto'
        takes as many as fit in ``MEMORY_FRACTION`` of the free memory, at most ``CPU_AUTO_MAX_MEMBERS`` on CPU.
        Returns the capacity and the compiled train step."""
        free = free_device_memory(self.device)
        if capacity == "auto":
            chosen = self.auto_capacity(template)
            self._start_eval_compile(chosen, template)
            return chosen, self._compile_train(chosen, template)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"population_size must be a positive int or 'auto', got {capacity!r}")
        self._start_eval_compile(capacity, template)
        compiled = self._compile_train(capacity, template)
        needed = compiled_bytes(compiled)
        if needed is not None and needed > MEMORY_FRACTION * free:
            per = needed / capacity
            raise MemoryError(
                f"a population of {capacity} {self.family.net} members at {self.image_size} px, batch "
                f"{self.batch_size} needs about {needed / 2**30:.2f} GiB but {free / 2**30:.2f} GiB is free on "
                f"{self.device}; use population_size <= {max(1, int(MEMORY_FRACTION * free // per))} or 'auto'")
        return capacity, compiled

    def auto_capacity(self, template: TrainState | None = None) -> int:
        """What ``population_size='auto'`` chooses for this population's program on its device now: as many
        members as ``MEMORY_FRACTION`` of the free memory holds by the one-member program's memory analysis (at
        most ``CPU_AUTO_MAX_MEMBERS`` on CPU). Compiles the one-member program (a persistent-cache hit after the
        first time)."""
        if template is None:
            template = self._take(self.state, 0)
        free = free_device_memory(self.device)
        one = compiled_bytes(self._compile_train(1, template))
        per_member = one or 4 * sum(x.nbytes for x in jax.tree.leaves(template))
        chosen = auto_capacity(per_member, free, self.device.platform)
        log.info("population_size='auto': %d members (%.1f MiB each, %.1f GiB free on %s)", chosen,
                 per_member / 2**20, free / 2**30, self.device)
        return chosen

    # ---- members --------------------------------------------------------------------------------------------
    def _fresh_state(self, trial: TrialConfig, config: dict, seed: int, probe: bool = True,
                     deadline: float | None = None) -> tuple[TrainState, dict]:
        model = models.get_model(trial.net, len(self.class_names), pretrained=self.spec.pretrained,
                                 dtype=self.dtype, seed=seed)
        meta = _initial_meta(trial, config, model, self.class_names, self.image_size, self.mean, self.std, seed,
                             self.dtype)
        if probe and self.spec.head_init == "linear_probe" and meta["pretrained_loaded"]:
            key = (trial.net, meta["pretrained_source"], meta["compute_dtype"], self.image_size,
                   self.spec.train_data, self.spec.val_data, self.spec.val_fraction, self.spec.split_seed)

            def extract() -> tuple[np.ndarray, np.ndarray]:
                loader = jdata.make_loader(self.train_src, batch_size=self.eval_batch_size,
                                           image_size=self.image_size, mean=self.mean, std=self.std, train=False,
                                           worker_count=self.spec.worker_count, cache=self.spec.cache)
                return pooled_features(model, loader, deadline)

            set_head(model, *fit_linear_head(*cached_features(key, extract), len(self.class_names)))
            meta["head_init"] = "linear_probe"
        freeze = self.spec.freeze_batchnorm
        meta["augment"] = jdata.resolve_augment(self.train_src, self.spec.augment)   # for test-time augmentation
        meta["freeze_batchnorm"] = (meta["pretrained_loaded"] and meta["augment"].startswith("resized_crop")
                                    if freeze == "auto" else bool(freeze))
        state = create_train_state(model, self.tx)
        if hasattr(self, "graphdef"):
            state = state.replace(graphdef=self.graphdef)
        return self._with_hyperparams(state, trial, meta), meta

    def _with_hyperparams(self, state: TrainState, trial: TrialConfig, meta: Mapping[str, Any]) -> TrainState:
        return with_hyperparams(state, trial, self.steps_per_epoch, self.max_epochs,
                                bool(meta.get("freeze_batchnorm", False)))

    @property
    def members(self) -> dict[int, int]:
        """``{trial_id: slot}`` of the members training now."""
        return {m.trial_id: k for k, m in enumerate(self.slots) if m is not None}

    @property
    def num_free(self) -> int:
        return sum(m is None for m in self.slots)

    def member_epoch(self, trial_id: int) -> int:
        return self.slots[self.members[trial_id]].epoch

    def add(self, trial_id: int, config: Mapping[str, Any], checkpoint_dir: str | os.PathLike, seed: int,
            max_epochs: int | None = None, deadline: float | None = None, reported_epoch: int | None = None) -> int:
        """Puts a trial in a free slot and returns the slot. It starts from its own latest checkpoint when it has
        one (resume, promotion, restart; none newer than ``reported_epoch``, the last epoch it reported:
        ``TrialCheckpointer.resume_epoch``), else as a copy of another trial (``config[CLONE_KEY]``: PBT exploit;
        an in-memory gather when the source is in this population at that epoch), else fresh."""
        if self.num_free == 0:
            raise RuntimeError(f"the population is full ({self.capacity} members); remove one first")
        if trial_id in self.members:
            raise ValueError(f"trial {trial_id} is already a member")
        clone = config.get(CLONE_KEY)
        clean = strip_clone(config)
        trial = TrialConfig.from_dict(clean)
        if population_key(clean, self.spec) != self.key:
            raise ValueError(f"config {clean} cannot join this population (it needs another program: "
                             f"{population_key(clean, self.spec)} vs {self.key})")
        max_epochs = self.max_epochs if max_epochs is None else int(max_epochs)
        if max_epochs != self.max_epochs:
            raise ValueError(f"members of one population share max_epochs={self.max_epochs}, got {max_epochs}")
        slot = self.slots.index(None)
        with self.timings.phase("add"):
            return self._add(slot, trial_id, clean, clone, trial, checkpoint_dir, seed, deadline, reported_epoch)

    def _add(self, slot: int, trial_id: int, clean: dict, clone: Mapping | None, trial: TrialConfig,
             checkpoint_dir: Any, seed: int, deadline: float | None, reported_epoch: int | None) -> int:
        ckpt = TrialCheckpointer(pathlib.Path(checkpoint_dir) / CHECKPOINT_SUBDIR,
                                 max_to_keep=max(2, self.spec.keep_checkpoints))
        try:
            member_state, meta, start = self._initial_member(trial, clean, clone, ckpt, checkpoint_dir, seed,
                                                             deadline, reported_epoch)
        except BaseException:
            ckpt.close()
            raise
        self.state = self._put(self.state, slot, jax.device_put(member_state, self.device))
        if not self.shared_batches:
            self._batches.open(slot, jdata.make_loader(
                self.train_src, batch_size=self.batch_size, image_size=self.image_size, mean=self.mean,
                std=self.std, train=True, seed=int(seed), start_epoch=start, num_epochs=self.max_epochs,
                worker_count=self.spec.worker_count, augment=self.spec.augment, cache=self.spec.cache))
        self.slots[slot] = _Member(trial_id, clean, trial, int(seed), self.max_epochs, start, meta, ckpt, {})
        return slot

    def _initial_member(self, trial: TrialConfig, clean: dict, clone: Mapping | None, ckpt: TrialCheckpointer,
                        checkpoint_dir: Any, seed: int, deadline: float | None,
                        reported_epoch: int | None) -> tuple[TrainState, dict, int]:
        template = self._take(self.state, 0)
        latest = ckpt.resume_epoch(reported_epoch)
        own_meta = ckpt.restore_meta(latest) if latest else None
        if latest and (clone is None or own_meta.get("pbt_exploit") == clone.get("exploit")):
            state = ckpt.restore(latest, template)
            return self._with_hyperparams(state, trial, own_meta), own_meta, latest
        if clone is not None:
            source, epoch = int(clone["trial_id"]), int(clone["epoch"])
            slot = self.members.get(source)
            if slot is not None and self.slots[slot].epoch == epoch:  # exploit as an in-memory gather
                state, meta = self._take(self.state, slot), dict(self.slots[slot].meta)
            else:
                self.wait_saves(raise_error=False)
                src_dir = pathlib.Path(checkpoint_dir).parent / str(source) / CHECKPOINT_SUBDIR
                with TrialCheckpointer(src_dir, read_only=True) as src:
                    if epoch not in src.all_epochs():
                        raise FileNotFoundError(f"PBT clone source trial {source} has no checkpoint of epoch {epoch} "
                                                f"in {src_dir} (kept: {src.all_epochs()})")
                    state, meta = src.restore(epoch, template), src.restore_meta(epoch)
            ckpt.delete_from(epoch + 1)
            meta.update(config=_json_plain(clean), seed=int(seed), pbt_exploit=clone.get("exploit"),
                        pbt_source=source)
            return self._with_hyperparams(state, trial, meta), meta, epoch
        state, meta = self._fresh_state(trial, clean, seed, deadline=deadline)
        return state, meta, 0

    def remove(self, trial_id: int) -> None:
        """Frees the trial's slot (its last checkpoint stays on disk); the slot's arrays are overwritten later."""
        slot = self.members[trial_id]
        self.wait_saves(raise_error=False)
        member = self.slots[slot]
        self.slots[slot] = None
        self._batches.close(slot)
        member.ckpt.close()

    def wait_saves(self, raise_error: bool = True) -> None:
        """Blocks until the members' checkpoints of the last epoch are written. A failed save is raised here, or
        with ``raise_error=False`` kept for the next ``run_epoch`` (where the executor fails the population's
        members), so removing or closing never fails on another member's checkpoint."""
        if self._saving is not None:
            saving, self._saving = self._saving, None
            try:
                saving.result()
            except Exception as err:  # noqa: BLE001 -- kept and raised where the caller isolates failures
                self._save_error = err
        if raise_error and self._save_error is not None:
            err, self._save_error = self._save_error, None
            raise RuntimeError(f"writing the members' checkpoints failed: {type(err).__name__}: {err}") from err

    def close(self) -> None:
        try:
            for trial_id in list(self.members):
                self.remove(trial_id)
        finally:
            with self.timings.phase("checkpoint_wait"):
                self.wait_saves(raise_error=False)
            self._saver.shutdown(wait=True)
            self._batches.close_all()
            if self._save_error is not None:
                log.error("population closed after a failed checkpoint write: %s", self._save_error)

    # ---- training -------------------------------------------------------------------------------------------
    def _next_batches(self, active: list[int]) -> dict[str, np.ndarray]:
        if self.shared_batches:
            if self._shared_iter is None:
                loader = jdata.make_loader(self.train_src, batch_size=self.batch_size, image_size=self.image_size,
                                           mean=self.mean, std=self.std, train=True, seed=self.spec.split_seed,
                                           num_epochs=10**6, worker_count=self.spec.worker_count,
                                           augment=self.spec.augment, cache=self.spec.cache)
                self._shared_iter = iter(loader)
            return next(self._shared_iter)
        return self._batches.next(active)

    def run_epoch(self, deadline: float | None = None) -> list[tuple[int, dict | str]] | None:
        """Trains every member one epoch, evaluates, checkpoints; returns ``[(trial_id, result or error)]``.

        A member whose training loss is not finite gets an error string instead of a result (its neighbours are
        untouched: members share no arrays). Returns None when the wall-clock ``deadline`` passed mid-epoch (no
        member advanced its epoch counter; their checkpoints are those of the previous epoch).
        """
        active = [k for k, m in enumerate(self.slots) if m is not None]
        if not active:
            return []
        if self._save_error is not None:
            self.wait_saves()       # raises the failed checkpoint write of the last epoch
        start = time.perf_counter()
        sums, first_step = [], None
        for i in range(self.steps_per_epoch):
            if deadline is not None:
                if sums:
                    jax.block_until_ready(sums[-1])
                if time.time() >= deadline:
                    return None
            with self.timings.phase("assemble"):
                batch = self._next_batches(active)
            with self.timings.phase("transfer"):   # one transfer of every member's batch
                batch = jax.device_put(batch, self.device)
                if self.blocking_timings:
                    jax.block_until_ready(batch)
            t0 = time.perf_counter()
            self.state, metrics = self._train(self.state, batch)
            sums.append(metrics)
            if i == 0 or self.blocking_timings:
                jax.block_until_ready(metrics)
            if i == 0:
                first_step = time.perf_counter() - t0
            self.timings.add("step", time.perf_counter() - t0)
        t0 = time.perf_counter()
        train = {k: np.sum(np.stack([np.asarray(m[k], np.float64) for m in jax.device_get(sums)]), axis=0)
                 for k in sums[0]}
        self.timings.add("step", time.perf_counter() - t0)   # the steps still in flight
        train_seconds = time.perf_counter() - start
        with self.timings.phase("eval"):
            val, predictions = self._evaluate()
        epoch_seconds = time.perf_counter() - start
        out: list[tuple[int, dict | str]] = []
        saves: list[tuple[TrialCheckpointer, int, TrainState, float, dict, dict | None]] = []
        checkpoint_start = time.perf_counter()
        # every member's slice comes from one copy of the stacked state to the host (one transfer per leaf, not
        # one per leaf and member), taken now, before the next step donates the stacked state
        host = jax.device_get(self.state)
        for k in active:
            member = self.slots[k]
            member.epoch += 1
            loss = train["loss"][k] / max(train["count"][k], 1.0)
            if not math.isfinite(loss):
                out.append((member.trial_id, f"training diverged: non-finite training loss ({loss}) at epoch "
                                             f"{member.epoch} (learning rate "
                                             f"{member.trial.optimizer['learning_rate']})"))
                continue
            # ranked by the spec's metric like an ordinary trial (task.fit's metric='auto' may pick log-loss)
            reward, top1, val_loss = validation_scores({key: val[key][k] for key in ("correct", "loss", "count")},
                                                       self.spec.metric)
            # the slice is taken now (before the next step donates the stacked state), written in the background
            saves.append((member.ckpt, member.epoch, jax.tree.map(lambda x, k=k: x[k], host), reward,
                          {**member.meta, "val_top1": top1, "val_loss": val_loss}, predictions(k)))
            result = {
                "reward": reward, "val_top1": top1, "train_loss": float(loss),
                "train_accuracy": float(train["correct"][k] / max(train["count"][k], 1.0)),
                "val_loss": val_loss,
                "epoch_seconds": epoch_seconds,
                "images_per_sec": float(train["count"][k]) / max(train_seconds, 1e-9),
                "population_images_per_sec": float(np.sum(train["count"][active])) / max(train_seconds, 1e-9),
                "population_size": self.capacity, "population_members": len(active),
                "pretrained_loaded": bool(member.meta["pretrained_loaded"]),
                "epoch": member.epoch,
            }
            if member.meta.get("pbt_source") is not None and member.meta.get("pbt_reported") != member.meta.get(
                    "pbt_exploit"):
                result.update(pbt_source=member.meta["pbt_source"], pbt_exploit=member.meta["pbt_exploit"])
                member.meta["pbt_reported"] = member.meta["pbt_exploit"]
            if not member.first_result:
                member.first_result = {"first_step_seconds": first_step}
                result.update(member.first_result)
            out.append((member.trial_id, result))
        self.timings.add("checkpoint", time.perf_counter() - checkpoint_start)
        with self.timings.phase("checkpoint_wait"):
            self.wait_saves()
        self._saving = self._saver.submit(_save_all, saves, self.timings)
        return out

    def _evaluate(self) -> tuple[dict[str, np.ndarray], Callable[[int], dict | None]]:
        """The members' summed metrics (a member axis) and member slot -> its validation predictions (or None)."""
        if self._eval_batches is None:
            loader = jdata.make_loader(self.val_src, batch_size=self.eval_batch_size, image_size=self.image_size,
                                       mean=self.mean, std=self.std, train=False,
                                       worker_count=self.spec.worker_count, cache=self.spec.cache)
            n = jdata.steps_per_epoch(len(self.val_src), self.eval_batch_size, train=False)
            if n * self.eval_batch_size * self.image_size**2 * 3 * 4 > EVAL_ON_DEVICE_MAX_BYTES:
                batches = loader
            else:   # every epoch evaluates the same batches: rendered and put on the device once
                batches = self._eval_batches = [jax.device_put(b, self.device) for b in loader]
        else:
            batches = self._eval_batches
        metrics, rows = [], []
        for batch in batches:   # a loader is read once
            metrics.append(self._eval_compiled(self.state, batch))
            rows.append((batch["mask"], batch["label"]))
        masks, labels = zip(*jax.device_get(rows))
        keep = val_predictions.fits(masks, metrics[0][PROBS].shape[-1])   # each member's, kept with its checkpoint
        host = jax.device_get([{k: v for k, v in m.items() if keep or k != PROBS} for m in metrics])
        sums = {k: np.sum(np.stack([np.asarray(m[k], np.float64) for m in host]), axis=0)
                for k in host[0] if k != PROBS}
        return sums, ((lambda k: val_predictions.gather([m[PROBS][k] for m in host], masks, labels)) if keep
                      else lambda k: None)


def _save_all(saves: list[tuple[TrialCheckpointer, int, TrainState, float, dict, dict | None]],
              timings: PhaseTimes) -> None:
    with timings.phase("checkpoint"):   # in the background thread: overlaps the next epoch's steps
        for ckpt, epoch, state, reward, meta, predictions in saves:
            ckpt.save(epoch, state, reward=reward, meta=meta, predictions=predictions)
