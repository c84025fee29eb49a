"""The input side of a population step: the members' batches stacked along the member axis, and where time goes.

``StackedBatches`` builds one population step's ``{'image': [K, B, S, S, 3], 'label': [K, B], 'mask': [K, B]}``
from the members' own train loaders (each seeded with its trial seed, so a member sees exactly its ordinary
trial's batches). When every member's loader renders cached 'pad_crop' batches (``jaxgluon.data.pad_crop``, the
CIFAR recipe), the step's batches of all members are one numpy gather and one normalisation (no per-member
batch building at all); otherwise each member's loader yields its batch and they are stacked (on the device when
the loaders render there, ``batch_augment='device'``). Free slots get a copy of the first member's batch (their
results are never read).

``PhaseTimes`` adds up wall seconds per phase of a population's life (build, adding members, batch assembly,
host->device transfer, the step, evaluation, checkpoint writes), which ``Population.timings`` reports and
``benchmarks/population.py`` prints. With ``blocking=True`` the population waits for the device after each
transfer and step, so each phase holds only its own time (slightly slower overall: no overlap of host and device).

    batches = StackedBatches(capacity=4)
    batches.open(slot=0, loader=loader0)     # a member's make_train_loader(...)
    step_batch = batches.next(active=[0])    # numpy arrays (or jax arrays) with a leading member axis of 4
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxgluon.data import pad_crop

#: The phases ``PhaseTimes`` reports, in the order of a population's life.
PHASES = ("build", "add", "assemble", "transfer", "step", "eval", "checkpoint", "checkpoint_wait")


class PhaseTimes:
    """Cumulative wall seconds (and counts) per phase of ``PHASES``."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.counts = dict.fromkeys(PHASES, 0)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.counts[name] += 1

    def as_dict(self) -> dict[str, float]:
        return {name: round(s, 4) for name, s in self.seconds.items()}


class StackedBatches:
    """The members' train batches of one population step (module docstring). Not thread-safe."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._iters: list[Iterator[Any] | None] = [None] * self.capacity   # draws (pad_crop) or batches
        self._epochs: list[pad_crop.PadCropEpochs | None] = [None] * self.capacity
        self._closers: list[contextlib.ExitStack | None] = [None] * self.capacity

    def open(self, slot: int, loader: Any) -> None:
        """Takes ``loader`` (a member's ``make_train_loader``) as slot ``slot``'s batches from now on."""
        self.close(slot)
        closer = contextlib.ExitStack()
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, pad_crop.PadCropEpochs):
            self._epochs[slot], self._iters[slot] = dataset, dataset.draws()
        else:
            self._epochs[slot] = None
            self._iters[slot] = iterator = iter(loader)
            if hasattr(iterator, "close"):   # a generator: releases the loader's workers when the slot is freed
                closer.callback(iterator.close)
        self._closers[slot] = closer

    def close(self, slot: int) -> None:
        if self._closers[slot] is not None:
            self._closers[slot].close()
        self._iters[slot] = self._epochs[slot] = self._closers[slot] = None

    def close_all(self) -> None:
        for slot in range(self.capacity):
            self.close(slot)

    def next(self, active: list[int]) -> dict[str, Any]:
        """The next step's stacked batch of the ``active`` slots (every other slot: a copy of the first's)."""
        fill = np.asarray([k if self._iters[k] is not None and k in active else active[0]
                           for k in range(self.capacity)])
        first = self._epochs[active[0]]
        if first is not None and all(self._epochs[k] is not None and self._epochs[k].images is first.images
                                     for k in active):
            return self._gathered(active, fill, first)
        per_slot = {k: next(self._iters[k]) for k in active}
        filler = per_slot[active[0]]
        # batches rendered on the device (``batch_augment='device'``, the accelerators' default) stay there
        stack = jnp.stack if any(isinstance(v, jax.Array) for v in filler.values()) else np.stack
        return {key: stack([per_slot.get(int(k), filler)[key] for k in fill]) for key in filler}

    def _gathered(self, active: list[int], fill: np.ndarray, first: pad_crop.PadCropEpochs) -> dict[str, Any]:
        draws = {k: next(self._iters[k]) for k in active}
        rows = np.stack([draws[int(k)] for k in fill])                  # [K, B, 4]
        k, b = rows.shape[:2]
        flat = rows.reshape(k * b, 4)
        batch = first.batch(flat)      # one gather + one normalisation for every member
        return {key: value.reshape((k, b) + value.shape[1:]) for key, value in batch.items()}
