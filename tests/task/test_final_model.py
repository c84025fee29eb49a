"""Refit and ensemble: Caruana selection as a pure function, the refit's budget check, and both final models served
by Results and round-tripping through save/load."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

import jaxgluon.data.specs
from jaxgluon import ImageClassification as task
from jaxgluon.data.sources import source_labels
from jaxgluon.space import Real
from jaxgluon.space.optimizer import Adam
from jaxgluon.task import Results
from jaxgluon.task.ensemble import (EnsembleModel, average_weights, greedy_selection, load_ensemble, scores,
                                   select_weights)
from jaxgluon.task.cross_validation import CV_SHARE
from jaxgluon.task.final_model import _candidates, build_ensemble, stage_reserve
from jaxgluon.task.refit import combined_sources, estimate_seconds, refit_best
from jaxgluon.train import PROCESS_CACHES, TrialSpec, load_source, load_trained
from jaxgluon.train.integrity import SavedModelError
from jaxgluon.train.val_predictions import stored_predictions

from task_files import FAST

IMAGES = np.stack([np.full((20, 20, 3), v, np.uint8) for v in (40, 90, 160, 220)])


def test_greedy_selection_hand_checked_case():
    # A is right on image 0 only, B on image 1 only; their mean is right on both (0.675 each)
    a = [[0.9, 0.1], [0.45, 0.55]]
    b = [[0.45, 0.55], [0.9, 0.1]]
    labels = np.array([0, 0])
    probs = np.array([a, b])
    # round 1: tie on top-1 and log-loss, the earlier (A); round 2: A+B is right on both; round 3 (2:1) has a
    # worse log-loss (0.399 vs 0.393), so round 2's counts are kept
    assert greedy_selection(probs, labels, "accuracy", rounds=3).tolist() == [1, 1]
    assert greedy_selection(probs, labels, "log_loss", rounds=3).tolist() == [1, 1]
    # a candidate that is best alone and not helped by others: selected alone, with replacement
    c = [[0.99, 0.01], [0.99, 0.01]]
    assert greedy_selection(np.array([a, b, c]), labels, "log_loss", rounds=5).tolist() == [0, 0, 1]


@pytest.mark.parametrize("name", ["ensemble", "refit"])
def test_docstring_example_runs(name):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(f"jaxgluon.task.{name}"))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("metric", ["log_loss", "accuracy"])
def test_greedy_selection_is_never_worse_than_its_best_candidate(metric):
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.normal(size=(4, 30, 3)) * rng.uniform(0.5, 3)
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        labels = rng.integers(0, 3, 30)
        counts = greedy_selection(probs, labels, metric)
        top1, loss = scores(np.tensordot(counts / counts.sum(), probs, axes=1), labels)
        singles = [scores(p, labels) for p in probs]
        if metric == "log_loss":
            assert loss <= min(s[1] for s in singles) + 1e-12
        else:
            assert top1 >= max(s[0] for s in singles)


def test_candidates_of_two_nets_are_averaged_and_of_one_net_selected_greedily():
    labels = np.array([0, 0, 1, 1])
    sure = np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.01, 0.99]])     # right on all 4
    near = np.array([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7], [0.4, 0.6]])             # right on 3 of 4
    lost = np.array([[0.4, 0.6], [0.4, 0.6], [0.6, 0.4], [0.4, 0.6]])             # right on 1: under halfway
    probs = np.stack([sure, near, lost])
    # greedy keeps the sure candidate alone (any mix raises its log-loss); the average keeps the two that learned
    assert np.flatnonzero(greedy_selection(probs, labels)).tolist() == [0]
    weights, rule = select_weights(probs, labels, ["net_a", "net_b", "net_a"])
    assert rule == "average" and weights.tolist() == [1.0, 1.0, 0.0]
    weights, rule = select_weights(probs, labels, ["net_a"] * 3)
    assert rule == "greedy" and np.flatnonzero(weights).tolist() == [0]
    assert select_weights(probs, labels, ["net_a"] * 3, rule="average")[1] == "average"
    assert select_weights(probs, labels, ["a", "b", "c"], rule="greedy")[1] == "greedy"
    # halfway from chance (0.5) to the best (1.0) is 0.75: 3 of 4 stays in, 2 of 4 would not
    assert average_weights(probs[:2], labels).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="one net name per candidate"):
        select_weights(probs, labels, ["net_a"])
    with pytest.raises(ValueError, match="rule must be one of"):
        select_weights(probs, labels, ["net_a"] * 3, rule="best")


def test_greedy_selection_rejects_bad_input():
    with pytest.raises(ValueError, match="probs must be"):
        greedy_selection(np.zeros((2, 3)), np.zeros(3, int))
    with pytest.raises(ValueError, match="metric"):
        greedy_selection(np.full((1, 2, 2), 0.5), np.zeros(2, int), "auc")


def test_stage_reserve_and_refit_estimate():
    assert stage_reserve(None, True) == 0.0
    assert stage_reserve(100, False) == 0.0
    assert stage_reserve(100, "auto") == 2.0 and stage_reserve(100, True) == 2.0
    assert stage_reserve(600, True) == 8.0                   # capped
    assert stage_reserve(4, "auto") == pytest.approx(0.08) and stage_reserve(4, True) == 0.5
    assert stage_reserve(100, True, num_trials=1) == 0.0     # no ensemble of one trial
    # ... unless the trial's linear-probe model is a candidate beside its fine-tuned checkpoint
    assert stage_reserve(100, True, num_trials=1, probes=True) == 2.0
    assert stage_reserve(100, True, num_trials=1, num_folds=3, probes=True) == 2.0   # no CV of one
    assert stage_reserve(100, "auto", num_folds=3) == 2.0 + 100 * CV_SHARE
    trial = {"results": [{"epoch_seconds": 3.0, "train_seconds": 2.0, "setup_seconds": 4.0, "first_step_seconds": 1.0},
                         {"epoch_seconds": 3.0, "train_seconds": 2.0}]}
    # epoch 1's training seconds hold the first step, counted once (in the setup)
    assert estimate_seconds(trial, 2, 1.5) == pytest.approx(4.0 + 1.0 + 2 * (1.5 * 1.5 + 1.0))
    assert estimate_seconds({"results": []}, 2, 1.0) is None


def test_ensemble_candidates_include_each_fine_tuned_trials_probe(tmp_path):
    """A trial that fine-tuned offers two models, its best fine-tuned epoch (the latest on ties) and its probe
    (epoch 0), also when the probe scored better; a probe-only trial one; an errored trial none. Best first."""
    class Experiment:
        trials = [{"trial_id": 0, "status": "COMPLETED", "best_reward": 0.90,
                   "results": [{"epoch": 1, "reward": 0.90}, {"epoch": 2, "reward": 0.85}, {"epoch": 3, "reward": 0.90}]},
                  {"trial_id": 1, "status": "STOPPED", "best_reward": None, "results": []},
                  {"trial_id": 2, "status": "ERROR", "best_reward": 0.99, "results": [{"epoch": 1, "reward": 0.99}]}]
    for tid, reward in ((0, 0.93), (1, 0.80), (2, 0.99)):
        (tmp_path / str(tid)).mkdir()
        (tmp_path / str(tid) / "probe.json").write_text(json.dumps({"status": "scored", "reward": reward}))
    assert _candidates(Experiment(), tmp_path) == [(0.93, 0, 0), (0.90, 0, 3), (0.80, 1, 0)]


def test_retention_keeps_the_best_fine_tuned_epoch_when_the_probe_scored_best(tmp_path):
    """Epoch 0 (the probe) scores best; epochs 1-5 fine-tune, epoch 2 best of them. With the 2 latest kept, epoch 2
    survives only because the best fine-tuned epoch is kept apart from the probe (before, retention ranked the
    probe with them and deleted epoch 2)."""
    from jaxgluon.models import get_model
    from jaxgluon.train.checkpoint import TrialCheckpointer
    from jaxgluon.train.state import create_train_state
    import optax
    state = create_train_state(get_model("cifar_resnet20_v1", 2, pretrained=False), optax.identity())
    rewards = {0: 0.95, 1: 0.60, 2: 0.80, 3: 0.70, 4: 0.65, 5: 0.62}
    with TrialCheckpointer(tmp_path, max_to_keep=2, async_save=False) as ckpt:
        for epoch, reward in rewards.items():
            ckpt.save(epoch, state, reward=reward, meta={})
        assert ckpt.all_epochs() == [0, 2, 4, 5] and ckpt.best_epoch() == 0


def test_refit_sources_hold_every_split_image(image_folders):
    train, val = TrialSpec(train_data=str(image_folders[0]), val_fraction=0.25).sources()
    everything, check = combined_sources(train, val, 8)
    assert len(everything) == len(train) + len(val) == 80 and len(check) == 8
    assert sorted(everything.indices.tolist()) == list(range(80))


def test_refit_is_skipped_with_the_reason_when_it_does_not_fit(image_folders, tmp_path):
    spec = TrialSpec(train_data=str(image_folders[0]), val_fraction=0.25, image_size=16)
    trial = {"trial_id": 3, "results": [{"epoch": 1, "epoch_seconds": 5.0, "train_seconds": 4.0}]}
    outcome = refit_best({"net": "cifar_resnet20_v1"}, 2, trial, spec, tmp_path / "refit", deadline=time.time() + 3)
    assert outcome.model is None and outcome.record["status"] == "skipped"
    assert "needs about" in outcome.record["reason"] and outcome.record["estimate_s"] > 3
    assert not (tmp_path / "refit").exists()   # nothing ran
    probe = refit_best({}, 0, trial, spec, tmp_path / "refit", deadline=None)
    assert probe.model is None and "linear probe" in probe.record["reason"]


def test_refit_stops_one_measured_step_before_its_deadline(image_folders, tmp_path, monkeypatch):
    """The trial function checks its deadline before each step; the refit hands it the fit's deadline less the
    slowest step the trial measured, so the step in flight at the deadline does not overrun the fit."""
    from jaxgluon.task import refit as refit_module

    seen = {}

    def no_training(config, reporter, spec, caches=None):
        seen["deadline"] = reporter.deadline

    monkeypatch.setattr(refit_module, "train_trial", no_training)
    spec = TrialSpec(train_data=str(image_folders[0]), val_fraction=0.25, image_size=16, batch_size=8)
    timings = {"epoch_seconds": 0.5, "train_seconds": 0.4}
    trial = {"trial_id": 3, "results": [{"epoch": 1, **timings, "images_per_sec": 4.0},
                                        {"epoch": 2, **timings, "images_per_sec": 8.0}]}
    deadline = time.time() + 60
    outcome = refit_best({"net": "cifar_resnet20_v1"}, 2, trial, spec, tmp_path / "refit", deadline=deadline)
    assert outcome.record["step_s"] == pytest.approx(2.0)   # 8 images at the slowest 4 images/s
    assert seen["deadline"] == pytest.approx(deadline - 2.0)
    assert outcome.model is None and outcome.record["status"] == "incomplete"   # it reported no epoch


@pytest.fixture(scope="module")
def two_trials(image_folders, tmp_path_factory):
    dataset = task.Dataset(train_path=str(image_folders[0]), test_path=str(image_folders[1]))
    out = tmp_path_factory.mktemp("ensemble")
    results = task.fit(dataset, num_trials=2, epochs=2, lr_scheduler="constant", executor="in_process",
                       output_directory=out / "exp", ensemble=True,
                       **{**FAST, "optimizer": Adam(learning_rate=Real(1e-3, 1e-2, log=True))})
    return dataset, results, out


def test_fit_records_the_ensemble_and_lists_it(two_trials):
    _, results, _ = two_trials
    record = results.metadata["ensemble"]
    assert sorted(c["trial_id"] for c in record["candidates"]) == [0, 1]
    # built on these validation predictions: never worse than its best member there
    assert record["val_loss"] <= record["best_member"]["val_loss"] + 1e-9
    built = record["status"] in ("chosen", "not better")    # else selection kept one trial: no ensemble row
    assert built == (len(record["members"]) >= 2), record
    rows = results.leaderboard_rows()
    assert [r["model"] for r in rows] == ["trial", "trial"] + ["ensemble"] * built
    if built:
        assert rows[-1]["best_reward"] == record["val_top1"] and rows[-1]["status"] == record["status"]
        assert rows[-1]["trial_id"] is None and rows[-1]["members"]
    assert sum(bool(r["final"]) for r in rows) == 1
    assert (results.metadata["final_model"] == "ensemble") == (record["status"] == "chosen")
    frame = results.leaderboard()
    assert {"model", "final"} <= set(frame.columns) and list(frame.columns)[-1] == "error"
    assert len(frame) == 2 + built and str(frame["trial_id"].dtype) == "Int64"
    assert list(frame["model"]) == [r["model"] for r in rows]
    # tta='auto': the nets trained on flipped images, so the served model averages each image and its mirror
    assert results.metadata["tta"]["enabled"] is True and results.model.tta is True
    assert Results.load(results.save(two_trials[2] / "tta_saved")).model.tta is True


def test_the_ensemble_reads_the_validation_predictions_the_trials_kept(two_trials):
    """Each trial keeps its checkpoints' validation predictions; the fit's ensemble stage read them (it predicted
    no candidate again), they equal what the checkpoint predicts, and so does the ensemble built from them."""
    dataset, results, out = two_trials
    trials_dir = out / "exp" / "trials"
    assert results.metadata["ensemble"]["stored_predictions"] == len(results.metadata["ensemble"]["candidates"])
    val = dataset.split()[1]
    tid = _candidates(results, trials_dir)[0][1]
    single = (tid, load_trained(trials_dir / str(tid)))
    kept = build_ensemble(results, trials_dir, val, single, "log_loss", None)[1]
    predicted = build_ensemble(results, trials_dir, val, single, "log_loss", None, kept_predictions=False)[1]
    assert kept["stored_predictions"] == len(kept["candidates"]) >= 2 and predicted["stored_predictions"] == 0
    assert kept["candidates"] == predicted["candidates"] and kept["members"] == predicted["members"]
    assert kept["val_loss"] == pytest.approx(predicted["val_loss"], rel=1e-4)
    for cand in kept["candidates"]:
        probs, labels = stored_predictions(trials_dir / str(cand["trial_id"]), cand["epoch"])
        again = load_trained(trials_dir / str(cand["trial_id"]), epoch=cand["epoch"]).predict_proba_source(val)
        np.testing.assert_array_equal(labels, again[1])
        np.testing.assert_allclose(probs, again[0], rtol=1e-4, atol=1e-6)
    # predictions of other images (here the test folder's) are not taken for the validation split's
    other = build_ensemble(results, trials_dir, dataset.test_source, single, "log_loss", None)[1]
    assert other["stored_predictions"] == 0


def test_candidates_of_two_nets_make_the_uniform_average_served_when_it_beats_its_best_member(
        two_trials, image_folders, monkeypatch):
    """Trial 1 is relabelled as another net: the ensemble stage then averages every candidate that learned, and
    serves the average only when its validation score beats its best member's; without the relabel the same
    candidates go through greedy selection."""
    import jaxgluon.task.final_model as final_model
    _, results, out = two_trials
    trials_dir = out / "exp" / "trials"
    loaded = final_model.load_trained

    def relabelled(path, **kw):
        model = loaded(path, **kw)
        if path.name == "1":
            model.meta["net"] = "another_net"
        return model

    monkeypatch.setattr(final_model, "load_trained", relabelled)
    tid = _candidates(results, trials_dir)[0][1]
    single = (tid, relabelled(trials_dir / str(tid)))
    val = load_source(str(image_folders[1]))
    ensemble, record = build_ensemble(results, trials_dir, val, single, "log_loss", None, kept_predictions=False)
    # both trials learned (validation top-1 1.0), so both are in, weight 1 each
    assert record["selection"] == "average", record
    assert sorted((m["trial_id"], m["net"], m["weight"]) for m in record["members"]) == [
        (0, "cifar_resnet20_v1", 1), (1, "another_net", 1)]
    assert ensemble.weights.tolist() == [1.0, 1.0]
    mean = np.mean([m.predict_proba(IMAGES) for m in ensemble.members], axis=0)
    np.testing.assert_allclose(ensemble.predict_proba(IMAGES), mean, rtol=1e-6)
    best = record["best_member"]
    assert record["status"] == ("chosen" if record["val_loss"] < best["val_loss"] else "not better"), record
    # the contest on kept validation predictions made up for it: two candidates each sure (0.99) on half the
    # images and unsure (0.6) on the other half average to a lower log-loss than either (chosen); one sure
    # everywhere beside one unsure everywhere beats their mean (not better: the single model is served)
    labels = source_labels(val)
    classes = len(single[1].class_names)
    even = np.arange(len(labels)) % 2 == 0

    def right(p):   # probability p on each image's class, the rest spread over the others
        return np.where(np.eye(classes)[labels] == 1, p[:, None], (1 - p)[:, None] / (classes - 1))

    everywhere, nowhere = np.ones_like(even), np.zeros_like(even)
    for sure_on, status in (((even, ~even), "chosen"), ((everywhere, nowhere), "not better")):
        made_up = {str(t): right(np.where(m, 0.99, 0.6)) for t, m in zip((0, 1), sure_on)}
        monkeypatch.setattr(final_model, "_kept_predictions",
                            lambda trial_dir, epoch, source: (made_up[trial_dir.name], labels))
        again = build_ensemble(results, trials_dir, val, single, "log_loss", None)[1]
        assert again["selection"] == "average" and again["stored_predictions"] == 2
        assert again["status"] == status, again
        assert (again["val_loss"] < again["best_member"]["val_loss"]) == (status == "chosen")
        assert ("did not score better" in again.get("reason", "")) == (status == "not better")
    # rule='greedy' asks for greedy selection over the same two-net candidates
    assert build_ensemble(results, trials_dir, val, single, "log_loss", None, kept_predictions=False,
                          rule="greedy")[1]["selection"] == "greedy"
    monkeypatch.undo()
    single = (tid, loaded(trials_dir / str(tid)))
    assert build_ensemble(results, trials_dir, val, single, "log_loss", None,
                          kept_predictions=False)[1]["selection"] == "greedy"
    # rule='average' averages candidates of one net too
    assert build_ensemble(results, trials_dir, val, single, "log_loss", None, kept_predictions=False,
                          rule="average")[1]["selection"] == "average"


def test_leaderboard_lists_the_refit_and_the_ensemble_after_the_trials(two_trials):
    _, results, _ = two_trials
    meta = {**results.metadata, "final_model": "ensemble",
            "refit": {"status": "incomplete", "trial_id": 1, "epochs": 2, "seconds": 3.5,
                      "reason": "the deadline came during refit epoch 2 of 2"},
            "ensemble": {"status": "chosen", "val_top1": 0.95, "val_loss": 0.2, "seconds": 0.4,
                         "members": [{"trial_id": 1, "epoch": 2, "weight": 3}, {"trial_id": 0, "weight": 1},
                                     {"trial_id": 1, "epoch": 0, "weight": 1}]}}
    shown = Results(0.95, results.config, meta, results.trials, results.model)
    rows = shown.leaderboard_rows()
    assert [(r["model"], r["trial_id"], r["final"]) for r in rows[2:]] == [("refit", 1, False), ("ensemble", None, True)]
    assert rows[2]["best_reward"] is None and "deadline" in rows[2]["error"]      # a refit has no validation score
    assert rows[3]["best_reward"] == 0.95 and rows[3]["members"] == "1x3, 0x1, 1(probe)x1"
    assert not any(r["final"] for r in rows[:2])
    skipped = {**meta, "final_model": "single", "refit": {"status": "skipped", "reason": "no time"},
               "ensemble": {"status": "skipped", "reason": "1 trial(s)"}}
    rows = Results(0.9, results.config, skipped, results.trials, results.model).leaderboard_rows()
    assert [r["model"] for r in rows] == ["trial", "trial"] and rows[0]["final"]   # skipped: metadata only


def test_a_probe_is_refitted_on_every_image_with_the_same_backbone(two_trials, image_folders, tmp_path):
    _, results, out = two_trials
    spec = TrialSpec(train_data=str(image_folders[0]), val_fraction=0.25, image_size=16)
    probe = load_trained(out / "exp" / "trials" / "0")       # stands in for a probe model: any backbone + head
    trial = results.trials[0]
    skipped = refit_best(trial["config"], 0, trial, spec, tmp_path / "r", deadline=time.time() + 1.0, probe=probe,
                         probe_seconds=10.0)
    assert skipped.model is None and "needs about 13.3 s" in skipped.record["reason"]   # 10 s x 80/60 images
    # a warm worker's probe record says 0.3 s; the refit runs cold, as the net's first trial measured it
    cold = {**trial, "results": [{**trial["results"][0], "linear_probe_seconds": 10.0}]}
    skipped = refit_best(trial["config"], 0, trial, spec, tmp_path / "r", deadline=time.time() + 1.0, probe=probe,
                         probe_seconds=0.3, peers=[cold])
    assert skipped.model is None and "needs about 13.3 s" in skipped.record["reason"]
    outcome = refit_best(trial["config"], 0, trial, spec, tmp_path / "r", deadline=None, probe=probe)
    refit = outcome.model
    assert outcome.record["status"] == "completed" and outcome.record["kind"] == "linear_probe"
    assert refit.meta["num_train_images"] == 80 and refit.meta["final_model"] == "refit"
    old, new = probe.state.variables()["params"], refit.state.variables()["params"]
    np.testing.assert_array_equal(np.asarray(old["conv1"]["kernel"]), np.asarray(new["conv1"]["kernel"]))
    assert not np.array_equal(np.asarray(old["fc"]["kernel"]), np.asarray(new["fc"]["kernel"]))
    np.testing.assert_allclose(refit.predict_proba(IMAGES).sum(-1), 1.0, rtol=1e-5)


def test_the_ensemble_loads_another_candidate_only_when_its_load_fits_the_deadline(two_trials, image_folders):
    """Before each further candidate: 1.5x the longest prediction so far plus its load (the longest so far, else
    the single model's restore time) must fit in the time left."""
    _, results, out = two_trials
    trials_dir = out / "exp" / "trials"
    tid = _candidates(results, trials_dir)[0][1]
    single = (tid, load_trained(trials_dir / str(tid)))
    val = load_source(str(image_folders[1]))
    roomy = build_ensemble(results, trials_dir, val, single, "log_loss", time.time() + 120, load_seconds=1.0,
                           kept_predictions=False)[1]
    assert len(roomy["candidates"]) >= 2 and "stopped" not in roomy
    tight = build_ensemble(results, trials_dir, val, single, "log_loss", time.time() + 60, load_seconds=90.0,
                           kept_predictions=False)[1]
    assert tight["candidates"] == [{"trial_id": tid, "epoch": single[1].meta.get("epoch")}]
    assert tight["stopped"].startswith("the deadline left no time") and tight["status"] == "skipped"


def test_an_ensemble_round_trips_through_results_save_and_load(two_trials):
    dataset, results, out = two_trials
    members = [load_trained(out / "exp" / "trials" / str(t)) for t in (0, 1)]
    ensemble = EnsembleModel(members, [2.0, 1.0], trial_ids=[0, 1])
    expected = (2 * members[0].predict_proba(IMAGES) + members[1].predict_proba(IMAGES)) / 3
    np.testing.assert_allclose(ensemble.predict_proba(IMAGES), expected, rtol=1e-6)
    served = Results(0.5, results.config, {**results.metadata, "final_model": "ensemble"}, results.trials, ensemble)
    again = Results.load(served.save(out / "saved"))
    assert isinstance(again.model, EnsembleModel) and again.model.weights.tolist() == [2.0, 1.0]
    assert again.model.meta["final_model"] == "ensemble"
    with pytest.raises(ValueError, match="final_model must be one of 'ensemble', 'refit'"):
        EnsembleModel(members, [1.0, 1.0], final_model="single")
    np.testing.assert_array_equal(again.predict_proba(IMAGES), served.predict_proba(IMAGES))
    assert again.evaluate(dataset) == served.evaluate(dataset)
    ind, prob = again.predict(IMAGES[0])
    assert ind.shape == () and 0 <= float(prob) <= 1
    # a changed weight in ensemble.json is caught by the manifest; a bad one by the schema
    path = out / "saved" / "model" / "ensemble.json"
    text = path.read_text()
    path.write_text(text.replace("2.0", "3.0", 1))
    with pytest.raises(SavedModelError, match="ensemble.json"):
        Results.load(out / "saved")
    path.write_text(text)
    ensemble.save(out / "bare")
    (out / "bare" / "manifest.json").unlink()
    spec = json.loads(text)
    spec.pop("manifest")
    spec["weights"][0] = -1.0
    (out / "bare" / "ensemble.json").write_text(json.dumps(spec))
    with pytest.warns(RuntimeWarning, match="no manifest"), pytest.raises(SavedModelError, match="weights"):
        load_ensemble(out / "bare")
    spec.update(weights=[2.0, 1.0], final_model="stacked")
    (out / "bare" / "ensemble.json").write_text(json.dumps(spec))
    with pytest.warns(RuntimeWarning, match="no manifest"), pytest.raises(SavedModelError, match="final_model"):
        load_ensemble(out / "bare")


def test_fit_with_refit_serves_and_round_trips_the_refit_model(image_folders, tmp_path, monkeypatch):
    dataset = task.Dataset(train_path=str(image_folders[0]), test_path=str(image_folders[1]))
    PROCESS_CACHES.sources.clear()     # a folder another test opened there would hide a scan
    scans, scan = [], jaxgluon.data.specs.ImageFolderSource
    monkeypatch.setattr(jaxgluon.data.specs, "ImageFolderSource", lambda *a, **k: scans.append(a) or scan(*a, **k))
    results = task.fit(dataset, num_trials=1, epochs=1, lr_scheduler="constant", executor="in_process",
                       output_directory=tmp_path / "exp", ensemble=False, tta=False, **{**FAST, "refit": True})
    assert scans == []                 # the trial, the refit and the ensemble stage reuse the dataset's folder scan
    meta = results.metadata
    assert meta["final_model"] == "refit" and meta["refit"]["status"] == "completed", meta.get("refit")
    # a fine-tuned refit is served averaged with the trial model it refits (jaxgluon.task.final_model)
    refit, trial_model = results.model.members
    assert isinstance(results.model, EnsembleModel) and results.model.meta["final_model"] == "refit"
    assert results.model.trial_ids == [None, 0] and meta["refit"]["served_with"] == {"trial_id": 0, "epoch": 1}
    assert meta["refit"]["num_images"] == 80 and refit.meta["num_train_images"] == 80
    assert "val_top1" not in refit.meta          # it trained on the validation images
    assert trial_model.meta["epoch"] == 1 and trial_model.meta.get("val_top1") is not None   # the trial's own
    np.testing.assert_allclose(results.predict_proba(IMAGES),
                               (refit.predict_proba(IMAGES) + trial_model.predict_proba(IMAGES)) / 2, rtol=1e-6)
    rows = results.leaderboard_rows()
    assert results.reward == rows[0]["best_reward"]     # the best trial's validation top-1: a refit has none
    assert [r["model"] for r in rows] == ["trial", "refit"] and rows[-1]["final"] and rows[-1]["best_reward"] is None
    again = Results.load(results.save(tmp_path / "saved"))
    np.testing.assert_array_equal(again.predict_proba(IMAGES), results.predict_proba(IMAGES))
    assert again.metadata["final_model"] == "refit" and again.model.meta["final_model"] == "refit"
    assert again.model.trial_ids == [None, 0] and again.model.members[0].meta["num_train_images"] == 80
    assert results.metadata["tta"] == {"enabled": False, "reason": "tta=False"} and again.model.tta is False


@pytest.mark.alone   # a hard time_limits: nothing beside it under xdist (tests/conftest.py)
def test_refit_true_ends_the_search_in_time_for_its_refit(image_folders, tmp_path):
    """With refit=True the search winds down when the time left falls to the refit of its best trial so far
    (stop reason 'keep', RefitKeep re-estimated after every report), and the refit then fits and is served."""
    dataset = task.Dataset(train_path=str(image_folders[0]))
    searched = dict(FAST, refit=True, optimizer=Adam(learning_rate=Real(1e-3, 1e-2, log=True)))   # an endless space
    results = task.fit(dataset, time_limits=30, epochs=2, executor="in_process", ensemble=False,
                       output_directory=tmp_path / "exp", **searched)
    meta = results.metadata
    assert meta["stop_reason"] == "keep", meta["stop_reason"]
    assert meta["stop_criterion"]["keep"] == "RefitKeep"
    assert meta["refit"]["status"] == "completed" and meta["final_model"] == "refit", meta["refit"]


def test_refit_and_ensemble_arguments_are_validated(image_folders):
    dataset = task.Dataset(train_path=str(image_folders[0]))
    with pytest.raises(ValueError, match="refit must be one of True, False, 'auto', got 'yes'"):
        task.fit(dataset, **{**FAST, "refit": "yes"})
    with pytest.raises(ValueError, match="refit must be one of True, False, 'auto', got 'greedy'"):
        task.fit(dataset, **{**FAST, "refit": "greedy"})     # a selection rule is an ensemble choice only
    with pytest.raises(ValueError, match="ensemble must be one of True, False, 'auto', 'average', 'greedy'"):
        task.fit(dataset, ensemble=2, **FAST)
    with pytest.raises(ValueError, match="tta must be one of True, False, 'auto', got 'flip'"):
        task.fit(dataset, tta="flip", **FAST)


def test_an_ensemble_argument_naming_a_rule_reaches_the_selection(monkeypatch):
    """``fit(ensemble='average' | 'greedy')`` builds the ensemble with that rule (and keeps the reserve's minimum,
    as True does); True and 'auto' leave the rule to the candidates' nets."""
    import jaxgluon.task.final_model as final_model
    asked = []

    def fake_build(*args, rule="auto", **kw):
        asked.append(rule)
        return None, {"status": "skipped", "reason": "test"}

    monkeypatch.setattr(final_model, "build_ensemble", fake_build)

    class Spec:
        compilation_cache = False

        def sources(self, caches):
            return None, None

    for ensemble in (True, "auto", "average", "greedy"):
        out = final_model.final_stage(None, None, Spec(), (0, "single model"), "single", refit=False,
                                      ensemble=ensemble, metric="log_loss", deadline=None)
        assert out.model == "single model" and out.metadata["ensemble"]["reason"] == "test"
    assert asked == ["auto", "auto", "average", "greedy"]
    assert stage_reserve(4, "average") == stage_reserve(4, "greedy") == stage_reserve(4, True) == 0.5
