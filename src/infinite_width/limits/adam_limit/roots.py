"""Square roots of the layer kernels, from which the Gaussian fields are drawn (docs/theory.md, section 7).

A field ``h ~ GP(0, K)`` on the P points is drawn as ``A @ eps`` with
``eps ~ N(0, I_r)`` and a root ``A`` (P, r) of the P x P kernel, ``A A^T ~= K``.
The roots here are pivoted Cholesky factors (LAPACK ``dpstrf``, float64 on
the host, O(P^3 / 3) time and P^2 memory): ``A``'s columns are taken in the
order of the greedy pivots (largest remaining variance first), so that

* run to the kernel's numerical rank (remaining variance at every point
  below ``EXACT_TOLERANCE`` times the largest variance) the factor is exact
  up to float round-off;
* its first r columns are the rank-r pivoted Cholesky approximation, whose
  error ``K - A_r A_r^T`` is positive semi-definite with diagonal
  ``residual`` (the variance a point loses). Truncating an exact factor
  keeps the same leading columns, so a truncated and an exact run drawn with
  the same latent normals differ only by the truncation (the engine draws
  latent column j from its own key).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Dict, Optional

import numpy as np
import scipy.linalg.lapack

from infinite_width import kernels
from infinite_width._src.numerics import pad_rows

__all__ = ["Root", "pivoted_root", "partial_pivoted_root", "sampling_root", "field_kernels", "field_kernel_names", "PSD_TOLERANCE",
           "EXACT_TOLERANCE"]

PSD_TOLERANCE = 1e-5
"""A kernel whose remaining variance after factorization is below
``-PSD_TOLERANCE * largest variance`` at some point is not positive
semi-definite beyond round-off: a ``RuntimeWarning`` says so (the factor
keeps its positive part)."""

EXACT_TOLERANCE = 1e-7
"""The factorization stops when every point's remaining variance is below
this fraction of the largest variance: the numerical rank."""


@dataclasses.dataclass(frozen=True)
class Root:
    """The exact pivoted Cholesky root of a kernel, columns in pivot order.

    Attributes:
      factor: (P, q) float64, ``factor @ factor.T`` equals the kernel up to
        round-off; q is the numerical rank. With ``complete=False`` only
        the first q columns of that factor
        ([`partial_pivoted_root`][infinite_width.limits.adam_limit.roots.partial_pivoted_root]).
      pivots: (q,) the point whose remaining variance column j eliminated.
      variances: (P,) the kernel's diagonal.
      name: the kernel's name, for messages.
      complete: whether ``factor`` is the whole (exact) root.
    """

    factor: np.ndarray
    pivots: np.ndarray
    variances: np.ndarray
    name: str
    complete: bool = True

    @property
    def numerical_rank(self) -> int:
        """Columns of the exact root; for an incomplete root, more than its computed columns."""
        return self.factor.shape[1] + (0 if self.complete else 1)

    def leading(self, rank: Optional[int]) -> np.ndarray:
        """The rank-r pivoted Cholesky approximation's root: the first r columns (all with None)."""
        return self.factor if rank is None else self.factor[:, : min(int(rank), self.numerical_rank)]

    def residual(self, rank: Optional[int]) -> np.ndarray:
        """(P,) the variance each point loses when truncated to ``rank`` columns (>= 0)."""
        return np.maximum(self.variances - np.sum(self.leading(rank) ** 2, axis=1), 0.0)

    def residual_fraction(self, rank: Optional[int]) -> float:
        """The fraction of the total variance (trace) that truncation to ``rank`` columns drops."""
        total = float(np.sum(self.variances))
        return float(np.sum(self.residual(rank))) / total if total > 0 and rank is not None else 0.0


def _check_kernel(kernel, name: str) -> np.ndarray:
    k = np.asarray(kernel)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} has NaN or Inf entries")
    if np.any(np.diagonal(k) < 0):
        raise ValueError(f"{name} has negative diagonal entries (variances): it is not a covariance")
    return k


