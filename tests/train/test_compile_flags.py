"""XLA compile flags for trial processes (``jaxgluon.train.compile_cache.set_compile_flags``): set only before
the backend starts, never over the user's own choice. Each case runs in a fresh interpreter (the flags are read
once per process)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import os, jax
from jaxgluon.train.compile_cache import backend_started, set_compile_flags
assert not backend_started()
first = set_compile_flags(0)
second = set_compile_flags(0)
flags = os.environ.get("XLA_FLAGS", "")
jax.devices()
print(first, second, flags.count("--xla_gpu_autotune_level"), "--xla_gpu_autotune_level=0" in flags,
      backend_started(), set_compile_flags(0))
"""


def _run(env_flags: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if env_flags is not None:
        env["XLA_FLAGS"] = env_flags
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@pytest.mark.parametrize("user_flags, expected", [
    (None, ["True", "False", "1", "True", "True", "False"]),      # added once; the backend starts with it
    ("--xla_gpu_autotune_level=2", ["False", "False", "1", "False", "True", "False"]),   # the user's level wins
])
def test_autotune_level_is_set_once_before_the_backend_starts(user_flags, expected):
    assert _run(user_flags) == expected
