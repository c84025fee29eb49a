"""Multi-fidelity HPO on the YAHPO LCBench surrogate, in simulated time.

Every method runs through the same simulator (``jaxgluon.tune.sim.simulate``): N simulated workers, each epoch
costs the surrogate's predicted time, a fixed simulated budget per task. Methods: random-FIFO, GP-FIFO,
Hyperband stopping, Hyperband promotion (ASHA), bayesopt_hyperband (GP on rung-level results), and Optuna
(TPE + HyperbandPruner through ask/tell, with the same budget accounting).

Reported per task: anytime best validation accuracy (mean over seeds at 25/50/100 % of the budget) and
time-to-target, target = ``--target-fractions`` x the best accuracy any method reached on that task (the pre-set
headline) and, secondary, ``--random-quantile-targets`` of the random configs' best accuracies (a target that does
not move when a better method joins the comparison; added after the headline turned out censored, see RESULTS).
Ratios: random-FIFO / Hyperband time-to-target (median over task x seed), Optuna / best jaxgluon method.
Reach: per task, the fraction of random configs that ever reach the target, and so the chance that a
random-sampling method (random-FIFO, plain Hyperband) could see it at all in a run; runs where it cannot are
counted, because their random-FIFO / Hyperband ratio is 1 whatever the scheduler does.

    python benchmarks/multifidelity.py                       # full: 4 tasks x 10 seeds
    python benchmarks/multifidelity.py --tasks 3945 --seeds 2 --budget 10   # small run
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from _common import median_full_trial_time, random_config_curves

METHODS = ("random_fifo", "gp_fifo", "hyperband_stopping", "hyperband_promotion", "bayesopt_hyperband", "optuna")


class OptunaTPEHyperband:
    """Optuna's TPE + HyperbandPruner behind the scheduler interface the simulator drives (ask/tell)."""

    mode = "max"

    def __init__(self, search_space: dict, max_t: int, seed: int, reduction_factor: int = 3) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.max_t = max_t
        self.dists = {}
        for name, dom in search_space.items():
            if type(dom).__name__ == "Int":
                self.dists[name] = optuna.distributions.IntDistribution(dom.lower, dom.upper, log=dom.log)
            else:
                self.dists[name] = optuna.distributions.FloatDistribution(dom.lower, dom.upper, log=dom.log)
        # a fixed study name: HyperbandPruner assigns brackets by crc32(study_name, trial number), and the default
        # name is a random uuid, which made Optuna's runs differ between processes for the same seed
        self.study = optuna.create_study(
            study_name=f"multifidelity-seed{seed}", direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_t,
                                                  reduction_factor=reduction_factor))
        self._live: dict[int, object] = {}

    def suggest(self):
        from jaxgluon.scheduler import TrialSuggestion

        trial = self.study.ask(self.dists)
        self._live[trial.number] = trial
        return TrialSuggestion(kind="start", config=dict(trial.params), trial_id=trial.number)

    def on_trial_result(self, trial, result):
        from jaxgluon.scheduler import Decision

        otrial = self._live[trial.trial_id]
        otrial.report(result["reward"], result["epoch"])
        if result["epoch"] >= self.max_t:
            return Decision.STOP
        if otrial.should_prune():
            self.study.tell(otrial, state=self._optuna.trial.TrialState.PRUNED)
            del self._live[trial.trial_id]
            return Decision.STOP
        return Decision.CONTINUE

    def on_trial_complete(self, trial, result):
        otrial = self._live.pop(trial.trial_id, None)
        if otrial is not None:
            self.study.tell(otrial, result["reward"])


