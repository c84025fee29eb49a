"""k-fold cross-validation of the final candidates (fit(num_folds=k)): folds, validation of num_folds, a misranked
search corrected by CV, and CV skipped when its estimate does not fit the budget."""
from __future__ import annotations

import time
import types

import numpy as np
import pytest

from jaxgluon import ImageClassification as task
from jaxgluon.space import Categorical
from jaxgluon.space.optimizer import Adam
from jaxgluon.task.cross_validation import (candidates, check_num_folds, cross_validate, fold_indices, fold_spec)
from jaxgluon.train import TrialSpec

from task_files import FAST

NET = {"net": "cifar_resnet20_v1", "lr_scheduler": "constant"}
#: learns dark vs light in 5 epochs of 5 steps (enough for BatchNorm's running statistics to follow) / does not move
#: from its random init
GOOD = {**NET, "optimizer": {"name": "adam", "learning_rate": 3e-3}}
BAD = {**NET, "optimizer": {"name": "adam", "learning_rate": 1e-9}}


def _experiment(tmp_path, trials):
    return types.SimpleNamespace(experiment_dir=str(tmp_path / "exp"), trials=trials)


def _trial(tid, config, reward, epoch_seconds=0.5, epoch=1):
    return {"trial_id": tid, "config": config, "status": "COMPLETED",
            "results": [{"epoch": epoch, "reward": reward, "val_top1": reward, "epoch_seconds": epoch_seconds,
                         "train_seconds": 0.8 * epoch_seconds, "setup_seconds": 0.1, "first_step_seconds": 0.1}]}


def test_fold_indices_partition_every_image_and_stratify():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3)
    folds = fold_indices(labels, 3, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(20))
    assert [len(f) for f in folds] in ([7, 7, 6], [7, 6, 7], [6, 7, 7])
    for f in folds:   # every fold holds its share of each class (within one image)
        counts = np.bincount(labels[f], minlength=3)
        assert all(abs(c - n / 3) < 1 for c, n in zip(counts, (10, 7, 3)))
    assert [f.tolist() for f in fold_indices(labels, 3, seed=1)] == [f.tolist() for f in folds]


def test_docstring_example_runs():
    import doctest
    import jaxgluon.task.cross_validation as module
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True, "5"])
def test_bad_num_folds_is_refused_where_it_enters(bad, image_folders):
    with pytest.raises(ValueError, match="num_folds must be None .* or an int >= 2"):
        check_num_folds(bad)
    with pytest.raises(ValueError, match="num_folds"):   # before any trial runs
        task.fit(task.Dataset(train_path=str(image_folders[0])), num_folds=bad, **FAST)
    assert check_num_folds(None) is None and check_num_folds(np.int64(4)) == 4


def test_fold_spec_trains_on_the_other_folds_and_validates_on_its_own(image_folders):
    spec = TrialSpec(train_data=str(image_folders[0]), val_fraction=0.25, image_size=16)
    views = [fold_spec(spec, 4, k, seed=0).sources() for k in range(4)]
    held_out = [set(v.indices.tolist()) for _, v in views]
    assert sorted(i for h in held_out for i in h) == list(range(80))      # each image held out exactly once
    for (train, val), h in zip(views, held_out):
        assert len(train) + len(val) == 80 and not h & set(train.indices.tolist())
    assert len({fold_spec(spec, 4, k, 0).val_data for k in range(4)}) == 4   # distinct probe-cache keys


def test_candidates_are_distinct_configs_best_first(tmp_path):
    trials = [_trial(0, GOOD, 0.7), _trial(1, BAD, 0.9), _trial(2, dict(GOOD), 0.8),
              _trial(3, {**GOOD, "label_smoothing": 0.1}, 0.6),
              {"trial_id": 4, "config": GOOD, "status": "COMPLETED", "results": []}]
    found, left_out = candidates(_experiment(tmp_path, trials))
    assert [c["trial_id"] for c in found] == [1, 2, 3]        # trial 0 repeats trial 2's config with a worse score
    assert left_out == [{"trial_id": 4, "reason": "no fine-tuning epoch reported"}]


