"""Argument checks of the whole package.

One place for each check, so the same bad input gets the same error
whichever function or regime it is given to. Numbers follow one rule:
``TypeError`` when the value is not a real number at all (a string, None,
a bool, an array of several values), ``ValueError`` when it is a number
outside what the argument allows (negative, NaN, Inf, non-integral where an
integer is needed). Numpy scalars are numbers like Python's.

This module sits below [`infinite_width.architectures`][] in the import
graph (architectures use its checks), so it never imports it: an
architecture is recognised by its ``input_kind`` and ``layers``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def _real_scalar(name: str, value, what: str):
    """``value`` as a Python int or float, or ``TypeError`` unless it is one real number (bools are not numbers).

    Python ints and floats, numpy integer and floating scalars, and 0-d numpy
    or jax arrays of such a dtype are accepted.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {what}, got the bool {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    dtype = getattr(value, "dtype", None)
    if getattr(value, "shape", None) == () and dtype is not None:
        if np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
            return np.asarray(value).item()
    raise TypeError(f"{name} must be {what}, got {value!r} of type {type(value).__name__}")


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int: ``TypeError`` unless it is a number, ``ValueError`` unless an integer >= ``minimum``.

    Numpy integers and integral 0-d arrays pass; bools and non-integral floats do not.
    """
    what = f"an integer >= {minimum}"
    number = _real_scalar(name, value, what)
    if not isinstance(number, int) or number < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return number


def _check_real(name: str, value, what: str, accept) -> float:
    number = _real_scalar(name, value, what)
    try:
        number = float(number)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not (math.isfinite(number) and accept(number)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return number


def check_nonnegative(name: str, value):
    """``value`` as a float: ``TypeError`` unless it is a real number, ``ValueError`` unless finite and >= 0.

    A traced jax scalar (the argument of a function under ``jax.jit``,
    ``jax.grad`` or ``jax.vmap``) has no value yet: its shape and dtype are
    checked and it is returned as it is, so that hyper-parameters can be
    differentiated.
    """
    if isinstance(value, jax.core.Tracer):
        if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
            raise ValueError(f"{name} must be a real scalar, got a traced array of shape {value.shape} and dtype {value.dtype}")
        return value
    return _check_real(name, value, "a finite number >= 0", lambda number: number >= 0)


def check_positive(name: str, value) -> float:
    """``value`` as a float: ``TypeError`` unless it is a real number, ``ValueError`` unless finite and > 0."""
    return _check_real(name, value, "a finite number > 0", lambda number: number > 0)


def check_decay(name: str, value) -> float:
    """A decay rate (momentum, Adam's b1 and b2) as a float: ``TypeError`` unless a real number, ``ValueError`` unless in [0, 1)."""
    return _check_real(name, value, "a number in [0, 1)", lambda number: 0 <= number < 1)


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``, else ``ValueError`` naming ``name`` and the choices.

    Compared by equality against a tuple, so an unhashable value (a list) is an
    error naming the argument too, not a bare ``TypeError: unhashable type``.
    """
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def as_key(key):
    """A jax PRNG key from ``key`` (a key, raw or typed, or an int seed); ``TypeError`` otherwise."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    message = f"key must be a jax PRNG key (e.g. jax.random.PRNGKey(0)) or an int seed, got {key!r}"
    try:
        array = jnp.asarray(key)
    except (TypeError, ValueError) as error:  # jnp.asarray(None) is a ValueError
        raise TypeError(message) from error
    if not (jnp.issubdtype(array.dtype, jax.dtypes.prng_key) or array.shape == (2,)):
        raise TypeError(message)
    return array


def check_targets(name: str, y, n: int, k: int) -> np.ndarray:
    """Targets of shape (n, k) as finite float32, or an error naming what is wrong."""
    y = check_real_array(name, y, np.float32)
    if y.ndim != 2:
        raise ValueError(f"{name} must have shape (N, k) = ({n}, {k}), got shape {y.shape} (reshape(-1, 1) for k = 1)")
    if y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, {k}): it has {y.shape[0]} rows but the inputs have {n}")
    if y.shape[1] != k:
        raise ValueError(f"{name} must have shape ({n}, {k}): it has {y.shape[1]} columns but out_dim = {k}")
    return y


def check_target_columns(name: str, y, n: int, kernel_name: str):
    """Targets for an (n, n) kernel as an (n, k) float64 array (``(n,)`` is read as k = 1).

    A jax tracer gets the shape check only and stays a jax array.
    """
    traced = isinstance(y, jax.core.Tracer)
    if not traced:
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be a numeric array of shape ({n}, k): {error}") from error
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, k) to match {kernel_name}, got {tuple(y.shape)}")
    if not traced and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(y)))} NaN or Inf entries")
    return y


def check_batch_indices(batch_indices, n_train: int, steps: int) -> np.ndarray:
    """Explicit minibatch rows, shape (steps, batch), each in [0, n_train), as int32."""
    rows = np.asarray(batch_indices)
    if rows.ndim != 2 or rows.shape[0] != steps or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"batch_indices must be an integer array of shape (steps={steps}, batch), got {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n_train):
        raise ValueError(f"batch_indices must lie in [0, {n_train}), got values in [{rows.min()}, {rows.max()}]")
    return rows.astype(np.int32)


