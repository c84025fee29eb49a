"""train_trial end to end on a tiny real-file image folder: learning, STOP/PAUSE, exact resume, load_trained."""
from __future__ import annotations

import pathlib
import time
import pickle
from functools import partial

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgluon.train import TrialSpec, load_source, load_trained, save_array_dataset, train_trial
from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.trial import CHECKPOINT_SUBDIR

CONFIG = {"net": "cifar_resnet20_v1", "optimizer": {"name": "adam", "learning_rate": 0.003},
          "lr_scheduler": "cosine", "batch_size": 8}
EPOCHS = 3


class FakeReporter:
    """The duck-typed reporter protocol; answers from ``answers[epoch]`` (default CONTINUE)."""

    def __init__(self, directory: pathlib.Path, max_epochs: int = EPOCHS, answers: dict | None = None, seed: int = 0):
        self.trial_id, self.seed, self.max_epochs = 0, seed, max_epochs
        self.checkpoint_dir = pathlib.Path(directory)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.answers = answers or {}
        self.results: list[dict] = []

    def __call__(self, **result):
        assert not self.results or self.answers.get(self.results[-1]["epoch"], "CONTINUE") == "CONTINUE", \
            "reported again after a decision other than CONTINUE"
        self.results.append(result)
        return self.answers.get(result["epoch"], "CONTINUE")


def write_folder(root: pathlib.Path, per_class: int = 40) -> pathlib.Path:
    """2 classes of 16 px PNGs: flat random colours vs the same with horizontal stripes."""
    rng = np.random.default_rng(0)
    for cls in ("solid", "striped"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            img = np.tile(rng.integers(40, 216, 3), (16, 16, 1)).astype(np.uint8)
            if cls == "striped":
                img[0::4] = 255 - img[0::4]
                img[1::4] = 255 - img[1::4]
            Image.fromarray(img).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    folder = write_folder(tmp_path_factory.mktemp("images"))
    # the run's persistent compilation cache is on from the session's start (tests/conftest.py)
    return TrialSpec(train_data=str(folder), val_fraction=0.2, image_size=16, pretrained=False)


@pytest.fixture(scope="module")
def full_run(spec, tmp_path_factory):
    reporter = FakeReporter(tmp_path_factory.mktemp("full"))
    train_trial(CONFIG, reporter, spec)
    return reporter


def test_trial_learns_and_reports_every_epoch(full_run):
    results = full_run.results
    assert [r["epoch"] for r in results] == [1, 2, 3]
    assert max(r["reward"] for r in results) >= 0.8          # 16 validation images, chance is 0.5
    assert results[-1]["train_loss"] < results[0]["train_loss"]
    for r in results:
        assert 0.0 <= r["reward"] <= 1.0 and r["epoch_seconds"] > 0 and r["images_per_sec"] > 0
        assert r["pretrained_loaded"] is False
    assert results[0]["first_step_seconds"] > 0 and "first_step_seconds" not in results[1]


def test_pause_then_resume_matches_uninterrupted_run(spec, full_run, tmp_path):
    paused = FakeReporter(tmp_path, answers={1: "PAUSE"})
    train_trial(CONFIG, paused, spec)
    assert [r["epoch"] for r in paused.results] == [1]
    assert paused.results[0]["compilations"] == 0, "the second trial of a shape reuses the process's programs"
    with TrialCheckpointer(tmp_path / CHECKPOINT_SUBDIR) as ckpt:
        assert ckpt.latest_epoch() == 1

    resumed = FakeReporter(tmp_path)
    train_trial(CONFIG, resumed, spec)
    assert [r["epoch"] for r in resumed.results] == [2, 3]
    for a, b in zip(full_run.results[1:], resumed.results):
        assert a["reward"] == b["reward"] and a["train_loss"] == b["train_loss"]
    full = load_trained(full_run.checkpoint_dir, epoch=EPOCHS).state.variables()
    again = load_trained(tmp_path, epoch=EPOCHS).state.variables()
    for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(again)):
        np.testing.assert_array_equal(x, y)

    finished = FakeReporter(tmp_path)              # already at max_epochs: nothing to do
    train_trial(CONFIG, finished, spec)
    assert finished.results == []


def test_a_checkpoint_newer_than_the_last_report_is_trained_and_reported_again(spec, full_run, tmp_path):
    """A process killed after epoch 2's checkpoint but before its report: the restart resumes from epoch 1 (its
    last report, ``reporter.reported_epoch``), so the scheduler still sees epoch 2, with the same result."""
    killed = FakeReporter(tmp_path, answers={2: "PAUSE"})
    train_trial(CONFIG, killed, spec)
    restarted = FakeReporter(tmp_path)
    restarted.reported_epoch = 1
    train_trial(CONFIG, restarted, spec)
    assert [r["epoch"] for r in restarted.results] == [2, 3]
    for a, b in zip(full_run.results[1:], restarted.results):
        assert a["reward"] == b["reward"] and a["train_loss"] == b["train_loss"]