def make_method(method: str, search_space: dict, max_t: int, seed: int, bohb_type: str,
                hyperband_options: dict | None = None):
    """``hyperband_options``: extra HyperbandScheduler arguments (e.g. brackets, grace_period) for the three
    Hyperband methods; None = the library defaults."""
    from jaxgluon.scheduler import get_scheduler

    hb = dict(hyperband_options or {})
    if method == "random_fifo":
        return get_scheduler("random", search_space, max_t=max_t, seed=seed)
    if method == "gp_fifo":
        return get_scheduler("bayesopt", search_space, max_t=max_t, seed=seed)
    if method == "hyperband_stopping":
        return get_scheduler("hyperband", search_space, max_t=max_t, seed=seed, type="stopping", **hb)
    if method == "hyperband_promotion":
        return get_scheduler("hyperband", search_space, max_t=max_t, seed=seed, type="promotion", **hb)
    if method == "bayesopt_hyperband":
        return get_scheduler("bayesopt_hyperband", search_space, max_t=max_t, seed=seed, type=bohb_type, **hb)
    if method == "optuna":
        return OptunaTPEHyperband(search_space, max_t=max_t, seed=seed)
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


RANDOM_SAMPLING = ("random_fifo", "hyperband_stopping", "hyperband_promotion")


def random_config_best(blackbox, n: int = 8192) -> np.ndarray:
    """Per config, the best reward its learning curve reaches at any epoch, for ``n`` random configs (a key apart
    from the budget sample's): the ceiling of every scheduler whose configs come from random sampling."""
    return np.array([c.rewards.max() for c in random_config_curves(blackbox, n, key=54321)])


def random_sampling_reach(runs, tasks, methods, targets, config_best):
    """How reachable each target is for a random-sampling scheduler at all.

    ``q`` = the fraction of random configs whose curve ever reaches the target. A run that samples ``n`` configs
    can see the target with probability at most ``1 - (1 - q)**n`` (a perfect early-stopping oracle). Where that is
    below 5 % for both random-FIFO and Hyperband, their time-to-target is censored in both and the per-run ratio
    is 1 whatever the scheduler does; such runs are counted, so a ratio of 1 is read as what it is.
    """
    out: dict[str, object] = {"reach_fraction": {}, "runs_out_of_reach": 0, "runs": 0}
    sampling = [m for m in RANDOM_SAMPLING if m in methods]
    if not sampling:
        return out
    print(f"reach of the target for random sampling ({len(next(iter(config_best.values())))} random configs; "
          "P = 1-(1-q)^trials, trials = the method's mean configs per run):")
    for task in tasks:
        q = float(np.mean(config_best[task] >= targets[task]))
        out["reach_fraction"][task] = round(q, 5)
        p = {}
        for m in sampling:
            trials = [len(r.trials) for (t, mm, _), r in runs.items() if t == task and mm == m]
            p[m] = 1.0 - (1.0 - q) ** float(np.mean(trials))
        task_runs = sum(1 for (t, mm, _) in runs if t == task and mm == sampling[0])
        out["runs"] += task_runs
        if max(p.values()) < 0.05:
            out["runs_out_of_reach"] += task_runs
        print(f"  {task:>7} q = {q:.5f} (best random config {config_best[task].max():.2f}); "
              + ", ".join(f"P[{m}] = {v:.3f}" for m, v in p.items()))
    print(f"  runs where no random-sampling method can reach the target (P < 5%): "
          f"{out['runs_out_of_reach']} of {out['runs']} (their random-FIFO / Hyperband ratio is 1 by construction)")
    return out


