import numpy as np
import pytest

from jaxgluon.scheduler import FIFOScheduler, HyperbandScheduler
from jaxgluon.tune.sim import Curve, SyntheticCurves, monotone_elapsed, simulate


class UniformSearcher:
    """Seeded uniform configs over SyntheticCurves' unit square."""

    mode = "max"

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def suggest(self, trial_id=None):
        x, y = self.rng.uniform(size=2)
        return {"x": float(x), "y": float(y)}

    def on_trial_result(self, *args):
        pass

    def on_trial_complete(self, *args):
        pass


def _run(kind, seed, workers=4, max_time=300.0):
    bb = SyntheticCurves(max_epochs=27, noise=0.01, seed=seed)
    if kind == "fifo":
        scheduler = FIFOScheduler(UniformSearcher(seed), max_t=27)
    else:
        scheduler = HyperbandScheduler(UniformSearcher(seed), type=kind, max_t=27, brackets=2, seed=seed)
    return simulate(scheduler, bb, num_workers=workers, max_time=max_time)


@pytest.mark.parametrize("kind", ["fifo", "stopping", "promotion"])
def test_same_seed_same_trajectory(kind):
    a, b = _run(kind, seed=1), _run(kind, seed=1)
    strip = lambda r: [(e["time"], e["trial_id"], e["epoch"], e["reward"], e["decision"]) for e in r.events]
    assert strip(a) == strip(b)
    assert strip(a) != strip(_run(kind, seed=2))
    assert a.num_decisions > 0 and a.decision_seconds > 0


def test_fifo_clock_and_workers_follow_epoch_costs():
    bb = SyntheticCurves(max_epochs=3)
    configs = iter([{"x": 0.5, "y": 0.0}, {"x": 0.5, "y": 1.0}])

    class Two(UniformSearcher):
        def suggest(self, trial_id=None):
            return next(configs, None)

    result = simulate(FIFOScheduler(Two(0), max_t=3), bb, num_workers=2, max_time=100.0)
    # y=0: 1 s per epoch, y=1: 2 s per epoch, running side by side; ties go to the earlier-scheduled event
    assert [(e["time"], e["trial_id"], e["epoch"]) for e in result.events] == [
        (1.0, 0, 1), (2.0, 1, 1), (2.0, 0, 2), (3.0, 0, 3), (4.0, 1, 2), (6.0, 1, 3)]
    assert {t["status"] for t in result.trials.values()} == {"completed"}
    assert result.time_to_target(result.best_reward) <= 6.0
    assert result.time_to_target(2.0) == float("inf")


def test_budget_cuts_results_and_promotion_resumes_paused_trials():
    result = _run("promotion", seed=0, workers=2, max_time=120.0)
    assert max(e["time"] for e in result.events) <= 120.0
    # some trial was paused at a rung and later continued past it
    resumed = [tid for tid, t in result.trials.items()
               if any(e["trial_id"] == tid and e["decision"] == "PAUSE" for e in result.events)
               and max(t["rewards"]) > min(e["epoch"] for e in result.events
                                           if e["trial_id"] == tid and e["decision"] == "PAUSE")]
    assert resumed
    # each epoch of a trial is reported once: resumes continue from the checkpoint, not from scratch
    keys = [(e["trial_id"], e["epoch"]) for e in result.events]
    assert len(keys) == len(set(keys))


def test_hyperband_stopping_uses_less_time_per_trial_than_fifo():
    fifo, hb = _run("fifo", seed=3), _run("stopping", seed=3)
    assert len(hb.trials) > len(fifo.trials)
    assert any(t["status"] == "stopped" for t in hb.trials.values())


def test_trajectory_is_monotone_and_best_at():
    result = _run("stopping", seed=0)
    times, best = result.trajectory()
    assert np.all(np.diff(times) >= 0) and np.all(np.diff(best) >= 0)
    assert result.best_at(times[-1]) == result.best_reward
    assert np.isnan(result.best_at(0.0))


def test_monotone_elapsed_and_curve_cost():
    elapsed = monotone_elapsed(np.array([2.0, 1.0, 5.0]))
    assert np.all(np.diff(elapsed) > 0) and elapsed[0] == 2.0
    assert Curve(np.zeros(2), np.array([1.0, 3.5])).epoch_cost(2) == 2.5


