"""One entry point for every method: [`solve`][infinite_width.solve] a [`Problem`][infinite_width.Problem].

``solve(problem, arch, method, optimizer, steps=...)`` runs a method object
([`infinite_width.workflow.methods`][]) and returns a
[`Trajectory`][infinite_width.Trajectory] of the same layout whatever the method.
``width=`` is a shortcut that picks the method ([`method_for`][infinite_width.workflow.method_for]):

| method | optimizer | ``readout_only`` | what is computed |
|---|---|---|---|
| ``Finite(width)`` | any | either | optax training of ``seeds`` networks ([`infinite_width.finite`][]) |
| ``KernelDynamics()`` | sgd / momentum | False | NTK gradient descent ([`infinite_width.limits.kernel_dynamics`][]) |
| ``KernelDynamics()`` | sgd / momentum | True | NNGP-kernel gradient descent (``K^{L+1}``) |
| ``AdamLimit()`` | adam / sign (sgd / momentum) | either | the Adam-like limit by Monte Carlo (MLPs; [`infinite_width.limits.adam_limit`][]) |
| ``Posterior()`` | none | -- | NNGP posterior mean and variance, t = infinity |
| ``KernelRidge(...)`` | none | -- | kernel ridge regression (NTK, NNGP or NNPK) |

``width=math.inf`` means ``KernelDynamics()`` for sgd/momentum and
``AdamLimit()`` for adam/sign; an integer width means ``Finite(width)``.

Conventions that make the methods comparable:

* every limit starts from ``f = 0``; finite networks are therefore *centered*
  by default (``f - f_0``, ``Finite(..., centered=True)``);
* one ``key`` gives one minibatch order, shared by every method solved with
  that key: the package's one key derivation, done once here, splits it into
  ``(model, batch)`` keys; the order is [`minibatch_order`][infinite_width.workflow.minibatch_order] (drawn from
  ``batch``; full batch needs none), and the finite networks' initialisations
  (``jax.random.split(model, seeds)``, as [`infinite_width.finite.train`][]
  draws them for the same key), the Monte Carlo samples and the NNPK's
  networks use ``model``;
* the recorded steps come from one policy, [`Record`][infinite_width.Record];
* losses, accuracies and divergence are computed once from the predictions
  ([`infinite_width.workflow.metrics`][]).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import time as _time
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width._src.checks import as_key, check_int, check_key
from infinite_width._src.rng import check_order_size, run_keys
from infinite_width.architectures import Architecture
from infinite_width import optim
from infinite_width.optim import Optimizer
from infinite_width.predictions import STATIC_STEP
from infinite_width.problem import Problem
from infinite_width.workflow.methods import Method, method_for
from infinite_width.workflow.metrics import to_trajectory
from infinite_width.workflow.recording import Record, as_record
from infinite_width.workflow.trajectory import Trajectory

__all__ = ["solve", "check_solve_arguments", "minibatch_order", "environment"]


# --------------------------------------------------------------------------
# Checks, done once for every method.


def _check_problem_and_arch(problem, arch) -> None:
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an infinite_width.Problem, got {type(problem).__name__}")
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if arch.out_dim != problem.out_dim:
        raise ValueError(f"{arch.name!r} has {arch.out_dim} outputs but the targets have k = {problem.out_dim}")
    if arch.input_kind != problem.input_kind:
        raise ValueError(
            f"{arch.name!r} takes {arch.input_kind} inputs but the problem's inputs have shape "
            f"{problem.x_train.shape[1:]} ({problem.input_kind})"
        )


def _resolve_method(method, width, optimizer) -> Method:
    if (method is None) == (width is None):
        raise ValueError(
            "give exactly one of method (e.g. infinite_width.Finite(256), KernelDynamics(), AdamLimit(), "
            f"Posterior(), KernelRidge()) and the width= shortcut; got method={method!r}, width={width!r}"
        )
    if width is not None:
        return method_for(width, optimizer)
    if not isinstance(method, Method):
        raise TypeError(
            f"method must be a method object (infinite_width.Finite, KernelDynamics, AdamLimit, Posterior, "
            f"KernelRidge), got {method!r}"
        )
    return method


def _check_batch_size(batch_size, n_train: int) -> Optional[int]:
    if batch_size is None:
        return None
    batch_size = check_int("batch_size", batch_size, 1)
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_train} training points")
    return None if batch_size == n_train else batch_size


# --------------------------------------------------------------------------
# Metadata.


def minibatch_order(key, n_train: int, batch_size: Optional[int], steps: int) -> np.ndarray:
    """The training rows, shape (steps, batch_size), int32, that every method solved with ``key`` uses at each step.

    With minibatches a trained model, its limits included, depends on the order,
    so estimates compared with each other must share one: to draw independent
    Monte Carlo samples of the Adam-like limit on one order, pass it to
    [`infinite_width.limits.adam_limit.simulate`][] (``batch_indices=``) with
    different keys. Each epoch is a fresh permutation of the ``n_train`` rows;
    ``batch_size=None`` means full batch (every row, every step; the methods
    themselves need no such array).

    Args:
      key: the run's key, as given to [`solve`][infinite_width.solve] (an int seed, a
        ``numpy.random.Generator`` or a jax PRNG key).
      n_train: the number of training points N.
      batch_size: rows per step, in [1, N], or None (full batch).
      steps: the number of steps.

    Raises:
      MemoryError: the order would take more than 1 GiB (or a quarter of the
        available memory), checked before anything is drawn.
    """
    return run_keys(key).minibatch_order(n_train, batch_size, steps)


def environment() -> dict:
    """Library versions and the device, recorded in every trajectory's metadata."""
    versions = {}
    for package in ("infinite-width", "jax", "jaxlib", "optax", "neural-tangents", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    device = jax.devices()[0]
    return {
        "versions": versions,
        "python": platform.python_version(),
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
    }


def _key_description(key):
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(data).tolist()


def _width(method: Method) -> Union[int, str]:
    """The hidden width of the method's networks for metadata: an int, or ``"inf"`` for a limit."""
    width = getattr(method, "width", None)
    return "inf" if width is None else width


def _metadata(problem, arch, method, optimizer, *, steps, record, readout_only, batch_size, seeds, key, label,
              wall_time, info) -> dict:
    return {
        "regime": method.regime(readout_only),
        "method": method.describe(),
        "label": label or method.label(optimizer, readout_only),
        "problem": problem.describe(),
        "inputs": {"train": problem.checksums["x_train"], "test": problem.checksums["x_test"]},
        "loss": problem.loss,
        "architecture": arch.name,
        "architecture_spec": repr(arch),
        "optimizer": optim.metadata(optimizer),
        "readout_only": bool(readout_only),
        "width": _width(method),
        "steps": int(steps) if method.trained else None,
        "record": record.describe() if method.trained else None,
        "batch_size": batch_size,
        "seeds": seeds,
        "key": _key_description(key),
        "wall_time": wall_time,
        "info": info,
        **environment(),
    }


# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Checked:
    """What [`solve`][infinite_width.solve] runs, every argument checked."""

    method: Method
    steps: int
    record: Record
    recorded: np.ndarray
    batch_size: Optional[int]
    readout_only: bool


def _check_arguments(problem, arch, method, optimizer, *, width, steps, readout_only, batch_size, record, key,
                     label, progress) -> _Checked:
    _check_problem_and_arch(problem, arch)
    method = _resolve_method(method, width, optimizer)
    if not isinstance(readout_only, (bool, np.bool_)):
        raise TypeError(f"readout_only must be True or False, got {readout_only!r}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a string or None, got {label!r} of type {type(label).__name__}")
    if readout_only and not arch.has_linear_readout:
        raise ValueError(
            f"readout_only=True needs a readout layer: the output of {arch.name!r} is not linear in its last "
            "Dense/Conv layer"
        )
    batch_size = _check_batch_size(batch_size, problem.n_train)
    method.check(arch, optimizer, bool(readout_only), batch_size)
    steps = check_int("steps", steps, 0)
    record = as_record(record)
    recorded = record.steps(steps) if method.trained else np.array([STATIC_STEP])
    check_key(0 if key is None else key)
    if method.trained and batch_size is not None:
        check_order_size(steps, batch_size, problem.n_train)
    return _Checked(method, steps, record, recorded, batch_size, bool(readout_only))


def check_solve_arguments(problem, arch, method=None, optimizer=None, *, width=None, steps=100, readout_only=False,
                          batch_size=None, record=None, key=0, label=None, progress=True) -> None:
    """Check the arguments of a [`solve`][infinite_width.solve] call as [`solve`][infinite_width.solve] does, without computing anything.

    Takes [`solve`][infinite_width.solve]'s arguments (see there) and raises what it would raise
    before starting (a ``numpy.random.Generator`` given as ``key`` is not drawn
    from); [`infinite_width.sweep`][] checks every job with it before it
    runs the first.

    Args:
      problem: as in [`solve`][infinite_width.solve].
      arch: as in [`solve`][infinite_width.solve].
      method: as in [`solve`][infinite_width.solve].
      optimizer: as in [`solve`][infinite_width.solve].
      width: as in [`solve`][infinite_width.solve].
      steps: as in [`solve`][infinite_width.solve].
      readout_only: as in [`solve`][infinite_width.solve].
      batch_size: as in [`solve`][infinite_width.solve].
      record: as in [`solve`][infinite_width.solve].
      key: as in [`solve`][infinite_width.solve] (a ``numpy.random.Generator`` is not drawn from).
      label: as in [`solve`][infinite_width.solve].
      progress: as in [`solve`][infinite_width.solve].

    Raises:
      TypeError: an argument of the wrong kind (named in the message).
      ValueError: a value [`solve`][infinite_width.solve] refuses (named in the message).
      MemoryError: the minibatch order would not fit.
    """
    _check_arguments(problem, arch, method, optimizer, width=width, steps=steps, readout_only=readout_only,
                     batch_size=batch_size, record=record, key=key, label=label, progress=progress)


def solve(
    problem: Problem,
    arch: Architecture,
    method: Optional[Method] = None,
    optimizer: Optional[Optimizer] = None,
    *,
    width: Union[int, float, None] = None,
    steps: int = 100,
    readout_only: bool = False,
    batch_size: Optional[int] = None,
    record: Union[None, int, Record, list] = None,
    key=0,
    label: Optional[str] = None,
    progress: bool = True,
) -> Trajectory:
    """Solve ``problem`` with ``arch`` by ``method`` (or the method ``width`` picks); returns a [`Trajectory`][infinite_width.Trajectory].

    Args:
      problem: the data and loss ([`Problem`][infinite_width.Problem]).
      arch: the architecture; its ``out_dim`` must equal the problem's k.
      method: a method object: [`Finite`][infinite_width.Finite],
        [`KernelDynamics`][infinite_width.KernelDynamics], [`AdamLimit`][infinite_width.AdamLimit],
        [`Posterior`][infinite_width.Posterior] or [`KernelRidge`][infinite_width.KernelRidge].
      optimizer: [`infinite_width.optim.sgd`][], ``momentum``, ``adam`` or
        ``sign`` for trained methods; None for the baselines.
      width: instead of ``method``: ``math.inf`` (the limit of ``optimizer``)
        or an int (``Finite(width)``), see [`method_for`][infinite_width.workflow.method_for].
      steps: number of optimizer steps (trained methods).
      readout_only: train the readout layer only (feature learning disabled);
        default every layer.
      batch_size: minibatch rows per step; None means full batch.
      record: the recorded steps: a [`Record`][infinite_width.Record],
        an int (``Record(count=...)``), a sequence of steps
        (``Record(at=...)``) or None (``Record()``: every step up to 100
        steps, else 101 evenly spaced).
      key: an int seed in [0, 2**64), a ``numpy.random.Generator`` (a seed
        is drawn from it) or a jax PRNG key; the same key gives the same
        trajectory and, across methods, the same minibatch order (and, with
        ``Finite``, the networks [`infinite_width.finite.train`][] trains
        for that key). None means 0.
      label: name in tables and legends (default: from method, optimizer and
        ``readout_only``).
      progress: show progress bars on long runs (on a terminal or in a notebook; never in a log file).

    Returns:
      a [`Trajectory`][infinite_width.Trajectory]: predictions (S, R, N, k) and
      (S, R, Nt, k), metrics (S, R), ``diverged`` (S,), metadata with the
      regime, the method and its options, the optimizer and its
      hyper-parameters, ``readout_only``, the wall time, versions and device.

    Raises:
      TypeError: an argument of the wrong kind (named in the message).
      ValueError: naming the problem: not exactly one of ``method`` and
        ``width``, a method that cannot run this architecture or optimizer,
        ``readout_only`` without a readout layer, an out_dim or input layout
        that does not match the problem, bad record/steps/batch_size.
      MemoryError: the method, or the minibatch order, does not fit in memory
        (checked before allocating).
    """
    checked = _check_arguments(problem, arch, method, optimizer, width=width, steps=steps, readout_only=readout_only,
                               batch_size=batch_size, record=record, key=key, label=label, progress=progress)
    method, steps = checked.method, checked.steps
    key = as_key(0 if key is None else key)
    keys = run_keys(key)  # the one derivation of the run's keys, handed to the method
    batch_indices = None
    if method.trained and checked.batch_size is not None:
        batch_indices = keys.minibatch_order(problem.n_train, checked.batch_size, steps)

    start = _time.perf_counter()
    predictions = method.run(
        problem, arch, optimizer, steps=steps, record=checked.recorded, readout_only=checked.readout_only,
        batch_indices=batch_indices, keys=keys, progress=bool(progress),
    )
    metadata = _metadata(
        problem, arch, method, optimizer, steps=steps, record=checked.record, readout_only=checked.readout_only,
        batch_size=checked.batch_size, seeds=predictions.seeds, key=key, label=label,
        wall_time=_time.perf_counter() - start, info=predictions.info,
    )
    return to_trajectory(problem, predictions, metadata)
