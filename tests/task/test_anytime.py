"""An anytime fit: a pretrained trial's linear-probe model is scored like an epoch (checkpointed as epoch 0, not
reported to the scheduler), and ``fit`` returns it when the budget ends before any fine-tuning epoch reports."""
from __future__ import annotations

import pathlib
import time

import numpy as np
import pytest

from jaxgluon import ImageClassification as task
from jaxgluon.space.optimizer import Adam
from jaxgluon.task import Results
from jaxgluon.train import TrialSpec, load_trained, train_trial
from jaxgluon.train import trial as trial_module
from jaxgluon.train.linear_probe import DeadlinePassed
from jaxgluon.tune import tune

from tests.recording_reporter import RecordingReporter

SHARED_WEIGHTS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "cifar10_resnet"
PRETRAINED = dict(net="cifar_resnet20_v1", optimizer=Adam(learning_rate=1e-3), image_size=16, batch_size=8,
                  pretrained=True, verbose=False)


@pytest.fixture
def weights(monkeypatch):
    if not (SHARED_WEIGHTS / "resnet20-12fca82f.th").is_file():
        pytest.skip(f"needs the CIFAR-10 ResNet-20 weights in {SHARED_WEIGHTS} (../shared is absent)")
    monkeypatch.setenv("JAXGLUON_WEIGHTS_PATH", str(SHARED_WEIGHTS))


@pytest.fixture
def in_process(monkeypatch):
    """Trials in this process, so that the monkeypatches below reach them."""
    import importlib
    fit_module = importlib.import_module("jaxgluon.task.fit")
    def tune_in_process(*args, **kwargs):   # fit passes executor=None (the worker-process default): override it
        return tune(*args, **{**kwargs, "executor": "in_process"})

    monkeypatch.setattr(fit_module, "tune", tune_in_process)


def _warm_up(folder: pathlib.Path, tmp_path: pathlib.Path) -> tuple[TrialSpec, RecordingReporter]:
    spec = TrialSpec(train_data=str(folder), val_fraction=0.25, image_size=16, pretrained=True)
    config = {"net": "cifar_resnet20_v1", "optimizer": {"name": "adam", "learning_rate": 1e-3},
              "lr_scheduler": "constant", "batch_size": 8}
    reporter = RecordingReporter(tmp_path / "warm", max_epochs=1)
    train_trial(config, reporter, spec)
    return spec, reporter


def test_probe_is_scored_on_validation_and_checkpointed_as_epoch_0(image_folders, tmp_path, weights):
    spec, reporter = _warm_up(image_folders[0], tmp_path)
    # the scheduler sees fine-tuning epochs only (1-based: Hyperband's rungs count them); the probe rides along
    assert [r["epoch"] for r in reporter.results] == [1]
    first = reporter.results[0]
    assert 0.0 <= first["probe_top1"] <= 1.0 and first["probe_val_loss"] > 0 and first["probe_reward"] == first["probe_top1"]
    record = trial_module.read_probe_record(reporter.checkpoint_dir)
    assert record["status"] == "scored" and record["val_top1"] == first["probe_top1"]
    probe = load_trained(reporter.checkpoint_dir, epoch=0)
    assert probe.meta["val_top1"] == first["probe_top1"] and probe.meta["head_init"] == "linear_probe"
    _, val = spec.sources()
    assert probe.evaluate(val) == pytest.approx(first["probe_top1"])   # the same validation score, recomputed


@pytest.mark.alone   # a fit within time_limits: under xdist no other test runs beside it
def test_fit_returns_the_probe_model_when_no_fine_tuning_epoch_reports(image_folders, tmp_path, weights,
                                                                       in_process, monkeypatch):
    _warm_up(image_folders[0], tmp_path)   # compiled once here, the probe in the fit takes a second or two

    def slow_epoch(self, steps, state, batches, deadline=None):   # the first epoch would outlast the budget
        time.sleep(max(0.0, deadline - time.time()) + 0.05)
        return state, None

    monkeypatch.setattr(trial_module._EpochTimer, "train", slow_epoch)
    dataset = task.Dataset(train_path=str(image_folders[0]))
    with pytest.warns(RuntimeWarning, match="linear-probe model"):
        results = task.fit(dataset, num_trials=1, epochs=2, time_limits=15, output_directory=tmp_path / "exp",
                           refit=False, **PRETRAINED)   # ('auto' would serve the probe refitted on every image)
    assert results.metadata["final_model"] == "linear_probe" and results.metadata["best_epoch"] == 0
    assert all(not t["results"] for t in results.trials)       # nothing was reported to the scheduler
    record = trial_module.read_probe_record(tmp_path / "exp" / "trials" / "0")
    assert results.reward == record["val_top1"]
    _, test = image_folders
    assert 0.0 <= results.evaluate(task.Dataset(train_path=str(image_folders[0]), test_path=str(test))) <= 1.0
    saved = results.save(tmp_path / "saved")
    again = Results.load(saved)
    images = np.full((2, 20, 20, 3), 60, np.uint8)
    np.testing.assert_allclose(again.predict_proba(images), results.predict_proba(images), atol=1e-6)


@pytest.mark.alone   # a fit within time_limits: under xdist no other test runs beside it
def test_fit_without_a_probe_says_how_long_one_would_take(image_folders, tmp_path, weights, in_process,
                                                         monkeypatch):
    def deadline_during_features(features, loader, deadline):   # a feature pass that outlasts the budget
        # it gives up at the trial's deadline, as the real pass does between batches (a fixed sleep raced the
        # executor's 1 s grace: the trial was abandoned before it wrote its probe record)
        time.sleep(max(0.0, deadline - time.time()) + 0.05)
        raise DeadlinePassed(images_done=24, seconds=2.5, first_batch=(8, 2.1))   # 16 more images in 0.4 s

    monkeypatch.setattr(trial_module, "pooled_features", deadline_during_features)
    dataset = task.Dataset(train_path=str(image_folders[0]))
    with pytest.raises(RuntimeError, match=r"no linear-probe model was ready.*a probe needs about \d+ s"):
        task.fit(dataset, num_trials=1, epochs=2, time_limits=6, output_directory=tmp_path / "exp", **PRETRAINED)


def test_trials_sharing_a_probe_model_offer_it_to_the_ensemble_once(image_folders, tmp_path, weights):
    """Two configs of one pretrained net and image size fit the same probe head on the same features: the probe
    record says so (``identity``), the two epoch-0 models predict alike, and the ensemble stage predicts it once."""
    from jaxgluon.space import Real
    dataset = task.Dataset(train_path=str(image_folders[0]))
    searched = {**PRETRAINED, "optimizer": Adam(learning_rate=Real(1e-4, 1e-2, log=True))}
    results = task.fit(dataset, num_trials=2, epochs=1, executor="in_process", ensemble=True,
                       output_directory=tmp_path / "exp", **searched)
    trials = tmp_path / "exp" / "trials"
    records = [trial_module.read_probe_record(trials / str(t)) for t in (0, 1)]
    assert records[0]["identity"] and records[0]["identity"] == records[1]["identity"]
    images = np.random.default_rng(0).integers(0, 255, (4, 20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_trained(trials / "0", epoch=0).predict_proba(images),
                                  load_trained(trials / "1", epoch=0).predict_proba(images))
    stage = results.metadata["ensemble"]
    assert [c["epoch"] for c in stage["candidates"]].count(0) == 1, stage["candidates"]
    assert len(stage["duplicate_probes"]) >= 1 and all(d.endswith(":0") for d in stage["duplicate_probes"])
