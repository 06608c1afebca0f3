"""One entry point for every regime: :func:`solve` a :class:`~infinite_width.Problem`.

``solve(problem, arch, optimizer, width, steps)`` trains (or infers) the
architecture on the problem in the regime that ``width``, ``optimizer`` and
``train`` select, and returns a :class:`~infinite_width.Trajectory`
of the same layout whatever the regime:

=====================  ==================  ==========  ====================================================
width                  optimizer           train       regime
=====================  ==================  ==========  ====================================================
``math.inf``           sgd / momentum      ``"all"``   ``"ntk"``: NTK gradient descent
                                                       (:mod:`infinite_width.limits.kernel_dynamics`)
``math.inf``           sgd / momentum      readout     ``"nngp"``: NNGP-kernel gradient descent
                                                       (kernel ``K^{L+1}``, :func:`kernels.nngp`)
``math.inf``           adam / sign         either      ``"adam_limit"``: the Adam-like limit
                                                       (:func:`infinite_width.limits.adam_limit.solve`, MLPs)
an int >= 1            any                 either      ``"finite"``: optax training of
                                                       ``seeds`` networks (:mod:`infinite_width.finite`)
=====================  ==================  ==========  ====================================================

Kernel dynamics (``"ntk"``, ``"nngp"``) are in discrete time by default,
exactly what a linearized network does step by step: for full-batch MSE with
SGD the closed form ``f_t = y + (I - lr K/(N k))^t (f_0 - y)`` by
eigendecomposition; otherwise (cross-entropy, momentum, minibatches) the exact
function-space recursion. ``time="continuous"`` uses neural-tangents'
gradient flow at ``t = lr * step`` instead (``predict.gradient_descent_mse``
for MSE, ``predict.gradient_descent`` otherwise; with momentum its ODE runs at
``sqrt(lr) * step``).

Non-dynamical baselines (``optimizer=None``, ``regime=...``), recorded at one
step ``-1`` meaning ``t = infinity``:

* ``"nngp_posterior"``: the exact posterior of the infinitely wide Bayesian
  network (neural-tangents ``predict.gp_inference``, which
  ``predict.gradient_descent_mse_ensemble`` runs at ``t=None``, with
  ``diag_reg=ridge``); its mean is in the predictions and its variance
  (Nt, k) in ``extras["test_variance"]``;
* ``"ntk_ridge"``, ``"nngp_ridge"``: kernel ridge regression with the NTK
  (the end point of NTK gradient descent on MSE) or the NNGP kernel;
* ``"nnpk_ridge"``: kernel ridge regression with the Neural Network Prior
  Kernel (:func:`infinite_width.kernels.nnpk`) of ``samples`` random networks
  of width ``width``.

The ridge is relative to the kernel's scale (``ridge * mean(diag K)``), as in
:mod:`infinite_width.limits.baselines`.

Conventions that make the regimes comparable:

* every limit starts from ``f = 0``; finite networks are therefore *centred*
  by default (``f - f_0``, ``centred=True``), and ``centred=False`` trains the
  raw network;
* one ``key`` gives one minibatch order, shared by every regime solved with
  that key: the package's one key derivation splits it into
  ``(model_key, batch_key)``, the order is ``minibatch_indices(batch_key,
  ...)`` (what :func:`infinite_width.finite.train` and
  :func:`infinite_width.limits.adam_limit.solve` derive from the same key),
  and the finite networks' initialisations and the Monte Carlo samples use
  ``model_key``;
* losses and accuracies are computed from the predictions with
  :mod:`infinite_width.losses` for every regime.
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
import time as _time
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width import kernels, losses
from infinite_width._src.checks import as_key, check_int
from infinite_width._src.numerics import precision_scope
from infinite_width._src.rng import minibatch_indices, split_run_key
from infinite_width.architectures import Architecture
from infinite_width.finite import network, train as train_networks
from infinite_width.limits import adam_limit, baselines, kernel_dynamics
from infinite_width.optim import Optimizer
from infinite_width.problem import Problem
from infinite_width.workflow.trajectory import STATIC_STEP, Trajectory

__all__ = ["solve", "record_steps", "REGIMES", "BASELINES", "environment"]

#: Regimes with training dynamics (chosen by width, optimizer and train).
DYNAMICAL = ("ntk", "nngp", "adam_limit", "finite")
#: Non-dynamical regimes (``optimizer=None, regime=...``).
BASELINES = ("nngp_posterior", "ntk_ridge", "nngp_ridge", "nnpk_ridge")
REGIMES = DYNAMICAL + BASELINES

_DEFAULT_RECORDED = 101


# --------------------------------------------------------------------------
# Argument checks.


def _check_width(width) -> Union[int, float]:
    if isinstance(width, float) and width == math.inf:
        return math.inf
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an integer >= 1 or math.inf, got {width!r}")
    return int(width)


def _key_description(key):
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(data).tolist()


def record_steps(steps: int, record=None) -> np.ndarray:
    """The steps at which a solve records predictions, shape (R,), increasing, from 0 to ``steps``.

    ``record=None``: every step up to 100 steps, else 101 evenly spaced steps;
    an int ``r``: ``r`` evenly spaced steps (at least 0 and ``steps``);
    a sequence: those steps (each in ``[0, steps]``).
    """
    steps = check_int("steps", steps, 0)
    if record is None:
        record = _DEFAULT_RECORDED
    if isinstance(record, (int, np.integer)) and not isinstance(record, bool):
        if record < 1:
            raise ValueError(f"record must be >= 1 (number of recorded steps), got {record}")
        return np.unique(np.round(np.linspace(0, steps, min(record, steps + 1))).astype(np.int64))
    try:
        recorded = np.asarray(record)
    except Exception as error:
        raise TypeError(f"record must be None, an int or a sequence of steps: {error}") from error
    if recorded.ndim != 1 or recorded.size == 0 or not np.issubdtype(recorded.dtype, np.integer):
        raise TypeError(f"record must be None, an int or a non-empty sequence of integer steps, got {record!r}")
    if recorded.min() < 0 or recorded.max() > steps:
        raise ValueError(f"recorded steps must lie in [0, {steps}], got {recorded.min()}..{recorded.max()}")
    return np.unique(recorded.astype(np.int64))


def _route(arch, optimizer, width, train, regime) -> str:
    if regime is not None:
        if regime not in BASELINES:
            raise ValueError(
                f"regime={regime!r} is not a baseline; baselines are {BASELINES}, and the dynamical regimes "
                f"{DYNAMICAL} are chosen by width, optimizer and train"
            )
        if optimizer is not None:
            raise ValueError(f"the baseline {regime!r} trains nothing: pass optimizer=None")
        if regime == "nnpk_ridge" and width == math.inf:
            raise ValueError("nnpk_ridge needs a finite width (the width of the random networks of the NNPK)")
        if regime != "nnpk_ridge" and not arch.has_closed_form:
            raise ValueError(f"{regime} needs a closed-form kernel, which {arch.name!r} has not; use nnpk_ridge")
        return regime
    if optimizer is None:
        raise ValueError(f"give an optimizer (infinite_width.optim) or a baseline regime, one of {BASELINES}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an infinite_width.optim.Optimizer, got {type(optimizer).__name__}")
    if width != math.inf:
        return "finite"
    if optimizer.adaptive:
        if not arch.is_mlp or arch.depth < 1:
            raise ValueError(
                f"the Adam-like limit (optimizer {optimizer.name!r} at width=inf) is defined for MLPs with a "
                f"hidden layer, "
                f"not for {arch.name!r}; use a finite width"
            )
        return "adam_limit"
    if not arch.has_closed_form:
        raise ValueError(f"{arch.name!r} has no closed-form kernel, so no infinite-width dynamics; use a finite width")
    return "ntk" if train == "all" else "nngp"


def _label(regime, optimizer, width, train) -> str:
    if regime in BASELINES:
        return regime if regime != "nnpk_ridge" else f"nnpk_ridge w={width}"
    name = {"ntk": "NTK", "nngp": "NNGP", "adam_limit": "limit", "finite": f"w={width}"}[regime]
    return f"{name} {optimizer.name} {train}"


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


# --------------------------------------------------------------------------
# Metrics, shared by every regime.


def _metrics(problem: Problem, train_predictions, test_predictions):
    """(S, R) losses and accuracies of (S, R, N, k) predictions."""
    loss_fn = jax.vmap(jax.vmap(losses.get(problem.loss), in_axes=(0, None)), in_axes=(0, None))
    accuracy_fn = jax.vmap(jax.vmap(losses.accuracy, in_axes=(0, None)), in_axes=(0, None))
    out = []
    with precision_scope("float32"):
        for predictions, targets in ((train_predictions, problem.y_train), (test_predictions, problem.y_test)):
            predictions = jnp.asarray(predictions, jnp.float32)
            out.append(np.asarray(loss_fn(predictions, targets), np.float64))
            out.append(np.asarray(accuracy_fn(predictions, targets), np.float64))
    train_loss, train_accuracy, test_loss, test_accuracy = out
    return dict(train_loss=train_loss, test_loss=test_loss, train_accuracy=train_accuracy, test_accuracy=test_accuracy)


def _trajectory(problem, steps, train_predictions, test_predictions, metadata, **fields) -> Trajectory:
    train_predictions = np.asarray(train_predictions, np.float32)
    test_predictions = np.asarray(test_predictions, np.float32)
    if "diverged" not in fields:
        fields["diverged"] = ~(
            np.isfinite(train_predictions).all(axis=(1, 2, 3)) & np.isfinite(test_predictions).all(axis=(1, 2, 3))
        )
    return Trajectory(
        steps=steps,
        train_predictions=train_predictions,
        test_predictions=test_predictions,
        metadata=metadata,
        **_metrics(problem, train_predictions, test_predictions),
        **fields,
    )


# --------------------------------------------------------------------------
# Regimes.


def _kernel_dynamics(problem, arch, optimizer, regime, recorded, batch_indices, time, dtype, progress):
    kernel_fn = kernels.ntk if regime == "ntk" else kernels.nngp
    x_all = np.concatenate([problem.x_train, problem.x_test])
    k_all = kernel_fn(arch, x_all, problem.x_train, dtype=dtype)
    k_train_train, k_test_train = k_all[: problem.n_train], k_all[problem.n_train :]
    beta = optimizer.beta if optimizer.name == "momentum" else 0.0
    if time == "continuous":
        train, test = kernel_dynamics.kernel_flow(
            k_train_train, k_test_train, problem.y_train, optimizer.lr, recorded, loss=problem.loss,
            momentum=beta if optimizer.name == "momentum" else None,
        )
    elif problem.loss == "mse" and beta == 0.0 and batch_indices is None:
        train, test = kernel_dynamics.mse_closed_form(
            k_train_train, k_test_train, problem.y_train, optimizer.lr, recorded
        )
    else:
        train, test = kernel_dynamics.kernel_descent(
            k_train_train, k_test_train, problem.y_train, optimizer.lr, recorded, loss=problem.loss,
            momentum=beta, batch_indices=batch_indices, dtype=dtype, progress=progress,
        )
    return dict(train_predictions=train[None], test_predictions=test[None])


def _adam_limit(problem, arch, optimizer, train, steps, recorded, batch_size, batch_indices, key, samples, replicas,
                progress):
    options = {}
    if samples is not None:
        options["samples"] = samples
    if replicas is not None:
        options["replicas"] = replicas
    result = adam_limit.solve(
        arch, problem.x_train, problem.y_train, problem.x_test, optimizer, steps,
        loss=problem.loss, train=train, batch_size=batch_size, batch_indices=batch_indices, key=key,
        record=recorded, progress=progress, **options,
    )
    if not np.array_equal(np.asarray(result.steps), recorded):
        raise RuntimeError(f"adam_limit.solve recorded steps {result.steps} instead of {recorded}")
    return dict(
        train_predictions=np.asarray(result.train_predictions)[None],
        test_predictions=np.asarray(result.test_predictions)[None],
        train_stderr=np.asarray(result.train_stderr, np.float32),
        test_stderr=np.asarray(result.test_stderr, np.float32),
    )


def _finite(problem, arch, optimizer, width, train, steps, recorded, batch_size, batch_indices, key, seeds, centred,
            parametrization, init, progress):
    net = network(arch, width, parametrization=parametrization, init=init)
    result = train_networks(
        net, problem.x_train, problem.y_train, optimizer, steps,
        loss=problem.loss, train=train, centred=centred, batch_size=batch_size, batch_indices=batch_indices,
        key=key, seeds=seeds, record=recorded, x_test=problem.x_test, y_test=problem.y_test,
        on_nonfinite="record", progress=progress,
    )
    if not np.array_equal(np.asarray(result.steps), recorded):
        raise RuntimeError(f"infinite_width.finite.train recorded steps {result.steps} instead of {recorded}")
    return dict(
        train_predictions=np.asarray(result.train_predictions),
        test_predictions=np.asarray(result.test_predictions),
        diverged=np.asarray(result.diverged),
    )


def _baseline(problem, arch, regime, width, samples, key, ridge, dtype):
    if regime == "nngp_posterior":
        train, test, variance = baselines.nngp_posterior(
            kernels.nngp(arch, problem.x_train, dtype=dtype),
            problem.y_train,
            kernels.nngp(arch, problem.x_test, problem.x_train, dtype=dtype),
            kernels.nngp(arch, problem.x_test, dtype=dtype),
            ridge=ridge,
        )
        return dict(
            train_predictions=train[None, None],
            test_predictions=test[None, None],
            extras={"test_variance": np.repeat(variance[:, None], problem.out_dim, axis=1)},
        )
    # One kernel call for the train and test rows: the same numbers as ever.
    x_all = np.concatenate([problem.x_train, problem.x_test])
    if regime == "nnpk_ridge":
        k_all = kernels.nnpk(
            arch, x_all, problem.x_train, width=width, networks=samples or 256, key=key, normalize="mean",
            dtype=dtype,
        )
    else:
        kernel_fn = kernels.ntk if regime == "ntk_ridge" else kernels.nngp
        k_all = kernel_fn(arch, x_all, problem.x_train, dtype=dtype)
    train, test = baselines.kernel_ridge(
        k_all[: problem.n_train], k_all[problem.n_train :], problem.y_train, ridge=ridge
    )
    return dict(train_predictions=train[None, None], test_predictions=test[None, None])


# --------------------------------------------------------------------------


def solve(
    problem: Problem,
    arch: Architecture,
    optimizer: Optional[Optimizer] = None,
    width: Union[int, float] = math.inf,
    steps: int = 100,
    *,
    record=None,
    train: str = "all",
    seeds: int = 1,
    samples: Optional[int] = None,
    replicas: Optional[int] = None,
    key=0,
    batch_size: Optional[int] = None,
    time: str = "discrete",
    regime: Optional[str] = None,
    ridge: float = 1e-6,
    centred: bool = True,
    parametrization: str = "ntk",
    init: str = "gaussian",
    dtype: str = "float32",
    label: Optional[str] = None,
    progress: bool = True,
) -> Trajectory:
    """Solve ``problem`` with ``arch`` in the regime that ``width``, ``optimizer`` and ``train`` select.

    Routing (module docstring): ``width=math.inf`` with sgd/momentum gives
    NTK (``train="all"``) or NNGP (``train="readout"``) kernel dynamics,
    with adam/sign the Adam-like limit (MLPs); an integer width trains
    ``seeds`` finite networks; ``optimizer=None`` with ``regime`` in
    :data:`BASELINES` gives a non-dynamical baseline.

    Args:
      problem: the data and loss (:class:`~infinite_width.Problem`).
      arch: the architecture; its ``out_dim`` must equal the problem's k.
      optimizer: :func:`infinite_width.optim.sgd`, ``momentum``, ``adam`` or
        ``sign``; None for a baseline.
      width: ``math.inf`` (default) or an int >= 1 (finite networks; for
        ``nnpk_ridge`` the width of the random networks).
      steps: number of optimizer steps.
      record: steps to record (:func:`record_steps`): None (all steps up to
        100, else 101 evenly spaced), an int count, or a sequence of steps.
      train: ``"all"`` layers or the ``"readout"`` layer only.
      seeds: number of finite networks (independent initialisations, one
        vectorized run); ignored by the deterministic kernel regimes.
      samples, replicas: Monte Carlo samples and independent replicas of the
        Adam-like limit (None: its defaults); ``samples`` is the number of
        random networks of ``nnpk_ridge`` (default 256).
      key: int seed or jax PRNG key; the same key gives the same trajectory
        and, across regimes, the same minibatch order.
      batch_size: minibatch rows per step; None means full batch.
      time: ``"discrete"`` (default, step-for-step exact) or ``"continuous"``
        (neural-tangents' gradient flow; kernel regimes only, full batch).
      regime: a baseline name, with ``optimizer=None``.
      ridge: relative ridge of the baselines (``ridge * mean(diag K)``).
      centred: finite networks train ``f - f_0`` (default, comparable with the
        limits, which start from 0); False trains the raw network.
      parametrization, init: of the finite networks (:func:`infinite_width.finite.network`).
      dtype: ``"float32"`` or ``"float64"`` for kernels and kernel dynamics.
      label: name in tables and legends (default: from regime, optimizer, width, train).
      progress: show tqdm progress bars on long runs.

    Returns:
      a :class:`~infinite_width.Trajectory`; predictions (S, R, N, k)
      and (S, R, Nt, k), metrics (S, R), metadata with regime, label,
      architecture, optimizer, width, wall time, versions and device.

    Raises:
      TypeError / ValueError naming the problem: wrong argument types,
      width < 1, an optimizer the route cannot use (adam at width=inf on a
      non-MLP), ``train="readout"`` without a readout layer, an out_dim or
      input layout that does not match the problem, bad record/time/steps.
    """
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
    width = _check_width(width)
    if train not in ("all", "readout"):
        raise ValueError(f"train must be 'all' or 'readout', got {train!r}")
    if train == "readout" and not arch.has_linear_readout:
        raise ValueError(
            f"train='readout' needs a readout layer: the output of {arch.name!r} is not linear in its last "
            "Dense/Conv layer"
        )
    if time not in ("discrete", "continuous"):
        raise ValueError(f"time must be 'discrete' or 'continuous', got {time!r}")
    if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    seeds = check_int("seeds", seeds, 1)
    for name, value in (("samples", samples), ("replicas", replicas)):
        if value is not None:
            check_int(name, value, 1)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1)
        if batch_size > problem.n_train:
            raise ValueError(f"batch_size {batch_size} exceeds the {problem.n_train} training points")
        if batch_size == problem.n_train:
            batch_size = None
    regime = _route(arch, optimizer, width, train, regime)
    if time == "continuous" and (regime not in ("ntk", "nngp") or batch_size is not None):
        raise ValueError("time='continuous' is defined for full-batch kernel dynamics (width=inf with sgd/momentum)")
    key = as_key(0 if key is None else key)
    key_description = _key_description(key)
    model_key, batch_key = split_run_key(key)

    static = regime in BASELINES
    recorded = np.array([STATIC_STEP]) if static else record_steps(steps, record)
    batch_indices = None
    if not static and batch_size is not None:
        batch_indices = minibatch_indices(batch_key, problem.n_train, batch_size, int(recorded[-1]))

    start = _time.perf_counter()
    if regime in ("ntk", "nngp"):
        fields = _kernel_dynamics(problem, arch, optimizer, regime, recorded, batch_indices, time, dtype,
                                  progress)
    elif regime == "adam_limit":
        fields = _adam_limit(problem, arch, optimizer, train, steps, recorded, batch_size, batch_indices, model_key,
                             samples, replicas, progress)
    elif regime == "finite":
        fields = _finite(problem, arch, optimizer, width, train, steps, recorded, batch_size, batch_indices,
                         model_key, seeds, centred, parametrization, init, progress)
    else:
        fields = _baseline(problem, arch, regime, width, samples, model_key, ridge, dtype)
    wall_time = _time.perf_counter() - start

    metadata = {
        "regime": regime,
        "label": label or _label(regime, optimizer, width, train),
        "problem": problem.describe(),
        "loss": problem.loss,
        "architecture": arch.name,
        "architecture_spec": repr(arch),
        "optimizer": None if optimizer is None else optimizer.describe(),
        "width": "inf" if width == math.inf else width,
        "steps": None if static else int(steps),
        "train": train,
        "seeds": seeds if regime == "finite" else 1,
        "samples": samples,
        "replicas": replicas,
        "batch_size": batch_size,
        "time": "infinite" if static else time,
        "ridge": ridge if static else None,
        "centred": centred if regime == "finite" else None,
        "parametrization": parametrization if regime == "finite" else None,
        "init": init if regime == "finite" else None,
        "dtype": dtype,
        "key": key_description,
        "wall_time": wall_time,
        **environment(),
    }
    return _trajectory(problem, recorded, metadata=metadata, **fields)
