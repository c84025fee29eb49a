"""What the trials of a search reuse, held by an owner with a lifetime: :class:`TrialCaches`.

Data caches (results computed from the data; an owner frees them):

- ``sources`` (:class:`SourceCache`): the (train, validation) sources per data spec. Holding the source objects
  is what lets later trials find the images decoded for them.
- ``decoded`` (``jaxgluon.data.DecodedImages``): decoded images per source object, stage and image size.
- ``features`` (``linear_probe.FeatureCache``): linear-probe features per (net, weights, dtype, image size, data).

Owner and lifetime. ``fit`` makes one ``TrialCaches()`` per call and passes it down:
``functools.partial(train_trial, spec=spec, caches=caches)`` and ``spec.sources(caches)``. In the calling
process (the in-process executor) the caches live as long as that call holds them, and are freed when it
returns. A ``TrialCaches`` pickles as a new owner that holds only the opened sources: each source's scan (file
paths, labels, image sizes, skipped and ignored files), not decoded images or features. So each process-pool or
Ray worker, which unpickles the trial function once when it starts, holds a fresh owner that its trials share for
the worker's life (the pool belongs to one tune call), and it does not scan the driver's folders again (checking
every file, and logging the driver's warnings about ignored or unreadable files once more per worker). :data:`PROCESS_CACHES` is the process-level owner for callers that pass none: a direct
``train_trial(config, reporter, spec)``, ``PopulationTrial``, ``TrialSpec.sources()``. It lives as long as the
process, and ``PROCESS_CACHES.clear()`` frees it.

Compile registries are not listed here on purpose. They are process-level by design: ``jax.jit`` keeps its
executables per process, and compile-once across trials needs the jitted functions to outlive any one call.
They are ``train.steps.PROGRAMS`` (the jitted train/eval/feature steps per mesh),
``models.registry.INITIALIZERS`` (one jitted random init per architecture) and ``models.registry.WEIGHTS``
(converted pretrained weights per weight file, read-only). Each has ``clear()``.
"""
from __future__ import annotations

from typing import Any, Callable

from jaxgluon.data import DecodedImages
from jaxgluon.data.loader import DECODED
from jaxgluon.train.linear_probe import FeatureCache

#: Data specs whose sources a :class:`SourceCache` keeps (most recently used last).
MAX_SOURCE_SPECS = 4


class SourceCache:
    """The (train, validation) sources of the last :data:`MAX_SOURCE_SPECS` data specs, opened once each."""

    def __init__(self, max_entries: int = MAX_SOURCE_SPECS):
        self.max_entries = max_entries
        self._entries: dict[tuple, tuple[Any, Any]] = {}

    def get(self, key: tuple, open_sources: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
        """``open_sources()`` once per ``key`` (while it stays among the most recent)."""
        if key not in self._entries:
            self._entries[key] = open_sources()
            while len(self._entries) > self.max_entries:
                self._entries.pop(next(iter(self._entries)))
        else:
            self._entries[key] = self._entries.pop(key)   # most recently used last
        return self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class TrialCaches:
    """The data caches one search's trials share (module doc): ``sources``, ``decoded``, ``features``.

    >>> caches = TrialCaches()
    >>> _ = caches.sources.get(("spec",), lambda: ("train", "val"))
    >>> import pickle; copy = pickle.loads(pickle.dumps(caches))   # what a worker process unpickles
    >>> copy.sources.get(("spec",), lambda: "opened again"), len(copy.features)   # the sources travel, not the rest
    (('train', 'val'), 0)
    """

    def __init__(self, sources: SourceCache | None = None, decoded: DecodedImages | None = None,
                 features: FeatureCache | None = None):
        self.sources = SourceCache() if sources is None else sources
        self.decoded = DecodedImages() if decoded is None else decoded
        self.features = FeatureCache() if features is None else features

    def clear(self) -> None:
        """Frees everything held (the next trial opens, decodes and extracts again)."""
        self.sources.clear()
        self.decoded.clear()
        self.features.clear()

    def __reduce__(self) -> tuple:
        return TrialCaches, (self.sources,)   # a new owner with these opened sources only (module doc)

    def __repr__(self) -> str:
        return f"TrialCaches(sources={len(self.sources)}, features={len(self.features)})"


PROCESS_CACHES = TrialCaches(decoded=DECODED)
"""The process-level owner for callers that pass no caches; its ``decoded`` is ``jaxgluon.data.loader.DECODED``,
which loaders built without ``decoded=`` share."""
