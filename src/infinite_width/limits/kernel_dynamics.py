"""Kernel dynamics: gradient descent of an infinitely wide network in function space.

At infinite width and with SGD or momentum (one global rate ``lr``) a network
trained on all layers moves in function space with its NTK, and one trained
on the readout only with its NNGP kernel (docs/theory.md,
section 4). With ``K`` the per-output kernel (the full kernel is ``K ⊗ I``)
and ``chi = d loss / d f`` ([`infinite_width.losses.chi`][]):

* SGD, discrete time (exactly what a linearized network does step by step):

```text
f_{t+1}(x) = f_t(x) - lr * sum_{i in batch_t} K(x, x_i) chi_t(x_i)
```

  For full-batch MSE (``chi = (f - y) / (N k)``) this has the closed form
  ``f_t = y + (I - lr K / (N k))^t (f_0 - y)`` on the training set, computed
  by eigendecomposition ([`mse_closed_form`][infinite_width.limits.kernel_dynamics.mse_closed_form]).
* momentum, discrete time: ``u_t = beta u_{t-1} + K chi_t``,
  ``f_{t+1} = f_t - lr u_t`` (optax ``trace``, the heavy ball of
  [`infinite_width.optim.momentum`][]).
* a learning-rate schedule ([`infinite_width.optim`][]) replaces ``lr`` by
  ``lr_s = lr * factor(s)`` at step ``s`` in the recursions; the closed form
  needs a constant rate, so a scheduled full-batch MSE run takes the
  recursion. In continuous time gradient flow is reparametrized exactly:
  step ``t`` is flow time ``lr * sum_{s<t} factor(s)``.
* continuous time (neural-tangents ``predict``): gradient flow
  ``df/dt = -K chi(f)`` evaluated at ``t = lr * step``
  (``predict.gradient_descent_mse`` for MSE, ``predict.gradient_descent``
  otherwise). With momentum neural-tangents solves
  ``d^2 f/dtau^2 = -K chi(f) - (1 - beta)/sqrt(lr) df/dtau`` at
  ``tau = sqrt(lr) * step``, the limit of the heavy ball when
  ``lr -> 0`` with ``(1 - beta)/sqrt(lr)`` fixed.

Shapes: ``k_train_train`` (N, N), ``k_test_train`` (Nt, N) or None, ``y_train``
(N, k); every function returns [`Predictions`][infinite_width.Predictions] with
``train`` (1, R, N, k) and ``test`` (1, R, Nt, k) at the ``R`` recorded steps
(``Nt = 0`` without ``k_test_train``), in the dtype of the computation.
[`run`][infinite_width.limits.kernel_dynamics.run] picks the function for an optimizer, a loss and a batch mode, as
[`infinite_width.KernelDynamics`][] does.
"""

from __future__ import annotations

import functools
import warnings
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from infinite_width import losses
from infinite_width._src.numerics import precision_scope
from infinite_width.kernels.analytic import max_learning_rate
from infinite_width.optim import Optimizer
from infinite_width.predictions import Predictions

__all__ = ["mse_closed_form", "kernel_descent", "kernel_flow", "run", "TIMES"]

TIMES = ("discrete", "continuous")
"""``time`` of [`run`][infinite_width.limits.kernel_dynamics.run]: the exact step-by-step recursion, or neural-tangents' gradient flow."""


def _check_kernels(k_train_train, k_test_train, y_train):
    k_train_train = np.asarray(k_train_train, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.float64)
    n = y_train.shape[0]
    if y_train.ndim != 2:
        raise ValueError(f"y_train must have shape (N, k), got {y_train.shape}")
    if k_train_train.shape != (n, n):
        raise ValueError(f"k_train_train must have shape ({n}, {n}) to match y_train, got {k_train_train.shape}")
    if k_test_train is not None:
        k_test_train = np.asarray(k_test_train, dtype=np.float64)
        if k_test_train.ndim != 2 or k_test_train.shape[1] != n:
            raise ValueError(f"k_test_train must have shape (Nt, {n}), got {k_test_train.shape}")
    return k_train_train, k_test_train, y_train


