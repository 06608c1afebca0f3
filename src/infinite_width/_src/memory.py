"""Memory available to a computation, for the plans that refuse what cannot fit before allocating."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["available_memory", "GIB"]

GIB = 2.0**30

_MEMINFO = "/proc/meminfo"


def _linux_available_bytes():
    """``MemAvailable`` of /proc/meminfo in bytes, or None where there is no such line (not Linux, old kernel)."""
    try:
        with open(_MEMINFO) as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    value, unit = line.split()[1:3]
                    return int(value) * {"kB": 2**10}[unit]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return None


def available_memory(device=None) -> int:
    """Bytes that a computation on ``device`` (a jax device; None means the CPU) can still allocate.

    Accelerators report ``bytes_limit - bytes_in_use`` through
    ``device.memory_stats()``. On the CPU it is Linux's ``MemAvailable``
    (free memory plus the page cache and other memory the kernel can reclaim
    without swapping), not ``MemFree``: a machine that has read large files
    has little free but much available memory. Elsewhere it falls back to the
    free physical pages (``os.sysconf``), and to no limit if even that is unknown.

    Args:
      device: a jax device, or None for the CPU.
    """
    if device is not None:
        try:
            stats = device.memory_stats()
        except Exception:  # CPU devices raise or return None
            stats = None
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    available = _linux_available_bytes()
    if available is not None:
        return available
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return int(np.iinfo(np.int64).max)
