"""Memory planning for the Monte Carlo engine: estimate every part before allocating, refuse clearly.

A run goes through three phases (docs/theory.md, section 7); its peak is the
largest of them:

1. *roots*: the P x P float64 kernels of the fields drawn from roots
   (``K^l``, l >= 2, and ``W_std_{l+1}^2 B^{l+1}``, l < L), the float32
   layer kernels of one block of rows while they are computed, and the
   float64 factors;
2. *sampling*: the stored fields, the roots (float32), and the transients
   of drawing one replica: its latent normals (r C numbers per field, k r C
   for a ``z`` field, plus their random bits) and one block of rows;
3. *steps*: the stored fields, the accumulators and optimizer state per
   sample and term, the gradients and directions of a step, and the
   temporaries of one block of rows (gathered fields, ``phi``, ``phi'``,
   the contractions), or of the predictions on all points at a record.

Storage is ``M P (L + (L - 1) k)`` numbers (``h^l`` for every layer, ``z^l_c``
below the last) plus ``M (k + 1)``; ``train="readout"`` stores ``h^L``
only (and ``h^1 .. h^{L-1}`` are then not needed for L = 1 only).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Mapping, Optional

import numpy as np

__all__ = ["MemoryEstimate", "estimate_memory", "available_memory", "check_memory", "largest_fitting_samples"]

_ITEMSIZE = {"float32": 4, "bfloat16": 2}
_GIB = 2.0**30
_FLOAT = 4

#: float32 layer-kernel block (bytes) while the field kernels are computed.
KERNEL_BLOCK_BYTES = 1 << 27
#: float32 block of rows (bytes) while fields are drawn.
DRAW_BLOCK_BYTES = 1 << 26


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one solve needs per device (samples are split over ``devices``).

    Attributes:
      parts: bytes per device of each part: ``storage``, ``roots``,
        ``root_computation`` (phase 1), ``sampling`` (phase 2 transients),
        ``state`` (accumulators, optimizer state, gradients) and
        ``step_temporaries`` (phase 3 transients).
      devices: number of devices the samples are sharded over.
    """

    parts: Dict[str, int]
    devices: int

    @property
    def phases(self) -> Dict[str, int]:
        p = self.parts
        return {
            "roots": p["root_computation"],
            "sampling": p["storage"] + p["roots"] + p["sampling"],
            "steps": p["storage"] + p["state"] + p["step_temporaries"],
        }

    @property
    def peak_bytes(self) -> int:
        """The largest phase: what must fit."""
        return int(max(self.phases.values()))

    def describe(self) -> str:
        detail = ", ".join(f"{name} {value / _GIB:.3g} GiB" for name, value in self.parts.items())
        return f"{self.peak_bytes / _GIB:.3g} GiB per device at its peak ({detail})"


def _field_counts(depth: int, out_dim: int, train: str):
    """(h fields, z fields, shared terms, stored numbers per point) of a run."""
    if train == "readout":
        return 1, 0, 0, 1
    h, z = depth, depth - 1
    return h, z, 2 * depth, h + z * out_dim


