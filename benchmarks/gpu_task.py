"""The default ``task.fit`` end to end, cold then warm: is the search bound by the accelerator, or by overhead?

    python benchmarks/gpu_task.py --data /path/to/train_folder --test-data /path/to/test_folder   # on a GPU
    python benchmarks/gpu_task.py --data digits --net cifar_resnet20_v1 --image-size 32 --epochs 2 --num-trials 4
    python benchmarks/gpu_task.py --data ../shared/data/hymenoptera/train --test-data ../shared/data/hymenoptera/val \\
        --net efficientnet_lite0 --image-size 224 --epochs 1 --num-trials 3 --time-limits 900    # a 224 px CPU run

A child process (fresh: a new, empty ``$JAXGLUON_HOME``, so no persistent compilation cache and no converted
weights) runs ``fit`` twice on the class-folder dataset: cold (its first fit) and warm (a second fit in the same
process: a notebook user's second call). For each it reports

- ``first_report_s``: from the ``fit`` call to the first trial's first reported epoch;
- ``trials``; ``overhead_s`` per trial: its wall time minus its epochs' train + validation loop time (median
  over the trials after the first, and the first's), i.e. building the net, loading weights, compiling,
  the linear probe, checkpoint waits;
- ``step_fraction``: the share of the fit's wall time spent in the train and validation loops;
- ``compilations`` of the first trial and the most of any later trial;
- ``loop_img_s``: training images per second inside the epochs (median of the trials' ``images_per_sec``);
- test top-1 of the returned model (``--test-data``).

After the warm fit it measures, for the best trial's network, ``loader_img_s`` (the train loader alone, an epoch
after the first, decoded images cached) and ``step_img_s`` (the compiled train step alone on a batch already on
the devices): the loader keeps up when ``loader_img_s >= step_img_s``. Defaults: 224 px, ``time_limits=150``,
fit's own defaults for everything else (the default search, nets whose weights load). The output ends with one
JSON line. On a GPU the whole run takes under 8 minutes on a ~200-image folder; `--time-limits 60` checks that a
60-second fit returns a model.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import median_step_seconds  # first: puts this checkout's jaxgluon first on sys.path


def _first_report_wall(out: str) -> float | None:
    """Wall-clock time (``time.time()``) of the experiment's first reported epoch, read from its journal."""
    import glob
    for path in glob.glob(os.path.join(out, "**", "journal.jsonl"), recursive=True):
        wall_start = None
        with open(path) as f:
            for line in f:
                event = json.loads(line)
                if event["event"] == "session" and wall_start is None:
                    wall_start = event["wall_start"] - event.get("t0", 0.0)
                elif event["event"] == "result" and wall_start is not None:
                    return wall_start + event["t"]
    return None


# what a trial's first report says about where its time went before and during its first epoch
_PHASES = ("setup_seconds", "linear_probe_seconds", "probe_eval_seconds", "first_step_seconds", "train_seconds",
           "eval_seconds", "checkpoint_seconds", "compilations", "compile_seconds")


def _fit_once(args: argparse.Namespace, label: str) -> dict:
    from jaxgluon import ImageClassification as task
    from jaxgluon.train.trial import read_probe_record

    dataset = task.Dataset(name=None if os.path.isdir(args.data) else args.data,
                           train_path=args.data if os.path.isdir(args.data) else None)
    kwargs = {k: v for k, v in {"net": args.net, "epochs": args.epochs, "num_trials": args.num_trials}.items()
              if v is not None}
    out = tempfile.mkdtemp(prefix=f"gpu_task_{label}_")
    called = time.time()
    start = time.perf_counter()
    # fit's own defaults, the executor included (worker processes): what a user's call runs
    results = task.fit(dataset, time_limits=args.time_limits, image_size=args.image_size, output_directory=out,
                       verbose=False, **kwargs)
    wall = time.perf_counter() - start
    first_report = _first_report_wall(out)
    trials = sorted(results.trials, key=lambda t: t["trial_id"])
    overheads, loops, compiles, img_s, phases, probes = [], 0.0, [], [], [], []
    for t in trials:
        rs = t.get("results", [])
        if rs:
            phases.append({"trial": t["trial_id"], **{k: round(rs[0][k], 2) for k in _PHASES if k in rs[0]}})
        elif results.experiment_dir:   # why it never reported: its linear-probe record says how far it got
            probe = read_probe_record(os.path.join(results.experiment_dir, "trials", str(t["trial_id"])))
            probes.append({"trial": t["trial_id"], "error": t.get("error"), **(probe or {})})
        if not rs or t.get("end_time_s") is None:
            continue
        loop = sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in rs)
        overheads.append(t["end_time_s"] - t["start_time_s"] - loop)
        loops += loop
        compiles.append(max(r.get("compilations", 0) for r in rs))
        img_s += [r["images_per_sec"] for r in rs if "images_per_sec" in r]
    figures = {
        "first_report_s": round(first_report - called, 2) if first_report else None, "fit_s": round(wall, 2),
        "overrun_s": round(wall - args.time_limits, 2),
        "trials": len(trials), "trials_reported": len(phases),
        "first_trial_overhead_s": round(overheads[0], 3) if overheads else None,
        "median_overhead_after_first_s": round(statistics.median(overheads[1:]), 3) if len(overheads) > 1 else None,
        "step_fraction": round(loops / wall, 3),
        "first_trial_compilations": compiles[0] if compiles else None,
        "later_trial_compilations_max": max(compiles[1:]) if len(compiles) > 1 else None,
        "loop_img_s": round(statistics.median(img_s), 1) if img_s else None,
        "net": results.metadata["net"], "image_size": results.metadata["image_size"],
        "final_model": results.metadata.get("final_model"),
        "left_out": list(results.metadata.get("default_nets_left_out", {})),
        "first_reports": phases[:3], "unreported_trials": probes[:3],
    }
    if args.test_data or args.data == "digits":
        test = (task.Dataset(name="digits", train=False) if args.data == "digits"
                else task.Dataset(test_path=args.test_data))
        figures["test_top1"] = round(float(results.evaluate(test)), 4)
    print(f"[{label}] " + json.dumps(figures), file=sys.stderr, flush=True)   # seen even if a later phase hangs
    return {"figures": figures, "results": results, "best": trials and results.config}