def _check_steps(steps) -> np.ndarray:
    steps = np.asarray(steps)
    if steps.ndim != 1 or not np.issubdtype(steps.dtype, np.integer) or np.any(steps < 0):
        raise ValueError(f"record steps must be a 1-D array of integers >= 0, got {steps!r}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("record steps must be strictly increasing")
    return steps.astype(np.int64)


def _initial(f0, shape):
    return np.zeros(shape) if f0 is None else np.broadcast_to(np.asarray(f0, dtype=np.float64), shape)


def _predictions(steps, train, test, n_outputs) -> Predictions:
    """(R, N, k) and (R, Nt, k) or None as [`Predictions`][infinite_width.Predictions] of one deterministic run."""
    if test is None:
        test = np.zeros((train.shape[0], 0, n_outputs), train.dtype)
    return Predictions.deterministic(steps, train, test)


def mse_closed_form(
    k_train_train,
    k_test_train,
    y_train,
    lr: float,
    steps: Sequence[int],
    f0_train=None,
    f0_test=None,
) -> Predictions:
    """Exact discrete-time full-batch gradient descent on ``0.5 * mean((f - y)^2)`` with kernel ``K``.

    With ``a = lr / (N k)`` and ``K = V diag(lam) V^T``:

    ```text
    f_t(train) = y + V diag((1 - a lam)^t) V^T (f_0 - y)
    f_t(test)  = f_0(test) - K_test,train V diag((1 - (1 - a lam)^t) / lam) V^T (f_0 - y)
    ```

    (the second factor tends to ``a t`` as ``lam -> 0``). Computed in float64.

    Args:
      k_train_train: (N, N) kernel.
      k_test_train: (Nt, N) kernel, or None.
      y_train: (N, k) targets.
      lr: learning rate.
      steps: (R,) increasing steps.
      f0_train: (N, k) outputs at step 0; None means 0.
      f0_test: (Nt, k) outputs at step 0; None means 0.

    Returns:
      [`Predictions`][infinite_width.Predictions] in float64.
    """
    k_train_train, k_test_train, y_train = _check_kernels(k_train_train, k_test_train, y_train)
    recorded = _check_steps(steps)
    steps = recorded.astype(np.float64)
    n, k = y_train.shape
    a = lr / (n * k)
    lam, vecs = np.linalg.eigh(k_train_train)
    lam = np.maximum(lam, 0.0)  # a kernel is PSD; negative eigenvalues are round-off
    residual0 = vecs.T @ (_initial(f0_train, y_train.shape) - y_train)  # (N, k) in the eigenbasis
    decay = 1.0 - a * lam  # (N,)
    t = steps[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # (1 - a lam)^t, accurate near 1 through log1p/expm1 where 1 - a lam > 0.
        positive = decay > 0
        log_decay = np.where(positive, np.log1p(-a * lam), 0.0)
        power = np.where(positive, np.exp(t * log_decay), np.sign(decay) ** t * np.abs(decay) ** t)
        one_minus_power = np.where(positive, -np.expm1(t * log_decay), 1.0 - power)
        gain = np.where(lam > 0, one_minus_power / np.where(lam > 0, lam, 1.0), a * t)  # (R, N)
    # Contract in this order (matrix products), never as one N^3 R einsum.
    train = y_train[None] + vecs @ (power[:, :, None] * residual0[None])
    test = None
    if k_test_train is not None:
        f0_test = _initial(f0_test, (k_test_train.shape[0], k))
        test = f0_test[None] - (k_test_train @ vecs) @ (gain[:, :, None] * residual0[None])
    return _predictions(recorded, train, test, k)


@functools.lru_cache(maxsize=None)
def _advance_fn(loss: str):
    chi_fn = functools.partial(losses.chi, loss)

    def advance(state, k_all_train, y_train, batch_indices, rates, start, stop, beta):
        # state = (f_all (P, k), u_all (P, k)); rows 0..N-1 of f_all are the training set; rates (steps,) = lr_s.
        def body(step, carry):
            f_all, u_all = carry
            batch = batch_indices[step]
            chi = chi_fn(f_all[batch], y_train[batch])  # (B, k)
            u_all = beta * u_all + k_all_train[:, batch] @ chi
            return f_all - rates[step] * u_all, u_all

        return jax.lax.fori_loop(start, stop, body, state)

    return jax.jit(advance)


def kernel_descent(
    k_train_train,
    k_test_train,
    y_train,
    lr: float,
    steps: Sequence[int],
    *,
    loss: str = "mse",
    momentum: float = 0.0,
    batch_indices=None,
    rate_factors=None,
    f0_train=None,
    f0_test=None,
    dtype: str = "float32",
    progress: bool = False,
) -> Predictions:
    """Exact discrete-time kernel gradient descent (optionally heavy-ball momentum, minibatches), any loss.

    Step ``s`` uses the training rows ``batch_indices[s]`` and the loss
    averaged over that batch (so ``chi`` is [`infinite_width.losses.chi`][]
    of the batch), and the rate ``lr_s = lr * rate_factors[s]``:

    ```text
    u_s = momentum * u_{s-1} + K(., batch_s) chi(f_s[batch_s], y[batch_s])
    f_{s+1} = f_s - lr_s * u_s
    ```

    Args:
      k_train_train: (N, N) kernel.
      k_test_train: (Nt, N) kernel, or None.
      y_train: (N, k) targets.
      lr: learning rate.
      steps: (R,) increasing steps to record.
      loss: ``"mse"`` or ``"cross_entropy"``.
      momentum: heavy-ball ``beta``.
      batch_indices: (steps, B) int rows per step (e.g. the order
        ``infinite_width.finite.train`` uses for the same key); None = full batch.
      rate_factors: (steps,) a schedule's factors
        ([`infinite_width.optim.Optimizer.rate_factors`][]); None = all 1.
      f0_train: (N, k) outputs at step 0; None means 0.
      f0_test: (Nt, k) outputs at step 0; None means 0.
      dtype: ``"float32"`` (full-precision matmuls) or ``"float64"``.
      progress: show a tqdm bar of the steps (updated at each recorded step).

    Returns:
      [`Predictions`][infinite_width.Predictions] in ``dtype``.
    """
    losses.get(loss)
    k_train_train, k_test_train, y_train = _check_kernels(k_train_train, k_test_train, y_train)
    steps = _check_steps(steps)
    n, k = y_train.shape
    total = int(steps[-1]) if len(steps) else 0
    if batch_indices is None:
        batch_indices = np.tile(np.arange(n), (max(total, 1), 1))
    batch_indices = np.asarray(batch_indices)
    if batch_indices.ndim != 2 or batch_indices.shape[0] < total:
        raise ValueError(f"batch_indices must have shape (steps >= {total}, B), got {batch_indices.shape}")
    rate_factors = np.ones(max(total, 1)) if rate_factors is None else np.asarray(rate_factors, np.float64)
    if rate_factors.ndim != 1 or rate_factors.shape[0] < total:
        raise ValueError(f"rate_factors must have shape (steps >= {total},), got {rate_factors.shape}")
    k_all_train = k_train_train if k_test_train is None else np.concatenate([k_train_train, k_test_train])
    f0 = _initial(f0_train, (n, k))
    if k_test_train is not None:
        f0 = np.concatenate([f0, _initial(f0_test, (k_test_train.shape[0], k))])
    advance = _advance_fn(loss)
    recorded = []
    bar = tqdm.tqdm(total=total, desc="kernel dynamics", unit="step", disable=not progress, leave=False)
    with bar, precision_scope(dtype) as np_dtype:
        state = (jnp.asarray(f0, np_dtype), jnp.zeros(f0.shape, np_dtype))
        args = (jnp.asarray(k_all_train, np_dtype), jnp.asarray(y_train, np_dtype), jnp.asarray(batch_indices),
                jnp.asarray(lr * rate_factors, np_dtype))
        current = 0
        for step in steps:
            state = advance(state, *args, current, int(step), np_dtype(momentum))
            bar.update(int(step) - current)
            current = int(step)
            recorded.append(np.asarray(state[0]))
    out = np.stack(recorded)
    return _predictions(steps, out[:, :n], None if k_test_train is None else out[:, n:], k)


def kernel_flow(
    k_train_train,
    k_test_train,
    y_train,
    lr: float,
    steps: Sequence[int],
    *,
    loss: str = "mse",
    momentum: Optional[float] = None,
    rate_factors=None,
    f0_train=None,
    f0_test=None,
) -> Predictions:
    """Continuous-time kernel dynamics from neural-tangents ``predict``, at ``t = lr * step``.

    With ``rate_factors`` (steps,) (a schedule, no momentum) step ``t`` is
    flow time ``lr * sum_{s<t} rate_factors[s]``, the exact reparametrization.

    MSE without momentum: ``predict.gradient_descent_mse`` (closed form of
    ``df/dt = -K (f - y) / (N k)``). Otherwise ``predict.gradient_descent``
    (an ODE solver; with ``momentum`` its time is ``sqrt(lr) * step``, see the
    module docstring). Shapes as [`kernel_descent`][infinite_width.limits.kernel_dynamics.kernel_descent].
    """
    from infinite_width._src.nt import predict

    loss_fn = losses.get(loss)
    k_train_train, k_test_train, y_train = _check_kernels(k_train_train, k_test_train, y_train)
    steps = _check_steps(steps)
    n, k = y_train.shape
    f0_train = _initial(f0_train, (n, k))
    times = steps.astype(np.float64)
    if rate_factors is not None:
        if momentum is not None:
            raise ValueError("a learning-rate schedule has no exact continuous-time form with momentum; use "
                             "time='discrete'")
        rate_factors = np.asarray(rate_factors, np.float64)
        if rate_factors.ndim != 1 or rate_factors.shape[0] < steps[-1]:
            raise ValueError(f"rate_factors must have shape (steps >= {steps[-1]},), got {rate_factors.shape}")
        times = np.concatenate([[0.0], np.cumsum(rate_factors)])[steps]
    with precision_scope("float64"):
        k_tt = jnp.asarray(k_train_train)
        y = jnp.asarray(y_train)
        k_te = None if k_test_train is None else jnp.asarray(k_test_train)
        f0_test = None if k_te is None else jnp.asarray(_initial(f0_test, (k_te.shape[0], k)))
        t = jnp.asarray(times, jnp.float64)
        if loss == "mse" and momentum is None:
            predict_fn = predict.gradient_descent_mse(k_tt, y, learning_rate=lr)
        else:
            predict_fn = predict.gradient_descent(loss_fn, k_tt, y, learning_rate=lr, momentum=momentum)
        out = predict_fn(t, jnp.asarray(f0_train), f0_test, k_te)
    if k_te is None:
        return _predictions(steps, np.asarray(out), None, k)
    return _predictions(steps, np.asarray(out[0]), np.asarray(out[1]), k)


def _warn_if_unstable(k_train_train, lr: float, n_outputs: int, momentum: float) -> None:
    limit = max_learning_rate(k_train_train, n_outputs, momentum=momentum)
    if lr > limit:
        warnings.warn(
            f"learning rate {lr:g} exceeds max_learning_rate {limit:.4g} of this kernel (full-batch MSE"
            f"{f', momentum {momentum:g}' if momentum else ''}): the kernel dynamics diverge",
            RuntimeWarning,
            stacklevel=3,
        )


def run(
    k_train_train,
    k_test_train,
    y_train,
    optimizer: Optimizer,
    steps: Sequence[int],
    *,
    loss: str = "mse",
    batch_indices=None,
    time: str = "discrete",
    dtype: str = "float32",
    progress: bool = False,
) -> Predictions:
    """Kernel dynamics of ``optimizer`` (sgd or momentum) from ``f = 0``: the exact route for the case.

    * ``time="continuous"``: [`kernel_flow`][infinite_width.limits.kernel_dynamics.kernel_flow] (full batch only);
    * full-batch MSE with SGD: [`mse_closed_form`][infinite_width.limits.kernel_dynamics.mse_closed_form];
    * otherwise (cross-entropy, momentum, minibatches):
      [`kernel_descent`][infinite_width.limits.kernel_dynamics.kernel_descent].

    A schedule on ``optimizer`` scales step ``s`` by its factor: the
    recursion (and the continuous time) apply it exactly, the closed form is
    used only for the constant schedule. Full-batch MSE in discrete time warns
    (``RuntimeWarning``) when the largest rate exceeds
    [`infinite_width.kernels.max_learning_rate`][].

    Args:
      k_train_train: (N, N) kernel.
      k_test_train: (Nt, N) kernel, or None.
      y_train: (N, k) targets.
      optimizer: [`infinite_width.optim.sgd`][] or ``momentum``.
      steps: (R,) increasing steps to record.
      loss: a loss of [`infinite_width.losses`][].
      batch_indices: (steps, B) training rows per step; None = full batch.
      time: ``"discrete"`` or ``"continuous"``.
      dtype: ``"float32"`` or ``"float64"`` ([`kernel_descent`][infinite_width.limits.kernel_dynamics.kernel_descent]).
      progress: a progress bar ([`kernel_descent`][infinite_width.limits.kernel_dynamics.kernel_descent]).
    """
    if not isinstance(optimizer, Optimizer) or optimizer.adaptive:
        raise ValueError(
            f"kernel dynamics are the limit of sgd and momentum; got {optimizer!r} (adam and sign have the "
            "Adam-like limit, infinite_width.AdamLimit)"
        )
    if time not in TIMES:
        raise ValueError(f"time must be one of {TIMES}, got {time!r}")
    beta = optimizer.beta if optimizer.name == "momentum" else 0.0
    total = int(np.max(steps, initial=0))
    factors = None if optimizer.schedule.is_constant else optimizer.rate_factors(total)
    if time == "continuous":
        if batch_indices is not None:
            raise ValueError("time='continuous' is gradient flow on the full batch; pass batch_indices=None")
        return kernel_flow(k_train_train, k_test_train, y_train, optimizer.lr, steps, loss=loss,
                           momentum=beta if optimizer.name == "momentum" else None, rate_factors=factors)
    if loss == "mse" and batch_indices is None:
        largest = optimizer.lr * (1.0 if factors is None else float(np.max(factors, initial=0.0)))
        _warn_if_unstable(k_train_train, largest, np.shape(y_train)[1], beta)
        if beta == 0.0 and factors is None:
            return mse_closed_form(k_train_train, k_test_train, y_train, optimizer.lr, steps)
    return kernel_descent(k_train_train, k_test_train, y_train, optimizer.lr, steps, loss=loss, momentum=beta,
                          batch_indices=batch_indices, rate_factors=factors, dtype=dtype, progress=progress)
