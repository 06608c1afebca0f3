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
  that key: the package's one key derivation splits it into ``(model_key,
  batch_key)``, the order is ``minibatch_indices(batch_key, N, batch_size,
  steps)``, and the finite networks' initialisations, the Monte Carlo samples
  and the NNPK's networks use ``model_key``;
* the recorded steps come from one policy, [`Record`][infinite_width.Record];
* losses, accuracies and divergence are computed once from the predictions
  ([`infinite_width.workflow.metrics`][]).
"""

from __future__ import annotations

import importlib.metadata
import platform
import time as _time
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width._src.checks import as_key, check_int
from infinite_width._src.rng import minibatch_indices, split_run_key
from infinite_width.architectures import Architecture
from infinite_width.optim import Optimizer
from infinite_width.predictions import STATIC_STEP
from infinite_width.problem import Problem
from infinite_width.workflow.methods import Method, method_for
from infinite_width.workflow.metrics import to_trajectory
from infinite_width.workflow.recording import Record, as_record
from infinite_width.workflow.trajectory import Trajectory

__all__ = ["solve", "minibatch_order", "environment"]


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
    """The training rows, shape (steps, batch_size), that every method solved with ``key`` uses at each step.

    With minibatches a trained model, its limits included, depends on the order,
    so estimates compared with each other must share one: to draw independent
    Monte Carlo samples of the Adam-like limit on one order, pass it to
    [`infinite_width.limits.adam_limit.simulate`][] (``batch_indices=``) with
    different keys. Each epoch is a fresh permutation of the ``n_train`` rows;
    ``batch_size=None`` means full batch (every row, every step).
    """
    _, batch_key = split_run_key(as_key(key))
    return minibatch_indices(batch_key, n_train, batch_size, steps)


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


def _optimizer_fields(optimizer: Optional[Optimizer]) -> Optional[dict]:
    """The optimizer's name and the hyper-parameters it uses, as a dict (with its schedule unless constant)."""
    if optimizer is None:
        return None
    used = {"sgd": (), "momentum": ("beta",), "adam": ("b1", "b2", "eps"), "sign": ()}[optimizer.name]
    fields = {"name": optimizer.name, "lr": optimizer.lr, **{field: getattr(optimizer, field) for field in used}}
    if not optimizer.schedule.is_constant:
        fields["schedule"] = optimizer.schedule.describe()
    return fields


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
        "loss": problem.loss,
        "architecture": arch.name,
        "architecture_spec": repr(arch),
        "optimizer": _optimizer_fields(optimizer),
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
      key: int seed or jax PRNG key; the same key gives the same trajectory
        and, across methods, the same minibatch order.
      label: name in tables and legends (default: from method, optimizer and
        ``readout_only``).
      progress: show tqdm progress bars on long runs.

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
      MemoryError: the method does not fit in memory (checked before allocating).
    """
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
    key = as_key(0 if key is None else key)
    model_key, _ = split_run_key(key)
    batch_indices = None
    if method.trained and batch_size is not None:
        batch_indices = minibatch_order(key, problem.n_train, batch_size, steps)

    start = _time.perf_counter()
    predictions = method.run(
        problem, arch, optimizer, steps=steps, record=recorded, readout_only=bool(readout_only),
        batch_indices=batch_indices, key=model_key, progress=progress,
    )
    metadata = _metadata(
        problem, arch, method, optimizer, steps=steps, record=record, readout_only=readout_only,
        batch_size=batch_size, seeds=predictions.seeds, key=key, label=label,
        wall_time=_time.perf_counter() - start, info=predictions.info,
    )
    return to_trajectory(problem, predictions, metadata)
