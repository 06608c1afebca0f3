"""Free memory, for the memory plans of the kernels and the Adam-like limit (estimate before allocating)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["available_memory", "GIB"]

GIB = 2.0**30


def available_memory(device=None) -> int:
    """Free bytes on ``device`` (a jax device), or in host memory for ``device=None``.

    Accelerators report ``bytes_limit - bytes_in_use`` through
    ``device.memory_stats()``; the CPU (no such statistics) and the host
    report the free physical memory from ``os.sysconf``.
    """
    if device is not None:
        stats = None
        try:
            stats = device.memory_stats()
        except Exception:  # CPU devices raise or return None
            stats = None
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return int(np.iinfo(np.int64).max)
