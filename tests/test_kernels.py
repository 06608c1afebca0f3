"""infinite_width.kernels: shapes, layer-wise identities, conv kernels, input validation."""

import jax
import numpy as np
import pytest
import scipy.special
import scipy.stats
from sklearn.datasets import load_digits

import infinite_width as iw
import infinite_width.testing as iwt
from infinite_width import kernels
from infinite_width._src.nt import nt
from infinite_width._src.numerics import precision_scope
from infinite_width.architectures import Activation, Architecture, Conv, Dense, GlobalAvgPool, MaxPool


def _vectors(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


@pytest.fixture(scope="module")
def digits():
    """Four real 8x8 digit images, NHWC, scaled to unit pixel variance."""
    images = load_digits().images[:4].astype(np.float64)
    images = (images - images.mean()) / images.std()
    return images[..., None]


# ---- shapes -----------------------------------------------------------------


@pytest.mark.parametrize("dtype, np_dtype", [("float32", np.float32), ("float64", np.float64)])
def test_kernel_shapes_and_dtypes(dtype, np_dtype):
    arch = iw.mlp(2, "erf", 1.2, 0.1, out_dim=3)
    x1, x2 = _vectors(5, 4), _vectors(3, 4, seed=1)
    assert kernels.nngp(arch, x1, dtype=dtype).shape == (5, 5)
    assert kernels.ntk(arch, x1, x2, dtype=dtype).shape == (5, 3)
    nngp, ntk = kernels.nngp_and_ntk(arch, x2, x1, dtype=dtype)
    assert nngp.shape == ntk.shape == (3, 5)
    assert nngp.dtype == ntk.dtype == np_dtype
    # Per-output-channel kernels: out_dim does not change them.
    np.testing.assert_allclose(kernels.ntk(iw.mlp(2, "erf", 1.2, 0.1, out_dim=1), x2, x1, dtype=dtype), ntk)

    lw = kernels.layerwise(arch, x1, x2, dtype=dtype)
    assert lw.depth == 2
    assert [len(lw.K), len(lw.S), len(lw.Sd), len(lw.B)] == [3, 3, 2, 3]
    for K in lw.K + lw.S + lw.Sd + lw.B:
        assert K.shape == (5, 3) and K.dtype == np_dtype


def test_conv_kernel_shapes(digits):
    arch = iw.conv(1, "relu", out_dim=10)
    assert kernels.nngp(arch, digits[:3], digits[1:]).shape == (3, 3)
    assert kernels.ntk(arch, digits).shape == (4, 4)


# ---- layer-wise identities --------------------------------------------------


@pytest.mark.parametrize("activation", iw.ACTIVATIONS)
def test_layerwise_kernels_reproduce_ntk_and_nngp(activation):
    W_std, b_std, depth = 1.3, 0.2, 3
    arch = iw.mlp(depth, activation, W_std, b_std)
    x1, x2 = _vectors(5, 4), _vectors(3, 4, seed=1)
    lw = kernels.layerwise(arch, x1, x2, dtype="float64")
    nngp, ntk = kernels.nngp_and_ntk(arch, x1, x2, dtype="float64")

    # Recursions of docs/theory.md, section 2, written out here.
    np.testing.assert_allclose(lw.S[0], x1 @ x2.T / 4, rtol=1e-12)
    np.testing.assert_allclose(lw.K[0], W_std**2 * x1 @ x2.T / 4 + b_std**2, rtol=1e-12)
    for l in range(1, depth + 1):
        np.testing.assert_allclose(lw.K[l], W_std**2 * lw.S[l] + b_std**2, rtol=1e-10)
    backward = [np.ones_like(nngp)]
    for l in range(depth, 0, -1):
        backward.insert(0, W_std**2 * lw.Sd[l - 1] * backward[0])
    for computed, expected in zip(lw.B, backward):
        np.testing.assert_allclose(computed, expected, rtol=1e-12)

    ntk_sum = sum(backward[l] * (W_std**2 * lw.S[l] + b_std**2) for l in range(depth + 1))
    np.testing.assert_allclose(ntk_sum, ntk, rtol=1e-5, atol=1e-5 * np.abs(ntk).max())
    np.testing.assert_allclose(lw.ntk, ntk, rtol=1e-5, atol=1e-5 * np.abs(ntk).max())
    np.testing.assert_allclose(lw.K[-1], nngp, rtol=1e-5, atol=1e-5 * np.abs(nngp).max())
    np.testing.assert_allclose(lw.nngp, nngp, rtol=1e-5, atol=1e-5 * np.abs(nngp).max())


def _gelu(u):
    return 0.5 * u * (1.0 + scipy.special.erf(u / np.sqrt(2.0)))


# (phi, phi') in numpy, independent of the library's jax activations.
SMOOTH_ACTIVATIONS = {
    "erf": (scipy.special.erf, lambda u: 2.0 / np.sqrt(np.pi) * np.exp(-(u**2))),
    "gelu": (_gelu, lambda u: scipy.stats.norm.cdf(u) + u * scipy.stats.norm.pdf(u)),
    "sin": (np.sin, np.cos),
}


@pytest.mark.parametrize("activation", sorted(SMOOTH_ACTIVATIONS))
def test_layerwise_S_and_Sd_match_gauss_hermite(activation):
    phi, dphi = SMOOTH_ACTIVATIONS[activation]
    arch = iw.mlp(2, activation, 1.5, 0.3)
    x1, x2 = _vectors(4, 3), _vectors(3, 3, seed=1)
    lw_12 = kernels.layerwise(arch, x1, x2, dtype="float64")
    diag1 = np.stack([np.diag(K) for K in kernels.layerwise(arch, x1, dtype="float64").K])
    diag2 = np.stack([np.diag(K) for K in kernels.layerwise(arch, x2, dtype="float64").K])
    for l in range(1, 3):
        k11, k22 = diag1[l - 1][:, None], diag2[l - 1][None, :]
        k12 = lw_12.K[l - 1]
        S = iwt.bivariate_gaussian_expectation(phi, phi, k11, k12, k22, order=80)
        Sd = iwt.bivariate_gaussian_expectation(dphi, dphi, k11, k12, k22, order=80)
        np.testing.assert_allclose(lw_12.S[l], S, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(lw_12.Sd[l - 1], Sd, rtol=1e-6, atol=1e-8)


def test_gauss_hermite_reference_is_exact_on_polynomials():
    # E[u^2 v^2] = k11 k22 + 2 k12^2 (Isserlis), including the singular u = v case.
    k11, k12, k22 = np.array([1.0, 2.0, 0.5]), np.array([0.3, -1.0, 0.5]), np.array([2.0, 1.0, 0.5])
    value = iwt.bivariate_gaussian_expectation(np.square, np.square, k11, k12, k22, order=8)
    np.testing.assert_allclose(value, k11 * k22 + 2 * k12**2, rtol=1e-12)


# ---- convolutional kernels ------------------------------------------------


@pytest.mark.parametrize("arch", [iw.conv(2, "relu"), iw.myrtle(5)], ids=["conv2", "myrtle5"])
def test_conv_kernels_on_digits_are_symmetric_psd(arch, digits):
    nngp, ntk = kernels.nngp_and_ntk(arch, digits)
    for K in (nngp, ntk):
        iwt.check_symmetric(K, rtol=1e-5)
        iwt.check_psd(K, tol=1e-5)
        assert np.all(np.diag(K) > 0)
    iwt.check_ntk_dominates_nngp(arch, digits)


# ---- bad input ------------------------------------------------------------


MLP = iw.mlp(1, "relu", 1.0, 0.1)


@pytest.mark.parametrize(
    "x1, x2, error, message",
    [
        (np.ones((3, 4)), np.ones((2, 5)), ValueError, "different feature shapes"),
        (np.ones(4), None, ValueError, r"shape \(N, d\)"),
        (np.ones((2, 4, 4, 1)), None, ValueError, r"shape \(N, d\)"),
        (np.array([[1.0, np.nan]]), None, ValueError, "NaN or Inf"),
        (np.ones((2, 2)), np.array([[1.0, np.inf]]), ValueError, "x2 contains 1 NaN or Inf"),
        (np.ones((0, 3)), None, ValueError, "empty"),
        (np.array([["a", "b"]]), None, TypeError, "real numbers"),
        (np.ones((2, 2)) * 1j, None, TypeError, "real numbers"),
        ([[1.0, 2.0], [3.0]], None, TypeError, "cannot be converted"),
    ],
    ids=["feature-mismatch", "rank-1", "image-to-mlp", "nan", "inf", "empty", "strings", "complex", "ragged"],
)
def test_bad_inputs_raise_naming_the_problem(x1, x2, error, message):
    for fn in (kernels.nngp, kernels.ntk, kernels.nngp_and_ntk):
        with pytest.raises(error, match=message):
            fn(MLP, x1, x2)
    with pytest.raises(error, match=message):
        kernels.layerwise(MLP, x1, x2)


def test_bad_images_raise():
    arch = iw.conv(1, "relu")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        kernels.nngp(arch, np.ones((2, 8, 8)))
    with pytest.raises(ValueError, match="different feature shapes"):
        kernels.ntk(arch, np.ones((2, 8, 8, 1)), np.ones((2, 8, 8, 3)))


def test_bad_options_raise():
    x = _vectors(3, 2)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        iw.mlp(1, "swish")
    with pytest.raises(ValueError, match="unknown activation"):
        Activation("swish")
    with pytest.raises(TypeError, match="Architecture"):
        kernels.nngp("mlp", x)
    with pytest.raises(TypeError, match="Architecture"):
        kernels.layerwise(None, x)
    with pytest.raises(ValueError, match="defined for MLPs"):
        kernels.layerwise(iw.conv(1), np.ones((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="dtype must be one of"):
        kernels.nngp(MLP, x, dtype="float16")
    with pytest.raises(ValueError, match="batch_size"):
        kernels.nngp(MLP, x, batch_size=-1)
    with pytest.raises(ValueError, match="batch_size"):
        kernels.nngp(MLP, x, batch_size=1.5)


def test_maxpool_architecture_has_no_closed_form():
    arch = Architecture(
        (Conv(None), Activation("relu"), MaxPool(), GlobalAvgPool(), Dense(1)), name="maxpooled", input_kind="image"
    )
    assert not arch.has_closed_form
    for fn in (kernels.nngp, kernels.ntk):
        with pytest.raises(NotImplementedError, match="no closed-form.*MaxPool"):
            fn(arch, np.ones((2, 4, 4, 1)))


def test_tanh_is_for_finite_networks_only():
    arch = iw.mlp(2, "tanh", out_dim=2)
    assert "tanh" in iw.NO_CLOSED_FORM_ACTIVATIONS and "tanh" not in iw.ACTIVATIONS
    assert not arch.has_closed_form and iw.mlp(2, "erf").has_closed_form
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(iw.architectures.activation_fn("tanh")(x), np.tanh(x), rtol=1e-6)
    for fn in (kernels.nngp, kernels.layerwise):
        # layerwise names the activation first ("activation 'tanh' has no closed-form ..."), nngp the architecture.
        with pytest.raises(NotImplementedError, match="tanh.*no closed-form|no closed-form.*tanh"):
            fn(arch, np.ones((2, 3)))
    with pytest.raises(ValueError, match="unknown activation 'tan'.*tanh"):
        iw.mlp(2, "tan")


def test_zero_input_of_bias_free_relu_gives_its_limit_not_nan():
    # x = 0 is 0/0 in the bias-free arc-cosine; the network maps it to f = 0 exactly,
    # so its kernel row is 0, and the other entries are untouched.
    arch = iw.mlp(2, "relu", 1.0, 0.0)
    x = np.vstack([np.zeros((1, 3)), _vectors(2, 3)])
    for K in kernels.nngp_and_ntk(arch, x, dtype="float64"):
        assert np.all(np.isfinite(K))
        np.testing.assert_array_equal(K[0], 0.0)
        np.testing.assert_array_equal(K[:, 0], 0.0)
    expected = iwt.arccos_relu_kernels(x[1:], depth=2, W_std=1.0, b_std=0.0)
    for K, reference in zip(kernels.nngp_and_ntk(arch, x, dtype="float64"), expected):
        np.testing.assert_allclose(K[1:, 1:], reference, rtol=1e-6)


# ---- max_learning_rate ----------------------------------------------------


def test_max_learning_rate_matches_formula():
    x = _vectors(6, 3)
    ntk = kernels.ntk(iw.mlp(2, "relu"), x, dtype="float64")
    lam_max = np.max(np.linalg.eigvals(ntk).real)  # independent of eigvalsh
    assert kernels.max_learning_rate(ntk, 1) == pytest.approx(2 * 6 / lam_max, rel=1e-10)
    assert kernels.max_learning_rate(ntk, out_dim=3) == pytest.approx(2 * 18 / lam_max, rel=1e-10)
    assert kernels.max_learning_rate(ntk, 1, momentum=0.9) == pytest.approx(2 * 1.9 * 6 / lam_max, rel=1e-10)
    assert kernels.max_learning_rate(np.zeros((3, 3)), 1) == np.inf  # f never moves
    with pytest.raises(ValueError, match="square"):
        kernels.max_learning_rate(np.ones((2, 3)), 1)
    with pytest.raises(TypeError, match="out_dim"):
        kernels.max_learning_rate(ntk)  # k is required: N alone is right only for one output
    with pytest.raises(ValueError, match="momentum"):
        kernels.max_learning_rate(ntk, 1, momentum=1.0)
    # Issue 9: a NaN kernel used to end in "LinAlgError: Eigenvalues did not converge".
    broken = ntk.copy()
    broken[0, 0] = np.nan
    with pytest.raises(ValueError, match="ntk_train_train contains 1 NaN"):
        kernels.max_learning_rate(broken, 1)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_max_learning_rate_is_the_divergence_threshold_of_ntk_descent(momentum):
    # Discrete NTK descent on 0.5 * mean((f - y)^2) with k = 3 outputs, just below and just above the rate.
    from infinite_width.limits.kernel_dynamics import kernel_descent

    out_dim, steps = 3, 300
    x = _vectors(8, 3)
    ntk = kernels.ntk(iw.mlp(2, "relu"), x, dtype="float64")
    y = np.random.default_rng(2).standard_normal((8, out_dim))
    rate = kernels.max_learning_rate(ntk, out_dim, momentum=momentum)
    residual = {}
    for factor in (0.97, 1.03):
        f = kernel_descent(ntk, None, y, factor * rate, [steps], momentum=momentum, dtype="float64").train
        residual[factor] = np.linalg.norm(f[0, -1] - y) / np.linalg.norm(y)
    # Below: every mode contracts (by at most 0.94 or sqrt(momentum) per step); above, the top one grows
    # by at least 1.06 per step (1.06^300 ~ 4e7).
    assert residual[0.97] < 1.0
    assert residual[1.03] > 1e5


# ---- finite networks converge to the analytic kernels --------------------


def _log_log_slope(sizes, errors):
    return float(np.polyfit(np.log(sizes), np.log(errors), 1)[0])


@pytest.mark.parametrize(
    "implementation",
    [pytest.param(1, marks=pytest.mark.slow), 2],  # full Jacobians of width-1024 networks: slow
    ids=["jacobian-contraction", "ntk-vector-products"],
)
def test_empirical_ntk_converges_at_rate_one_over_sqrt_width(implementation):
    arch = iw.mlp(2, "relu", 1.5, 0.1)
    x = _vectors(8, 6).astype(np.float32)
    analytic = kernels.ntk(arch, x)
    widths = (64, 128, 256, 512, 1024)
    errors = []
    for width in widths:
        init_fn, apply_fn, _ = kernels.stax(arch, width)
        empirical_ntk = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=implementation))
        per_seed = []
        for seed in range(4):  # averaging over initialisations steadies the slope
            _, params = init_fn(jax.random.PRNGKey(seed), x.shape)
            with precision_scope("float32"):
                empirical = np.asarray(empirical_ntk(x, None, params))
            per_seed.append(np.linalg.norm(empirical - analytic) / np.linalg.norm(analytic))
        errors.append(np.mean(per_seed))
    slope = _log_log_slope(widths, errors)
    assert -0.8 <= slope <= -0.3, f"relative NTK errors {errors} at widths {widths}: slope {slope:.3f}"
    assert errors[-1] < 0.15


def test_monte_carlo_nngp_converges_at_rate_one_over_sqrt_samples():
    arch = iw.mlp(2, "relu", 1.5, 0.1, out_dim=32)
    x = _vectors(8, 6).astype(np.float32)
    analytic = kernels.nngp(arch, x)
    init_fn, apply_fn, _ = kernels.stax(arch, 256)
    n_samples = (1, 2, 4, 8, 16)
    errors = np.zeros(len(n_samples))
    for seed in range(4):
        monte_carlo = nt.monte_carlo_kernel_fn(
            init_fn, apply_fn, jax.random.PRNGKey(seed), n_samples=n_samples, device_count=0, implementation=2
        )
        with precision_scope("float32"):
            for i, estimate in enumerate(monte_carlo(x, None, "nngp")):
                errors[i] += np.linalg.norm(np.asarray(estimate) - analytic) / np.linalg.norm(analytic) / 4
    slope = _log_log_slope(n_samples, errors)
    assert -0.8 <= slope <= -0.3, f"relative NNGP errors {errors} at n_samples {n_samples}: slope {slope:.3f}"