def test_stop_returns_after_saving(spec, tmp_path):
    reporter = FakeReporter(tmp_path, answers={1: "STOP"})
    train_trial(CONFIG, reporter, spec)
    assert len(reporter.results) == 1
    with TrialCheckpointer(tmp_path / CHECKPOINT_SUBDIR) as ckpt:
        assert ckpt.all_epochs() == [1]


def test_returns_mid_epoch_once_the_deadline_has_passed(spec, tmp_path):
    """A trial whose experiment ran out of time stops at the next step instead of finishing (and reporting) the
    epoch; its earlier checkpoints stay."""
    reporter = FakeReporter(tmp_path)
    reporter.deadline = time.time() - 1.0
    train_trial(CONFIG, reporter, spec)
    assert reporter.results == []
    with TrialCheckpointer(tmp_path / CHECKPOINT_SUBDIR) as ckpt:
        assert ckpt.all_epochs() == []


def test_load_trained_predicts_evaluates_and_saves(spec, full_run, tmp_path):
    model = load_trained(full_run.checkpoint_dir)
    best = max(full_run.results, key=lambda r: r["reward"])
    assert model.meta["reward"] == best["reward"]
    assert (model.net, model.class_names, model.image_size) == ("cifar_resnet20_v1", ["solid", "striped"], 16)
    assert model.meta["freeze_batchnorm"] is False  # random init: BatchNorm trains
    assert model.meta["augment"] == "pad_crop+flip" and model.flip_trained   # 16 px images ('auto'), recorded
    _, val = spec.sources()
    assert model.evaluate(val) == pytest.approx(best["reward"])
    images = [val[i]["image"] for i in range(3)]
    probs = model.predict_proba(images)
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(images), probs.argmax(axis=1))
    assert model.predict_proba(images[0]).shape == (1, 2)

    saved = load_trained(model.save(tmp_path / "model"))
    np.testing.assert_allclose(saved.predict_proba(images), probs, rtol=1e-6)
    assert saved.class_names == model.class_names
    with pytest.raises(ValueError, match="already holds a saved model"):
        model.save(tmp_path / "model")


def test_spec_and_config_errors(spec, tmp_path):
    assert pickle.loads(pickle.dumps(partial(train_trial, spec=spec))).keywords["spec"] == spec
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'"):
        train_trial({**CONFIG, "optimizer": {"name": "sgdd"}}, FakeReporter(tmp_path), spec)
    with pytest.raises((ValueError, FileNotFoundError), match="neither an image folder|no such image folder"):
        load_source(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_trained(tmp_path / "nothing")
    with pytest.raises(ValueError, match="val_fraction"):
        TrialSpec(train_data="digits", val_fraction=1.0)


def test_one_class_training_data_is_refused_before_training(tmp_path):
    path = save_array_dataset(tmp_path / "one.npz", np.zeros((6, 8, 8, 3), np.uint8), [0] * 6, ["only"])
    spec = TrialSpec(train_data=path, image_size=8, pretrained=False, compilation_cache=False)
    reporter = FakeReporter(tmp_path / "trial")
    with pytest.raises(ValueError, match=r"one.npz' has 1 class \['only'\]; classification needs at least 2"):
        train_trial(CONFIG, reporter, spec)
    assert reporter.results == []


def test_array_dataset_roundtrip(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    path = save_array_dataset(tmp_path / "d.npz", images, [0, 1, 2, 0, 1, 2], ["a", "b", "c"])
    source = load_source(path)
    assert len(source) == 6 and source.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(source[4]["image"], images[4])
    assert source[4]["label"] == 1
    with pytest.raises(ValueError, match=".npz"):
        save_array_dataset(tmp_path / "d.bin", images, [0] * 6, ["a"])


def test_a_smaller_batch_is_announced_once_per_process(caplog):
    from jaxgluon.train.trial import _batch_size

    _batch_size.cache_clear()
    caplog.set_level("WARNING", logger="jaxgluon.train")
    sizes = [_batch_size(32, 2, 17) for _ in range(3)]      # three trials of a 17-image training set, 2 devices
    assert sizes == [16, 16, 16]
    assert sum("exceeds the 17 training images" in r.getMessage() for r in caplog.records) == 1
    assert _batch_size(8, 2, 17) == 8
