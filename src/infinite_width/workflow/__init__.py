"""The experiment layer: solve a problem in any regime, record, compare, sweep and plot.

* [`solver`][infinite_width.workflow.solver]: [`solve`][infinite_width.solve] runs a method on a
  [`Problem`][infinite_width.Problem] and an architecture and returns a
  [`Trajectory`][infinite_width.Trajectory];
* [`methods`][infinite_width.workflow.methods]: the method objects
  ([`Finite`][infinite_width.Finite], [`KernelDynamics`][infinite_width.KernelDynamics],
  [`AdamLimit`][infinite_width.AdamLimit], [`Posterior`][infinite_width.Posterior],
  [`KernelRidge`][infinite_width.KernelRidge]) and [`method_for`][infinite_width.workflow.method_for], the routing of
  the ``width=`` shortcut;
* [`recording`][infinite_width.workflow.recording]: [`Record`][infinite_width.Record], which steps are recorded;
* [`metrics`][infinite_width.workflow.metrics]: losses, accuracies and divergence,
  computed once from every method's [`Predictions`][infinite_width.Predictions];
* [`trajectory`][infinite_width.workflow.trajectory]: [`Trajectory`][infinite_width.Trajectory], the one
  recorded result, saved and loaded as ``.npz``;
* [`comparison`][infinite_width.workflow.comparison]: [`compare`][infinite_width.compare] tables and
  function-space [`distance`][infinite_width.workflow.distance];
* [`sweeps`][infinite_width.workflow.sweeps]: resumable batches of solves
  ([`sweep`][infinite_width.sweep], [`width_jobs`][infinite_width.width_jobs]);
* [`plotting`][infinite_width.workflow.plotting]: learning curves and width plots,
  coloured by [`palette`][infinite_width.workflow.palette] (imported on first
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

