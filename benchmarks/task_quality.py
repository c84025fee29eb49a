"""Task quality: the default fit vs a fixed config, the linear probe and scikit-learn on pixels, test top-1.

Per dataset, each jaxgluon fit with ``time_limits`` seconds counted from the call:

- **default**: ``task.fit(dataset, time_limits=T)`` with every other argument at its default (nets, optimizers,
  image size, epochs, the kernel model on pixels for small images: ``jaxgluon.task.defaults``; the refit on
  folders whose validation split holds a fifth of the images: ``jaxgluon.task.refit.refit_wanted``), then
  ``task.evaluate(test)``;
- **fixed**: the default net at the default image size, SGD lr 1e-3 (frozen BatchNorm, larger images) or 1e-2
  (small images: the centre of the default SGD ranges) momentum 0.9 wd 1e-4, cosine schedule, the default
  fine-tuning recipe, one trial (no search) whose epochs fill the same budget, no pixel model;
- **probe**: the linear-probe head alone on the default net's frozen pretrained features (eval transforms, the
  default image size; outside the budget; skipped when the weights are not available);
- **ensemble** (``--ensemble``): read from the default fit, whose ``ensemble='auto'`` already builds one (no
  second fit): its status, validation scores and, when it is served, its test top-1;
- **refit** (``--refit``): ``task.fit(dataset, time_limits=T, refit=True, ensemble=False)`` (an ensemble, when
  chosen, would be served instead of the refit);
- **single**: in every fit whose served model is an ensemble or a refit, the test top-1 of that same fit's best
  single trial model (its best checkpoint, the model ``fit`` would serve with neither), so "ensemble or refit
  beats the best single trial" is measured within one search, with the served model's test-time augmentation;
- **refit alone**: in every fit that serves a fine-tuned refit (averaged with the trial model it refits,
  ``jaxgluon.task.final_model.refit_pair``), ``refit_alone_top1`` is the refit's test top-1 by itself;
- **tta**: every fit serves its model with ``tta='auto'`` (``jaxgluon.task.final_model.serve_tta``); when that
  turned it on, ``top1_no_tta`` is the same model's test top-1 without it;
- ``--search-strategy S`` runs the default and refit columns with ``fit(search_strategy=S)`` instead of fit's
  default (recorded in each row);
- **peers**: scikit-learn ``LogisticRegression`` and RBF ``SVC(C=10)`` on the pixels (each image resized whole to
  its median side, at most 32 px, 0-1 scale: what a user tries first), trained on the whole training split.

Datasets (``../shared/data``; test split in brackets): ``hymenoptera`` (val), ``flowers5`` (test),
``imagenette_small`` (val), ``cifar10_test_1k`` (a stratified 20% of the folder, seed 0; the rest trains), and the
built-in ``digits`` (its fixed 80/20 split). Any other name is a folder under ``--data-root`` with ``train/`` and
``test/`` (or ``val/``) class subfolders, e.g. the small-image variants ``benchmarks/small_folders.py`` writes
(datasets the defaults were not chosen on).

    python benchmarks/task_quality.py --time-limits 60                       # every dataset, 60 s per fit
    python benchmarks/task_quality.py --datasets hymenoptera,flowers5 --time-limits 600
    python benchmarks/task_quality.py --datasets digits --time-limits 120 --skip fixed,probe --seeds 0,1,2
    python benchmarks/small_folders.py /tmp/small && python benchmarks/task_quality.py --data-root /tmp/small \
        --datasets cifar_gray28,hymenoptera_24,imagenette_small_32,flowers5_32 --time-limits 120 --skip fixed,probe

The output ends with one JSON line: per dataset each column's test top-1 and wall seconds, the ratio of the
default fit to the fixed config and to the best scikit-learn peer, and the worst overrun past ``time_limits``
over all fits. With ``--out DIR`` that summary is also written to ``DIR/summary.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time
import warnings

import jax
import numpy as np

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path
import jaxgluon as ag
from jaxgluon import ImageClassification as task
from jaxgluon import data as jdata
from jaxgluon.task import defaults as task_defaults
from jaxgluon.task.dataset import ImageDataset

#: dataset -> (train folder, test folder) under the data root; None: built in or split here
DATASETS = {"hymenoptera": ("train", "val"), "flowers5": ("train", "test"), "imagenette_small": ("train", "val"),
            "cifar10_test_1k": None, "digits": None}
COLUMNS = ("default", "fixed", "probe", "sklearn")
SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
SHARED_WEIGHTS = SHARED / "weights" / "cifar10_resnet"
PEER_MAX_SIDE = 32


def datasets_for(name: str, data_root: pathlib.Path, out: pathlib.Path,
                 seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """(training dataset, test dataset) for one benchmark dataset; ``seed`` seeds the validation split."""
    if name == "digits":
        return task.Dataset(name="digits", seed=seed), task.Dataset(name="digits", train=False)
    if DATASETS.get(name, ()) is not None:
        splits = DATASETS.get(name) or folder_splits(data_root / name)
        train, test = (data_root / name / split for split in splits)
        return (task.Dataset(name=name, train_path=str(train), seed=seed),
                task.Dataset(name=name, test_path=str(test)))
    source = jdata.open_source(str(data_root / name))      # one folder: a stratified 80/20 split, written once
    train, test = jdata.stratified_split(source, val_fraction=0.2, seed=0)
    paths = []
    for part, sub in (("train", train), ("test", test)):
        path = out / f"{name}_{part}.npz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            images = np.stack([sub[i]["image"] for i in range(len(sub))])
            labels = np.asarray([sub[i]["label"] for i in range(len(sub))])
            np.savez(path, images=images, labels=labels, class_names=np.asarray(source.class_names))
        paths.append(str(path))
    return ImageDataset(name, paths[0], None, split_seed=seed), ImageDataset(name, None, paths[1])


def folder_splits(folder: pathlib.Path) -> tuple[str, str]:
    """(train, test) subfolder names of a dataset folder that is not one of :data:`DATASETS`: ``train`` and
    ``test`` (or ``val``), each with one subfolder per class."""
    for test in ("test", "val"):
        if (folder / "train").is_dir() and (folder / test).is_dir():
            return "train", test
    raise FileNotFoundError(f"{folder} has no train/ and test/ (or val/) subfolders; a dataset outside "
                            f"{sorted(DATASETS)} needs both, each with one subfolder per class")


def fixed_optimizer(small: bool) -> object:
    return ag.optimizer.SGD(learning_rate=1e-2 if small else 1e-3, momentum=0.9, wd=1e-4)


def _first(net):
    return net if isinstance(net, str) else net.choices[0]


def probe_top1(train: ImageDataset, test: ImageDataset, net: str, image_size: int) -> float | None:
    """The linear-probe head alone (``jaxgluon.train.linear_probe``) on ``net``'s frozen pretrained features."""
    from jaxgluon import models
    from jaxgluon.train.linear_probe import fit_linear_head, pooled_features

    if models.pretrained_unavailable(net) is not None:
        return None
    model = models.get_model(net, train.num_classes, pretrained=True)
    info = models.model_info(net)

    def features(source):
        return pooled_features(model, jdata.make_loader(source, batch_size=32, image_size=image_size,
                                                        mean=info["mean"], std=info["std"], train=False))

    kernel, bias = fit_linear_head(*features(train.train_source), train.num_classes)
    x_test, y_test = features(test.test_source)
    return float(np.mean(np.argmax(x_test @ kernel + bias, axis=1) == y_test))


