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
below the last) plus ``M (k + 1)``; ``readout_only=True`` stores ``h^L``
only (and ``h^1 .. h^{L-1}`` are then not needed for L = 1 only).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional


from infinite_width._src.memory import available_memory

__all__ = ["MemoryEstimate", "estimate_memory", "estimate_conv_memory", "available_memory", "check_memory",
           "largest_fitting_samples", "CONV_DRAW_BLOCK_BYTES"]

_ITEMSIZE = {"float32": 4, "bfloat16": 2}
_GIB = 2.0**30
_FLOAT = 4

KERNEL_BLOCK_BYTES = 1 << 27
"""float32 layer-kernel block (bytes) while the field kernels are computed."""
DRAW_BLOCK_BYTES = 1 << 26
"""float32 block of rows (bytes) while fields are drawn."""
LATENT_CHUNK_ROWS = 1024
"""Latent rows drawn at once (fields.LATENT_CHUNK_ROWS)."""
CONV_DRAW_BLOCK_BYTES = 1 << 28
"""float32 temporaries of one block of points while a conv net's features are drawn (conv_fields)."""
RUNTIME_BYTES = 1 << 26
"""Compilation and runtime buffers, counted in every phase (measured: tens of MB)."""


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one run of the engine needs per device (samples are split over ``devices``).

    Attributes:
      parts: bytes per device of each part: ``storage``, ``roots``,
        ``root_computation`` (phase 1), ``sampling`` (phase 2 transients),
        ``state`` (accumulators, optimizer state, gradients),
        ``step_temporaries`` (phase 3 transients) and ``runtime``
        (compilation and runtime buffers, in every phase).
      devices: number of devices the samples are sharded over.
    """

    parts: Dict[str, int]
    devices: int

    @property
    def phases(self) -> Dict[str, int]:
        p = self.parts
        return {
            "roots": p["root_computation"] + p["runtime"],
            "sampling": p["storage"] + p["roots"] + p["sampling"] + p["runtime"],
            "steps": p["storage"] + p["state"] + p["step_temporaries"] + p["runtime"],
        }

    @property
    def peak_bytes(self) -> int:
        """The largest phase: what must fit."""
        return int(max(self.phases.values()))

    def describe(self) -> str:
        detail = ", ".join(f"{name} {value / _GIB:.3g} GiB" for name, value in self.parts.items())
        return f"{self.peak_bytes / _GIB:.3g} GiB per device at its peak ({detail})"


def _fields(depth: int, out_dim: int, readout_only: bool):
    """(stored h fields, stored z fields, u layers, root kernels, shared terms) of a run."""
    if readout_only:
        return 1, 0, 0, (1 if depth >= 2 else 0), 0
    return depth, depth - 1, depth, 2 * (depth - 1), 2 * depth


def estimate_memory(
    depth: int,
    out_dim: int,
    n_train: int,
    n_test: int,
    *,
    samples: int,
    input_dim: int,
    replicas: int = 1,
    root_width: Optional[int] = None,
    batch_size: Optional[int] = None,
    block_rows: int = 64,
    storage_dtype: str = "float32",
    readout_only: bool = False,
    optimizer_state: int = 2,
    devices: int = 1,
) -> MemoryEstimate:
    """Bytes per device of a run of the engine on an MLP with ``depth`` hidden layers and ``out_dim`` outputs.

    Args:
      depth: L, the hidden layers.
      out_dim: k, the outputs.
      n_train: N, the training points.
      n_test: Nt, the test points.
      samples: M, the Monte Carlo samples.
      input_dim: d, the input dimension.
      replicas: R, the independent replicas.
      root_width: columns of each root of a P x P kernel (default P, exact;
        with low-rank roots ``rank + features + 1``).
      batch_size: the minibatch (default full batch).
      block_rows: points per block in a step.
      storage_dtype: ``"float32"`` or ``"bfloat16"`` for the stored fields.
      readout_only: only the readout trains (fewer fields).
      optimizer_state: numbers of optimizer state per gradient entry (Adam 2, momentum 1,
        SGD and sign 0).
      devices: devices the samples are sharded over.
    """
    if storage_dtype not in _ITEMSIZE:
        raise ValueError(f"unknown storage_dtype {storage_dtype!r}; expected one of {tuple(_ITEMSIZE)}")
    points, k = n_train + n_test, out_dim
    width = points if root_width is None else min(root_width, points)
    per_device = -(-samples // devices)
    per_replica = -(-per_device // replicas)
    h_fields, z_fields, u_layers, root_kernels, shared_terms = _fields(depth, k, readout_only)
    first_layer = input_dim + 1 if 1 <= h_fields and (not readout_only or depth == 1) else 0
    # Latent normals of one replica: d + 1 for h^1, one row per root column for h^l, k per column for z^l.
    latent_rows = first_layer + (h_fields - (1 if first_layer else 0)) * width + z_fields * k * width + k
    truncated = width < points
    parts = {
        "storage": per_device * (points * (h_fields + z_fields * k) * _ITEMSIZE[storage_dtype] + (k + 1) * _FLOAT),
        # float32 roots on the host (one set per replica when truncated) and on the device.
        "roots": points * _FLOAT * (first_layer + root_kernels * width) * (2 + (replicas if truncated else 0)),
        # The float64 field kernels, one float64 exact root, the layer kernels of one block of rows.
        "root_computation": (root_kernels + 1) * points * points * 8 + (2 * KERNEL_BLOCK_BYTES if root_kernels else 0),
        # One replica's latent normals (rows padded to whole chunks), the random-number temporaries of one
        # chunk of rows, one block of rows and its storage-dtype copy.
        "sampling": (-(-latent_rows // LATENT_CHUNK_ROWS) * LATENT_CHUNK_ROWS + 4 * LATENT_CHUNK_ROWS)
        * per_replica * _FLOAT + 2 * DRAW_BLOCK_BYTES,
        # Accumulators, optimizer state, gradients, directions and the updated accumulators.
        "state": per_device * (shared_terms + k) * (optimizer_state + 4) * _FLOAT,
        # One block of rows: gathered fields in float32, phi and phi', sum_c chi_c u_c, weights, x_b.
        "step_temporaries": min(block_rows, max(batch_size or n_train, points)) * per_device * _FLOAT
        * (3 * h_fields + 2 * z_fields * k + u_layers + 4),
        "runtime": RUNTIME_BYTES,
    }
    return MemoryEstimate(parts={name: int(value) for name, value in parts.items()}, devices=devices)


def largest_fitting_samples(estimate_for, available: int, replicas: int, devices: int, samples: int) -> int:
    """The largest multiple of ``replicas * devices`` up to ``samples`` whose estimate fits (0 if none).

    Args:
      estimate_for: ``estimate_for(m)`` is the [`MemoryEstimate`][infinite_width.limits.adam_limit.MemoryEstimate]
        of ``m`` samples (its peak grows with m).
      available: bytes available per device.
      replicas: R, the independent replicas.
      devices: devices the samples are sharded over.
      samples: the requested samples, the largest tried.
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
    """Raise ``MemoryError`` when ``estimate`` exceeds ``available`` bytes, saying what would fit.

    Args:
      estimate: the run's [`MemoryEstimate`][infinite_width.limits.adam_limit.MemoryEstimate].
      available: bytes available per device.
      fitting_samples: the largest sample count that fits (from
        [`largest_fitting_samples`][infinite_width.limits.adam_limit.memory.largest_fitting_samples]; 0 if none).
      unit: the sample counts must be multiples of this (replicas times devices).
    """
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


