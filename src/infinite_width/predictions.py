"""The one raw result type of every method: [`Predictions`][infinite_width.Predictions] at recorded steps.

Finite networks ([`infinite_width.finite.train`][]), kernel dynamics
([`infinite_width.limits.kernel_dynamics`][]), the Adam-like limit and its
exact cases, and the t = infinity baselines all return a [`Predictions`][infinite_width.Predictions].
It holds outputs only: losses and accuracies are computed once, from it, by
[`infinite_width.workflow.metrics`][] when [`infinite_width.solve`][]
builds a [`Trajectory`][infinite_width.Trajectory].

Shapes (``S`` seeds of finite networks, 1 for a deterministic limit; ``R``
recorded steps; ``N``/``Nt`` train/test points; ``k`` outputs):

* ``steps`` (R,) int64, increasing; [`STATIC_STEP`][infinite_width.workflow.STATIC_STEP] (-1) means t = infinity;
* ``train`` (S, R, N, k), ``test`` (S, R, Nt, k): float32, or float64 when
  computed in float64 (``Nt`` may be 0: no test points);
* ``diverged`` (S,) bool and ``first_nonfinite_step`` (S,) int64 (-1 when
  none): derived from the predictions when the producer does not know more
  (a finite network also counts a non-finite training loss);
* ``train_stderr`` (R, N, k), ``test_stderr`` (R, Nt, k): Monte Carlo
  standard errors, or None;
* ``extras``: further named arrays (``"test_variance"`` (Nt, k) of the NNGP
  posterior, ``"replica_train"`` (R_mc, R, N, k) and ``"replica_test"``
  (R_mc, R, Nt, k) of the Adam-like limit's Monte Carlo replicas);
* ``info``: a JSON-serializable dict about the computation (``setup_time_s``,
  ``memory``, Monte Carlo sizes, ...).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, Optional

import numpy as np

__all__ = ["Predictions", "STATIC_STEP"]

STATIC_STEP = -1
"""The recorded step of a non-dynamical baseline (``t = infinity``)."""

_FLOAT_DTYPES = (np.float32, np.float64)


def _float_array(value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype not in _FLOAT_DTYPES:
        array = array.astype(np.float32)
    return array


def _first_nonfinite(steps: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(S,) the first recorded step whose predictions are not all finite, -1 where every record is finite."""
    finite = np.isfinite(train).all(axis=(2, 3)) & np.isfinite(test).all(axis=(2, 3))  # (S, R)
    first = np.full(train.shape[0], -1, np.int64)
    for seed, row in enumerate(finite):
        bad = np.flatnonzero(~row)
        if bad.size:
            first[seed] = steps[bad[0]]
    return first


@dataclasses.dataclass(frozen=True, eq=False)
class Predictions:
    """Outputs of one method at its recorded steps (shapes in the module docstring), checked at construction."""

    steps: np.ndarray
    train: np.ndarray
    test: np.ndarray
    diverged: Optional[np.ndarray] = None
    first_nonfinite_step: Optional[np.ndarray] = None
    train_stderr: Optional[np.ndarray] = None
    test_stderr: Optional[np.ndarray] = None
    extras: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        steps = np.asarray(self.steps)
        if steps.ndim != 1 or steps.size == 0 or not np.issubdtype(steps.dtype, np.integer):
            raise ValueError(f"steps must be a non-empty 1-D integer array, got {steps!r}")
        steps = steps.astype(np.int64)
        if np.any(np.diff(steps) <= 0):
            raise ValueError(f"steps must be strictly increasing, got {steps.tolist()}")
        train, test = _float_array(self.train), _float_array(self.test)
        if train.ndim != 4 or train.shape[1] != steps.size:
            raise ValueError(f"train must have shape (S, R={steps.size}, N, k), got {train.shape}")
        seeds, _, _, k = train.shape
        if test.ndim != 4 or test.shape[:2] != train.shape[:2] or test.shape[3] != k:
            raise ValueError(f"test must have shape ({seeds}, {steps.size}, Nt, {k}), got {test.shape}")
        first = self.first_nonfinite_step
        first = _first_nonfinite(steps, train, test) if first is None else np.asarray(first, np.int64)
        diverged = first >= 0 if self.diverged is None else np.asarray(self.diverged, bool)
        for name, value in (("diverged", diverged), ("first_nonfinite_step", first)):
            if value.shape != (seeds,):
                raise ValueError(f"{name} must have shape ({seeds},), got {value.shape}")
        fields = dict(steps=steps, train=train, test=test, diverged=diverged, first_nonfinite_step=first)
        for name, predictions in (("train_stderr", train), ("test_stderr", test)):
            value = getattr(self, name)
            if value is not None:
                value = _float_array(value)
                if value.shape != predictions.shape[1:]:
                    raise ValueError(f"{name} must have shape {predictions.shape[1:]}, got {value.shape}")
            fields[name] = value
        fields["extras"] = {str(name): np.asarray(value) for name, value in self.extras.items()}
        try:
            fields["info"] = json.loads(json.dumps(self.info, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ValueError(f"info must be JSON-serializable without NaN/Inf: {error}") from error
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @classmethod
    def deterministic(cls, steps, train, test, **fields) -> "Predictions":
        """Predictions of a deterministic limit (one "seed"): ``train`` (R, N, k), ``test`` (R, Nt, k)."""
        return cls(steps=steps, train=np.asarray(train)[None], test=np.asarray(test)[None], **fields)

    @classmethod
    def at_infinity(cls, train, test, **fields) -> "Predictions":
        """Predictions of a t = infinity baseline: ``train`` (N, k), ``test`` (Nt, k), recorded at [`STATIC_STEP`][infinite_width.workflow.STATIC_STEP]."""
        return cls.deterministic([STATIC_STEP], np.asarray(train)[None], np.asarray(test)[None], **fields)

    @property
    def seeds(self) -> int:
        """S, the number of independent finite networks (1 for a deterministic limit)."""
        return self.train.shape[0]

    @property
    def is_static(self) -> bool:
        """True for a t = infinity baseline (one recorded step, [`STATIC_STEP`][infinite_width.workflow.STATIC_STEP])."""
        return self.steps.shape == (1,) and self.steps[0] == STATIC_STEP
