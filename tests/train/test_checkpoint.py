"""Orbax trial checkpoints: retention (latest + best), exact continuation after restore, and the compile cache."""
from __future__ import annotations

import logging

import jax
import numpy as np
from absl import logging as absl_log
import pytest

from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.compile_cache import disable_compilation_cache, enable_compilation_cache
from jaxgluon.train.optim import make_optimizer
from jaxgluon.train.state import create_train_state
from jaxgluon.train.steps import compile_steps, make_mesh

from test_steps import toy_batch
from train_nets import TinyNet

CONFIG = {"optimizer": {"name": "adamw", "learning_rate": 0.01}, "lr_scheduler": "cosine", "warmup_epochs": 1}
STEPS_PER_EPOCH, EPOCHS = 2, 4
TX = make_optimizer(CONFIG, STEPS_PER_EPOCH, EPOCHS)    # one optimizer object: the jitted steps compile once


@pytest.fixture(scope="module")
def steps():
    return compile_steps(make_mesh())


def fresh_state(steps):
    return steps.replicate(create_train_state(TinyNet(), TX))


def run_epoch(steps, state, epoch):
    for i in range(STEPS_PER_EPOCH):
        state, _ = steps.train_step(state, steps.shard(toy_batch(8, seed=100 * epoch + i)))
    return state


def test_restore_continues_identically(steps, tmp_path):
    rewards = [0.3, 0.9, 0.5, 0.6]
    state = fresh_state(steps)
    with TrialCheckpointer(tmp_path / "ckpt", max_to_keep=2) as ckpt:
        for epoch in range(1, EPOCHS + 1):
            state = run_epoch(steps, state, epoch)
            ckpt.save(epoch, state, reward=rewards[epoch - 1], meta={"net": "tiny", "epoch": epoch})
        ckpt.wait()
        assert ckpt.all_epochs() == [2, 3, 4]           # the 2 latest + the best (epoch 2)
        assert (ckpt.latest_epoch(), ckpt.best_epoch(), ckpt.reward(2)) == (4, 2, 0.9)
    uninterrupted = jax.device_get(state)

    # a "crashed" trial: a fresh process state (new model, new optimizer) restored from epoch 3, then epoch 4
    with TrialCheckpointer(tmp_path / "ckpt") as ckpt:
        assert ckpt.restore_meta(3) == {"net": "tiny", "epoch": 3}
        restored = ckpt.restore(3, fresh_state(steps))
    assert int(restored.step) == 3 * STEPS_PER_EPOCH
    assert jax.tree.structure(restored.opt_state) == jax.tree.structure(uninterrupted.opt_state)
    resumed = jax.device_get(run_epoch(steps, restored, 4))
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)


def test_restore_variables_of_best(steps, tmp_path):
    state = run_epoch(steps, fresh_state(steps), 1)
    with TrialCheckpointer(tmp_path / "c", async_save=False) as ckpt:
        ckpt.save(1, state, reward=0.5, meta={})
        variables = ckpt.restore_variables(ckpt.best_epoch(), jax.device_get(state.variables()))
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"], state.params["head"]["kernel"][...])
    with pytest.raises(ValueError, match="max_to_keep"):
        TrialCheckpointer(tmp_path / "d", max_to_keep=0)


def test_read_only_access_logs_no_orbax_notices(steps, tmp_path, caplog):
    state = run_epoch(steps, fresh_state(steps), 1)
    with TrialCheckpointer(tmp_path / "c", async_save=False) as ckpt:
        ckpt.save(1, state, reward=0.5, meta={})
    caplog.set_level(logging.INFO)
    with TrialCheckpointer(tmp_path / "c", read_only=True) as ckpt:
        assert ckpt.best_epoch() == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    absl_log.warning("another absl warning")             # only Orbax's read-only notices are dropped
    assert "another absl warning" in caplog.text


def test_retention_keeps_the_latest_the_best_and_the_probe_epoch(steps, tmp_path):
    """max_to_keep latest epochs (to resume), the best by reward, and epoch 0 -- the linear-probe model, an
    ensemble candidate beside the best fine-tuned epoch -- however poorly it scored."""
    state = fresh_state(steps)
    with TrialCheckpointer(tmp_path / "c", max_to_keep=2, async_save=False) as ckpt:
        for epoch, reward in enumerate([0.1, 0.9, 0.5, 0.6, 0.7, 0.8]):
            ckpt.save(epoch, state, reward=reward, meta={})
        assert ckpt.all_epochs() == [0, 1, 4, 5]
    with TrialCheckpointer(tmp_path / "d", max_to_keep=2, async_save=False) as ckpt:   # no probe: nothing extra
        for epoch, reward in enumerate([0.9, 0.5, 0.6, 0.7], start=1):
            ckpt.save(epoch, state, reward=reward, meta={})
        assert ckpt.all_epochs() == [1, 3, 4]


