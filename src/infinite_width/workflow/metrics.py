"""Losses, accuracies and divergence of [`Predictions`][infinite_width.Predictions]: computed once, here, for every method.

[`to_trajectory`][infinite_width.workflow.metrics.to_trajectory] turns a method's predictions into a
[`Trajectory`][infinite_width.Trajectory]: the losses and accuracies of every seed
at every recorded step ([`metrics`][infinite_width.workflow.metrics.metrics]), those of every Monte Carlo replica
when there are replicas (``replica_metrics["replica_<split>_<metric>"]``,
shape (R_mc, R)), and the ``diverged`` flags ([`diverged`][infinite_width.workflow.metrics.diverged]).

One rule for divergence ([`diverged_records`][infinite_width.workflow.metrics.diverged_records]): a seed has diverged
from the first recorded step at which its train or test loss is NaN or Inf, or
exceeds [`EXPLOSION_FACTOR`][infinite_width.workflow.metrics.EXPLOSION_FACTOR] times the loss of the zero function on
that split (what every centered model and limit starts from), or at which the
method itself saw it diverge. From that step on its accuracies are NaN (a
diverged model classifies nothing), and every summary (``Trajectory.final``,
``metric``, the tables of [`compare`][infinite_width.compare]) leaves
the seed out; its losses are kept as computed, to show how it diverged.

A single output (k = 1) is classified by the side of the threshold halfway
between the smallest and the largest training target (0 for labels in
{-1, +1}, 0.5 for labels in {0, 1}; see
[`infinite_width.losses.accuracy`][]), on both splits.
"""

from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width import losses
from infinite_width._src.numerics import precision_scope
from infinite_width.predictions import Predictions
from infinite_width.problem import Problem
from infinite_width.workflow.trajectory import Trajectory

__all__ = ["metrics", "diverged", "diverged_records", "to_trajectory", "EXPLOSION_FACTOR"]

EXPLOSION_FACTOR = 1e4
"""A loss above this many times that of the zero function on its split has exploded (see [`diverged`][infinite_width.workflow.metrics.diverged])."""

# Raw replica predictions stay in `Predictions`; a trajectory keeps their metrics.
_REPLICA_PREDICTIONS = {"replica_train": "train", "replica_test": "test"}


def _threshold(problem: Problem):
    """The class threshold of a single output (None for k >= 2: the argmax decides)."""
    return losses.binary_threshold(jnp.asarray(problem.y_train)) if problem.out_dim == 1 else None


def _per_record(problem: Problem, predictions, targets) -> Dict[str, np.ndarray]:
    """Loss and accuracy of (..., R, n, k) predictions against (n, k) targets, each (..., R)."""
    loss_fn, batch_shape = losses.get(problem.loss), predictions.shape[:-2]
    flat = jnp.asarray(predictions, jnp.float32).reshape((-1,) + predictions.shape[-2:])
    threshold = _threshold(problem)
    with precision_scope("float32"):
        loss = jax.vmap(loss_fn, in_axes=(0, None))(flat, targets)
        accuracy = jax.vmap(lambda f: losses.accuracy(f, targets, threshold))(flat)
    # np.array copies: a float64 jax result (x64 mode) would otherwise be a read-only view
    return {"loss": np.array(loss, np.float64).reshape(batch_shape),
            "accuracy": np.array(accuracy, np.float64).reshape(batch_shape)}


def metrics(problem: Problem, predictions: Predictions) -> Dict[str, np.ndarray]:
    """``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy``: each (S, R), float64.

    As computed from the predictions, before the divergence rule (see
    [`to_trajectory`][infinite_width.workflow.metrics.to_trajectory]) sets the accuracies of diverged records to NaN.

    Args:
      problem: the data and the loss.
      predictions: the method's predictions on it.
    """
    out = {}
    for split, values, targets in (("train", predictions.train, problem.y_train),
                                   ("test", predictions.test, problem.y_test)):
        for name, value in _per_record(problem, values, targets).items():
            out[f"{split}_{name}"] = value
    return out


def diverged_records(problem: Problem, predictions: Predictions, values: Dict[str, np.ndarray]) -> np.ndarray:
    """(S, R) True at and after the first recorded step at which a seed diverged (the rule of the module docstring).

    The method's own verdict counts from its ``first_nonfinite_step`` (from
    the last recorded step when it names none).

    Args:
      problem: the data and the loss.
      predictions: the method's predictions on it.
      values: the [`metrics`][infinite_width.workflow.metrics.metrics] of ``predictions``.
    """
    loss_fn = losses.get(problem.loss)
    bad = np.zeros(values["train_loss"].shape, bool)
    for split, targets in (("train", problem.y_train), ("test", problem.y_test)):
        loss = values[f"{split}_loss"]
        zero_loss = float(loss_fn(jnp.zeros(targets.shape), targets))
        with np.errstate(invalid="ignore"):
            bad |= ~np.isfinite(loss) | ((loss > EXPLOSION_FACTOR * zero_loss) if zero_loss > 0 else False)
    steps, first = predictions.steps, predictions.first_nonfinite_step
    for seed in np.flatnonzero(predictions.diverged):
        bad[seed] |= steps >= first[seed] if first[seed] >= 0 and not predictions.is_static else steps == steps[-1]
    return np.logical_or.accumulate(bad, axis=1)


def diverged(problem: Problem, predictions: Predictions, values: Dict[str, np.ndarray]) -> np.ndarray:
    """(S,) True for the seeds that diverged at some recorded step ([`diverged_records`][infinite_width.workflow.metrics.diverged_records]).

    Args:
      problem: the data and the loss.
      predictions: the method's predictions on it.
      values: the [`metrics`][infinite_width.workflow.metrics.metrics] of ``predictions``.
    """
    return diverged_records(problem, predictions, values).any(axis=1)


def to_trajectory(problem: Problem, predictions: Predictions, metadata: dict) -> Trajectory:
    """The [`Trajectory`][infinite_width.Trajectory] of ``predictions`` on ``problem``: metrics computed here, predictions as float32.

    The trajectory's predictions carry the verdict of [`diverged`][infinite_width.workflow.metrics.diverged], and
    the accuracies of every diverged record are NaN.

    Args:
      problem: the data and the loss.
      predictions: the method's predictions on it (stored as float32).
      metadata: the trajectory's metadata (JSON-serializable).
    """
    values = metrics(problem, predictions)
    bad = diverged_records(problem, predictions, values)
    for split in ("train", "test"):
        values[f"{split}_accuracy"][bad] = np.nan
    replica_metrics = {}
    for name, split in _REPLICA_PREDICTIONS.items():
        if name in predictions.extras:
            targets = problem.y_train if split == "train" else problem.y_test
            for metric, value in _per_record(problem, predictions.extras[name], targets).items():
                replica_metrics[f"replica_{split}_{metric}"] = value
    as_float32 = lambda value: None if value is None else np.asarray(value, np.float32)  # noqa: E731
    kept = Predictions(
        steps=predictions.steps,
        train=as_float32(predictions.train),
        test=as_float32(predictions.test),
        diverged=bad.any(axis=1),
        first_nonfinite_step=predictions.first_nonfinite_step,
        train_stderr=as_float32(predictions.train_stderr),
        test_stderr=as_float32(predictions.test_stderr),
        extras={name: value for name, value in predictions.extras.items() if name not in _REPLICA_PREDICTIONS},
        info=predictions.info,
    )
    return Trajectory(kept, values["train_loss"], values["test_loss"], values["train_accuracy"],
                      values["test_accuracy"], replica_metrics, metadata)