def test_cv_corrects_a_misranked_search(image_folders, tmp_path):
    # the search tied the two configs (made-up scores, as a tiny validation split makes them) and its tie-break
    # ranked the one that cannot learn first; 2-fold CV trains both for real (the programs FAST's tests compile)
    # and picks the one that learns
    spec = TrialSpec(train_data=str(image_folders[0]), val_fraction=0.25, image_size=16, batch_size=8,
                     pretrained=False, metric="log_loss")
    experiment = _experiment(tmp_path, [_trial(0, BAD, 0.95, epoch=5), _trial(1, GOOD, 0.95, epoch=5)])
    chosen, record = cross_validate(experiment, spec, 0, num_folds=2, deadline=None)
    assert record["status"] == "changed" and chosen == record["chosen_trial_id"] == 1, record
    bad, good = record["candidates"]
    assert (bad["trial_id"], good["trial_id"]) == (0, 1)
    assert len(bad["fold_scores"]) == len(good["fold_scores"]) == 2
    assert good["mean_score"] > bad["mean_score"] and good["epochs"] == 5
    assert good["mean_score"] == pytest.approx(np.mean(good["fold_scores"]))
    assert not (tmp_path / "exp" / "cv").exists()     # fold checkpoints are not kept


def test_cv_is_skipped_with_the_reason_when_the_budget_is_too_small(image_folders, tmp_path):
    spec = TrialSpec(train_data=str(image_folders[0]), val_fraction=0.25, image_size=16, pretrained=False)
    experiment = _experiment(tmp_path, [_trial(0, BAD, 0.9, epoch_seconds=5.0), _trial(1, GOOD, 0.8, 5.0)])
    start = time.perf_counter()
    chosen, record = cross_validate(experiment, spec, 0, num_folds=3, deadline=time.time() + 4)
    assert chosen == 0 and record["status"] == "skipped" and record["chosen_trial_id"] == 0
    assert "needs about" in record["reason"] and record["estimate_s"] == 0.0
    assert all(c["status"] == "does not fit" and c["estimate_s"] > 4 for c in record["candidates"])
    assert time.perf_counter() - start < 4 and not (tmp_path / "exp" / "cv").exists()   # nothing trained
    one = _experiment(tmp_path, [_trial(0, GOOD, 0.9), _trial(1, dict(GOOD), 0.8)])
    _, record = cross_validate(one, spec, 0, num_folds=3, deadline=None)
    assert record["status"] == "skipped" and "1 distinct config" in record["reason"]


def test_fit_serves_the_cv_choice_and_records_the_folds(image_folders, tmp_path):
    dataset = task.Dataset(train_path=str(image_folders[0]))
    results = task.fit(dataset, num_trials=2, epochs=1, lr_scheduler="constant", executor="in_process",
                       output_directory=tmp_path / "exp", ensemble=False, num_folds=2, search_strategy="grid",
                       **{**FAST, "optimizer": Categorical(Adam(learning_rate=3e-3), Adam(learning_rate=1e-9))})
    cv = results.metadata["cv"]
    assert cv["num_folds"] == 2 and cv["status"] in ("changed", "confirmed"), cv
    assert [len(c["fold_scores"]) for c in cv["candidates"]] == [2, 2]
    best = max(cv["candidates"], key=lambda c: c["mean_score"])
    assert results.metadata["best_trial_id"] == cv["chosen_trial_id"] == best["trial_id"]
    assert results.config == best["config"] and results.metadata["best_epoch"] == best["epochs"] == 1
    assert results.metadata["final_model"] == "single"
    loaded = task.load(results.save(tmp_path / "saved"))    # the record round-trips with the model
    assert loaded.metadata["cv"] == cv and loaded.config == results.config
