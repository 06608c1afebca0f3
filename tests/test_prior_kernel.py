"""The Monte Carlo Neural Network Prior Kernel: exactness of the streaming estimator,
unbiasedness, 1/m variance, convergence to out_dim * NNGP with width, alignment, bad input."""

import jax
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels, testing
from infinite_width.finite import network
from infinite_width.kernels import kernel_alignment, nnpk, nnpk_features

RNG = np.random.RandomState(0)
X = RNG.randn(7, 4).astype(np.float32)
X2 = RNG.randn(5, 4).astype(np.float32)
MLP = iw.mlp(depth=2, activation="relu", W_std=1.5, b_std=0.2, out_dim=3)
# MaxPool has no closed-form kernel; LayerNorm's is only the infinite-width one.
MAXPOOL = iw.Architecture(
    (iw.Conv(None, (3, 3)), iw.Activation("relu"), iw.MaxPool(), iw.Flatten(), iw.Dense(2, 1.2, 0.1)),
    name="conv-maxpool",
    input_kind="image",
)
IMAGES = RNG.randn(6, 4, 4, 1).astype(np.float32)
LAYERNORM = iw.Architecture(
    (iw.Dense(None, 1.5, 0.2), iw.LayerNorm(), iw.Activation("erf"), iw.Dense(3, 1.2, 0.1)), name="mlp-layernorm"
)


def per_sample_kernels(arch, x1, x2, width, keys, init="gaussian"):
    """f_s(x1) f_s(x2)^T of each network, computed one network at a time: (m, N1, N2)."""
    net = network(arch, width, init=init)

    @jax.jit
    def outputs(key):
        params = net.init(key, x1.shape[1:])
        return net.apply(params, x1), net.apply(params, x2)

    out = []
    for key in keys:
        f1, f2 = (np.asarray(f, np.float64) for f in outputs(key))
        out.append(f1 @ f2.T)
    return np.stack(out)


@pytest.mark.parametrize(
    "arch, x1, x2",
    [(MLP, X, X2), (MLP, X, None), (MAXPOOL, IMAGES, None)],
    ids=["mlp-x1-x2", "mlp-x1", "maxpool"],
)
def test_streaming_estimate_equals_explicit_loop(arch, x1, x2):
    # Chunks of 3 networks and input batches of 4 rows (with padding) must not change anything.
    key = jax.random.PRNGKey(3)
    m = 10
    per_sample = per_sample_kernels(arch, x1, x1 if x2 is None else x2, 8, jax.random.split(key, m))
    K, stderr = nnpk(arch, x1, x2, width=8, n_samples=m, key=key, sample_chunk=3, batch_size=4, return_stderr=True)
    scale = np.abs(per_sample.mean(0)).max()
    np.testing.assert_allclose(K, per_sample.mean(0), atol=1e-5 * scale)
    np.testing.assert_allclose(stderr, per_sample.std(0, ddof=1) / np.sqrt(m), atol=1e-5 * scale)
    K_mean = nnpk(arch, x1, x2, width=8, n_samples=m, key=key, normalize="mean")
    np.testing.assert_allclose(K_mean * arch.out_dim, K, rtol=1e-5, atol=1e-6 * scale)
    if x2 is None:
        testing.check_symmetric(K)
        testing.check_psd(K)
        features = nnpk_features(arch, x1, width=8, n_samples=m, key=key, sample_chunk=4)
        assert features.shape == (x1.shape[0], m * arch.out_dim)
        np.testing.assert_allclose(features @ features.T, K, atol=1e-5 * scale)


def test_mean_over_keys_matches_independent_monte_carlo():
    # Depth 2, width 4: the finite-width NNPK differs from the NNGP, so both
    # sides estimate a quantity only Monte Carlo knows. 64 calls of m = 8
    # against 512 other networks, one at a time.
    estimates = np.stack(
        [nnpk(MLP, X, width=4, n_samples=8, key=k) for k in jax.random.split(jax.random.PRNGKey(0), 64)]
    )
    direct = per_sample_kernels(MLP, X, X, 4, jax.random.split(jax.random.PRNGKey(1), 512))
    difference = estimates.mean(0) - direct.mean(0)
    sigma = np.sqrt(estimates.var(0, ddof=1) / 64 + direct.var(0, ddof=1) / 512)
    assert np.max(np.abs(difference / sigma)) < 4.5


def test_exact_expectation_at_any_width_for_one_hidden_layer():
    # With one hidden layer the hidden pre-activations are exactly Gaussian
    # with covariance K^1 at any width, so E[f f^T] = out_dim * NNGP exactly.
    arch = iw.mlp(depth=1, activation="erf", W_std=1.3, b_std=0.3, out_dim=4)
    K, stderr = nnpk(arch, X, width=3, n_samples=20000, key=jax.random.PRNGKey(5), return_stderr=True)
    z = (K - arch.out_dim * kernels.nngp(arch, X, dtype="float64")) / stderr
    assert np.max(np.abs(z)) < 4.5


def test_variance_falls_like_one_over_m_and_stderr_is_calibrated():
    # erf keeps the per-network kernels light-tailed, so 300 runs pin each variance down.
    arch = iw.mlp(depth=2, activation="erf", W_std=1.5, b_std=0.2, out_dim=3)
    sizes = [2, 4, 8, 16, 32]
    variances, predicted = [], []
    for m in sizes:
        runs = [
            nnpk(arch, X[:4], width=4, n_samples=m, key=k, return_stderr=True)
            for k in jax.random.split(jax.random.PRNGKey(m), 300)
        ]
        estimates = np.stack([K for K, _ in runs])
        variances.append(estimates.var(0, ddof=1).mean())
        predicted.append(np.mean([stderr**2 for _, stderr in runs]))
    slope = np.polyfit(np.log(sizes), np.log(variances), 1)[0]
    print(f"variance slope {slope:.3f}, stderr^2 / variance {np.array(predicted) / np.array(variances)}")
    assert -1.3 <= slope <= -0.7, slope
    # Mean squared stderr estimates the variance of the estimator (within the noise of 300 runs).
    ratio = np.array(predicted) / np.array(variances)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio


