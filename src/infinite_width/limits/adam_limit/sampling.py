"""Gaussian-process samples for the Monte Carlo engine of the Adam-like limit.

Every term of the limit (docs/theory.md, section 5) is an
expectation over random functions on the P = N_train + N_test points:
pre-activations ``h^l ~ GP(0, K^l)`` and backward fields
``z^l_c ~ GP(0, W_std_{l+1}^2 B^{l+1})``, independent over outputs c. A
field is drawn as ``A @ eps`` with ``eps ~ N(0, I_r)`` and a square root
``A`` (P, r) of its P x P kernel, ``A A^T = K``; :func:`sampling_root`
computes ``A`` once per kernel.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["sampling_root", "PSD_TOLERANCE", "RANK_TOLERANCE"]

#: A kernel whose smallest eigenvalue is below ``-PSD_TOLERANCE * largest`` is
#: not positive semi-definite beyond float32 round-off: it is repaired by a
#: diagonal jitter equal to minus its smallest eigenvalue, with a warning.
#: Smaller negative eigenvalues are round-off and are set to zero silently.
PSD_TOLERANCE = 1e-5

#: Eigen-directions with eigenvalue below ``RANK_TOLERANCE * largest`` are
#: dropped from the root (they carry no variance), so that low-rank kernels
#: (e.g. the all-ones ``B^{L+1}``) are sampled at the cost of their rank.
RANK_TOLERANCE = 1e-9


def sampling_root(kernel, name: str = "kernel") -> np.ndarray:
    """A square root ``A`` of shape (P, r) of a symmetric P x P kernel: ``A @ A.T ~= kernel``.

    Computed in float64 from the eigendecomposition ``K = V diag(lam) V^T``
    as ``A = V[:, kept] sqrt(lam[kept])``, keeping the r eigenvalues above
    ``RANK_TOLERANCE * lam_max``. A kernel that is not numerically positive
    semi-definite (``lam_min < -PSD_TOLERANCE * lam_max``) is repaired by
    adding ``-lam_min`` to its diagonal, and a ``RuntimeWarning`` says by how
    much. An all-zero kernel gives a (P, 1) zero root.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} has NaN or Inf entries")
    k = 0.5 * (k + k.T)
    lam, vec = np.linalg.eigh(k)
    lam_max = max(float(lam[-1]), 0.0)
    if lam_max == 0.0:
        return np.zeros((k.shape[0], 1))
    lam_min = float(lam[0])
    if lam_min < -PSD_TOLERANCE * lam_max:
        jitter = -lam_min
        warnings.warn(
            f"{name} is not positive semi-definite (smallest eigenvalue {lam_min:.3g}, "
            f"largest {lam_max:.3g}); repaired by adding a jitter of {jitter:.3g} "
            f"({jitter / lam_max:.2g} x largest eigenvalue) to its diagonal",
            RuntimeWarning,
            stacklevel=2,
        )
        lam = lam + jitter
    kept = lam > RANK_TOLERANCE * lam_max
    return vec[:, kept] * np.sqrt(lam[kept])