def check_record_list(record, steps: int) -> np.ndarray:
    """Explicit steps to record: sorted unique integers in [0, steps]."""
    record = np.asarray(record)
    if record.ndim != 1 or record.size == 0 or not np.issubdtype(record.dtype, np.integer):
        raise ValueError(f"record must be a non-empty 1-D list of integer steps, got {record!r}")
    if record.min() < 0 or record.max() > steps:
        raise ValueError(f"record steps must lie in [0, {steps}], got min {record.min()} and max {record.max()}")
    return np.unique(record).astype(np.int64)


def check_real_array(name: str, x, dtype) -> np.ndarray:
    """``x`` as a finite real array of ``dtype``, or an error naming ``name``.

    ``TypeError`` for ragged or non-numeric data (strings, bools, complex);
    ``ValueError`` for NaN or Inf entries. Finiteness is checked after the
    cast, so values beyond the range of ``dtype`` (float64 1e39 in float32)
    are caught as the Inf they become.
    """
    try:
        x = np.asarray(x)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"{name} cannot be converted to an array: {error}") from error
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    with np.errstate(over="ignore"):
        converted = x.astype(dtype)
    finite = np.isfinite(converted)
    if not finite.all():
        message = f"{name} contains {int(np.sum(~finite))} NaN or Inf entries"
        overflowed = int(np.sum(~finite & np.isfinite(x)))
        if overflowed:
            message += f" ({overflowed} of them finite but beyond the range of {np.dtype(dtype).name})"
        raise ValueError(message)
    return converted


def _input_layout(arch) -> tuple:
    """``(rank, layout)`` of the inputs of ``arch``; ``arch=None`` (a neural-tangents ``kernel_fn``): any rank >= 2."""
    if arch is None:
        return None, "(N, ...)"
    if arch.input_kind == "vector":
        return 2, "(N, d)"
    return 4, "(N, H, W, C)"


def check_input_array(name: str, x, arch, dtype):
    """Inputs of ``arch`` as a finite real array of ``dtype``: (N, d) for vector, (N, H, W, C) for image inputs.

    ``arch=None`` accepts any (N, ...) array of rank >= 2. A jax tracer
    (inside ``jit``/``grad``/``vmap``) gets the dtype and shape checks only,
    which are static; its values are unknown, so NaN or Inf entries are not
    detected, and it is returned as a jax array of ``dtype``.
    """
    traced = isinstance(x, jax.core.Tracer)
    if traced:
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    else:
        x = check_real_array(name, x, dtype)
    rank, layout = _input_layout(arch)
    if (x.ndim != rank) if rank else (x.ndim < 2):
        described = f"architecture {arch.name!r}" if arch is not None else "a kernel_fn"
        raise ValueError(f"{name} must have shape {layout} for {described}, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x.astype(dtype)


def validate_inputs(arch, x1, x2=None, dtype=np.float32, names=("x1", "x2")):
    """Check and convert kernel inputs; raise ``ValueError``/``TypeError`` naming the problem.

    ``arch`` is an [`Architecture`][infinite_width.Architecture], or None for the
    inputs of a neural-tangents ``kernel_fn`` (any (N, ...) arrays).
    ``names`` are the argument names used in error messages (e.g.
    ``("x_train", "x_test")``). Returns ``(x1, x2)`` as arrays of ``dtype``
    (``x2`` may be None): numpy arrays, or jax arrays for tracers (see
    `check_input_array`).
    """
    if arch is not None and (getattr(arch, "input_kind", None) not in ("vector", "image") or not hasattr(arch, "layers")):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    name1, name2 = names
    x1 = check_input_array(name1, x1, arch, dtype)
    if x2 is not None:
        x2 = check_input_array(name2, x2, arch, dtype)
        if x1.shape[1:] != x2.shape[1:]:
            raise ValueError(f"{name1} and {name2} have different feature shapes: {x1.shape[1:]} vs {x2.shape[1:]}")
    return x1, x2


def check_kernel_matrix(name: str, k, square: bool = False) -> np.ndarray:
    """A kernel matrix as a finite non-empty float64 (N1, N2) array (square if ``square``)."""
    try:
        k = np.asarray(k)
    except (TypeError, ValueError) as error:  # ragged nested lists
        raise TypeError(f"{name} must be a real matrix: {error}") from error
    # Not cast blindly: complex parts would be dropped with a warning, strings parsed, bools taken as 0 and 1.
    # (jax's bfloat16 is no numpy number but is real: it is accepted.)
    real = np.issubdtype(k.dtype, np.number) or k.dtype == jnp.bfloat16
    if not real or np.iscomplexobj(k):
        raise TypeError(f"{name} must be a real matrix, got dtype {k.dtype}")
    k = k.astype(np.float64)
    if k.ndim != 2:
        raise ValueError(f"{name} must be a matrix (2-D), got shape {k.shape}")
    if square and k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be square, got shape {k.shape}")
    if k.size == 0:
        raise ValueError(f"{name} is empty (shape {k.shape})")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(k)))} NaN or Inf entries")
    return k
