"""fit's driver starts its JAX backend without GPU memory preallocation when trials run in worker processes."""
from __future__ import annotations

import importlib
import os

import pytest

fit_module = importlib.import_module("jaxgluon.task.fit")   # the module (jaxgluon.task.fit is also the function)


@pytest.fixture
def fresh_backend(monkeypatch):
    """A driver whose backend has not started: records XLA_PYTHON_CLIENT_PREALLOCATE when it starts."""
    seen = []
    for key in fit_module.MEMORY_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(fit_module, "backend_started", lambda: False)
    monkeypatch.setattr(fit_module, "set_compile_flags", lambda: seen.append("flags"))
    monkeypatch.setattr(fit_module.jax, "devices",
                        lambda *a: seen.append(os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")) or [])
    return seen


@pytest.mark.parametrize("executor", [None, "process_pool", "ray"])
def test_driver_starts_without_preallocation_and_restores_the_environment(fresh_backend, executor):
    fit_module._start_driver_backend(executor)
    assert fresh_backend == ["flags", "false"]    # compile flags set, then the backend started without preallocating
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in os.environ      # workers spawned later preallocate as usual


def test_in_process_trials_and_user_settings_are_left_alone(fresh_backend, monkeypatch):
    fit_module._start_driver_backend("in_process")               # the trials need the driver's memory
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
    fit_module._start_driver_backend(None)                       # the user chose
    assert fresh_backend == ["flags", "flags"] and os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.5"
