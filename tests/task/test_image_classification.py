"""The tutorial flow end to end on a tiny folder, and the task's errors."""
from __future__ import annotations

import time

import numpy as np
import pytest

import jaxgluon as ag
from jaxgluon import ImageClassification as task
from jaxgluon.task import Results

from task_files import FAST, write_folder


@pytest.fixture(scope="module")
def fitted(image_folders, tmp_path_factory):
    train, _ = image_folders
    dataset = task.Dataset(name="tiny", train_path=str(train))
    out = tmp_path_factory.mktemp("fit")
    # Two schedules make a space of two configs: the random searcher tries both.
    results = task.fit(dataset, lr_scheduler=ag.List("cosine", "constant"), num_trials=2, epochs=2,
                       output_directory=out / "exp", **FAST)
    return dataset, results, out


def test_fit_returns_reward_metadata_and_trials(fitted):
    dataset, results, _ = fitted
    assert 0.0 <= results.reward <= 1.0
    for key in ["net", "optimizer", "search_strategy", "stop_criterion", "resources_per_trial", "lr_scheduler",
                "num_trials_completed", "time_used_s", "pretrained"]:
        assert key in results.metadata, key
    assert results.metadata["net"] == "cifar_resnet20_v1"
    assert results.metadata["optimizer"]["name"] == "adam"
    assert results.metadata["optimizer"]["learning_rate"] == 3e-3
    assert results.metadata["pretrained"] == {"cifar_resnet20_v1": False}
    assert results.metadata["head_init"] == "linear_probe"   # the default (applied only to pretrained nets)
    assert len(results.trials) == 2 and results.metadata["num_trials_completed"] == 2
    # the default executor: both trials ran in one persistent worker process (its compiled programs reused)
    assert results.metadata["executor"] == "process_pool"
    assert results.metadata["executor_stats"] == {"num_worker_processes_started": 1, "num_workers_killed": 0}
    assert results.leaderboard()[0]["trial_id"] == results.metadata["best_trial_id"]
    assert results.leaderboard()[0]["best_reward"] == pytest.approx(results.reward)
    assert dataset.init().synsets == ["dark", "light"]


def test_learns_the_separable_task_and_evaluates(fitted, image_folders):
    _, results, _ = fitted
    test = task.Dataset(name="tiny", test_path=str(image_folders[1]))
    accuracy = task.evaluate(test)
    assert accuracy == pytest.approx(results.evaluate(test))
    assert accuracy >= 0.75  # chance is 0.5; the classes differ by mean brightness
    with pytest.raises(ValueError, match="test data"):
        results.evaluate(task.Dataset(train_path=str(image_folders[0])))


def test_predict_on_a_path_an_array_and_a_list(fitted, image_folders):
    _, results, _ = fitted
    path = sorted((image_folders[1] / "light").iterdir())[0]
    ind, prob = task.predict(str(path))
    assert isinstance(ind.item(), int) and 0.0 <= prob.item() <= 1.0
    assert ind.shape == () and prob.shape == ()
    proba = task.predict_proba(str(path))
    assert proba.shape == (2,) and proba.sum() == pytest.approx(1.0, abs=1e-5)
    paths = [str(p) for p in sorted((image_folders[1] / "dark").iterdir())[:3]]
    inds, probs = results.predict(paths)
    assert inds.shape == (3,) and probs.shape == (3,)
    from PIL import Image
    array = np.asarray(Image.open(path).convert("RGB"))
    assert results.predict(array)[0].item() == ind.item()


def test_save_and_load_give_the_same_predictions(fitted, image_folders, tmp_path):
    _, results, _ = fitted
    paths = [str(p) for p in sorted((image_folders[1] / "dark").iterdir())[:4]]
    saved = results.save(tmp_path / "model")
    loaded = task.load(saved)
    assert isinstance(loaded, Results)
    np.testing.assert_allclose(loaded.predict_proba(paths), results.predict_proba(paths), atol=1e-6)
    assert loaded.reward == results.reward and loaded.config == results.config
    with pytest.raises(ValueError, match="not empty"):
        results.save(saved)


