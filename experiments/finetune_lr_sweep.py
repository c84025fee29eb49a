"""Fine-tuning learning rates after the linear probe: per-epoch validation top-1 / log-loss for each optimizer.

What set the frozen-BatchNorm ranges of ``jaxgluon.task.defaults.default_optimizers`` (issue 18, session 11): one
trial per optimizer config, the trial function ``fit`` runs (probe, then every layer fine-tuned with BatchNorm
frozen, cosine schedule), on a folder's default validation split.

    python experiments/finetune_lr_sweep.py ../shared/data/flowers5/train --image-size 96 --epochs 3 \
        --configs '{"name": "sgd", "learning_rate": 1e-3}' '{"name": "adam", "learning_rate": 1e-4}'

A config may carry ``warmup_epochs``. The output is one JSON line per config, then one with all of them.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

from jaxgluon.data import open_source
from jaxgluon.task.defaults import default_val_fraction
from jaxgluon.train import LocalReporter, TrialSpec, train_trial


def sweep(folder: str, net: str, image_size: int, epochs: int, configs: list[dict], seed: int = 0,
          pretrained: bool | str = "auto", batch_size: int = 32) -> list[dict]:
    """One trial per optimizer config (a dict with ``name``, ``learning_rate``, ..., optionally
    ``warmup_epochs``); returns, per config, the probe's and each epoch's validation figures."""
    spec = TrialSpec(train_data=folder, val_fraction=default_val_fraction(len(open_source(folder))),
                     split_seed=seed, image_size=image_size, batch_size=batch_size, pretrained=pretrained)
    rows = []
    for optimizer in configs:
        optimizer = dict(optimizer)
        warmup = float(optimizer.pop("warmup_epochs", 0.0))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="lr_sweep_") as checkpoints:   # the figures are all this keeps
            reporter = LocalReporter(pathlib.Path(checkpoints), epochs)
            train_trial({"net": net, "optimizer": optimizer, "lr_scheduler": "cosine", "warmup_epochs": warmup},
                        reporter, spec)
        rows.append({"optimizer": optimizer, "warmup_epochs": warmup,
                     "probe_val_top1": reporter.results[0].get("probe_reward"),
                     "epochs": [{"epoch": r["epoch"], "val_top1": round(r.get("val_top1", r["reward"]), 4),
                                 "val_log_loss": round(r["val_loss"], 4) if r.get("val_loss") is not None else None}
                                for r in reporter.results],
                     "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="training folder, one subfolder per class")
    p.add_argument("--net", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="validation split seed")
    p.add_argument("--configs", nargs="+", required=True, help="optimizer configs as JSON objects")
    args = p.parse_args()
    rows = sweep(args.folder, args.net, args.image_size, args.epochs, [json.loads(c) for c in args.configs],
                 args.seed)
    print(json.dumps({"experiment": "finetune_lr_sweep", "folder": args.folder, "net": args.net,
                      "image_size": args.image_size, "epochs": args.epochs, "runs": rows}))


if __name__ == "__main__":
    main()
