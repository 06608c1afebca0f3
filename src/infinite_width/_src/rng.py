"""The one derivation of keys and minibatch orders, shared by finite networks and the infinite-width side.

Both sides split a run's key with `split_run_key` and draw their
minibatches from it with `minibatch_indices`, so that a finite
network and its limit see the same examples at every step.
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from infinite_width._src.checks import as_key, check_int

__all__ = ["minibatch_indices", "split_run_key", "batch_indices_for", "ensemble_keys"]


def minibatch_indices(key, n_train: int, batch_size: Optional[int], steps: int) -> np.ndarray:
    """Indices of the training rows used at each step, shape (steps, batch_size).

    Each epoch is a fresh permutation of ``range(n_train)`` drawn from
    ``key``; steps take consecutive slices of it (the last incomplete slice of
    an epoch is dropped). ``batch_size=None`` (or ``n_train``) means full
    batch: every row of the array is ``0..n_train-1`` in order.
    """
    steps = check_int("steps", steps, 0)
    n_train = check_int("n_train", n_train, 1)
    if batch_size is None or batch_size == n_train:
        return np.tile(np.arange(n_train), (steps, 1))
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n_train:
        raise ValueError(f"batch_size must be an integer in [1, {n_train}] or None, got {batch_size!r}")
    per_epoch = n_train // batch_size
    epochs = -(-steps // per_epoch) if steps else 0
    keys = jax.random.split(key, max(epochs, 1))[:epochs]
    rows = [
        np.asarray(jax.random.permutation(k, n_train))[: per_epoch * batch_size].reshape(per_epoch, batch_size)
        for k in keys
    ]
    if not rows:
        return np.zeros((0, batch_size), dtype=np.int64)
    return np.concatenate(rows)[:steps].astype(np.int64)


def split_run_key(key):
    """``(init_key, batch_key)`` of a run started from ``key`` (a jax PRNG key or an int seed).

    The finite trainer and the Adam-like limit both derive their keys this
    way, so one key means one minibatch order on both sides.
    """
    init_key, batch_key = jax.random.split(as_key(key))
    return init_key, batch_key


def batch_indices_for(key, n_train: int, batch_size: Optional[int], steps: int) -> np.ndarray:
    """The minibatch rows (steps, batch_size) of a run started from ``key`` (see `split_run_key`)."""
    return minibatch_indices(split_run_key(key)[1], n_train, batch_size, steps)


def ensemble_keys(key, seeds: int):
    """``(init_keys (seeds, ...), batch_key)`` of an ensemble of ``seeds`` finite networks started from ``key``.

    Seed ``i`` is initialised from ``init_keys[i]``, where ``init_keys =
    jax.random.split(init_key, seeds)`` and ``(init_key, batch_key) =``
    `split_run_key` ``(key)``.
    """
    init_key, batch_key = split_run_key(key)
    return jax.random.split(init_key, check_int("seeds", seeds, 1)), batch_key
