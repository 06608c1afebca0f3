"""Memory planning for the Monte Carlo engine: estimate before allocating, refuse clearly.

The engine stores, per sample and per point, ``L * k`` backward products
``u^l_c``, ``L`` activations ``phi(h^l)`` and one input column ``x_b``
(``train="all"``), or only ``phi(h^L)`` (``train="readout"``): storage is
``M * P * (L k + L + 1)`` numbers
(M samples, P points, L hidden layers, k outputs). On top come the float32
temporaries of drawing one layer's fields, the optimizer state per sample
and term, and the per-chunk temporaries of one step (a single chunk, the default,
reads the stored fields in place).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

# The free-memory helper is shared with the NNPK's memory plan; it lives in _src.
from infinite_width._src.memory import available_memory

__all__ = ["MemoryEstimate", "estimate_memory", "available_memory", "check_memory"]

_ITEMSIZE = {"float32": 4, "bfloat16": 2}
_GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one solve needs, per device (samples are split over ``devices``).

    Attributes:
      parts: bytes per device of each part (``storage``, ``sampling``,
        ``optimizer_state``, ``step_temporaries``, ``roots``).
      total_bytes: their sum (the peak is below it: sampling temporaries and
        step temporaries never coexist, counted both to keep a margin).
      devices: number of devices the samples are sharded over.
    """

    parts: Dict[str, int]
    devices: int

    @property
    def total_bytes(self) -> int:
        return int(sum(self.parts.values()))

    def describe(self) -> str:
        detail = ", ".join(f"{name} {value / _GIB:.3g} GiB" for name, value in self.parts.items())
        return f"{self.total_bytes / _GIB:.3g} GiB per device ({detail})"


def estimate_memory(
    depth: int,
    out_dim: int,
    n_train: int,
    n_test: int,
    *,
    samples: int,
    replicas: int = 1,
    chunk_size: Optional[int] = None,
    batch_size: Optional[int] = None,
    storage_dtype: str = "float32",
    train: str = "all",
    devices: int = 1,
) -> MemoryEstimate:
    """Bytes per device for a solve of an MLP with ``depth`` hidden layers and ``out_dim`` outputs.

    ``chunk_size`` is the number of samples per replica processed at once in
    a step (default: all of them); ``batch_size`` the minibatch (default: full
    batch).
    """
    if storage_dtype not in _ITEMSIZE:
        raise ValueError(f"unknown storage_dtype {storage_dtype!r}; expected one of {tuple(_ITEMSIZE)}")
    if train not in ("all", "readout"):
        raise ValueError(f"unknown train mode {train!r}; expected 'all' or 'readout'")
    points = n_train + n_test
    k = out_dim
    per_device = -(-samples // devices)
    chunk_total = per_device if chunk_size is None else -(-chunk_size * replicas // devices)
    batch = n_train if batch_size is None else batch_size
    if train == "all":
        stored_per_point = depth * k + depth + 1  # u^l_c, phi(h^l) and the input column x_b
        sampled_per_point = 2 * (k + 1)  # h, z and their float32 products for one layer
        state_per_sample = 3 * (2 * depth + k)  # g, m, v of each shared term and the readout rows
    else:
        stored_per_point = 1
        sampled_per_point = 2
        state_per_sample = 3 * k
    roots = (2 * depth if train == "all" else 1) * points * points * 4
    parts = {
        "storage": per_device * points * stored_per_point * _ITEMSIZE[storage_dtype],
        "sampling": per_device * points * sampled_per_point * 4,
        "optimizer_state": per_device * state_per_sample * 4,
        # float32 per chunk sample: sum_c u_c chi_c and sum coef V Q on all points (P each), the batch
        # rows of u, v gathered for small minibatches (B (k + 2)), and, with several chunks, the copy
        # of the chunk's stored fields that the chunk loop reads.
        "step_temporaries": chunk_total * (2 * points + batch * (k + 2)) * 4
        + (chunk_total * points * stored_per_point * _ITEMSIZE[storage_dtype] if chunk_total < per_device else 0),
        "roots": roots,
    }
    return MemoryEstimate(parts={name: int(value) for name, value in parts.items()}, devices=devices)


def check_memory(estimate: MemoryEstimate, available: int, samples: int) -> None:
    """Raise ``MemoryError`` when ``estimate`` exceeds ``available`` bytes, saying what to change."""
    if estimate.total_bytes <= available:
        return
    fraction = available / max(estimate.total_bytes, 1)
    fitting = int(samples * fraction * 0.9)
    raise MemoryError(
        f"the Adam-limit engine needs about {estimate.describe()}, but only "
        f"{available / _GIB:.3g} GiB is available per device. Reduce samples "
        f"(about {fitting} would fit), use storage_dtype='bfloat16', a smaller chunk_size, "
        f"more devices, or raise max_memory_bytes if the estimate of free memory is wrong."
    )