def estimate_conv_memory(
    layout,
    n_train: int,
    *,
    samples: int,
    root_widths: Dict[str, int],
    features: int = 0,
    batch_size: Optional[int] = None,
    block_rows: int = 64,
    storage_dtype: str = "float32",
    optimizer_state: int = 2,
    devices: int = 1,
) -> MemoryEstimate:
    """Bytes per device of a run of the engine on a conv net (docs/theory.md, section 10).

    Args:
      layout: the run's `infinite_width.limits.adam_limit.conv_fields.ConvLayout` (network, terms, points,
        replicas).
      n_train: training points (the rest of ``layout.points`` are test points).
      samples: total Monte Carlo samples M.
      root_widths: ``{field: columns}`` of each field's root (at most ``P |S|``; ``rank + features + 1``
        when truncated).
      features: random features of the residual per replica (truncated roots).
      batch_size: the minibatch (default full batch).
      block_rows: points per block in a step.
      storage_dtype: ``"float32"`` or ``"bfloat16"``.
      optimizer_state: numbers of optimizer state per gradient entry (Adam 2, momentum 1, SGD and sign 0).
      devices: devices the samples are sharded over.

    Returns:
      a [`MemoryEstimate`][infinite_width.limits.adam_limit.memory.MemoryEstimate] with the parts of
      [`estimate_memory`][infinite_width.limits.adam_limit.memory.estimate_memory]: ``storage`` (the
      position-contracted features), ``root_computation`` (the float64 factors and one point block of
      kernel rows), ``roots`` (float64 factors, one replica's float32 roots and their features),
      ``sampling`` (one replica's latent normals and one block of points), ``state``,
      ``step_temporaries`` and ``runtime``.
    """
    if storage_dtype not in _ITEMSIZE:
        raise ValueError(f"unknown storage_dtype {storage_dtype!r}; expected one of {tuple(_ITEMSIZE)}")
    net, points, k = layout.net, layout.points, layout.out_dim
    coordinates = points * net.positions
    per_device = -(-samples // devices)
    per_replica = -(-per_device // layout.replicas)
    widths = {name: min(width, coordinates) for name, width in root_widths.items()}
    first_layer = net.channels * net.tap_count(1) + 1
    truncated = sum(width for width in widths.values() if width < coordinates)
    latent_rows = first_layer + sum(widths[f"h{l}"] for l in layout.h_layers if l >= 2)
    latent_rows += k * sum(widths[f"z{l}"] for l in layout.z_layers) + k
    shared_taps = sum(t.taps for t in layout.terms if not t.per_output)
    readout = sum(1 for t in layout.terms if t.per_output)
    # Kernel rows of one pivot point while a root is computed: the layer kernels of the block (float32) and
    # its residual (float64), plus the elsewhere copy of the remaining variances.
    block = net.positions * coordinates * (4 * (3 * net.depth + 2) + 8 * 2) + 16 * coordinates
    parts = {
        "storage": per_device * (points * layout.numbers_per_point * _ITEMSIZE[storage_dtype] + k * _FLOAT),
        # Float64 factors (kept for the features), one replica's float32 roots (its host copy is dropped as
        # it moves to the device), the patches and the first layer's root, and the features of one truncated
        # root with their residual (float64; features.residual_root writes the float32 root directly).
        "roots": coordinates * (8 * truncated + _FLOAT * sum(widths.values()) + 2 * _FLOAT * first_layer
                                + (2 * 8 * features if truncated else 0)),
        "root_computation": 8 * coordinates * sum(widths.values()) + block + 2 * _FLOAT * coordinates * first_layer,
        "sampling": (-(-latent_rows // LATENT_CHUNK_ROWS) * LATENT_CHUNK_ROWS + 4 * LATENT_CHUNK_ROWS)
        * per_replica * _FLOAT + 2 * CONV_DRAW_BLOCK_BYTES,
        "state": per_device * (shared_taps + readout * k) * (optimizer_state + 4) * _FLOAT,
        "step_temporaries": min(block_rows, max(batch_size or n_train, points)) * per_device * _FLOAT
        * (layout.numbers_per_point + 2 * k + 4),
        "runtime": RUNTIME_BYTES,
    }
    return MemoryEstimate(parts={name: int(value) for name, value in parts.items()}, devices=devices)
