"""Results.save / Results.load (task.load): the folder's manifest and results.json's schema are checked on load."""
from __future__ import annotations

import json
import pathlib
import shutil

import optax
import pytest

from jaxgluon import ImageClassification as task
from jaxgluon import models
from jaxgluon.task.results import RESULTS_FILE, Results
from jaxgluon.train import TrainedModel, create_train_state
from jaxgluon.train.integrity import MANIFEST_FILE, SavedModelError, write_manifest
from jaxgluon.train.trial import META_FORMAT

META = {"format": META_FORMAT, "net": "cifar_resnet20_v1", "num_classes": 2, "class_names": ["a", "b"],
        "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
TRIALS = [{"trial_id": 0, "status": "COMPLETED", "config": {"net": "cifar_resnet20_v1"}, "best_reward": 0.9}]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> pathlib.Path:
    state = create_train_state(models.get_model("cifar_resnet20_v1", 2, pretrained=False), optax.identity())
    results = Results(0.9, {"net": "cifar_resnet20_v1"}, {"net": "cifar_resnet20_v1"}, TRIALS,
                      TrainedModel(state, META))
    return results.save(tmp_path_factory.mktemp("results") / "saved")


@pytest.fixture()
def folder(saved, tmp_path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(saved, tmp_path / "saved"))


def test_round_trip_verifies_both_manifests(folder):
    listed = json.loads((folder / MANIFEST_FILE).read_text())["files"]
    assert sorted(listed) == ["model/manifest.json", RESULTS_FILE]   # model/ is pinned by its own manifest
    loaded = task.load(folder)
    assert loaded.reward == 0.9 and loaded.trials == TRIALS and loaded.model.class_names == ["a", "b"]


def _flip(path: pathlib.Path, byte: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_results_json_is_named(folder):
    _flip(folder / RESULTS_FILE, 5, 2)
    with pytest.raises(SavedModelError, match="corrupt: results.json has sha256"):
        Results.load(folder)


def test_a_flipped_bit_in_the_model_is_named_even_with_a_rewritten_top_manifest(folder):
    _flip(folder / "model" / "meta.json", 30, 0)
    with pytest.raises(SavedModelError, match="corrupt: model/manifest.json|corrupt: meta.json"):
        Results.load(folder)
    write_manifest(folder)         # the top manifest re-made by hand: the model's own manifest still catches it
    with pytest.raises(SavedModelError, match="corrupt: meta.json has sha256"):
        Results.load(folder)


@pytest.mark.parametrize("key", ["trials", "reward", "config", "metadata"])
def test_a_missing_key_in_results_json_is_named(folder, key):
    summary = json.loads((folder / RESULTS_FILE).read_text())
    del summary[key]
    (folder / RESULTS_FILE).write_text(json.dumps(summary))
    write_manifest(folder)
    with pytest.raises(SavedModelError, match=f"results.json is invalid: {key}: missing \\(required\\)"):
        task.load(folder)


def test_a_missing_results_json_or_model_is_named(folder):
    shutil.rmtree(folder / "model")
    with pytest.raises(SavedModelError, match="model/manifest.json is missing"):
        Results.load(folder)
    (folder / RESULTS_FILE).unlink()
    (folder / MANIFEST_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="holds no saved results"):
        Results.load(folder)


def test_results_saved_before_manifests_load_with_a_warning(folder):
    for directory, name in ((folder, RESULTS_FILE), (folder / "model", "meta.json")):
        data = json.loads((directory / name).read_text())
        del data["manifest"]
        (directory / name).write_text(json.dumps(data))
        (directory / MANIFEST_FILE).unlink()
    with pytest.warns(RuntimeWarning, match="no manifest.json") as caught:
        loaded = Results.load(folder)
    assert len([w for w in caught if "no manifest.json" in str(w.message)]) == 2   # the folder and its model
    assert loaded.trials == TRIALS


def test_load_trained_on_a_results_folder_points_to_results_load(folder):
    from jaxgluon.train import load_trained
    with pytest.raises(SavedModelError, match="holds saved Results, not a model"):
        load_trained(folder)
    assert load_trained(folder / "model").class_names == ["a", "b"]


def test_a_flipped_bit_in_the_weights_fails_task_load_naming_the_file(folder):
    """Issue #19: a bit flipped in the 1 MB variables file used to load and evaluate at chance, one class for all."""
    target = max((p for p in (folder / "model" / "variables").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    _flip(target, target.stat().st_size // 3, 6)
    with pytest.raises(SavedModelError, match=f"corrupt: variables/.*{target.name} has sha256"):
        task.load(folder)
