"""JAX's persistent compilation cache, so a second trial of the same network compiles near-instantly.

The cache lives in ``$JAXGLUON_HOME/jax_cache`` (default ``~/.jaxgluon/jax_cache``). A directory the user already
configured (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update('jax_compilation_cache_dir', ...)``) is left alone.

    from jaxgluon.train import enable_compilation_cache
    enable_compilation_cache()          # before the first trial; returns the directory in use

On a GPU, XLA autotunes every convolution while compiling (by default at level 4: every candidate algorithm is
run and checked against a reference). That is most of a cold start, and it buys faster steps. Measured on an H200
(jax 0.11.2, efficientnet_lite0, 224 px, batch 64, bf16; benchmarks/history/2026-12-04-gpu.md):

- at XLA's default level a cold ``fit`` compiled nothing within 110 s (its three programs compiling at once), and
  level 1 did not finish one train step's compile and 21 steps within 60 s (``benchmarks/gpu_autotune.py``);
- with autotuning off (level 0) all five programs compiled in 15-17 s, the first epoch reported 25 s after the
  call and a 60 s fit trained four trials; but its train step ran at 185 img/s (346 ms), where autotuned
  programs had run epochs at 900-1,100 img/s (bound by JPEG decoding then, so their step is faster still).

So autotuning is turned off only for short budgets: :func:`autotune_level_for` gives ``GPU_AUTOTUNE_LEVEL`` (0)
for a ``time_limits`` under ``AUTOTUNE_OFF_BELOW_S`` and None (XLA's default) otherwise. A process whose JAX backend
has not started -- a trial worker, or ``fit``'s driver -- applies it with :func:`set_compile_flags`, unless the
user's ``XLA_FLAGS`` choose a level. Executables in the persistent cache keep whatever they were compiled with.
"""
from __future__ import annotations

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache

#: XLA's GPU autotuning level for trials of a short budget (0: off; XLA's default is 4); see the module docstring.
GPU_AUTOTUNE_LEVEL = 0
#: Budgets (seconds) under which trials compile with ``GPU_AUTOTUNE_LEVEL``: autotuned compiles of one program set
#: took over 100 s on an H200, a sixth of such a budget or more; longer budgets earn it back in faster steps.
AUTOTUNE_OFF_BELOW_S = 600.0
_AUTOTUNE_FLAG = "--xla_gpu_autotune_level"


def backend_started() -> bool:
    """Whether this process's JAX backends are initialised (XLA_FLAGS are read once, then)."""
    from jax._src import xla_bridge   # no public equivalent; the flags matter only before this turns True
    return bool(xla_bridge.backends_are_initialized())


def autotune_level_for(time_limits: float | None) -> int | None:
    """The GPU autotuning level for trials of a search with ``time_limits`` seconds (None: XLA's default).

    >>> autotune_level_for(60), autotune_level_for(3600), autotune_level_for(None)
    (0, None, None)
    """
    return GPU_AUTOTUNE_LEVEL if time_limits is not None and time_limits < AUTOTUNE_OFF_BELOW_S else None


def set_compile_flags(autotune_level: int | None = GPU_AUTOTUNE_LEVEL) -> bool:
    """Adds ``--xla_gpu_autotune_level=autotune_level`` to ``XLA_FLAGS`` when the backend has not started and the
    user set no level; returns whether it did (harmless without a GPU: CPU builds know the flag)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if autotune_level is None or _AUTOTUNE_FLAG in flags or backend_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {_AUTOTUNE_FLAG}={int(autotune_level)}".strip()
    return True


def default_cache_dir() -> pathlib.Path:
    """``$JAXGLUON_HOME/jax_cache`` (``~/.jaxgluon/jax_cache`` when JAXGLUON_HOME is unset)."""
    home = os.environ.get("JAXGLUON_HOME") or os.path.join("~", ".jaxgluon")
    return pathlib.Path(home).expanduser() / "jax_cache"


def enable_compilation_cache(directory: str | os.PathLike | None = None, *,
                             min_compile_seconds: float = 1.0) -> pathlib.Path:
    """Turns on the persistent cache; returns the cache directory in use.

    Args:
      directory: where compiled executables are kept; default: an already configured directory, else
        :func:`default_cache_dir`.
      min_compile_seconds: only computations that took at least this long to compile are written (JAX's own
        default is 1 s; tiny functions recompile faster than they load).
    """
    configured = jax.config.jax_compilation_cache_dir
    if directory is None and configured:
        path = pathlib.Path(configured)
    else:
        path = pathlib.Path(directory) if directory is not None else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    changed = str(path) != (configured or "")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    if changed:
        # JAX decides once per process whether the cache is used (at the first compilation); reset so that a
        # process which compiled something before (e.g. a searcher's jitted GP) still picks up the directory.
        compilation_cache.reset_cache()
    return path


def disable_compilation_cache() -> None:
    """Turns the persistent cache off again (mainly for tests)."""
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
