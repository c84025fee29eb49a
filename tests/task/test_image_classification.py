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
    assert results.metadata["default_nets_left_out"] == {}          # a net the user names is never dropped
    # compile once per shape: the second trial of the search reuses the first one's programs
    first, second = sorted(results.trials, key=lambda t: t["trial_id"])
    assert first["results"][0]["compilations"] <= 10
    assert [r["compilations"] for r in second["results"]] == [0] * len(second["results"])
    best = results.leaderboard().iloc[0]
    assert best["trial_id"] == results.metadata["best_trial_id"]
    assert best["best_reward"] == pytest.approx(results.reward)
    # the default executor: both trials ran in one persistent worker process (its compiled programs reused)
    assert results.metadata["executor"] == "process_pool"
    assert results.metadata["executor_stats"] == {"num_worker_processes_started": 1, "num_workers_killed": 0,
                                                  "num_worker_processes_reused": 0}
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
    board = board[board["model"] == "trial"]   # then the ensemble's row, when one was built
    # ranked by the search's score (here log-loss: 20 images validate), shown as validation top-1
    ranked = sorted(results.trials, key=lambda t: -t["best_reward"])
    best = [max(t["results"], key=lambda r: r["reward"]) for t in ranked]
    assert list(board["trial_id"]) == [t["trial_id"] for t in ranked]
    assert list(board["best_reward"]) == [r["val_top1"] for r in best]
    assert list(board["val_loss"]) == [r["val_loss"] for r in best]


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


def test_fit_compiles_the_space_once_and_hands_it_to_tune(image_folders, monkeypatch):
    import importlib

    from jaxgluon.searcher import get_searcher
    from jaxgluon.space import CompiledSpace
    fit_module = importlib.import_module("jaxgluon.task.fit")
    seen = {}

    def fake_tune(train_fn, search_space, **kwargs):
        seen["space"], seen["num_trials"] = search_space, kwargs["num_trials"]
        raise InterruptedError("stop before any trial")

    monkeypatch.setattr(fit_module, "tune", fake_tune)
    with pytest.raises(InterruptedError):
        task.fit(task.Dataset(train_path=str(image_folders[0])), net="cifar_resnet20_v1", verbose=False)
    assert isinstance(seen["space"], CompiledSpace)
    assert seen["num_trials"] == fit_module.FIT_DEFAULT_NUM_TRIALS == 2    # fit's own default (tune's is 10)
    assert get_searcher("random", seen["space"]).space is seen["space"]     # the searcher does not compile again
    assert "metadata['overrun_s']" in fit_module.fit.__doc__ and "search_overrun_s" not in fit_module.fit.__doc__


def test_one_class_is_refused_where_the_training_data_enters(tmp_path):
    """A one-class folder used to fit with reward 1.0 and predict p=1.0; now Dataset and fit refuse it."""
    one = write_folder(tmp_path / "one", 4, 0, classes=("cats",))
    with pytest.raises(ValueError, match=r"has 1 class \['cats'\]; classification needs at least 2 classes"):
        task.Dataset(train_path=str(one))
    from jaxgluon.task.dataset import ImageDataset
    with pytest.raises(ValueError, match="at least 2 classes"):
        task.fit(ImageDataset("one", str(one), None), num_trials=1, verbose=False)
    assert task.Dataset(test_path=str(one)).synsets == ["cats"]     # test data may hold one class


def test_builtin_digits_dataset():
    train = task.Dataset(name="digits")
    test = task.Dataset(name="digits", train=False)
    assert train.synsets == [str(i) for i in range(10)] == test.synsets
    assert len(train) + len(test) == 1797
    assert abs(len(test) / 1797 - 0.2) < 0.01
    with pytest.raises(ValueError, match="Dataset needs"):
        task.Dataset()


