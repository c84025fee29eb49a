"""``fit``'s refit choice: 'auto' (the default) by the validation share, the reserve's cap, and why no refit ran."""
from __future__ import annotations

import inspect

import pytest

from jaxgluon import ImageClassification as task
from jaxgluon.task.refit import REFIT_MAX_SHARE, RefitKeep

from task_files import FAST, search_arguments


def test_refit_true_keeps_at_most_a_third_of_the_search_for_its_refit(image_folders, monkeypatch):
    """fit(refit=True) hands the search a RefitKeep capped at REFIT_MAX_SHARE of the search's time limit: a refit
    estimated above it reserves nothing (on loaded 600 s fits, larger reserves left the search 1-3 trials)."""
    asked = search_arguments(monkeypatch, task.Dataset(train_path=str(image_folders[0])), refit=True)
    keep = asked["keep_seconds"]
    assert isinstance(keep, RefitKeep)
    assert keep.max_seconds == pytest.approx(REFIT_MAX_SHARE * asked["time_limits"])


def test_refit_auto_is_the_default_and_refits_when_validation_holds_a_fifth_of_the_images(image_folders,
                                                                                          monkeypatch):
    """``refit='auto'`` (the default) keeps the search's end for a refit when the validation split holds at least
    REFIT_AUTO_MIN_VAL_SHARE of the images (these folders' default split: a quarter), not with a tenth."""
    assert inspect.signature(task.fit).parameters["refit"].default == "auto"
    small = task.Dataset(train_path=str(image_folders[0]))          # 80 images, 20 held out
    assert isinstance(search_arguments(monkeypatch, small, refit="auto")["keep_seconds"], RefitKeep)
    tenth = task.Dataset(train_path=str(image_folders[0]), val_fraction=0.1)
    assert search_arguments(monkeypatch, tenth, refit="auto")["keep_seconds"] is None
    assert isinstance(search_arguments(monkeypatch, tenth, refit=True)["keep_seconds"], RefitKeep)


def test_refit_auto_off_says_why_and_adds_no_leaderboard_row(image_folders):
    dataset = task.Dataset(train_path=str(image_folders[0]), val_fraction=0.1)
    results = task.fit(dataset, num_trials=1, epochs=1, executor="in_process", ensemble=False,
                       **{**FAST, "refit": "auto"})
    refit = results.metadata["refit"]
    assert refit["status"] == "off" and "10% of the 80 labelled images (under 20%)" in refit["reason"], refit
    assert results.metadata["final_model"] == "single"
    assert [r["model"] for r in results.leaderboard_rows()] == ["trial"]
