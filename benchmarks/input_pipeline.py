"""Train input pipeline at 224 px on a JPEG folder: decode once at a working resolution vs the former loader vs a
torch DataLoader, same augmentation (random-resized crop 0.08-1, aspect 3/4-4/3, horizontal flip, normalise).

    python benchmarks/input_pipeline.py                                   # ../shared/data/hymenoptera/train
    python benchmarks/input_pipeline.py --data ~/data/train --epochs 4 --workers 2

Contenders, each for ``--epochs`` epochs of batches of ``--batch`` on this machine's CPUs:

- ``grain``, ``host``, ``device`` (``--modes``): ``jaxgluon.data.make_loader(train=True, batch_augment=MODE)``,
  each image decoded once per process and kept at 1.15x the image size (``WORKING_SIDE_FACTOR``), then augmented
  per epoch: per example through grain, a batch at once on the host (Pillow crops in threads, then one jitted
  flip + normalise of the uint8 batch), or a batch at once in one
  jitted function on JAX's default device (``jaxgluon.data.batch_augment``);
- ``former``: the per-example grain loader with images kept at 2x the image size, as it was before (main at
  33840c7): the issue's "today's loader";
- ``torch``: torchvision's ``ImageFolder`` + ``DataLoader`` (``--workers`` worker processes) with
  ``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, decoding every epoch.
  torchvision must match the installed torch; where no build matches (here: torch 2.13.0+cpu, and PyPI's and
  download.pytorch.org's torchvision 0.28.0 wheels are CUDA builds whose ops fail to load against it), the peer is
  the same pipeline written with PIL and torch (``TorchFolder`` below, torchvision's algorithm and PIL resampling),
  and the output says so.

The contenders take turns: each of ``--rounds`` rounds runs every one for ``--epochs`` epochs (a new loader
each time, on its own source object, so only round 0's first epoch decodes), so a change in this shared machine's
load hits all of them. Reported: images/s of the first epoch and the median of the later ones, the CPU time of
this process per image (the jaxgluon paths; torch's work is in its workers), each path's ratio to ``former`` per
round (min / median / max) and overall, the ratio to ``torch``, and which jaxgluon path was fastest on this
backend. The output ends with one JSON line.

On a GPU (the 'device' path is the default there; a minute or so)::

    python benchmarks/input_pipeline.py --data ../shared/data/hymenoptera/train --repeat 8 --batch 128 \
        --epochs 3 --rounds 2 --modes host,device --workers 8
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import time

import _common  # noqa: F401 -- first: puts this checkout's jaxgluon first on sys.path

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera" / "train"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def time_epochs(batches, steps_per_epoch: int, epochs: int) -> tuple[list[float], list[float]]:
    """Images/s and this process's CPU ms per image of each epoch of an iterator of batches (dicts with 'label',
    or (images, labels) tuples). Device batches (``jax.Array``) are waited for at the end of each epoch."""
    rates, cpu, it = [], [], iter(batches)
    for _ in range(epochs):
        start, start_cpu, n = time.perf_counter(), time.process_time(), 0
        for _ in range(steps_per_epoch):
            b = next(it)
            n += len(b["label"] if isinstance(b, dict) else b[1])
        if isinstance(b, dict) and hasattr(b["image"], "block_until_ready"):
            b["image"].block_until_ready()
        rates.append(n / (time.perf_counter() - start))
        cpu.append(1e3 * (time.process_time() - start_cpu) / n)
    return rates, cpu


class Repeated:
    """A source that lists each image of ``source`` ``times`` times (a longer epoch of the same JPEGs)."""

    def __init__(self, source, times: int):
        self.source, self.times = source, times
        self.class_names = source.class_names
        sizes = getattr(source, "image_sizes", None)
        self.image_sizes = None if sizes is None else list(sizes) * times

    def __len__(self) -> int:
        return len(self.source) * self.times

    def __getitem__(self, index: int) -> dict:
        return self.source[index % len(self.source)]

    def load(self, index: int, min_side: int | None = None) -> dict:
        return self.source.load(index % len(self.source), min_side)


class JaxgluonCase:
    """One ``make_loader`` path on its own source object (so its first epoch decodes: a cold cache)."""

    def __init__(self, data: str, size: int, batch: int, factor: float | None, mode: str = "grain",
                 repeat: int = 1):
        from jaxgluon.data import ImageFolderSource

        src = ImageFolderSource(data)
        self.src = src if repeat == 1 else Repeated(src, repeat)
        self.size, self.batch, self.factor, self.mode = size, batch, factor, mode

    def run(self, epochs: int, seed: int) -> tuple[list[float], list[float]]:
        from jaxgluon.data import loader, make_loader

        saved = loader.WORKING_SIDE_FACTOR
        if self.factor is not None:
            loader.WORKING_SIDE_FACTOR = self.factor
        try:
            batches = make_loader(self.src, batch_size=self.batch, image_size=self.size, mean=MEAN, std=STD,
                                  train=True, seed=seed, num_epochs=epochs, augment="resized_crop+flip",
                                  batch_augment=self.mode)
            out = time_epochs(batches, batches.steps_per_epoch, epochs)
            used = getattr(batches.dataset, "mode", "grain")
            if used != self.mode:
                raise RuntimeError(f"make_loader(batch_augment={self.mode!r}) ran {used!r}: not the path asked for")
            return out
        finally:
            loader.WORKING_SIDE_FACTOR = saved


class TorchFolder:
    """torchvision's ImageFolder + RandomResizedCrop + RandomHorizontalFlip + ToTensor + Normalize, in torch/PIL."""

    def __init__(self, root: str, size: int):
        self.size = size
        classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
        self.samples = [(os.path.join(root, c, f), i) for i, c in enumerate(classes)
                        for f in sorted(os.listdir(os.path.join(root, c)))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        import torch
        from PIL import Image

        path, label = self.samples[index]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        w, h = img.size
        area = w * h
        box = None
        for _ in range(10):   # torchvision.transforms.RandomResizedCrop.get_params
            target = area * torch.empty(1).uniform_(0.08, 1.0).item()
            aspect = math.exp(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3)).item())
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = torch.randint(0, h - ch + 1, size=(1,)).item()
                left = torch.randint(0, w - cw + 1, size=(1,)).item()
                box = (left, top, left + cw, top + ch)
                break
        if box is None:
            ratio = w / h
            cw, ch = (w, h) if 3 / 4 <= ratio <= 4 / 3 else ((w, int(round(w / (3 / 4)))) if ratio < 3 / 4
                                                             else (int(round(h * 4 / 3)), h))
            left, top = (w - cw) // 2, (h - ch) // 2
            box = (left, top, left + cw, top + ch)
        img = img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if torch.rand(1).item() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(self.size, self.size, 3)
        x = x.permute(2, 0, 1).float().div_(255.0)
        x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        return x, label