def test_simulate_validates_arguments():
    bb = SyntheticCurves(max_epochs=9)
    with pytest.raises(ValueError, match="budget"):
        simulate(FIFOScheduler(UniformSearcher(0), max_t=9), bb)
    with pytest.raises(ValueError, match="max_t"):
        simulate(FIFOScheduler(UniformSearcher(0), max_t=10), bb, max_time=10.0)


@pytest.mark.parametrize("name, options", [("random", {}), ("hyperband", {"type": "promotion"})])
def test_real_searchers_replay_identically(name, options):
    from jaxgluon.scheduler import get_scheduler

    bb = SyntheticCurves(max_epochs=9, noise=0.02, seed=0)

    def run(seed):
        scheduler = get_scheduler(name, bb.search_space, max_t=9, seed=seed, **options)
        result = simulate(scheduler, bb, num_workers=3, max_time=60.0)
        return [(e["time"], e["trial_id"], e["epoch"], e["reward"]) for e in result.events]

    assert run(0) == run(0)
    assert run(0) != run(1)


class RecordingSearcher:
    """Forwards to a real searcher and records the resources of the results it is shown."""

    def __init__(self, inner):
        self.inner, self.mode, self.resources = inner, inner.mode, []

    def suggest(self, trial_id=None):
        return self.inner.suggest(trial_id)

    def on_trial_result(self, trial_id, config, reward, resource):
        self.resources.append(resource)
        self.inner.on_trial_result(trial_id, config, reward, resource)

    def on_trial_complete(self, *args):
        self.inner.on_trial_complete(*args)

    def on_trial_error(self, *args):
        self.inner.on_trial_error(*args)


def test_bayesopt_hyperband_fits_the_gp_on_rung_level_results():
    from jaxgluon.searcher import GPSearcher

    bb = SyntheticCurves(max_epochs=9, noise=0.02, seed=0)
    gp = GPSearcher(bb.search_space, seed=0, multi_fidelity=True, num_initial_random=3, num_candidates=64,
                    num_restarts=1, fit_steps=5)
    searcher = RecordingSearcher(gp)
    result = simulate(HyperbandScheduler(searcher, type="stopping", max_t=9, seed=0), bb, num_workers=2,
                      max_trials=8)
    assert len(result.trials) == 8
    assert set(searcher.resources) <= {1, 3, 9} and 3 in searcher.resources
    assert gp.last_info.get("resource_level") is not None  # the last suggestion came from the GP


@pytest.mark.parametrize("kind", ["fifo", "stopping", "promotion"])
def test_workers_are_charged_each_epoch_once_and_never_idle(kind):
    """Per worker, the reported epochs tile the clock: each epoch costs exactly its curve's epoch time, a
    stopped or paused trial frees its worker at once (no gap), a resumed one pays only its new epochs."""
    bb = SyntheticCurves(max_epochs=27, noise=0.01, seed=4)
    scheduler = (FIFOScheduler(UniformSearcher(4), max_t=27) if kind == "fifo" else
                 HyperbandScheduler(UniformSearcher(4), type=kind, max_t=27, seed=4))
    result = simulate(scheduler, bb, num_workers=3, max_time=400.0)
    curves = {tid: bb.curves([t["config"]])[0] for tid, t in result.trials.items()}
    ends = {}
    for e in result.events:  # in time order
        start = e["time"] - curves[e["trial_id"]].epoch_cost(e["epoch"])
        assert start == pytest.approx(ends.get(e["worker"], 0.0), abs=1e-9)
        ends[e["worker"]] = e["time"]
    assert len(ends) == 3
    if kind != "fifo":
        assert any(e["decision"] in ("STOP", "PAUSE") and e["epoch"] < 27 for e in result.events)


def _digest(events):
    import hashlib
    import json

    rows = [[round(e["time"], 9), e["trial_id"], e["epoch"], round(e["reward"], 9), e["decision"], e["worker"]]
            for e in events]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16], len(rows)


