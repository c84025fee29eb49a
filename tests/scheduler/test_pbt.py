"""PBTScheduler: the paper's toy problem (PBT beats grid and random search at equal steps) and the exploit/explore
bookkeeping."""
from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

from jaxgluon.scheduler import Decision, PBTScheduler, Trial, TrialStatus, get_scheduler
from jaxgluon.scheduler.pbt import CLONE_KEY
from jaxgluon.space import Categorical, Int, Real
from jaxgluon.space import optimizer as opt

from pbt_toy import PAPER_INITIAL_H, run_fixed, run_pbt

EPOCHS = 40  # 160 gradient steps per member


def test_toy_problem_pbt_beats_grid_and_random_search_at_equal_steps():
    seeds = range(10)
    grid = run_fixed(PAPER_INITIAL_H, EPOCHS)          # the paper's grid: the two members without PBT
    pbt = [run_pbt(PAPER_INITIAL_H, EPOCHS, seed=s)[0] for s in seeds]
    randoms, pbt_from_random = [], []
    for s in seeds:
        configs = [{"h0": a, "h1": b} for a, b in np.random.default_rng(s).random((2, 2))]
        randoms.append(run_fixed(configs, EPOCHS))
        pbt_from_random.append(run_pbt(configs, EPOCHS, seed=s)[0])
    assert min(pbt) > grid + 0.5                       # grid never leaves Q ~ 0.39
    assert np.mean(pbt) > np.mean(randoms)
    assert np.mean(pbt_from_random) > np.mean(randoms)
    assert all(p >= r for p, r in zip(pbt_from_random, randoms))


def test_toy_lineage_records_every_exploit():
    best, scheduler = run_pbt(PAPER_INITIAL_H, 10, seed=3)
    assert scheduler.lineage, "two members at different Q must exploit"
    for entry in scheduler.lineage:
        assert entry["trial_id"] != entry["source_trial_id"]
        assert entry["source_reward"] >= entry["reward"]
        assert set(entry["config"]) == {"h0", "h1"}
    assert [e["exploit"] for e in scheduler.lineage] == list(range(len(scheduler.lineage)))


def _four_members(**options):
    pbt = PBTScheduler({"lr": Real(1e-3, 1.0, log=True), "net": "n"}, max_t=20, seed=0, **options)
    trials = [pbt.suggest() for _ in range(4)]
    return pbt, [Trial(s.trial_id, s.config) for s in trials]


def test_bottom_quantile_exploits_a_top_member_and_explores():
    pbt, trials = _four_members(resample_probability=0.0, quantile_fraction=0.25)
    decisions = [pbt.on_trial_result(t, {"epoch": 1, "reward": r}) for t, r in zip(trials, (0.9, 0.5, 0.6, 0.7))]
    # each report is ranked against the latest rewards: 0.5 is the bottom of (0.9, 0.5); later ones are not
    assert decisions == [Decision.CONTINUE, Decision.PAUSE, Decision.CONTINUE, Decision.CONTINUE]
    decisions = [pbt.on_trial_result(t, {"epoch": 2, "reward": r}) for t, r in zip(trials[2:], (0.6, 0.7))]
    assert decisions == [Decision.CONTINUE, Decision.CONTINUE]      # the waiting member is still the bottom
    assert pbt.trial_status(1) == TrialStatus.PAUSED
    s = pbt.suggest()
    assert s.kind == "resume" and s.trial_id == 1 and s.resume_from_epoch == 1
    assert s.config[CLONE_KEY] == {"trial_id": 0, "epoch": 1, "exploit": 0}
    ratio = s.config["lr"] / trials[0].config["lr"]
    assert ratio == pytest.approx(0.8) or ratio == pytest.approx(1.2)
    assert s.config["net"] == "n"
    (entry,) = pbt.lineage
    assert entry["trial_id"] == 1 and entry["source_trial_id"] == 0 and entry["epoch"] == 1
    assert entry["config_before"] == trials[1].config and entry["config"]["lr"] == s.config["lr"]
    assert pbt.metadata()["lineage"] == pbt.lineage
    # the resumed member continues after the source's epoch and counts as running
    assert pbt.on_trial_result(Trial(1, s.config), {"epoch": 2, "reward": 0.95}) == Decision.CONTINUE
    json.dumps(pbt.state_dict())


