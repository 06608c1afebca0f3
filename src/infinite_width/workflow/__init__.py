"""The experiment layer: solve a problem in any regime, record, compare, sweep and plot.

* :mod:`~infinite_width.workflow.solver`: :func:`solve` routes a
  :class:`~infinite_width.Problem` and an architecture to kernel dynamics, the
  Adam-like limit, finite networks or a baseline, and returns a
  :class:`Trajectory`;
* :mod:`~infinite_width.workflow.trajectory`: :class:`Trajectory`, the one
  recorded result, saved and loaded as ``.npz``;
* :mod:`~infinite_width.workflow.comparison`: :func:`compare` tables and
  function-space :func:`distance`;
* :mod:`~infinite_width.workflow.sweeps`: resumable batches of solves
  (:func:`sweep`, :func:`width_jobs`);
* :mod:`~infinite_width.workflow.plotting`: learning curves and width plots
  (imported on first access, so that ``import infinite_width`` does not load
  matplotlib).
"""

import importlib

from infinite_width.workflow.comparison import Comparison, compare, distance, fit_slope
from infinite_width.workflow.solver import BASELINES, REGIMES, record_steps, solve
from infinite_width.workflow.sweeps import job_fingerprint, sweep, width_jobs
from infinite_width.workflow.trajectory import STATIC_STEP, TIMING_KEYS, Trajectory, TrajectoryFileError

__all__ = [
    "solve",
    "record_steps",
    "REGIMES",
    "BASELINES",
    "Trajectory",
    "TrajectoryFileError",
    "STATIC_STEP",
    "TIMING_KEYS",
    "compare",
    "Comparison",
    "distance",
    "fit_slope",
    "sweep",
    "width_jobs",
    "job_fingerprint",
    "plotting",
]


def __getattr__(name: str):
    if name == "plotting":
        return importlib.import_module(f"{__name__}.plotting")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

