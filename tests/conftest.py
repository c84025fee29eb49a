"""Shared test fixtures."""
from __future__ import annotations

import fcntl
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


@pytest.fixture(autouse=True)
def _jaxgluon_home(tmp_path_factory, monkeypatch):
    """Keep every test's weight cache out of the user's home."""
    if "JAXGLUON_HOME" not in os.environ:
        monkeypatch.setenv("JAXGLUON_HOME", str(tmp_path_factory.getbasetemp() / "jaxgluon_home"))


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
