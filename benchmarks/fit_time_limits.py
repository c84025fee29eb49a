"""Does ``task.fit(time_limits=T)`` return within T, counted from the call? And what does the final restore cost?

For each T it runs the default ``task.fit`` on the built-in digits (CIFAR-10 weights from ``../shared`` when
present) in this process, and reports the wall-clock time from the call to the returned model, the overrun past T
(``metadata['overrun_s']``) and the final restore's own seconds. The peer is the former final restore measured
in the same run: a template built by ``get_model(..., pretrained=False)`` (random initialisers, compiled on first
use) instead of the abstract template ``load_trained`` uses now; both restore the fit's best checkpoint, each in a
fresh process (as after a fit whose trials ran in worker processes).

    PYTHONPATH=. python benchmarks/fit_time_limits.py                    # T = 15, 30 and 60 s
    PYTHONPATH=. python benchmarks/fit_time_limits.py --time-limits 15 30

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-limits", type=float, nargs="+", default=[15.0, 30.0, 60.0])
    parser.add_argument("--restore", nargs=2, metavar=("now|former", "TRIAL_DIR"), help=argparse.SUPPRESS)
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
    runs = []
    for limit in args.time_limits:
        out = pathlib.Path(tempfile.mkdtemp(prefix="fit_time_limits_"))
        dataset = task.Dataset(name="digits")
        start = time.perf_counter()
        try:
            results = task.fit(dataset, time_limits=limit, output_directory=out / "exp",
                               verbose=False)
        except RuntimeError as err:   # no model within the budget: the time it took to say so still counts
            wall = time.perf_counter() - start
            print(f"T={limit:.0f}s: no model; raised after {wall:.1f} s (overrun {wall - limit:+.1f} s): "
                  f"{str(err).split('. Trials')[0]}")
            runs.append({"time_limits": limit, "wall_s": round(wall, 2), "overrun_s": round(wall - limit, 2),
                         "final_model": None})
            continue
        wall = time.perf_counter() - start
        meta = results.metadata
        trial_dir = out / "exp" / "trials" / str(meta["best_trial_id"])
        new, old = cold_restore(trial_dir, "now"), cold_restore(trial_dir, "former")
        run = {"time_limits": limit, "wall_s": round(wall, 2), "overrun_s": round(wall - limit, 2),
               "metadata_overrun_s": round(meta["overrun_s"], 2), "final_restore_s": round(meta["final_restore_seconds"], 2),
               "final_model": meta["final_model"], "val_top1": results.reward,
               "restore_now_s": round(new, 2), "restore_former_s": round(old, 2),
               "former_over_now": round(old / max(new, 1e-9), 1)}
        print(f"T={limit:.0f}s: returned after {wall:.1f} s (overrun {wall - limit:+.1f} s, metadata "
              f"{meta['overrun_s']:.1f} s); final restore {meta['final_restore_seconds']:.2f} s in the fit; "
              f"restore in a fresh process: now {new:.2f} s vs former {old:.2f} s ({old / max(new, 1e-9):.1f}x)")
        runs.append(run)
    print(json.dumps({"benchmark": "fit_time_limits", "load": os.getloadavg()[0], "runs": runs}))


if __name__ == "__main__":
    main()