# (digest, reported epochs, trials) of each run by the simulator that had its own trial loop (commit aeaab56,
# before it drove the Runner); the same scheduler and blackbox must still give exactly these events
OLD_SIMULATOR = {
    ("hyperband", "promotion"): (("86e1f903789261c0", 120), 50),
    ("hyperband", "stopping"): (("3f4d12f8423eec3d", 119), 51),
    ("random", None): (("6fb00a3fc664eb03", 127), 15),
}


@pytest.mark.parametrize("name, kind", list(OLD_SIMULATOR))
def test_runner_driven_simulation_reproduces_the_old_simulator(name, kind):
    from jaxgluon.scheduler import get_scheduler

    bb = SyntheticCurves(max_epochs=9, noise=0.02, seed=0)
    options = {} if kind is None else {"type": kind}
    result = simulate(get_scheduler(name, bb.search_space, max_t=9, seed=0, **options), bb, num_workers=3,
                      max_time=60.0)
    digest, num_trials = OLD_SIMULATOR[name, kind]
    assert (_digest(result.events), len(result.trials)) == (digest, num_trials)
    # trials the budget cut off end as tune() ends them: STOPPED (the old loop left them 'running')
    assert "running" not in {t["status"] for t in result.trials.values()}
    assert result.metadata["stop_reason"] == "time_limits" and result.metadata["executor"] == "simulated"


def test_simulation_runs_through_the_runner_and_its_journal(tmp_path, monkeypatch):
    from jaxgluon.tune import runner as runner_module
    from jaxgluon.tune.journal import read_journal

    seen = {"reports": 0, "runs": 0}
    on_report, run = runner_module.Runner._on_report, runner_module.Runner.run

    def counting_report(self, trial_id, result):
        seen["reports"] += 1
        return on_report(self, trial_id, result)

    def counting_run(self):
        seen["runs"] += 1
        return run(self)

    monkeypatch.setattr(runner_module.Runner, "_on_report", counting_report)
    monkeypatch.setattr(runner_module.Runner, "run", counting_run)
    bb = SyntheticCurves(max_epochs=9, noise=0.01, seed=2)
    result = simulate(HyperbandScheduler(UniformSearcher(2), type="promotion", max_t=9, seed=2), bb, num_workers=2,
                      max_time=80.0, output_directory=tmp_path / "exp")
    assert seen == {"reports": len(result.events), "runs": 1}
    journal = list(read_journal(tmp_path / "exp" / "journal.jsonl"))
    reports = [(e["t"], e["trial_id"], e["result"]["epoch"], e["result"]["reward"], e["decision"])
               for e in journal if e["event"] == "result"]
    assert reports == [(round(e["time"], 6), e["trial_id"], e["epoch"], e["reward"], e["decision"])  # runner's t: µs
                       for e in result.events]
    ends = {}
    for e in journal:
        if e["event"] == "end":
            ends[e["trial_id"]] = e["status"]
    assert ends == {tid: t["status"].upper() for tid, t in result.trials.items()}
    starts = [e for e in journal if e["event"] == "start"]
    assert {e["trial_id"] for e in starts if e["kind"] == "start"} == set(result.trials)
    assert any(e["kind"] == "resume" for e in starts)  # promotions are the runner's resumes
    assert journal[-1]["event"] == "finish" and journal[-1]["t"] == 80.0
    assert result.metadata["runner_overhead"]["num_decisions"] == len(result.events)


def test_max_trials_lets_paused_trials_be_promoted_as_tune_does():
    bb = SyntheticCurves(max_epochs=9, noise=0.01, seed=5)
    result = simulate(HyperbandScheduler(UniformSearcher(5), type="promotion", max_t=9, seed=5), bb,
                      num_workers=2, max_trials=6)
    assert len(result.trials) == 6 and result.metadata["stop_reason"] in ("num_trials", "exhausted")
    assert result.total_time == max(e["time"] for e in result.events)
    resumed = {e["trial_id"] for e in result.events if e["epoch"] > 1 and e["trial_id"] in {
        p["trial_id"] for p in result.events if p["decision"] == "PAUSE"}}
    assert resumed  # promoted after the trial budget was spent