def summarise(runs, tasks, methods, seeds, budgets, fraction, verbose, config_best=None, quantile=None,
              reach=True):
    """Time-to-target (censored at the budget when not reached) and anytime best; ratios between methods.

    The target is ``fraction`` x the best accuracy any method reached on the task or, with ``quantile``, the
    ``quantile`` of the random configs' best accuracies (``config_best``: per task, :func:`random_config_best`),
    a target that does not move when a method is added. ``config_best`` also serves the reach report (with
    ``reach``).
    """
    ttt, reached = {}, {}
    if quantile is None:
        targets = {task: fraction * max(r.best_reward for (t, _, _), r in runs.items() if t == task)
                   for task in tasks}
        what = f"{fraction:g} x best accuracy any method reached"
    else:
        targets = {task: float(np.quantile(config_best[task], quantile)) for task in tasks}
        what = f"the {quantile:g} quantile of random configs' best accuracy"
    print(f"\ntarget = {what} ({', '.join(f'{t}: {targets[t]:.2f}' for t in tasks)})")
    if verbose:
        print(f"{'task':>7} {'method':<20} {'best@25%':>9} {'best@50%':>9} {'best@100%':>9} "
              f"{'TTT med (s)':>12} {'reached':>8} {'seeds':>6}")
    for task in tasks:
        for method in methods:
            rows = []
            for seed in seeds:
                if (task, method, seed) not in runs:
                    continue
                r = runs[task, method, seed]
                t = r.time_to_target(targets[task])
                reached[task, method, seed] = math.isfinite(t)
                ttt[task, method, seed] = t if math.isfinite(t) else budgets[task]
                rows.append([r.best_at(f * budgets[task]) for f in (0.25, 0.5, 1.0)])
            rows = np.array(rows)
            if verbose and len(rows):
                med = np.median([v for (t, m, _), v in ttt.items() if t == task and m == method])
                hit = np.mean([v for (t, m, _), v in reached.items() if t == task and m == method])
                print(f"{task:>7} {method:<20} {np.nanmean(rows[:, 0]):9.2f} {np.nanmean(rows[:, 1]):9.2f} "
                      f"{np.nanmean(rows[:, 2]):9.2f} {med:12.0f} {hit:8.0%} {len(rows):6d}")
    keys = [(t, s) for t in tasks for s in seeds]

    def norm_ttt(method, common=None):  # time-to-target / the task's budget (comparable across tasks)
        ks = [k for k in keys if (k[0], method, k[1]) in ttt and (common is None or (k[0], common, k[1]) in ttt)]
        return np.array([ttt[t, method, s] / budgets[t] for t, s in ks])

    summary = {m: float(np.median(norm_ttt(m))) for m in methods}
    out: dict[str, object] = {
        "median_ttt_over_budget": {m: round(v, 4) for m, v in summary.items()},
        "reached_fraction": {m: float(np.mean([v for (_, mm, _), v in reached.items() if mm == m]))
                             for m in methods}}
    print("median time-to-target / budget over task x seed (1.0 = not reached), fraction of runs reaching it:")
    for m in methods:
        print(f"  {m:<20} {summary[m]:.3f}   {out['reached_fraction'][m]:.0%}")
    def ratio(slow, fast, task=None):  # median over the (task, seed) runs both methods have
        ks = [k for k in keys if (k[0], slow, k[1]) in ttt and (k[0], fast, k[1]) in ttt
              and (task is None or k[0] == task)]
        return float(np.median([ttt[t, slow, s] / ttt[t, fast, s] for t, s in ks])) if ks else float("nan")

    if "random_fifo" in methods:
        for hb in ("hyperband_stopping", "hyperband_promotion", "bayesopt_hyperband"):
            if hb in methods:
                out[f"ratio_random_fifo_over_{hb}"] = round(ratio("random_fifo", hb), 3)
                per_task = {t: round(ratio("random_fifo", hb, t), 2) for t in tasks}
                print(f"  random-FIFO / {hb} time-to-target (median of per-run ratios): "
                      f"{out[f'ratio_random_fifo_over_{hb}']:.2f}x; per task {per_task}")
    if reach and config_best is not None:
        out["random_sampling"] = random_sampling_reach(runs, tasks, methods, targets, config_best)
    n_runs = {m: sum((t, m, s) in ttt for t, s in keys) for m in methods}
    complete = [m for m in methods if m != "optuna" and n_runs[m] == max(n_runs.values())]
    if "optuna" in methods and complete:
        best = min(complete, key=lambda m: summary[m])
        out["best_jaxgluon_method"] = best
        out["ratio_optuna_over_best_jaxgluon"] = round(ratio("optuna", best), 3)
        print(f"  Optuna / best jaxgluon method with all runs ({best}) time-to-target (median of per-run ratios): "
              f"{out['ratio_optuna_over_best_jaxgluon']:.2f}x (>= 1: jaxgluon as fast or faster)")
        for m in methods:
            if m != "optuna":
                out[f"ratio_optuna_over_{m}"] = round(ratio("optuna", m), 3)
        partial = [m for m in methods if n_runs[m] < max(n_runs.values())]
        if partial:
            print(f"  methods with fewer runs (compared on their runs only): "
                  + ", ".join(f"{m} ({n_runs[m]} runs, Optuna/{m} {out[f'ratio_optuna_over_{m}']:.2f}x)"
                              for m in partial))
    return out


