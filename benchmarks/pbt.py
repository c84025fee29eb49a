"""PBT vs random search (FIFO) and Hyperband at equal member-epochs, on a real task and on the PBT paper's toy problem.

Real task (default: scikit-learn digits, ``cifar_resnet20_v1`` from scratch at ``--image-size`` px; validation is a
10% split of digits:train, test is digits:test): each method trains through ``ag.tune(PopulationTrial(spec), ...,
population_size=K)`` over the same space (SGD learning rate, momentum, weight decay, schedule, label smoothing):

- random-FIFO: K random configs, each ``--epochs`` epochs (K x epochs member-epochs);
- PBT: the same K initial configs (same searcher seed), exploit/explore every ``--interval`` epochs;
- Hyperband (ASHA stopping, rf 3): ``--hb-trials`` random configs; its member-epochs are reported.

Per seed: the best validation accuracy at the final epoch among trials that reached it, and that trial's test
accuracy (its checkpoint of the best validation epoch, ``load_trained(...).evaluate``). Printed: mean and standard
deviation over ``--seeds`` seeds. The toy problem (figure 2 of Jaderberg et al. 2017; tests/scheduler/pbt_toy.py)
compares PBT with grid and random search at equal gradient steps over 20 seeds.

    python benchmarks/pbt.py                     # ~10 min on 2 CPU cores
    python benchmarks/pbt.py --members 16 --epochs 20 --data ../shared/data/cifar10_test_1k --image-size 32  # GPU
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time

import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from _common import load_pbt_toy

import jaxgluon as ag  # noqa: E402
from jaxgluon.train import PopulationTrial, TrialSpec, enable_compilation_cache, load_source, load_trained  # noqa: E402

SPACE = {
    "net": "cifar_resnet20_v1",
    "lr_scheduler": ag.List("cosine", "poly"),
    "label_smoothing": ag.Real(0.0, 0.2),
    "optimizer": ag.optimizer.SGD(learning_rate=ag.LogLinear(1e-3, 1.0), momentum=ag.Linear(0.5, 0.99),
                                  wd=ag.LogLinear(1e-6, 1e-2)),
}


def final_scores(result, epochs: int, test_source) -> tuple[float, float, int]:
    """(best final-epoch val accuracy, that trial's test accuracy, member-epochs trained)."""
    member_epochs = sum(len(t["results"]) for t in result.trials)
    finished = [t for t in result.trials if t["epochs"] and t["epochs"][-1] == epochs and t["status"] != "ERROR"]
    best = max(finished, key=lambda t: t["rewards"][-1])
    model = load_trained(result.checkpoint_dir(best["trial_id"]))
    return float(best["rewards"][-1]), float(model.evaluate(test_source)), member_epochs


def toy(seeds: int = 20, epochs: int = 40) -> dict:
    toy_problem = load_pbt_toy()
    PAPER_INITIAL_H, run_fixed, run_pbt = toy_problem.PAPER_INITIAL_H, toy_problem.run_fixed, toy_problem.run_pbt

    grid = run_fixed(PAPER_INITIAL_H, epochs)
    rnd, pbt = [], []
    for s in range(seeds):
        configs = [{"h0": a, "h1": b} for a, b in np.random.default_rng(s).random((2, 2))]
        rnd.append(run_fixed(configs, epochs))
        pbt.append(run_pbt(PAPER_INITIAL_H, epochs, seed=s)[0])
    return {"grid": grid, "random_mean": float(np.mean(rnd)), "pbt_mean": float(np.mean(pbt)),
            "pbt_min": float(np.min(pbt))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="digits:train")
    parser.add_argument("--test-data", default="digits:test")
    parser.add_argument("--image-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--interval", type=int, default=1)
    parser.add_argument("--hb-trials", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="pbt_bench_"))
    enable_compilation_cache(work / "jax_cache")
    spec = TrialSpec(train_data=args.data, image_size=args.image_size, batch_size=args.batch_size, pretrained=False)
    test_source = load_source(args.test_data)
    train_fn = PopulationTrial(spec)
    load = os.getloadavg()
    print(f"{args.members} members x {args.epochs} epochs, {args.seeds} seeds on {args.data} at {args.image_size} px; "
          f"load average before: {load[0]:.1f}", flush=True)
    methods = {
        "random_fifo": dict(search_strategy="random", num_trials=args.members),
        "pbt": dict(search_strategy="pbt", num_trials=args.members,
                    scheduler_options={"perturbation_interval": args.interval, "quantile_fraction": 0.25}),
        "hyperband": dict(search_strategy="hyperband", num_trials=args.hb_trials,
                          scheduler_options={"type": "stopping", "reduction_factor": 3}),
    }
    scores: dict[str, list[tuple[float, float, int]]] = {m: [] for m in methods}
    exploits = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        for name, options in methods.items():
            t0 = time.perf_counter()
            result = ag.tune(train_fn, SPACE, epochs=args.epochs, population_size=args.members, seed=seed,
                             output_directory=work / f"{name}_{seed}", **options)
            scores[name].append(final_scores(result, args.epochs, test_source))
            if name == "pbt":
                exploits.append(len(result.lineage))
            print(f"seed {seed} {name:12s}: val {scores[name][-1][0]:.4f} test {scores[name][-1][1]:.4f} "
                  f"({scores[name][-1][2]} member-epochs, {time.perf_counter() - t0:.0f} s)", flush=True)
    summary = {}
    for name, rows in scores.items():
        val, test, epochs = (np.array(c) for c in zip(*rows))
        summary[name] = {"val_mean": round(float(val.mean()), 4), "val_std": round(float(val.std()), 4),
                         "test_mean": round(float(test.mean()), 4), "test_std": round(float(test.std()), 4),
                         "member_epochs_mean": round(float(epochs.mean()), 1)}
        print(f"{name:12s}: final val acc {val.mean():.4f} +- {val.std():.4f}, test {test.mean():.4f} +- "
              f"{test.std():.4f}, {epochs.mean():.1f} member-epochs")
    toy_result = toy()
    print(f"toy problem (20 seeds, 160 steps per member): PBT mean Q {toy_result['pbt_mean']:.4f} (min "
          f"{toy_result['pbt_min']:.4f}), random {toy_result['random_mean']:.4f}, grid {toy_result['grid']:.4f}")
    pbt_vs_random = summary["pbt"]["val_mean"] - summary["random_fifo"]["val_mean"]
    print(f"PBT - random-FIFO final val acc: {pbt_vs_random:+.4f}; wall {time.perf_counter() - start:.0f} s")
    print(json.dumps({"data": args.data, "image_size": args.image_size, "members": args.members,
                      "epochs": args.epochs, "seeds": args.seeds, "load_avg_before": round(load[0], 2),
                      "load_avg_after": round(os.getloadavg()[0], 2), **summary,
                      "pbt_exploits_mean": float(np.mean(exploits)),
                      "pbt_minus_random_val": round(pbt_vs_random, 4), "toy": toy_result}))


if __name__ == "__main__":
    main()
