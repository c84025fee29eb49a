"""Shared test fixtures."""
from __future__ import annotations

import fcntl
import importlib.util
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("JAXGLUON_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """The read-only ../shared folder of real data, weights and benchmarks; skips when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent ({SHARED}); these tests need its real data/weights")
    return SHARED


#: JAX's persistent compilation cache takes a file lock around each read and write only when it has a size limit
#: (``jax._src.lru_cache``); without one a process may read an entry another is still writing (a warning and a
#: recompile). The run's processes share one cache, so it gets a limit no run reaches: 64 GiB.
_CACHE_MAX_BYTES = 64 << 30


def _run_temp(tmp_path_factory) -> pathlib.Path:
    """This run's temp folder, common to its xdist workers (xdist gives each worker <run's basetemp>/<worker>)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@pytest.fixture(scope="session", autouse=True)
def _jaxgluon_home(tmp_path_factory):
    """Keep every test's weight cache out of the user's home, in one ``$JAXGLUON_HOME`` per run that every process
    of the run shares: both xdist workers, their trial workers, the README snippets and the notebook's kernel. So
    the oneDNN shim is compiled once, pretrained weights are converted once, and a program one process compiled
    (over 1 s) is loaded from JAX's persistent compilation cache by the others, the test processes included.
    Tests that need an empty home set their own (``fresh_home`` in tests/models/test_registry.py)."""
    import jax

    with pytest.MonkeyPatch.context() as mp:
        if "JAXGLUON_HOME" not in os.environ:
            mp.setenv("JAXGLUON_HOME", str(_run_temp(tmp_path_factory) / "jaxgluon_home"))
        if importlib.util.find_spec("filelock") is not None and "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
            mp.setenv("JAX_COMPILATION_CACHE_MAX_SIZE", str(_CACHE_MAX_BYTES))     # the processes this run starts
            jax.config.update("jax_compilation_cache_max_size", _CACHE_MAX_BYTES)   # this one (jax is imported)
        from jaxgluon.train import enable_compilation_cache
        enable_compilation_cache()   # $JAXGLUON_HOME/jax_cache, as every trial process of the run uses
        yield


#: The files that took longest (2026-12-04, two xdist workers on 2 cores), longest first: ``--dist loadfile`` hands
#: them out first, so the files left for the end of a run are short and neither worker waits long for the other.
#: Only an order: a file missing here runs anyway, in collection order after these.
SLOWEST_FILES = (
    "tests/test_readme.py",
    "tests/models/test_onednn_vmap.py",
    "tests/train/test_population.py",
    "tests/models/test_onednn.py",
    "tests/models/test_registry.py",
    "tests/tune/test_ray_executor.py",
    "tests/tune/test_reliability.py",
    "tests/models/test_layers.py",
    "tests/train/test_steps.py",
    "tests/train/test_saved_model.py",
)


def pytest_configure(config):
    # pytest-xdist hands out files by descending test count (--loadscope-reorder, its default), which puts files of
    # a few long tests last: keep the order pytest_collection_modifyitems gives instead.
    if getattr(config.option, "loadscopereorder", None):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Orders files for xdist: SLOWEST_FILES first, then the others as collected, and last the files with
    ``alone`` tests, run once both workers' caches are warm (the other worker, left without files at the end of
    the run, then idles only while those tests need it idle anyway). In a file the ``alone`` tests come after its
    other tests; the rest keep their order."""
    alone = {item.path for item in items if item.get_closest_marker("alone") is not None}
    first = {(REPO / name).resolve(): rank for rank, name in enumerate(SLOWEST_FILES)}
    collected = {path: i for i, path in enumerate(dict.fromkeys(item.path for item in items))}

    def key(item):
        group = 0 if item.path in first else 2 if item.path in alone else 1
        return group, first.get(item.path, 0), collected[item.path], item.get_closest_marker("alone") is not None

    items.sort(key=key)


@pytest.fixture(autouse=True)
def _no_idle_workers(monkeypatch):
    """Each search stops its worker processes (``process_pool.WORKER_IDLE_S``): a test's worker counts and pids
    do not depend on which test ran before; the reuse itself has its own test in tests/tune/test_process_pool.py."""
    if "JAXGLUON_WORKER_IDLE_S" not in os.environ:
        monkeypatch.setenv("JAXGLUON_WORKER_IDLE_S", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under pytest-xdist (the test command's ``-n 2``) a test marked ``alone`` runs while no other worker runs a
    test: its time-bounded fit must not share the 2 CPU cores with another test's compiles. Every other test holds a
    shared lock on one file in the workers' common temp folder, an ``alone`` test the exclusive lock, from its
    fixtures' setup (module-scoped ones included) to their teardown. Without xdist this does nothing."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    root = pathlib.Path(item.config.option.basetemp).parent   # xdist gives each worker <run's basetemp>/<worker>
    exclusive = item.get_closest_marker("alone") is not None
    with open(root / "alone.lock", "a") as lock:   # closing it releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