def test_plot_training_curves_and_leaderboard(fitted, tmp_path):
    pytest.importorskip("matplotlib")
    _, results, _ = fitted
    fig = results.plot_training_curves(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    curves = fig.axes[0].get_lines()
    assert len(curves) == len(results.trials)
    assert [list(line.get_ydata()) for line in curves] == [t["rewards"] for t in results.trials]
    board = results.leaderboard()
    assert [row["best_reward"] for row in board] == sorted((t["best_reward"] for t in results.trials), reverse=True)


def test_resume_keeps_finished_trials(fitted):
    dataset, results, out = fitted
    # Same space (two configs, both done): resuming with a larger budget keeps both trials as they were.
    resumed = task.fit(dataset, lr_scheduler=ag.List("cosine", "constant"), num_trials=3, epochs=2,
                       output_directory=out / "exp", resume=True, **FAST)
    assert len(resumed.trials) == 2
    for before, after in zip(results.trials, resumed.trials):
        assert after["trial_id"] == before["trial_id"] and after["rewards"] == before["rewards"]


def test_hyperband_over_nets_optimizers_and_schedules_within_time_limits(image_folders, tmp_path):
    dataset = task.Dataset(train_path=str(image_folders[0]))
    optimizers = ag.Optimizers([ag.optimizer.SGD(learning_rate=ag.LogLinear(1e-3, 1e-1)),
                                ag.optimizer.Adam(learning_rate=ag.LogLinear(1e-4, 1e-2))])
    fast = {k: v for k, v in FAST.items() if k not in ("net", "optimizer")}
    limit = 25.0
    start = time.perf_counter()
    results = task.fit(dataset, ag.Nets(["cifar_resnet20_v1"]), optimizers, lr_scheduler=ag.List("poly", "cosine"),
                       search_strategy="hyperband", time_limits=limit, epochs=3, output_directory=tmp_path / "hb",
                       executor="in_process", **fast)  # reuses the programs compiled by the tests before it
    elapsed = time.perf_counter() - start
    assert results.metadata["search_strategy"] == "hyperband"
    assert results.config["lr_scheduler"] in ("poly", "cosine")
    assert results.metadata["time_used_s"] == pytest.approx(elapsed, rel=0.2, abs=2.0)
    # The deadline is hard up to one reporting interval (one epoch + its validation) and the final restore.
    epoch_s = max(r["epoch_seconds"] for t in results.trials for r in t["results"])
    assert elapsed <= limit + 2 * epoch_s + 15, (elapsed, epoch_s)


def test_bad_inputs_have_clear_errors(image_folders, tmp_path):
    train, test = image_folders
    with pytest.raises(FileNotFoundError, match="no such folder"):
        task.Dataset(train_path=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        task.Dataset(train_path=str(tmp_path / "empty"))
    other = write_folder(tmp_path / "other", 2, 3, classes=("cats", "dogs"))
    with pytest.raises(ValueError, match="differ from the training classes"):
        task.Dataset(train_path=str(train), test_path=str(other))
    dataset = task.Dataset(train_path=str(train))
    with pytest.raises(ValueError, match="resnet18_v1"):
        task.fit(dataset, net="resnet18_v7", num_trials=1, verbose=False)
    with pytest.raises(ValueError, match="time_limits"):
        task.fit(dataset, time_limits=0, verbose=False)
    with pytest.raises(ValueError, match="search_strategy"):
        task.fit(dataset, search_strategy="genetic", verbose=False)
    with pytest.raises(ValueError, match="lr_scheduler"):
        task.fit(dataset, lr_scheduler="linear", verbose=False)


def test_builtin_digits_dataset():
    train = task.Dataset(name="digits")
    test = task.Dataset(name="digits", train=False)
    assert train.synsets == [str(i) for i in range(10)] == test.synsets
    assert len(train) + len(test) == 1797
    assert abs(len(test) / 1797 - 0.2) < 0.01
    with pytest.raises(ValueError, match="Dataset needs"):
        task.Dataset()
