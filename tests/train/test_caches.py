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


def test_a_search_owns_its_caches_and_a_worker_gets_an_empty_owner():
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
    assert isinstance(copy, TrialCaches) and len(copy.sources) == 0 and len(copy.features) == 0
    caches.clear()
    assert len(caches.sources) == 0 and len(caches.features) == 0 and not caches.decoded.for_source(src)
