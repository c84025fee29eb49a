"""JAX's persistent compilation cache, so a second trial of the same network compiles near-instantly.

The cache lives in ``$JAXGLUON_HOME/jax_cache`` (default ``~/.jaxgluon/jax_cache``). A directory the user already
configured (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update('jax_compilation_cache_dir', ...)``) is left alone.

    from jaxgluon.train import enable_compilation_cache
    enable_compilation_cache()          # before the first trial; returns the directory in use
"""
from __future__ import annotations

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache


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
