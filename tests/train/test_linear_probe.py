"""Linear-probe head init: the softmax regression itself, and a pretrained trial that starts from it."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

from jaxgluon import data as jdata
from jaxgluon import models
from jaxgluon.train import TrialSpec, load_trained, train_trial
from jaxgluon.train.linear_probe import fit_linear_head, pooled_features, set_head
from test_trial import FakeReporter, write_folder

SHARED_WEIGHTS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "cifar10_resnet"


def test_fit_matches_scikit_learn_logistic_regression():
    """Same objective as ``LogisticRegression(C=1)`` on standardised features: the same probabilities."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 2.0
    labels = rng.integers(0, 3, 120)
    feats = (centers[labels] + rng.normal(size=(120, 8))) * rng.uniform(0.1, 10.0, 8) + 5.0  # uneven scales
    kernel, bias = fit_linear_head(feats, labels, 3)
    logits = feats @ kernel + bias
    ours = np.exp(logits - logits.max(1, keepdims=True))
    ours /= ours.sum(1, keepdims=True)
    standardised = (feats - feats.mean(0)) / feats.std(0)
    ref = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(standardised, labels).predict_proba(standardised)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_fit_and_set_head_validate_shapes():
    with pytest.raises(ValueError, match="features"):
        fit_linear_head(np.zeros((4, 3)), np.zeros(5), 2)
    model = models.get_model("cifar_resnet20_v1", 2, pretrained=False)
    with pytest.raises(ValueError, match="does not fit"):
        set_head(model, np.zeros((7, 2), np.float32), np.zeros(2, np.float32))


def test_pretrained_trial_starts_from_the_linear_probe_head(tmp_path, monkeypatch):
    """With CIFAR-10 weights and a 2-class folder, the trial's classifier before fine-tuning is the softmax
    regression on the pretrained features of the training split (a near-zero learning rate keeps it there)."""
    if not (SHARED_WEIGHTS / "resnet20-12fca82f.th").is_file():
        pytest.skip(f"needs the CIFAR-10 ResNet-20 weights in {SHARED_WEIGHTS} (../shared is absent)")
    monkeypatch.setenv("JAXGLUON_WEIGHTS_PATH", str(SHARED_WEIGHTS))
    folder = write_folder(tmp_path / "images", per_class=20)
    spec = TrialSpec(train_data=str(folder), val_fraction=0.2, image_size=16, pretrained=True,
                     augment="resized_crop+flip")
    config = {"net": "cifar_resnet20_v1", "optimizer": {"name": "sgd", "learning_rate": 1e-12, "momentum": 0.0},
              "lr_scheduler": "constant", "batch_size": 8}
    reporter = FakeReporter(tmp_path / "trial", max_epochs=1)
    train_trial(config, reporter, spec)
    (result,) = reporter.results
    assert result["pretrained_loaded"] is True and result["linear_probe_seconds"] > 0

    train_src, _ = spec.sources()
    pretrained = models.get_model("cifar_resnet20_v1", 2, pretrained=True)
    info = models.model_info("cifar_resnet20_v1")
    loader = jdata.make_loader(train_src, batch_size=8, image_size=16, mean=info["mean"], std=info["std"],
                               train=False)
    kernel, bias = fit_linear_head(*pooled_features(pretrained, loader), 2)
    trained = load_trained(reporter.checkpoint_dir)
    fc = trained._state.params["fc"]
    np.testing.assert_allclose(np.asarray(fc["kernel"][...]), kernel, atol=1e-4)
    np.testing.assert_allclose(np.asarray(fc["bias"][...]), bias, atol=1e-4)
    assert trained.meta["head_init"] == "linear_probe"
    # fine-tuning pretrained weights with random-resized crops keeps BatchNorm frozen ('auto'): the running
    # statistics are still the pretrained ones
    assert trained.meta["freeze_batchnorm"] is True
    np.testing.assert_allclose(np.asarray(trained._state.batch_stats["bn1"]["mean"][...]),
                               np.asarray(pretrained.bn1.mean[...]), rtol=1e-6)

    plain = FakeReporter(tmp_path / "plain", max_epochs=1)
    train_trial(config, plain, TrialSpec(train_data=str(folder), val_fraction=0.2, image_size=16, pretrained=True,
                                         head_init="model"))
    assert "linear_probe_seconds" not in plain.results[0]
    # 'auto' with this folder's own augmentation (tiny images: pad-and-crop): BatchNorm adapts to the new domain
    assert load_trained(plain.checkpoint_dir).meta["freeze_batchnorm"] is False
    with pytest.raises(ValueError, match="head_init"):
        TrialSpec(train_data=str(folder), head_init="probe")
