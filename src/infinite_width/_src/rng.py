"""The one derivation of a run's keys, shared by finite networks and the infinite-width side.

A run's key (an int seed, a ``numpy.random.Generator`` or a jax PRNG key,
see [`as_key`][infinite_width._src.checks.as_key]) is turned into
[`RunKeys`][infinite_width._src.rng.RunKeys] once, by `run_keys`:
``model, batch = jax.random.split(key)``. The ``model`` key draws what is
random in the model (the initialisations of finite networks, the Monte Carlo
samples of the Adam-like limit, the NNPK's networks), the ``batch`` key the
minibatch order. `infinite_width.solve` derives them once and hands them to
the method; `infinite_width.finite.train` derives them the same way, so the
same key means the same initialisations and the same minibatches on both
entry points.

The minibatch order is an int32 array (steps, batch_size): each epoch is a
fresh permutation of the ``n_train`` rows (epoch ``e`` is permuted by
``jax.random.split(batch, epochs)[e]``), and steps take consecutive slices of
it (an epoch's last incomplete slice is dropped). It is generated in chunks of
epochs, and refused up front (``MemoryError`` saying what would fit) when it
would take more than [`MAX_ORDER_BYTES`][infinite_width._src.rng.MAX_ORDER_BYTES]
or a quarter of the available memory. Full batch has no order: the methods
take ``batch_indices=None``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import numpy as np

from infinite_width._src.checks import as_key, check_int
from infinite_width._src.memory import GIB, available_memory

__all__ = ["RunKeys", "run_keys", "minibatch_indices", "check_order_size", "MAX_ORDER_BYTES"]

MAX_ORDER_BYTES = 2**30
"""The largest minibatch order built as one array (bytes of int32 rows); larger ones are refused up front."""

# Permutations drawn at once: chunks of about this many entries (epochs x n_train).
_CHUNK_ENTRIES = 1 << 22


@functools.partial(jax.jit, static_argnums=1)
def _permutations(keys, n_train: int):
    """(E, n_train) int32: one permutation of ``range(n_train)`` per key, as ``jax.random.permutation`` draws it."""
    return jax.vmap(lambda key: jax.random.permutation(key, n_train))(keys).astype(np.int32)


def _check_batch_size(batch_size, n_train: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n_train:
        raise ValueError(f"batch_size must be an integer in [1, {n_train}] or None (full batch), got {batch_size!r}")
    return int(batch_size)


def check_order_size(steps: int, batch_size: int, n_train: int) -> None:
    """``MemoryError`` before generating an order of more than ``MAX_ORDER_BYTES`` (or a quarter of free memory)."""
    needed = 4 * steps * batch_size
    limit = min(MAX_ORDER_BYTES, available_memory() // 4)
    if needed <= limit:
        return
    fitting = max(limit // (4 * batch_size), 1)
    raise MemoryError(
        f"the minibatch order of steps={steps} x batch_size={batch_size} rows ({steps * batch_size / n_train:.3g} "
        f"epochs of the {n_train} training points) would take {needed / GIB:.3g} GiB as one int32 array, more than "
        f"the {limit / GIB:.3g} GiB allowed for it; at most {fitting} steps of this batch size fit (or train full "
        "batch, batch_size=None, which needs no order)"
    )


def minibatch_indices(batch_key, n_train: int, batch_size: Optional[int], steps: int) -> np.ndarray:
    """The minibatch order of ``batch_key``: training rows (steps, batch_size), int32.

    Each epoch is a fresh permutation of ``range(n_train)`` (epoch ``e`` by
    ``jax.random.split(batch_key, epochs)[e]``), sliced into consecutive
    minibatches; the last incomplete minibatch of an epoch is dropped.
    ``batch_size=None`` (or ``n_train``) is the full batch: every row, in
    order, at every step (an array the methods never need: they take
    ``batch_indices=None`` for it).

    Raises:
      ValueError: ``batch_size`` not in [1, n_train] or None, or a bad ``steps`` or ``n_train``.
      MemoryError: the order would take more than `MAX_ORDER_BYTES` or a
        quarter of the available memory (checked before anything is drawn).
    """
    n_train = check_int("n_train", n_train, 1)
    steps = check_int("steps", steps, 0)
    batch_size = n_train if batch_size is None else _check_batch_size(batch_size, n_train)
    check_order_size(steps, batch_size, n_train)
    if batch_size == n_train:
        return np.broadcast_to(np.arange(n_train, dtype=np.int32), (steps, n_train)).copy()
    per_epoch = n_train // batch_size
    epochs = -(-steps // per_epoch)
    order = np.empty((epochs * per_epoch, batch_size), np.int32)
    if epochs:
        epoch_keys = jax.random.split(batch_key, epochs)
        chunk = max(1, _CHUNK_ENTRIES // n_train)
        for first in range(0, epochs, chunk):
            rows = np.asarray(_permutations(epoch_keys[first : first + chunk], n_train))[:, : per_epoch * batch_size]
            order[first * per_epoch : (first + len(rows)) * per_epoch] = rows.reshape(-1, batch_size)
    return order[:steps]


@dataclasses.dataclass(frozen=True)
class RunKeys:
    """The keys of one run, derived once from its key by `run_keys`.

    Attributes:
      model: draws the model's randomness: the initialisations of finite
        networks (`init_keys`), the Monte Carlo samples of the Adam-like
        limit, the networks of the NNPK.
      batch: draws the minibatch order (`minibatch_order`).
    """

    model: jax.Array
    batch: jax.Array

    def init_keys(self, seeds: int) -> jax.Array:
        """One key per member of an ensemble of ``seeds`` finite networks: ``jax.random.split(model, seeds)``."""
        return jax.random.split(self.model, check_int("seeds", seeds, 1))

    def minibatch_order(self, n_train: int, batch_size: Optional[int], steps: int) -> np.ndarray:
        """The training rows (steps, batch_size), int32, of every step: `minibatch_indices` of the ``batch`` key."""
        return minibatch_indices(self.batch, n_train, batch_size, steps)


def run_keys(key) -> RunKeys:
    """The [`RunKeys`][infinite_width._src.rng.RunKeys] of a run started from ``key``.

    ``key``: an int seed in [0, 2**64), a ``numpy.random.Generator`` (a seed is
    drawn from it) or a jax PRNG key (see `as_key`); ``model, batch =
    jax.random.split(key)``.
    """
    model, batch = jax.random.split(as_key(key))
    return RunKeys(model, batch)
