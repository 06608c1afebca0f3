"""The input-scale rule of every kernel entry point: refuse what the dtype cannot compute, never return it.

Floating point is scale-free only until it over- or underflows, and the
closed-form kernels (neural-tangents' arc-cosine, arcsine and trigonometric
formulas) lose digits far from unit scale: in float32, the NTK of a ReLU MLP
of inputs at scale `1e11` is finite and 10% wrong, that of an erf MLP at
scale `1e3` too, and at `1e10` (ReLU) or `1e4` (erf) it overflows. The rule,
the same for [`nngp`][infinite_width.kernels.nngp],
[`ntk`][infinite_width.kernels.ntk],
[`nngp_and_ntk`][infinite_width.kernels.nngp_and_ntk],
[`layerwise`][infinite_width.kernels.layerwise], the NNPK functions, the
empirical kernels and [`fit_hyperparameters`][infinite_width.kernels.fit_hyperparameters]
(and so for every method of [`infinite_width.solve`][infinite_width.solve]
that computes a kernel), is **refuse, with advice**: a `ValueError` naming
the inputs, their scale and what to do (rescale them, or compute in
float64), before anything is computed. Nothing is rescaled silently: the
kernels of biased or non-ReLU networks depend on the input scale, so a
rescaled kernel would be another kernel. Where rescaling is exact (a
positively homogeneous architecture: ReLU, leaky ReLU, abs or identity
activations and no biases, whose kernels are homogeneous of degree 2,
`K(c x, c x') = c^2 K(x, x')`), the message says so and how.

The scale of a row is `q = ||x||^2 / d` (the mean square entry; `S^0` of
docs/theory.md, section 2). Two checks, on concrete inputs only (under
`jax.jit`/`grad`/`vmap` the values are unknown and nothing is checked):

1. **Range** (every entry point, every dtype): the nonzero rows must have
   `q` in [`scale_range(dtype)`][infinite_width.kernels.scale.scale_range]
   `= [1e3 sqrt(tiny), sqrt(max) / 1e3]`, where products of two kernel
   entries neither overflow nor underflow, with three decades of room for
   the growth through the layers: `[1.1e-16, 1.8e16]` in float32,
   `[1.5e-151, 1.3e151]` in float64. Zero rows are allowed (their kernels
   have exact limits).
2. **Accuracy** (the closed-form kernels in float32, when some nonzero row
   lies outside the unit band `UNIT_BAND`
   `= [1e-2, 1e2]`): the kernels of the rows of extreme scale (the four
   largest and four smallest) are computed in float32 and in float64, and
   if they differ by more than `TOLERANCE`
   (`1e-3`, relative to `sqrt(K_ii K_jj)`) the call is refused. This costs
   one small compilation per architecture, and only for such inputs.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from infinite_width._src.numerics import precision_scope

__all__ = ["scale_range", "row_scales", "check_input_scale", "check_float32_accuracy", "UNIT_BAND", "TOLERANCE",
           "POSITIVELY_HOMOGENEOUS"]

UNIT_BAND = (1e-2, 1e2)
"""Inputs whose nonzero rows all have `q = ||x||^2 / d` in this band are computed without the float64 check."""
TOLERANCE = 1e-3
"""The largest float32 error, relative to `sqrt(K_ii K_jj)`, the accuracy check lets through."""
POSITIVELY_HOMOGENEOUS: Tuple[str, ...] = ("relu", "leaky_relu", "abs", "identity")
"""Activations `phi(c z) = c phi(z)` for `c > 0`: without biases their kernels are homogeneous of degree 2."""
# Decades of room, on each side of the range where products of kernel entries are representable.
_MARGIN = 1e3
# Rows of each extreme (largest and smallest scale) whose kernels the accuracy check computes twice.
_EXTREME_ROWS = 4


def scale_range(dtype) -> Tuple[float, float]:
    """`(lowest, highest)` row scale `q = ||x||^2 / d` that `dtype` computes kernels of.

    Args:
      dtype: a numpy floating dtype.

    Returns:
      `(1e3 sqrt(tiny), sqrt(max) / 1e3)` of the dtype.
    """
    info = np.finfo(dtype)
    return _MARGIN * math.sqrt(float(info.tiny)), math.sqrt(float(info.max)) / _MARGIN


def row_scales(x) -> np.ndarray:
    """`q = ||x_i||^2 / d` of each row of `x` (N, ...), shape (N,), in float64 (no overflow).

    Args:
      x: (N, ...) inputs.
    """
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):  # beyond float64: an infinite scale, refused like any other
        return np.mean(np.square(x.reshape(x.shape[0], -1)), axis=1)


def _homogeneous(arch) -> bool:
    """Whether `arch` is positively homogeneous of degree 1 in its input (its kernels of degree 2)."""
    if arch is None:
        return False
    weighted = [layer for layer in arch.layers if hasattr(layer, "W_std")]
    names = {type(layer).__name__ for layer in arch.layers}
    return (all(name in POSITIVELY_HOMOGENEOUS for name in arch.activations)
            and all(layer.b_std == 0 for layer in weighted) and not names & {"LayerNorm", "MaxPool"})


def _advice(arch, scales: np.ndarray, what: str) -> str:
    advice = f"rescale the inputs (standardize them: unit scale is q = 1), or pass dtype='float64'"
    if _homogeneous(arch):
        c = math.sqrt(float(np.median(scales)))
        advice += (f"; {arch.name!r} is positively homogeneous (no biases, {', '.join(sorted(set(arch.activations)))}"
                   f" activations), so {what}(arch, x / c) * c**2 is exactly the kernel of x, e.g. with c = {c:.3g}")
    return advice


def check_input_scale(inputs: Dict[str, Optional[np.ndarray]], dtype, arch=None, what: str = "kernel") -> None:
    """Refuse inputs with nonzero rows outside [`scale_range(dtype)`][infinite_width.kernels.scale.scale_range].

    Args:
      inputs: `{argument name: concrete array (N, ...) or None}`.
      dtype: the dtype of the computation.
      arch: the architecture (None for a neural-tangents `kernel_fn`), for the advice.
      what: the function's name, for the advice.

    Raises:
      ValueError: naming the argument, its scales and what to do.
    """
    lowest, highest = scale_range(dtype)
    for name, x in inputs.items():
        if x is None:
            continue
        scales = row_scales(x)
        nonzero = scales[scales > 0]
        if nonzero.size and (nonzero.min() < lowest or nonzero.max() > highest):
            raise ValueError(
                f"{name} has rows at scale ||x||^2/d from {nonzero.min():.3g} to {nonzero.max():.3g}, outside "
                f"[{lowest:.2g}, {highest:.2g}] where {np.dtype(dtype).name} kernels neither overflow nor "
                f"underflow; {_advice(arch, nonzero, what)}"
            )


def _extreme_rows(x1: np.ndarray, x2: Optional[np.ndarray]) -> np.ndarray:
    """The nonzero rows of `x1` and `x2` of largest and smallest scale (at most 8), as float64."""
    rows = np.asarray(x1, np.float64) if x2 is None else np.concatenate([x1, x2]).astype(np.float64)
    scales = row_scales(rows)
    order = np.flatnonzero(scales > 0)[np.argsort(scales[scales > 0])]
    chosen = np.unique(np.concatenate([order[:_EXTREME_ROWS], order[-_EXTREME_ROWS:]]))
    return rows[chosen]


def check_float32_accuracy(compute: Callable, x1, x2, dtype, arch=None, names: str = "x1 and x2",
                           what: str = "kernel") -> None:
    """Refuse float32 kernels off float64 by more than `TOLERANCE`.

    Only for `dtype` float32 and inputs with a nonzero row outside
    `UNIT_BAND`.

    Args:
      compute: `compute(rows, dtype)` -> the kernels (a sequence of (n, n)
        arrays) of the rows with themselves, computed in `dtype`
        (`"float32"` or `"float64"`), inside its precision scope.
      x1: (N1, ...) concrete inputs.
      x2: (N2, ...) concrete inputs, or None.
      dtype: the dtype of the computation.
      arch: the architecture (None for a `kernel_fn`), for the advice.
      names: the inputs' names, for the message.
      what: the function's name, for the advice.

    Raises:
      ValueError: naming the inputs, their scales, the error and what to do.
    """
    if np.dtype(dtype) != np.float32:
        return
    scales = np.concatenate([row_scales(x) for x in (x1, x2) if x is not None])
    nonzero = scales[scales > 0]
    if not nonzero.size or (UNIT_BAND[0] <= nonzero.min() and nonzero.max() <= UNIT_BAND[1]):
        return
    rows = _extreme_rows(x1, x2)
    kernels = {}
    for name in ("float32", "float64"):
        with precision_scope(name) as np_dtype:
            kernels[name] = [np.asarray(k, np.float64) for k in compute(rows.astype(np_dtype), name)]
    error = 0.0
    for k32, k64 in zip(kernels["float32"], kernels["float64"]):
        diagonal = np.sqrt(np.abs(np.diag(k64)))
        norm = np.outer(diagonal, diagonal)
        with np.errstate(invalid="ignore"):
            relative = np.abs(k32 - k64) / np.where(norm > 0, norm, 1.0)
        error = max(error, float(np.max(np.where(np.isfinite(relative), relative, np.inf))))
    if error > TOLERANCE:
        verb = "have" if " and " in names else "has"
        raise ValueError(
            f"{names} {verb} rows at scale ||x||^2/d from {nonzero.min():.3g} to {nonzero.max():.3g}, where the "
            f"float32 kernels are off by {error:.2g} (relative to sqrt(K_ii K_jj)) against float64, beyond the "
            f"tolerance {TOLERANCE:g}; {_advice(arch, nonzero, what)}"
        )
