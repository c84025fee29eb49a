"""The population trainer on real data (digits at 8 px, cifar_resnet20_v1): one member alone is an ordinary trial,
refilled slots start fresh without recompiling, a diverging member fails alone, memory is checked up front, and a
PBT clone instruction works through checkpoints for ordinary trials."""
from __future__ import annotations


import jax
import numpy as np
import pytest

from jaxgluon import models
from jaxgluon.train import Population, PopulationTrial, TrialSpec, load_trained, train_trial
from jaxgluon.train import population as population_module
from jaxgluon.train import population_config, population_memory
from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.trial import CHECKPOINT_SUBDIR
from jaxgluon.train.val_predictions import stored_predictions

from tests.recording_reporter import RecordingReporter

CONFIG = {"net": "cifar_resnet20_v1", "lr_scheduler": "cosine",
          "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4}}
EPOCHS = 2
SEED = 7


@pytest.fixture(scope="module")
def spec():   # the run's persistent compilation cache is on from the session's start (tests/conftest.py)
    return TrialSpec(train_data="digits", image_size=8, batch_size=32, pretrained=False)


@pytest.fixture(scope="module")
def ordinary(spec, tmp_path_factory):
    """An ordinary trial of CONFIG with seed SEED, in trials/0 of an experiment-like folder."""
    reporter = RecordingReporter(tmp_path_factory.mktemp("exp") / "trials" / "0", seed=SEED, max_epochs=EPOCHS)
    train_trial(CONFIG, reporter, spec)
    return reporter


@pytest.fixture(scope="module")
def pop(spec):
    population = Population(spec, CONFIG, max_epochs=EPOCHS, capacity=2)
    yield population
    population.close()


CURVE = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_top1", "reward")


def _same(a: dict, b: dict) -> None:
    """The same curve, bit for bit. On CPU the population program loops over members (``jax.lax.map``) and each
    iteration is the ordinary trial's step on that member's slice: the same operations on the same numbers in the
    same order, so every float agrees exactly (the member's batches are its own seed's, as in the ordinary
    trial; measured exactly equal here and at 32 px on cifar10_test_1k, benchmarks/population.py)."""
    assert {k: a[k] for k in CURVE} == {k: b[k] for k in CURVE}


def _close(a: dict, b: dict) -> None:
    """The same curve within a tight float tolerance: the accelerators' path (every member in one ``vmap``). A
    vmapped matmul or convolution is one batched kernel over the member axis, which may block its reductions
    differently from the single-member kernel (~1e-7 relative per op); 50 steps of training amplify that at most
    to the bounds below at this learning rate (it was exactly equal when measured). A wrong learning rate,
    schedule or data order is off by orders of magnitude more. This holds for float32 only: in bfloat16 (the
    accelerators' default) a rounding is 2**-8 and a vmapped member differs from its trial as much as bfloat16
    differs from float32 (2-4e-2 relative train loss here; see ``Population``'s docstring)."""
    assert a["epoch"] == b["epoch"]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert a["reward"] == pytest.approx(b["reward"], abs=1.5 / 180)      # at most one of ~180 val images flips


@pytest.fixture
def empty_after(pop):
    yield pop
    for trial_id in list(pop.members):    # a failing test leaves the shared population empty for the next
        pop.remove(trial_id)


ALONE: list[dict] = []     # the population's own curve of CONFIG / SEED, for the tests after the first


def test_one_member_alone_equals_an_ordinary_trial(pop, empty_after, ordinary, tmp_path):
    pop.add(0, CONFIG, tmp_path / "m0", seed=SEED)
    results = [dict(pop.run_epoch()[0][1]) for _ in range(EPOCHS)]
    ALONE.extend(results)
    pop.remove(0)
    assert len(ordinary.results) == EPOCHS
    for mine, theirs in zip(results, ordinary.results):
        _same(mine, theirs)
    assert results[-1]["reward"] > 0.5                                     # it learned (10 classes)
    model = load_trained(tmp_path / "m0")                                  # an ordinary trial checkpoint
    assert model.meta["config"] == CONFIG and model.meta["net"] == "cifar_resnet20_v1"
    assert model.meta["augment"] == load_trained(ordinary.checkpoint_dir).meta["augment"]   # for fit's tta
    # each epoch keeps the same validation predictions as the ordinary trial's (for the ensemble stage)
    for epoch in range(1, EPOCHS + 1):
        mine, theirs = stored_predictions(tmp_path / "m0", epoch), stored_predictions(ordinary.checkpoint_dir, epoch)
        np.testing.assert_array_equal(mine[1], theirs[1])
        np.testing.assert_array_equal(mine[0], theirs[0])
    assert mine[0].shape == (len(mine[1]), 10)
    assert results[-1]["val_top1"] == pytest.approx(np.mean(mine[0].argmax(-1) == mine[1]))


def test_a_member_among_others_equals_an_ordinary_trial(pop, empty_after, ordinary, tmp_path):
    """Inside a population, beside a member of another optimizer family, schedule and smoothing: still bit-identical."""
    pop.add(8, {**CONFIG, "lr_scheduler": "poly", "label_smoothing": 0.1,
                "optimizer": {"name": "adam", "learning_rate": 0.003}}, tmp_path / "other", seed=2)
    pop.add(9, CONFIG, tmp_path / "same", seed=SEED)
    for theirs in ordinary.results:
        _same(dict(pop.run_epoch())[9], theirs)
    pop.remove(8)
    pop.remove(9)


def test_vmapped_population_on_cpu_matches_too(spec, ordinary, tmp_path):
    """The accelerator path (all members in one vmap), run on CPU: the same curve within float tolerance."""
    population = Population(spec, CONFIG, max_epochs=EPOCHS, capacity=2, vmap_members=2)
    try:
        assert population.vmap_members == 2
        population.add(0, CONFIG, tmp_path / "v0", seed=SEED)
        population.add(1, {**CONFIG, "label_smoothing": 0.1}, tmp_path / "v1", seed=1)
        for theirs in ordinary.results:
            _close(dict(population.run_epoch())[0], theirs)
    finally:
        population.close()


def test_refilled_slot_starts_fresh_without_recompiling(pop, empty_after, tmp_path):
    other = {**CONFIG, "lr_scheduler": "poly", "label_smoothing": 0.1,
             "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.5}}
    pop.add(1, CONFIG, tmp_path / "a", seed=1)
    pop.add(2, other, tmp_path / "b", seed=2)
    pop.run_epoch()
    caches = [f._cache_size() for f in (pop._put, pop._take, pop._eval)]
    slot = pop.members[1]
    pop.remove(1)
    refill = {**CONFIG, "label_smoothing": 0.05, "optimizer": {"name": "adamw", "learning_rate": 0.002}}
    assert pop.add(3, refill, tmp_path / "c", seed=3) == slot  # another optimizer family: the same program
    member = pop._take(pop.state, slot)
    fresh = models.get_model("cifar_resnet20_v1", 10, pretrained=False, seed=3)
    np.testing.assert_array_equal(np.asarray(member.params["fc"]["kernel"][...]), np.asarray(fresh.fc.kernel[...]))
    assert float(member.opt_state.hyperparams["learning_rate"]) == pytest.approx(0.002)
    assert int(member.opt_state.hyperparams["kind"]) == 2  # optim.OPTIMIZER_KINDS.index('adamw')
    assert float(member.hparams["label_smoothing"]) == pytest.approx(0.05)
    assert int(member.step) == 0
    results = dict(pop.run_epoch())
    assert results[3]["epoch"] == 1 and results[2]["epoch"] == 2
    assert [f._cache_size() for f in (pop._put, pop._take, pop._eval)] == caches
    assert pop.num_compiles == 1
    pop.remove(2)
    pop.remove(3)


def test_a_removed_member_resumes_from_its_checkpoint_exactly(pop, empty_after, ordinary, tmp_path):
    """What a promotion or a restart after kill -9 does: the member continues as if it had never left."""
    pop.add(6, CONFIG, tmp_path / "r", seed=SEED)
    first = dict(pop.run_epoch())[6]
    pop.remove(6)
    pop.add(7, CONFIG, tmp_path / "x", seed=3)                   # the slot is reused meanwhile
    pop.add(6, CONFIG, tmp_path / "r", seed=SEED)
    second = dict(pop.run_epoch())[6]
    _same(first, ALONE[0])
    _same(second, ALONE[1])
    pop.remove(6)
    pop.remove(7)


def test_a_diverging_member_fails_alone(pop, empty_after, ordinary, tmp_path):
    diverging = {**CONFIG, "optimizer": {"name": "sgd", "learning_rate": 1e30}}
    pop.add(4, diverging, tmp_path / "nan", seed=4)
    pop.add(5, CONFIG, tmp_path / "ok", seed=SEED)
    results = dict(pop.run_epoch())
    assert isinstance(results[4], str) and "non-finite" in results[4]
    _same(results[5], ALONE[0])                       # the neighbour is exactly what it is alone
    pop.remove(4)
    pop.remove(5)


def test_memory_is_checked_up_front(spec, monkeypatch):
    monkeypatch.setattr(population_module, "free_device_memory", lambda device: 1024)
    with pytest.raises(MemoryError, match="population_size <="):
        Population(spec, CONFIG, max_epochs=EPOCHS, capacity=2)
    with pytest.raises(ValueError, match="population_size"):
        Population(spec, CONFIG, max_epochs=EPOCHS, capacity=0)


def test_pbt_clone_goes_through_checkpoints_for_ordinary_trials(spec, ordinary):
    source_dir = ordinary.checkpoint_dir
    explored = {**CONFIG, "optimizer": {**CONFIG["optimizer"], "learning_rate": 0.04}}
    reporter = RecordingReporter(source_dir.parent / "1", trial_id=1, seed=11, max_epochs=EPOCHS)
    PopulationTrial(spec)({**explored, "pbt_clone": {"trial_id": 0, "epoch": 1, "exploit": 0}}, reporter)
    assert [r["epoch"] for r in reporter.results] == [2]                 # continued after the source's epoch 1
    with TrialCheckpointer(reporter.checkpoint_dir / CHECKPOINT_SUBDIR, read_only=True) as ckpt:
        meta = ckpt.restore_meta(ckpt.latest_epoch())
    assert meta["pbt_exploit"] == 0 and meta["pbt_source"] == 0 and meta["config"] == explored
    with TrialCheckpointer(source_dir / CHECKPOINT_SUBDIR, read_only=True) as src:
        assert src.all_epochs()[-1] == EPOCHS                             # the source is untouched
    assert abs(reporter.results[0]["reward"] - ordinary.results[1]["reward"]) < 0.2


def test_docstring_examples():
    import doctest

    for module in (population_config, population_memory):   # population_key, auto_capacity
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_members_are_ranked_by_the_specs_metric(spec, tmp_path):
    """A population under metric='log_loss' (what task.fit's metric='auto' picks on small validation sets) reports
    and checkpoints ``exp(-val_loss)`` like an ordinary trial, with top-1 beside it."""
    import dataclasses
    import math
    population = Population(dataclasses.replace(spec, metric="log_loss"), CONFIG, max_epochs=1, capacity=1)
    try:
        population.add(0, CONFIG, tmp_path / "m0", seed=SEED)
        (trial_id, result), = population.run_epoch()
    finally:
        population.close()
    assert trial_id == 0 and result["reward"] == pytest.approx(math.exp(-result["val_loss"]))
    assert 0.0 <= result["val_top1"] <= 1.0 and result["val_top1"] != result["reward"]
    meta = load_trained(tmp_path / "m0").meta
    assert meta["val_top1"] == result["val_top1"] and meta["reward"] == pytest.approx(result["reward"])


def test_auto_capacity_follows_the_free_memory(pop, monkeypatch):
    """What population_size='auto' picks for this program: at most CPU_AUTO_MAX_MEMBERS on CPU, 1 when little is
    free (the one-member program's memory analysis against the free memory)."""
    assert 1 <= pop.auto_capacity() <= population_memory.CPU_AUTO_MAX_MEMBERS
    monkeypatch.setattr(population_module, "free_device_memory", lambda device: 1024)
    assert pop.auto_capacity() == 1


def test_batches_rendered_on_the_device_are_stacked_there(pop, empty_after, tmp_path):
    """The accelerators' input path (``batch_augment='device'`` yields ``jax.Array`` batches): the population
    stacks the members' batches without a round trip through the host, and its program takes them."""
    import jax.numpy as jnp
    pop.add(0, CONFIG, tmp_path / "d", seed=SEED)
    slot = pop.members[0]
    size = pop.image_size
    pop._batches.open(slot, [{"image": jnp.ones((pop.batch_size, size, size, 3), jnp.float32),
                              "label": jnp.zeros((pop.batch_size,), jnp.int32),
                              "mask": jnp.ones((pop.batch_size,), bool)}])
    stacked = pop._next_batches([slot])
    assert all(isinstance(v, jax.Array) and v.shape[0] == pop.capacity for v in stacked.values())
    pop.state, metrics = pop._train(pop.state, stacked)
    assert np.isfinite(np.asarray(metrics["loss"])[slot]) and float(np.asarray(metrics["count"])[slot]) == 32


def test_a_failed_checkpoint_write_fails_the_next_epoch_not_a_removal(pop, empty_after, tmp_path):
    """Members' checkpoints are written in the background while the next epoch trains: a write that fails is raised
    by the next ``run_epoch`` (where the executor fails the population's members), never by ``remove``."""
    pop.add(0, CONFIG, tmp_path / "full", seed=SEED)
    slot = pop.members[0]

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    pop.slots[slot].ckpt.save = disk_full
    assert dict(pop.run_epoch())[0]["epoch"] == 1
    with pytest.raises(RuntimeError, match="checkpoints failed: OSError: No space left"):
        pop.run_epoch()
    pop.add(1, CONFIG, tmp_path / "next", seed=SEED)     # the population goes on
    pop.remove(0)
    assert dict(pop.run_epoch())[1]["epoch"] == 1


def test_pad_crop_members_batches_are_one_gather_equal_to_their_loaders(pop, empty_after, tmp_path):
    """Members whose loaders render cached 'pad_crop' batches (digits, CIFAR) get their step's batches from one
    gather of all members' draws: each member's slice is exactly its own loader's batch (its trial seed's)."""
    from jaxgluon import data as jdata
    pop.add(0, CONFIG, tmp_path / "a", seed=SEED)
    pop.add(1, CONFIG, tmp_path / "b", seed=SEED + 1)
    stacked = pop._next_batches([pop.members[0], pop.members[1]])
    for trial_id, seed in ((0, SEED), (1, SEED + 1)):
        loader = jdata.make_loader(pop.train_src, batch_size=pop.batch_size, image_size=pop.image_size,
                                   mean=pop.mean, std=pop.std, train=True, seed=seed, num_epochs=EPOCHS,
                                   augment=pop.spec.augment, cache=pop.spec.cache)
        own = next(iter(loader))
        for key in own:
            assert np.array_equal(stacked[key][pop.members[trial_id]], own[key]), key
    assert set(pop.timings.as_dict()) >= {"build", "add", "assemble", "transfer", "step", "eval", "checkpoint"}


def test_conv_lowering_is_checked(spec):
    with pytest.raises(ValueError, match="conv_lowering"):
        Population(spec, CONFIG, max_epochs=EPOCHS, capacity=2, conv_lowering="cudnn")
