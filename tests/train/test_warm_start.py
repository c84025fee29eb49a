"""The background warm-up compiles a trial's eval and train steps so that the trial's own first calls neither trace
nor compile, and a shape is warmed once per set of jitted steps."""
from __future__ import annotations

import jax
import numpy as np
import optax

from jaxgluon.train.compile_count import CompileCounter
from jaxgluon.train.state import create_train_state
from jaxgluon.train.steps import compile_steps, make_mesh
from jaxgluon.train.warm_start import WarmStart

from tests.train.train_nets import TinyNet


def _batch(n: int, size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(n, size, size, 3)).astype(np.float32),
            "label": rng.integers(0, 2, n).astype(np.int32), "mask": np.ones(n, bool)}


def test_the_trials_first_calls_compile_nothing_after_a_warm_up():
    steps = compile_steps(make_mesh())
    model, tx = TinyNet(2), optax.sgd(0.1)
    warm = WarmStart.begin(steps, ("tiny", "float32", 2), lambda: create_train_state(model, tx), train_batch=4,
                           eval_batch=6, image_size=8)
    warm.wait_eval()
    warm.wait_train()
    assert warm.error is None
    state = steps.replicate(create_train_state(model, tx))
    with CompileCounter() as counter:
        metrics = steps.eval_step(state, steps.shard(_batch(6, 8)))
        state, train = steps.train_step(state, steps.shard(_batch(4, 8)))
        jax.block_until_ready((metrics, train))
    assert (counter.compilations, counter.traces) == (0, 0), counter.programs + counter.traced
    assert float(train["count"]) == 4.0

    again = WarmStart.begin(steps, ("tiny", "float32", 2), lambda: (_ for _ in ()).throw(AssertionError),
                            train_batch=4, eval_batch=6, image_size=8)   # warmed: make_state is not even called
    again.wait_eval()
    again.wait_train()


def test_a_failed_warm_up_only_logs_and_the_trial_compiles_itself():
    steps = compile_steps(make_mesh())
    model, tx = TinyNet(2), optax.sgd(0.1)
    # a 'state' that is no TrainState cannot be lowered through the steps
    warm = WarmStart.begin(steps, ("broken",), lambda: {"not": np.zeros(3)}, train_batch=4, eval_batch=4,
                           image_size=8)
    warm.wait_eval()
    warm.wait_train()
    assert warm.error is not None
    state = steps.replicate(create_train_state(model, tx))
    _, metrics = steps.train_step(state, steps.shard(_batch(4, 8)))
    assert float(jax.block_until_ready(metrics)["count"]) == 4.0