def test_converges_to_nngp_like_one_over_width():
    # Depth 3: the finite-width bias of E[f f^T] is O(1/width). Subtracting
    # the expected noise sum(stderr^2) from the squared error leaves the squared bias.
    arch = iw.mlp(depth=3, activation="relu", W_std=1.5, b_std=0.2, out_dim=8)
    x = RNG.randn(4, 4)
    target = kernels.nngp(arch, x, dtype="float64")
    widths = [4, 8, 16, 32]
    biases = []
    for width in widths:
        K, stderr = nnpk(
            arch, x, width=width, n_samples=100_000, key=jax.random.PRNGKey(width), return_stderr=True,
            normalize="mean",
        )
        squared_bias = np.sum((K - target) ** 2) - np.sum(stderr**2)
        assert squared_bias > 4 * np.sqrt(2) * np.sum(stderr**2), (width, squared_bias)
        biases.append(np.sqrt(squared_bias) / np.linalg.norm(target))
    slope = np.polyfit(np.log(widths), np.log(biases), 1)[0]
    print(f"relative bias {biases}, slope {slope:.3f}")
    assert -1.3 <= slope <= -0.7, (slope, biases)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal", "uniform"])
def test_alignment_with_nngp_tends_to_one(init):
    # Every unit-variance initialisation has the Gaussian NNGP as its wide limit.
    x = RNG.randn(12, 4)
    target = kernels.nngp(MLP, x)
    misalignment = [
        1 - kernel_alignment(nnpk(MLP, x, width=w, n_samples=1000, key=jax.random.PRNGKey(w), init=init), target)
        for w in (2, 64)
    ]
    assert misalignment[1] < 0.5 * misalignment[0], misalignment
    assert misalignment[1] < 5e-3, misalignment


def test_layernorm_network_tends_to_its_infinite_width_kernel():
    target = kernels.nngp(LAYERNORM, X)
    K = nnpk(LAYERNORM, X, width=128, n_samples=400, key=jax.random.PRNGKey(0), normalize="mean")
    testing.check_psd(K)
    assert np.abs(K - target).max() < 0.05 * np.abs(target).max()


def test_kernel_alignment_matches_numpy_definitions():
    a, b = RNG.randn(6, 3), RNG.randn(6, 5)
    K1, K2 = a @ a.T + 1.0, b @ b.T
    H = np.eye(6) - np.ones((6, 6)) / 6
    C1, C2 = H @ K1 @ H, H @ K2 @ H
    assert kernel_alignment(K1, K2) == pytest.approx(np.trace(C1 @ C2) / np.sqrt(np.trace(C1 @ C1) * np.trace(C2 @ C2)))
    assert kernel_alignment(K1, K2, centered=False) == pytest.approx(
        np.trace(K1 @ K2) / np.sqrt(np.trace(K1 @ K1) * np.trace(K2 @ K2))
    )
    assert kernel_alignment(K1, 3.0 * K1) == pytest.approx(1.0)
    # Centering removes a constant offset.
    assert kernel_alignment(K2, K2 + 5.0) == pytest.approx(1.0)
    assert kernel_alignment(K2, K2 + 5.0, centered=False) < 0.99


KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(n_samples=2.5), ValueError, "n_samples"),
        (dict(width=0), ValueError, "width"),
        (dict(init="xavier"), ValueError, "init"),
        (dict(normalize="max"), ValueError, "normalize"),
        (dict(parametrization="weird"), ValueError, "parametrization"),
        (dict(sample_chunk=0), ValueError, "sample_chunk"),
        (dict(batch_size=-1), ValueError, "batch_size"),
        (dict(n_samples=1, return_stderr=True), ValueError, "n_samples >= 2"),
        (dict(key=0), TypeError, "key"),
        (dict(key=np.zeros(3, np.uint32)), TypeError, "key"),
        (dict(x1=np.full((3, 4), np.nan)), ValueError, "NaN"),
        (dict(x1=X[:, :3], x2=X), ValueError, "feature shapes"),
        (dict(x1=X[0]), ValueError, "shape"),
        (dict(x1=np.array([["a", "b"]])), TypeError, "real numbers"),
    ],
)
def test_bad_input_to_nnpk(kwargs, error, match):
    arguments = dict(x1=X, x2=None, width=4, n_samples=2, key=KEY)
    arguments.update(kwargs)
    x1, x2 = arguments.pop("x1"), arguments.pop("x2")
    with pytest.raises(error, match=match):
        nnpk(MLP, x1, x2, **arguments)


def test_bad_input_to_features_and_alignment():
    with pytest.raises(ValueError, match="n_samples"):
        nnpk_features(MLP, X, width=4, n_samples=0, key=KEY)
    with pytest.raises(TypeError, match="Architecture"):
        nnpk("mlp", X, width=4, n_samples=2, key=KEY)
    K = np.eye(3)
    with pytest.raises(ValueError, match="same shape"):
        kernel_alignment(K, np.eye(4))
    with pytest.raises(ValueError, match="square"):
        kernel_alignment(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        kernel_alignment(K, np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="constant"):
        kernel_alignment(K, np.ones((3, 3)))
