"""Losses shared by every regime, and their output gradients chi.

Conventions (the ones neural-tangents' ``predict`` module uses for MSE):

* ``mse(f, y) = 0.5 * mean((f - y)^2)`` over all N*k entries;
* ``cross_entropy(f, y) = mean_i( -sum_c y_ic log_softmax(f_i)_c )`` with
  one-hot (or probability) targets ``y``.

``chi(loss, f, y)`` is ``d loss / d f`` of shape (N, k): the only thing the
infinite-width dynamics need from a loss (docs/theory.md, sections 4 and 5).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["LOSSES", "get", "mse", "cross_entropy", "chi", "accuracy", "binary_threshold"]


def mse(f, y):
    """``0.5 * mean((f - y)^2)``, the mean over all N k entries.

    Args:
      f: (N, k) predictions.
      y: (N, k) targets.
    """
    return 0.5 * jnp.mean((f - y) ** 2)


def cross_entropy(f, y):
    """Softmax cross-entropy averaged over examples.

    Args:
      f: (N, k) logits.
      y: (N, k) target probabilities (one-hot).
    """
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(f, axis=-1), axis=-1))


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


def get(name: str) -> Callable:
    """The loss function called ``name``.

    Args:
      name: ``"mse"`` or ``"cross_entropy"`` (a key of ``LOSSES``).

    Raises:
      TypeError: ``name`` is not a string.
      ValueError: an unknown name.
    """
    if not isinstance(name, str):
        raise TypeError(f"loss must be a name, one of {tuple(LOSSES)}, got {name!r} of type {type(name).__name__}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {tuple(LOSSES)}")
    return LOSSES[name]


def chi(name: str, f, y):
    """Output gradient ``d loss / d f``, shape (N, k).

    Args:
      name: the loss, ``"mse"`` or ``"cross_entropy"``.
      f: (N, k) predictions.
      y: (N, k) targets.
    """
    return jax.grad(get(name))(f, y)


def binary_threshold(y):
    """The threshold of a single output (k = 1): halfway between the smallest and the largest target.

    0 for labels in {-1, +1}, 0.5 for labels in {0, 1}; NaN when every target
    is the same (one class: nothing to tell apart).

    Args:
      y: (N, 1) targets.

    Returns:
      A scalar jax array.
    """
    low, high = jnp.min(y), jnp.max(y)
    return jnp.where(high > low, (low + high) / 2, jnp.nan)


def accuracy(f, y, threshold=None):
    """Fraction of rows classified right; NaN if any row of ``f`` is not finite.

    With k >= 2 outputs a row is right when its largest output is the largest
    target's. With a single output (k = 1) the two classes are the two sides
    of ``threshold``: a row is right when ``f`` and ``y`` lie on the same side
    (``> threshold`` or not). A row of ``f`` holding NaN or Inf has no
    meaningful argmax (NaN would count as class 0), so its correctness is NaN,
    and so is the mean: a diverged prediction never yields an accuracy.

    Args:
      f: (N, k) predictions.
      y: (N, k) targets.
      threshold: the threshold of a single output (k = 1); default
        `binary_threshold` of ``y``: 0 for labels in {-1, +1}, 0.5 for labels
        in {0, 1}. Ignored for k >= 2.

    Returns:
      A scalar jax array.
    """
    if f.shape[-1] == 1:
        threshold = binary_threshold(y) if threshold is None else threshold
        correct = jnp.where(jnp.isnan(threshold), jnp.nan, (f[:, 0] > threshold) == (y[:, 0] > threshold))
    else:
        correct = jnp.argmax(f, axis=-1) == jnp.argmax(y, axis=-1)
    finite_rows = jnp.all(jnp.isfinite(f), axis=-1)
    return jnp.mean(jnp.where(finite_rows, correct, jnp.nan))
