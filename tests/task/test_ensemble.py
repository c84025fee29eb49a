"""An ensemble's predictions: its members fed alike share each batch and decoded image, and the mix is what each
member predicts alone (jaxgluon.task.ensemble, jaxgluon.train.trained.predict_source_together)."""
from __future__ import annotations

import numpy as np
import optax
import pytest

from jaxgluon import data as jdata
from jaxgluon import models
from jaxgluon.task.ensemble import EnsembleModel
from jaxgluon.train import TrainedModel, create_train_state
from jaxgluon.train.trial import META_FORMAT

META = {"format": META_FORMAT, "net": "cifar_resnet20_v1", "num_classes": 3, "class_names": ["a", "b", "c"],
        "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "augment": "pad_crop+flip"}
IMAGES = np.random.default_rng(0).integers(0, 256, (7, 20, 20, 3), dtype=np.uint8)
LABELS = np.array([0, 1, 2, 0, 1, 2, 0])


def _model(seed: int, **meta) -> TrainedModel:
    net = models.get_model("cifar_resnet20_v1", 3, pretrained=False, seed=seed)
    return TrainedModel(create_train_state(net, optax.identity()), {**META, **meta}, batch_size=4)


@pytest.fixture(scope="module")
def members() -> list[TrainedModel]:
    """Two members fed 16 px images (one with test-time augmentation) and one fed 24 px images."""
    a, b, c = _model(1), _model(2), _model(3, image_size=24)
    b.tta = True
    return [a, b, c]


def _counting(monkeypatch, name: str) -> list:
    calls, real = [], getattr(jdata, name)

    def counted(*args, **kwargs):
        calls.append(kwargs.get("image_size", args[1] if len(args) > 1 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(jdata, name, counted)
    return calls


def test_members_fed_alike_share_one_pass_over_the_source(members, monkeypatch):
    source = jdata.ArraySource(IMAGES, LABELS, META["class_names"])
    alone = [m.predict_proba_source(source) for m in members]
    loaders = _counting(monkeypatch, "make_loader")
    ensemble = EnsembleModel(members, [2.0, 1.0, 1.0])
    probs, labels = ensemble.predict_proba_source(source)
    assert sorted(loaders) == [16, 24]   # one pass per input size, not one per member
    np.testing.assert_array_equal(labels, LABELS)
    want = (2 * alone[0][0] + alone[1][0] + alone[2][0]) / 4
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-6)
    assert ensemble.evaluate(source) == pytest.approx(np.mean(np.argmax(want, -1) == LABELS))


def test_predict_proba_decodes_the_images_once_per_input(members, monkeypatch):
    alone = [m.predict_proba(IMAGES) for m in members]
    decodes = _counting(monkeypatch, "preprocess_eval")
    probs = EnsembleModel(members, [1.0, 1.0, 2.0]).predict_proba(IMAGES)
    assert sorted(decodes) == [16, 24]
    np.testing.assert_allclose(probs, (alone[0] + alone[1] + 2 * alone[2]) / 4, rtol=1e-5, atol=1e-6)


def test_a_deadline_passed_before_the_first_batch_gives_none(members):
    source = jdata.ArraySource(IMAGES, LABELS, META["class_names"])
    assert EnsembleModel(members, [1.0, 1.0, 1.0]).predict_proba_source(source, deadline=0.0) is None
