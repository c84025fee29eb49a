"""Validation predictions kept with a checkpoint: gathered beside the eval sums, padding dropped, saved and deleted
with their epoch, and not kept past the size cap."""
from __future__ import annotations

import jax
import numpy as np

import jaxgluon.train.val_predictions as val_predictions
from jaxgluon.train.checkpoint import CHECKPOINT_SUBDIR, TrialCheckpointer
from jaxgluon.train.state import create_train_state
from jaxgluon.train.steps import compile_steps, make_mesh
from jaxgluon.train.val_predictions import ValidationPass, stored_predictions

from test_checkpoint import TX
from test_steps import toy_batch
from train_nets import TinyNet


def _padded(batch: dict, rows: int) -> dict:
    """The loader's last batch: ``rows`` real rows, the rest padding (``mask`` False)."""
    mask = np.arange(len(batch["label"])) < rows
    return {**batch, "label": np.where(mask, batch["label"], 0).astype(np.int32), "mask": mask}


def test_a_pass_keeps_every_real_rows_probabilities_in_loader_order(tmp_path):
    steps = compile_steps(make_mesh())
    state = steps.replicate(create_train_state(TinyNet(), TX))
    batches = [toy_batch(8, seed=1), _padded(toy_batch(8, seed=2), 5)]
    val = ValidationPass()
    for batch in batches:
        val.add(steps, state, batch)
    kept = val.predictions()
    sums = val.sums()
    assert kept["probs"].shape == (13, 2) and kept["probs"].dtype == np.float32 and sums["count"] == 13.0
    forward = state.model(train=False)
    expected = np.concatenate([np.asarray(jax.nn.softmax(forward(b["image"])))[b["mask"]] for b in batches])
    np.testing.assert_allclose(kept["probs"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(kept["labels"], np.concatenate([b["label"][b["mask"]] for b in batches]))
    # the sums agree with the kept predictions: correct count and summed log-loss
    assert sums["correct"] == float(np.sum(np.argmax(kept["probs"], -1) == kept["labels"]))
    np.testing.assert_allclose(sums["loss"], -np.sum(np.log(kept["probs"][np.arange(13), kept["labels"]])),
                               rtol=1e-4)

    # saved with the checkpoint, read back by epoch; an epoch saved without them has none
    directory = tmp_path / "trial"
    with TrialCheckpointer(directory / CHECKPOINT_SUBDIR, async_save=False) as ckpt:
        ckpt.save(1, state, reward=0.5, meta={}, predictions=kept)
        ckpt.save(2, state, reward=0.4, meta={})
    probs, labels = stored_predictions(directory, 1)
    np.testing.assert_array_equal(probs, kept["probs"].astype(np.float64))
    np.testing.assert_array_equal(labels, kept["labels"])
    assert stored_predictions(directory, 2) is None and stored_predictions(directory, 7) is None


def test_retention_deletes_the_predictions_with_their_checkpoint(tmp_path):
    steps = compile_steps(make_mesh())
    state = steps.replicate(create_train_state(TinyNet(), TX))
    kept = {"probs": np.full((3, 2), 0.5, np.float32), "labels": np.array([0, 1, 0], np.int32)}
    with TrialCheckpointer(tmp_path / CHECKPOINT_SUBDIR, max_to_keep=1, async_save=False) as ckpt:
        for epoch, reward in ((1, 0.9), (2, 0.1), (3, 0.2)):
            ckpt.save(epoch, state, reward=reward, meta={}, predictions=kept)
        assert ckpt.all_epochs() == [1, 3]
    assert stored_predictions(tmp_path, 1) is not None and stored_predictions(tmp_path, 3) is not None
    assert stored_predictions(tmp_path, 2) is None


def test_a_pass_over_the_size_cap_or_empty_keeps_nothing(monkeypatch):
    steps = compile_steps(make_mesh())
    state = steps.replicate(create_train_state(TinyNet(), TX))
    assert ValidationPass().predictions() is None
    val = ValidationPass()
    val.add(steps, state, toy_batch(8))
    monkeypatch.setattr(val_predictions, "MAX_STORED_VALUES", 15)    # 8 images x 2 classes = 16 values
    assert val.predictions() is None and val.sums()["count"] == 8.0
    monkeypatch.setattr(val_predictions, "MAX_STORED_VALUES", 16)
    assert val.predictions()["probs"].shape == (8, 2)

