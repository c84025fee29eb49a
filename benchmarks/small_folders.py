"""Small-image class folders made from ../shared/data, for checking the small-image defaults on data they were not
chosen on (``benchmarks/task_quality.py --data-root OUT --datasets ...``).

Written under OUT, each with ``train/`` and ``test/`` class subfolders of PNGs, resized whole (bilinear):

- ``flowers5_32``, ``imagenette_small_32``: 32 x 32 RGB (their own train / test splits);
- ``hymenoptera_24``: 24 x 24 RGB;
- ``cifar_gray28``: cifar10_test_1k in 28 x 28 grayscale, the first 80 files of each class (sorted by name) for
  training and the last 20 for testing.

    python benchmarks/small_folders.py /tmp/small
"""
from __future__ import annotations

import argparse
import pathlib

from PIL import Image

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
VARIANTS = {"flowers5_32": ("flowers5", "train", "test", 32),
            "imagenette_small_32": ("imagenette_small", "train", "val", 32),
            "hymenoptera_24": ("hymenoptera", "train", "val", 24)}


def write(image: Image.Image, side: int, out: pathlib.Path, mode: str = "RGB") -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    image.convert(mode).resize((side, side), Image.BILINEAR).save(out)


def convert(src: pathlib.Path, dst: pathlib.Path, side: int) -> int:
    count = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        try:
            image = Image.open(path)
        except OSError:                 # not an image
            continue
        write(image, side, (dst / path.relative_to(src)).with_suffix(".png"))
        count += 1
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="folder to write the datasets into")
    p.add_argument("--data", default=str(SHARED_DATA), help="the shared data folder")
    args = p.parse_args()
    data, out = pathlib.Path(args.data), pathlib.Path(args.out)
    if not data.is_dir():
        raise SystemExit(f"{data} not found: pass --data=<the shared data folder>")
    for name, (source, train, test, side) in VARIANTS.items():
        n = sum(convert(data / source / part, out / name / target, side)
                for part, target in ((train, "train"), (test, "test")))
        print(f"{name}: {n} images", flush=True)
    n = 0
    for klass in sorted(p for p in (data / "cifar10_test_1k").iterdir() if p.is_dir()):
        for i, path in enumerate(sorted(klass.iterdir())):
            write(Image.open(path), 28, out / "cifar_gray28" / ("train" if i < 80 else "test") / klass.name
                  / (path.stem + ".png"), mode="L")
            n += 1
    print(f"cifar_gray28: {n} images")


if __name__ == "__main__":
    main()
