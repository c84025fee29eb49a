"""Task quality: the tutorial flow (default search) vs one fixed config, same time budget, test top-1.

Per dataset it runs, in this order and each with ``time_limits`` seconds:

- **searched**: ``task.fit(task.Dataset(train_path=...), time_limits=T)`` with every other argument left at its
  default (nets, optimizers, image size, epochs from ``jaxgluon.task.defaults``), then
  ``task.evaluate(task.Dataset(test_path=...))``;
- **fixed**: the default net at the default image size, SGD lr 1e-3 (the centre of the default SGD range) momentum
  0.9 wd 1e-4, cosine schedule, the default fine-tuning recipe (linear-probe head, frozen BatchNorm), one
  trial (no search) whose epochs fill the same budget (``defaults.budget_epochs``).

Datasets (``../shared/data``): ``flowers5`` (train / test) and ``hymenoptera`` (train / val as the test split).

    python benchmarks/task_quality.py                                   # both datasets, 600 s each run (~40 min)
    python benchmarks/task_quality.py --datasets hymenoptera --time-limits 300
    python benchmarks/task_quality.py --quick                           # 60 s smoke run on hymenoptera

The output ends with one JSON line: per dataset the test top-1 of the searched and the fixed model, their ratio,
the time each fit used, and the best config.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time

import jax

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
import jaxgluon as ag
from jaxgluon import ImageClassification as task
from jaxgluon.task import defaults as task_defaults

DATASETS = {"flowers5": ("train", "test"), "hymenoptera": ("train", "val")}
SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def fixed_optimizer() -> object:
    return ag.optimizer.SGD(learning_rate=1e-3, momentum=0.9, wd=1e-4)


def linear_probe_top1(train_dir: pathlib.Path, test_dir: pathlib.Path, image_size: int) -> float:
    """Peer without fine-tuning: the linear-probe head alone (``jaxgluon.train.linear_probe``: softmax regression on
    frozen ImageNet efficientnet_lite0 features, eval transforms) fitted on the training folder; test top-1."""
    import numpy as np

    from jaxgluon import data as jdata
    from jaxgluon import models
    from jaxgluon.train.linear_probe import fit_linear_head, pooled_features

    train, test = jdata.open_source(str(train_dir)), jdata.open_source(str(test_dir))
    net = models.get_model("efficientnet_lite0", len(train.class_names), pretrained=True)
    info = models.model_info("efficientnet_lite0")

    def features(source):
        return pooled_features(net, jdata.make_loader(source, batch_size=32, image_size=image_size,
                                                      mean=info["mean"], std=info["std"], train=False))

    kernel, bias = fit_linear_head(*features(train), len(train.class_names))
    x_test, y_test = features(test)
    return float(np.mean(np.argmax(x_test @ kernel + bias, axis=1) == y_test))


def run_dataset(name: str, data_root: pathlib.Path, time_limits: float, out: pathlib.Path, verbose: bool,
                probe_size: int | None = None) -> dict:
    train_dir, test_dir = (data_root / name / split for split in DATASETS[name])
    dataset = task.Dataset(name=name, train_path=str(train_dir))
    test = task.Dataset(name=name, test_path=str(test_dir))
    row: dict = {"dataset": name, "train_images": len(dataset), "test_images": len(test.test_source),
                 "time_limits": time_limits}

    searched = task.fit(dataset, time_limits=time_limits, output_directory=out / name / "searched", verbose=verbose)
    row["searched_top1"] = round(task.evaluate(test), 4)
    meta = searched.metadata
    row.update(searched_val_top1=round(searched.reward, 4), searched_time_s=round(meta["time_used_s"], 1),
               searched_trials=meta["num_trials_completed"], searched_epochs=meta["epochs"],
               image_size=meta["image_size"], best_config=searched.config, pretrained=meta["pretrained"])
    print("searched: " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    d = task_defaults.fit_defaults(dataset.train_source, time_limits=time_limits)
    net = d.net if isinstance(d.net, str) else d.net.choices[0]
    fixed_epochs = task_defaults.budget_epochs(len(dataset.train_source), d.image_size, time_limits, num_trials=1)
    fixed = task.fit(dataset, net=net, optimizer=fixed_optimizer(), lr_scheduler="cosine", num_trials=1,
                     epochs=fixed_epochs, image_size=d.image_size, time_limits=time_limits,
                     output_directory=out / name / "fixed", verbose=verbose)
    row["fixed_top1"] = round(task.evaluate(test), 4)
    row.update(fixed_val_top1=round(fixed.reward, 4), fixed_time_s=round(fixed.metadata["time_used_s"], 1),
               fixed_epochs=fixed_epochs,
               fixed_epochs_done=max((t.get("num_epochs", 0) for t in fixed.trials), default=0),
               fixed_config=f"{net} {d.image_size}px SGD lr 1e-3 m 0.9 wd 1e-4 cosine")
    row["ratio_searched_vs_fixed"] = round(row["searched_top1"] / max(row["fixed_top1"], 1e-9), 3)
    if probe_size:
        t = time.perf_counter()
        row[f"linear_probe_{probe_size}px_top1"] = round(linear_probe_top1(train_dir, test_dir, probe_size), 4)
        row["linear_probe_s"] = round(time.perf_counter() - t, 1)
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="flowers5,hymenoptera", help="comma-separated: " + ",".join(DATASETS))
    p.add_argument("--time-limits", type=float, default=600.0, help="seconds for each fit (searched and fixed)")
    p.add_argument("--quick", action="store_true", help="smoke run: hymenoptera only, 60 s per fit")
    p.add_argument("--data-root", default=str(SHARED_DATA), help="folder holding the datasets")
    p.add_argument("--out", default=None, help="experiment folder (default: a temporary one)")
    p.add_argument("--verbose", action="store_true", help="show the progress bars")
    p.add_argument("--linear-probe", type=int, default=None, metavar="PX",
                   help="also report the linear-probe head alone on frozen efficientnet_lite0 features at PX px "
                        "(a peer without fine-tuning; outside the time budget)")
    args = p.parse_args(argv)
    names = ["hymenoptera"] if args.quick else [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown or not names:
        raise ValueError(f"unknown --datasets {unknown or names}; choose from {sorted(DATASETS)}")
    time_limits = 60.0 if args.quick else args.time_limits
    if time_limits <= 0:
        raise ValueError(f"--time-limits must be positive, got {time_limits}")
    data_root = pathlib.Path(args.data_root)
    if not data_root.is_dir():
        raise FileNotFoundError(f"{data_root} not found: pass --data-root=<folder with {'/'.join(DATASETS)}>")
    print(f"jax {jax.__version__} backend={jax.default_backend()} cpus={os.cpu_count()} "
          f"loadavg={os.getloadavg()[0]:.1f} time_limits={time_limits}", flush=True)
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="task_quality_")
    out = pathlib.Path(args.out or tmp.name)
    started = time.perf_counter()
    rows = []
    for name in names:
        row = run_dataset(name, data_root, time_limits, out, args.verbose, args.linear_probe)
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    summary = {"time_limits": time_limits, "total_s": round(time.perf_counter() - started, 1),
               "loadavg_end": round(os.getloadavg()[0], 1),
               "datasets": {r["dataset"]: {k: r[k] for k in ("searched_top1", "fixed_top1", "ratio_searched_vs_fixed",
                                                             "searched_time_s", "fixed_time_s", "image_size",
                                                             "best_config")} | {k: v for k, v in r.items()
                                                                                if k.startswith("linear_probe_")}
                            for r in rows}}
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
