"""The ensemble forecast during the search (``final_model.EnsembleForecast``) and the refit reserve it releases: a
refit is not served beside a chosen ensemble, so the search keeps no time for one while an ensemble would be."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

from jaxgluon import ImageClassification as task
from jaxgluon.space import Real
from jaxgluon.space.optimizer import Adam
from jaxgluon.task import final_model
from jaxgluon.task.final_model import EnsembleForecast
from jaxgluon.task.refit import RefitKeep
from jaxgluon.tune.records import TrialRecord

from task_files import FAST, search_arguments

LABELS = np.array([0, 0, 1, 1])
# each right with confidence on half the images and unsure on the rest: their average beats both
LEFT = np.array([[.9, .1], [.55, .45], [.1, .9], [.45, .55]])
RIGHT = np.array([[.55, .45], [.9, .1], [.45, .55], [.1, .9]])
SURE = np.array([[.99, .01], [.99, .01], [.01, .99], [.01, .99]])


def _records(nets: dict[int, str]) -> dict[int, TrialRecord]:
    return {tid: TrialRecord(tid, {"net": net}, status="COMPLETED",
                             results=[{"epoch": 1, "reward": 0.9 - 0.1 * tid, "epoch_seconds": 2.0}])
            for tid, net in nets.items()}


@pytest.fixture
def kept(monkeypatch, tmp_path):
    """``{trial_id: probabilities}`` the trials kept for epoch 1 (reads counted); no probes."""
    predictions, reads = {}, []

    def stored(trial_dir, epoch):
        reads.append((pathlib.Path(trial_dir).name, epoch))
        probs = predictions.get(int(pathlib.Path(trial_dir).name))
        return None if probs is None or epoch != 1 else (probs, LABELS)

    monkeypatch.setattr(final_model, "stored_predictions", stored)
    monkeypatch.setattr(final_model, "read_probe_record", lambda trial_dir: None)
    return predictions, reads


def test_the_forecast_says_an_ensemble_would_be_served_when_it_beats_its_best_member(kept, tmp_path):
    predictions, reads = kept
    forecast = EnsembleForecast(tmp_path, "log_loss")
    predictions.update({0: LEFT, 1: RIGHT})
    assert forecast(_records({0: "a", 1: "b"})) is True          # two nets: the average, better than either
    predictions[1] = SURE
    assert EnsembleForecast(tmp_path, "log_loss")(_records({0: "a", 1: "b"})) is False   # one model beats it
    assert sorted(reads).count(("0", 1)) == 2                     # read once per forecast object, then cached
    forecast(_records({0: "a", 1: "b"}))
    assert sorted(reads).count(("0", 1)) == 2
    forecast(_records({0: "a"}))                                  # trial 1 is no candidate now: not held
    assert set(forecast._read) == {(0, 1)}


def test_the_forecast_has_no_opinion_without_two_kept_predictions(kept, tmp_path):
    predictions, _ = kept
    predictions[0] = LEFT                                          # trial 1 kept none (yet): nothing to forecast
    forecast = EnsembleForecast(tmp_path, "log_loss")
    assert forecast(_records({0: "a", 1: "b"})) is False
    predictions[1] = RIGHT                                         # written since: read on a later report
    assert forecast(_records({0: "a", 1: "b"})) is True


def test_refit_keep_releases_its_reserve_while_an_ensemble_is_forecast():
    records = _records({0: "a"})
    served = [True]
    keep = RefitKeep(scale=1.0, margin=1.0, ensemble_served=lambda r: served[0])
    assert keep(records) is None and keep.released == 1
    served[0] = False
    assert keep(records).seconds == pytest.approx(2 * 1.0 + 2.0)  # a refit of one 2 s epoch, plus the longest epoch

    def broken(r):
        raise OSError("a checkpoint vanished")
    assert RefitKeep(scale=1.0, margin=1.0, ensemble_served=broken)(records).seconds == pytest.approx(4.0)


def test_fit_hands_the_refit_reserve_a_forecast_of_the_trials_it_searches(image_folders, monkeypatch, tmp_path):
    """The forecast reads the trials of the experiment directory the search writes: the one given, or a fresh one
    fit names for the search; with ensemble=False there is no ensemble to forecast."""
    dataset = task.Dataset(train_path=str(image_folders[0]))
    monkeypatch.chdir(tmp_path)
    for given in (tmp_path / "exp", None):
        asked = search_arguments(monkeypatch, dataset, refit=True, ensemble="auto", output_directory=given)
        forecast = asked["keep_seconds"].ensemble_served
        assert isinstance(forecast, EnsembleForecast) and asked["output_directory"] is not None
        assert forecast.trials_dir == pathlib.Path(asked["output_directory"]) / "trials"
        assert given is None or pathlib.Path(asked["output_directory"]) == given
    assert search_arguments(monkeypatch, dataset, refit=True)["keep_seconds"].ensemble_served is None


def test_the_forecast_on_a_real_search_agrees_with_the_ensemble_stage(image_folders, tmp_path):
    """On the predictions two real trials kept, the forecast says what the fit's ensemble stage then did (the
    average of both trials, so that there is a contest: served or 'not better')."""
    dataset = task.Dataset(train_path=str(image_folders[0]))
    results = task.fit(dataset, num_trials=2, epochs=2, lr_scheduler="constant", executor="in_process",
                       output_directory=tmp_path / "exp", ensemble="average",
                       **{**FAST, "optimizer": Adam(learning_rate=Real(1e-3, 1e-2, log=True))})
    records = {t["trial_id"]: TrialRecord(t["trial_id"], t["config"], status=t["status"], results=t["results"])
               for t in results.trials}
    record = results.metadata["ensemble"]
    forecast = EnsembleForecast(tmp_path / "exp" / "trials", results.metadata["metric"], rule="average")
    assert record["status"] in ("chosen", "not better"), record
    assert forecast(records) == (record["status"] == "chosen"), record
    assert len(forecast._read) == len(record["candidates"]) == record["stored_predictions"]
