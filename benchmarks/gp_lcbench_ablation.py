"""Ablate GPSearcher change 7bba9d9 on held-out LCBench tasks (gp_fifo), and choose any fix by a fixed rule.

Why: 7bba9d9 changed several things at once and made ``gp_fifo`` worse on the multifidelity benchmark (median
time-to-target / budget 0.632 -> 0.994). This script finds which change does it WITHOUT looking at the benchmark's
tasks (3945, 7593, 126026, 189906): held-out tasks by the rule of ``hyperband_defaults.py`` (``LCBench.tasks()``
in list order, minus the benchmark's four, the first ``--num-tasks``, default 6: 34539, 126025, 126029, 146212,
167104, 167149). Same simulation as the benchmark: 4 simulated workers, budget 40 x the median full-trial time of
256 random configs / 4 workers, FIFO with the GP searcher ('bayesopt'), seeds 0..9 (paired across variants).

Variants (each relative to the current code; the first five revert one change of 7bba9d9, the parent's code of
the acquisition is read with ``git show 7bba9d9^:...``):

    head        the current code
    init_d1     initial design max(5, min(10, d + 1)) (the parent's default; 8 on LCBench, now 16)
    init_cap10  initial design max(5, min(10, 2 (d + 1))) (2(d+1) capped at 10)
    prior_old   the parent's lengthscale prior LogNormal(sqrt2 + log(d)/2, sqrt3) (now Optuna's -0.1 (l^2 + l^-2))
    noise_old   noise floor 1e-6 (now 1e-8)
    acq_old     the parent's acquisition search: 1024 candidates (half prior, half perturbations of the best 5),
                top 16 refined by Adam (fixed 0.03 cosine step, 60 steps, 2 rounds); now 2048 prior draws, starts
                by an EI-proportional draw and next to the incumbent, lengthscale-preconditioned steps
    all_old     all five reverts at once (should come back to the parent's level)

(The warm-start-only fits from 128 observations are not ablated: a gp_fifo run sees at most ~40 observations.)

Score (as hyperband_defaults.py): normalised regret of the anytime best accuracy ``(y* - best@f) / (y* - y_med)``
averaged over f in {0.25, 0.5, 1.0}, seeds and tasks; ``y*`` = best accuracy any run on the task reached, ``y_med``
= median final accuracy of the 256 random configs (0 = the best anyone found, 1 = a typical config).

Decision rule (fixed before the runs): a variant replaces the current code only if its pooled mean regret is
lower than head's, it is lower on at least two thirds of the held-out tasks (4 of 6), and the paired difference
over (task, seed) is more than 2 standard errors below zero. Among qualifying variants the lowest pooled regret
wins, except all_old (a diagnostic, not a fix). The winner must then also keep the regret targets of
``benchmarks/searchers.py`` (jaxgluon GP <= Optuna GPSampler at N=100 on Branin, Hartmann6, Ackley-5D; Hartmann6
>= 100x below random); if it does not, the next qualifying variant is tried; if none is left, nothing changes.

    python benchmarks/gp_lcbench_ablation.py --save /tmp/abl.json              # 7 variants x 6 tasks x 10 seeds
    python benchmarks/gp_lcbench_ablation.py --variants head,init_d1 --seeds 2 --num-tasks 2   # small run
    python benchmarks/gp_lcbench_ablation.py --load /tmp/abl.json               # summary only
    python benchmarks/gp_lcbench_ablation.py --tasks <other non-benchmark tasks> --variants head,init_d1   # 2nd check

Outcome of the 2026-11-28 run (benchmarks/RESULTS.md): only init_d1 met the rule, and with it Hartmann6 misses the
searchers.py target (median regret 0.119 at N=100: 2 of 5 seeds reach the global basin), so nothing changed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import time
import types

import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from _common import FRACTIONS, add_held_out_arguments, budget_and_median_random, chosen_tasks

VARIANTS = ("head", "init_d1", "init_cap10", "prior_old", "noise_old", "acq_old", "all_old")
PARENT = "7bba9d9^"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parent_module(name: str, relpath: str) -> types.ModuleType:
    src = subprocess.run(["git", "-C", REPO, "show", f"{PARENT}:{relpath}"], capture_output=True, text=True,
                         check=True).stdout
    mod = types.ModuleType(name)
    exec(compile(src, f"{PARENT}:{relpath}", "exec"), mod.__dict__)
    return mod


def _old_log_prior(params):
    import jax.numpy as jnp

    d = params.log_lengthscales.shape[-1]
    mu_ls = jnp.sqrt(2.0) + 0.5 * jnp.log(d)
    lp = -0.5 * jnp.sum(((params.log_lengthscales - mu_ls) / jnp.sqrt(3.0)) ** 2)
    lp += -0.5 * params.log_signal_var**2
    lp += -0.5 * ((params.log_noise_var + 6.0) / 2.0) ** 2
    lp += -0.5 * params.mean**2
    return lp


def _old_acquisition():
    """A stand-in for ``_gp.maximize_log_ei`` that runs the parent's candidate set and refinement. It gets the
    top-5 observed points through ``anchors`` (see :func:`searcher_class`)."""
    import jax
    import jax.numpy as jnp

    old_acq = _parent_module("old_acquisition", "jaxgluon/searcher/_gp/acquisition.py")
    old_cand = _parent_module("old_candidates", "jaxgluon/searcher/_gp/candidates.py")

    def maximize(post, best, candidates, anchors, key, cont_mask, group_masks, onehots, num_refine=16,
                 num_steps=100, num_rounds=1):
        gm = np.asarray(group_masks)
        groups = tuple(sorted({tuple(np.flatnonzero(r)) for r in gm}))
        rng = np.random.default_rng(np.asarray(jax.random.bits(key, (2,))))
        prior = np.asarray(candidates)[:512]
        local = old_cand.perturb(rng, np.asarray(anchors), 512, np.asarray(cont_mask), groups)
        cand = jnp.asarray(np.concatenate([prior, local]))
        return old_acq.maximize_log_ei(post, best, cand, cont_mask, group_masks, onehots, num_refine=16,
                                       num_steps=60 if num_steps > 0 else 0, num_rounds=2)

    return maximize


@contextlib.contextmanager
def variant_patches(variant: str):
    """Module-level patches of a variant (jit caches cleared on entry and exit, so traces see them)."""
    import jax

    from jaxgluon.searcher import _gp
    from jaxgluon.searcher._gp import model

    saved = (model.log_prior, model.MIN_NOISE_VAR, _gp.maximize_log_ei)
    if variant in ("prior_old", "all_old"):
        model.log_prior = _old_log_prior
    if variant in ("noise_old", "all_old"):
        model.MIN_NOISE_VAR = 1e-6
    if variant in ("acq_old", "all_old"):
        _gp.maximize_log_ei = _old_acquisition()
    jax.clear_caches()
    try:
        yield
    finally:
        model.log_prior, model.MIN_NOISE_VAR, _gp.maximize_log_ei = saved
        jax.clear_caches()


def searcher_class(variant: str):
    from jaxgluon.searcher import GPSearcher

    if variant not in ("acq_old", "all_old"):
        return GPSearcher

    class ParentCandidates(GPSearcher):  # the parent perturbed the best 5 observed points (exactly)
        def _anchors(self, key, X, y):
            return X[np.argsort(-y, kind="stable")[: min(5, len(y))]]

    return ParentCandidates


def make(variant: str, bb, seed: int):
    from jaxgluon.scheduler import get_scheduler
    from jaxgluon.space import compile_space

    dim = compile_space(bb.search_space).dim
    n_init = {"init_d1": max(5, min(10, dim + 1)), "init_cap10": max(5, min(10, 2 * (dim + 1))),
              "all_old": max(5, min(10, dim + 1))}.get(variant)
    searcher = searcher_class(variant)(bb.search_space, mode="max", seed=seed, num_initial_random=n_init)
    return get_scheduler("bayesopt", searcher, max_t=bb.max_epochs, seed=seed)


def summarise(best_at: dict, y_med: dict, tasks: list, variants: list, seeds: list) -> dict:
    y_star = {t: max(np.nanmax(v) for k, v in best_at.items() if k[0] == t) for t in tasks}

    def regret_vec(t, v, s):  # per FRACTION; NaN (nothing reported yet) counts as 1
        return np.nan_to_num((y_star[t] - best_at[t, v, s]) / (y_star[t] - y_med[t]), nan=1.0)

    def per_run(v):  # task x seed, mean over FRACTIONS
        return np.array([[float(np.mean(regret_vec(t, v, s))) for s in seeds] for t in tasks])

    head = per_run("head")
    table = {}
    print(f"\nmean normalised regret (0 = best any run reached, 1 = median random config), "
          f"mean of best@25/50/100% over {len(seeds)} seeds")
    print(f"{'variant':<12}" + "".join(f"{t:>9}" for t in tasks) + f"{'pooled':>9}"
          + "".join(f"{f'@{f:.0%}':>7}" for f in FRACTIONS))
    for v in variants:
        r = per_run(v)
        diff = (r - head).ravel()
        se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
        frac = np.mean([regret_vec(t, v, s) for t in tasks for s in seeds], axis=0)
        table[v] = {"pooled": round(float(r.mean()), 4),
                    "per_task": {t: round(float(x), 4) for t, x in zip(tasks, r.mean(1))},
                    "at_budget_fraction": {str(f): round(float(x), 4) for f, x in zip(FRACTIONS, frac)},
                    "diff_vs_head": round(float(diff.mean()), 4), "diff_se": round(se, 4),
                    "tasks_better_than_head": int((r.mean(1) < head.mean(1)).sum())}
        print(f"{v:<12}" + "".join(f"{x:9.3f}" for x in r.mean(1)) + f"{r.mean():9.3f}"
              + "".join(f"{x:7.3f}" for x in frac)
              + ("" if v == "head" else f"   vs head {diff.mean():+.3f} (se {se:.3f}), better on "
                 f"{table[v]['tasks_better_than_head']}/{len(tasks)} tasks"))
    need = -(-2 * len(tasks) // 3)
    qualified = [v for v, row in table.items() if v not in ("head", "all_old") and row["diff_vs_head"] < 0
                 and -row["diff_vs_head"] > 2 * row["diff_se"] and row["tasks_better_than_head"] >= need]
    qualified.sort(key=lambda v: table[v]["pooled"])
    print(f"\nvariants meeting the rule (lower pooled regret, better on >= {need}/{len(tasks)} tasks, paired "
          f"difference > 2 se; all_old excluded): {qualified or 'none'}; first candidate: "
          f"{qualified[0] if qualified else 'keep the current code'} (then: searchers.py regret targets)")
    return {"y_star": {t: round(v, 3) for t, v in y_star.items()}, "variants": table, "qualified": qualified}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--save", default=None, help="write the per-run best@fractions to this JSON as they come")
    parser.add_argument("--load", default=None, help="comma-separated --save files: summarise only")
    args = parser.parse_args()

    t_start = time.time()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; valid: {', '.join(VARIANTS)}")
    best_at: dict[tuple, np.ndarray] = {}
    y_med: dict[str, float] = {}
    tasks = chosen_tasks(parser, args)
    seeds = list(range(args.seeds))
    if args.load:
        for path in args.load.split(","):
            data = json.load(open(path))
            y_med.update(data["y_med"])
            for t, v, s, b in data["runs"]:
                best_at[t, v, s] = np.array(b, dtype=float)
        tasks = [t for t in tasks if t in y_med]
        variants = [v for v in VARIANTS if all((t, v, s) in best_at for t in tasks for s in seeds)]
    else:
        from jaxgluon.tune.sim import LCBench, simulate

        bbs, budgets = {}, {}
        for task in tasks:
            bbs[task] = LCBench(task, path=args.lcbench)
            budgets[task], y_med[task] = budget_and_median_random(bbs[task], args)
        print(f"held-out tasks: {tasks}; variants: {variants}", flush=True)
        for v in variants:
            t0 = time.time()
            with variant_patches(v):
                for task in tasks:
                    for seed in seeds:
                        res = simulate(make(v, bbs[task], seed), bbs[task], num_workers=args.workers,
                                       max_time=budgets[task])
                        best_at[task, v, seed] = np.array([res.best_at(f * budgets[task]) for f in FRACTIONS])
                    if args.save:
                        with open(args.save + ".tmp", "w") as f:
                            json.dump({"y_med": y_med, "runs": [[t, vv, s, b.tolist()] for (t, vv, s), b
                                                                in best_at.items()]}, f)
                        os.replace(args.save + ".tmp", args.save)
            print(f"  {v:<12} {time.time() - t0:6.1f}s wall", flush=True)
    if "head" not in variants:
        print("no head runs: nothing to compare against")
        return
    figures = {"benchmark": "gp_lcbench_ablation_heldout", "tasks": tasks, "seeds": len(seeds),
               "workers": args.workers, "budget_full_trials": args.budget,
               "y_median_random": {t: round(v, 3) for t, v in y_med.items()}}
    figures.update(summarise(best_at, y_med, tasks, variants, seeds))
    figures["wall_seconds"] = round(time.time() - t_start, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
