"""Non-dynamical baselines: the NNGP posterior and kernel ridge regression (docs/theory.md, section 4).

Plain arrays in, predictions out; the kernels come from
[`infinite_width.kernels`][] (or anywhere else). Every ridge is relative to
the kernel's scale, ``ridge * mean(diag K_train_train)``, so ``c * K`` gives
the same predictions as ``K``; its one default is [`DEFAULT_RIDGE`][infinite_width.workflow.DEFAULT_RIDGE]
(also that of [`infinite_width.Posterior`][] and
[`infinite_width.KernelRidge`][], which wrap these functions).

Shapes: ``k_train_train`` (N, N), ``k_test_train`` (Nt, N), ``k_test_test``
(Nt, Nt), ``y_train`` (N, k); predictions (N, k) and (Nt, k).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from infinite_width._src.checks import check_kernel_matrix, check_target_columns
from infinite_width._src.numerics import precision_scope

__all__ = ["nngp_posterior", "kernel_ridge", "kernel_regression", "DEFAULT_RIDGE"]

DEFAULT_RIDGE = 1e-4
"""The default relative ridge of every baseline: ``1e-4 * mean(diag K)``."""


def nngp_posterior(k_train_train, y_train, k_test_train, k_test_test, ridge: float = DEFAULT_RIDGE):
    """Posterior of the infinitely wide Bayesian network: ``(train_mean, test_mean, test_variance)``.

    neural-tangents ``predict.gp_inference`` (what
    ``predict.gradient_descent_mse_ensemble`` runs at ``t=None``) with
    ``diag_reg=ridge``, in float64. Means have shapes (N, k) and (Nt, k); the
    test variance, shape (Nt,), is the same for every output (the kernel is
    ``K ⊗ I``), clipped at 0. ``numpy.linalg.LinAlgError`` when the
    regularized training kernel is singular (repeated inputs with
    ``ridge=0``): increase ``ridge``.
    """
    from infinite_width._src.nt import predict

    k_train_train = check_kernel_matrix("k_train_train", k_train_train, square=True)
    k_test_train = check_kernel_matrix("k_test_train", k_test_train)
    k_test_test = check_kernel_matrix("k_test_test", k_test_test, square=True)
    y_train = check_target_columns("y_train", y_train, k_train_train.shape[0], "k_train_train")
    if k_test_train.shape != (k_test_test.shape[0], k_train_train.shape[0]):
        raise ValueError(
            f"k_test_train must have shape ({k_test_test.shape[0]}, {k_train_train.shape[0]}) to match "
            f"k_test_test and k_train_train, got {k_test_train.shape}"
        )
    _check_ridge(ridge)
    with precision_scope("float64"):
        predict_fn = predict.gp_inference(
            jnp.asarray(k_train_train, jnp.float64), jnp.asarray(y_train, jnp.float64), diag_reg=ridge
        )
        test = predict_fn("nngp", jnp.asarray(k_test_train, jnp.float64), jnp.asarray(k_test_test, jnp.float64))
        train = predict_fn("nngp", jnp.asarray(k_train_train, jnp.float64))
    train, mean, covariance = np.asarray(train), np.asarray(test.mean), np.asarray(test.covariance)
    # The Cholesky factorisation inside gp_inference gives NaN, not an error, when it fails.
    if not (np.all(np.isfinite(train)) and np.all(np.isfinite(mean)) and np.all(np.isfinite(covariance))):
        raise _singular("k_train_train", ridge)
    return train, mean, np.clip(np.diag(covariance), 0.0, None)


def kernel_ridge(k_train_train, k_test_train, y_train, ridge: float = DEFAULT_RIDGE):
    """Kernel ridge regression fitted on the training set: ``(train_predictions (N, k), test_predictions (Nt, k))``.

    The end point of kernel gradient descent on MSE when ``ridge -> 0``
    (see [`kernel_regression`][infinite_width.limits.baselines.kernel_regression]).
    """
    k_train_train = check_kernel_matrix("k_train_train", k_train_train, square=True)
    n_train = k_train_train.shape[0]
    k_test_train = check_kernel_matrix("k_test_train", k_test_train)
    if k_test_train.shape[1] != n_train:
        raise ValueError(f"k_test_train must have {n_train} columns (N_train), got shape {k_test_train.shape}")
    predictions = kernel_regression(k_train_train, y_train, np.concatenate([k_train_train, k_test_train]), ridge=ridge)
    return predictions[:n_train], predictions[n_train:]


def _check_ridge(ridge) -> None:
    if not (isinstance(ridge, (int, float, np.floating)) and math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")


def kernel_regression(K_train_train, y_train, K_test_train, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """Kernel ridge regression predictions on the test points, shape (N_test, k).

    Solves ``(K_train_train + ridge * mean(diag K_train_train) * I) alpha = y_train``
    in float64 and returns ``K_test_train @ alpha``. The ridge is relative to
    the kernel's scale, so ``c * K`` gives the same predictions as ``K``
    (NNPK and ``out_dim * NNGP`` are then directly comparable). A positive
    ridge is needed for rank-deficient kernels such as an NNPK estimated
    from ``m * out_dim < N_train`` features.

    Args:
      K_train_train: (N_train, N_train) positive semi-definite kernel.
      y_train: (N_train, k) targets (or (N_train,), treated as k = 1).
      K_test_train: (N_test, N_train).
      ridge: relative ridge >= 0.
    """
    K = check_kernel_matrix("K_train_train", K_train_train, square=True)
    K_star = check_kernel_matrix("K_test_train", K_test_train)
    y = check_target_columns("y_train", y_train, K.shape[0], "K_train_train")
    if K_star.shape[1] != K.shape[0]:
        raise ValueError(f"K_test_train must have {K.shape[0]} columns (N_train), got shape {K_star.shape}")
    _check_ridge(ridge)
    scale = float(np.mean(np.diag(K)))
    regularized = K + ridge * scale * np.eye(K.shape[0])
    try:
        alpha = scipy.linalg.solve(regularized, y, assume_a="pos")
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError) as error:
        raise _singular("K_train_train", ridge) from error
    return K_star @ alpha


def _singular(name: str, ridge: float) -> np.linalg.LinAlgError:
    return np.linalg.LinAlgError(
        f"{name} + ridge * mean(diag {name}) * I is singular or not positive definite (ridge={ridge}), "
        f"e.g. from repeated training inputs; increase ridge"
    )
