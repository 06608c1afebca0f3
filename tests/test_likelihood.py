"""GP log marginal likelihood and hyperparameter fitting: scipy, finite differences, recovery of known values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import infinite_width as iw
from infinite_width import kernels


def _psd(n, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n + 2))
    return a @ a.T / n


def test_value_matches_scipy_multivariate_normal():
    K = _psd(12)
    y = np.random.default_rng(1).standard_normal((12, 3))
    noise = 0.1
    expected = sum(scipy.stats.multivariate_normal(np.zeros(12), K + noise * np.eye(12)).logpdf(y[:, c]) for c in range(3))
    assert float(kernels.log_marginal_likelihood(K, y, noise)) == pytest.approx(expected, rel=1e-12)
    # One output column as a vector; the same value under jit (float32 there: x64 mode is off).
    one = scipy.stats.multivariate_normal(np.zeros(12), K + noise * np.eye(12)).logpdf(y[:, 0])
    assert float(kernels.log_marginal_likelihood(K, y[:, 0], noise)) == pytest.approx(one, rel=1e-12)
    jitted = jax.jit(lambda k: kernels.log_marginal_likelihood(k, y, noise, dtype="float32"))(K)
    assert float(jitted) == pytest.approx(expected, rel=1e-4)


def test_gradient_in_scales_and_noise_matches_finite_differences():
    x = np.random.default_rng(2).standard_normal((10, 3))
    y = np.random.default_rng(3).standard_normal((10, 2))

    def log_evidence(theta):
        W_std, b_std, noise = theta
        K = kernels.nngp(iw.mlp(2, "erf", W_std, b_std), x, dtype="float64")
        return kernels.log_marginal_likelihood(K, y, noise)

    theta = np.array([1.4, 0.3, 0.2])
    with jax.enable_x64(True):
        gradient = np.asarray(jax.jit(jax.grad(log_evidence))(jnp.asarray(theta)))
        h = 1e-5
        expected = [
            (float(log_evidence(theta + h * e)) - float(log_evidence(theta - h * e))) / (2 * h) for e in np.eye(3)
        ]
    np.testing.assert_allclose(gradient, expected, rtol=1e-6)


def test_fit_recovers_the_hyperparameters_of_data_drawn_from_the_gp():
    # 6 independent output columns on 120 inputs: 720 observations of one GP.
    true = {"W_std": 1.6, "b_std": 0.4, "noise": 0.05}
    n, k, depth = 120, 6, 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4))
    K = kernels.nngp(iw.mlp(depth, "relu", true["W_std"], true["b_std"]), x, dtype="float64")
    y = np.linalg.cholesky(K + true["noise"] * np.eye(n)) @ rng.standard_normal((n, k))

    fit = kernels.fit_hyperparameters(iw.mlp(depth, "relu", 1.0, 0.1), x, y, init={"noise": 0.3}, steps=150, lr=0.1)
    fitted = np.array([fit.W_std, fit.b_std, fit.noise])
    assert fit.trace["log_likelihood"].shape == (151,) and fit.trace["W_std"][0] == 1.0
    assert fit.arch.scales == ((fit.W_std, fit.b_std),) * (depth + 1)

    # The tolerance is the estimator's own spread: standard errors of log theta from the Fisher information
    # of the Gaussian model, F_ij = k/2 tr(C^-1 dC/dlog theta_i C^-1 dC/dlog theta_j), at the fit.
    with jax.enable_x64(True):
        scales = jnp.asarray(fitted[:2])
        kernel_jacobian = jax.jacfwd(
            lambda s: kernels.nngp(iw.mlp(depth, "relu", s[0], s[1]), x, dtype="float64")
        )(scales)
    derivatives = [np.asarray(kernel_jacobian[..., i]) * fitted[i] for i in range(2)] + [fit.noise * np.eye(n)]
    C = np.asarray(kernels.nngp(fit.arch, x, dtype="float64")) + fit.noise * np.eye(n)
    whitened = [np.linalg.solve(C, D) for D in derivatives]
    fisher = np.array([[k / 2 * np.trace(a @ b) for b in whitened] for a in whitened])
    standard_errors = np.sqrt(np.diag(np.linalg.inv(fisher)))
    z = (np.log(fitted) - np.log([true["W_std"], true["b_std"], true["noise"]])) / standard_errors
    assert np.all(standard_errors < 0.25), standard_errors  # the data pin each value down to ~25% or better
    assert np.all(np.abs(z) < 4), (fitted, standard_errors, z)
    # Converged, and a maximum: the fit's evidence is at least the truth's.
    assert np.ptp(fit.trace["log_likelihood"][-20:]) < 1e-2
    at_truth = scipy.stats.multivariate_normal(np.zeros(n), K + true["noise"] * np.eye(n)).logpdf(y.T).sum()
    assert fit.log_likelihood >= at_truth


def test_bad_input_and_singular_kernels_say_what_to_do():
    x = np.random.default_rng(4).standard_normal((5, 2))
    repeated = np.vstack([x, x[:1]])  # two equal rows: a singular kernel
    K = kernels.nngp(iw.mlp(1, "relu"), repeated, dtype="float64")
    y = np.ones((6, 1))
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite.*increase noise"):
        kernels.log_marginal_likelihood(K, y, 0.0)
    assert np.isfinite(kernels.log_marginal_likelihood(K, y, 1e-3))
    # Under a transformation no value is checked (documented): an indefinite kernel gives NaN.
    assert np.isnan(jax.jit(lambda k: kernels.log_marginal_likelihood(k, y, 0.0, dtype="float32"))(-np.eye(6)))
    with pytest.raises(ValueError, match=r"y_train must have shape \(6, k\)"):
        kernels.log_marginal_likelihood(K, np.ones((5, 1)), 0.1)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        kernels.log_marginal_likelihood(K, y, -1.0)
    with pytest.raises(ValueError, match="k_train_train must be square"):
        kernels.log_marginal_likelihood(K[:5], y, 0.1)
    arch = iw.mlp(1, "relu", 1.0, 0.0)
    with pytest.raises(ValueError, match="b_std is fitted in log space and must start > 0"):
        kernels.fit_hyperparameters(arch, x, np.ones((5, 1)), steps=1)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        kernels.fit_hyperparameters(arch, x, np.ones((5, 1)), init={"sigma": 1.0}, fit=("W_std",), steps=1)
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels.fit_hyperparameters(arch, x, np.ones((5, 1)), kernel="nnpk", steps=1)
    # A fit that starts without noise on a singular kernel stops at once and says so.
    with pytest.raises(np.linalg.LinAlgError, match="noise=1e-30, W_std=1, b_std=0.*step 0.*increase noise"):
        kernels.fit_hyperparameters(arch, repeated, y, init={"noise": 1e-30}, fit=("W_std", "noise"), steps=3)
