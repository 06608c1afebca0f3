"""GP marginal likelihood of a kernel and hyperparameter fitting (docs/theory.md, section 9).

The infinitely wide network's prior is a Gaussian process with the NNGP
kernel, so its hyperparameters can be chosen by the evidence of GP
regression. With ``C = K + noise * I`` (``noise`` the observation-noise
variance ``sigma^2``, absolute) and targets ``Y`` of shape (N, k), whose k
columns are independent given the kernel:

```text
log p(Y | X) = -1/2 tr(Y^T C^{-1} Y) - k/2 log det C - N k/2 log(2 pi)
```

[`log_marginal_likelihood`][infinite_width.kernels.log_marginal_likelihood] computes it from any kernel matrix (NNGP,
NTK, an NNPK, ...) through the Cholesky factor of ``C``; it is a JAX
function (``jit``, ``grad``, ``vmap``). [`fit_hyperparameters`][infinite_width.kernels.fit_hyperparameters] maximizes
it over ``W_std``, ``b_std`` and ``noise`` of an architecture by gradient
ascent in log-parameters (optax Adam), differentiating through
[`infinite_width.kernels.nngp`][] / [`ntk`][infinite_width.kernels.ntk].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from infinite_width._src.checks import (
    check_int,
    check_kernel_matrix,
    check_nonnegative,
    check_target_columns,
    validate_inputs,
)
from infinite_width._src.numerics import as_result, is_traced, precision_scope
from infinite_width.architectures import Architecture
from infinite_width.kernels.analytic import nngp, ntk

__all__ = ["log_marginal_likelihood", "fit_hyperparameters", "HyperparameterFit"]

HYPERPARAMETERS = ("W_std", "b_std", "noise")
_KERNELS = {"nngp": nngp, "ntk": ntk}


def _log_likelihood(k_train_train, y, noise):
    """``(log p(Y | X), conditioning)``; ``conditioning = min pivot^2 / max diag C`` of the Cholesky factor of C."""
    n, outputs = y.shape
    covariance = 0.5 * (k_train_train + k_train_train.T) + noise * jnp.eye(n, dtype=k_train_train.dtype)
    factor = jnp.linalg.cholesky(covariance)  # NaN (not an error) when C is not positive definite
    whitened = jax.scipy.linalg.solve_triangular(factor, y, lower=True)  # G^{-1} Y
    pivots = jnp.diag(factor)
    log_det = 2.0 * jnp.sum(jnp.log(pivots))
    value = -0.5 * jnp.sum(whitened**2) - 0.5 * outputs * log_det - 0.5 * n * outputs * math.log(2.0 * math.pi)
    return value, jnp.min(pivots) ** 2 / jnp.max(jnp.diag(covariance))


def _is_singular(value, conditioning, n: int, dtype) -> bool:
    """A failed (NaN) or numerically singular (a pivot at rounding level) factorisation."""
    return not (math.isfinite(value) and conditioning > n * np.finfo(dtype).eps)


def _not_positive_definite(noise, where: str = "") -> np.linalg.LinAlgError:
    return np.linalg.LinAlgError(
        f"K + noise * I is singular or not positive definite (noise={noise:.3g}{where}), e.g. from repeated "
        f"inputs without noise; increase noise"
    )


def log_marginal_likelihood(k_train_train, y_train, noise, *, dtype: str = "float64"):
    """Log evidence of targets ``y_train`` under a GP with kernel ``k_train_train`` plus noise.

    Args:
      k_train_train: (N, N) kernel on the training inputs, per output
        channel (e.g. [`infinite_width.kernels.nngp`][]).
      y_train: (N, k) targets, or (N,) for k = 1.
      noise: observation-noise variance ``sigma^2 >= 0`` (absolute, added to
        the diagonal).
      dtype: ``"float64"`` (the default: a Cholesky factor in float32 loses
        about half its digits on ill-conditioned kernels) or ``"float32"``.

    Returns:
      The scalar ``log p(Y | X)`` (sum over the k columns): a jax scalar
      (numpy float64 while JAX's x64 mode is off).

    Concrete inputs are checked (shapes, NaN/Inf), and a kernel that is
    singular or not positive definite after adding the noise (a Cholesky
    pivot at rounding level, ``min pivot^2 <= N eps max diag C``) raises
    ``numpy.linalg.LinAlgError`` ("increase noise"). Under ``jax.jit``,
    ``grad`` or ``vmap`` only the shapes are checked, the value is then NaN
    or meaningless, and ``dtype="float64"`` needs JAX's x64 mode on.
    """
    traced = is_traced(k_train_train, y_train, noise)
    with precision_scope(dtype, traced=traced) as np_dtype:
        if isinstance(k_train_train, jax.core.Tracer):
            if k_train_train.ndim != 2 or k_train_train.shape[0] != k_train_train.shape[1]:
                raise ValueError(f"k_train_train must be a square matrix, got shape {k_train_train.shape}")
        else:
            k_train_train = check_kernel_matrix("k_train_train", k_train_train, square=True)
        y = check_target_columns("y_train", y_train, k_train_train.shape[0], "k_train_train")
        noise = check_nonnegative("noise", noise)
        value, conditioning = _log_likelihood(jnp.asarray(k_train_train, np_dtype), jnp.asarray(y, np_dtype), noise)
    if traced:
        return value
    if _is_singular(float(value), float(conditioning), y.shape[0], np_dtype):
        raise _not_positive_definite(noise)
    return as_result(value)


@dataclasses.dataclass(frozen=True)
class HyperparameterFit:
    """Result of [`fit_hyperparameters`][infinite_width.kernels.fit_hyperparameters].

    Attributes:
      W_std, b_std, noise: the fitted values (every weighted layer shares
        ``W_std`` and ``b_std``).
      log_likelihood: ``log p(Y | X)`` at the fitted values.
      arch: the architecture with the fitted scales.
      trace: ``{"W_std", "b_std", "noise", "log_likelihood"}``, each of shape
        (steps + 1,): the values before each step and at the end.
    """

    W_std: float
    b_std: float
    noise: float
    log_likelihood: float
    arch: Architecture
    trace: Dict[str, np.ndarray]


def _initial_values(arch: Architecture, y: np.ndarray, init: Optional[Mapping], fit: Sequence[str]) -> Dict[str, float]:
    values = {"W_std": arch.readout.W_std, "b_std": arch.readout.b_std, "noise": 0.1 * float(np.mean(y**2))}
    init = dict(init or {})
    unknown = sorted(set(init) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown} in init; expected some of {HYPERPARAMETERS}")
    values.update(init)
    for name in HYPERPARAMETERS:
        values[name] = check_nonnegative(f"init[{name!r}]", values[name])
        if name in fit and values[name] <= 0:
            raise ValueError(
                f"{name} is fitted in log space and must start > 0, got {values[name]}; "
                f"start from a positive value or leave it out of fit"
            )
    return values


def fit_hyperparameters(
    arch: Architecture,
    x_train,
    y_train,
    *,
    init: Optional[Mapping[str, float]] = None,
    fit: Sequence[str] = HYPERPARAMETERS,
    kernel: str = "nngp",
    steps: int = 300,
    lr: float = 0.05,
    dtype: str = "float64",
    progress: bool = False,
) -> HyperparameterFit:
    """Maximize [`log_marginal_likelihood`][infinite_width.kernels.log_marginal_likelihood] over ``W_std``, ``b_std`` and ``noise``.

    Every weighted layer of ``arch`` gets the same ``W_std`` and ``b_std``
    (as [`infinite_width.mlp`][] builds them). Gradient ascent with optax
    Adam (rate ``lr``) on ``log theta`` and on the log likelihood per target
    entry, ``log p / (N k)``, so that ``lr`` is a relative step of each
    hyperparameter whatever the data size (docs/theory.md, section 9).

    Args:
      arch: an [`Architecture`][infinite_width.Architecture] with a closed-form kernel.
      x_train: (N, ...) inputs. y_train: (N, k) targets (or (N,)).
      init: starting values ``{"W_std", "b_std", "noise"}``; missing ones
        default to the readout's scales and a tenth of ``mean(y^2)``.
      fit: which hyperparameters to fit; the others stay at their initial values.
      kernel: ``"nngp"`` (the network's prior) or ``"ntk"``.
      steps: optimizer steps. lr: Adam learning rate in log space.
      dtype: ``"float64"`` (JAX's x64 mode is switched on for the fit) or ``"float32"``.
      progress: show a tqdm bar of the steps.

    Raises:
      numpy.linalg.LinAlgError: the kernel plus noise became singular or lost
        positive definiteness (as in [`log_marginal_likelihood`][infinite_width.kernels.log_marginal_likelihood]);
        increase the initial noise or lower ``lr``.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if kernel not in _KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {tuple(_KERNELS)}")
    fit = tuple(fit)
    unknown = sorted(set(fit) - set(HYPERPARAMETERS))
    if unknown or not fit:
        raise ValueError(f"fit must name some of {HYPERPARAMETERS}, got {fit!r}")
    steps = check_int("steps", steps, 0)
    lr = check_nonnegative("lr", lr)
    x_train, _ = validate_inputs(arch, x_train, None, np.float64, names=("x_train", None))
    y = check_target_columns("y_train", y_train, x_train.shape[0], "x_train")
    values = _initial_values(arch, y, init, fit)
    kernel_fn = _KERNELS[kernel]
    n_layers = len(arch.weighted_layers)
    entries = y.size

    with precision_scope(dtype) as np_dtype:
        x = jnp.asarray(x_train, np_dtype)
        targets = jnp.asarray(y, np_dtype)
        fixed = {name: values[name] for name in HYPERPARAMETERS if name not in fit}

        def log_likelihood(log_params):
            theta = {**fixed, **{name: jnp.exp(value) for name, value in log_params.items()}}
            network = arch.with_scales([(theta["W_std"], theta["b_std"])] * n_layers)
            return _log_likelihood(kernel_fn(network, x, dtype=dtype), targets, theta["noise"])

        optimizer = optax.adam(lr)

        @jax.jit
        def step(log_params, state):
            (value, conditioning), gradient = jax.value_and_grad(log_likelihood, has_aux=True)(log_params)
            # Ascent on log p / (N k): descent on its negative.
            updates, state = optimizer.update(jax.tree_util.tree_map(lambda g: -g / entries, gradient), state)
            return optax.apply_updates(log_params, updates), state, value, conditioning

        log_params = {name: jnp.asarray(math.log(values[name]), np_dtype) for name in fit}
        state = optimizer.init(log_params)
        trace = {name: [] for name in (*HYPERPARAMETERS, "log_likelihood")}
        # steps + 1 evaluations: the last one only reads the likelihood at the fitted values.
        for index in tqdm.trange(steps + 1, desc="hyperparameter fit", leave=False, disable=not progress):
            current = {**fixed, **{name: float(np.exp(value)) for name, value in log_params.items()}}
            new_params, state, value, conditioning = step(log_params, state)
            value = float(value)
            if _is_singular(value, float(conditioning), y.shape[0], np_dtype):
                where = f", W_std={current['W_std']:.3g}, b_std={current['b_std']:.3g}, step {index}"
                raise _not_positive_definite(current["noise"], where)
            for name in HYPERPARAMETERS:
                trace[name].append(current[name])
            trace["log_likelihood"].append(value)
            log_params = new_params
    fitted = {name: trace[name][-1] for name in HYPERPARAMETERS}
    return HyperparameterFit(
        W_std=fitted["W_std"],
        b_std=fitted["b_std"],
        noise=fitted["noise"],
        log_likelihood=trace["log_likelihood"][-1],
        arch=arch.with_scales([(fitted["W_std"], fitted["b_std"])] * n_layers),
        trace={name: np.asarray(history, dtype=np.float64) for name, history in trace.items()},
    )
