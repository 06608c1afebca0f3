"""Losses, accuracies and divergence of [`Predictions`][infinite_width.Predictions]: computed once, here, for every method.

[`to_trajectory`][infinite_width.workflow.metrics.to_trajectory] turns a method's predictions into a
[`Trajectory`][infinite_width.Trajectory]: the losses and accuracies of every seed
at every recorded step ([`metrics`][infinite_width.workflow.metrics.metrics]), those of every Monte Carlo replica
when there are replicas (``extras["replica_<split>_<metric>"]``, shape
(R_mc, R)), and the ``diverged`` flags ([`diverged`][infinite_width.workflow.metrics.diverged]).
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

__all__ = ["metrics", "diverged", "to_trajectory", "EXPLOSION_FACTOR"]

EXPLOSION_FACTOR = 1e4
"""A training loss above this many times that of the zero function has exploded (see [`diverged`][infinite_width.workflow.metrics.diverged])."""

# Raw replica predictions stay in `Predictions`; a trajectory keeps their metrics.
_REPLICA_PREDICTIONS = {"replica_train": "train", "replica_test": "test"}


def _per_record(problem: Problem, predictions, targets) -> Dict[str, np.ndarray]:
    """Loss and accuracy of (..., R, n, k) predictions against (n, k) targets, each (..., R)."""
    loss_fn, batch_shape = losses.get(problem.loss), predictions.shape[:-2]
    flat = jnp.asarray(predictions, jnp.float32).reshape((-1,) + predictions.shape[-2:])
    with precision_scope("float32"):
        loss = jax.vmap(loss_fn, in_axes=(0, None))(flat, targets)
        accuracy = jax.vmap(losses.accuracy, in_axes=(0, None))(flat, targets)
    return {"loss": np.asarray(loss, np.float64).reshape(batch_shape),
            "accuracy": np.asarray(accuracy, np.float64).reshape(batch_shape)}


def metrics(problem: Problem, predictions: Predictions) -> Dict[str, np.ndarray]:
    """``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy``: each (S, R), float64."""
    out = {}
    for split, values, targets in (("train", predictions.train, problem.y_train),
                                   ("test", predictions.test, problem.y_test)):
        for name, value in _per_record(problem, values, targets).items():
            out[f"{split}_{name}"] = value
    return out


def diverged(problem: Problem, predictions: Predictions, values: Dict[str, np.ndarray]) -> np.ndarray:
    """(S,) True for seeds whose predictions or losses are not finite, or whose training loss exploded.

    A seed diverged when the method says so (non-finite predictions, a
    non-finite loss during training), when a recorded train or test loss is
    NaN or Inf, or when a recorded training loss exceeds
    [`EXPLOSION_FACTOR`][infinite_width.workflow.metrics.EXPLOSION_FACTOR] times the training loss of the zero function
    (what every centered model and limit starts from).
    """
    zero_loss = float(losses.get(problem.loss)(jnp.zeros(problem.y_train.shape), problem.y_train))
    nonfinite = ~(np.isfinite(values["train_loss"]).all(axis=1) & np.isfinite(values["test_loss"]).all(axis=1))
    with np.errstate(invalid="ignore"):
        exploded = (values["train_loss"] > EXPLOSION_FACTOR * zero_loss).any(axis=1) if zero_loss > 0 else False
    return predictions.diverged | nonfinite | exploded


def to_trajectory(problem: Problem, predictions: Predictions, metadata: dict) -> Trajectory:
    """The [`Trajectory`][infinite_width.Trajectory] of ``predictions`` on ``problem``: metrics computed here, predictions as float32."""
    values = metrics(problem, predictions)
    extras = {name: value for name, value in predictions.extras.items() if name not in _REPLICA_PREDICTIONS}
    for name, split in _REPLICA_PREDICTIONS.items():
        if name in predictions.extras:
            targets = problem.y_train if split == "train" else problem.y_test
            for metric, value in _per_record(problem, predictions.extras[name], targets).items():
                extras[f"replica_{split}_{metric}"] = value
    as_float32 = lambda value: None if value is None else np.asarray(value, np.float32)  # noqa: E731
    return Trajectory(
        steps=predictions.steps,
        train_predictions=as_float32(predictions.train),
        test_predictions=as_float32(predictions.test),
        diverged=diverged(problem, predictions, values),
        train_stderr=as_float32(predictions.train_stderr),
        test_stderr=as_float32(predictions.test_stderr),
        extras=extras,
        metadata=metadata,
        **values,
    )
