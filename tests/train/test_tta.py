"""Test-time augmentation of a TrainedModel: each prediction averages the image and its mirror image, on every
prediction path, saved with the model; fit's rule for turning it on (jaxgluon.task.final_model.serve_tta)."""
from __future__ import annotations

import numpy as np
import optax
import pytest

from jaxgluon import data as jdata
from jaxgluon import models
from jaxgluon.task.ensemble import EnsembleModel, load_ensemble
from jaxgluon.task.final_model import serve_tta
from jaxgluon.train import TrainedModel, create_train_state, load_trained
from jaxgluon.train.trial import META_FORMAT

META = {"format": META_FORMAT, "net": "cifar_resnet20_v1", "num_classes": 3, "class_names": ["a", "b", "c"],
        "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "augment": "pad_crop+flip"}
# left-right asymmetric images at the model's input size (no resize or crop: mirroring commutes with preprocessing)
IMAGES = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)


def _model(seed: int = 3, **meta) -> TrainedModel:
    net = models.get_model("cifar_resnet20_v1", 3, pretrained=False, seed=seed)
    return TrainedModel(create_train_state(net, optax.identity()), {**META, **meta}, batch_size=4)


@pytest.fixture(scope="module")
def model() -> TrainedModel:
    return _model()


def test_tta_averages_each_image_and_its_mirror_image(model):
    model.tta = False
    plain, mirrored = model.predict_proba(IMAGES), model.predict_proba(IMAGES[:, :, ::-1])
    assert not np.allclose(plain, mirrored, atol=1e-4)   # else this test could not see the flip
    model.tta = True
    try:
        np.testing.assert_allclose(model.predict_proba(IMAGES), (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(model.predict(IMAGES), np.argmax((plain + mirrored) / 2, -1))
    finally:
        model.tta = False


def test_the_source_path_and_evaluate_apply_it_too(model):
    """predict_proba_source (the ensemble stage's and evaluate's path, through the compiled eval step) gives what
    predict_proba gives, with and without TTA, and evaluate scores those probabilities."""
    labels = np.array([0, 1, 2, 0, 1])
    source = jdata.ArraySource(IMAGES, labels, META["class_names"])
    for on in (False, True):
        model.tta = on
        probs, got_labels = model.predict_proba_source(source)
        np.testing.assert_array_equal(got_labels, labels)
        np.testing.assert_allclose(probs, model.predict_proba(IMAGES), rtol=1e-4, atol=1e-5)
        assert model.evaluate(source) == pytest.approx(np.mean(np.argmax(probs, -1) == labels))
    model.tta = False


def test_tta_is_saved_and_loaded_with_the_model(tmp_path):
    model = _model()
    assert model.tta is False and model.flip_trained
    model.tta = True
    again = load_trained(model.save(tmp_path / "m"))
    assert again.tta is True
    np.testing.assert_allclose(again.predict_proba(IMAGES), model.predict_proba(IMAGES), rtol=1e-6)
    with pytest.raises(ValueError, match="tta must be True or False"):
        again.tta = "yes"


def test_flip_trained_reads_the_recorded_augmentation():
    assert _model(augment="resized_crop+flip").flip_trained
    assert _model(augment="none+flip").flip_trained
    assert not _model(augment="pad_crop").flip_trained    # digits: no flips in training
    assert not _model(augment="resized_crop").flip_trained
    meta = {k: v for k, v in META.items() if k != "augment"}     # a checkpoint from before the record
    net = models.get_model("cifar_resnet20_v1", 3, pretrained=False, seed=3)
    assert not TrainedModel(create_train_state(net, optax.identity()), meta).flip_trained


def test_an_ensemble_sets_and_saves_its_members_tta(tmp_path):
    members = [_model(3), _model(4)]
    ensemble = EnsembleModel(members, [1.0, 1.0])
    assert ensemble.flip_trained and not ensemble.tta
    plain = ensemble.predict_proba(IMAGES)
    ensemble.tta = True
    assert all(m.tta for m in members)
    expected = np.mean([(m.predict_proba(IMAGES)) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict_proba(IMAGES), expected, rtol=1e-6)
    assert not np.allclose(ensemble.predict_proba(IMAGES), plain, atol=1e-5)
    again = load_ensemble(ensemble.save(tmp_path / "e"))
    assert again.tta
    np.testing.assert_allclose(again.predict_proba(IMAGES), expected, rtol=1e-6)
    assert not EnsembleModel([_model(3), _model(4, augment="pad_crop")], [1.0, 1.0]).flip_trained


class _NoTTA:   # the kernel model on pixels, say
    pass


@pytest.mark.parametrize("tta, augment, enabled", [
    ("auto", "resized_crop+flip", True), ("auto", "pad_crop", False), (True, "pad_crop", True),
    (False, "resized_crop+flip", False)])
def test_fit_rule_turns_it_on_for_flip_trained_nets_unless_told(tta, augment, enabled):
    served = _model(augment=augment)
    record = serve_tta(served, tta)
    assert record["enabled"] is enabled and served.tta is enabled and record["reason"]


def test_a_model_without_tta_is_left_alone():
    record = serve_tta(_NoTTA(), True)
    assert record["enabled"] is False and "_NoTTA" in record["reason"]
