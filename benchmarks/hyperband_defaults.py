"""Choose HyperbandScheduler's default brackets / grace_period on held-out LCBench tasks (not the benchmark's).

Held-out tasks, by a fixed rule: ``LCBench.tasks()`` in list order, minus the four tasks of
``benchmarks/multifidelity.py`` (3945, 7593, 126026, 189906), the first ``--num-tasks`` (default 6: 34539,
126025, 126029, 146212, 167104, 167149). Same simulation as the benchmark: 4 simulated workers, budget = 40 x the
median full-trial time of 256 random configs / 4 workers, random searcher, reduction_factor 3.

Grid: type in {stopping, promotion} x brackets in {1, 2, 3, all (= len(rung_levels))} x grace_period in {1, 3};
random-FIFO as a reference. Score (fixed before the runs): normalised regret of the anytime best accuracy,
``(y* - best_at(f x budget)) / (y* - y_med)`` averaged over f in {0.25, 0.5, 1.0}, seeds and tasks, where ``y*`` is
the best accuracy any run on the task reached and ``y_med`` the median final accuracy of the 256 random configs
(so 0 = the best anyone found, 1 = a typical config). A (brackets, grace_period) setting is scored on both types
pooled, since one default serves both.

Decision rule (fixed before the runs): a setting replaces the current default (brackets 1, grace_period 1) only if
its pooled mean regret is lower, it is lower on at least two thirds of the held-out tasks (4 of 6), and the paired
difference over (task, seed, type) is more than 2 standard errors; among such settings the lowest mean regret wins.

    python benchmarks/hyperband_defaults.py                   # 6 tasks x 10 seeds, ~5-10 min on 2 cores
    python benchmarks/hyperband_defaults.py --num-tasks 2 --seeds 2   # small run
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from _common import FRACTIONS, add_held_out_arguments, budget_and_median_random, chosen_tasks

CURRENT = ("1", 1)  # the default before this selection: brackets 1, grace_period 1


def make(kind: str, brackets: str, grace: int, bb, seed: int):
    from jaxgluon.scheduler import _rungs, get_scheduler

    if kind == "random_fifo":
        return get_scheduler("random", bb.search_space, max_t=bb.max_epochs, seed=seed)
    n_levels = len(_rungs.rung_levels(grace, 3, bb.max_epochs))
    b = n_levels if brackets == "all" else int(brackets)
    return get_scheduler("hyperband", bb.search_space, max_t=bb.max_epochs, seed=seed, type=kind,
                         brackets=b, grace_period=grace, reduction_factor=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    parser.add_argument("--brackets", default="1,2,3,all")
    parser.add_argument("--grace-periods", default="1,3")
    args = parser.parse_args()

    from jaxgluon.tune.sim import LCBench, simulate

    t_start = time.time()
    tasks = chosen_tasks(parser, args)
    settings = [(b, int(g)) for g in args.grace_periods.split(",") for b in args.brackets.split(",")]
    kinds = ("stopping", "promotion")
    seeds = range(args.seeds)
    print(f"held-out tasks: {tasks}; settings (brackets, grace_period): {settings}", flush=True)
    best_at: dict[tuple, np.ndarray] = {}  # (task, kind, brackets, grace, seed) -> best at FRACTIONS
    y_med: dict[str, float] = {}
    for task in tasks:
        bb = LCBench(task, path=args.lcbench)
        budget, y_med[task] = budget_and_median_random(bb, args)
        t0 = time.time()
        runs = [("random_fifo", "-", 0)] + [(k, b, g) for k in kinds for b, g in settings]
        for kind, b, g in runs:
            for seed in seeds:
                res = simulate(make(kind, b, g, bb, seed), bb, num_workers=args.workers, max_time=budget)
                best_at[task, kind, b, g, seed] = np.array([res.best_at(f * budget) for f in FRACTIONS])
        print(f"  task {task}: budget {budget:.0f}s, median random final {y_med[task]:.2f}, "
              f"{time.time() - t0:.0f}s wall", flush=True)

    y_star = {t: max(np.nanmax(v) for k, v in best_at.items() if k[0] == t) for t in tasks}

    def regret_vec(task, kind, b, g, seed):  # per FRACTION; NaN (nothing reported yet) counts as 1
        v = (y_star[task] - best_at[task, kind, b, g, seed]) / (y_star[task] - y_med[task])
        return np.nan_to_num(v, nan=1.0)

    def regret(task, kind, b, g, seed):  # mean over FRACTIONS
        return float(np.mean(regret_vec(task, kind, b, g, seed)))

    def at_fraction(kind_list, b, g):  # pooled mean regret at each budget fraction
        return np.mean([regret_vec(t, k, b, g, s) for t in tasks for k in kind_list for s in seeds], axis=0)

    # per setting: regret per (task, seed, kind), kinds pooled
    def per_run(b, g, kinds_=kinds):
        return np.array([[regret(t, k, b, g, s) for k in kinds_ for s in seeds] for t in tasks])  # task x runs

    table: dict[str, dict] = {}
    print(f"\nmean normalised regret (0 = best any run reached, 1 = median random config), "
          f"mean of best@25/50/100% over {args.seeds} seeds")
    print(f"{'setting':<22}" + "".join(f"{t:>9}" for t in tasks)
          + f"{'stopping':>10}{'promotion':>10}{'pooled':>9}" + "".join(f"{f'@{f:.0%}':>7}" for f in FRACTIONS))
    rf = np.array([[regret(t, "random_fifo", "-", 0, s) for s in seeds] for t in tasks])
    print(f"{'random_fifo':<22}" + "".join(f"{v:9.3f}" for v in rf.mean(1)) + f"{'':>20}{rf.mean():9.3f}"
          + "".join(f"{v:7.3f}" for v in at_fraction(("random_fifo",), "-", 0)))
    cur = per_run(*CURRENT)
    for b, g in settings:
        r = per_run(b, g)
        rs, rp = per_run(b, g, ("stopping",)), per_run(b, g, ("promotion",))
        diff = (r - cur).ravel()
        se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else float("nan")
        name = f"brackets={b} grace={g}"
        by_fraction = at_fraction(kinds, b, g)
        table[name] = {"brackets": b, "grace_period": g, "pooled": round(float(r.mean()), 4),
                       "stopping": round(float(rs.mean()), 4), "promotion": round(float(rp.mean()), 4),
                       "per_task": {t: round(float(v), 4) for t, v in zip(tasks, r.mean(1))},
                       "at_budget_fraction": {str(f): round(float(v), 4) for f, v in zip(FRACTIONS, by_fraction)},
                       "diff_vs_current": round(float(diff.mean()), 4), "diff_se": round(float(se), 4),
                       "tasks_better_than_current": int((r.mean(1) < cur.mean(1)).sum())}
        print(f"{name:<22}" + "".join(f"{v:9.3f}" for v in r.mean(1))
              + f"{rs.mean():10.3f}{rp.mean():10.3f}{r.mean():9.3f}" + "".join(f"{v:7.3f}" for v in by_fraction)
              + f"   vs current {diff.mean():+.3f} "
                f"(se {se:.3f}), better on {table[name]['tasks_better_than_current']}/{len(tasks)} tasks")
    need = -(-2 * len(tasks) // 3)  # two thirds of the tasks, rounded up: 4 of 6
    qualified = [n for n, row in table.items() if (row["brackets"], row["grace_period"]) != CURRENT
                 and row["diff_vs_current"] < 0 and -row["diff_vs_current"] > 2 * row["diff_se"]
                 and row["tasks_better_than_current"] >= need]
    winner = min(qualified, key=lambda n: table[n]["pooled"]) if qualified else None
    print(f"\nsettings meeting the rule (lower pooled regret, better on >= {need}/{len(tasks)} tasks, paired "
          f"difference > 2 se): {qualified or 'none'}; selected: {winner or 'keep brackets=1 grace=1'}")
    figures = {"benchmark": "hyperband_defaults_lcbench_heldout", "tasks": tasks, "seeds": args.seeds,
               "workers": args.workers, "budget_full_trials": args.budget,
               "y_star": {t: round(v, 3) for t, v in y_star.items()},
               "y_median_random": {t: round(v, 3) for t, v in y_med.items()},
               "random_fifo_regret": round(float(rf.mean()), 4),
               "random_fifo_at_budget_fraction": {str(f): round(float(v), 4) for f, v in
                                                  zip(FRACTIONS, at_fraction(("random_fifo",), "-", 0))},
               "settings": table, "qualified": qualified, "selected": winner,
               "wall_seconds": round(time.time() - t_start, 1)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
