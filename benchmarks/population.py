"""Population trials vs the same configs trained one after another: total images per second, same results.

K configs of one net (SGD with different learning rates, momenta, schedules, label smoothing; each with its own
seed) are trained for ``--epochs`` epochs twice in this process:

- sequentially: ``jaxgluon.train.train_trial`` per config, as ``tune`` runs trials one at a time;
- as one population: ``jaxgluon.train.Population`` with K members (one vmapped program).

Both start with an empty persistent compilation cache (a fresh temporary directory): the sequential trials share
compiled programs where they are the same (configs differing only in optimizer numbers), as in a search.
Reported: end-to-end images/s (all training images of all configs / wall time, with model building, compilation,
validation and checkpoints) and training images/s (steps only, first step of each program excluded), their
ratios, and the largest per-epoch difference between a member's and its sequential trial's train loss and
validation accuracy (same config, same seed: the same curve).

    python benchmarks/population.py                      # K=8 cifar_resnet20_v1 at 32 px on ../shared cifar10_test_1k
    python benchmarks/population.py --members 32 --net cifar_resnet56_v1     # on a GPU
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

from jaxgluon.train import Population, TrialSpec, enable_compilation_cache, train_trial  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_test_1k"


class Reporter:
    def __init__(self, directory: pathlib.Path, seed: int, max_epochs: int):
        self.trial_id, self.seed, self.max_epochs = 0, seed, max_epochs
        self.checkpoint_dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.results: list[dict] = []

    def __call__(self, **result):
        self.results.append(result)
        return "CONTINUE"


def configs(k: int, net: str, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"net": net, "lr_scheduler": ["cosine", "poly"][i % 2],
             "label_smoothing": [0.0, 0.1][(i // 2) % 2],
             "optimizer": {"name": "sgd", "learning_rate": float(10 ** rng.uniform(-2, -0.7)),
                           "momentum": float(rng.uniform(0.8, 0.95)), "wd": 1e-4}} for i in range(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--net", default="cifar_resnet20_v1")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", default=str(SHARED) if SHARED.is_dir() else "digits")
    parser.add_argument("--shared-batches", action="store_true", help="members train on the same batches")
    parser.add_argument("--vmap-members", default="auto",
                        help="members per vmap in the population program ('auto': 1 on CPU, all on GPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="population_bench_"))
    enable_compilation_cache(work / "jax_cache")
    spec = TrialSpec(train_data=args.data, val_fraction=0.2, image_size=args.image_size, batch_size=args.batch_size,
                     pretrained=False)
    cfgs = configs(args.members, args.net, args.seed)
    seeds = [1000 + i for i in range(args.members)]
    load = os.getloadavg()
    print(f"{args.members} x {args.net} at {args.image_size} px, batch {args.batch_size}, {args.epochs} epochs on "
          f"{args.data}; vmap_members={args.vmap_members}; load average before: {load[0]:.1f}", flush=True)

    start = time.perf_counter()
    pop = Population(spec, cfgs[0], max_epochs=args.epochs, capacity=args.members,
                     shared_batches=args.shared_batches,
                     vmap_members=args.vmap_members if args.vmap_members == "auto" else int(args.vmap_members))
    build_s = time.perf_counter() - start
    for i, (cfg, s) in enumerate(zip(cfgs, seeds)):
        pop.add(i, cfg, work / "pop" / str(i), seed=s)
    pop_results: dict[int, list[dict]] = {i: [] for i in range(args.members)}
    for _ in range(args.epochs):
        for trial_id, result in pop.run_epoch():
            if isinstance(result, str):
                raise RuntimeError(f"member {trial_id} failed: {result}")
            pop_results[trial_id].append(result)
    pop.close()
    pop_wall = time.perf_counter() - start
    per_epoch_train = [r["population_images_per_sec"] for r in pop_results[0]]
    images_per_member_epoch = pop.steps_per_epoch * pop.batch_size
    total_images = images_per_member_epoch * args.members * args.epochs
    pop_train_ips = float(np.median(per_epoch_train))
    print(f"population: {pop_wall:.1f} s wall ({build_s:.1f} s build + compile), "
          f"{total_images / pop_wall:.1f} img/s end to end, {pop_train_ips:.1f} img/s training", flush=True)

    seq_start = time.perf_counter()
    seq_results: list[list[dict]] = []
    seq_train_images, seq_train_seconds = 0.0, 0.0
    for i, (cfg, s) in enumerate(zip(cfgs, seeds)):
        t0 = time.perf_counter()
        reporter = Reporter(work / "seq" / str(i), seed=s, max_epochs=args.epochs)
        train_trial(cfg, reporter, spec)
        seq_results.append(reporter.results)
        for r in reporter.results:
            seq_train_images += images_per_member_epoch
            seq_train_seconds += images_per_member_epoch / r["images_per_sec"]
        print(f"  sequential trial {i}: {time.perf_counter() - t0:.1f} s, "
              f"rewards {[round(r['reward'], 3) for r in reporter.results]}", flush=True)
    seq_wall = time.perf_counter() - seq_start
    seq_train_ips = seq_train_images / seq_train_seconds
    print(f"sequential: {seq_wall:.1f} s wall, {total_images / seq_wall:.1f} img/s end to end, "
          f"{seq_train_ips:.1f} img/s training", flush=True)

    loss_diff = max(abs(a["train_loss"] - b["train_loss"]) / max(abs(b["train_loss"]), 1e-9)
                    for i in range(args.members) for a, b in zip(pop_results[i], seq_results[i]))
    acc_diff = max(abs(a["reward"] - b["reward"]) for i in range(args.members)
                   for a, b in zip(pop_results[i], seq_results[i]))
    ratio_e2e = seq_wall / pop_wall
    ratio_train = pop_train_ips / seq_train_ips
    print(f"population / sequential: {ratio_e2e:.2f}x end to end, {ratio_train:.2f}x training steps; "
          f"largest per-epoch difference: train loss {loss_diff:.2e} (relative), val accuracy {acc_diff:.4f}")
    print(json.dumps({"members": args.members, "net": args.net, "image_size": args.image_size,
                      "batch_size": args.batch_size, "epochs": args.epochs, "data": args.data,
                      "shared_batches": args.shared_batches, "vmap_members": args.vmap_members,
                      "load_avg_before": round(load[0], 2),
                      "load_avg_after": round(os.getloadavg()[0], 2),
                      "population_wall_s": round(pop_wall, 2), "sequential_wall_s": round(seq_wall, 2),
                      "population_img_s_end_to_end": round(total_images / pop_wall, 1),
                      "sequential_img_s_end_to_end": round(total_images / seq_wall, 1),
                      "population_img_s_training": round(pop_train_ips, 1),
                      "sequential_img_s_training": round(seq_train_ips, 1),
                      "ratio_end_to_end": round(ratio_e2e, 3), "ratio_training": round(ratio_train, 3),
                      "max_rel_train_loss_diff": float(f"{loss_diff:.3e}"), "max_val_acc_diff": round(acc_diff, 4)}))


if __name__ == "__main__":
    main()
