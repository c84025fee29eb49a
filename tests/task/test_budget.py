"""Budget shrink: a default CPU fit whose config cannot reach one epoch's report in time_limits trains a smaller one,
records why in metadata['budget'], and still returns a model."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
from PIL import Image

from jaxgluon import ImageClassification as task
from jaxgluon import data as jdata
from jaxgluon.task import budget


def test_plan_keeps_a_config_that_fits_and_shrinks_one_that_does_not():
    assert doctest.testmod(budget).failed == 0
    fits = budget.plan_budget(200, 60, 2, 128, 5, 3600, cpus=2)
    assert not fits.shrunk and fits.max_train_images is None and fits.epochs == 5 and fits.image_size == 128
    tight = budget.plan_budget(200, 60, 2, 128, 5, 25, cpus=2)
    assert tight.shrunk and tight.epochs == 1 and tight.image_size < 128
    assert tight.estimate_s < budget.first_epoch_seconds(200, 60, 128, cpus=2)
    hopeless = budget.plan_budget(5000, 500, 4, 64, 3, 5, cpus=2)   # setup alone exceeds it: the floor subsample
    assert hopeless.max_train_images == 4 * budget.MIN_IMAGES_PER_CLASS
    assert "subsample" in hopeless.reason and hopeless.as_dict()["shrunk"]
    # more cores or more time never shrink more
    def kept(plan):
        return np.inf if plan.max_train_images is None else plan.max_train_images
    base = budget.plan_budget(5000, 500, 4, 64, 3, 60, cpus=2)
    assert kept(budget.plan_budget(5000, 500, 4, 64, 3, 60, cpus=8)) >= kept(base)
    assert kept(budget.plan_budget(5000, 500, 4, 64, 3, 120, cpus=2)) >= kept(base)
    # a dearer net (the first trial of a mixed default space may draw efficientnet_lite2) shrinks sooner
    assert kept(budget.plan_budget(5000, 500, 4, 64, 3, 60, cpus=2, cost=1.65)) < kept(base)
    fits_lite0 = budget.plan_budget(600, 150, 10, 224, 3, 40, cpus=8)
    assert not fits_lite0.shrunk and budget.plan_budget(600, 150, 10, 224, 3, 40, cpus=8, cost=1.65).shrunk


def test_subset_specs_keep_labels_and_classes(image_folders, tmp_path):
    folder = jdata.open_source(str(image_folders[0]))
    train, _ = jdata.stratified_split(folder, val_fraction=0.25, seed=0)
    keep = np.array([0, 1, len(train) - 1])
    spec = budget.subset_spec(train, keep, tmp_path / "links")
    linked = jdata.open_source(spec)
    assert linked.class_names == folder.class_names and len(linked) == 3
    assert sorted(linked[i]["label"] for i in range(3)) == sorted(int(train.labels[i]) for i in keep)
    arrays = jdata.ArraySource(np.zeros((6, 8, 8, 3), np.uint8), np.array([0, 1, 2, 0, 1, 2]), ["a", "b", "c"])
    npz = jdata.open_source(budget.subset_spec(arrays, np.array([1, 4]), tmp_path / "arrays"))
    assert npz.class_names == ["a", "b", "c"] and [npz[i]["label"] for i in range(2)] == [1, 1]


@pytest.fixture(scope="module")
def large_image_folder(tmp_path_factory):
    """Two classes of 96 px images: the default search takes the CPU efficientnet_lite0 path."""
    root = tmp_path_factory.mktemp("large") / "train"
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(24):
            img = np.clip((60 if label == 0 else 190) + rng.normal(0, 25, (96, 96, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def test_a_tiny_budget_shrinks_the_default_config_and_returns_a_model(large_image_folder, tmp_path):
    dataset = task.Dataset(train_path=str(large_image_folder))
    results = task.fit(dataset, time_limits=8, output_directory=tmp_path / "exp", verbose=False)
    plan = results.metadata["budget"]
    assert plan["shrunk"] and plan["epochs"] == 1 and plan["estimate_s"] > 0 and plan["available_s"] < 8
    assert plan["max_train_images"] is not None and plan["max_train_images"] < len(dataset)
    assert "subsample" in plan["reason"]
    assert (tmp_path / "exp" / "budget_subsample" / "train").is_dir()
    # the search really trained on the subsample (the trials' spec), and a model came back either way
    assert results.metadata["pixel_model"]["role"] == "fallback"   # the model when no network reports in time
    assert results.metadata["final_model"] in ("pixel_kernel", "linear_probe", "single")
    ind, _ = results.predict(str(next((large_image_folder / "light").iterdir())))
    assert ind.item() in (0, 1)


def test_a_named_net_is_never_shrunk(large_image_folder, tmp_path):
    dataset = task.Dataset(train_path=str(large_image_folder))
    results = task.fit(dataset, net="cifar_resnet20_v1", optimizer="adam", image_size=16, batch_size=8,
                       pretrained=False, num_trials=1, epochs=1, time_limits=600, output_directory=tmp_path / "exp",
                       verbose=False, executor="in_process")
    assert results.metadata["budget"] is None and results.metadata["pixel_model"] is None
    assert not (tmp_path / "exp" / "budget_subsample").exists()


WARM_CHECK = """
import jaxgluon as ag
from jaxgluon.searcher import RandomSearcher
from jaxgluon.space import compile_space
from jaxgluon.task.budget import warm_search_start
from jaxgluon.train.compile_count import CompileCounter
space = compile_space({'net': ag.Categorical('a', 'b'), 'lr': ag.Real(1e-4, 1e-1, log=True)})
{warm}
with CompileCounter() as counter:
    RandomSearcher(space, seed=3).suggest()
print(counter.compilations)
"""


def test_the_searcher_warm_up_compiles_what_the_first_suggestion_needs():
    # a fresh process each: nothing compiled before; without the warm-up the first draw compiles its programs
    import os
    import subprocess
    import sys

    def compilations(warm: str) -> int:
        out = subprocess.run([sys.executable, "-c", WARM_CHECK.replace("{warm}", warm)], capture_output=True,
                             text=True, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        return int(out.stdout.split()[-1])

    assert compilations("pass") > 0
    assert compilations("warm_search_start(space, seed=0).join()") == 0