class TorchCase:
    def __init__(self, data: str, size: int, batch: int, workers: int, repeat: int = 1):
        import torch

        try:
            from torchvision import datasets, transforms as T
            ds = datasets.ImageFolder(data, T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                                                       T.ToTensor(), T.Normalize(MEAN, STD)]))
            self.peer = "torchvision ImageFolder + DataLoader"
        except (ImportError, RuntimeError) as exc:
            ds = TorchFolder(data, size)
            self.peer = (f"torch DataLoader + TorchFolder (torchvision unusable: {type(exc).__name__}: "
                         f"{str(exc)[:80]})")
        if repeat > 1:
            ds = torch.utils.data.ConcatDataset([ds] * repeat)
        self.dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True,
                                              num_workers=workers, persistent_workers=workers > 0)

    def run(self, epochs: int, seed: int) -> tuple[list[float], list[float]]:
        def batches():   # a new pass per epoch: the workers start fetching when it begins, as in training
            for _ in range(epochs):
                yield from self.dl

        return time_epochs(batches(), len(self.dl), epochs)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="epochs per contender per round")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds; each runs every contender for --epochs epochs in turn (a new loader each)")
    p.add_argument("--modes", default="grain,host,device",
                   help="jaxgluon cached-source paths to time (make_loader's batch_augment)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="torch DataLoader workers")
    p.add_argument("--repeat", type=int, default=1,
                   help="list each image this many times (longer epochs of the same files, for fast devices)")
    p.add_argument("--no-torch", action="store_true", help="leave out the torch peer")
    args = p.parse_args(argv)
    cases: dict = {"former": JaxgluonCase(args.data, args.size, args.batch, 2.0, repeat=args.repeat)}
    for mode in args.modes.split(","):
        cases[mode] = JaxgluonCase(args.data, args.size, args.batch, None, mode, repeat=args.repeat)
    if not args.no_torch:
        cases["torch"] = TorchCase(args.data, args.size, args.batch, args.workers, repeat=args.repeat)
    first: dict[str, float] = {}
    later: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    per_round: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(args.rounds):   # contenders take turns, so a change in the machine's load hits all of them
        for name, case in cases.items():
            rates, ms = case.run(args.epochs, seed=r)
            if r == 0:   # the first epoch decodes (jaxgluon: the cold cache) and compiles
                first[name] = rates[0]
                rates, ms = rates[1:], ms[1:]
            later[name] += rates
            cpu[name] += ms
            per_round[name].append(statistics.median(rates) if rates else float("nan"))
    import jax
    backend = jax.default_backend()
    med = {k: statistics.median(v) for k, v in later.items()}
    ours = [k for k in cases if k not in ("former", "torch")]
    best = max(ours, key=med.get)
    ratio_rounds = {k: [a / b for a, b in zip(per_round[k], per_round["former"])] for k in cases}
    for name in cases:
        own_cpu = "in worker processes" if name == "torch" else f"{statistics.median(cpu[name]):.3f} ms/img"
        print(f"{name:7s} first epoch {first[name]:7.1f} img/s, later epochs median {med[name]:7.1f} img/s "
              f"({', '.join(f'{x:.0f}' for x in later[name])}); CPU of this process {own_cpu}")
    for name in ours:
        print(f"{name} / former per round (min / median / max): {spread(ratio_rounds[name])}")
    if "torch" in cases:
        print(f"torch peer: {cases['torch'].peer}")
    figures = {"data": args.data, "repeat": args.repeat, "size": args.size, "batch": args.batch, "epochs": args.epochs,
               "rounds": args.rounds, "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
               **{f"{k}_first_img_s": round(v, 1) for k, v in first.items()},
               **{f"{k}_later_img_s": round(v, 1) for k, v in med.items()},
               **{f"{k}_cpu_ms_per_img": round(statistics.median(v), 3) for k, v in cpu.items() if k != "torch"},
               **{f"{k}_later_ratio_vs_former": round(med[k] / med["former"], 2) for k in med},
               **{f"{k}_round_ratios_vs_former": [round(x, 2) for x in ratio_rounds[k]] for k in ours},
               **({f"{k}_later_ratio_vs_torch": round(med[k] / med["torch"], 2) for k in med}
                  if "torch" in cases else {}),
               "best": best, "backend": backend, "target_3x_met": med[best] >= 3 * med["former"],
               "target_3x_met_every_round": min(ratio_rounds[best]) >= 3,
               "torch_peer": cases["torch"].peer if "torch" in cases else None}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
