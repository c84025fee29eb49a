"""Saved models are verified on load: a manifest of sha256 digests, meta.json's schema and bounds, clear errors."""
from __future__ import annotations

import json
import pathlib
import shutil
import warnings

import numpy as np
import optax
import pytest

from jaxgluon import models
from jaxgluon.train import TrainedModel, create_train_state, load_trained
from jaxgluon.train.integrity import MANIFEST_FILE, SavedModelError, verify_manifest, write_manifest
from jaxgluon.train.trained import META_FILE, VARIABLES_DIR
from jaxgluon.train.trial import META_FORMAT

META = {"format": META_FORMAT, "net": "cifar_resnet20_v1", "num_classes": 2, "class_names": ["ants", "bees"],
        "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> pathlib.Path:
    """An untrained ResNet-20 (1 MB of weights) saved once; each test works on its own copy."""
    state = create_train_state(models.get_model("cifar_resnet20_v1", 2, pretrained=False, seed=3), optax.identity())
    return TrainedModel(state, META).save(tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture()
def model_dir(saved, tmp_path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(saved, tmp_path / "model"))


def _largest_variables_file(directory: pathlib.Path) -> pathlib.Path:
    return max((p for p in (directory / VARIABLES_DIR).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _flip_bit(path: pathlib.Path, byte: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))


def _rewrite_meta(directory: pathlib.Path, change, *, manifest: bool = True) -> None:
    """Edits meta.json as an attacker who also rewrites the manifest would (or deletes it: a legacy save)."""
    meta = json.loads((directory / META_FILE).read_text())
    change(meta)
    (directory / META_FILE).write_text(json.dumps(meta))
    if manifest:
        write_manifest(directory)
    else:
        (directory / MANIFEST_FILE).unlink(missing_ok=True)


def test_save_writes_a_manifest_and_loads_back(model_dir):
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    on_disk = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")
                     if p.is_file() and p.name != MANIFEST_FILE)
    assert sorted(manifest["files"]) == on_disk and META_FILE in on_disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # a verified model loads without a warning
        model = load_trained(model_dir)
    assert model.meta == META and model.class_names == ["ants", "bees"]


def test_a_flipped_bit_in_the_weights_is_named_on_load(model_dir):
    target = _largest_variables_file(model_dir)
    # The weights themselves, not metadata: OCDBT splits the ~1 MB of arrays over data files (d/) in a
    # write-order-dependent way, so only "a data file far larger than any metadata file (<= 32 kB)" is stable.
    assert target.parent.name == "d" and target.stat().st_size > 100_000
    _flip_bit(target, target.stat().st_size // 2, bit=3)
    with pytest.raises(SavedModelError, match=f"corrupt: {target.relative_to(model_dir).as_posix()} has sha256"):
        load_trained(model_dir)


@pytest.mark.parametrize("byte", [0, 40, -3])
def test_a_flipped_bit_in_meta_json_is_named_on_load(model_dir, byte):
    size = (model_dir / META_FILE).stat().st_size
    _flip_bit(model_dir / META_FILE, byte % size, bit=1)
    with pytest.raises(SavedModelError, match="corrupt: meta.json has sha256"):
        load_trained(model_dir)


def test_a_flipped_bit_in_the_manifest_is_detected(model_dir):
    for byte in (0, 200, (model_dir / MANIFEST_FILE).stat().st_size - 2):
        copy = pathlib.Path(shutil.copytree(model_dir, model_dir.with_name(f"m{byte}")))
        _flip_bit(copy / MANIFEST_FILE, byte, bit=0)
        with pytest.raises(SavedModelError, match="corrupt"):
            load_trained(copy)


def test_a_deleted_or_truncated_file_is_named(model_dir):
    target = _largest_variables_file(model_dir)
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(SavedModelError, match="bytes where manifest.json records"):
        load_trained(model_dir)
    target.unlink()
    with pytest.raises(SavedModelError, match="is missing"):
        load_trained(model_dir)


def test_image_size_beyond_the_bound_is_refused_before_anything_allocates(model_dir):
    _rewrite_meta(model_dir, lambda m: m.update(image_size=100000))
    with pytest.raises(SavedModelError, match="image_size: 100000 is greater than the maximum of 2048"):
        load_trained(model_dir)


@pytest.mark.parametrize("key", ["net", "num_classes", "class_names", "image_size", "mean", "std", "format"])
def test_every_missing_key_gets_a_clear_error(model_dir, key):
    _rewrite_meta(model_dir, lambda m: m.pop(key))
    with pytest.raises(SavedModelError, match=f"meta.json is invalid: {key}: missing \\(required\\)"):
        load_trained(model_dir)


def test_inconsistent_or_unknown_values_are_refused(model_dir):
    _rewrite_meta(model_dir, lambda m: m.update(class_names=["a", "b", "c"]))
    with pytest.raises(SavedModelError, match="num_classes is 2 but class_names has 3"):
        load_trained(model_dir)
    _rewrite_meta(model_dir, lambda m: m.update(class_names=["a", "b"], net="resnet9000", std=[0, 1, 1]))
    with pytest.raises(SavedModelError, match="std\\[0\\]: 0 is less than or equal to the minimum of 0"):
        load_trained(model_dir)
    _rewrite_meta(model_dir, lambda m: m.update(std=[1, 1, 1]))
    with pytest.raises(SavedModelError, match="unknown model 'resnet9000'"):
        load_trained(model_dir)


def test_a_deleted_meta_json_says_what_is_missing(model_dir):
    (model_dir / META_FILE).unlink()
    with pytest.raises(SavedModelError, match="meta.json is missing"):   # the manifest lists it
        load_trained(model_dir)
    (model_dir / MANIFEST_FILE).unlink()
    with pytest.raises(SavedModelError, match="not a complete saved model: its meta.json .* is missing"):
        load_trained(model_dir)


def test_a_directory_that_is_no_model_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a saved model .* nor a trial checkpoint directory"):
        load_trained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_trained(tmp_path / "nothing")


def test_a_model_saved_before_manifests_loads_with_a_warning(model_dir):
    """Legacy saves (no manifest, no "manifest" field in meta.json) load, warning that they cannot be checked."""
    _rewrite_meta(model_dir, lambda m: m.pop("manifest"), manifest=False)
    with pytest.warns(RuntimeWarning, match="no manifest.json .* cannot be checked"):
        model = load_trained(model_dir)
    assert model.meta == META
    resaved = model.save(model_dir.with_name("resaved"))     # re-saving adds the manifest
    assert verify_manifest(resaved)
    _rewrite_meta(model_dir, lambda m: m.update(image_size=100000), manifest=False)   # still schema-checked
    with pytest.warns(RuntimeWarning), pytest.raises(SavedModelError, match="image_size"):
        load_trained(model_dir)


def test_an_interrupted_save_without_its_manifest_is_refused(model_dir):
    (model_dir / MANIFEST_FILE).unlink()     # meta.json says a manifest was written: the save did not finish
    with pytest.raises(SavedModelError, match="incomplete: its meta.json says a manifest.json was written"):
        load_trained(model_dir)


def test_unlisted_files_are_ignored_with_a_warning(model_dir):
    (model_dir / "notes.txt").write_text("mine")
    with pytest.warns(RuntimeWarning, match="ignoring 1 file.*notes.txt"):
        model = load_trained(model_dir)
    np.testing.assert_array_equal(model.predict(np.zeros((2, 16, 16, 3), np.uint8)).shape, (2,))


def test_a_one_class_model_from_before_the_rule_warns():
    state = create_train_state(models.get_model("cifar_resnet20_v1", 1, pretrained=False), optax.identity())
    with pytest.warns(RuntimeWarning, match="1 class.*every prediction is that class"):
        TrainedModel(state, {**META, "num_classes": 1, "class_names": ["only"]})
