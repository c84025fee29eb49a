"""The kernel model on raw pixels: a candidate ranked on validation beside the nets, served by predict/save/load."""
from __future__ import annotations

import doctest
import importlib
import types

import numpy as np
import pytest

from jaxgluon import ImageClassification as task
from jaxgluon import data as jdata
from jaxgluon.task import Results, defaults, pixel_model
from jaxgluon.task.pixel_model import PIXEL_CHOICE, fit_pixel_kernel, load_pixel_model
from jaxgluon.train.integrity import SavedModelError

from task_files import FAST

fit_module = importlib.import_module("jaxgluon.task.fit")


def _patterns(n_per_class: int, seed: int) -> jdata.ArraySource:
    """Three classes of 8x8 images (a horizontal bar, a vertical bar, a diagonal) under noise."""
    rng = np.random.default_rng(seed)
    shapes = np.zeros((3, 8, 8))
    shapes[0, 3:5, :] = 1
    shapes[1, :, 3:5] = 1
    shapes[2][np.eye(8, dtype=bool)] = 1
    labels = np.repeat(np.arange(3), n_per_class)
    images = np.clip(shapes[labels] * 180 + 40 + rng.normal(0, 30, (len(labels), 8, 8)), 0, 255).astype(np.uint8)
    return jdata.ArraySource(images, labels, ["h", "v", "d"])


def test_pixel_kernel_ranks_on_validation_and_round_trips(tmp_path):
    train, val = jdata.stratified_split(_patterns(40, 0), val_fraction=0.25, seed=0)
    candidate = fit_pixel_kernel(train, val, "log_loss")
    assert candidate.val_top1 >= 0.9 and candidate.loo_top1 >= 0.9
    assert candidate.reward == pytest.approx(np.exp(-candidate.val_loss))   # the trials' log-loss scale
    assert candidate.config["net"] == "pixel_kernel" and candidate.side == 8
    assert fit_pixel_kernel(train, val, "accuracy").reward == candidate.val_top1
    model = candidate.refit(train, val)
    assert model.meta["refit"] and model.meta["train_images"] == len(train) + len(val)
    test = _patterns(10, 1)
    assert model.evaluate(test) >= 0.9
    images = np.stack([test[i]["image"] for i in range(len(test))])
    probs = model.predict_proba(images)
    assert probs.shape == (30, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert model.predict_proba([images[0]])[0] == pytest.approx(probs[0], abs=1e-6)

    saved = model.save(tmp_path / "m")
    loaded = load_pixel_model(saved)
    assert np.allclose(loaded.predict_proba(images), probs, atol=1e-6)
    assert loaded.class_names == ["h", "v", "d"]
    with pytest.raises(ValueError, match="already holds"):
        model.save(saved)
    npz = saved / pixel_model.ARRAYS_FILE
    npz.write_bytes(npz.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(SavedModelError, match="pixel_model.npz"):
        load_pixel_model(saved)


def _experiment(trials):
    return types.SimpleNamespace(trials=trials, best_trial_id=next((t["trial_id"] for t in trials
                                                                   if t.get("best_reward") is not None), None))


def test_final_choice_ranks_the_pixel_model_beside_the_trials(tmp_path):
    trials = [{"trial_id": 0, "status": "COMPLETED", "best_reward": 0.8, "config": {}}]
    better = types.SimpleNamespace(reward=0.9)
    worse = types.SimpleNamespace(reward=0.7)
    tie = types.SimpleNamespace(reward=0.8)
    assert fit_module._final_choice(_experiment(trials), tmp_path, 60, better) == (PIXEL_CHOICE, None)
    assert fit_module._final_choice(_experiment(trials), tmp_path, 60, worse) == (0, None)
    assert fit_module._final_choice(_experiment(trials), tmp_path, 60, tie) == (0, None)   # networks win ties
    # the capped fallback on larger images does not contend with a scored network, however it validates ...
    assert fit_module._final_choice(_experiment(trials), tmp_path, 60, better, pixel_fallback=True) == (0, None)
    unreported = [{"trial_id": 0, "status": "STOPPED", "best_reward": None, "config": {}}]
    with pytest.warns(RuntimeWarning, match="kernel model on pixels"):
        assert fit_module._final_choice(_experiment(unreported), tmp_path, 15, worse) == (PIXEL_CHOICE, None)
    with pytest.warns(RuntimeWarning, match="kernel model on pixels"):   # ... it is the model when none was scored
        assert fit_module._final_choice(_experiment(unreported), tmp_path, 15, worse,
                                        pixel_fallback=True) == (PIXEL_CHOICE, None)
    with pytest.raises(RuntimeError, match="no trial reported"):
        fit_module._final_choice(_experiment(unreported), tmp_path, 15, None)


def test_default_search_admits_the_pixel_model_as_a_contender_on_small_images_only(image_folders):
    assert doctest.testmod(defaults, optionflags=doctest.ELLIPSIS).failed == 0
    small = defaults.fit_defaults(jdata.open_source("digits:train"), backend="cpu", time_limits=60)
    assert small.pixel_model
    large = jdata.ArraySource(np.zeros((4, 200, 200, 3), np.uint8), np.array([0, 1, 0, 1]), ["a", "b"])
    assert not defaults.fit_defaults(large, backend="cpu", time_limits=60).pixel_model


def test_fit_returns_the_pixel_model_when_it_validates_best(image_folders, tmp_path):
    train, test = image_folders
    dataset = task.Dataset(train_path=str(train))
    results = task.fit(dataset, num_trials=1, epochs=1, output_directory=tmp_path / "exp", pixel_model=True,
                       metric="log_loss", **FAST)
    meta = results.metadata
    assert meta["pixel_model"]["val_top1"] == 1.0            # dark vs light: separable on pixels
    assert meta["pixel_model"]["role"] == "contender"
    assert meta["final_model"] == "pixel_kernel" and results.config["net"] == "pixel_kernel"
    assert results.reward == meta["pixel_model"]["val_top1"] and meta["best_trial_id"] is None
    assert meta["tta"]["enabled"] is False        # tta='auto': the kernel model has none
    board = results.leaderboard_rows()
    assert board[0]["net"] == "pixel_kernel" and board[0]["trial_id"] is None and len(board) == 2
    assert board[1]["trial_id"] == 0
    assert "pixel_kernel" in results._repr_html_() and list(results.leaderboard()["net"])[0] == "pixel_kernel"
    test_set = task.Dataset(test_path=str(test))
    assert task.evaluate(test_set) == 1.0
    ind, prob = task.predict(str(next((test / "light").iterdir())))
    assert ind.item() == 1 and 0.5 < prob.item() <= 1.0
    loaded = Results.load(results.save(tmp_path / "saved"))
    assert loaded.metadata["final_model"] == "pixel_kernel"
    files = sorted(str(p) for p in (test / "dark").iterdir())
    assert np.allclose(loaded.predict_proba(files), results.predict_proba(files), atol=1e-6)
    with pytest.raises(ValueError, match="pixel_model must be"):
        task.fit(dataset, num_trials=1, pixel_model="yes", **FAST)
