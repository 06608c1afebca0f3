"""Exact special cases of the Adam-like limit (docs/theory.md, section 6: the sign kernel, normalized kernel descent).

Every closed form is checked against an independent computation: brute-force
Monte Carlo written here in numpy (with its standard error), the quadrature,
explicitly sampled Gaussian processes, and a wide finite network.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infinite_width as iw
from infinite_width.limits.adam_limit.exact import (
    activation_sign_expectation,
    derivative_sign_expectation,
    gaussian_expectation_2d,
    linear_sign_expectation,
    normalized_readout_dynamics,
    sign_dynamics,
    sign_kernel,
    sign_sgd_dynamics,
)
from infinite_width._src.rng import minibatch_indices
from infinite_width.kernels import layerwise, stax

# (var_a, var_b, rho): generic, negative, near-degenerate and degenerate correlations.
COVARIANCES = [
    (1.0, 1.0, 0.3),
    (2.0, 0.5, -0.7),
    (1.3, 0.7, 0.9999),
    (1.0, 1.0, 1.0),
    (1.0, 2.0, -1.0),
    (0.7, 1.2, 0.0),
]
PIECEWISE_LINEAR = ("relu", "leaky_relu", "abs", "identity")

# Independent numpy versions of phi and phi' (the library differentiates jax functions).
NUMPY_ACTIVATIONS = {
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(float)),
    "leaky_relu": (lambda a: np.where(a > 0, a, 0.1 * a), lambda a: np.where(a > 0, 1.0, 0.1)),
    "abs": (np.abs, np.sign),
    "identity": (lambda a: a, np.ones_like),
    "sin": (np.sin, np.cos),
    "cos": (np.cos, lambda a: -np.sin(a)),
}


def _erf_pair():
    from scipy.special import erf

    return erf, lambda a: 2.0 / math.sqrt(math.pi) * np.exp(-a * a)


def _gelu_pair():
    from scipy.special import erf

    def gelu(a):
        return 0.5 * a * (1.0 + erf(a / math.sqrt(2.0)))

    def gelu_prime(a):
        return 0.5 * (1.0 + erf(a / math.sqrt(2.0))) + a * np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)

    return gelu, gelu_prime


NUMPY_ACTIVATIONS["erf"] = _erf_pair()
NUMPY_ACTIVATIONS["gelu"] = _gelu_pair()


def _bivariate(rng, var_a, var_b, rho, m):
    t, w = rng.standard_normal((2, m))
    b = math.sqrt(var_b) * t
    a = math.sqrt(var_a) * (rho * t + math.sqrt(max(1.0 - rho * rho, 0.0)) * w)
    return a, b


def _mean_and_stderr(samples, axis=0):
    return samples.mean(axis), samples.std(axis) / math.sqrt(samples.shape[axis])


def _gp_samples(rng, kernel, m):
    """m samples of a centered Gaussian vector with covariance ``kernel`` (P, P), shape (m, P)."""
    eigenvalues, vectors = np.linalg.eigh(np.asarray(kernel, dtype=np.float64))
    root = vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
    # (P, P) @ (P, m): a (m, P) @ (P, P) product with tiny P is much slower in BLAS.
    return (root @ rng.standard_normal((root.shape[0], m))).T


def _fitted_slope(sizes, errors):
    return np.polyfit(np.log(sizes), np.log(errors), 1)[0]


# --------------------------------------------------------------------------
# Two-dimensional Gaussian integrals.


@pytest.mark.parametrize("activation", PIECEWISE_LINEAR)
def test_piecewise_linear_closed_forms_match_quadrature(activation):
    var_a, var_b, rho = (np.array(v) for v in zip(*COVARIANCES))
    cov = rho * np.sqrt(var_a * var_b)
    for expectation in (derivative_sign_expectation, activation_sign_expectation):
        closed = expectation(activation, var_a, var_b, cov, method="closed_form")
        quadrature = expectation(activation, var_a, var_b, cov, method="quadrature")
        assert closed.shape == var_a.shape
        np.testing.assert_allclose(closed, quadrature, rtol=0, atol=1e-8)


@pytest.mark.parametrize("activation", PIECEWISE_LINEAR)
def test_closed_forms_match_monte_carlo(activation):
    rng = np.random.default_rng(0)
    phi, phi_prime = NUMPY_ACTIVATIONS[activation]
    for var_a, var_b, rho in COVARIANCES[:3]:
        a, b = _bivariate(rng, var_a, var_b, rho, 1_000_000)
        cov = rho * math.sqrt(var_a * var_b)
        checks = [
            (derivative_sign_expectation(activation, var_a, var_b, cov), phi_prime(a) * np.sign(phi_prime(b))),
            (activation_sign_expectation(activation, var_a, var_b, cov), phi(a) * np.sign(phi(b))),
            (linear_sign_expectation(var_b, cov), a * np.sign(b)),
        ]
        for closed, samples in checks:
            mean, stderr = _mean_and_stderr(samples)
            assert abs(float(closed) - mean) < 4.5 * stderr + 1e-12, (activation, var_a, var_b, rho)


@pytest.mark.parametrize("activation", ("erf", "gelu", "sin", "cos"))
def test_quadrature_of_smooth_activations_matches_monte_carlo(activation):
    rng = np.random.default_rng(1)
    phi, phi_prime = NUMPY_ACTIVATIONS[activation]
    for var_a, var_b, rho in [(1.0, 1.0, 0.3), (2.0, 0.5, -0.7), (1.3, 3.0, 0.95)]:
        a, b = _bivariate(rng, var_a, var_b, rho, 1_000_000)
        cov = rho * math.sqrt(var_a * var_b)
        for expectation, fn in ((derivative_sign_expectation, phi_prime), (activation_sign_expectation, phi)):
            mean, stderr = _mean_and_stderr(fn(a) * np.sign(fn(b)))
            assert abs(float(expectation(activation, var_a, var_b, cov)) - mean) < 4.5 * stderr


def test_quadrature_on_known_integrals():
    var_a = np.array([[1.0, 2.0], [0.5, 1.5]])
    var_b = np.array([0.8, 1.7])  # broadcasts along rows
    rho = np.array([[0.2, -0.6], [0.95, 0.0]])
    cov = rho * np.sqrt(var_a * var_b)
    sigma_a = np.sqrt(var_a)

    def identity(v):
        return v

    def square(v):
        return v * v

    smooth = gaussian_expectation_2d(identity, identity, var_a, var_b, cov)
    assert smooth.shape == (2, 2)
    np.testing.assert_allclose(smooth, cov, atol=1e-12)
    # Isserlis: E[a^2 b^2] = var_a var_b + 2 cov^2.
    fourth_moment = gaussian_expectation_2d(square, square, var_a, var_b, cov)
    np.testing.assert_allclose(fourth_moment, var_a * var_b + 2 * cov**2, rtol=1e-10)
    # Orthant: E[sign a sign b] = (2/pi) arcsin(rho).
    signs = gaussian_expectation_2d(np.sign, np.sign, var_a, var_b, cov, a_breaks=[0.0], b_breaks=[0.0])
    np.testing.assert_allclose(signs, 2 / np.pi * np.arcsin(rho), atol=1e-9)
    # E[a 1{a > 0, b > 0}] = sigma_a (1 + rho) / (2 sqrt(2 pi)), with a break away from 0 in g too.
    def relu(v):
        return np.maximum(v, 0.0)

    def step(v):
        return (v > 0).astype(float)

    positive = gaussian_expectation_2d(relu, step, var_a, var_b, cov, a_breaks=[0.0], b_breaks=[0.0, 5.0])
    np.testing.assert_allclose(positive, sigma_a * (1 + rho) / (2 * np.sqrt(2 * np.pi)), atol=1e-9)
    # A zero variance reduces to a one-dimensional integral: E[a^2 sign(b)] with b = 0 is 0, E[a^2 * 1] = var_a.
    np.testing.assert_allclose(gaussian_expectation_2d(square, np.sign, 2.0, 0.0, 0.0), 0.0, atol=1e-12)
    np.testing.assert_allclose(gaussian_expectation_2d(square, np.cos, 2.0, 0.0, 0.0), 2.0, rtol=1e-10)


@pytest.mark.parametrize(
    "which",
    ["relu_derivative", "relu_activation", "normalized_readout"],
)
def test_monte_carlo_error_falls_like_inverse_square_root(which):
    """The error of a plain Monte Carlo estimate of each closed form falls like M^-1/2."""
    rng = np.random.default_rng(2)
    sizes = [1_000, 10_000, 100_000, 1_000_000]
    replicas = 12
    if which == "normalized_readout":
        kernel = np.array([[1.0, 0.5, 0.2, 0.4], [0.5, 1.2, 0.3, 0.1], [0.2, 0.3, 0.9, 0.6], [0.4, 0.1, 0.6, 1.1]])
        chi = np.array([0.7, -1.2, 0.4])  # on the first three points; the fourth is the evaluation point

        def estimate(m):
            v = _gp_samples(rng, kernel, m)
            return np.mean(v[:, 3] * np.sign(v[:, :3] @ chi))

        exact = math.sqrt(2 / math.pi) * (kernel[3, :3] @ chi) / math.sqrt(chi @ kernel[:3, :3] @ chi)
    else:
        var_a, var_b, rho = 1.5, 0.8, 0.4
        cov = rho * math.sqrt(var_a * var_b)
        phi, phi_prime = NUMPY_ACTIVATIONS["relu"]
        if which == "relu_derivative":
            fn, closed = phi_prime, derivative_sign_expectation
        else:
            fn, closed = phi, activation_sign_expectation
        exact = float(closed("relu", var_a, var_b, cov))

        def estimate(m):
            a, b = _bivariate(rng, var_a, var_b, rho, m)
            return np.mean(fn(a) * np.sign(fn(b)))

    errors = [math.sqrt(np.mean([(estimate(m) - exact) ** 2 for _ in range(replicas)])) for m in sizes]
    slope = _fitted_slope(sizes, errors)
    assert -0.7 <= slope <= -0.3, (errors, slope)


# --------------------------------------------------------------------------
# Case 6.2: the sign kernel.


def _points(seed, n, d=3):
    return np.random.default_rng(seed).standard_normal((n, d))


def _monte_carlo_sign_kernel(arch, x_eval, x_train, samples, seed, readout_only=False):
    """Section 3's expectations with Q = sign, chi = 1, from explicitly sampled GPs (not factorized).

    Returns the mean and standard error, each (N_eval, N_train).
    """
    rng = np.random.default_rng(seed)
    points = np.concatenate([x_eval, x_train])
    n_eval, d = x_eval.shape
    kernels = layerwise(arch, points, dtype="float64")
    phi, phi_prime = NUMPY_ACTIVATIONS[arch.activations[0]]
    sw, sb, depth = kernels.W_std, kernels.b_std, kernels.depth

    def h(l):  # fresh sample of h^l ~ GP(0, K^l) on all points
        return _gp_samples(rng, kernels.K[l - 1], samples)

    def u(l):  # u^l = phi'(h^l) z^l, z^l ~ GP(0, sw_{l+1}^2 B^{l+1})
        return phi_prime(h(l)) * _gp_samples(rng, sw[l] ** 2 * kernels.B[l], samples)

    def term(values_eval, signs_train):  # (M, N_eval, N_train) per-sample contributions
        return values_eval[:, :n_eval, None] * np.sign(signs_train[:, None, n_eval:])

    readout_features = phi(h(depth))
    total = sb[depth] + sw[depth] * term(readout_features, readout_features)
    if not readout_only:
        for l in range(1, depth + 1):
            bias_u = u(l)
            total = total + sb[l - 1] * term(bias_u, bias_u)
            weight_u = u(l)
            if l == 1:
                # (1/d) sum_b E[u(xi) xi_b sign(u(x) x_b)]
                g = weight_u[:, None, n_eval:, None] * x_train[None, None, :, :]  # (M, 1, Nt, d)
                values = weight_u[:, :n_eval, None, None] * x_eval[None, :, None, :]  # (M, Ne, 1, d)
                total = total + sw[0] * np.mean(values * np.sign(g), axis=3)
            else:
                uv = weight_u * phi(h(l - 1))
                total = total + sw[l - 1] * term(uv, uv)
    return _mean_and_stderr(total)


@pytest.mark.parametrize(
    "activation, readout_only",
    [("relu", False), ("erf", False), ("relu", True)],
)
def test_sign_kernel_matches_direct_monte_carlo(activation, readout_only):
    arch = iw.mlp(depth=2, activation=activation, W_std=1.3, b_std=0.2)
    x_eval, x_train = _points(3, 4), _points(4, 3)
    theta = sign_kernel(arch, x_eval, x_train, readout_only=readout_only)
    assert theta.shape == (4, 3)
    mean, stderr = _monte_carlo_sign_kernel(arch, x_eval, x_train, 200_000, seed=5, readout_only=readout_only)
    z = (theta - mean) / stderr
    assert np.max(np.abs(z)) < 4.5, z


def test_sign_kernel_relu_closed_form_equals_quadrature():
    arch = iw.mlp(depth=3, activation="relu", W_std=1.3, b_std=0.2)
    x_eval, x_train = _points(6, 5), _points(7, 4)
    x_eval[0] = x_train[1]  # include a pair with correlation exactly 1
    closed = sign_kernel(arch, x_eval, x_train)
    quadrature = sign_kernel(arch, x_eval, x_train, method="quadrature")
    np.testing.assert_allclose(closed, quadrature, rtol=0, atol=1e-6)


@pytest.mark.parametrize("activation", ("relu", "gelu", "cos", "abs"))
def test_sign_kernel_diagonal_is_positive_and_kernel_is_asymmetric(activation):
    arch = iw.mlp(depth=2, activation=activation, W_std=1.3, b_std=0.2)
    x = _points(8, 5)
    theta = sign_kernel(arch, x, x)
    assert np.all(np.diag(theta) > 0)
    # Not symmetric: Theta(xi, x) is linear in the magnitude of xi's features, not of x's.
    assert np.max(np.abs(theta - theta.T)) > 1e-2 * np.max(np.abs(theta))


def test_sign_kernel_is_homogeneous_in_the_evaluation_point_only():
    """Without biases, ReLU features scale with the input, and signs do not.

    So Theta(c xi, x) = c Theta(xi, x) and Theta(xi, c x) = Theta(xi, x) for c > 0.
    """
    arch = iw.mlp(depth=2, activation="relu", W_std=1.4, b_std=0.0)
    x_eval, x_train = _points(9, 4), _points(10, 3)
    theta = sign_kernel(arch, x_eval, x_train)
    np.testing.assert_allclose(sign_kernel(arch, 2.5 * x_eval, x_train), 2.5 * theta, rtol=1e-8)
    np.testing.assert_allclose(sign_kernel(arch, x_eval, 0.3 * x_train), theta, rtol=1e-8)


def test_sign_dynamics_follows_the_recursion():
    rng = np.random.default_rng(11)
    theta_tt = rng.uniform(0.2, 1.0, (5, 5))
    theta_et = rng.uniform(-1.0, 1.0, (3, 5))
    y = rng.standard_normal(5)
    f0_train, f0_eval = rng.standard_normal(5), rng.standard_normal(3)
    indices = minibatch_indices(jax.random.PRNGKey(0), 5, 1, 30)  # (30, 1)
    out = sign_dynamics(theta_tt, theta_et, y[:, None], 0.1, indices, f0_train=f0_train, f0_eval=f0_eval)
    f_train, f_eval = f0_train.copy(), f0_eval.copy()
    expected = [f_eval.copy()]
    for i in indices[:, 0]:
        step = 0.1 * np.sign(f_train[i] - y[i])
        f_train, f_eval = f_train - step * theta_tt[:, i], f_eval - step * theta_et[:, i]
        expected.append(f_eval.copy())
    assert out.train.shape == (1, 31, 5, 1) and out.test.shape == (1, 31, 3, 1)
    np.testing.assert_array_equal(out.steps, np.arange(31))
    np.testing.assert_allclose(out.test[0, ..., 0], np.array(expected), atol=1e-12)
    np.testing.assert_allclose(out.train[0, -1, :, 0], f_train, atol=1e-12)


def test_sign_dynamics_moves_nothing_at_zero_error():
    theta = np.eye(3) + 0.1
    y = np.array([0.5, -0.2, 0.1])
    out = sign_dynamics(theta, theta[:2], y, 0.3, np.array([0, 1, 2, 0]), f0_train=y)
    np.testing.assert_array_equal(out.train[0, -1, :, 0], y)
    np.testing.assert_array_equal(out.test[0, -1, :, 0], np.zeros(2))


def test_wide_finite_network_with_sign_updates_approaches_sign_dynamics():
    """Pure sign updates with the per-group rates r_grp, one point per step, centered model f - f0."""
    d, steps, lr = 4, 40, 0.05
    x = _points(12, 10, d)
    x_train, x_eval = x[:6], x[6:]
    y = np.sin(x_train.sum(axis=1))
    arch = iw.mlp(depth=1, activation="relu", W_std=1.3, b_std=0.2)
    indices = minibatch_indices(jax.random.PRNGKey(1), 6, 1, steps)[:, 0]
    limit = sign_sgd_dynamics(arch, x_train, y, x_eval, lr, indices).test[0, -1, :, 0]

    def finite(width, seeds):
        init_fn, apply_fn, _ = stax(arch, width)
        # Parameters [(W1, b1), (), (W2, b2)]; r_grp of docs/theory.md, section 3.
        rates = [(1 / math.sqrt(width * d), 1 / math.sqrt(width)), (), (1 / math.sqrt(width), 1.0)]
        xs, ys, idx = jnp.asarray(x_train), jnp.asarray(y), jnp.asarray(indices)

        @jax.jit
        def train(p0):
            f0 = apply_fn(p0, xs)[:, 0]

            def loss(p, i):
                return 0.5 * (apply_fn(p, xs[i][None])[0, 0] - f0[i] - ys[i]) ** 2

            def step(p, i):
                grads = jax.grad(loss)(p, i)
                return jax.tree_util.tree_map(lambda q, g, r: q - lr * r * jnp.sign(g), p, grads, rates), None

            p = jax.lax.scan(step, p0, idx)[0]
            return (apply_fn(p, x_eval) - apply_fn(p0, x_eval))[:, 0]

        gaps = []
        for seed in seeds:
            p0 = init_fn(jax.random.PRNGKey(seed), (-1, d))[1]
            gaps.append(np.sqrt(np.mean((np.asarray(train(p0)) - limit) ** 2) / np.mean(limit**2)))
        return np.mean(gaps)

    widths = [256, 1024, 4096]
    gaps = [finite(width, seeds=range(3)) for width in widths]
    assert gaps[-1] < 0.05, gaps
    assert -1.0 <= _fitted_slope(widths, gaps) <= -0.25, gaps


# --------------------------------------------------------------------------
# Case 6.3: normalized readout dynamics.


def _identity_arch(out_dim, hidden="relu"):
    # Earlier layers may be anything: only the readout features need to be Gaussian.
    layers = (
        iw.Dense(None, 1.2, 0.1),
        iw.Activation(hidden),
        iw.Dense(None, 1.3, 0.2),
        iw.Activation("identity"),
        iw.Dense(out_dim, 1.3, 0.3),
    )
    return iw.Architecture(layers, name="relu-identity")


def test_normalized_readout_one_step_matches_monte_carlo():
    rng = np.random.default_rng(13)
    arch = _identity_arch(out_dim=2)
    x_train, x_eval = _points(14, 5), _points(15, 3)
    y = rng.standard_normal((5, 2))
    f0_train, f0_eval = rng.standard_normal((5, 2)), rng.standard_normal((3, 2))
    out = normalized_readout_dynamics(arch, x_train, y, x_eval, 0.1, 1, f0_train=f0_train, f0_eval=f0_eval)
    update = (np.concatenate([f0_train, f0_eval]) - np.concatenate([out.train[0, 1], out.test[0, 1]])) / 0.1  # (8, 2)
    chi = (f0_train - y) / y.size  # d/df of 0.5 mean((f - y)^2)
    kernels = layerwise(arch, np.concatenate([x_train, x_eval]), dtype="float64")
    sw, sb = kernels.W_std[-1], kernels.b_std[-1]
    for c in range(2):
        # v = h^L ~ GP(0, K^L) (identity activation), independent per output.
        v = _gp_samples(rng, kernels.K[-2], 400_000)
        mean, stderr = _mean_and_stderr(sw * v * np.sign(v[:, :5] @ chi[:, c])[:, None])
        z = (update[:, c] - sb * np.sign(chi[:, c].sum()) - mean) / stderr
        assert np.max(np.abs(z)) < 4.5, z


@pytest.mark.parametrize("loss", ("cross_entropy", "mse"))
def test_normalized_readout_minibatch_matches_numpy_recursion(loss):
    rng = np.random.default_rng(16)
    arch = _identity_arch(out_dim=3, hidden="erf")
    x_train, x_eval = _points(17, 8), _points(18, 2)
    y = np.eye(3)[rng.integers(0, 3, 8)]
    batches = minibatch_indices(jax.random.PRNGKey(2), 8, 3, 7)
    out = normalized_readout_dynamics(arch, x_train, y, x_eval, 0.2, 7, loss=loss, batch_indices=batches)
    kernels = layerwise(arch, np.concatenate([x_train, x_eval]), dtype="float64")
    features, sw, sb = kernels.S[-1], kernels.W_std[-1], kernels.b_std[-1]
    f = np.zeros((10, 3))
    for rows in batches:
        logits = f[rows]
        if loss == "mse":
            chi = (logits - y[rows]) / logits.size
        else:
            softmax = np.exp(logits - logits.max(1, keepdims=True))
            chi = (softmax / softmax.sum(1, keepdims=True) - y[rows]) / len(rows)
        numerator = features[:, rows] @ chi
        variance = np.einsum("ic,ij,jc->c", chi, features[np.ix_(rows, rows)], chi)
        direction = np.divide(numerator, np.sqrt(variance), out=np.zeros_like(numerator), where=variance > 1e-14)
        # A balanced batch at f = 0 makes sum_i chi_ic exactly 0 (up to rounding): no bias step.
        total = chi.sum(0)
        bias_sign = np.where(np.abs(total) > 1e-12 * np.abs(chi).sum(0), np.sign(total), 0.0)
        f = f - 0.2 * (sw * math.sqrt(2 / math.pi) * direction + sb * bias_sign)
    assert out.train.shape == (1, 8, 8, 3) and out.test.shape == (1, 8, 2, 3)
    np.testing.assert_allclose(np.concatenate([out.train[0, -1], out.test[0, -1]]), f, atol=1e-10)


def test_normalized_readout_with_zero_gradient_does_not_move():
    arch = _identity_arch(out_dim=2)
    x_train, x_eval = _points(19, 4), _points(20, 2)
    y = np.random.default_rng(21).standard_normal((4, 2))
    out = normalized_readout_dynamics(arch, x_train, y, x_eval, 0.5, 3, f0_train=y)
    assert np.all(np.isfinite(out.test)) and not out.diverged.any()
    np.testing.assert_array_equal(out.train[0, -1], y)
    np.testing.assert_array_equal(out.test[0, -1], 0.0)


def test_readout_sign_kernel_agrees_with_normalized_readout_for_one_point_per_step():
    arch = _identity_arch(out_dim=1)
    x_train, x_eval = _points(22, 5), _points(23, 3)
    y = np.random.default_rng(24).standard_normal((5, 1))
    batches = minibatch_indices(jax.random.PRNGKey(3), 5, 1, 12)
    through_kernel = sign_sgd_dynamics(arch, x_train, y, x_eval, 0.1, batches, readout_only=True)
    normalized = normalized_readout_dynamics(arch, x_train, y, x_eval, 0.1, 12, batch_indices=batches)
    np.testing.assert_allclose(through_kernel.test, normalized.test, atol=1e-10)
    np.testing.assert_allclose(through_kernel.train, normalized.train, atol=1e-10)


# --------------------------------------------------------------------------
# Bad input.

RELU = iw.mlp(depth=1, activation="relu", W_std=1.3, b_std=0.2)
X = np.ones((3, 2)) + np.arange(6).reshape(3, 2)
THETA = np.eye(3) + 0.5
NO_BIAS = iw.mlp(depth=1, b_std=0.0, out_dim=1)
GAUSSIAN = _identity_arch(2)
Y2 = np.zeros((3, 2))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: sign_kernel("mlp", X, X), TypeError, "Architecture"),
        (lambda: sign_kernel(iw.mlp(depth=1, out_dim=2), X, X), ValueError, "scalar output"),
        (lambda: sign_kernel(iw.mlp(depth=0), X, X), ValueError, "depth >= 1"),
        (lambda: sign_kernel(iw.conv(depth=1, out_dim=1), X, X), ValueError, "MLP"),
        (lambda: sign_kernel(RELU, X, X, readout_only="readout"), TypeError, "readout_only"),
        (lambda: sign_kernel(RELU, X, X, method="closed_form"), ValueError, "method"),
        (lambda: sign_kernel(RELU, X, X, quadrature_order=1), ValueError, "order"),
        (lambda: sign_kernel(RELU, X.ravel(), X), ValueError, "shape"),
        (lambda: sign_kernel(RELU, X, np.ones((3, 4))), ValueError, "feature shapes"),
        (lambda: sign_kernel(RELU, X, np.where(X > 5, np.nan, X)), ValueError, "NaN"),
        (lambda: sign_kernel(NO_BIAS, X, np.zeros((1, 2))), ValueError, "zero pre-activation variance"),
        (lambda: sign_dynamics(THETA[:2], THETA[:2], np.zeros(3), 0.1, [0]), ValueError, "square"),
        (lambda: sign_dynamics(THETA, THETA[:, :2], np.zeros(3), 0.1, [0]), ValueError, "theta_eval_train"),
        (lambda: sign_dynamics(THETA, THETA, np.zeros((3, 2)), 0.1, [0]), ValueError, "y_train"),
        (lambda: sign_dynamics(THETA, THETA, np.zeros(3), -0.1, [0]), ValueError, "learning rate"),
        (lambda: sign_dynamics(THETA, THETA, np.zeros(3), 0.1, [0, 3]), ValueError, "train_indices"),
        (lambda: sign_dynamics(THETA, THETA, np.zeros(3), 0.1, np.zeros((2, 2), int)), ValueError, "one training"),
        (lambda: sign_dynamics(THETA, THETA, np.zeros(3), 0.1, [0.0, 1.0]), TypeError, "integers"),
        (lambda: sign_dynamics(THETA, THETA, np.zeros(3), 0.1, [0], loss="hinge"), ValueError, "unknown loss"),
        (lambda: sign_dynamics(THETA, THETA, np.zeros(3), 0.1, [0], loss="cross_entropy"), ValueError, "2 outputs"),
        (lambda: sign_dynamics(THETA, THETA, np.zeros(3), 0.1, [0], f0_eval=np.zeros(2)), ValueError, "f0_eval"),
        (lambda: sign_dynamics(THETA * np.nan, THETA, np.zeros(3), 0.1, [0]), ValueError, "NaN"),
        (lambda: normalized_readout_dynamics(RELU, X, np.zeros((3, 1)), X, 0.1, 2), ValueError, "Gaussian readout"),
        (lambda: normalized_readout_dynamics(GAUSSIAN, X, np.zeros((3, 1)), X, 0.1, 2), ValueError, "y_train"),
        (lambda: normalized_readout_dynamics(GAUSSIAN, X, Y2, X, 0.1, -1), ValueError, "steps"),
        (lambda: normalized_readout_dynamics(GAUSSIAN, X, Y2, X, 0.1, 2, batch_indices=[[0]] * 3), ValueError, "batch_indices"),
        (lambda: normalized_readout_dynamics(GAUSSIAN, X, Y2, X, 0.1, 1, batch_indices=[[5]]), ValueError, "batch_indices"),
        (lambda: normalized_readout_dynamics(GAUSSIAN, X, Y2, X, 0.1, 1, batch_indices=[[0.5]]), TypeError, "integers"),
        (lambda: gaussian_expectation_2d(np.sign, np.sign, 1.0, 1.0, 2.0), ValueError, "covariance"),
        (lambda: gaussian_expectation_2d(np.sign, np.sign, -1.0, 1.0, 0.0), ValueError, ">= 0"),
        (lambda: gaussian_expectation_2d(np.sign, np.sign, np.ones(2), np.ones(3), 0.0), ValueError, "incompatible"),
        (lambda: gaussian_expectation_2d(np.sign, np.sign, np.nan, 1.0, 0.0), ValueError, "NaN"),
        (lambda: gaussian_expectation_2d(np.sign, np.sign, 1.0, 1.0, 0.0, order=0), ValueError, "order"),
        (lambda: derivative_sign_expectation("swish", 1.0, 1.0, 0.0), ValueError, "unknown activation"),
        (lambda: activation_sign_expectation("erf", 1.0, 1.0, 0.0, method="closed_form"), ValueError, "no closed form"),
        (lambda: activation_sign_expectation("relu", 1.0, 1.0, 0.0, method="exact"), ValueError, "unknown method"),
        (lambda: linear_sign_expectation(-1.0, 0.0), ValueError, ">= 0"),
    ],
)
def test_bad_input_raises_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
