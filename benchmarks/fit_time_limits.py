"""Does ``task.fit(time_limits=T)`` return within T, counted from the call? And what does the final restore cost?

For each dataset and T it runs the default ``task.fit`` (CIFAR-10 weights from ``../shared`` when present) in a
fresh process (imports, worker spawn and compilation as a user's first fit sees them), and reports the wall-clock
time from the call to the returned model (the ``Dataset(...)`` construction, which scans a folder, comes before
the call and is reported apart), the overrun past T (``metadata['overrun_s']``), the model served and the final
restore's own seconds. Datasets: the built-in digits and the shared folders (``--data``; a folder's ``train``
subfolder when it has one, else the folder itself). The peer is the former final restore measured
in the same run: a template built by ``get_model(..., pretrained=False)`` (random initialisers, compiled on first
use) instead of the abstract template ``load_trained`` uses now; both restore the fit's best checkpoint, each in a
fresh process (as after a fit whose trials ran in worker processes).

    PYTHONPATH=. python benchmarks/fit_time_limits.py                    # digits, T = 15, 30 and 60 s
    PYTHONPATH=. python benchmarks/fit_time_limits.py --time-limits 15 30
    PYTHONPATH=. python benchmarks/fit_time_limits.py --time-limits 15 30 --no-restore-peer \
        --data digits hymenoptera flowers5 imagenette_small cifar10_test_1k

The output ends with one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import optax

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
from jaxgluon import ImageClassification as task
from jaxgluon import models
from jaxgluon.train import load_trained
from jaxgluon.train.checkpoint import TrialCheckpointer
from jaxgluon.train.state import create_train_state

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = REPO.parent / "shared" / "weights" / "cifar10_resnet"
SHARED_DATA = REPO.parent / "shared" / "data"


def former_restore(trial_dir: pathlib.Path) -> float:
    """Seconds of the restore before issue 18: a randomly initialised template, then the checkpoint."""
    start = time.perf_counter()
    with TrialCheckpointer(trial_dir / "checkpoints", read_only=True) as ckpt:
        epoch = ckpt.best_epoch()
        meta = ckpt.restore_meta(epoch)
        model = models.get_model(meta["net"], int(meta["num_classes"]), pretrained=False)
        template = create_train_state(model, optax.identity())
        variables = ckpt.restore_variables(epoch, template.variables())
        template.replace_variables(variables)
    return time.perf_counter() - start


def cold_restore(trial_dir: pathlib.Path, which: str) -> float:
    """Seconds of one restore in a fresh process (nothing compiled yet, as after a fit in worker processes)."""
    out = subprocess.run([sys.executable, __file__, "--restore", which, str(trial_dir)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return float(out.stdout.strip().splitlines()[-1])


def make_dataset(name: str) -> object:
    """The built-in digits, or a shared folder's training images (its ``train`` subfolder when it has one)."""
    if name == "digits":
        return task.Dataset(name="digits")
    folder = SHARED_DATA / name
    return task.Dataset(name=name, train_path=str(folder / "train" if (folder / "train").is_dir() else folder))


