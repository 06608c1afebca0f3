"""The tuning protocol of the experiments: grids that bracket their optimum, training stopped early on validation.

* [`Grid`][infinite_width.experiments.tuning.Grid]: the values of one
  hyper-parameter (a learning rate, a ridge). When the best value sits at an
  end of the values tried, the grid grows by one ``factor`` beyond that end,
  within ``[low, high]``, until the optimum is inside (or a bound is reached,
  which [`Grid.landing`][infinite_width.experiments.tuning.Grid.landing] says);
* [`Budget`][infinite_width.experiments.tuning.Budget]: training by epochs,
  stopped early on validation with a ``patience``. A run is finished when its
  best validation score is at least ``patience`` epochs before its last epoch
  (validation stopped improving); otherwise the run is repeated with twice the
  epochs (the same key gives the same first epochs), up to ``max_epochs``;
* [`best_index`][infinite_width.experiments.tuning.best_index]: the best
  recorded point of a validation curve (accuracy, then loss, then the earliest);
* [`tune`][infinite_width.experiments.tuning.tune]: a grid search with these rules.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from infinite_width._src.checks import check_int

__all__ = ["Grid", "Budget", "best_index", "score", "tune", "LANDINGS"]

LANDINGS = ("inside", "at the lower bound", "at the upper bound", "single value")
"""Where a grid's optimum landed ([`Grid.landing`][infinite_width.experiments.tuning.Grid.landing])."""


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class Grid:
    """A grid of one positive hyper-parameter that extends itself to bracket its optimum.

    Attributes:
      values: the values tried first (increasing after sorting).
      factor: the step of an extension (> 1): the next value beyond an end
        is that end times (or divided by) ``factor``.
      low: the stated lower bound of the extensions, finite and positive
        (the first values must lie within the bounds).
      high: the stated upper bound of the extensions, finite and positive.
    """

    values: Tuple[float, ...]
    factor: float
    low: float
    high: float

    def __post_init__(self):
        values = tuple(sorted(_positive("grid values", v) for v in self.values))
        if not values:
            raise ValueError("a grid needs at least one value")
        factor = _positive("factor", self.factor)
        if factor <= 1:
            raise ValueError(f"factor must be > 1, got {factor}")
        low, high = _positive("low", self.low), _positive("high", self.high)
        if not (low <= values[0] and values[-1] <= high):
            raise ValueError(f"grid values {values} must lie within the bounds [{self.low}, {self.high}]")
        for name, value in (("values", values), ("factor", factor), ("low", low), ("high", high)):
            object.__setattr__(self, name, value)

    def extension(self, tried: Sequence[float], best: float) -> Optional[float]:
        """The next value to try when ``best`` is an end of ``tried``, within the bounds; None if there is none.

        Args:
          tried: the values evaluated so far.
          best: the best of them.
        """
        tried = sorted(tried)
        if len(self.values) < 2:  # a single value is a fixed setting, not a search
            return None
        if best == tried[-1] and tried[-1] * self.factor <= self.high * (1 + 1e-9):
            return _rounded(tried[-1] * self.factor)
        if best == tried[0] and tried[0] / self.factor >= self.low * (1 - 1e-9):
            return _rounded(tried[0] / self.factor)
        return None

    def landing(self, tried: Sequence[float], best: float) -> str:
        """Where ``best`` landed among ``tried``: one of `LANDINGS`.

        Args:
          tried: the values evaluated.
          best: the best of them.
        """
        tried = sorted(tried)
        if len(tried) == 1:
            return "single value"
        if best == tried[0]:
            return "at the lower bound"
        if best == tried[-1]:
            return "at the upper bound"
        return "inside"