def pivoted_root(kernel, name: str = "kernel", *, consume: bool = False) -> Root:
    """The exact pivoted Cholesky root of a symmetric P x P ``kernel`` (LAPACK ``dpstrf``).

    Only one triangle of ``kernel`` is read. An all-zero kernel gives a
    (P, 1) zero root. Time O(P^3 / 3), memory one float64 copy of the
    kernel, or none with ``consume=True`` and a C-contiguous float64 kernel
    (then overwritten).
    """
    k = _check_kernel(kernel, name)
    n = k.shape[0]
    variances = np.diagonal(k).astype(np.float64)
    scale = float(np.max(variances)) if n else 0.0
    if scale == 0.0:
        return Root(np.zeros((n, 1)), np.zeros(1, np.int64), variances, name)
    in_place = consume and k.dtype == np.float64 and k.flags.c_contiguous
    # The transpose of a C-ordered symmetric matrix is the Fortran-ordered same matrix.
    work = k.T if in_place else np.array(k, dtype=np.float64, order="F")
    factor, pivots, numerical_rank, info = scipy.linalg.lapack.dpstrf(
        work, tol=EXACT_TOLERANCE * scale, lower=1, overwrite_a=1
    )
    if info < 0:
        raise RuntimeError(f"LAPACK dpstrf rejected argument {-info} while factorizing {name}")
    for column in range(1, numerical_rank):  # dpstrf leaves the upper triangle untouched
        factor[:column, column] = 0.0
    root = np.empty((n, numerical_rank))
    root[pivots - 1] = factor[:, :numerical_rank]
    del factor, work
    residual = variances - np.sum(root**2, axis=1)
    if residual.min() < -PSD_TOLERANCE * scale:
        warnings.warn(
            f"{name} is not positive semi-definite: after factorization a point's variance is "
            f"{residual.min():.3g} (largest variance {scale:.3g}); the root keeps its positive part",
            RuntimeWarning,
            stacklevel=2,
        )
    return Root(root, (pivots[:numerical_rank] - 1).astype(np.int64), variances, name)


def partial_pivoted_root(kernel, name: str, columns: int) -> Root:
    """The first ``columns`` columns of the pivoted Cholesky root of ``kernel`` (P x P, float64, C-ordered),
    computed greedily in O(P columns^2) without factorizing the rest; complete (exact) when the numerical
    rank is reached first. Same pivots and columns as [`pivoted_root`][infinite_width.limits.adam_limit.pivoted_root],
    up to round-off."""
    k = _check_kernel(kernel, name)
    n = k.shape[0]
    variances = np.diagonal(k).astype(np.float64)
    remaining = variances.copy()
    tolerance = EXACT_TOLERANCE * float(np.max(variances, initial=0.0))
    rows = np.zeros((min(columns, n), n))  # row j = column j of the root
    pivots = []
    for j in range(rows.shape[0]):
        pivot = int(np.argmax(remaining))
        if remaining[pivot] <= tolerance:
            return Root(rows[:j].T.copy(), np.array(pivots, np.int64), variances, name)
        rows[j] = (k[pivot] - rows[:j, pivot] @ rows[:j]) / np.sqrt(remaining[pivot])
        remaining -= rows[j] ** 2
        remaining[pivot] = 0.0
        pivots.append(pivot)
    complete = bool(np.max(remaining, initial=0.0) <= tolerance)
    return Root(rows.T.copy(), np.array(pivots, np.int64), variances, name, complete)


def sampling_root(kernel, name: str = "kernel", rank: Optional[int] = None) -> np.ndarray:
    """A root ``A`` (P, r) of a symmetric P x P kernel, ``A @ A.T ~= kernel``: the first ``rank`` columns
    of its pivoted Cholesky root ([`pivoted_root`][infinite_width.limits.adam_limit.pivoted_root]; all of them by
    default, exact)."""
    return np.array(pivoted_root(kernel, name).leading(rank))


# --------------------------------------------------------------------------
# The kernels of the fields.


def field_kernel_names(layout) -> Dict[str, str]:
    """``{field: kernel description}`` of the fields drawn from P x P roots: ``h<l>`` (l >= 2), ``z<l>``."""
    names = {f"h{l}": f"K^{l}" for l in layout.h_layers if l >= 2}
    names.update({f"z{l}": f"W_std_{l + 1}^2 B^{l + 1}" for l in layout.z_layers})
    return names


def _kernel_rows(arch, x_block, x_all, fields, W_std):
    """Rows (b, P) of every field kernel, from neural-tangents' layer-wise kernels."""
    layer = kernels.layerwise(arch, x_block, x_all)
    rows = {}
    for name in fields:
        l = int(name[1:])
        rows[name] = np.asarray(layer.K[l - 1]) if name[0] == "h" else W_std[l] ** 2 * np.asarray(layer.B[l])
    return rows


def field_kernels(arch, x_all: np.ndarray, layout, W_std, block_bytes: int = 1 << 27) -> Dict[str, np.ndarray]:
    """The P x P float64 kernels of the fields drawn from roots ([`field_kernel_names`][infinite_width.limits.adam_limit.roots.field_kernel_names]).

    Computed in blocks of rows (``kernels.layerwise`` of a block against all
    points) so that the float32 layer kernels of one block stay below
    ``block_bytes``; memory P^2 float64 per kernel.
    """
    fields = field_kernel_names(layout)
    points = x_all.shape[0]
    if not fields:
        return {}
    matrices_per_call = 3 * arch.depth + 3  # K^1..K^{L+1}, S^0..S^L, Sd^1..Sd^L
    block = int(max(1, min(points, block_bytes // (4 * points * matrices_per_call))))
    out = {name: np.empty((points, points)) for name in fields}
    padded = pad_rows(x_all, block)
    for start in range(0, points, block):
        rows = _kernel_rows(arch, padded[start:start + block], x_all, fields, W_std)
        stop = min(start + block, points)
        for name in fields:
            out[name][start:stop] = rows[name][: stop - start]
    return out
