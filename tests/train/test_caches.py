"""jaxgluon.train.caches: the data caches of a search have an owner (TrialCaches) and a lifetime."""
import pickle

import numpy as np

from jaxgluon.data import ArraySource, make_eval_loader
from jaxgluon.train import PROCESS_CACHES, TrialCaches, TrialSpec
from jaxgluon.train.caches import SourceCache
from jaxgluon.train.linear_probe import cached_features


def test_source_cache_opens_each_spec_once_and_keeps_the_most_recent():
    opened = []

    def opener(name):
        return lambda: opened.append(name) or (name, name + "-val")

    cache = SourceCache(max_entries=2)
    assert cache.get(("a",), opener("a")) == ("a", "a-val")
    cache.get(("b",), opener("b"))
    cache.get(("a",), opener("a"))          # a hit: a becomes the most recent
    cache.get(("c",), opener("c"))          # evicts b, the least recently used
    cache.get(("a",), opener("a"))
    cache.get(("b",), opener("b"))
    assert opened == ["a", "b", "c", "b"]


def test_a_search_owns_its_caches_and_a_worker_gets_a_new_owner_with_its_sources():
    caches = TrialCaches()
    spec = TrialSpec(train_data="digits:train", image_size=8, batch_size=8)
    train, val = spec.sources(caches)
    assert spec.sources(caches)[0] is train and len(caches.sources) == 1
    assert spec.sources(TrialCaches())[0] is not train         # another owner opens its own
    images = np.zeros((4, 8, 8, 3), np.uint8)
    src = ArraySource(images, [0, 1, 0, 1], ["a", "b"])
    make_eval_loader(src, batch_size=2, image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3, decoded=caches.decoded)
    assert caches.decoded.for_source(src)
    calls = []
    feats = cached_features("k", lambda: calls.append(1) or (np.ones((2, 3), np.float32), np.zeros(2, np.int32)),
                            caches.features)
    assert cached_features("k", lambda: calls.append(1), caches.features) is feats and calls == [1]
    assert len(PROCESS_CACHES.features) == 0 or "k" not in PROCESS_CACHES.features._entries
    copy = pickle.loads(pickle.dumps(caches))      # what a process-pool worker unpickles with the train function
    assert isinstance(copy, TrialCaches) and len(copy.sources) == 1 and len(copy.features) == 0
    assert not copy.decoded.for_source(src)
    caches.clear()
    assert len(caches.sources) == 0 and len(caches.features) == 0 and not caches.decoded.for_source(src)


def test_a_worker_uses_the_drivers_folder_scan_instead_of_scanning_again(tmp_path, caplog):
    from PIL import Image
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    spec = TrialSpec(train_data=str(tmp_path), image_size=8, batch_size=2, val_fraction=0.34)
    caches = TrialCaches()
    with caplog.at_level("WARNING", logger="jaxgluon"):
        train, val = spec.sources(caches)
    assert sum("ignored 1 file" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="jaxgluon"):
        worker_train, worker_val = spec.sources(pickle.loads(pickle.dumps(caches)))
        assert not caplog.records                 # no second scan, so no second warning
        spec.sources(TrialCaches())               # a new owner does scan (the check above could fail)
        assert any("ignored 1 file" in r.getMessage() for r in caplog.records)
    assert worker_train is not train and list(worker_train.indices) == list(train.indices)
    assert worker_train.source.paths == train.source.paths and len(worker_val) == len(val)
