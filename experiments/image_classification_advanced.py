"""The AutoGluon "Image Classification - Advanced" tutorial, reproduced with jaxgluon.

    python experiments/image_classification_advanced.py                       # built-in digits, ~10 min on 2 CPUs
    python experiments/image_classification_advanced.py --train-path ~/data/train --test-path ~/data/test \
        --time-limits 600 --epochs 4

Each step of the tutorial runs as written there (``.item()`` where MXNet had ``.asscalar()``); this file only parses
flags and calls the library.
"""
from __future__ import annotations

import argparse
import logging
import os
import pathlib
import time

DEFAULT_NETS = "cifar_resnet20_v1,cifar_resnet56_v1"  # for the built-in digits; images are 8x8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-path", help="folder with one subfolder per class (default: built-in digits)")
    parser.add_argument("--test-path", help="test folder with the same class subfolders")
    parser.add_argument("--time-limits", type=float, default=120.0, help="seconds for each of the four fits")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of a full trial (hyperband: this + 1)")
    parser.add_argument("--nets", default=None,
                        help="comma-separated networks for the searches over nets (default: the tutorial's ResNets "
                             f"on folders, {DEFAULT_NETS} on the digits)")
    parser.add_argument("--output-directory", default=None,
                        help="where the experiments and the model go (default: a new runs/tutorial-<time>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("jaxgluon").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's per-checkpoint chatter
    shared_weights = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "cifar10_resnet"
    if shared_weights.is_dir():  # the CIFAR-10 ResNet weights, where this checkout has them beside it
        os.environ.setdefault("JAXGLUON_WEIGHTS_PATH", str(shared_weights))

    from jaxgluon import ImageClassification as task
    import jaxgluon as ag

    out = pathlib.Path(args.output_directory or time.strftime("runs/tutorial-%Y%m%d-%H%M%S"))
    verbose = not args.quiet
    if args.train_path:
        dataset = task.Dataset(name="user", train_path=args.train_path)
        test_dataset = task.Dataset(name="user", test_path=args.test_path) if args.test_path else None
        net_names = (args.nets or "resnet18_v1,resnet34_v1,resnet50_v1").split(",")
    else:
        dataset = task.Dataset(name="digits")
        test_dataset = task.Dataset(name="digits", train=False)
        net_names = (args.nets or DEFAULT_NETS).split(",")
    common = dict(time_limits=args.time_limits, verbose=verbose)

    # 1. Default search.
    results = task.fit(dataset, epochs=args.epochs, output_directory=out / "fit_default", **common)
    print("Top-1 val acc: %.3f" % results.reward)
    if test_dataset is not None:
        print("Top-1 test acc: %.3f" % task.evaluate(test_dataset))
    for key in ["net", "optimizer", "search_strategy", "stop_criterion", "resources_per_trial"]:
        print(key, results.metadata[key])

    # 2. Search over networks.
    nets = ag.Nets(net_names)
    results = task.fit(dataset, nets, epochs=args.epochs, output_directory=out / "fit_nets", **common)
    print("nets: Top-1 val acc: %.3f (%s)" % (results.reward, results.metadata["net"]))

    # 3. Networks x optimizers x learning-rate schedules.
    sgd_opt = ag.optimizer.SGD(learning_rate=ag.LogLinear(1e-4, 1e-1), momentum=ag.Linear(0.85, 0.95),
                               wd=ag.LogLinear(1e-6, 1e-2))
    adam_opt = ag.optimizer.Adam(learning_rate=ag.LogLinear(1e-4, 1e-1), wd=ag.LogLinear(1e-6, 1e-2))
    optimizers = ag.Optimizers([sgd_opt, adam_opt])
    results = task.fit(dataset, nets, optimizer=optimizers, lr_scheduler=ag.List("poly", "cosine"),
                       epochs=args.epochs, output_directory=out / "fit_optimizers", **common)
    print("optimizers: Top-1 val acc: %.3f (%s)" % (results.reward, results.config))

    # 4. The same search with Hyperband early stopping.
    results = task.fit(dataset, nets, optimizers, lr_scheduler=ag.List("poly", "cosine"), search_strategy="hyperband",
                       epochs=args.epochs + 1, output_directory=out / "fit_hyperband", **common)
    print("hyperband: Top-1 val acc: %.3f (%s)" % (results.reward, results.config))
    if test_dataset is not None:
        print("Top-1 test acc: %.3f" % task.evaluate(test_dataset))

    # 5. Predict one image and save the model.
    if args.test_path:
        image = next(p for p in sorted(pathlib.Path(args.test_path).expanduser().rglob("*")) if p.is_file())
    else:
        image = test_dataset.test_source[0]["image"]
    ind, prob = task.predict(image)
    print("[%s], probability %.2f" % (dataset.init().synsets[ind.item()], prob.item()))
    print("saved the best model to", results.save(out / "best_model"))


if __name__ == "__main__":
    main()