def test_state_round_trip_replays_the_same_exploit():
    pbt, trials = _four_members(quantile_fraction=0.25)
    for t, r in zip(trials, (0.9, 0.5, 0.6, 0.7)):
        pbt.on_trial_result(t, {"epoch": 1, "reward": r})
    saved = json.loads(json.dumps(pbt.state_dict()))
    first = pbt.suggest()
    again, _ = _four_members(quantile_fraction=0.25)
    again.load_state_dict(saved)
    assert again.suggest() == first


def test_perturbation_interval_and_max_t():
    pbt, trials = _four_members(perturbation_interval=3)
    for epoch in (1, 2):
        for t, r in zip(trials, (0.9, 0.1, 0.2, 0.3)):
            assert pbt.on_trial_result(t, {"epoch": epoch, "reward": r}) == Decision.CONTINUE
    decisions = [pbt.on_trial_result(t, {"epoch": 3, "reward": r}) for t, r in zip(trials, (0.9, 0.1, 0.2, 0.3))]
    assert Decision.PAUSE in decisions
    assert pbt.on_trial_result(trials[0], {"epoch": 20, "reward": 0.9}) == Decision.STOP


def test_a_failed_member_is_not_resumed():
    pbt, trials = _four_members()
    decisions = [pbt.on_trial_result(t, {"epoch": 1, "reward": r}) for t, r in zip(trials, (0.9, 0.1, .5, .6))]
    paused = trials[decisions.index(Decision.PAUSE)]
    pbt.on_trial_error(paused)
    assert pbt.suggest().kind == "start"


def test_explore_keeps_fixed_keys_and_the_optimizer_family():
    space = {"net": Categorical("a", "b"), "batch_size": Int(8, 64),
             "optimizer": opt.Optimizers([opt.SGD(learning_rate=Real(1e-3, 1.0, log=True), momentum=Real(0.5, 0.99)),
                                          opt.Adam(learning_rate=Real(1e-4, 1e-2, log=True))]),
             "lr_scheduler": Categorical("constant", "cosine", "poly"), "label_smoothing": Real(0.0, 0.2)}
    pbt = PBTScheduler(space, resample_probability=0.0, seed=0)
    config = {"net": "a", "batch_size": 16, "lr_scheduler": "cosine", "label_smoothing": 0.1,
              "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}}
    for i in range(20):
        new = pbt.explore(config, np.random.default_rng(i))
        assert new["net"] == "a" and new["batch_size"] == 16 and new["optimizer"]["name"] == "sgd"
        assert new["lr_scheduler"] in ("constant", "poly")                       # an adjacent choice
        assert new["optimizer"]["learning_rate"] in (pytest.approx(0.08), pytest.approx(0.12))
        assert 0.5 <= new["optimizer"]["momentum"] <= 0.99                       # clipped to the bounds
    resampling = PBTScheduler(space, resample_probability=1.0, seed=0)
    values = {resampling.explore(config, np.random.default_rng(i))["label_smoothing"] for i in range(20)}
    assert len(values) == 20 and all(0.0 <= v <= 0.2 for v in values)


def test_get_scheduler_and_validation():
    assert isinstance(get_scheduler("pbt", {"lr": Real(0.1, 1.0)}, max_t=5), PBTScheduler)
    with pytest.raises(ValueError, match="quantile_fraction"):
        PBTScheduler({"lr": Real(0.1, 1.0)}, quantile_fraction=0.7)
    with pytest.raises(ValueError, match="perturbation_interval"):
        PBTScheduler({"lr": Real(0.1, 1.0)}, perturbation_interval=0)
    with pytest.raises(ValueError, match="resample_probability"):
        PBTScheduler({"lr": Real(0.1, 1.0)}, resample_probability=2)


def test_docstring_examples():
    import jaxgluon.scheduler.pbt as module
    import jaxgluon.tune.lineage as lineage

    for mod in (module, lineage):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0