def sklearn_peers(train: ImageDataset, test: ImageDataset) -> dict:
    """LogisticRegression and RBF SVC(C=10) on pixels (resized whole to the median side, at most 32 px)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from jaxgluon.task.pixel_model import source_features

    side = int(min(PEER_MAX_SIDE, round(task_defaults.median_image_side(train.train_source))))
    t = time.perf_counter()
    x_train, y_train = source_features(train.train_source, side)
    x_test, y_test = source_features(test.test_source, side)
    row = {"peer_side": side, "peer_features_s": round(time.perf_counter() - t, 1)}
    for key, model in (("svc", SVC(C=10)), ("logreg", LogisticRegression(max_iter=1000))):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x_train, y_train)
        row[f"{key}_top1"] = round(float(np.mean(model.predict(x_test) == y_test)), 4)
        row[f"{key}_s"] = round(time.perf_counter() - t, 1)
    return row


def timed_fit(dataset: ImageDataset, test: ImageDataset, time_limits: float, **kwargs) -> dict:
    kwargs.setdefault("seed", dataset.split_seed)
    start = time.perf_counter()
    try:
        results = task.fit(dataset, time_limits=time_limits, **kwargs)
    except Exception as err:  # noqa: BLE001 -- a failed fit is a result of the benchmark, recorded as such
        wall = time.perf_counter() - start
        return {"failed": f"{type(err).__name__}: {str(err)[:300]}", "wall_s": round(wall, 1),
                "overrun_s": round(max(0.0, wall - time_limits), 2), "top1": None}
    wall = time.perf_counter() - start
    meta = results.metadata
    row = {"top1": round(task.evaluate(test), 4), "wall_s": round(wall, 1), "overrun_s": round(max(0.0, wall - time_limits), 2),
           "val_top1": round(results.reward, 4), "final_model": meta.get("final_model"),
           "trials": meta.get("num_trials_completed"), "epochs": meta.get("epochs"), "image_size": meta.get("image_size"),
           "net": results.config.get("net"), "budget": meta.get("budget"), "best_trial_id": meta.get("best_trial_id"),
           "best_epoch": meta.get("best_epoch"), "loadavg_after": round(os.getloadavg()[0], 1)}
    for stage in ("ensemble", "refit"):
        if isinstance(meta.get(stage), dict):
            row[stage] = {k: v for k, v in meta[stage].items() if k in ("status", "reason", "val_top1", "val_loss",
                                                                        "best_member", "members", "epochs", "seconds",
                                                                        "selection", "stopped", "candidates",
                                                                        "stored_predictions", "estimate_s",
                                                                        "setup_seconds", "first_step_seconds",
                                                                        "epoch_seconds", "step_s",
                                                                        "released_for_ensemble")}
    tta = bool((meta.get("tta") or {}).get("enabled"))
    row["tta"] = tta
    if tta:   # the served model without its test-time augmentation: what the augmentation added
        results.model.tta = False
        row["top1_no_tta"] = round(float(results.evaluate(test)), 4)
        results.model.tta = True
    if row["final_model"] == "refit" and hasattr(results.model, "members"):
        row.update(refit_pair_members(results.model, test))
    else:
        row["single_top1"] = (single_top1(results, test, tta) if row["final_model"] in ("ensemble", "refit")
                              else row["top1"])     # a linear-probe refit is served alone
    return row


def refit_pair_members(pair, test: ImageDataset) -> dict:
    """Test top-1 and log-loss of a served refit pair's members alone (``jaxgluon.task.final_model.refit_pair``):
    the refit (``refit_alone_*``) and the best trial's model it is averaged with (``single_*``: the best single
    trial), with the pair's test-time augmentation, from one decoding of each test batch."""
    from jaxgluon.task.ensemble import scores
    from jaxgluon.train.trained import predict_source_together

    (refit, labels), (trial, _) = predict_source_together(pair.members, test.test_source)
    row = {}
    for name, probs in (("refit_alone", refit), ("single", trial)):
        top1, loss = scores(probs, labels)
        row[f"{name}_top1"], row[f"{name}_log_loss"] = round(top1, 4), round(loss, 4)
    return row