def save_runs(path: str, runs: dict, budgets: dict, args: argparse.Namespace) -> None:
    """Per run, the anytime-best trajectory (improvements only) and decision timing, so runs split over several
    processes can be summarised together with --load."""
    out = {"budgets": budgets, "budget_full_trials": args.budget, "workers": args.workers,
           "hyperband_options": args.hyperband_options, "runs": []}
    for (task, method, seed), r in runs.items():
        times, best = r.trajectory()
        keep = np.r_[True, np.diff(best) != 0] if len(best) else np.zeros(0, bool)
        out["runs"].append({"task": task, "method": method, "seed": seed, "times": times[keep].tolist(),
                            "best": best[keep].tolist(), "num_trials": len(r.trials),
                            "decision_seconds": r.decision_seconds, "num_decisions": r.num_decisions,
                            "total_time": r.total_time})
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    import os

    os.replace(tmp, path)


def load_runs(path: str, runs: dict, budgets: dict, args: argparse.Namespace) -> None:
    from jaxgluon.tune.sim import SimulationResult

    data = json.load(open(path))
    budgets.update(data["budgets"])
    args.budget, args.workers = data["budget_full_trials"], data["workers"]
    if data.get("hyperband_options"):
        print(f"{path}: Hyperband methods run with --hyperband-options {data['hyperband_options']}")
    for run in data["runs"]:
        events = [{"time": t, "reward": b} for t, b in zip(run["times"], run["best"])]
        runs[run["task"], run["method"], run["seed"]] = SimulationResult(
            events=events, trials=dict.fromkeys(range(run["num_trials"])), total_time=run["total_time"],
            decision_seconds=run["decision_seconds"], num_decisions=run["num_decisions"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="3945,7593,126026,189906", help="comma-separated LCBench task ids")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (to split seeds over processes)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=float, default=40.0,
                        help="simulated budget in full-trial units: max_time = budget x median full-trial "
                             "time / workers (random-FIFO completes about `budget` trials)")
    parser.add_argument("--target-fractions", default="0.98,0.95",
                        help="targets as fractions of the best accuracy any method reached; the first is the "
                             "headline (full table), the others are summarised")
    parser.add_argument("--random-quantile-targets", default="0.99",
                        help="also summarise with targets that do not depend on the methods run: these quantiles "
                             "of the best accuracy of 8192 random configs per task ('' for none)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--bohb-type", default="stopping", choices=("stopping", "promotion"))
    parser.add_argument("--hyperband-options", default=None,
                        help='JSON dict of HyperbandScheduler arguments for the Hyperband methods, e.g. '
                             '\'{"grace_period": 3, "brackets": 2}\' (default: the library defaults). With --load, '
                             'later files replace earlier ones run by run, so a file of Hyperband runs with other '
                             'options can be summarised against the baselines of another')
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the uncounted warm-up run per method (decision times then include compiles)")
    parser.add_argument("--save", default=None, help="write per-run trajectories to this JSON (after each run)")
    parser.add_argument("--load", default=None,
                        help="comma-separated JSON files from --save: summarise them instead of simulating")
    parser.add_argument("--lcbench", default=None, help="folder of the YAHPO LCBench surrogate")
    parser.add_argument("--no-reach", action="store_true",
                        help="skip the report of how reachable each target is for random sampling (its 8192 random "
                             "configs per task are still drawn when --random-quantile-targets needs them)")
    args = parser.parse_args()
    hb_options = json.loads(args.hyperband_options) if args.hyperband_options else None
    if hb_options is not None and not isinstance(hb_options, dict):
        parser.error("--hyperband-options must be a JSON object")

    from jaxgluon.tune.sim import LCBench, simulate

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
    runs: dict[tuple[str, str, int], object] = {}
    budgets: dict[str, float] = {}
    t_start = time.time()
    if args.load:
        for path in args.load.split(","):
            load_runs(path, runs, budgets, args)
        tasks = [t for t in tasks if t in budgets]
        methods = [m for m in methods if any(k[1] == m for k in runs)]
        seeds = sorted({k[2] for k in runs})
        missing = [(t, m, s) for t in tasks for m in methods for s in seeds if (t, m, s) not in runs]
        if missing:
            print(f"note: {len(missing)} (task, method, seed) runs missing from the loaded files, e.g. {missing[:3]}; "
                  "summaries use the seeds present per method")
    else:
        seeds = list(range(args.seed_start, args.seed_start + args.seeds))
        for i, task in enumerate(tasks):
            bb = LCBench(task, path=args.lcbench)
            budgets[task] = args.budget * median_full_trial_time(bb) / args.workers
            for method in methods:
                if i == 0 and not args.no_warmup:  # one uncounted short run per method compiles jitted code first
                    warm = make_method(method, bb.search_space, bb.max_epochs, 10**6, args.bohb_type, hb_options)
                    simulate(warm, bb, num_workers=args.workers, max_time=budgets[task] / 4)
                t0 = time.time()
                for seed in seeds:
                    scheduler = make_method(method, bb.search_space, bb.max_epochs, seed, args.bohb_type,
                                            hb_options)
                    runs[task, method, seed] = simulate(scheduler, bb, num_workers=args.workers,
                                                        max_time=budgets[task])
                    if args.save:
                        save_runs(args.save, runs, budgets, args)
                res = [runs[task, method, s] for s in seeds]
                print(f"  task {task:>7} {method:<20} {time.time() - t0:6.1f}s wall  trials/run "
                      f"{np.mean([len(r.trials) for r in res]):6.1f}  ms/decision "
                      f"{np.mean([r.ms_per_decision for r in res]):.3f}", flush=True)
    figures: dict[str, object] = {"benchmark": "multifidelity_lcbench", "tasks": tasks, "seeds": len(seeds),
                                  "workers": args.workers, "budget_full_trials": args.budget}
    if args.hyperband_options:
        figures["hyperband_options"] = args.hyperband_options
    print(f"\nbudget per task = {args.budget:g} full-trial times / {args.workers} workers "
          f"({', '.join(f'{t}: {budgets[t]:.0f}s' for t in tasks)})")
    fractions = [float(f) for f in args.target_fractions.split(",")]
    quantiles = [float(q) for q in args.random_quantile_targets.split(",") if q.strip()]
    config_best = (None if args.no_reach and not quantiles
                   else {t: random_config_best(LCBench(t, path=args.lcbench)) for t in tasks})
    for i, fraction in enumerate(fractions):
        figures[f"target_{fraction:g}"] = summarise(runs, tasks, methods, seeds, budgets, fraction,
                                                    verbose=i == 0, config_best=config_best,
                                                    reach=not args.no_reach)
    for quantile in quantiles:
        figures[f"target_random_quantile_{quantile:g}"] = summarise(
            runs, tasks, methods, seeds, budgets, None, verbose=False, config_best=config_best, quantile=quantile,
            reach=not args.no_reach)
    figures["ms_per_decision"] = {m: round(float(np.mean([r.ms_per_decision for (t, mm, _), r in runs.items()
                                                           if mm == m and t in tasks])), 4) for m in methods}
    figures["wall_seconds"] = round(time.time() - t_start, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
