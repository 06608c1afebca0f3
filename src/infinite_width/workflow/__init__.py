"""The experiment layer: solve a problem in any regime, record, compare, sweep and plot.

* :mod:`~infinite_width.workflow.solver`: :func:`solve` runs a method on a
  :class:`~infinite_width.Problem` and an architecture and returns a
  :class:`Trajectory`;
* :mod:`~infinite_width.workflow.methods`: the method objects
  (:class:`Finite`, :class:`KernelDynamics`, :class:`AdamLimit`,
  :class:`Posterior`, :class:`KernelRidge`) and :func:`method_for`, the
  routing of the ``width=`` shortcut;
* :mod:`~infinite_width.workflow.recording`: :class:`Record`, which steps are recorded;
* :mod:`~infinite_width.workflow.metrics`: losses, accuracies and divergence,
  computed once from every method's :class:`~infinite_width.Predictions`;
* :mod:`~infinite_width.workflow.trajectory`: :class:`Trajectory`, the one
  recorded result, saved and loaded as ``.npz``;
* :mod:`~infinite_width.workflow.comparison`: :func:`compare` tables and
  function-space :func:`distance`;
* :mod:`~infinite_width.workflow.sweeps`: resumable batches of solves
  (:func:`sweep`, :func:`width_jobs`);
* :mod:`~infinite_width.workflow.plotting`: learning curves and width plots,
  coloured by :mod:`~infinite_width.workflow.palette` (imported on first
  access, so that ``import infinite_width`` does not load matplotlib).
"""

import importlib

from infinite_width.workflow import palette
from infinite_width.workflow.comparison import Comparison, compare, distance, fit_slope
from infinite_width.workflow.methods import (
    DEFAULT_RIDGE,
    AdamLimit,
    Finite,
    KernelDynamics,
    KernelRidge,
    Method,
    Posterior,
    method_for,
)
from infinite_width.workflow.recording import Record
from infinite_width.workflow.solver import minibatch_order, solve
from infinite_width.workflow.sweeps import job_fingerprint, sweep, width_jobs
from infinite_width.workflow.trajectory import STATIC_STEP, TIMING_KEYS, Trajectory, TrajectoryFileError

__all__ = [
    "solve",
    "minibatch_order",
    "Method",
    "Finite",
    "KernelDynamics",
    "AdamLimit",
    "Posterior",
    "KernelRidge",
    "method_for",
    "DEFAULT_RIDGE",
    "Record",
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
    "palette",
    "plotting",
]


def __getattr__(name: str):
    if name == "plotting":
        return importlib.import_module(f"{__name__}.plotting")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

