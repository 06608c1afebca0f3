"""infinite_width: infinitely wide neural networks beside finite ones.

Three views of one architecture, on the same data, one subpackage per layer:

* [`infinite_width.kernels`][]: closed-form NNGP and NTK kernels (from
  neural-tangents), layer-wise, empirical and Neural Network Prior Kernels;
* [`infinite_width.finite`][]: finite networks at any width, trained with optax;
* [`infinite_width.limits`][]: what training becomes at infinite width:
  kernel dynamics, the NNGP posterior and kernel ridge baselines, and the
  Adam-like limit ([`infinite_width.limits.adam_limit`][]);
* [`infinite_width.workflow`][]: one [`solve`][infinite_width.solve] for every method
  ([`Finite`][infinite_width.Finite], [`KernelDynamics`][infinite_width.KernelDynamics],
  [`AdamLimit`][infinite_width.AdamLimit], [`Posterior`][infinite_width.Posterior],
  [`KernelRidge`][infinite_width.KernelRidge]; ``width=`` picks one), the [`Trajectory`][infinite_width.Trajectory] it
  returns, [`compare`][infinite_width.compare], [`sweep`][infinite_width.sweep] and plots;
* [`infinite_width.experiments`][]: the demo and the NNPK ablation, shared
  by the command line and ``paper_figures/``;
* [`infinite_width.datasets`][]: digits, MNIST, Fashion-MNIST and CIFAR-10;
* [`infinite_width.nt`][]: neural-tangents itself, working on current jax.

Architectures ([`mlp`][infinite_width.mlp], [`conv`][infinite_width.conv], [`myrtle`][infinite_width.myrtle],
[`Architecture`][infinite_width.Architecture]), [`Problem`][infinite_width.Problem], [`optim`][infinite_width.optim],
[`losses`][infinite_width.losses] and [`Predictions`][infinite_width.Predictions] (what every method returns) are shared
by all of them. Every subpackage is an attribute of the package from the start (imported on first use).

[`infinite_width.testing`][] (hypothesis strategies and kernel-identity
checkers for property tests) needs the ``test`` extra and is imported
explicitly: ``from infinite_width import testing``.

``import infinite_width`` is light: neural-tangents is imported on first use
of a kernel, and TensorFlow never.
"""

import importlib

from infinite_width.architectures import (
    ACTIVATIONS,
    NO_CLOSED_FORM_ACTIVATIONS,
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
from infinite_width.predictions import Predictions
from infinite_width.problem import Problem
from infinite_width.workflow import (
    AdamLimit,
    Finite,
    KernelDynamics,
    KernelRidge,
    Posterior,
    Record,
    Trajectory,
    compare,
    solve,
    sweep,
    width_jobs,
)

__version__ = "0.1.0"

# Subpackages and modules reachable as attributes, imported on first access (PEP 562).
_SUBMODULES = ("datasets", "experiments", "finite", "kernels", "limits", "losses", "optim", "workflow")
# Reachable the same way but left out of ``__all__``: ``from infinite_width import *`` must not import
# neural-tangents.
_HEAVY_SUBMODULES = ("nt",)


def __getattr__(name: str):
    if name in _SUBMODULES or name in _HEAVY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_HEAVY_SUBMODULES))


__all__ = [
    "ACTIVATIONS",
    "NO_CLOSED_FORM_ACTIVATIONS",
    "Activation",
    "Architecture",
    "AvgPool",
    "Conv",
    "Dense",
    "Flatten",
    "GlobalAvgPool",
    "LayerNorm",
    "MaxPool",
    "Predictions",
    "Problem",
    "Finite",
    "KernelDynamics",
    "AdamLimit",
    "Posterior",
    "KernelRidge",
    "Record",
    "Trajectory",
    "compare",
    "conv",
    "mlp",
    "myrtle",
    "solve",
    "sweep",
    "width_jobs",
    "__version__",
    *_SUBMODULES,
]
