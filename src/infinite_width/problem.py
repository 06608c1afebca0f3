"""A supervised problem: training and test data with the loss to train on.

Every regime of [`infinite_width.solve`][] reads the same [`Problem`][infinite_width.Problem],
so the same arrays reach the kernels, the Adam-like limit and the finite
networks. Everything is checked once, here, when the problem is built.

Shapes: inputs ``(N, d)`` (vectors) or ``(N, H, W, C)`` (NHWC images);
targets ``(N, k)``, or 1-D integer class labels ``(N,)``, converted to
one-hot rows of ``k = 1 + the largest label`` (of both splits) classes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Dict

import numpy as np

from infinite_width import losses
from infinite_width._src.checks import check_real_array, is_labels, one_hot

__all__ = ["Problem"]


def _inputs(name: str, x) -> np.ndarray:
    x = check_real_array(name, x, np.float32)
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (N, d) or (N, H, W, C), got shape {x.shape}")
    if x.shape[0] == 0 or x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x


def array_digest(*arrays: np.ndarray) -> str:
    """SHA-256 (hex) of the shapes and bytes of ``arrays``, in order: what identifies data."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _as_array(y):
    return np.asarray(y) if isinstance(y, (list, tuple)) else y


def _classes(y_train, y_test) -> int:
    """k: the columns of 2-D targets, else ``1 + the largest label`` of the 1-D integer labels."""
    for y in (y_train, y_test):
        if getattr(y, "ndim", None) == 2:
            return y.shape[1]
    return 1 + max(int(y.max()) if y.size else 0 for y in (y_train, y_test) if is_labels(y))


def _targets(name: str, y, loss: str, k: int) -> np.ndarray:
    if is_labels(y):
        y = one_hot(name, y, k)
    y = check_real_array(name, y, np.float32)
    if y.ndim != 2:
        raise ValueError(
            f"{name} must have shape (N, k) (one column per output; use y[:, None] for one output) or hold 1-D "
            f"integer class labels, got shape {y.shape} and dtype {y.dtype}"
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
      y_train: (N, k) float32 targets (one-hot rows for classification). 1-D
        integer class labels (N,) are accepted and stored as one-hot rows of
        ``k = 1 + max(labels)`` classes, the largest label of ``y_train`` and
        ``y_test`` (labels ``0..k-1``; pass one-hot rows for classes that
        neither split holds). For a single real output pass ``y[:, None]``.
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
        y_train, y_test = _as_array(self.y_train), _as_array(self.y_test)
        k = _classes(y_train, y_test) if is_labels(y_train) or is_labels(y_test) else None
        y_train = _targets("y_train", y_train, self.loss, k)
        y_test = _targets("y_test", y_test, self.loss, k)
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
        """The problem of a data set (its one-hot targets).

        Args:
          dataset: a [`infinite_width.datasets.Dataset`][] (anything with ``x_train``, ``y_train``,
            ``x_test`` and ``y_test``; its ``name`` is kept).
          loss: ``"mse"`` or ``"cross_entropy"``.
        """
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

    @functools.cached_property
    def checksums(self) -> Dict[str, str]:
        """What identifies the data: ``"data"``, the SHA-256 of all four arrays, and ``"x_train"``, ``"x_test"``,
        that of each input array (16 hex digits), which tells whether two solves saw the same inputs."""
        return {
            "data": array_digest(self.x_train, self.y_train, self.x_test, self.y_test),
            "x_train": array_digest(self.x_train)[:16],
            "x_test": array_digest(self.x_test)[:16],
        }

    def describe(self) -> str:
        """One line: the name, the sizes, the input shape, the outputs and the loss."""
        return (
            f"{self.name}: {self.n_train} train / {self.n_test} test, inputs {self.x_train.shape[1:]}, "
            f"{self.out_dim} outputs, loss {self.loss}"
        )