def single_top1(results, test: ImageDataset, tta: bool = False) -> float | None:
    """Test top-1 of the fit's best single trial model (what it serves with neither ensemble nor refit), with the
    test-time augmentation of the served model (``tta``), so the comparison is of the models alone."""
    from jaxgluon.train import load_trained

    meta = results.metadata
    if results.experiment_dir is None or meta.get("best_trial_id") is None:
        return None
    model = load_trained(pathlib.Path(results.experiment_dir) / "trials" / str(meta["best_trial_id"]),
                         epoch=meta.get("best_epoch"))
    model.tta = tta
    return round(float(model.evaluate(test.test_source)), 4)


def run_dataset(name: str, data_root: pathlib.Path, time_limits: float, out: pathlib.Path, verbose: bool,
                skip: set[str], refit: bool, ensemble: bool, seed: int = 0, search_strategy: str | None = None) -> dict:
    train, test = datasets_for(name, data_root, out, seed)
    out = out / f"seed{seed}"
    row: dict = {"dataset": name, "seed": seed, "train_images": len(train), "test_images": len(test.test_source),
                 "time_limits": time_limits}
    searched = {} if search_strategy is None else {"search_strategy": search_strategy}
    if searched:
        row["search_strategy"] = search_strategy
    d = task_defaults.fit_defaults(train.train_source, time_limits=time_limits, check_weights=True)
    small = task_defaults.median_image_side(train.train_source) <= task_defaults.SMALL_IMAGE_SIDE
    net = _first(d.net)

    def show(column):
        print(f"{name} {column}: {row[column]}", flush=True)

    if "default" not in skip:
        row["default"] = timed_fit(train, test, time_limits, output_directory=out / name / "default", verbose=verbose,
                                   **searched)
        show("default")
    if "fixed" not in skip:
        epochs = task_defaults.budget_epochs(len(train.train_source), d.image_size, time_limits, num_trials=1)
        row["fixed"] = timed_fit(train, test, time_limits, net=net, optimizer=fixed_optimizer(small),
                                 lr_scheduler="cosine", num_trials=1, epochs=epochs, image_size=d.image_size,
                                 pixel_model=False, output_directory=out / name / "fixed", verbose=verbose)
        row["fixed"]["config"] = f"{net} {d.image_size}px SGD lr {1e-2 if small else 1e-3:g} m 0.9 wd 1e-4 cosine"
        show("fixed")
    if ensemble:   # the default fit's ensemble='auto' (no second fit): what it built and whether it served it
        default = row.get("default", {})
        row["ensemble"] = ({"skipped": "needs the default column"} if "default" not in row else
                           {"from": "the default fit (ensemble='auto')", **default.get("ensemble", {"status": "none"}),
                            "top1": default.get("top1") if default.get("final_model") == "ensemble" else None,
                            "single_top1": default.get("single_top1")})
        show("ensemble")
    if refit:
        row["refit"] = timed_fit(train, test, time_limits, output_directory=out / name / "refit", verbose=verbose,
                                 refit=True, ensemble=False, **searched)
        show("refit")
    if "probe" not in skip:
        t = time.perf_counter()
        top1 = probe_top1(train, test, net, d.image_size)
        row["probe"] = ({"skipped": f"no pretrained weights for {net}"} if top1 is None else
                        {"top1": round(top1, 4), "wall_s": round(time.perf_counter() - t, 1), "net": net,
                         "image_size": d.image_size})
        show("probe")
    if "sklearn" not in skip:
        row["sklearn"] = sklearn_peers(train, test)
        show("sklearn")
    best_peer = max((row["sklearn"][k] for k in ("svc_top1", "logreg_top1")), default=None) if "sklearn" in row else None
    if row.get("default", {}).get("top1") is not None and best_peer:
        row["default_vs_best_sklearn"] = round(row["default"]["top1"] / best_peer, 3)
    if row.get("default", {}).get("top1") is not None and row.get("fixed", {}).get("top1") is not None:
        row["default_vs_fixed"] = round(row["default"]["top1"] / max(row["fixed"]["top1"], 1e-9), 3)
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help="comma-separated: " + ",".join(DATASETS) + ", or folders under --data-root with train/ and "
                        "test/ (or val/) class subfolders")
    p.add_argument("--time-limits", type=float, default=60.0, help="seconds for each fit, counted from the call")
    p.add_argument("--skip", default="", help="comma-separated columns to leave out: " + ",".join(COLUMNS))
    p.add_argument("--refit", action="store_true", help="also fit(refit=True) (skipped if fit lacks it)")
    p.add_argument("--ensemble", action="store_true", help="also fit(ensemble=True) (skipped if fit lacks it)")
    p.add_argument("--data-root", default=str(SHARED_DATA), help="folder holding the datasets")
    p.add_argument("--out", default=None, help="experiment folder (default: a temporary one)")
    p.add_argument("--verbose", action="store_true", help="show the progress bars")
    p.add_argument("--search-strategy", default=None,
                   help="fit(search_strategy=...) for the default and refit columns (default: fit's own)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (validation split and search), e.g. 0,1,2")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    skip = {c.strip() for c in args.skip.split(",") if c.strip()}
    unknown = sorted(skip - set(COLUMNS))
    if unknown or not names:
        raise ValueError(f"unknown --skip {unknown} or no --datasets {names}; columns {COLUMNS}")
    if args.time_limits <= 0:
        raise ValueError(f"--time-limits must be positive, got {args.time_limits}")
    data_root = pathlib.Path(args.data_root)
    if not data_root.is_dir() and any(n != "digits" for n in names):
        raise FileNotFoundError(f"{data_root} not found: pass --data-root=<folder with the datasets>")
    if SHARED_WEIGHTS.is_dir():   # the small-image default net's CIFAR-10 weights, as a user would install them
        os.environ.setdefault("JAXGLUON_WEIGHTS_PATH", str(SHARED_WEIGHTS))
    print(f"jax {jax.__version__} backend={jax.default_backend()} cpus={os.cpu_count()} "
          f"loadavg={os.getloadavg()[0]:.1f} time_limits={args.time_limits} "
          f"weights={os.environ.get('JAXGLUON_WEIGHTS_PATH')}", flush=True)
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="task_quality_")
    out = pathlib.Path(args.out or tmp.name)
    started = time.perf_counter()
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    rows = [run_dataset(name, data_root, args.time_limits, out, args.verbose, skip, args.refit, args.ensemble, seed,
                        args.search_strategy)
            for name in names for seed in seeds]
    overruns = [r[c]["overrun_s"] for r in rows for c in ("default", "fixed", "refit", "ensemble")
                if isinstance(r.get(c), dict) and "overrun_s" in r[c]]
    summary = {"time_limits": args.time_limits, "total_s": round(time.perf_counter() - started, 1),
               "loadavg_end": round(os.getloadavg()[0], 1), "worst_overrun_s": max(overruns, default=None),
               "runs": [{k: v for k, v in r.items()} for r in rows]}
    if tmp is not None:
        tmp.cleanup()
    else:   # beside the fits it describes (benchmarks/refit_pair.py reads it)
        summary["out"] = str(out.absolute())
        (out / "summary.json").write_text(json.dumps(summary, default=str))
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
