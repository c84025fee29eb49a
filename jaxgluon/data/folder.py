"""An image folder with one subfolder per class, as a grain random-access source.

Class folders are the non-hidden subfolders (names starting with '.' or '__', like ``.git`` or ``__MACOSX``, are
skipped); images are files with an extension in ``IMAGE_EXTENSIONS`` (any case: every format the installed Pillow
can decode, e.g. .jpg, .png, .gif, .webp, .bmp, .tif/.tiff) anywhere below a class folder, hidden ones excluded.
Other files are ignored, counted per extension in ``source.ignored`` and summed up in one logged line
(``ignored 3 file(s) in <root> that are not images: 2 .txt, 1 .json``). A training set needs at least two classes:
:func:`jaxgluon.data.require_classes` says so where training data enters (``task.Dataset``, ``train_trial``). Scanning is eager and checks every file cheaply (:func:`jaxgluon.data.images.check_file`: JPEG decoded at 1/8
scale, PNG chunk CRCs verified, small formats decoded), in a thread pool. Unreadable, corrupt or truncated files
are skipped: each is listed in ``source.skipped`` and one warning with their count is logged. Decoding a file
that passed the check but fails later (it changed on disk) raises an ``OSError`` naming it.

Example::

    from jaxgluon.data import ImageFolderSource, check_class_names
    train = ImageFolderSource("~/data/flowers/train")       # flowers/train/<class>/<image>
    test = ImageFolderSource("~/data/flowers/test", class_names=train.class_names)  # same classes, or ValueError
    train[0]["image"].shape, train[0]["label"], train.class_names
"""
from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import pathlib
from typing import NamedTuple, Sequence

import numpy as np

from jaxgluon.data.images import IMAGE_EXTENSIONS, check_file, decode_file

logger = logging.getLogger(__name__)


class SkippedFile(NamedTuple):
    """A file left out of a source, and why."""

    path: str
    reason: str


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _is_image_name(name: str) -> bool:
    return not _is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower() or "(no extension)"