def _loader_and_step(args: argparse.Namespace, results) -> dict:
    """Train-loader images/s (cached, second epoch) and the compiled train step's images/s for the best net."""
    import jax
    import jaxgluon.data as jdata
    from jaxgluon import models
    from jaxgluon.train.optim import TrialConfig, optimizer_from_trial
    from jaxgluon.train.state import create_train_state
    from jaxgluon.train.steps import PROGRAMS, make_mesh
    from jaxgluon.train.trial import TrialSpec

    # the best network's config (the final model may be the pixel kernel model or an ensemble)
    config = dict(results.config if results.config.get("net") in models.list_models() else
                  min(results.trials, key=lambda t: t["trial_id"])["config"])
    spec = TrialSpec(train_data=args.data,
                     image_size=results.metadata["image_size"], batch_size=results.metadata["batch_size"])
    train_src, _ = spec.sources()
    info = models.model_info(config["net"])
    size = int(spec.image_size or info["input_size"])
    batch = int(config.get("batch_size") or spec.batch_size)
    mesh = make_mesh()
    loader = jdata.make_loader(train_src, batch_size=batch, image_size=size, mean=info["mean"], std=info["std"],
                               train=True, num_epochs=2)
    it = iter(loader)
    for _ in range(loader.steps_per_epoch):   # epoch 1 (decodes, or reads the cache fit built)
        first = next(it)
    t = time.perf_counter()
    n = 0
    for _ in range(loader.steps_per_epoch):
        n += len(next(it)["label"])
    loader_img_s = n / (time.perf_counter() - t)
    steps = PROGRAMS.steps(mesh)
    trial = TrialConfig.from_dict(config)
    dtype = jax.numpy.bfloat16 if spec.use_mixed_precision() else jax.numpy.float32
    model = models.get_model(trial.net, len(train_src.class_names), pretrained=False, dtype=dtype)
    state = steps.replicate(create_train_state(model, optimizer_from_trial(trial, 100, 10)))
    step_s, _ = median_step_seconds(steps.train_step, state, steps.shard(first), 5)
    return {"loader_img_s": round(loader_img_s, 1), "step_img_s": round(batch / step_s, 1)}


def child(args: argparse.Namespace) -> dict:
    import jax
    from jaxgluon.tune.process_pool import configure_logging_from_env
    configure_logging_from_env()   # JAXGLUON_LOG_LEVEL=INFO: the fit's and its workers' start-up timelines
    cold = _fit_once(args, "cold")
    if args.cold_only:
        return {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "cold": cold["figures"]}
    warm = _fit_once(args, "warm")
    speeds = _loader_and_step(args, warm["results"])
    return {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "cold": cold["figures"],
            "warm": warm["figures"], **speeds,
            "loader_keeps_up": speeds["loader_img_s"] >= speeds["step_img_s"]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="a class-per-subfolder training folder (or 'digits')")
    p.add_argument("--test-data", default=None, help="a class-per-subfolder test folder")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--time-limits", type=float, default=150.0, help="per fit (two fits: under 8 min in all)")
    p.add_argument("--net", default=None, help="default: fit's default search")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--num-trials", type=int, default=None)
    p.add_argument("--cold-only", action="store_true", help="only the cold fit (e.g. to compare XLA_FLAGS)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return {}
    env = dict(os.environ)
    env["JAXGLUON_HOME"] = tempfile.mkdtemp(prefix="gpu_task_home_")   # cold: empty caches
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                         env.get("PYTHONPATH", "")])
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *(argv if argv is not None else sys.argv[1:])]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the benchmark's child process failed (exit {proc.returncode})")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["total_s"] = round(time.perf_counter() - start, 1)
    figures["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    for phase in [p for p in ("cold", "warm") if p in figures]:
        f = figures[phase]
        print(f"{phase}: first report {f['first_report_s']} s, {f['trials']} trials, overhead first "
              f"{f['first_trial_overhead_s']} s / later median {f['median_overhead_after_first_s']} s, "
              f"{100 * f['step_fraction']:.0f}% of the fit in train+eval loops, compilations first "
              f"{f['first_trial_compilations']} / later max {f['later_trial_compilations_max']}, "
              f"test top-1 {f.get('test_top1')}")
    if "loader_img_s" in figures:
        print(f"loader {figures['loader_img_s']} img/s vs train step {figures['step_img_s']} img/s "
              f"(ratio {figures['loader_img_s'] / figures['step_img_s']:.2f})")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
