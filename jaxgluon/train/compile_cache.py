"""JAX's persistent compilation cache, so a second trial of the same network compiles near-instantly.

The cache lives in ``$JAXGLUON_HOME/jax_cache`` (default ``~/.jaxgluon/jax_cache``). A directory the user already
configured (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update('jax_compilation_cache_dir', ...)``) is left alone.

    from jaxgluon.train import enable_compilation_cache
    enable_compilation_cache()          # before the first trial; returns the directory in use

On a GPU, XLA autotunes every convolution while compiling (by default at level 4: every candidate algorithm is
run and checked against a reference). For a trial that is all of a cold start: on an H200 (jax 0.11.2) a cold
``fit`` of efficientnet_lite0 at 224 px compiled nothing within 110 s at the default level, and with autotuning
off its five programs compiled in 17.4 s, the first epoch reported 25.8 s after the call, and the 60 s fit trained
two trials (benchmarks/history/2026-12-04-gpu.md). So a process whose JAX backend is not started yet -- a trial
worker -- starts it with ``--xla_gpu_autotune_level=GPU_AUTOTUNE_LEVEL`` (:func:`set_compile_flags`) unless the
user's ``XLA_FLAGS`` choose a level; cuDNN's heuristics then pick the algorithms. Executables in the persistent
cache keep whatever they were compiled with.
"""
from __future__ import annotations

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache

#: XLA's GPU autotuning level for trial processes (0: off; XLA's default is 4); see the module docstring.
GPU_AUTOTUNE_LEVEL = 0
_AUTOTUNE_FLAG = "--xla_gpu_autotune_level"


def backend_started() -> bool:
    """Whether this process's JAX backends are initialised (XLA_FLAGS are read once, then)."""
    from jax._src import xla_bridge   # no public equivalent; the flags matter only before this turns True
    return bool(xla_bridge.backends_are_initialized())


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