def _cells(html_text: str) -> tuple[dict[str, str], list[list[str]]]:
    """The summary's (label -> value) fields and the leaderboard's rows, parsed as XML (so it must be well formed)."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(html_text)
    fields_table, *board = root.findall("table")
    fields = {tr.find("th").text: tr.find("td").text for tr in fields_table.findall("tr")}
    rows = [["".join(cell.itertext()) for cell in tr] for tr in board[0].findall("tr")] if board else []
    return fields, rows


def test_results_html_summary_and_dataframe_leaderboard(fitted):
    pd = pytest.importorskip("pandas")
    _, results, _ = fitted
    failed = {"trial_id": 7, "config": dict(results.config, lr_scheduler="<poly>"), "status": "ERROR",
              "rewards": [], "best_reward": None, "num_epochs": 0, "error": "ValueError: bad <input>",
              "start_time_s": 1.0, "end_time_s": 2.5}
    shown = Results(results.reward, results.config, results.metadata, [*results.trials, failed], results.model,
                    results.experiment_dir)
    board = shown.leaderboard()
    assert isinstance(board, pd.DataFrame)
    board = board[board["model"] == "trial"]   # then the ensemble's row, when one was built
    assert len(board) == 3
    assert list(board["trial_id"])[-1] == 7 and board["status"].iloc[-1] == "ERROR"   # failed trial last
    assert list(board["trial_id"][:2]) == [t["trial_id"] for t in sorted(results.trials,
                                                                          key=lambda t: -t["best_reward"])]
    assert board["optimizer"].iloc[0] == "adam" and board["optimizer.learning_rate"].iloc[0] == 3e-3
    assert board["seconds"].iloc[-1] == pytest.approx(1.5)
    columns = list(board.columns)
    assert columns[:8] == ["trial_id", "best_reward", "val_loss", "status", "epochs", "seconds", "net", "optimizer"]
    assert columns[-1] == "error" and all(c.startswith("optimizer.") for c in columns[8:columns.index("lr_scheduler")])
    assert board.to_dict("records")[0]["net"] == "cifar_resnet20_v1"
    assert "best_reward" in board.to_string()   # prints in a terminal

    fields, rows = _cells(shown._repr_html_())
    assert fields["validation top-1"] == f"{results.reward:.4g} (trial {results.metadata['best_trial_id']})"
    assert fields["net"] == "cifar_resnet20_v1"
    assert fields["optimizer"].startswith("adam(learning_rate=0.003")
    assert fields["lr_scheduler"] == results.config["lr_scheduler"]
    assert fields["trials"] == "2 completed, 1 error"
    assert fields["pretrained"] == "cifar_resnet20_v1=False"
    header, *body = rows
    assert header[:4] == ["trial_id", "best_reward", "val_loss", "status"]
    assert [row[0] for row in body] == [str(t) for t in board["trial_id"]]
    assert "ValueError: bad <input>" in body[-1] and "<poly>" in body[-1]   # escaped in the HTML, text again here
    over = Results(results.reward, results.config, {**results.metadata, "overrun_s": 3.5}, results.trials,
                   results.model, results.experiment_dir)
    assert _cells(over._repr_html_())[0]["overrun"] == "3.5 s"     # fit's one overrun figure
    text = repr(shown)
    assert "\n" not in text and text.startswith(f"Results(reward={results.reward:.4f}")


def test_plot_is_returned_and_not_left_open(fitted, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _, results, _ = fitted
    plt.close("all")
    fig = results.plot_training_curves(tmp_path / "curves.png")
    assert plt.get_fignums() == []     # saved: closed in pyplot, so scripts do not pile up figures
    fig.savefig(tmp_path / "again.png")   # the returned Figure still renders
    assert (tmp_path / "again.png").stat().st_size > 1000
    fig = results.plot_training_curves()
    assert len(fig.axes) == 2 and plt.get_fignums() == [fig.number]   # no path, no Jupyter: left for plt.show()
    plt.close("all")


def test_task_fit_shows_the_real_signature_and_docstring():
    import inspect
    from jaxgluon.task.fit import fit
    assert inspect.signature(task.fit) == inspect.signature(fit)
    assert "time_limits" in inspect.signature(task.fit).parameters and task.fit.__doc__ == fit.__doc__
