"""A supervised problem: training and test data with the loss to train on.

Every regime of [`infinite_width.solve`][] reads the same [`Problem`][infinite_width.Problem],
so the same arrays reach the kernels, the Adam-like limit and the finite
networks. Everything is checked once, here, when the problem is built.

Shapes: inputs ``(N, d)`` (vectors) or ``(N, H, W, C)`` (NHWC images);
targets ``(N, k)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from infinite_width import losses
from infinite_width._src.checks import check_real_array

__all__ = ["Problem"]


def _inputs(name: str, x) -> np.ndarray:
    x = check_real_array(name, x, np.float32)
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (N, d) or (N, H, W, C), got shape {x.shape}")
    if x.shape[0] == 0 or x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x


def _targets(name: str, y, loss: str) -> np.ndarray:
    y = check_real_array(name, y, np.float32)
    if y.ndim != 2:
        raise ValueError(
            f"{name} must have shape (N, k) (one column per output; use y[:, None] for one output), "
            f"got shape {y.shape}"
        )
    if loss == "cross_entropy":
        if y.shape[1] < 2:
            raise ValueError(f"cross_entropy needs {name} of shape (N, k) with k >= 2 classes, got shape {y.shape}")
        if np.any(y < 0) or not np.allclose(y.sum(axis=1), 1.0, atol=1e-4):
            raise ValueError(
                f"cross_entropy needs {name} to hold one-hot rows or probabilities "
                "(non-negative, each row summing to 1)"
            )
    return y


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """Training and test data and the loss, validated at construction.

    Attributes:
      x_train: (N, d) or (N, H, W, C) float32 inputs.
      y_train: (N, k) float32 targets (one-hot rows for classification).
      x_test: (Nt, ...) inputs with the same feature shape as ``x_train``.
      y_test: (Nt, k) targets.
      loss: ``"mse"`` (``0.5 * mean((f - y)^2)``) or ``"cross_entropy"``
        (softmax; targets must be one-hot or probabilities with k >= 2).
      name: a short name used in tables and metadata.

    Raises ``TypeError`` for non-numeric data and ``ValueError`` naming the
    argument for wrong shapes, mismatched sample counts, NaN/Inf entries
    (checked after the conversion to float32, so values beyond its range,
    such as 1e39, count as Inf), an unknown loss or targets that do not fit it.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    loss: str = "mse"
    name: str = "problem"

    def __post_init__(self):
        losses.get(self.loss)  # unknown loss -> ValueError
        x_train = _inputs("x_train", self.x_train)
        x_test = _inputs("x_test", self.x_test)
        y_train = _targets("y_train", self.y_train, self.loss)
        y_test = _targets("y_test", self.y_test, self.loss)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(
                f"x_train and x_test have different feature shapes: {x_train.shape[1:]} vs {x_test.shape[1:]}"
            )
        if x_train.shape[0] != y_train.shape[0]:
            raise ValueError(
                f"x_train has {x_train.shape[0]} samples but y_train has {y_train.shape[0]}"
            )
        if x_test.shape[0] != y_test.shape[0]:
            raise ValueError(f"x_test has {x_test.shape[0]} samples but y_test has {y_test.shape[0]}")
        if y_train.shape[1] != y_test.shape[1]:
            raise ValueError(
                f"y_train and y_test have different numbers of outputs: {y_train.shape[1]} vs {y_test.shape[1]}"
            )
        for field, value in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
            value.setflags(write=False)
            object.__setattr__(self, field, value)

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]

    @property
    def out_dim(self) -> int:
        """Number of outputs k."""
        return self.y_train.shape[1]

    @property
    def input_kind(self) -> str:
        """``"vector"`` for (N, d) inputs, ``"image"`` for (N, H, W, C)."""
        return "vector" if self.x_train.ndim == 2 else "image"

    @classmethod
    def from_dataset(cls, dataset, loss: str = "mse") -> "Problem":
        """The problem of a [`infinite_width.datasets.Dataset`][] (one-hot targets)."""
        for field in ("x_train", "y_train", "x_test", "y_test"):
            if not hasattr(dataset, field):
                raise TypeError(f"expected a datasets.Dataset, got {type(dataset).__name__} without {field!r}")
        return cls(
            dataset.x_train,
            dataset.y_train,
            dataset.x_test,
            dataset.y_test,
            loss=loss,
            name=str(getattr(dataset, "name", "dataset")),
        )

    def describe(self) -> str:
        return (
            f"{self.name}: {self.n_train} train / {self.n_test} test, inputs {self.x_train.shape[1:]}, "
            f"{self.out_dim} outputs, loss {self.loss}"
        )
