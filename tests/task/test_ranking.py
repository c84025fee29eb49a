"""Ranking on small validation sets: log-loss breaks the ties top-1 makes; the default validation split by size."""
from __future__ import annotations

import math

import pytest

import jaxgluon as ag
from jaxgluon import ImageClassification as task
from jaxgluon.task.defaults import default_val_fraction, ranking_metric
from jaxgluon.train.trial import validation_scores

from task_files import FAST


def test_log_loss_reward_breaks_a_top1_tie():
    confident = {"correct": 9.0, "count": 10.0, "loss": 1.0}     # same top-1, lower summed log-loss
    hesitant = {"correct": 9.0, "count": 10.0, "loss": 4.0}
    assert validation_scores(confident, "accuracy")[0] == validation_scores(hesitant, "accuracy")[0] == 0.9
    best, top1, loss = validation_scores(confident, "log_loss")
    assert best == pytest.approx(math.exp(-0.1)) and top1 == 0.9 and loss == pytest.approx(0.1)
    assert best > validation_scores(hesitant, "log_loss")[0]


def test_auto_metric_and_validation_fraction_follow_the_data_size():
    assert ranking_metric("auto", 24) == "log_loss" and ranking_metric("auto", 1000) == "accuracy"
    assert ranking_metric("accuracy", 24) == "accuracy" and ranking_metric("log_loss", 1000) == "log_loss"
    with pytest.raises(ValueError, match="metric must be one of"):
        ranking_metric("f1", 10)
    assert default_val_fraction(100) == 0.25 and default_val_fraction(10**6) == 0.1
    assert 200 <= 1000 * default_val_fraction(1000) <= 201
    digits = task.Dataset(name="digits")
    assert digits.val_fraction == pytest.approx(200 / len(digits))
    assert task.Dataset(name="digits", val_fraction=0.3).val_fraction == 0.3


def test_fit_ranks_small_validation_sets_by_log_loss_and_shows_top1(image_folders, tmp_path):
    dataset = task.Dataset(train_path=str(image_folders[0]))       # 80 images: 25% (20) validate
    results = task.fit(dataset, lr_scheduler=ag.List("constant", "cosine", "poly"), num_trials=3, epochs=1,
                       output_directory=tmp_path / "exp", **FAST)
    assert results.metadata["metric"] == "log_loss" and results.metadata["num_validation_images"] == 20
    reported = {t["trial_id"]: t["results"][-1] for t in results.trials}
    assert len({r["val_top1"] for r in reported.values()}) == 1         # separable data: top-1 ties (1.0)...
    chosen = min(reported, key=lambda tid: reported[tid]["val_loss"])   # ...the lowest log-loss wins...
    assert results.metadata["best_trial_id"] == chosen
    assert results.reward == reported[chosen]["val_top1"]                # ...and its top-1 is what fit reports
    board = [row for row in results.leaderboard_rows() if row["model"] == "trial"]
    assert [row["trial_id"] for row in board] == sorted(reported, key=lambda tid: reported[tid]["val_loss"])
    assert [row["best_reward"] for row in board] == [reported[row["trial_id"]]["val_top1"] for row in board]
    with pytest.raises(ValueError, match="metric must be one of"):
        task.fit(dataset, metric="top5", num_trials=1, **FAST)
