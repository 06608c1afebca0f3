"""Methods: how [`infinite_width.solve`][] computes predictions, each with its own options.

A method is a frozen dataclass, checked when it is built, that carries only
its own options and runs through one entry point, `run`, returning
[`Predictions`][infinite_width.Predictions]; the regime-specific code it calls lives
in [`infinite_width.finite`][] and [`infinite_width.limits`][].

Trained methods (they take an optimizer, ``steps`` and ``readout_only``):

* [`Finite`][infinite_width.Finite] -- ``seeds`` finite networks of one width, trained with optax;
* [`KernelDynamics`][infinite_width.KernelDynamics] -- their infinite-width limit under sgd or momentum:
  NTK gradient descent (every layer trained) or NNGP-kernel gradient descent
  (``readout_only``), in discrete or continuous time;
* [`AdamLimit`][infinite_width.AdamLimit] -- the Adam-like limit by Monte Carlo (MLPs and conv
  nets; any optimizer of [`infinite_width.optim`][], sgd and momentum for checks).

Baselines at t = infinity (no optimizer):

* [`Posterior`][infinite_width.Posterior] -- the NNGP posterior mean and variance;
* [`KernelRidge`][infinite_width.KernelRidge] -- kernel ridge regression with the NTK, the NNGP
  kernel or the Neural Network Prior Kernel of ``networks`` random networks.

[`method_for`][infinite_width.workflow.method_for] is the routing behind ``solve(..., width=...)``:
``math.inf`` gives [`KernelDynamics`][infinite_width.KernelDynamics] for sgd/momentum and
[`AdamLimit`][infinite_width.AdamLimit] for adam/sign, an integer width [`Finite`][infinite_width.Finite].

Every method gets the same checked problem and the same derived keys from
[`infinite_width.solve`][]: ``keys`` are the run's keys (``keys.model``
draws the finite initialisations, the Monte Carlo samples and the NNPK's
networks; see ``infinite_width._src.rng.RunKeys``) and ``batch_indices`` the
shared minibatch order (None: full batch, for which no order is built).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Optional

import numpy as np

from infinite_width import finite, kernels, losses
from infinite_width._src.checks import check_choice, check_int, check_nonnegative
from infinite_width._src.numerics import DTYPES
from infinite_width._src.rng import RunKeys
from infinite_width.architectures import Architecture
from infinite_width.limits import adam_limit, baselines, kernel_dynamics
from infinite_width.limits.baselines import DEFAULT_RIDGE
from infinite_width.optim import AnyOptimizer, Optimizer, check_optimizer, metadata
from infinite_width.predictions import Predictions
from infinite_width.problem import Problem

__all__ = ["Method", "Finite", "KernelDynamics", "AdamLimit", "Posterior", "KernelRidge", "method_for",
           "DEFAULT_RIDGE", "RIDGE_KERNELS"]

RIDGE_KERNELS = ("ntk", "nngp", "nnpk")
"""``KernelRidge.kernel``: the NTK, the NNGP kernel, or the Neural Network Prior Kernel."""


def _layers(readout_only: bool) -> str:
    return "readout" if readout_only else "all"


def _all_points(problem: Problem) -> np.ndarray:
    """[x_train; x_test]: kernels are computed in one call for the train and test rows."""
    return np.concatenate([problem.x_train, problem.x_test])


class Method:
    """What every method provides (see the module docstring); subclasses are frozen dataclasses."""

    trained: ClassVar[bool] = True
    """True for methods trained by an optimizer for ``steps`` steps; False for t = infinity baselines."""
    accepts_transformation: ClassVar[bool] = False
    """True for methods that train with any optax GradientTransformation (finite networks); a limit needs a spec
    of `infinite_width.optim`, since it must know the entrywise rule."""

    def regime(self, readout_only: bool) -> str:
        """The regime family (``"finite"``, ``"ntk"``, ``"nngp"``, ``"adam_limit"``, a baseline name).

        Args:
          readout_only: whether only the readout is trained (the NTK's limit becomes the NNGP's).
        """
        raise NotImplementedError

    def label(self, optimizer: Optional[AnyOptimizer], readout_only: bool) -> str:
        """Default name in tables and legends, e.g. ``"w=256 adam all"``.

        Args:
          optimizer: the optimizer of the solve (None for a baseline).
          readout_only: whether only the readout is trained.
        """
        raise NotImplementedError

    def check(self, arch: Architecture, optimizer: Optional[AnyOptimizer], readout_only: bool,
              batch_size: Optional[int]) -> None:
        """Refuse, before anything is computed, what the method cannot run.

        Args:
          arch: the architecture of the solve.
          optimizer: its optimizer (None for a baseline).
          readout_only: whether only the readout is trained.
          batch_size: the minibatch size (None: full batch).

        Raises:
          ValueError: naming the problem (an optimizer the method has no limit of, an architecture
            without a closed form, an option a baseline does not take, ...).
          TypeError: an optimizer that is not an [`Optimizer`][infinite_width.optim.Optimizer].
        """
        if self.trained:
            if optimizer is None:
                raise ValueError(f"{type(self).__name__} trains: give an optimizer (infinite_width.optim)")
            check_optimizer(optimizer, type(self).__name__, transformation_ok=self.accepts_transformation)
            return
        if optimizer is not None:
            raise ValueError(f"{type(self).__name__} is a t = infinity baseline and trains nothing: pass no optimizer")
        for name, value in (("readout_only", readout_only), ("batch_size", batch_size)):
            if value:
                raise ValueError(f"{name} applies to trained methods, not to the baseline {type(self).__name__}")

    def run(self, problem: Problem, arch: Architecture, optimizer: Optional[AnyOptimizer], *, steps: int,
            record: np.ndarray, readout_only: bool, batch_indices: Optional[np.ndarray], keys: RunKeys,
            progress: bool) -> Predictions:
        """Predictions of ``arch`` on ``problem`` at the recorded steps (arguments already checked).

        Args:
          problem: the data and the loss.
          arch: the architecture.
          optimizer: the optimizer (None for a baseline).
          steps: optimizer steps.
          record: (R,) increasing steps to record, in ``[0, steps]``.
          readout_only: train only the readout.
          batch_indices: (steps, batch_size) training rows of each step, or None for full batch.
          keys: the run's keys, derived once by [`solve`][infinite_width.solve] from its ``key``: ``keys.model``
            draws the model's randomness (finite initialisations, Monte Carlo fields, NNPK networks),
            ``keys.batch`` the minibatch order.
          progress: show progress bars.

        Returns:
          The [`Predictions`][infinite_width.Predictions] at the recorded steps.
        """
        raise NotImplementedError

    def describe(self) -> dict:
        """The method and its options as a JSON-able dict (trajectory metadata)."""
        return {"name": type(self).__name__, **dataclasses.asdict(self)}


def _requires_closed_form(method: Method, arch: Architecture) -> None:
    if not arch.has_closed_form:
        raise ValueError(
            f"{type(method).__name__} needs a closed-form kernel, which {arch.name!r} has not; "
            "use Finite or KernelRidge(kernel='nnpk', width=...)"
        )


# --------------------------------------------------------------------------
# Trained methods.


class Finite(finite.Finite, Method):
    """`seeds` finite networks of `width`, trained with optax ([`finite.train`][infinite_width.finite.train]).

    The options record [`infinite_width.finite.Finite`][infinite_width.finite.Finite]
    (its attributes, defaults and checks) as a method of
    [`infinite_width.solve`][infinite_width.solve]; it trains under any
    optimizer spec or any `optax.GradientTransformation`.
    [`traditional`][infinite_width.finite.options.Finite.traditional] builds the
    practitioner's network (standard parametrization, global rates, not centered).
    """

    accepts_transformation = True

    def regime(self, readout_only):
        return "finite"

    def label(self, optimizer, readout_only):
        variant = (" global-rate" if self.rates == "global" else "") + (" linearized" if self.linearized else "")
        return f"w={self.width} {metadata(optimizer)['name']}{variant} {_layers(readout_only)}"

    def run(self, problem, arch, optimizer, *, steps, record, readout_only, batch_indices, keys, progress):
        return finite.train_checked(
            self, arch, problem.x_train, problem.y_train, problem.x_test, optimizer, steps, record,
            None if batch_indices is None else batch_indices.astype(np.int32), keys.init_keys(self.seeds),
            loss_fn=losses.get(problem.loss), readout_only=readout_only, on_nonfinite="record", progress=progress,
        )


@dataclasses.dataclass(frozen=True)
class KernelDynamics(Method):
    """Infinite-width gradient descent in function space ([`infinite_width.limits.kernel_dynamics.run`][]).

    The kernel follows from ``readout_only``: the NTK when every layer trains,
    the NNGP kernel ``K^{L+1}`` with the readout only. sgd and momentum only
    (the limit of adam and sign is [`AdamLimit`][infinite_width.AdamLimit]); closed-form kernels only.

    Attributes:
      time: ``"discrete"`` (default, step for step what a linearized network
        does) or ``"continuous"`` (neural-tangents' gradient flow at
        ``t = lr * step``; full batch only).
      dtype: ``"float32"`` or ``"float64"`` for the kernels and the dynamics.
    """

    time: str = "discrete"
    dtype: str = "float32"

    def __post_init__(self):
        check_choice("time", self.time, kernel_dynamics.TIMES)
        check_choice("dtype", self.dtype, DTYPES)

    def regime(self, readout_only):
        return "nngp" if readout_only else "ntk"

    def label(self, optimizer, readout_only):
        return f"{'NNGP' if readout_only else 'NTK'} {optimizer.name} {_layers(readout_only)}"

    def check(self, arch, optimizer, readout_only, batch_size):
        super().check(arch, optimizer, readout_only, batch_size)
        if optimizer.adaptive:
            raise ValueError(
                f"KernelDynamics is the limit of sgd and momentum, not of {optimizer.name}: use AdamLimit() "
                "(or width=math.inf, which picks it)"
            )
        _requires_closed_form(self, arch)
        if self.time == "continuous" and batch_size is not None:
            raise ValueError("KernelDynamics(time='continuous') is gradient flow on the full batch: drop batch_size")

    def run(self, problem, arch, optimizer, *, steps, record, readout_only, batch_indices, keys, progress):
        kernel_fn = kernels.nngp if readout_only else kernels.ntk
        k_all = np.asarray(kernel_fn(arch, _all_points(problem), problem.x_train, dtype=self.dtype))
        return kernel_dynamics.run(
            k_all[: problem.n_train], k_all[problem.n_train :], problem.y_train, optimizer, record,
            loss=problem.loss, batch_indices=batch_indices, time=self.time, dtype=self.dtype, progress=progress,
        )


@dataclasses.dataclass(frozen=True)
class AdamLimit(adam_limit.AdamLimit, Method):
    """The Adam-like infinite-width limit by Monte Carlo (`infinite_width.limits.adam_limit`), for MLPs and
    convolutional networks (channels as width).

    The engine's option record
    [`infinite_width.limits.adam_limit.AdamLimit`][infinite_width.limits.adam_limit.options.AdamLimit]
    (its attributes, defaults and checks are there: ``samples``, ``replicas``, ``storage_dtype``, ``rank``,
    ``features``, ``block_rows``), run by `infinite_width.solve`. Its predictions are the mean over
    ``replicas`` independent runs of ``samples / replicas`` samples each, with their standard errors; every
    optimizer works (sgd and momentum give NTK/NNGP descent, a check).

    Attributes:
      samples: total Monte Carlo samples M, a multiple of ``replicas``.
      replicas: independent replicas R >= 2 (they give the error bars).
      storage_dtype: ``"float32"`` or ``"bfloat16"`` for the stored fields.
      rank: leading pivoted Cholesky columns kept of a truncated kernel root (``None``: exact roots).
      features: random features of a truncated root's residual per replica (``0``: plain truncation).
      block_rows: points per block in a step and in the predictions (``None``: from a 256 MiB budget).
    """

    def regime(self, readout_only):
        return "adam_limit"

    def label(self, optimizer, readout_only):
        return f"limit {optimizer.name} {_layers(readout_only)}"

    def check(self, arch, optimizer, readout_only, batch_size):
        super().check(arch, optimizer, readout_only, batch_size)
        adam_limit.check_architecture(arch)

    def run(self, problem, arch, optimizer, *, steps, record, readout_only, batch_indices, keys, progress):
        result = adam_limit.simulate(
            arch, problem.x_train, problem.y_train, problem.x_test, optimizer, steps, key=keys.model, options=self,
            loss=problem.loss, readout_only=readout_only, batch_indices=batch_indices, record=record,
            progress=progress,
        )
        return Predictions.deterministic(
            result.steps, result.train_predictions, result.test_predictions,
            train_stderr=result.train_stderr, test_stderr=result.test_stderr,
            extras={"replica_train": result.replica_train_predictions, "replica_test": result.replica_test_predictions},
            info={"samples": result.options.samples, "replicas": result.options.replicas,
                  "block_rows": result.options.block_rows, "ranks": dict(result.ranks),
                  "residual_fractions": dict(result.residual_fractions),
                  "storage_dtype": result.options.storage_dtype, "devices": result.devices,
                  "memory_bytes": dict(result.memory.parts), "setup_time_s": result.timings["setup"],
                  "timings_s": dict(result.timings)},
        )


# --------------------------------------------------------------------------
# Baselines at t = infinity.


def _check_ridge(ridge) -> float:
    return check_nonnegative("ridge", ridge)


@dataclasses.dataclass(frozen=True)
class Posterior(Method):
    """The NNGP posterior of the infinitely wide Bayesian network ([`infinite_width.limits.baselines.nngp_posterior`][]).

    Its mean is the prediction; its variance (Nt, k) is ``extras["test_variance"]``.

    Attributes:
      ridge: observation noise relative to the kernel's scale
        (`ridge * mean(diag K)`; unlike the absolute `noise` of
        [`log_marginal_likelihood`][infinite_width.kernels.log_marginal_likelihood]).
      dtype: ``"float32"`` or ``"float64"`` for the kernels.
    """

    trained: ClassVar[bool] = False
    ridge: float = DEFAULT_RIDGE
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "ridge", _check_ridge(self.ridge))
        check_choice("dtype", self.dtype, DTYPES)

    def regime(self, readout_only):
        return "nngp_posterior"

    def label(self, optimizer, readout_only):
        return "nngp_posterior"

    def check(self, arch, optimizer, readout_only, batch_size):
        super().check(arch, optimizer, readout_only, batch_size)
        _requires_closed_form(self, arch)

    def run(self, problem, arch, optimizer, *, steps, record, readout_only, batch_indices, keys, progress):
        train, test, variance = baselines.nngp_posterior(
            kernels.nngp(arch, problem.x_train, dtype=self.dtype),
            problem.y_train,
            kernels.nngp(arch, problem.x_test, problem.x_train, dtype=self.dtype),
            kernels.nngp(arch, problem.x_test, dtype=self.dtype),
            ridge=self.ridge,
        )
        variance = np.repeat(np.asarray(variance)[:, None], problem.out_dim, axis=1)
        return Predictions.at_infinity(train, test, extras={"test_variance": variance})


@dataclasses.dataclass(frozen=True)
class KernelRidge(Method):
    """Kernel ridge regression ([`infinite_width.limits.baselines.kernel_ridge`][]) with one kernel of ``arch``.

    Attributes:
      kernel: ``"ntk"`` (the end point of NTK gradient descent on MSE),
        ``"nngp"``, or ``"nnpk"``: the Neural Network Prior Kernel
        ([`infinite_width.kernels.nnpk`][], per output, ``normalize="mean"``)
        of ``networks`` random networks of ``width``.
      ridge: relative ridge (`ridge * mean(diag K)`; unlike the absolute
        `noise` of [`log_marginal_likelihood`][infinite_width.kernels.log_marginal_likelihood]).
      width: hidden width of the NNPK's networks (required for, and only for, ``"nnpk"``).
      networks: number of random networks of the NNPK (only for ``"nnpk"``).
      dtype: ``"float32"`` or ``"float64"`` for the kernels.
    """

    trained: ClassVar[bool] = False
    kernel: str = "ntk"
    ridge: float = DEFAULT_RIDGE
    width: Optional[int] = None
    networks: int = 256
    dtype: str = "float32"

    def __post_init__(self):
        check_choice("kernel", self.kernel, RIDGE_KERNELS)
        object.__setattr__(self, "ridge", _check_ridge(self.ridge))
        check_choice("dtype", self.dtype, DTYPES)
        if self.kernel == "nnpk":
            if self.width is None:
                raise ValueError("KernelRidge(kernel='nnpk') needs the width of its random networks: width=...")
            options = self.nnpk_options  # the NNPK's own checks of width and networks
            object.__setattr__(self, "width", options.width)
            object.__setattr__(self, "networks", options.networks)
        else:
            for name, default in (("width", None), ("networks", 256)):
                if getattr(self, name) != default:
                    raise ValueError(f"{name} is an option of the NNPK's networks; KernelRidge(kernel={self.kernel!r}) "
                                     "has none")

    @property
    def nnpk_options(self) -> kernels.NNPKOptions:
        """The options of the NNPK (``kernel="nnpk"``): its ``width``, ``networks`` and ``dtype``, mean-normalized."""
        return kernels.NNPKOptions(width=self.width, networks=self.networks, normalize="mean", dtype=self.dtype)

    def regime(self, readout_only):
        return f"{self.kernel}_ridge"

    def label(self, optimizer, readout_only):
        return f"nnpk_ridge w={self.width}" if self.kernel == "nnpk" else f"{self.kernel}_ridge"

    def check(self, arch, optimizer, readout_only, batch_size):
        super().check(arch, optimizer, readout_only, batch_size)
        if self.kernel != "nnpk":
            _requires_closed_form(self, arch)

    def run(self, problem, arch, optimizer, *, steps, record, readout_only, batch_indices, keys, progress):
        if self.kernel == "nnpk":
            k_all = kernels.nnpk(arch, _all_points(problem), problem.x_train, self.nnpk_options, key=keys.model)
        else:
            kernel_fn = kernels.ntk if self.kernel == "ntk" else kernels.nngp
            k_all = kernel_fn(arch, _all_points(problem), problem.x_train, dtype=self.dtype)
        k_all = np.asarray(k_all)
        train, test = baselines.kernel_ridge(
            k_all[: problem.n_train], k_all[problem.n_train :], problem.y_train, ridge=self.ridge
        )
        return Predictions.at_infinity(train, test)

    def describe(self) -> dict:
        options = super().describe()
        if self.kernel != "nnpk":  # the NNPK's options mean nothing for a closed-form kernel
            del options["width"], options["networks"]
        return options


# --------------------------------------------------------------------------


def method_for(width, optimizer: Optional[Optimizer]) -> Method:
    """The method ``solve(..., width=width)`` uses: the routing of the ``width=`` shortcut.

    ``math.inf`` with sgd/momentum: [`KernelDynamics`][infinite_width.KernelDynamics] (NTK, or NNGP with
    ``readout_only``); ``math.inf`` with adam/sign: [`AdamLimit`][infinite_width.AdamLimit]; an
    integer width: [`Finite`][infinite_width.Finite] of that width.

    Args:
      width: ``math.inf`` or an integer width >= 1.
      optimizer: the optimizer of the solve.

    Raises:
      ValueError: any other width, or ``math.inf`` without an optimizer.
    """
    if isinstance(width, float) and width == math.inf:
        if not isinstance(optimizer, Optimizer):
            raise ValueError("width=math.inf picks the limit of an optimizer: give optimizer=infinite_width.optim...")
        return AdamLimit() if optimizer.adaptive else KernelDynamics()
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an integer >= 1 or math.inf, got {width!r}")
    return Finite(int(width))
