"""Population trials vs the same configs trained one after another: total images per second, same results.

K configs of one net (SGD with different learning rates, momenta, schedules, label smoothing; each with its own
seed) are trained for ``--epochs`` epochs twice in this process:

- sequentially: ``jaxgluon.train.train_trial`` per config, as ``tune`` runs trials one at a time;
- as one population: ``jaxgluon.train.Population`` with K members (one vmapped program).

Both start with an empty persistent compilation cache (a fresh temporary directory): the sequential trials share
compiled programs where they are the same (one program for every config of a net, as in a search). Before either is
timed, the process decodes the data and builds one model (per-process caches both would otherwise fill: whoever
runs first would pay for them); ``--order`` says which runs first.
Reported: end-to-end images/s (all training images of all configs / wall time, with model building, compilation,
validation and checkpoints), training images/s (steps only, first step of each program excluded), this process's
CPU seconds for each (user + system: on a shared machine the fairer measure of work, since other processes'
load inflates wall time but not our CPU time), their ratios, the machine's load average, and the largest
per-epoch difference between a member's and its sequential trial's train loss and validation accuracy (same
config, same seed: the same curve; 0 means bit-identical). On CPU the population loops over members and the
curves are bit-identical; the accelerators' one vmap in bfloat16 agrees only up to bfloat16 training noise (about
the difference between the trial's bfloat16 and float32 curves, 2-4e-2 relative train loss; ``Population``).

``--sequential-trials M`` trains only the first M configs sequentially (the ratios then compare images/s of K
population members with images/s of M sequential trials, and M curves). ``--check-auto`` prints, after the timed
population, what ``population_size='auto'`` chooses from the device's free memory (``Population.auto_capacity``).
On GPU/TPU the defaults are those of ``TrialSpec``: bfloat16 compute (``mixed_precision=None``), batches augmented
on the device, and all members in one ``vmap``.

    python benchmarks/population.py                      # K=8 cifar_resnet20_v1 at 32 px on ../shared cifar10_test_1k
    python benchmarks/population.py --k 32 --epochs 1 --sequential-trials 8 --check-auto     # on a GPU, ~1 min

Then the ceiling (``--no-ceiling`` skips it): one model's ordinary train step at batch B and at batch K*B. K members
at batch B do the same arithmetic on the same layer shapes as one model at K*B, which has one set of weights and so
one large convolution per layer, the best case for any population program; the ratio of the two steps' images/s
bounds the population's training-step ratio on this device. It is printed with each step's model FLOP rate as a
fraction of the device's float32 matmul rate.

Both runs print where their wall time went: build + compile, adding members (a refill), host batch assembly,
host->device transfer, the steps, evaluation, checkpoints, and the rest ('other'). The population waits for the
device after each transfer and step (``Population(blocking_timings=True)``) so each phase holds its own time;
``--overlap`` lets host and device overlap instead (the sequential trials always do). ``--step-variants`` then
times the population's train step alone for other program shapes (``lax.map`` over members, one ``vmap``, the
convolutions as im2col matmuls), e.g. ``--step-variants 1,all,all:im2col`` on a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import tempfile
import time

import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from _common import registry_step_fn  # noqa: E402

import jax  # noqa: E402

from jaxgluon import data as jdata  # noqa: E402
from jaxgluon import models  # noqa: E402
from jaxgluon.train import Population, TrialSpec, enable_compilation_cache, train_trial  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: ../shared beside the checkout, or shared/ inside it (a copied working tree)
SHARED = next((p for p in (ROOT.parent / "shared" / "data" / "cifar10_test_1k",
                           ROOT / "shared" / "data" / "cifar10_test_1k") if p.is_dir()), None)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def vmap_arg(value: str) -> int | str:
    return value if value == "auto" else int(value)


def breakdown_line(name: str, wall: float, parts: dict[str, float]) -> str:
    """``name: wall s = part s (share) + ...``, ``other`` being the wall time no part accounts for."""
    parts = {**parts, "other": wall - sum(parts.values())}
    return f"{name} wall {wall:.1f} s = " + ", ".join(f"{k} {v:.2f} s ({100 * v / max(wall, 1e-9):.0f}%)"
                                                   for k, v in parts.items())


def run_population(args, spec, cfgs, seeds, work) -> dict:
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    pop = Population(spec, cfgs[0], max_epochs=args.epochs, capacity=len(cfgs), shared_batches=args.shared_batches,
                     vmap_members=vmap_arg(args.vmap_members), blocking_timings=not args.overlap,
                     conv_lowering=args.conv_lowering)
    build_s = time.perf_counter() - wall0
    for i, (cfg, s) in enumerate(zip(cfgs, seeds)):
        pop.add(i, cfg, work / "pop" / str(i), seed=s)
    add_s = time.perf_counter() - wall0 - build_s
    results: dict[int, list[dict]] = {i: [] for i in range(len(cfgs))}
    for _ in range(args.epochs):
        for trial_id, result in pop.run_epoch():
            if isinstance(result, str):
                raise RuntimeError(f"member {trial_id} failed: {result}")
            results[trial_id].append(result)
    pop.close()
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    t = pop.timings.seconds
    # checkpoints are written in a background thread while the next epoch trains: only the foreground part (one
    # copy of the state to the host) and the waits for the writer count in the wall-time breakdown
    parts = {"build+compile": t["build"], "add members (refill)": t["add"], "batch assembly": t["assemble"],
             "host->device": t["transfer"], "steps": t["step"], "eval": t["eval"],
             "checkpoint (foreground + waits)": t["checkpoint_wait"]}
    print(breakdown_line("population", wall, parts) + f"; background checkpoint writing {t['checkpoint']:.2f} s "
          f"(blocking timings: {pop.blocking_timings})", flush=True)
    auto = None
    if args.check_auto:  # after the timing: what population_size='auto' picks from the device's free memory now
        t0 = time.perf_counter()
        auto = pop.auto_capacity()
        print(f"population_size='auto' would choose {auto} members here ({time.perf_counter() - t0:.1f} s)",
              flush=True)
    images = pop.steps_per_epoch * pop.batch_size * len(cfgs) * args.epochs
    train_ips = float(np.median([r["population_images_per_sec"] for r in results[0]]))
    print(f"population: {wall:.1f} s wall ({build_s:.1f} s build + compile, {add_s:.1f} s adding members), "
          f"{cpu:.1f} s CPU; {images / wall:.1f} img/s end to end, {train_ips:.1f} img/s training; "
          f"vmap_members={pop.vmap_members}, compute {np.dtype(pop.dtype).name}",
          flush=True)
    return {"wall": wall, "cpu": cpu, "images": images, "train_ips": train_ips, "results": results,
            "images_per_member_epoch": pop.steps_per_epoch * pop.batch_size, "auto": auto,
            "breakdown": {k: round(v, 3) for k, v in parts.items()}, "vmap_members": pop.vmap_members}


def run_sequential(args, spec, cfgs, seeds, work, images_per_member_epoch: int) -> dict:
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    results: list[list[dict]] = []
    train_images, train_seconds = 0.0, 0.0
    parts = dict.fromkeys(("setup (build+compile)", "first step", "batch assembly", "host->device", "steps",
                           "eval", "checkpoint"), 0.0)
    for i, (cfg, s) in enumerate(zip(cfgs, seeds)):
        t0 = time.perf_counter()
        reporter = Reporter(work / "seq" / str(i), seed=s, max_epochs=args.epochs)
        train_trial(cfg, reporter, spec)
        results.append(reporter.results)
        for r in reporter.results:
            train_images += images_per_member_epoch
            train_seconds += images_per_member_epoch / r["images_per_sec"]
            first = r.get("first_step_seconds") or 0.0
            parts["setup (build+compile)"] += r.get("setup_seconds", 0.0)
            parts["first step"] += first
            parts["batch assembly"] += r["input_seconds"]
            parts["host->device"] += r["transfer_seconds"]
            parts["steps"] += r["train_seconds"] - r["input_seconds"] - r["transfer_seconds"] - first
            parts["eval"] += r["eval_seconds"]
            parts["checkpoint"] += r["checkpoint_seconds"]
        print(f"  sequential trial {i}: {time.perf_counter() - t0:.1f} s, "
              f"rewards {[round(r['reward'], 3) for r in reporter.results]}", flush=True)
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    images = images_per_member_epoch * len(cfgs) * args.epochs
    print(f"sequential: {wall:.1f} s wall, {cpu:.1f} s CPU; {images / wall:.1f} img/s end to end, "
          f"{train_images / train_seconds:.1f} img/s training", flush=True)
    print(breakdown_line("sequential", wall, parts) + " (steps not blocked: asynchronous dispatch, so waiting for "
          "the device shows in 'steps' and 'eval')", flush=True)
    return {"wall": wall, "cpu": cpu, "images": images, "train_ips": train_images / train_seconds,
            "results": results, "breakdown": {k: round(v, 3) for k, v in parts.items()}}


def time_step_variants(args, spec: TrialSpec, cfg: dict, k: int) -> list[dict]:
    """The population's train step alone, blocked, on one device batch of zeros, per ``--step-variants`` entry:
    compile seconds and the median step's img/s over ``STEP_REPEATS`` steps (after two warm-up steps)."""
    out = []
    for variant in filter(None, args.step_variants.split(",")):
        members, _, lowering = variant.partition(":")
        t0 = time.perf_counter()
        pop = Population(spec, cfg, max_epochs=1, capacity=k, shared_batches=args.shared_batches,
                         vmap_members=k if members == "all" else int(members), conv_lowering=lowering or "auto")
        compile_s = time.perf_counter() - t0
        lead = () if pop.shared_batches else (k,)
        b, size = pop.batch_size, pop.image_size
        batch = jax.device_put({"image": np.zeros(lead + (b, size, size, 3), np.float32),
                                "label": np.zeros(lead + (b,), np.int32), "mask": np.ones(lead + (b,), bool)})
        times = []
        for i in range(STEP_REPEATS + 2):
            t1 = time.perf_counter()
            pop.state, metrics = pop._train(pop.state, batch)
            jax.block_until_ready(metrics)
            if i >= 2:
                times.append(time.perf_counter() - t1)
        pop.close()
        step_s = float(np.median(times))
        row = {"variant": variant, "compile_s": round(compile_s, 2), "step_s": round(step_s, 5),
               "img_s": round(k * b / step_s, 1)}
        print(f"  step variant {variant}: {row['img_s']:.0f} img/s ({step_s * 1e3:.1f} ms per step of {k} x {b} "
              f"images; build + compile {compile_s:.1f} s)", flush=True)
        out.append(row)
    return out


