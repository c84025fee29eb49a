"""How the GP math should run: float64 and a single-threaded BLAS.

JAX's CPU Cholesky and triangular solves call LAPACK from scipy's OpenBLAS. On the small matrices of a GP,
OpenBLAS's worker threads only spin: on a busy 2-core machine a 256 x 256 Cholesky took ~800 ms with its default
threads and ~1 ms with one. ``gp_runtime()`` limits BLAS to one thread (threadpoolctl) and enables float64 for
the duration of a GP computation, leaving the rest of the process as it was.

    with gp_runtime():
        params = fit_hyperparameters(X, y, mask, starts)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import jax
import jax.numpy as jnp
from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


@contextlib.contextmanager
def gp_runtime() -> Iterator[None]:
    global _controller
    if _controller is None:
        # jax loads its LAPACK (scipy's OpenBLAS) on the first linalg call; the controller only sees libraries
        # already loaded, so make that call first.
        with jax.enable_x64(True):
            jax.block_until_ready(jnp.linalg.cholesky(jnp.eye(2)))
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"), jax.enable_x64(True):
        yield
