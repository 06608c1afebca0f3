"""Numerical policy: full-precision matrix products, optional float64, and row padding.

JAX's default matrix precision on GPUs is TF32 (about 1e-3 relative error).
Kernels, kernel dynamics and training run inside :func:`precision_scope`,
i.e. with ``jax.default_matmul_precision("highest")`` (true float32), and in
JAX's x64 mode for ``dtype="float64"``.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def enable_x64():
    """A context manager switching JAX's x64 mode on (jax >= 0.7 has ``jax.enable_x64``, older the experimental one)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as experimental_enable_x64

    return experimental_enable_x64()


@contextlib.contextmanager
def precision_scope(dtype: str = "float32"):
    """Full-precision matrix products, and x64 mode when ``dtype == "float64"``; yields the numpy dtype."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected 'float32' or 'float64'")
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.default_matmul_precision("highest"))
        if dtype == "float64":
            stack.enter_context(enable_x64())
        yield DTYPES[dtype]


def pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    """``x`` with rows appended (copies of its last row) up to a multiple of ``multiple``."""
    # Repeat the last row rather than pad with zeros: a zero input gives a
    # 0/0 in bias-free arc-cosine kernels, and padded rows are cropped anyway.
    remainder = (-x.shape[0]) % multiple
    if remainder == 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], remainder, axis=0)], axis=0)
