"""The validation split of the experiments: training, validation and test points fixed before any result is seen.

A [`Split`][infinite_width.experiments.validation.Split] holds the three sets
of one experiment. Every regime of the experiment is tuned on the same
validation points and scored on the same test points; the split depends only
on the data and its seed, never on a result.

Two ways to carve it, one object:

* [`Split.from_training_rows`][infinite_width.experiments.validation.Split.from_training_rows]:
  the last ``n`` training points validate (the training subsets of
  `infinite_width.datasets.load` are in random order), for a protocol that
  chooses on them and then refits on every training point (the NNPK ablation);
* [`Split.from_test_rows`][infinite_width.experiments.validation.Split.from_test_rows]:
  the first ``n`` points of the held-out set validate and the rest are the
  test set, so the training set keeps its size ``N`` and the validation and
  test points are the same for every ``N`` (learning curves; early stopping
  with a validation set of 1,000 points beside a training set of 1,000).

A trained regime is solved once on
[`evaluation_problem`][infinite_width.experiments.validation.Split.evaluation_problem]
(the training points, evaluated on the validation points followed by the test
points), and [`parts`][infinite_width.experiments.validation.Split.parts]
separates what it predicted on each.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from infinite_width._src.checks import check_int
from infinite_width.problem import Problem

__all__ = ["Split"]


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """The training, validation and test points of one experiment (read-only arrays, one loss).

    Attributes:
      train: the training points (a [`Problem`][infinite_width.Problem] whose
        test set is the validation set, so it is also the tuning problem).
      x_test: test inputs (Nt, ...).
      y_test: test targets (Nt, k).
    """

    train: Problem
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self):
        if not isinstance(self.train, Problem):
            raise TypeError(f"train must be an infinite_width.Problem, got {type(self.train).__name__}")
        test = Problem(self.train.x_train[:1], self.train.y_train[:1], self.x_test, self.y_test,
                       loss=self.train.loss)  # the same checks as every problem's test set
        object.__setattr__(self, "x_test", test.x_test)
        object.__setattr__(self, "y_test", test.y_test)

    @classmethod
    def from_training_rows(cls, problem: Problem, n_validation: int) -> "Split":
        """The last ``n_validation`` training points of ``problem`` validate; its test set stays the test set.

        Args:
          problem: the data.
          n_validation: validation points, in [1, N - 1].
        """
        n = _check_count(problem, n_validation, "training")
        cut = problem.n_train - n
        train = Problem(problem.x_train[:cut], problem.y_train[:cut], problem.x_train[cut:], problem.y_train[cut:],
                        loss=problem.loss, name=problem.name)
        return cls(train, problem.x_test, problem.y_test)

    @classmethod
    def from_test_rows(cls, problem: Problem, n_validation: int) -> "Split":
        """The first ``n_validation`` test points of ``problem`` validate, the others are the test set.

        The training set is untouched, so a training set of any size gets the
        same validation and test points (draw the held-out set with the same
        seed for every size).

        Args:
          problem: the data.
          n_validation: validation points, in [1, Nt - 1].
        """
        n = _check_count(problem, n_validation, "test")
        train = Problem(problem.x_train, problem.y_train, problem.x_test[:n], problem.y_test[:n],
                        loss=problem.loss, name=problem.name)
        return cls(train, problem.x_test[n:], problem.y_test[n:])

    @property
    def name(self) -> str:
        return self.train.name

    @property
    def loss(self) -> str:
        return self.train.loss

    @property
    def n_train(self) -> int:
        return self.train.n_train

    @property
    def n_validation(self) -> int:
        return self.train.n_test

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]

    @property
    def x_validation(self) -> np.ndarray:
        return self.train.x_test

    @property
    def y_validation(self) -> np.ndarray:
        return self.train.y_test

    def with_loss(self, loss: str) -> "Split":
        """The same points with another training loss.

        Args:
          loss: ``"mse"`` or ``"cross_entropy"``.
        """
        train = Problem(self.train.x_train, self.train.y_train, self.train.x_test, self.train.y_test, loss=loss,
                        name=self.train.name)
        return Split(train, self.x_test, self.y_test)

    def refit_problem(self) -> Problem:
        """Every training and validation point, evaluated on the test set (a refit after the choice)."""
        return Problem(np.concatenate([self.train.x_train, self.x_validation]),
                       np.concatenate([self.train.y_train, self.y_validation]), self.x_test, self.y_test,
                       loss=self.loss, name=self.name)

    def evaluation_problem(self) -> Problem:
        """The training points, evaluated on the validation points followed by the test points (one solve: both)."""
        return Problem(self.train.x_train, self.train.y_train, np.concatenate([self.x_validation, self.x_test]),
                       np.concatenate([self.y_validation, self.y_test]), loss=self.loss, name=self.name)

    def parts(self, evaluated: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(validation, test)`` parts of predictions on ``evaluation_problem().x_test``, split on axis -2.

        Args:
          evaluated: (..., n_validation + n_test, k) predictions.
        """
        evaluated = np.asarray(evaluated)
        if evaluated.ndim < 2 or evaluated.shape[-2] != self.n_validation + self.n_test:
            raise ValueError(f"predictions must have shape (..., {self.n_validation + self.n_test}, k) "
                             f"(validation then test points), got {evaluated.shape}")
        return evaluated[..., : self.n_validation, :], evaluated[..., self.n_validation:, :]

    def describe(self) -> str:
        return (f"{self.name}: {self.n_train} train / {self.n_validation} validation / {self.n_test} test, "
                f"inputs {self.train.x_train.shape[1:]}, {self.train.out_dim} outputs, loss {self.loss}")


def _check_count(problem: Problem, n_validation, where: str) -> int:
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an infinite_width.Problem, got {type(problem).__name__}")
    available = problem.n_train if where == "training" else problem.n_test
    n = check_int("n_validation", n_validation, 1)
    if n >= available:
        raise ValueError(f"n_validation must lie in [1, {available - 1}] (the {available} {where} points leave none "
                         f"for the other side), got {n}")
    return n
