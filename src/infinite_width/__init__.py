"""infinite_width: infinitely wide neural networks beside finite ones.

Three views of one architecture, on the same data:

* analytic limits: closed-form NNGP and NTK kernels (:mod:`infinite_width.kernels`,
  from neural-tangents) and the dynamics they imply;
* the Adam-like infinite-width limit (:mod:`infinite_width.adam_limit`);
* finite networks at any width trained with optax (:mod:`infinite_width.training`).

:mod:`infinite_width.testing` (hypothesis strategies and kernel-identity
checkers for property tests) needs the ``test`` extra and is imported
explicitly: ``from infinite_width import testing``.

``import infinite_width`` is light: neural-tangents is imported on first use
of a kernel, and TensorFlow never.
"""

from infinite_width import ablation, datasets, dynamics, kernels, losses, nnpk, optim, plotting
from infinite_width.compare import compare
from infinite_width.problem import Problem
from infinite_width.solver import solve
from infinite_width.sweep import sweep, width_jobs
from infinite_width.trajectory import Trajectory
from infinite_width.architectures import (
    ACTIVATIONS,
    Activation,
    Architecture,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    LayerNorm,
    MaxPool,
    conv,
    mlp,
    myrtle,
)

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Architecture",
    "AvgPool",
    "Conv",
    "Dense",
    "Flatten",
    "GlobalAvgPool",
    "LayerNorm",
    "MaxPool",
    "Problem",
    "Trajectory",
    "ablation",
    "compare",
    "conv",
    "datasets",
    "dynamics",
    "kernels",
    "losses",
    "mlp",
    "myrtle",
    "nnpk",
    "optim",
    "plotting",
    "solve",
    "sweep",
    "width_jobs",
    "__version__",
]
