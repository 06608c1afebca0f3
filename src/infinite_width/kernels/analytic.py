"""Closed-form infinite-width NNGP and NTK kernels of an :class:`~infinite_width.Architecture`.

Shapes: inputs ``x1`` of shape (N1, d) for MLPs or (N1, H, W, C) for
convolutional networks, ``x2`` likewise (``None`` means ``x2 = x1``).
Kernels are returned per output channel, shape (N1, N2), as neural-tangents
returns them: the full kernel of the ``out_dim`` outputs is ``K ⊗ I``.

Precision policy: JAX's default matrix precision on GPUs is TF32 (about 1e-3
relative error). Every kernel here is computed with
``jax.default_matmul_precision("highest")``, i.e. true float32 by default;
``dtype="float64"`` computes in float64 (JAX's x64 mode is switched on for
the call only).

Memory: ``batch_size`` bounds the block of the kernel computed at once
(through ``neural_tangents.batch``); rows are padded to a multiple of it.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import jax
import numpy as np

from infinite_width._src.checks import validate_inputs
from infinite_width._src.numerics import pad_rows, precision_scope
from infinite_width.architectures import Architecture

__all__ = ["nngp", "ntk", "nngp_and_ntk", "max_learning_rate", "stax"]


@functools.lru_cache(maxsize=None)
def _jitted_kernel_fn(arch: Architecture, get: Tuple[str, ...], batch_size: int):
    from infinite_width._src.nt import kernel_fn as arch_kernel_fn, nt

    kernel_fn = arch_kernel_fn(arch)
    if batch_size:
        kernel_fn = nt.batch(kernel_fn, batch_size=batch_size, store_on_device=False)
        return functools.partial(kernel_fn, get=get)
    return jax.jit(functools.partial(kernel_fn, get=get))


def _compute(arch, x1, x2, get, batch_size, dtype):
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0):
        raise ValueError(f"batch_size must be a non-negative integer or None, got {batch_size!r}")
    with precision_scope(dtype) as np_dtype:
        x1, x2 = validate_inputs(arch, x1, x2, np_dtype)
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        if batch_size and (n1 > batch_size or n2 > batch_size):
            p1 = pad_rows(x1, batch_size)
            p2 = p1 if x2 is None else pad_rows(x2, batch_size)
            out = _jitted_kernel_fn(arch, get, batch_size)(p1, p2)
        else:
            out = _jitted_kernel_fn(arch, get, 0)(x1, x2)
        results = tuple(np.asarray(k)[:n1, :n2] for k in out)
    for name, k in zip(get, results):
        if not np.all(np.isfinite(k)):
            raise FloatingPointError(f"the {name} kernel of {arch.name!r} has non-finite entries")
    return results


def nngp(arch: Architecture, x1, x2=None, *, batch_size: Optional[int] = None, dtype: str = "float32") -> np.ndarray:
    """Infinite-width NNGP kernel, shape (N1, N2): the output covariance at initialisation."""
    return _compute(arch, x1, x2, ("nngp",), batch_size, dtype)[0]


def ntk(arch: Architecture, x1, x2=None, *, batch_size: Optional[int] = None, dtype: str = "float32") -> np.ndarray:
    """Infinite-width neural tangent kernel in NTK parametrization, shape (N1, N2)."""
    return _compute(arch, x1, x2, ("ntk",), batch_size, dtype)[0]


def nngp_and_ntk(arch: Architecture, x1, x2=None, *, batch_size: Optional[int] = None, dtype: str = "float32"):
    """Both kernels from one pass: ``(nngp, ntk)``, each of shape (N1, N2)."""
    return _compute(arch, x1, x2, ("nngp", "ntk"), batch_size, dtype)


def max_learning_rate(ntk_train_train, y_train_size: Optional[int] = None, momentum: float = 0.0) -> float:
    """Largest stable learning rate of gradient descent on ``0.5 * mean((f - y)^2)`` with this NTK.

    The same formula as ``neural_tangents.predict.max_learning_rate``
    (``2 (1 + momentum) N k / lambda_max``), which no longer runs on
    scipy >= 1.14.
    """
    k = np.asarray(ntk_train_train, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"ntk_train_train must be a square matrix, got shape {k.shape}")
    factor = k.shape[0] if y_train_size is None else int(y_train_size)
    lam_max = np.linalg.eigvalsh(k)[-1]
    return float(2.0 * (1.0 + momentum) * factor / lam_max)


def stax(arch: Architecture, width: int = 1, parameterization: str = "ntk"):
    """The neural-tangents ``(init_fn, apply_fn, kernel_fn)`` of ``arch``, for users who want them.

    ``width`` sets the hidden size of the finite network that ``init_fn``
    and ``apply_fn`` describe; ``kernel_fn`` (the infinite-width kernels)
    does not depend on it. ``NotImplementedError`` for an architecture
    without a closed form (``MaxPool``).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    from infinite_width._src.nt import stax_triple

    return stax_triple(arch, width, parameterization)