STEP_REPEATS = 10
CEILING_ROUNDS = 5


def time_ceiling(args, spec: TrialSpec, num_classes: int) -> dict:
    """The most any population program could gain in training steps on this device: the ordinary trial's compiled
    train step on ONE model at batch B and at batch K*B (synthetic batches, timed windows interleaved, median of
    ``CEILING_ROUNDS``). K members of batch B do the same arithmetic on the same layer shapes as the K*B batch, but
    with K sets of weights; one set makes every layer one large convolution, the best case for any way of batching
    the members. So ``img/s(K*B) / img/s(B)`` bounds the population's training-step ratio. Also measured: the
    device's float32 matmul rate (the best a dense kernel reaches here) and the train step's model FLOPs
    (``models.flops``), giving each step's achieved FLOP rate as a fraction of it."""
    import jax.numpy as jnp

    from jaxgluon.models.flops import model_flops
    from jaxgluon.models.registry import abstract_model

    dtype = jnp.bfloat16 if spec.use_mixed_precision() else None
    shapes = abstract_model(args.net, num_classes)

    def make_step(batch: int):
        step = registry_step_fn(args.net, num_classes, args.image_size, batch, dtype)[0]
        return step, model_flops(shapes, (batch, args.image_size, args.image_size, 3)).train_step

    small, big = args.batch_size, args.batch_size * args.members
    cases = {b: make_step(b) for b in (small, big)}
    rates: dict[int, list[float]] = {b: [] for b in cases}
    for _ in range(CEILING_ROUNDS):
        for b, (step, _) in cases.items():
            n = max(2, 4 * big // b)
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            rates[b].append(n * b / (time.perf_counter() - t0))
    n_mm = 2048
    a = jnp.ones((n_mm, n_mm), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    mm_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        matmul(a).block_until_ready()
        mm_times.append(time.perf_counter() - t0)
    peak = 2 * n_mm ** 3 / min(mm_times)
    ips = {b: float(np.median(r)) for b, r in rates.items()}
    out = {"batch": small, "batch_k": big, "img_s_batch": round(ips[small], 1), "img_s_batch_k": round(ips[big], 1),
           "ratio": round(ips[big] / ips[small], 3), "matmul_gflop_s": round(peak / 1e9, 1),
           "train_gflop_per_image": round(cases[small][1] / small / 1e9, 4)}
    for b, key in ((small, "fraction_of_matmul_batch"), (big, "fraction_of_matmul_batch_k")):
        out[key] = round(ips[b] * cases[b][1] / b / peak, 3)
    print(f"ceiling: one {args.net} step at batch {big} runs {out['ratio']:.2f}x the images/s of batch {small} "
          f"({ips[big]:.1f} vs {ips[small]:.1f} img/s; {out['fraction_of_matmul_batch_k']:.0%} vs "
          f"{out['fraction_of_matmul_batch']:.0%} of this device's {out['matmul_gflop_s']:.0f} GFLOP/s float32 "
          f"matmul rate): no population of {args.members} members at batch {small} can exceed that ratio in "
          f"training steps here", flush=True)
    return out


def warm_up(spec: TrialSpec, net: str) -> None:
    """Fills the per-process caches either run would otherwise fill for the other: decoded images, the
    architecture's jitted initializer."""
    train_src, val_src = spec.sources()
    info = models.model_info(net)
    for src, train in ((train_src, True), (val_src, False)):
        loader = jdata.make_loader(src, batch_size=spec.batch_size, image_size=spec.image_size, mean=info["mean"],
                                   std=info["std"], train=train, seed=0, augment=spec.augment, cache=spec.cache)
        next(iter(loader))
    models.get_model(net, len(train_src.class_names), pretrained=False, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", "--k", type=int, default=8, help="K: population members (= sequential configs)")
    parser.add_argument("--sequential-trials", type=int, default=None,
                        help="train only the first M configs sequentially (default: all K)")
    parser.add_argument("--net", default="cifar_resnet20_v1")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", default=str(SHARED) if SHARED else "digits")
    parser.add_argument("--shared-batches", action="store_true", help="members train on the same batches")
    parser.add_argument("--vmap-members", default="auto",
                        help="members per vmap in the population program ('auto': 1 on CPU, all on GPU)")
    parser.add_argument("--conv-lowering", default="auto", choices=("auto", "xla", "im2col"),
                        help="the population program's convolutions (Population's conv_lowering)")
    parser.add_argument("--overlap", action="store_true",
                        help="do not wait for the device after each population step (faster; the breakdown then "
                             "charges device time to whichever phase waits for it)")
    parser.add_argument("--step-variants", default="",
                        help="after the runs, time the population's train step alone (on one device batch) for "
                             "these comma-separated MEMBERS_PER_VMAP[:LOWERING] variants, e.g. "
                             "'1,all,all:im2col,8:im2col' (1 = lax.map over members, all = one vmap)")
    parser.add_argument("--order", choices=("population-first", "sequential-first"), default="population-first")
    parser.add_argument("--check-auto", action="store_true",
                        help="also print what population_size='auto' chooses from the free device memory")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the ceiling: one model's step at batch B vs K*B (the most a population can gain)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="population_bench_"))
    enable_compilation_cache(work / "jax_cache")
    spec = TrialSpec(train_data=args.data, val_fraction=0.2, image_size=args.image_size, batch_size=args.batch_size,
                     pretrained=False)
    cfgs = configs(args.members, args.net, args.seed)
    seeds = [1000 + i for i in range(args.members)]
    m = args.members if args.sequential_trials is None else max(1, min(args.sequential_trials, args.members))
    device = jax.local_devices()[0]
    load = os.getloadavg()
    print(f"{args.members} x {args.net} at {args.image_size} px, batch {args.batch_size}, {args.epochs} epochs on "
          f"{args.data}; {m} sequential; {device.platform} ({device.device_kind}); vmap_members={args.vmap_members}; "
          f"mixed precision {spec.use_mixed_precision()}; order {args.order}; load average before: {load[0]:.1f}",
          flush=True)
    warm_up(spec, args.net)

    if args.order == "population-first":
        pop = run_population(args, spec, cfgs, seeds, work)
        seq = run_sequential(args, spec, cfgs[:m], seeds[:m], work, pop["images_per_member_epoch"])
    else:
        per = jdata.steps_per_epoch(int(len(spec.sources()[0])), args.batch_size) * args.batch_size
        seq = run_sequential(args, spec, cfgs[:m], seeds[:m], work, per)
        pop = run_population(args, spec, cfgs, seeds, work)

    variants = time_step_variants(args, spec, cfgs[0], args.members) if args.step_variants else []
    ceiling = None if args.no_ceiling else time_ceiling(args, spec, len(spec.sources()[0].class_names))
    pairs = [(a, b) for i in range(m) for a, b in zip(pop["results"][i], seq["results"][i])]
    loss_diff = max(abs(a["train_loss"] - b["train_loss"]) / max(abs(b["train_loss"]), 1e-9) for a, b in pairs)
    acc_diff = max(abs(a["val_top1"] - b["val_top1"]) for a, b in pairs)
    identical = all(a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
                    and a["val_top1"] == b["val_top1"] for a, b in pairs)
    pop_e2e, seq_e2e = pop["images"] / pop["wall"], seq["images"] / seq["wall"]
    ratio_e2e, ratio_train = pop_e2e / seq_e2e, pop["train_ips"] / seq["train_ips"]
    ratio_cpu = (seq["cpu"] / seq["images"]) / (pop["cpu"] / pop["images"])   # CPU seconds per image
    print(f"population / sequential: {ratio_e2e:.2f}x end to end, {ratio_train:.2f}x training steps, "
          f"{ratio_cpu:.2f}x in CPU seconds per image; largest per-epoch difference: train loss {loss_diff:.2e} "
          f"(relative), val accuracy {acc_diff:.4f}; bit-identical curves: {identical}")
    print(json.dumps({"members": args.members, "sequential_trials": m, "net": args.net,
                      "image_size": args.image_size, "batch_size": args.batch_size, "epochs": args.epochs,
                      "data": args.data, "platform": device.platform, "device_kind": device.device_kind,
                      "mixed_precision": spec.use_mixed_precision(), "shared_batches": args.shared_batches,
                      "vmap_members": args.vmap_members, "order": args.order, "auto_capacity": pop["auto"],
                      "load_avg_before": round(load[0], 2), "load_avg_after": round(os.getloadavg()[0], 2),
                      "population_wall_s": round(pop["wall"], 2), "sequential_wall_s": round(seq["wall"], 2),
                      "population_cpu_s": round(pop["cpu"], 2), "sequential_cpu_s": round(seq["cpu"], 2),
                      "population_img_s_end_to_end": round(pop_e2e, 1),
                      "sequential_img_s_end_to_end": round(seq_e2e, 1),
                      "population_img_s_training": round(pop["train_ips"], 1),
                      "sequential_img_s_training": round(seq["train_ips"], 1),
                      "ratio_end_to_end": round(ratio_e2e, 3), "ratio_training": round(ratio_train, 3),
                      "ratio_cpu_per_image": round(ratio_cpu, 3),
                      "max_rel_train_loss_diff": float(f"{loss_diff:.3e}"), "max_val_acc_diff": round(acc_diff, 4),
                      "bit_identical": identical, "blocking_timings": not args.overlap,
                      "conv_lowering": args.conv_lowering, "population_vmap_members": pop["vmap_members"],
                      "population_breakdown_s": pop["breakdown"], "sequential_breakdown_s": seq["breakdown"],
                      "step_variants": variants, "ceiling": ceiling,
                      "ratio_training_of_ceiling":
                          None if ceiling is None else round(ratio_train / ceiling["ratio"], 3)}))


if __name__ == "__main__":
    main()
