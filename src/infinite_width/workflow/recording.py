"""When a solve records its predictions: one policy, [`Record`][infinite_width.Record], with one default.

[`infinite_width.solve`][] turns its ``record`` argument into a
[`Record`][infinite_width.Record] (an int ``r`` means ``Record(count=r)``, a sequence of steps
``Record(at=steps)``, None the default ``Record()``) and hands the explicit
steps [`Record.steps`][infinite_width.workflow.recording.Record.steps] gives to the method; the trainer, kernel dynamics
and the Adam-like limit have no defaults of their own.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from infinite_width._src.checks import check_int

__all__ = ["Record", "SPACINGS", "as_record"]

SPACINGS = ("linear", "log")
"""``Record.spacing``: evenly spaced steps, or log-spaced (denser early, where learning curves bend)."""


@dataclasses.dataclass(frozen=True)
class Record:
    """Which steps to record: ``count`` steps spaced ``spacing`` from 0 to the last step, or the steps ``at``.

    Attributes:
      count: number of recorded steps, >= 2 (at most ``steps + 1``; 0 and the
        last step are always among them). The default, 101, records every step
        of runs up to 100 steps.
      spacing: ``"linear"`` (evenly spaced) or ``"log"`` (geometric from step 1,
        plus step 0).
      at: explicit steps (each in ``[0, steps]``), instead of ``count``.
    """

    count: int = 101
    spacing: str = "linear"
    at: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        object.__setattr__(self, "count", check_int("count", self.count, 2))
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {self.spacing!r}")
        if self.at is not None:
            try:
                at = np.asarray(self.at)
            except Exception as error:
                raise TypeError(f"record steps (Record.at) must be a sequence of integer steps: {error}") from error
            if at.ndim != 1 or at.size == 0 or not np.issubdtype(at.dtype, np.integer):
                raise TypeError(f"record steps (Record.at) must be a non-empty sequence of integer steps, got {self.at!r}")
            if at.min() < 0:
                raise ValueError(f"recorded steps must be >= 0, got {at.min()}")
            object.__setattr__(self, "at", tuple(int(s) for s in np.unique(at)))

    def steps(self, total_steps: int) -> np.ndarray:
        """The recorded steps of a run of ``total_steps`` steps, shape (R,), int64, increasing."""
        total_steps = check_int("steps", total_steps, 0)
        if self.at is not None:
            if self.at[-1] > total_steps:
                raise ValueError(f"recorded steps must lie in [0, {total_steps}], got {self.at[0]}..{self.at[-1]}")
            return np.asarray(self.at, np.int64)
        if self.count > total_steps:  # every step
            return np.arange(total_steps + 1, dtype=np.int64)
        if self.spacing == "linear":
            spaced = np.linspace(0, total_steps, self.count)
        else:
            spaced = np.concatenate([[0.0], np.geomspace(1, total_steps, self.count - 1)])
        return np.unique(np.concatenate([[0, total_steps], np.round(spaced)]).astype(np.int64))

    def describe(self) -> dict:
        """The policy as a JSON-able dict (trajectory metadata)."""
        return dataclasses.asdict(self) if self.at is None else {"at": list(self.at)}


def as_record(record) -> Record:
    """``record`` as a [`Record`][infinite_width.Record]: None -> ``Record()``, an int ``r`` -> ``Record(count=r)``, steps -> ``Record(at=steps)``."""
    if record is None:
        return Record()
    if isinstance(record, Record):
        return record
    if isinstance(record, (int, np.integer)) and not isinstance(record, bool):
        if record < 2:
            raise ValueError(f"record must be >= 2 (number of recorded steps, 0 and the last among them), got {record}")
        return Record(count=int(record))
    if isinstance(record, (str, bytes, bool, float)) or np.ndim(record) != 1:
        raise TypeError(f"record must be None, a Record, an int or a sequence of integer steps, got {record!r}")
    return Record(at=tuple(record))
