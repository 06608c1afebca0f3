"""The non-dynamical baselines: kernel regression, kernel ridge and the NNGP posterior, against numpy solves."""

import numpy as np
import pytest

from infinite_width.limits.baselines import kernel_regression, kernel_ridge, nngp_posterior

RNG = np.random.RandomState(1)


def _kernel_and_targets(n=8, n_test=4, k=2):
    a = RNG.randn(n + n_test, 3)
    K = a @ a.T + 0.1 * np.eye(n + n_test)
    return K[:n, :n], K[n:, :n], K[n:, n:], RNG.randn(n, k)


def test_kernel_regression_matches_numpy_solve_and_is_scale_invariant():
    K, K_star, _, y = _kernel_and_targets()
    ridge = 0.01
    expected = K_star @ np.linalg.solve(K + ridge * np.mean(np.diag(K)) * np.eye(8), y)
    np.testing.assert_allclose(kernel_regression(K, y, K_star, ridge=ridge), expected, rtol=1e-10)
    np.testing.assert_allclose(kernel_regression(7 * K, y, 7 * K_star, ridge=ridge), expected, rtol=1e-10)
    assert kernel_regression(K, y[:, 0], K_star).shape == (4, 1)


def test_kernel_ridge_and_posterior_match_the_gaussian_process_formulas():
    K, K_star, K_star_star, y = _kernel_and_targets()
    ridge = 0.05
    regularized = K + ridge * np.mean(np.diag(K)) * np.eye(8)
    mean_test = K_star @ np.linalg.solve(regularized, y)
    mean_train = K @ np.linalg.solve(regularized, y)
    variance = np.diag(K_star_star - K_star @ np.linalg.solve(regularized, K_star.T))

    train, test = kernel_ridge(K, K_star, y, ridge=ridge)
    np.testing.assert_allclose(train, mean_train, rtol=1e-10)
    np.testing.assert_allclose(test, mean_test, rtol=1e-10)

    train, test, test_variance = nngp_posterior(K, y, K_star, K_star_star, ridge=ridge)
    np.testing.assert_allclose(train, mean_train, rtol=1e-8)
    np.testing.assert_allclose(test, mean_test, rtol=1e-8)
    np.testing.assert_allclose(test_variance, variance, rtol=1e-8, atol=1e-12)
    assert test_variance.shape == (4,) and np.all(test_variance > 0)


def test_bad_input_is_named():
    K, K_star, K_star_star, y = _kernel_and_targets(n=3, n_test=2, k=1)
    with pytest.raises(ValueError, match="y_train"):
        kernel_regression(K, np.ones((4, 1)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="columns"):
        kernel_regression(K, np.ones((3, 1)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="ridge"):
        kernel_regression(K, np.ones((3, 1)), np.ones((2, 3)), ridge=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        kernel_regression(K, np.full((3, 1), np.nan), np.ones((2, 3)))
    with pytest.raises(np.linalg.LinAlgError, match="ridge"):
        kernel_regression(np.zeros((3, 3)) - np.eye(3), np.ones((3, 1)), np.ones((2, 3)), ridge=0.0)
    with pytest.raises(ValueError, match="k_test_train must have 3 columns"):
        kernel_ridge(K, K_star[:, :2], y)
    with pytest.raises(ValueError, match="k_train_train must be square"):
        kernel_ridge(K[:2], K_star, y)
    with pytest.raises(ValueError, match=r"k_test_train must have shape \(2, 3\)"):
        nngp_posterior(K, y, K_star[:1], K_star_star)
    bad = K_star_star.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="k_test_test contains 1 NaN"):
        nngp_posterior(K, y, K_star, bad)
    with pytest.raises(ValueError, match="ridge"):
        nngp_posterior(K, y, K_star, K_star_star, ridge=float("inf"))


def test_singular_posterior_raises_like_the_ridge_regimes():
    # Issue 9: duplicated training rows with ridge=0 gave NaN predictions instead of an error.
    import infinite_width as iw
    from infinite_width import kernels

    # Its own generator: with the module's, the data depended on which tests ran before in the same process,
    # and for about 1 draw in 30 the Cholesky factorisation of the singular kernel succeeds by round-off.
    rng = np.random.RandomState(1)
    x = rng.randn(4, 3)
    x_train, x_test = np.vstack([x, x[:2]]), rng.randn(2, 3)
    arch = iw.mlp(1, "relu")
    K, K_star, K_star_star = (kernels.nngp(arch, a, b, dtype="float64") for a, b in
                              ((x_train, None), (x_test, x_train), (x_test, None)))
    y = rng.randn(6, 1)
    for solve in (lambda: nngp_posterior(K, y, K_star, K_star_star, ridge=0.0),
                  lambda: kernel_ridge(K, K_star, y, ridge=0.0)):
        with pytest.raises(np.linalg.LinAlgError, match="singular or not positive definite.*increase ridge"):
            solve()
    train, test, variance = nngp_posterior(K, y, K_star, K_star_star, ridge=1e-6)
    assert np.all(np.isfinite(train)) and np.all(np.isfinite(test)) and np.all(np.isfinite(variance))
