"""Compiling a trial's eval and train steps in the background while its linear probe runs (a cold start's cost).

The first trial of a shape in a process needs three programs, compiled one after another in the trial's order:
the feature extractor (for the linear probe), the eval step (to score the probe) and the train step. On a GPU each
takes seconds to tens of seconds (XLA autotunes every convolution), while the probe's own work (reading features,
fitting the head) leaves the compiler idle. :class:`WarmStart` compiles the eval step and then the train step
ahead of time (``jit(...).lower(abstract inputs).compile()``) for the trial's exact shapes, types and shardings, in
a background thread, as soon as the model exists. JAX caches the lowering and its executable, so the trial's own
first calls neither trace nor compile (``tests/train/test_warm_start.py`` counts); the trial waits for a
warm-up before its first call of that step (:meth:`WarmStart.wait_eval`, :meth:`WarmStart.wait_train`), so a
program is never compiled twice. Each (steps, state structure, shapes) is warmed once per set of jitted steps.

    warm = WarmStart.begin(steps, (net, dtype, num_classes), lambda: create_train_state(model, tx),
                           train_batch=32, eval_batch=64, image_size=224)
    ...                                  # the probe: features, head fit
    warm.wait_eval(); score_probe(...)
    warm.wait_train(); run_epochs(...)

A warm-up that fails (out of memory, say) only logs: the trial's own call then compiles as it would have.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

log = logging.getLogger("jaxgluon.train")

# the warm-ups started for each set of jitted steps (keyed by its train-step function, so the record goes with it)
_started: "weakref.WeakKeyDictionary[Any, set]" = weakref.WeakKeyDictionary()
_started_lock = threading.Lock()


def abstract_batch(batch_size: int, image_size: int, sharding: Any) -> dict[str, jax.ShapeDtypeStruct]:
    """The loaders' batch structure and types (float32 images, int32 labels, a bool mask) as abstract values."""
    return {"image": jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), np.float32, sharding=sharding),
            "label": jax.ShapeDtypeStruct((batch_size,), np.int32, sharding=sharding),
            "mask": jax.ShapeDtypeStruct((batch_size,), np.bool_, sharding=sharding)}


def abstract_state(state: Any, sharding: Any) -> Any:
    """``state`` (a host TrainState) as the abstract value of its replicated copy (``CompiledSteps.replicate``)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding,
                                                       weak_type=bool(getattr(x, "weak_type", False))), state)


class WarmStart:
    """One trial's background warm-up (see the module docstring); a no-op when its shape was warmed before."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._eval_done = threading.Event()
        self._eval_done.set()
        self.error: str | None = None

    @classmethod
    def begin(cls, steps: Any, model_key: Any, make_state: Callable[[], Any], *, train_batch: int, eval_batch: int,
              image_size: int) -> "WarmStart":
        """Starts warming ``steps`` unless ``model_key`` (what fixes the state's structure and shapes: the net, its
        dtype and class count) was warmed at these batch and image sizes already. ``make_state()`` is called here,
        in the caller's thread (the model may change after), and returns the trial's TrainState before placement:
        only its structure, shapes and types are used."""
        key = (model_key, train_batch, eval_batch, image_size)
        with _started_lock:
            seen = _started.setdefault(steps.train_step, set())
            if key in seen:
                return cls()
            seen.add(key)
        state = abstract_state(make_state(), NamedSharding(steps.mesh, PartitionSpec()))
        warm = cls()
        warm._eval_done.clear()
        # not a daemon: interpreter exit waits for the compilation to end (a daemon thread inside XLA's compiler at
        # exit aborted the process: "terminate called ... FATAL: exception not rethrown", e.g. a script whose
        # trial returned at its deadline before the warm-up finished)
        warm._thread = threading.Thread(target=warm._run, args=(steps, state, train_batch, eval_batch, image_size),
                                        name="jaxgluon-warm-start", daemon=False)
        warm._thread.start()
        return warm

    def _run(self, steps: Any, state: Any, train_batch: int, eval_batch: int, image_size: int) -> None:
        try:
            split = NamedSharding(steps.mesh, PartitionSpec("data"))
            start = time.perf_counter()
            steps.eval_step.lower(state, abstract_batch(eval_batch, image_size, split)).compile()
            self._eval_done.set()
            log.info("warm start: eval step (batch %d, %d px) compiled in %.2f s", eval_batch, image_size,
                     time.perf_counter() - start)
            start = time.perf_counter()
            steps.train_step.lower(state, abstract_batch(train_batch, image_size, split)).compile()
            log.info("warm start: train step (batch %d, %d px) compiled in %.2f s", train_batch, image_size,
                     time.perf_counter() - start)
        except Exception as err:  # noqa: BLE001 -- a warm-up is an optimisation; the trial compiles on its own
            self.error = f"{type(err).__name__}: {err}"
            log.info("background compilation failed (%s); the trial compiles its steps itself", self.error)
        finally:
            self._eval_done.set()

    def wait_eval(self) -> None:
        """Returns once the eval step is compiled (or its warm-up failed)."""
        self._eval_done.wait()

    def wait_train(self) -> None:
        """Returns once the warm-up has ended (both steps compiled, or it failed)."""
        if self._thread is not None:
            self._thread.join()