def _rounded(value: float) -> float:
    """Four significant digits: stable file names and fingerprints for extended values."""
    return float(f"{value:.4g}")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Training by epochs, stopped early on validation (see the module docstring).

    Attributes:
      batch_size: minibatch rows per step (each epoch a fresh permutation;
        ``N // batch_size`` steps per epoch).
      initial_epochs: the epochs of a first run.
      patience: epochs without a better validation score that finish a run.
      max_epochs: the most epochs a run is given (the doubling stops there).
      records: at most about this many recorded epochs per run (every epoch
        while the run has fewer epochs, else every ``epochs // records``-th).
    """

    batch_size: int = 128
    initial_epochs: int = 32
    patience: int = 10
    max_epochs: int = 512
    records: int = 128

    def __post_init__(self):
        for name, minimum in (("batch_size", 1), ("initial_epochs", 1), ("patience", 1), ("max_epochs", 1),
                              ("records", 2)):
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum))
        if self.initial_epochs > self.max_epochs:
            raise ValueError(f"initial_epochs ({self.initial_epochs}) must be <= max_epochs ({self.max_epochs})")

    def steps_per_epoch(self, n_train: int) -> int:
        """Steps of one epoch on ``n_train`` points (the last incomplete minibatch of an epoch is dropped).

        Args:
          n_train: the training points.
        """
        n_train = check_int("n_train", n_train, 1)
        if n_train < self.batch_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {n_train} training points")
        return n_train // self.batch_size

    def recorded_epochs(self, epochs: int) -> List[int]:
        """The epochs a run of ``epochs`` epochs records: 0, every ``every``-th, and the last.

        Args:
          epochs: the run's epochs.
        """
        every = max(1, epochs // self.records)
        return sorted(set(range(0, epochs + 1, every)) | {epochs})

    def next_epochs(self, epochs: int, best_epoch: int) -> Optional[int]:
        """The epochs of the next run, or None when this one is finished (patience seen, or ``max_epochs``).

        Args:
          epochs: the epochs of this run.
          best_epoch: its epoch with the best validation score.
        """
        if epochs - best_epoch >= self.patience or epochs >= self.max_epochs:
            return None
        return min(2 * epochs, self.max_epochs)

    def stopped_by(self, epochs: int, best_epoch: int) -> str:
        """``"patience"`` when validation stopped improving, ``"max_epochs"`` when the bound ended the run.

        Args:
          epochs: the epochs of the run.
          best_epoch: its epoch with the best validation score.
        """
        return "patience" if epochs - best_epoch >= self.patience else "max_epochs"


def score(accuracy: float, loss: float) -> Tuple[float, float]:
    """The sort key of a validation result: higher accuracy, then lower loss; NaN is worst.

    Args:
      accuracy: the validation accuracy.
      loss: the validation loss.
    """
    accuracy = -math.inf if not math.isfinite(accuracy) else accuracy
    loss = math.inf if not math.isfinite(loss) else loss
    return accuracy, -loss


def best_index(accuracy: Sequence[float], loss: Sequence[float]) -> int:
    """The index of the best point of a validation curve: best accuracy, then lowest loss, then the earliest.

    Args:
      accuracy: (R,) validation accuracies.
      loss: (R,) validation losses.
    """
    accuracy, loss = np.asarray(accuracy, np.float64), np.asarray(loss, np.float64)
    if accuracy.shape != loss.shape or accuracy.ndim != 1 or accuracy.size == 0:
        raise ValueError(f"accuracy and loss must be curves of one shape (R,), got {accuracy.shape} and {loss.shape}")
    keys = [score(a, l) for a, l in zip(accuracy, loss)]
    return max(range(len(keys)), key=lambda i: (keys[i], -i))


def tune(grid: Grid, evaluate: Callable[[float], Tuple[float, float]]) -> Tuple[Dict[float, Tuple[float, float]], float]:
    """Grid search with extensions: ``({value: (accuracy, loss)}, best value)``.

    Args:
      grid: the grid.
      evaluate: ``value -> (validation accuracy, validation loss)``.

    ``evaluate(value)`` returns the validation ``(accuracy, loss)`` of a value
    (its best point); the best value has the best [`score`][infinite_width.experiments.tuning.score] (ties: the
    smaller value). Every value of ``grid`` is evaluated, then the grid
    extends beyond a winning end ([`Grid.extension`][infinite_width.experiments.tuning.Grid.extension]) until it cannot.
    """
    results: Dict[float, Tuple[float, float]] = {}
    pending = list(grid.values)
    while pending:
        for value in pending:
            results[value] = evaluate(value)
        best = max(sorted(results), key=lambda v: score(*results[v]))
        extension = grid.extension(list(results), best)
        pending = [] if extension is None or extension in results else [extension]
    return results, best
