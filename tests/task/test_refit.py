"""``fit``'s refit choice: 'auto' (the default) by the validation share, the reserve (its estimate, its cap), and why
no refit ran."""
from __future__ import annotations

import inspect

import pytest

from jaxgluon import ImageClassification as task
from jaxgluon.task.refit import REFIT_MAX_SHARE, RefitKeep
from jaxgluon.tune import KeepSeconds
from jaxgluon.tune.records import TrialRecord

from task_files import FAST, search_arguments


def test_refit_true_keeps_at_most_a_third_of_the_search_for_its_refit(image_folders, monkeypatch):
    """fit(refit=True) hands the search a RefitKeep capped at REFIT_MAX_SHARE of the search's time limit: a refit
    estimated above it reserves nothing (on loaded 600 s fits, larger reserves left the search 1-3 trials)."""
    asked = search_arguments(monkeypatch, task.Dataset(train_path=str(image_folders[0])), refit=True)
    keep = asked["keep_seconds"]
    assert isinstance(keep, RefitKeep)
    assert keep.max_seconds == pytest.approx(REFIT_MAX_SHARE * asked["time_limits"])


def _epoch(epoch, reward, **timings):
    return {"epoch": epoch, "reward": reward, "epoch_seconds": 10.0, "train_seconds": 9.0, **timings}


def test_the_reserve_counts_a_cold_setup_and_says_the_least_its_refit_needs():
    """The refit runs in the fit's process, cold: a best trial that ran warm in a worker (1 s setup, its probe
    cached) is estimated with the setup its net's first trial measured in a fresh worker. The reserve's least is
    the refit alone; the rest is the epoch in flight when the search winds down."""
    cold = TrialRecord(0, {"net": "lite2"}, results=[_epoch(1, 0.5, setup_seconds=12.0, linear_probe_seconds=8.0,
                                                            first_step_seconds=4.0)])
    warm = TrialRecord(1, {"net": "lite2"}, results=[_epoch(1, 0.9, setup_seconds=1.0, linear_probe_seconds=0.0,
                                                            first_step_seconds=3.0)])
    other = TrialRecord(2, {"net": "lite0"}, results=[_epoch(1, 0.4, setup_seconds=50.0, first_step_seconds=9.0)])
    keep = RefitKeep(scale=1.5, margin=1.0)
    # cold setup 12 + 8 x 0.5 + 4 = 20 (not the warm 1 + 3, nor the other net's 59), plus one epoch of
    # (9 - 3 s of first step) x 1.5 + 1 = 10
    assert keep({0: cold, 1: warm, 2: other}) == KeepSeconds(seconds=30.0 + 10.0, least=30.0)
    assert keep({1: warm}) == KeepSeconds(seconds=14.0 + 10.0, least=14.0)   # alone, its own setup
    # its linear probe scored best: refitting the probe costs what the net's cold probe took (8 s x 1.5 images)
    warm.results[0].update(probe_reward=0.95, linear_probe_seconds=0.02)
    assert keep({0: cold, 1: warm, 2: other}) == KeepSeconds(seconds=12.0 + 10.0, least=12.0)


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
