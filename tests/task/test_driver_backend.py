"""fit's driver starts its JAX backend as the trials need it: GPU autotuning by the budget
(``train.compile_cache.autotune_level_for``), no GPU memory preallocation when trials run in worker processes, and
the environment restored after for the workers."""
from __future__ import annotations

import importlib
import os

import pytest

from jaxgluon.train.compile_cache import AUTOTUNE_OFF_BELOW_S, GPU_AUTOTUNE_LEVEL, autotune_level_for

fit_module = importlib.import_module("jaxgluon.task.fit")   # the module (jaxgluon.task.fit is also the function)


@pytest.fixture
def fresh_backend(monkeypatch):
    """A driver whose backend has not started: records XLA_FLAGS and XLA_PYTHON_CLIENT_PREALLOCATE at its start."""
    seen = []
    for key in (*fit_module.MEMORY_ENV, "XLA_FLAGS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(fit_module, "backend_started", lambda: False)
    monkeypatch.setattr(fit_module.jax, "devices", lambda *a: seen.append(
        (os.environ.get("XLA_FLAGS"), os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"))) or [])
    return seen


@pytest.mark.parametrize("executor", [None, "process_pool", "ray"])
def test_driver_starts_without_preallocation_and_restores_the_environment(fresh_backend, executor, monkeypatch):
    monkeypatch.setattr("jaxgluon.train.compile_cache.backend_started", lambda: False)
    fit_module._start_driver_backend(executor, autotune_level_for(60))
    assert fresh_backend == [(f"--xla_gpu_autotune_level={GPU_AUTOTUNE_LEVEL}", "false")]
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in os.environ and "XLA_FLAGS" not in os.environ   # as before


def test_in_process_trials_and_user_settings_are_left_alone(fresh_backend, monkeypatch):
    monkeypatch.setattr("jaxgluon.train.compile_cache.backend_started", lambda: False)
    fit_module._start_driver_backend("in_process", None)          # the trials need the driver's memory; long budget
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_autotune_level=3")
    fit_module._start_driver_backend(None, 0)                      # the user chose both
    assert fresh_backend == [(None, None), ("--xla_gpu_autotune_level=3", None)]
    assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.5"


def test_autotuning_is_off_only_for_short_budgets():
    assert autotune_level_for(15) == autotune_level_for(AUTOTUNE_OFF_BELOW_S - 1) == GPU_AUTOTUNE_LEVEL
    assert autotune_level_for(AUTOTUNE_OFF_BELOW_S) is None and autotune_level_for(None) is None