def _image_files(class_dir: pathlib.Path, ignored: collections.Counter) -> list[str]:
    """Image files under ``class_dir`` (recursively, following links), hidden files and folders excluded, sorted;
    the other non-hidden files are counted per extension in ``ignored``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for f in filenames:
            if _is_image_name(f):
                found.append(os.path.join(dirpath, f))
            elif not _is_hidden(f):
                ignored[_extension(f)] += 1
    return sorted(found)


def ignored_summary(ignored: dict[str, int]) -> str:
    """``'3 file(s): 2 .txt, 1 .json'`` (most frequent extension first)."""
    counts = sorted(ignored.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{sum(ignored.values())} file(s): " + ", ".join(f"{n} {ext}" for ext, n in counts)


def _check(path: str) -> tuple[int, int] | str:
    try:
        return check_file(path)
    except Exception as err:  # noqa: BLE001 -- PIL raises many kinds for broken files; all mean "skip it"
        return f"{type(err).__name__}: {err}"


def check_class_names(
    class_names: Sequence[str], expected: Sequence[str], folder: str | os.PathLike = "the test data"
) -> None:
    """Raises ValueError when ``class_names`` (e.g. a test folder's) differ from ``expected`` (the training classes).

    Example::

        check_class_names(test.class_names, train.class_names, folder=test.root)
    """
    got, want = list(class_names), list(expected)
    if got == want:
        return
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    details = []
    if missing:
        details.append(f"missing {missing}")
    if extra:
        details.append(f"unexpected {extra}")
    if not details:
        details.append(f"same names in a different order: {got} vs {want}")
    raise ValueError(
        f"the classes of {folder} differ from the training classes ({'; '.join(details)}); "
        f"give it one subfolder per training class: {want}"
    )


class ImageFolderSource:
    """Images in ``path/<class name>/**/<file>``; labels index the sorted class names.

    Attributes:
        root: the folder (``~`` expanded).
        class_names: sorted class subfolder names.
        paths: image file paths (sorted within each class, classes in label order).
        labels: int64 array of labels, one per path.
        image_sizes: int array [N, 2] of (width, height) read at scan time (None with ``check=False``).
        skipped: files with an image extension that could not be read (:class:`SkippedFile`).
        ignored: ``{extension: count}`` of the non-hidden files that are not images (``'.txt'``, ``'(no extension)'``).

    Args:
        path: the folder.
        class_names: when given, the folder's classes must be exactly these (a test folder against training).
        check: check every file at scan time (default); with False unreadable files raise when first loaded.
        num_threads: threads for the scan-time check (default: number of CPUs, at most 16).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        class_names: Sequence[str] | None = None,
        *,
        check: bool = True,
        num_threads: int | None = None,
    ):
        root = pathlib.Path(path).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"image folder not found: {root}")
        if not root.is_dir():
            raise NotADirectoryError(f"expected an image folder with one subfolder per class, got a file: {root}")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name))
        if not classes:
            loose = [p.name for p in root.iterdir() if p.is_file() and _is_image_name(p.name)]
            what = f"{len(loose)} image files but no class subfolders" if loose else "no class subfolders"
            raise ValueError(
                f"{root} has {what}; put the images in one subfolder per class, e.g. {root}/<class name>/1.jpg"
            )
        if class_names is not None:
            check_class_names(classes, class_names, folder=root)
        self.root = root
        self.class_names: list[str] = classes
        ignored: collections.Counter = collections.Counter()
        per_class = [_image_files(root / name, ignored) for name in classes]
        self.ignored: dict[str, int] = dict(ignored)
        if ignored:
            logger.warning("ignored %s (not images Pillow reads) in %s", ignored_summary(ignored), root)
        empty = [str(root / name) for name, files in zip(classes, per_class) if not files]
        if empty:
            seen = f" (found only {ignored_summary(ignored)})" if ignored else ""
            raise ValueError(
                f"class folder(s) without images: {', '.join(empty)}{seen}; add images in a format Pillow reads "
                "(.jpg, .png, .tif, .webp, ...: jaxgluon.data.IMAGE_EXTENSIONS) or remove the folder"
            )
        paths = [p for files in per_class for p in files]
        labels = [label for label, files in enumerate(per_class) for _ in files]
        self.skipped: list[SkippedFile] = []
        sizes = None
        if check:
            workers = num_threads or min(16, os.cpu_count() or 1)
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(_check, paths, chunksize=16))
            keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
            self.skipped = [SkippedFile(paths[i], r) for i, r in enumerate(results) if isinstance(r, str)]
            if self.skipped:
                logger.warning(
                    "skipped %d unreadable image file(s) in %s (listed in source.skipped), first: %s (%s)",
                    len(self.skipped), root, self.skipped[0].path, self.skipped[0].reason,
                )
            sizes = np.asarray([results[i] for i in keep], dtype=np.int64).reshape(-1, 2)
            paths = [paths[i] for i in keep]
            labels = [labels[i] for i in keep]
            left = set(labels)
            emptied = [str(root / name) for label, name in enumerate(classes) if label not in left]
            if emptied:
                raise ValueError(
                    f"class folder(s) left without readable images after skipping {len(self.skipped)} "
                    f"unreadable file(s): {', '.join(emptied)}"
                )
        self.paths: list[str] = paths
        self.labels: np.ndarray = np.asarray(labels, dtype=np.int64)
        self.image_sizes: np.ndarray | None = sizes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return self.load(index)

    def load(self, index: int, min_side: int | None = None) -> dict:
        """The example at ``index``; with ``min_side`` JPEGs may decode at reduced scale (shorter side >= it)."""
        path = self.paths[index]
        try:
            image = decode_file(path, min_side=min_side)
        except Exception as err:  # noqa: BLE001
            raise OSError(f"cannot decode {path} ({type(err).__name__}: {err}); remove or replace the file") from err
        return {"image": image, "label": int(self.labels[index])}

    def __repr__(self) -> str:
        return (
            f"ImageFolderSource({str(self.root)!r}: {len(self)} images, {len(self.class_names)} classes"
            + (f", {len(self.skipped)} skipped" if self.skipped else "")
            + ")"
        )
