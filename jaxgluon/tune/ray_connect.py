"""Connecting to a Ray cluster and checking what a trial asks of it, for ``jaxgluon.tune.ray_executor``.

``ray`` is imported lazily, so jaxgluon works without it; a missing package or an unreachable cluster is an error
that names the fix.

    >>> check_resources({'num_cpus': 2, 'num_devices': 1, 'node2': 0.5})
    {'num_cpus': 2.0, 'num_gpus': 1.0, 'resources': {'node2': 0.5}}
"""
from __future__ import annotations

import math
import numbers
import os
import socket
from typing import Any

INSTALL_HINT = "pip install 'jaxgluon[ray]'"
START_HINT = ("start one with `ray start --head` on this machine (then ray_address='auto'), pass its address "
              "('<host>:6379' from `ray start --head`, or 'ray://<host>:10001' for Ray Client), or "
              "ray_address=None to start a local Ray instance in this process")
CONNECT_CHECK_S = 5.0  # a TCP probe of a concrete address before ray.init (which retries for a minute)
DEFAULT_MAX_FAILURES = 3


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError naming the fix."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"executor='ray' needs the ray package, which is not installed ({err}); install it with "
                          f"`{INSTALL_HINT}`") from err
    return ray


def check_resources(resources_per_trial: dict | None) -> dict:
    """Ray resources per trial: ``num_cpus`` (default 1), ``num_gpus`` (``num_devices`` is accepted for it,
    default 0), ``memory`` (bytes) and custom resources (any other key, e.g. ``{'node2': 1}``); every value a
    number >= 0. Returns ``{'num_cpus', 'num_gpus', 'memory' (when given), 'resources': {custom}}``."""
    given = dict(resources_per_trial or {})
    if "num_devices" in given:
        if "num_gpus" in given:
            raise ValueError("resources_per_trial has both 'num_gpus' and 'num_devices'; give one (the GPUs per trial)")
        given["num_gpus"] = given.pop("num_devices")
    for key, value in given.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"resources_per_trial keys must be resource names, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"resources_per_trial[{key!r}] must be a number >= 0, got {value!r}")
    out: dict[str, Any] = {"num_cpus": float(given.pop("num_cpus", 1)), "num_gpus": float(given.pop("num_gpus", 0))}
    if "memory" in given:
        out["memory"] = float(given.pop("memory"))
    out["resources"] = {k: float(v) for k, v in given.items()}
    if out["num_cpus"] == 0 and out["num_gpus"] == 0 and not out["resources"]:
        raise ValueError("resources_per_trial asks for nothing (num_cpus=0, num_gpus=0); a trial needs a CPU or a GPU")
    return out


def check_max_failures(max_failures: Any) -> int:
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise ValueError(f"max_failures must be an int >= 0 (retries of a trial whose actor or node dies), "
                         f"got {max_failures!r}")
    return max_failures


def connect(address: str | None) -> bool:
    """Connect this process to Ray (``ray.init``) unless it already is; True when this call connected.

    ``address``: None (a running local cluster if there is one, else a new local instance), 'auto' (a running
    cluster, else an error), '<host>:<port>' or 'ray://<host>:<port>'. An unreachable cluster raises
    ConnectionError naming the fix within about ``CONNECT_CHECK_S`` seconds.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address not in (None, "auto", "local"):
        _probe(address)
    try:
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=True)
    except ConnectionError as err:
        raise ConnectionError(f"could not connect to a Ray cluster at ray_address={address!r} ({err}); "
                              f"{START_HINT}") from err
    return True


def _probe(address: str) -> None:
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"ray_address must be None, 'auto', '<host>:<port>' or 'ray://<host>:<port>', got "
                         f"{address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_CHECK_S):
            pass
    except OSError as err:
        raise ConnectionError(f"no Ray cluster answers at ray_address={address!r} ({type(err).__name__}: {err}); "
                              f"{START_HINT}") from err


def actor_env(num_cpus: float, num_gpus: float) -> dict[str, str]:
    """Environment an actor sets before it loads the trial function: BLAS/OpenMP threads = its CPUs, XLA's CPU
    backend single-threaded with one CPU, and no GPUs visible when it asked for none (Ray sets
    ``CUDA_VISIBLE_DEVICES`` to the GPUs it assigned otherwise)."""
    threads = str(max(1, int(math.ceil(num_cpus))))
    env = {key: threads for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if num_cpus <= 1:
        flags = os.environ.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    if num_gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env