def estimate_memory(
    depth: int,
    out_dim: int,
    n_train: int,
    n_test: int,
    *,
    samples: int,
    input_dim: int,
    replicas: int = 1,
    ranks: Optional[Mapping[str, int]] = None,
    batch_size: Optional[int] = None,
    block_rows: int = 64,
    storage_dtype: str = "float32",
    train: str = "all",
    optimizer_state: int = 2,
    devices: int = 1,
) -> MemoryEstimate:
    """Bytes per device of a solve of an MLP with ``depth`` hidden layers and ``out_dim`` outputs.

    ``ranks``: columns of each root (``{"h2": r, "z1": r, ...}``; default
    all P, exact roots); ``batch_size``: the minibatch (default full batch);
    ``block_rows``: points per block in a step; ``optimizer_state``: numbers
    of optimizer state per gradient entry (Adam 2, momentum 1, SGD/sign 0).
    """
    if storage_dtype not in _ITEMSIZE:
        raise ValueError(f"unknown storage_dtype {storage_dtype!r}; expected one of {tuple(_ITEMSIZE)}")
    if train not in ("all", "readout"):
        raise ValueError(f"unknown train mode {train!r}; expected 'all' or 'readout'")
    points, k = n_train + n_test, out_dim
    per_device = -(-samples // devices)
    per_replica_device = -(-per_device // replicas)
    h_fields, z_fields, shared_terms, stored_per_point = _field_counts(depth, k, train)
    kernel_names = [f"h{l}" for l in range(2, depth + 1)] + [f"z{l}" for l in range(1, depth)]
    if train == "readout":
        kernel_names = [f"h{depth}"] if depth >= 2 else []
    ranks = {name: points for name in kernel_names} | dict(ranks or {})
    root_columns = sum(min(ranks.get(name, points), points) for name in kernel_names)
    first_layer = input_dim + 1 if (train == "all" or depth == 1) else 0
    kernel_matrices = len(kernel_names)
    parts = {
        "storage": per_device * (points * stored_per_point * _ITEMSIZE[storage_dtype] + (k + 1) * _FLOAT),
        "roots": (root_columns + first_layer) * points * _FLOAT,
        # float64 kernels (factorized in place), one float64 factor and its triangle, the layer-kernel block.
        "root_computation": kernel_matrices * points * points * 8 + 3 * points * min(points, max(ranks.values(), default=0)) * 8
        + (3 * KERNEL_BLOCK_BYTES if kernel_matrices else 0),
        # Latent normals of the widest field of one replica (and their random bits), one block of rows.
        "sampling": 2 * per_replica_device * max(input_dim + 1, max(
            [ranks[n] * (k if n[0] == "z" else 1) for n in kernel_names], default=0)) * _FLOAT
        + 2 * DRAW_BLOCK_BYTES,
        # Accumulator, optimizer state, gradient, direction and update per entry.
        "state": per_device * (shared_terms + k) * (optimizer_state + 4) * _FLOAT,
        "step_temporaries": _step_temporaries(per_device, k, h_fields, z_fields, points, batch_size or n_train,
                                              block_rows),
    }
    return MemoryEstimate(parts={name: int(value) for name, value in parts.items()}, devices=devices)


def _step_temporaries(per_device: int, k: int, h_fields: int, z_fields: int, points: int, batch: int,
                      block_rows: int) -> int:
    """float32 temporaries of one block of rows: gathered fields, phi, phi', the contractions over outputs."""
    per_row = per_device * (z_fields * 2 * k + h_fields * 3 + 6 + k)
    block = min(block_rows, max(batch, points)) * per_row
    predictions = 2 * points * k * _FLOAT * max(1, per_device // max(per_device, 1))
    return int(block * _FLOAT + predictions)


def available_memory(device=None) -> int:
    """Free bytes on ``device`` (a jax device; default the first one).

    Accelerators report ``bytes_limit - bytes_in_use`` through
    ``device.memory_stats()``; on the CPU (no such statistics) it is the
    available physical memory (``MemAvailable`` of ``/proc/meminfo``, else
    ``os.sysconf``).
    """
    if device is not None:
        try:
            stats = device.memory_stats()
        except Exception:  # CPU devices raise or return None
            stats = None
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return int(np.iinfo(np.int64).max)


def largest_fitting_samples(estimate_for, available: int, replicas: int, devices: int, samples: int) -> int:
    """The largest multiple of ``replicas * devices`` up to ``samples`` whose estimate fits (0 if none).

    ``estimate_for(m)``: the :class:`MemoryEstimate` of ``m`` samples (its
    peak grows with m).
    """
    unit = replicas * devices
    low, high = 0, samples // unit
    while low < high:
        middle = (low + high + 1) // 2
        if estimate_for(middle * unit).peak_bytes <= available:
            low = middle
        else:
            high = middle - 1
    return low * unit


def check_memory(estimate: MemoryEstimate, available: int, fitting_samples: int, unit: int) -> None:
    """Raise ``MemoryError`` when ``estimate`` exceeds ``available`` bytes, saying what would fit."""
    if estimate.peak_bytes <= available:
        return
    if fitting_samples > 0:
        advice = f"samples={fitting_samples} would fit (a multiple of replicas x devices = {unit})"
    else:
        advice = (f"no sample count fits: even {unit} samples (replicas x devices) need more; "
                  "use fewer points or a smaller rank")
    raise MemoryError(
        f"the Adam-limit engine needs about {estimate.describe()}, but only {available / _GIB:.3g} GiB is "
        f"available per device. {advice}; or use storage_dtype='bfloat16', a smaller rank, more devices, "
        "or raise max_memory_bytes if the estimate of free memory is wrong."
    )
