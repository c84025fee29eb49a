"""How many members fit: the free memory of a device and the memory a compiled population program needs.

``jaxgluon.train.population`` checks a requested ``population_size`` against the compiled program's memory
analysis before any member trains, and ``population_size='auto'`` takes as many as fit.
"""
from __future__ import annotations

import os
from typing import Any

import jax

#: ``population_size='auto'`` on CPU: at most this many members (2 cores are busy long before memory runs out).
CPU_AUTO_MAX_MEMBERS = 8
#: Fraction of the free device memory a population may plan to use.
MEMORY_FRACTION = 0.8


def free_device_memory(device: jax.Device) -> int:
    """Bytes free on ``device``: the allocator's limit minus what is in use (GPU/TPU), or, on CPU (no allocator
    statistics), the host's available physical memory."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def compiled_bytes(compiled: Any) -> int | None:
    try:
        mem = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 -- some backends have no memory analysis
        return None
    if mem is None:
        return None
    return int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
               - mem.alias_size_in_bytes)


def auto_capacity(per_member_bytes: int, free_bytes: int, platform: str) -> int:
    """``population_size='auto'``: as many members as ``MEMORY_FRACTION`` of the free memory holds, at least one;
    on CPU at most ``CPU_AUTO_MAX_MEMBERS`` (the cores, not memory, are the limit there), elsewhere at most 1024.

    >>> auto_capacity(2**20, 2**30, 'gpu'), auto_capacity(2**20, 2**30, 'cpu'), auto_capacity(2**31, 2**30, 'gpu')
    (819, 8, 1)
    """
    fit = int(MEMORY_FRACTION * free_bytes // max(int(per_member_bytes), 1))
    return max(1, min(fit, CPU_AUTO_MAX_MEMBERS if platform == "cpu" else 1024))
