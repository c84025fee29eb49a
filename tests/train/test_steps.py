"""The pure train/eval steps: learning, masking, mixed precision, and 2-device data parallelism."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgluon.train.state import create_train_state
from jaxgluon.train.steps import compile_steps, cross_entropy, make_mesh, pad_batch, sum_metrics

from train_nets import TinyNet

HERE = pathlib.Path(__file__).resolve().parent
SGD = optax.sgd(0.1, momentum=0.9)     # shared: the optimizer is static in TrainState, a new one recompiles


def toy_batch(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Class 1 images are bright in the left half, class 0 in the right half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int32)
    images = rng.normal(0, 0.3, (n, 8, 8, 3)).astype(np.float32)
    images[labels == 1, :, :4] += 1.0
    images[labels == 0, :, 4:] += 1.0
    return {"image": images, "label": labels, "mask": np.ones(n, bool)}


@pytest.fixture(scope="module")
def steps():
    return compile_steps(make_mesh())


def test_train_step_learns_and_counts(steps):
    state = steps.replicate(create_train_state(TinyNet(), SGD))
    first = None
    for i in range(25):
        state, metrics = steps.train_step(state, steps.shard(toy_batch(16, seed=i)))
        first = first or sum_metrics([metrics])
    assert int(state.step) == 25
    held_out = sum_metrics([steps.eval_step(state, steps.shard(toy_batch(64, seed=99)))])
    assert held_out["count"] == 64
    assert held_out["correct"] / 64 > 0.9
    assert held_out["loss"] / 64 < first["loss"] / 16
    # BatchNorm running statistics moved away from their init
    assert not np.allclose(state.batch_stats["bn1"]["mean"][...], 0.0)


def test_frozen_batchnorm_keeps_running_statistics_and_trains_like_eval_mode():
    """freeze_batchnorm: the step's forward is the eval-mode forward (loss equals eval_step's), the running
    statistics stay as they were, and the parameters (BatchNorm scale/shift included) still learn."""
    frozen = compile_steps(make_mesh(), freeze_batchnorm=True)
    state = frozen.replicate(create_train_state(TinyNet(), SGD))
    state = state.replace_variables({"params": state.variables()["params"],
                                     "batch_stats": jax.tree.map(lambda x: x + 0.5, state.variables()["batch_stats"])})
    before = jax.tree.map(np.asarray, state.variables())
    batch = frozen.shard(toy_batch(16))
    eval_loss = float(sum_metrics([frozen.eval_step(state, batch)])["loss"])
    state, metrics = frozen.train_step(state, batch)
    assert float(sum_metrics([metrics])["loss"]) == pytest.approx(eval_loss, rel=1e-5)
    after = state.variables()
    jax.tree.map(np.testing.assert_array_equal, before["batch_stats"], jax.tree.map(np.asarray, after["batch_stats"]))
    assert not np.allclose(before["params"]["bn1"]["scale"], np.asarray(after["params"]["bn1"]["scale"]))


def test_padded_rows_count_nowhere_in_eval(steps):
    state = steps.replicate(create_train_state(TinyNet(), SGD))
    batch = toy_batch(5, seed=3)
    padded = pad_batch(batch, 8)
    padded["image"][5:] = 100.0      # garbage in the padding must not matter
    padded["label"][5:] = 1
    a = sum_metrics([steps.eval_step(state, steps.shard(batch))])
    b = sum_metrics([steps.eval_step(state, steps.shard(padded))])
    assert a["count"] == b["count"] == 5
    assert a["correct"] == b["correct"]
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)


def test_pad_batch_adds_mask():
    out = pad_batch({"image": np.ones((3, 2, 2, 3), np.float32), "label": np.array([0, 1, 1])}, 4)
    assert out["mask"].tolist() == [True, True, True, False]
    assert out["image"][3].sum() == 0 and out["label"].shape == (4,)


def test_cross_entropy_label_smoothing_formula():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.bfloat16)
    labels = jnp.asarray([0, 4, 2, 2])
    logp = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32)))
    onehot = np.eye(5)[np.asarray(labels)]
    for a in (0.0, 0.2):
        want = -np.sum(((1 - a) * onehot + a / 5) * logp, axis=-1)
        got = cross_entropy(logits, labels, a)
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mixed_precision_keeps_float32_master_weights():
    steps = compile_steps(make_mesh())
    state = steps.replicate(create_train_state(TinyNet(dtype=jnp.bfloat16), optax.sgd(0.1, momentum=0.9)))
    for i in range(3):
        state, metrics = steps.train_step(state, steps.shard(toy_batch(16, seed=i)))
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state)} <= {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}
    assert np.isfinite(sum_metrics([metrics])["loss"])


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np, optax
    sys.path.insert(0, {here!r})
    from train_nets import TinyNet
    from test_steps import toy_batch
    from jaxgluon.train.state import create_train_state
    from jaxgluon.train.steps import compile_steps, make_mesh, sum_metrics
    devices = jax.devices()
    assert len(devices) == 2, devices
    results = {{}}
    for n in (1, 2):
        steps = compile_steps(make_mesh(devices[:n]))
        state = steps.replicate(create_train_state(TinyNet(), optax.sgd(0.1, momentum=0.9)))
        losses = []
        for i in range(3):
            state, m = steps.train_step(state, steps.shard(toy_batch(8, seed=i)))
            jax.block_until_ready(state)         # tiny collectives dispatched back to back can deadlock on CPU
            losses.append(float(m["loss"]))
        ev = steps.eval_step(state, steps.shard(toy_batch(7, seed=9)))   # 7 rows: padded to 8 on 2 devices
        ev = jax.block_until_ready(ev)
        results[n] = dict(
            params=[np.asarray(x).tolist() for x in jax.tree.leaves(state.params)],
            stats=[np.asarray(x).tolist() for x in jax.tree.leaves(state.batch_stats)],
            losses=losses, eval=sum_metrics([ev]),
            shards=len(state.params["head"]["kernel"][...].sharding.device_set))
    print(json.dumps(results))
""")


def test_two_device_step_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT.format(here=str(HERE))], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    one, two = res["1"], res["2"]
    assert (one["shards"], two["shards"]) == (1, 2)
    np.testing.assert_allclose(one["losses"], two["losses"], rtol=1e-5)
    for a, b in zip(one["params"] + one["stats"], two["params"] + two["stats"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert one["eval"]["count"] == two["eval"]["count"] == 7
    assert one["eval"]["correct"] == two["eval"]["correct"]
