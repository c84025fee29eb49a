"""Train input pipeline at 224 px on a JPEG folder: decode once at a working resolution vs the former loader vs a
torch DataLoader, same augmentation (random-resized crop 0.08-1, aspect 3/4-4/3, horizontal flip, normalise).

    python benchmarks/input_pipeline.py                                   # ../shared/data/hymenoptera/train
    python benchmarks/input_pipeline.py --data ~/data/train --epochs 4 --workers 2

Contenders, each for ``--epochs`` epochs of batches of ``--batch`` on this machine's CPUs:

- ``grain``, ``host``, ``device`` (``--modes``): ``jaxgluon.data.make_loader(train=True, batch_augment=MODE)``,
  each image decoded once per process and kept at 1.15x the image size (``WORKING_SIDE_FACTOR``), then augmented
  per epoch: per example through grain, a batch at once on the host (Pillow + numpy), or a batch at once in one
  jitted function on JAX's default device (``jaxgluon.data.batch_augment``);
- ``former``: the per-example grain loader with images kept at 2x the image size, as it was before (main at
  33840c7): the issue's "today's loader";
- ``torch``: torchvision's ``ImageFolder`` + ``DataLoader`` (``--workers`` worker processes) with
  ``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, decoding every epoch.
  torchvision must match the installed torch; where no build matches (here: torch 2.13.0+cpu, and PyPI's and
  download.pytorch.org's torchvision 0.28.0 wheels are CUDA builds whose ops fail to load against it), the peer is
  the same pipeline written with PIL and torch (``TorchFolder`` below, torchvision's algorithm and PIL resampling),
  and the output says so.

Reported: images/s of the first epoch and the median of the later ones, the later-epoch ratios of each against
``former`` and ``torch``, and which jaxgluon path was fastest on this backend. The output
ends with one JSON line.
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


def time_epochs(batches, steps_per_epoch: int, epochs: int) -> list[float]:
    """Images/s of each epoch of an iterator of batches (dicts with 'label', or (images, labels) tuples)."""
    rates, it = [], iter(batches)
    for _ in range(epochs):
        start, n = time.perf_counter(), 0
        for _ in range(steps_per_epoch):
            b = next(it)
            n += len(b["label"] if isinstance(b, dict) else b[1])
        if isinstance(b, dict) and hasattr(b["image"], "block_until_ready"):   # device batches: wait for them
            b["image"].block_until_ready()
        rates.append(n / (time.perf_counter() - start))
    return rates


def jaxgluon_case(data: str, size: int, batch: int, epochs: int, factor: float | None,
                  mode: str = "grain") -> list[float]:
    from jaxgluon.data import ImageFolderSource, loader, make_loader

    saved = loader.WORKING_SIDE_FACTOR
    if factor is not None:
        loader.WORKING_SIDE_FACTOR = factor
    try:
        src = ImageFolderSource(data)   # a new source object: a cold decoded-image cache
        batches = make_loader(src, batch_size=batch, image_size=size, mean=MEAN, std=STD, train=True,
                              num_epochs=epochs, augment="resized_crop+flip", batch_augment=mode)
        rates = time_epochs(batches, batches.steps_per_epoch, epochs)
        used = getattr(batches.dataset, "mode", "grain")
        if used != mode:
            raise RuntimeError(f"make_loader(batch_augment={mode!r}) ran {used!r}: not the path asked for")
        return rates
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


def torch_case(data: str, size: int, batch: int, epochs: int, workers: int) -> tuple[list[float], str]:
    import torch

    try:
        from torchvision import datasets, transforms as T
        ds = datasets.ImageFolder(data, T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                                                   T.Normalize(MEAN, STD)]))
        peer = "torchvision ImageFolder + DataLoader"
    except (ImportError, RuntimeError) as exc:
        ds = TorchFolder(data, size)
        peer = f"torch DataLoader + TorchFolder (torchvision unusable: {type(exc).__name__}: {str(exc)[:80]})"
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                     persistent_workers=workers > 0)

    def forever():
        while True:
            yield from dl

    return time_epochs(forever(), len(dl), epochs), peer


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--modes", default="grain,host,device",
                   help="jaxgluon cached-source paths to time (make_loader's batch_augment)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="torch DataLoader workers")
    args = p.parse_args(argv)
    runs = {"former": jaxgluon_case(args.data, args.size, args.batch, args.epochs, 2.0)}
    for mode in args.modes.split(","):
        runs[mode] = jaxgluon_case(args.data, args.size, args.batch, args.epochs, None, mode)
    runs["torch"], peer = torch_case(args.data, args.size, args.batch, args.epochs, args.workers)
    import jax
    backend = jax.default_backend()
    later = {k: statistics.median(v[1:]) if len(v) > 1 else v[0] for k, v in runs.items()}
    for name, rates in runs.items():
        print(f"{name:9s} first epoch {rates[0]:7.1f} img/s, later epochs {later[name]:7.1f} img/s "
              f"({', '.join(f'{r:.0f}' for r in rates)})")
    print(f"torch peer: {peer}")
    figures = {"data": args.data, "size": args.size, "batch": args.batch, "epochs": args.epochs,
               "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
               **{f"{k}_first_img_s": round(v[0], 1) for k, v in runs.items()},
               **{f"{k}_later_img_s": round(v, 1) for k, v in later.items()},
               **{f"{k}_later_ratio_vs_former": round(later[k] / later["former"], 2) for k in later},
               **{f"{k}_later_ratio_vs_torch": round(later[k] / later["torch"], 2) for k in later},
               "best": (best := max((k for k in later if k not in ("former", "torch")), key=later.get)),
               "backend": backend, "target_3x_met": later[best] >= 3 * later["former"], "torch_peer": peer}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
