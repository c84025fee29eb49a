"""Attacks on jaxgluon's artifacts: saved models, weights files, training data and the experiment journal.

    python benchmarks/faults_artifacts.py [--flips 300] [--peer-flips 60] [--seed 0]

Each attack in ``ATTACKS`` takes a scratch directory and returns ``{'attack', 'detected', 'detail', ...}``;
``benchmarks/faults.py`` (the runner/process attacks) imports this list and reruns it with its own. Alone, the script
prints one line per attack and ends with one JSON line.

- ``saved_model_bit_flips``: one bit flipped at a time at random positions of a saved model (a ResNet-20 with 1 MB
  of weights; every file gets at least two flips, the rest fall uniformly over all bytes), each followed by
  ``load_trained``; detected = the load refused. The peer, in the same run: the same kind of flips against what
  main 33840c7 relied on (Orbax's restore of ``variables/`` plus ``json.loads`` of ``meta.json``, no manifest):
  flips it lets through load silently.
- ``meta_image_size_bound``: ``image_size`` 100000 in ``meta.json`` (manifest rewritten to match): refused before
  allocating (the seconds and the process's peak RSS growth are reported).
- ``meta_missing_keys`` / ``results_missing_keys``: each required key deleted in turn (manifest rewritten): a
  clear error naming the key.
- ``deleted_meta_json``: an error that says ``meta.json`` is missing, not "train the trial for one epoch".
- ``poisoned_weights_file``: zip checkpoints whose pickles BUILD state into the allow-listed ``torch.FloatStorage``
  and a rebuild helper: refused, and a clean checkpoint loaded afterwards reads correctly.
- ``one_class_dataset``: a one-class image folder given to ``task.Dataset``: refused, saying why.
- ``tiff_images_read``: .tif/.tiff images in class folders are read, other files summed up per extension.
- ``torn_journal`` / ``corrupt_journal_line``: a journal cut mid-line at the end, or with a corrupt line
  mid-file: recovered on open (truncated to the last good record, warning, a copy of the original kept).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import pathlib
import random
import resource
import shutil
import struct
import tempfile
import time
import warnings
import zipfile
from typing import Any, Callable

import _common  # noqa: F401,E402 -- first: puts this checkout's jaxgluon first on sys.path

FLIPS = 300        # bit flips against jaxgluon's saved model (module docstring)
PEER_FLIPS = 60    # the same against main's unverified load (a full Orbax restore each: slower)
SEED = 0

_META = {"format": "jaxgluon.trained/1", "net": "cifar_resnet20_v1", "num_classes": 2, "class_names": ["a", "b"],
         "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


# ---------------------------------------------------------------------------------------------- saved models
def _save_model(directory: pathlib.Path) -> pathlib.Path:
    import optax

    from jaxgluon import models
    from jaxgluon.train import TrainedModel, create_train_state
    state = create_train_state(models.get_model("cifar_resnet20_v1", 2, pretrained=False, seed=0), optax.identity())
    return TrainedModel(state, _META).save(directory)


def _files(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _flip_positions(files: list[pathlib.Path], n: int, rng: random.Random) -> list[tuple[pathlib.Path, int, int]]:
    """Two flips in every file, the rest uniform over all bytes: (file, byte, bit)."""
    sizes = [f.stat().st_size for f in files]
    picks = [(f, rng.randrange(s), rng.randrange(8)) for f, s in zip(files, sizes) if s for _ in range(2)]
    total = sum(sizes)
    while len(picks) < n:
        at = rng.randrange(total)
        for f, s in zip(files, sizes):
            if at < s:
                picks.append((f, at, rng.randrange(8)))
                break
            at -= s
    return picks


def _flip(path: pathlib.Path, byte: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(byte)
        value = f.read(1)[0]
        f.seek(byte)
        f.write(bytes([value ^ (1 << bit)]))


def _load_unverified(directory: pathlib.Path) -> None:
    """What main 33840c7's load_trained did for a saved model: json.loads(meta.json), then Orbax's restore."""
    import optax
    import orbax.checkpoint as ocp

    from jaxgluon import models
    from jaxgluon.train import create_train_state
    meta = json.loads((directory / "meta.json").read_text())
    if meta.get("format") != _META["format"]:
        raise ValueError("unknown format")
    template = create_train_state(models.get_model(meta["net"], int(meta["num_classes"]), pretrained=False),
                                  optax.identity())
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.restore(directory / "variables", template.variables())


def saved_model_bit_flips(scratch: pathlib.Path, flips: int | None = None, peer_flips: int | None = None,
                          seed: int | None = None) -> dict:
    from jaxgluon.train import load_trained
    from jaxgluon.train.integrity import SavedModelError
    flips, peer_flips = flips or FLIPS, PEER_FLIPS if peer_flips is None else peer_flips
    rng = random.Random(SEED if seed is None else seed)
    model = _save_model(scratch / "model")
    files = _files(model)
    detected, other_errors, missed = 0, {}, []
    by_file: dict[str, list[int]] = {}
    start = time.perf_counter()
    for path, byte, bit in _flip_positions(files, flips, rng):
        _flip(path, byte, bit)
        name = path.relative_to(model).as_posix()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load_trained(model)
            missed.append(f"{name}@{byte}.{bit}")
            ok = False
        except SavedModelError:
            ok = True
        except Exception as err:  # noqa: BLE001 -- refused, but not with the integrity error
            other_errors[type(err).__name__] = other_errors.get(type(err).__name__, 0) + 1
            ok = True
        _flip(path, byte, bit)
        detected += ok
        counts = by_file.setdefault(name, [0, 0])
        counts[0] += ok
        counts[1] += 1
    seconds = time.perf_counter() - start
    total = sum(c[1] for c in by_file.values())

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)   # Orbax's unretrieved futures on refused restores
    peer = scratch / "peer"
    shutil.copytree(model, peer)
    (peer / "manifest.json").unlink()
    peer_files = _files(peer)
    peer_detected = 0
    positions = _flip_positions(peer_files, peer_flips, rng)
    rng.shuffle(positions)
    positions = positions[:peer_flips]
    for path, byte, bit in positions:
        _flip(path, byte, bit)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _load_unverified(peer)
        except Exception:  # noqa: BLE001 -- any refusal counts for the peer
            peer_detected += 1
        _flip(path, byte, bit)
    peer_total = len(positions)
    return {"attack": "saved_model_bit_flips", "detected": detected == total,
            "detail": f"{detected}/{total} one-bit flips refused on load across {len(files)} files "
                      f"({seconds / total * 1e3:.1f} ms per load); main's unverified load refused "
                      f"{peer_detected}/{peer_total}",
            "flips": total, "flips_detected": detected, "files": len(files),
            "non_integrity_errors": other_errors, "missed": missed[:10],
            "peer_unverified_flips": peer_total, "peer_unverified_detected": peer_detected,
            "ms_per_verified_load": round(seconds / total * 1e3, 2)}


def _rewrite_meta(model: pathlib.Path, change: Callable[[dict], Any], name: str = "meta.json") -> None:
    from jaxgluon.train.integrity import write_manifest
    data = json.loads((model / name).read_text())
    change(data)
    (model / name).write_text(json.dumps(data))
    write_manifest(model)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def meta_image_size_bound(scratch: pathlib.Path) -> dict:
    from jaxgluon.train import load_trained
    from jaxgluon.train.integrity import SavedModelError
    model = _save_model(scratch / "model")
    _rewrite_meta(model, lambda m: m.update(image_size=100000))
    rss, start = _peak_rss_mb(), time.perf_counter()
    try:
        load_trained(model)
        return {"attack": "meta_image_size_bound", "detected": False, "detail": "image_size 100000 loaded"}
    except SavedModelError as err:
        seconds, grown = time.perf_counter() - start, _peak_rss_mb() - rss
        return {"attack": "meta_image_size_bound", "detected": "image_size" in str(err),
                "detail": f"refused in {seconds * 1e3:.0f} ms, peak RSS +{grown:.0f} MB: {str(err)[-90:]}",
                "seconds": round(seconds, 4), "peak_rss_growth_mb": round(grown, 1)}


def meta_missing_keys(scratch: pathlib.Path) -> dict:
    from jaxgluon.train import load_trained
    from jaxgluon.train.integrity import SavedModelError
    from jaxgluon.train.trained import META_SCHEMA
    original = _save_model(scratch / "model")
    return _missing_keys_named("meta_missing_keys", original, scratch, META_SCHEMA["required"], "meta.json",
                               load_trained, SavedModelError)


def results_missing_keys(scratch: pathlib.Path) -> dict:
    from jaxgluon.task.results import RESULTS_FILE, RESULTS_SCHEMA, Results
    from jaxgluon.train import load_trained
    from jaxgluon.train.integrity import SavedModelError
    model = load_trained(_save_model(scratch / "model"))
    trials = [{"trial_id": 0, "status": "COMPLETED", "config": {}}]
    original = Results(0.5, {}, {}, trials, model).save(scratch / "results")
    return _missing_keys_named("results_missing_keys", original, scratch, RESULTS_SCHEMA["required"], RESULTS_FILE,
                               Results.load, SavedModelError)


def _missing_keys_named(attack: str, original: pathlib.Path, scratch: pathlib.Path, keys: list, name: str,
                        load, error: type) -> dict:
    """Drops each required key of ``name`` in a copy of ``original``; counts the loads whose error names it."""
    named = []
    for key in keys:
        folder = pathlib.Path(shutil.copytree(original, scratch / f"no_{key}"))
        _rewrite_meta(folder, lambda m, k=key: m.pop(k), name=name)
        try:
            load(folder)
        except error as err:
            if f"{key}: missing (required)" in str(err):
                named.append(key)
    return {"attack": attack, "detected": len(named) == len(keys),
            "detail": f"{len(named)}/{len(keys)} missing {name} keys named in the error ({', '.join(keys)})"}


def deleted_meta_json(scratch: pathlib.Path) -> dict:
    from jaxgluon.train import load_trained
    model = _save_model(scratch / "model")
    (model / "meta.json").unlink()
    try:
        load_trained(model)
        return {"attack": "deleted_meta_json", "detected": False, "detail": "loaded without meta.json"}
    except ValueError as err:
        text = str(err)
        good = "meta.json" in text and "missing" in text and "at least one epoch" not in text
        return {"attack": "deleted_meta_json", "detected": good, "detail": text[:160]}


# ------------------------------------------------------------------------------------------------- weights
def _u(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _zip(path: pathlib.Path, pkl: bytes, storage: bytes = b"") -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/byteorder", "little")
        if storage:
            archive.writestr("archive/data/0", storage)
    return path


def _clean_checkpoint(path: pathlib.Path) -> pathlib.Path:
    pid = b"(" + _u("storage") + _global("torch", "FloatStorage") + _u("0") + _u("cpu") + b"K\x04tQ"
    tensor = (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"K\x00(K\x04t(K\x01t\x89" +
              _global("collections", "OrderedDict") + b")RtR")
    pkl = b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + _u("w") + tensor + b"u."
    import numpy as np
    return _zip(path, pkl, np.arange(4, dtype=np.float32).tobytes())


def poisoned_weights_file(scratch: pathlib.Path) -> dict:
    import numpy as np

    from jaxgluon.models.weights import read_state_dict
    poisons = {
        "FloatStorage.dtype": _global("torch", "FloatStorage") + b"}" + _u("dtype") + _u("poison") + b"s",
        "_rebuild_tensor_v2.__defaults__": _global("torch._utils", "_rebuild_tensor_v2") + b"(N}" +
        _u("__defaults__") + b"(K\x07tst",
    }
    refused, later_ok = 0, 0
    for i, (name, body) in enumerate(poisons.items()):
        try:
            read_state_dict(_zip(scratch / f"evil{i}.pt", b"\x80\x02" + body + b"b0}."))
        except Exception:  # noqa: BLE001 -- refused
            refused += 1
        try:
            state = read_state_dict(_clean_checkpoint(scratch / f"clean{i}.pt"))
            later_ok += bool(np.array_equal(state["w"], np.arange(4, dtype=np.float32)))
        except Exception:  # noqa: BLE001 -- poisoned
            pass
    n = len(poisons)
    return {"attack": "poisoned_weights_file", "detected": refused == n and later_ok == n,
            "detail": f"{refused}/{n} BUILD-poisoning checkpoints refused; a clean checkpoint read correctly after "
                      f"{later_ok}/{n} of them"}


# ---------------------------------------------------------------------------------------------------- data
def _png(path: pathlib.Path, value: int, fmt: str | None = None) -> None:
    import numpy as np
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(path, fmt)


def one_class_dataset(scratch: pathlib.Path) -> dict:
    from jaxgluon import ImageClassification as task
    for i in range(6):
        _png(scratch / "train" / "cats" / f"{i}.png", 40 * i)
    try:
        task.Dataset(train_path=str(scratch / "train"))
        return {"attack": "one_class_dataset", "detected": False, "detail": "a one-class dataset was accepted"}
    except ValueError as err:
        return {"attack": "one_class_dataset", "detected": "at least 2 classes" in str(err),
                "detail": str(err)[:150]}


def tiff_images_read(scratch: pathlib.Path) -> dict:
    from jaxgluon.data import ImageFolderSource
    for cls, value in (("a", 30), ("b", 200)):
        _png(scratch / "train" / cls / "1.tif", value)
        _png(scratch / "train" / cls / "2.tiff", value)
        _png(scratch / "train" / cls / "3.png", value)
        (scratch / "train" / cls / "notes.txt").write_text("x")
    log = logging.getLogger("jaxgluon.data.folder")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    level, log.level = log.level, logging.WARNING
    try:
        source = ImageFolderSource(scratch / "train")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    summary = stream.getvalue().strip()
    return {"attack": "tiff_images_read", "detected": len(source) == 6 and "ignored 2 file(s): 2 .txt" in summary,
            "detail": f"{len(source)}/6 .tif/.tiff/.png images read; log: {summary[:80]}"}


# ------------------------------------------------------------------------------------------------- journal
def _journal_attack(scratch: pathlib.Path, name: str, damage: Callable[[list[bytes]], list[bytes]]) -> dict:
    from jaxgluon.tune.journal import Journal, read_journal
    path = scratch / "journal.jsonl"
    with Journal(path) as journal:
        for i in range(20):
            journal.append("result", trial_id=i % 3, result={"epoch": i, "reward": i / 20})
    path.write_bytes(b"\n".join(damage(path.read_bytes().split(b"\n"))))
    original = path.read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Journal(path) as journal:
            journal.append("session", session=2)
            recovery = journal.recovery
    events = list(read_journal(path))
    backups = list(scratch.glob("journal.jsonl.corrupt-*"))
    ok = (recovery is not None and any("recovered the journal" in str(w.message) for w in caught)
          and len(backups) == 1 and backups[0].read_bytes() == original
          and [e["seq"] for e in events] == list(range(len(events))))
    detail = recovery.describe(path).split(": ", 1)[1] if recovery is not None else "nothing recovered, no warning"
    return {"attack": name, "detected": ok, "detail": detail[:160],
            "records_kept": None if recovery is None else recovery.kept_records}


def torn_journal(scratch: pathlib.Path) -> dict:
    return _journal_attack(scratch, "torn_journal", lambda lines: lines[:-2] + [lines[-2][:25]])


def corrupt_journal_line(scratch: pathlib.Path) -> dict:
    def damage(lines: list[bytes]) -> list[bytes]:
        lines[9] = lines[9][:10] + b"\xff" + lines[9][11:]
        return lines
    return _journal_attack(scratch, "corrupt_journal_line", damage)


ATTACKS: list[Callable[[pathlib.Path], dict]] = [
    saved_model_bit_flips, meta_image_size_bound, meta_missing_keys, results_missing_keys, deleted_meta_json,
    poisoned_weights_file, one_class_dataset, tiff_images_read, torn_journal, corrupt_journal_line,
]


def run_all(root: pathlib.Path) -> list[dict]:
    results = []
    for attack in ATTACKS:
        scratch = pathlib.Path(tempfile.mkdtemp(prefix=attack.__name__ + "-", dir=root))
        start = time.perf_counter()
        try:
            result = attack(scratch)
        except Exception as err:  # noqa: BLE001 -- an attack that crashes the harness is a finding too
            result = {"attack": attack.__name__, "detected": False, "detail": f"raised {type(err).__name__}: {err}"}
        result["seconds"] = round(time.perf_counter() - start, 2)
        results.append(result)
        print(f"{'ok ' if result['detected'] else 'MISSED'} {result['attack']:<24} {result['detail']}", flush=True)
    return results


def _rate(hits: int | None, total: int | None) -> float | None:
    return None if not total else round(hits / total, 4)


def main() -> None:
    global FLIPS, PEER_FLIPS, SEED
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flips", type=int, default=FLIPS)
    parser.add_argument("--peer-flips", type=int, default=PEER_FLIPS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    FLIPS, PEER_FLIPS, SEED = args.flips, args.peer_flips, args.seed
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    logging.basicConfig(level=logging.ERROR)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jaxgluon-faults-") as root:
        results = run_all(pathlib.Path(root))
    flips = next(r for r in results if r["attack"] == "saved_model_bit_flips")
    summary = {"benchmark": "faults_artifacts", "attacks": len(results),
               "detected": sum(bool(r["detected"]) for r in results),
               "missed": [r["attack"] for r in results if not r["detected"]],
               "bit_flips": flips.get("flips"), "bit_flips_detected": flips.get("flips_detected"),
               "peer_unverified_flips": flips.get("peer_unverified_flips"),
               "peer_unverified_detected": flips.get("peer_unverified_detected"),
               "detection_rate": _rate(flips.get("flips_detected"), flips.get("flips")),
               "peer_unverified_detection_rate": _rate(flips.get("peer_unverified_detected"),
                                                       flips.get("peer_unverified_flips")),
               "results": results, "wall_seconds": round(time.perf_counter() - start, 1)}
    print(f"{summary['detected']}/{summary['attacks']} attacks detected; one-bit flips refused: "
          f"{flips.get('flips_detected')}/{flips.get('flips')} verified vs {flips.get('peer_unverified_detected')}/"
          f"{flips.get('peer_unverified_flips')} by main's unverified load")
    rate, peer = summary["detection_rate"], summary["peer_unverified_detection_rate"]
    if rate is not None and peer:
        print(f"ratio of detection rates, verified / unverified load: {rate / peer:.2f}x")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