def one_fit(name: str, limit: float, restore_peer: bool) -> dict:
    """One default fit on ``name`` with ``time_limits=limit`` in this process; its figures."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="fit_time_limits_"))
    scan_start = time.perf_counter()
    dataset = make_dataset(name)
    scan = time.perf_counter() - scan_start
    start = time.perf_counter()
    try:
        results = task.fit(dataset, time_limits=limit, output_directory=out / "exp", verbose=False)
    except RuntimeError as err:   # no model within the budget: the time it took to say so still counts
        wall = time.perf_counter() - start
        return {"data": name, "time_limits": limit, "wall_s": round(wall, 2), "overrun_s": round(wall - limit, 2),
                "dataset_s": round(scan, 2), "final_model": None, "error": str(err).split(". Trials")[0]}
    wall = time.perf_counter() - start
    meta = results.metadata
    run = {"data": name, "time_limits": limit, "wall_s": round(wall, 2), "overrun_s": round(wall - limit, 2),
           "metadata_overrun_s": round(meta["overrun_s"], 2), "dataset_s": round(scan, 2),
           "final_restore_s": round(meta["final_restore_seconds"], 2), "final_model": meta["final_model"],
           "search_ended_s": round(meta["search_ended_s"], 2), "final_stage_s": round(meta["final_stage_seconds"], 2),
           "net": meta["net"], "val_top1": results.reward, "trials": len(results.trials)}
    if restore_peer and meta["best_trial_id"] is not None:
        trial_dir = out / "exp" / "trials" / str(meta["best_trial_id"])
        new, old = cold_restore(trial_dir, "now"), cold_restore(trial_dir, "former")
        run.update(restore_now_s=round(new, 2), restore_former_s=round(old, 2),
                   former_over_now=round(old / max(new, 1e-9), 1))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-limits", type=float, nargs="+", default=[15.0, 30.0, 60.0])
    parser.add_argument("--data", nargs="+", default=["digits"],
                        help="'digits' and/or shared folder names (hymenoptera flowers5 imagenette_small "
                             "cifar10_test_1k)")
    parser.add_argument("--restore-peer", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the restore now vs the former restore, each in a fresh process")
    parser.add_argument("--restore", nargs=2, metavar=("now|former", "TRIAL_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--one", nargs=2, metavar=("DATA", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore:
        which, trial_dir = args.restore[0], pathlib.Path(args.restore[1])
        if which == "former":
            print(former_restore(trial_dir))
        else:
            start = time.perf_counter()
            load_trained(trial_dir)
            print(time.perf_counter() - start)
        return
    if SHARED_WEIGHTS.is_dir():
        os.environ.setdefault("JAXGLUON_WEIGHTS_PATH", str(SHARED_WEIGHTS))
    if args.one:
        print(json.dumps(one_fit(args.one[0], float(args.one[1]), args.restore_peer)))
        return
    runs = []
    for name in args.data:
        for limit in args.time_limits:
            load = os.getloadavg()[0]
            cmd = [sys.executable, __file__, "--one", name, str(limit),
                   "--restore-peer" if args.restore_peer else "--no-restore-peer"]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            if out.returncode != 0:
                print(f"{name} T={limit:.0f}s: the process failed ({out.returncode}): {out.stderr[-2000:]}")
                runs.append({"data": name, "time_limits": limit, "final_model": None, "failed": out.returncode})
                continue
            run = json.loads(out.stdout.strip().splitlines()[-1])
            run["load_before"] = round(load, 1)
            runs.append(run)
            if run["final_model"] is None:
                print(f"{name} T={limit:.0f}s: no model; raised after {run['wall_s']:.1f} s "
                      f"(overrun {run['overrun_s']:+.1f} s): {run['error']}")
                continue
            peer = ("" if "restore_now_s" not in run else
                    f"; restore in a fresh process: now {run['restore_now_s']:.2f} s vs former "
                    f"{run['restore_former_s']:.2f} s ({run['former_over_now']:.1f}x)")
            print(f"{name} T={limit:.0f}s (load {load:.1f}): returned {run['final_model']} after {run['wall_s']:.1f} s "
                  f"(overrun {run['overrun_s']:+.1f} s, metadata {run['metadata_overrun_s']:.1f} s; Dataset() "
                  f"before the call {run['dataset_s']:.1f} s); search ended at {run['search_ended_s']:.2f} s, "
                  f"final restore {run['final_restore_s']:.2f} s, final stage {run['final_stage_s']:.2f} s{peer}")
    worst = max((r["overrun_s"] for r in runs if "overrun_s" in r), default=None)
    print(json.dumps({"benchmark": "fit_time_limits", "load": os.getloadavg()[0], "worst_overrun_s": worst,
                      "runs": runs}))


if __name__ == "__main__":
    main()