def test_resume_epoch_never_passes_the_last_report(steps, tmp_path, caplog):
    """A restart continues from the newest checkpoint the trial reported; one saved but never reported (a kill
    between the two) is deleted, to be trained and reported again."""
    state = fresh_state(steps)
    with TrialCheckpointer(tmp_path / "c", max_to_keep=2, async_save=False) as ckpt:
        assert ckpt.resume_epoch(0) is None                      # fresh
        for epoch in (1, 2, 3):
            ckpt.save(epoch, state, reward=0.1 * epoch, meta={})
        assert ckpt.resume_epoch(None) == 3 and ckpt.resume_epoch(3) == 3 and ckpt.resume_epoch(7) == 3
        assert ckpt.resume_epoch(2) == 2 and ckpt.all_epochs() == [2]
        assert ckpt.resume_epoch(0) is None and ckpt.all_epochs() == []   # nothing reported: start fresh
    with TrialCheckpointer(tmp_path / "d", max_to_keep=1, async_save=False) as ckpt:
        for epoch in (1, 2):
            ckpt.save(epoch, state, reward=0.1 * epoch, meta={})
        assert ckpt.all_epochs() == [2]
        assert ckpt.resume_epoch(1) == 2                         # retention kept nothing older: resume anyway
    assert "whose report is lost" in caplog.text


def test_persistent_compilation_cache_is_hit_by_a_new_jit(tmp_path):
    """A second, separately jitted copy of the same computation loads from the cache instead of compiling."""
    hits = []
    listener = lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None
    jax.monitoring.register_event_listener(listener)
    previous = jax.config.jax_compilation_cache_dir
    try:
        assert enable_compilation_cache(tmp_path / "cache", min_compile_seconds=0.0) == tmp_path / "cache"
        f = lambda x: jax.numpy.sin(x) @ x.T + 3.0
        x = np.ones((5, 5), np.float32)
        jax.jit(f)(x).block_until_ready()
        assert any((tmp_path / "cache").iterdir())
        jax.clear_caches()
        assert not hits
        jax.jit(lambda x: jax.numpy.sin(x) @ x.T + 3.0)(x).block_until_ready()
        assert hits
    finally:
        jax.monitoring.unregister_event_listener(listener)
        disable_compilation_cache()
        if previous:
            enable_compilation_cache(previous)


def test_background_writer_keeps_the_steps_free_and_reads_see_every_save(steps, tmp_path):
    """``background=True``: save() copies to host and returns; the next step may reuse the device buffers; every
    read waits for the writer; ``on_written`` runs once the checkpoint is complete on disk."""
    state = fresh_state(steps)
    written = []
    with TrialCheckpointer(tmp_path / "bg", background=True) as ckpt:
        for epoch in (1, 2):
            state = run_epoch(steps, state, epoch)
            expected = jax.device_get(state.variables())
            ckpt.save(epoch, state, reward=0.1 * epoch, meta={"epoch": epoch},
                      on_written=lambda e=epoch: written.append((e, (tmp_path / "bg" / str(e)).is_dir())))
            state = run_epoch(steps, state, epoch + 10)   # steps after the save do not change what it writes
            assert ckpt.latest_epoch() == epoch            # a read sees the save before it
            saved = ckpt.restore_variables(epoch, jax.device_get(state.variables()))
            for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(saved)):
                np.testing.assert_array_equal(a, b)
        assert written == [(1, True), (2, True)]


def test_background_writer_errors_surface_at_the_next_call(steps, tmp_path, monkeypatch):
    state = fresh_state(steps)
    ckpt = TrialCheckpointer(tmp_path / "err", background=True)
    monkeypatch.setattr(ckpt._manager, "save", lambda *a, **k: False)   # orbax declines in the writer thread
    ckpt.save(1, state, reward=0.5, meta={})
    with pytest.raises(RuntimeError, match="declined to save epoch 1"):
        ckpt.wait()
    monkeypatch.undo()
    ckpt.close()
