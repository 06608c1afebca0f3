"""Argument checks shared by the trainer, the Adam-like limit and the solver.

One place for each check, so the same bad input gets the same error
whichever regime it is given to.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_key(key):
    """A jax PRNG key from ``key`` (a key, raw or typed, or an int seed); ``TypeError`` otherwise."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    message = f"key must be a jax PRNG key (e.g. jax.random.PRNGKey(0)) or an int seed, got {key!r}"
    try:
        array = jnp.asarray(key)
    except TypeError as error:
        raise TypeError(message) from error
    if not (jnp.issubdtype(array.dtype, jax.dtypes.prng_key) or array.shape == (2,)):
        raise TypeError(message)
    return array


def check_targets(name: str, y, n: int, k: int) -> np.ndarray:
    """Targets of shape (n, k) as finite float32, or an error naming what is wrong."""
    try:
        y = np.asarray(y, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a numeric array of shape ({n}, {k}): {error}") from error
    if y.ndim != 2:
        raise ValueError(f"{name} must have shape (N, k) = ({n}, {k}), got shape {y.shape} (reshape(-1, 1) for k = 1)")
    if y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, {k}): it has {y.shape[0]} rows but the inputs have {n}")
    if y.shape[1] != k:
        raise ValueError(f"{name} must have shape ({n}, {k}): it has {y.shape[1]} columns but out_dim = {k}")
    if not np.all(np.isfinite(y)):
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
