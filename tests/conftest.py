"""Shared test fixtures."""
from __future__ import annotations

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
