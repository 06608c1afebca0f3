"""The Monte Carlo Neural Network Prior Kernel: exactness of the streaming estimator,
reproducibility per key, unbiasedness, 1/m variance, convergence to out_dim * NNGP with
width, alignment, the memory plan, bad input."""

import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels, testing
from infinite_width.finite import network
from infinite_width.kernels import kernel_alignment, network_keys, nnpk, nnpk_features, nnpk_prefixes, plan_memory

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
    """f_s(x1) f_s(x2)^T of each network, drawn and run one at a time (lax.map), in float64: (m, N1, N2)."""
    net = network(arch, width, init=init)

    def outputs(key):
        params = net.init(key, x1.shape[1:])
        return net.apply(params, x1), net.apply(params, x2)

    f1, f2 = (np.asarray(f, np.float64) for f in jax.jit(lambda keys: jax.lax.map(outputs, keys))(keys))
    return np.einsum("snk,smk->snm", f1, f2)


@pytest.mark.parametrize(
    "arch, x1, x2",
    [(MLP, X, X2), (MLP, X, None), (MAXPOOL, IMAGES, None)],
    ids=["mlp-x1-x2", "mlp-x1", "maxpool"],
)
def test_streaming_estimate_equals_explicit_loop(arch, x1, x2):
    # Three chunks of 134 networks (the last one padded), gathered into two kernel
    # updates of at least 512 output columns, and input batches of 4 rows (with
    # padding) must not change anything.
    key = jax.random.PRNGKey(3)
    m = 400
    per_sample = per_sample_kernels(arch, x1, x1 if x2 is None else x2, 8, network_keys(key, m))
    options = dict(width=8, networks=m, key=key, network_chunk=150, batch_size=4)
    K, stderr = nnpk(arch, x1, x2, return_stderr=True, normalize="sum", **options)
    scale = np.abs(per_sample.mean(0)).max()
    np.testing.assert_allclose(K, per_sample.mean(0), atol=1e-5 * scale)
    np.testing.assert_allclose(stderr, per_sample.std(0, ddof=1) / np.sqrt(m), atol=1e-5 * scale)
    K_mean = nnpk(arch, x1, x2, **options)  # normalize="mean", the default
    np.testing.assert_allclose(K_mean * arch.out_dim, K, rtol=1e-5, atol=1e-6 * scale)
    # Prefixes inside a chunk, at a chunk's end and across the kernel updates, from one pass.
    prefixes = [1, 3, 150, 200, 400]
    streamed = list(nnpk_prefixes(arch, x1, x2, prefixes=prefixes[::-1], **options))
    assert [count for count, _ in streamed] == prefixes
    for count, K_prefix in streamed:
        np.testing.assert_allclose(K_prefix * arch.out_dim, per_sample[:count].mean(0), atol=1e-5 * scale)
    if x2 is None:
        testing.check_symmetric(K)
        testing.check_psd(K)
        features = nnpk_features(arch, x1, **options)
        assert features.shape == (x1.shape[0], m * arch.out_dim)
        np.testing.assert_allclose(features @ features.T, K_mean, atol=1e-5 * scale / arch.out_dim)


def test_results_are_reproducible_per_key_and_prng():
    options = dict(width=8, networks=6, return_stderr=True, normalize="sum")
    K, stderr = nnpk(MLP, X, X2, key=7, **options)
    # An int seed is jax.random.PRNGKey(seed); the same key gives bit-identical results.
    for again in (nnpk(MLP, X, X2, key=jax.random.PRNGKey(7), **options), nnpk(MLP, X, X2, key=7, **options)):
        np.testing.assert_array_equal(again[0], K)
        np.testing.assert_array_equal(again[1], stderr)
    assert not np.allclose(nnpk(MLP, X, X2, key=8, **options)[0], K)
    # The PRNG is part of the result: the default draws with philox4x32, and
    # threefry2x32 (jax's default) gives other networks, those of jax.random.split(key).
    # philox4x32 arrived in jax 0.10.2; older jax falls back to threefry2x32.
    has_philox = jax.__version_info__ >= (0, 10, 2)
    assert kernels.PRNG_IMPLS == (("philox4x32",) if has_philox else ()) + ("threefry2x32",)
    assert kernels.DEFAULT_PRNG == kernels.PRNG_IMPLS[0]
    assert str(jax.random.key_impl(network_keys(7, 6))) == kernels.DEFAULT_PRNG
    K_threefry = nnpk(MLP, X, X2, key=7, prng="threefry2x32", **options)[0]
    assert not np.allclose(K_threefry, K)
    split = jax.random.split(jax.random.PRNGKey(7), 6)
    np.testing.assert_array_equal(jax.random.key_data(network_keys(7, 6, "threefry2x32")), split)
    np.testing.assert_allclose(K_threefry, per_sample_kernels(MLP, X, X2, 8, split).mean(0), rtol=1e-5, atol=1e-6)
    # Keys of any implementation are accepted, and reproducible.
    rbg_key = jax.random.key(7, impl="rbg")
    first, again = (nnpk(MLP, X, X2, key=rbg_key, **options)[0] for _ in range(2))
    np.testing.assert_array_equal(first, again)


# Issue 9, item 1: 12 MNIST-sized rows, width 1024 and 2000 networks. The old
# automatic chunk counted activations only and ran all 2000 networks at once (8-34 GB).
REPRODUCER = iw.mlp(depth=2, out_dim=10)
CONV = iw.Architecture(
    (iw.Conv(None, (3, 3)), iw.Activation("relu"), iw.Conv(None, (3, 3)), iw.Activation("relu"), iw.MaxPool(),
     iw.Flatten(), iw.Dense(10, 1.2, 0.1)),
    name="conv-conv-maxpool",
    input_kind="image",
)


@pytest.mark.parametrize(
    "arch, x_shape, width, init",
    [(REPRODUCER, (12, 784), 1024, "gaussian"), (CONV, (64, 8, 8, 3), 32, "orthogonal")],
    ids=["issue-reproducer", "conv-orthogonal"],
)
def test_memory_plan_bounds_what_xla_allocates(arch, x_shape, width, init):
    plan = plan_memory(arch, x_shape, width=width, networks=2000, init=init)
    assert 1 <= plan.network_chunk < 2000
    assert plan.network_chunk * plan.network_bytes <= 2**26  # the working-set budget of a chunk
    if arch is REPRODUCER:  # the weights of every network are counted, at least once
        n_params = (784 + 1) * 1024 + (1024 + 1) * 1024 + (1024 + 1) * 10
        assert plan.per_network["weights"] >= 4 * n_params
    # XLA's own accounting of the compiled chunk functions (draw the chunk, run it) stays within the plan.
    net = network(arch, width, init=init)
    keys = network_keys(0, plan.network_chunk)
    draw = jax.jit(functools.partial(net.init_many, input_shape=x_shape[1:]))
    params = jax.eval_shape(draw, keys)
    run = jax.jit(jax.vmap(net.apply, in_axes=(0, None)))
    inputs = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    for compiled in (draw.lower(keys).compile(), run.lower(params, inputs).compile()):
        usage = compiled.memory_analysis()
        peak = usage.temp_size_in_bytes + usage.argument_size_in_bytes + usage.output_size_in_bytes
        assert peak <= plan.total_bytes, (peak, plan.describe())


def test_memory_errors_say_what_fits_and_a_planned_run_completes():
    def suggestion(error, name):
        return int(re.search(rf"{name} <= (\d+) fits", str(error.value)).group(1))

    x = RNG.randn(12, 784)
    with pytest.raises(MemoryError, match="width <=") as error:
        nnpk(REPRODUCER, x, width=1024, networks=2000, key=0, max_memory_bytes=2**24)
    plan_memory(REPRODUCER, x.shape, width=suggestion(error, "width"), networks=2000, max_memory_bytes=2**24)
    with pytest.raises(MemoryError, match="network_chunk <=") as error:
        nnpk(REPRODUCER, x, width=1024, networks=2000, key=0, network_chunk=100, max_memory_bytes=2**28)
    fitting = suggestion(error, "network_chunk")
    plan_memory(REPRODUCER, x.shape, width=1024, networks=2000, network_chunk=fitting, max_memory_bytes=2**28)
    many_rows = dict(width=1024, networks=10, max_memory_bytes=2**28)
    with pytest.raises(MemoryError, match="batch_size <=") as error:
        plan_memory(REPRODUCER, (20_000, 784), (10, 784), **many_rows)
    plan_memory(REPRODUCER, (20_000, 784), (10, 784), batch_size=suggestion(error, "batch_size"), **many_rows)
    with pytest.raises(MemoryError, match="inputs and result alone"):
        plan_memory(REPRODUCER, (20_000, 784), **many_rows)
    # A real run with memory for two networks at a time draws them two by two.
    one = plan_memory(REPRODUCER, x.shape, width=1024, networks=4)
    budget = one.fixed_bytes + 2 * one.network_bytes + one.network_bytes // 2
    assert plan_memory(REPRODUCER, x.shape, width=1024, networks=4, max_memory_bytes=budget).network_chunk == 2
    K = nnpk(REPRODUCER, x, width=1024, networks=4, key=0, max_memory_bytes=budget)
    np.testing.assert_allclose(K, nnpk(REPRODUCER, x, width=1024, networks=4, key=0, network_chunk=4), rtol=1e-5)


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="MemAvailable is Linux's")
def test_free_memory_on_the_cpu_is_memavailable_not_memfree():
    # Page cache counts as available (reclaimable); read /proc/meminfo independently.
    text = open("/proc/meminfo").read()
    expected = int(re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M).group(1)) * 1024
    assert abs(iw.limits.adam_limit.available_memory(jax.devices("cpu")[0]) - expected) < 0.05 * expected


def test_mean_over_keys_matches_independent_monte_carlo():
    # Depth 2, width 4: the finite-width NNPK differs from the NNGP, so both
    # sides estimate a quantity only Monte Carlo knows. 64 calls of m = 8
    # against 512 other networks, one at a time, drawn with jax's default
    # threefry2x32 (independent of nnpk's philox4x32 draws).
    estimates = np.stack(
        [nnpk(MLP, X, width=4, networks=8, key=k, normalize="sum") for k in jax.random.split(jax.random.PRNGKey(0), 64)]
    )
    direct = per_sample_kernels(MLP, X, X, 4, jax.random.split(jax.random.PRNGKey(1), 512))
    difference = estimates.mean(0) - direct.mean(0)
    sigma = np.sqrt(estimates.var(0, ddof=1) / 64 + direct.var(0, ddof=1) / 512)
    assert np.max(np.abs(difference / sigma)) < 4.5


def test_exact_expectation_at_any_width_for_one_hidden_layer():
    # With one hidden layer the hidden pre-activations are exactly Gaussian
    # with covariance K^1 at any width, so E[f f^T] / out_dim = NNGP exactly.
    arch = iw.mlp(depth=1, activation="erf", W_std=1.3, b_std=0.3, out_dim=4)
    K, stderr = nnpk(arch, X, width=3, networks=20000, key=jax.random.PRNGKey(5), return_stderr=True)
    z = (K - kernels.nngp(arch, X, dtype="float64")) / stderr
    assert np.max(np.abs(z)) < 4.5


def test_variance_falls_like_one_over_m_and_stderr_is_calibrated():
    # erf keeps the per-network kernels light-tailed, so 300 runs pin each variance down.
    arch = iw.mlp(depth=2, activation="erf", W_std=1.5, b_std=0.2, out_dim=3)
    sizes = [2, 4, 8, 16, 32]
    variances, predicted = [], []
    for m in sizes:
        runs = [
            nnpk(arch, X[:4], width=4, networks=m, key=k, return_stderr=True)
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
            arch, x, width=width, networks=100_000, key=jax.random.PRNGKey(width), return_stderr=True,
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
        1 - kernel_alignment(nnpk(MLP, x, width=w, networks=1000, key=jax.random.PRNGKey(w), init=init), target)
        for w in (2, 64)
    ]
    assert misalignment[1] < 0.5 * misalignment[0], misalignment
    assert misalignment[1] < 5e-3, misalignment


def test_layernorm_network_tends_to_its_infinite_width_kernel():
    # Within the Monte Carlo noise (4.5 standard errors, 2.6% of the scale) plus a
    # finite-width bias of 1% of the scale: the bias falls like 1/width, from 7% at width 8.
    target = kernels.nngp(LAYERNORM, X)
    K, stderr = nnpk(LAYERNORM, X, width=128, networks=20_000, key=0, normalize="mean", return_stderr=True)
    testing.check_psd(K)
    assert np.all(np.abs(K - target) <= 4.5 * stderr + 0.01 * np.abs(target).max())


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
        (dict(networks=0), ValueError, "networks"),
        (dict(networks=2.5), ValueError, "networks"),
        (dict(width=0), ValueError, "width"),
        (dict(init="xavier"), ValueError, "init"),
        (dict(normalize="max"), ValueError, "normalize"),
        (dict(parametrization="weird"), ValueError, "parametrization"),
        (dict(network_chunk=0), ValueError, "network_chunk"),
        (dict(batch_size=-1), ValueError, "batch_size"),
        (dict(networks=1, return_stderr=True), ValueError, "networks >= 2"),
        (dict(key="0"), TypeError, "key"),
        (dict(key=np.zeros(3, np.uint32)), TypeError, "key"),
        (dict(key=np.zeros(2, np.float32)), TypeError, "key"),
        (dict(key=jax.random.split(jax.random.key(0), 2)), ValueError, "single PRNG key"),
        (dict(prng="rbg"), ValueError, "prng"),
        (dict(max_memory_bytes=0), ValueError, "max_memory_bytes"),
        (dict(x1=np.full((3, 4), np.nan)), ValueError, "NaN"),
        (dict(x1=X[:, :3], x2=X), ValueError, "feature shapes"),
        (dict(x1=X[0]), ValueError, "shape"),
        (dict(x1=np.array([["a", "b"]])), TypeError, "real numbers"),
    ],
)
def test_bad_input_to_nnpk(kwargs, error, match):
    arguments = dict(x1=X, x2=None, width=4, networks=2, key=KEY)
    arguments.update(kwargs)
    x1, x2 = arguments.pop("x1"), arguments.pop("x2")
    with pytest.raises(error, match=match):
        nnpk(MLP, x1, x2, **arguments)


def test_bad_input_to_features_prefixes_and_alignment():
    with pytest.raises(ValueError, match="networks"):
        nnpk_features(MLP, X, width=4, networks=0, key=KEY)
    # Checked when called, before any network is drawn (not at the first next()).
    for prefixes, error, match in [([0, 2], ValueError, "prefixes"), ([5], ValueError, "at most networks=4"),
                                   ([], ValueError, "empty"), ("1", TypeError, "list")]:
        with pytest.raises(error, match=match):
            nnpk_prefixes(MLP, X, width=4, networks=4, key=KEY, prefixes=prefixes)
    with pytest.raises(ValueError, match="init"):
        nnpk_prefixes(MLP, X, width=4, networks=4, key=KEY, init="xavier")
    with pytest.raises(TypeError, match="Architecture"):
        nnpk("mlp", X, width=4, networks=2, key=KEY)
    K = np.eye(3)
    with pytest.raises(ValueError, match="same shape"):
        kernel_alignment(K, np.eye(4))
    with pytest.raises(ValueError, match="square"):
        kernel_alignment(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        kernel_alignment(K, np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="constant"):
        kernel_alignment(K, np.ones((3, 3)))


def test_one_options_record_serves_the_four_nnpk_functions():
    """Issue 21: nnpk, nnpk_prefixes, nnpk_features and plan_memory repeated 12 keywords. One record now holds
    them (one default, one check each); the keywords build it, and replace its fields when both are given."""
    import dataclasses
    import inspect

    options = kernels.NNPKOptions(width=8, networks=6, normalize="sum")
    by_record = nnpk(MLP, X, options=options, key=0)
    np.testing.assert_array_equal(by_record, nnpk(MLP, X, width=8, networks=6, normalize="sum", key=0))
    features = nnpk_features(MLP, X, options, key=0)
    np.testing.assert_allclose(features @ features.T, by_record, rtol=1e-5, atol=1e-6)
    count, last = list(nnpk_prefixes(MLP, X, options=options, key=0))[-1]
    assert count == 6
    np.testing.assert_allclose(last, by_record, rtol=1e-6)  # grouped otherwise: equal to rounding
    assert plan_memory(MLP, X.shape, options=options) == plan_memory(MLP, X.shape, width=8, networks=6)
    np.testing.assert_array_equal(nnpk(MLP, X, options=options, networks=3, key=0),
                                  nnpk(MLP, X, width=8, networks=3, normalize="sum", key=0))
    fields = {field.name for field in dataclasses.fields(kernels.NNPKOptions)}
    for function in (nnpk, nnpk_prefixes, nnpk_features, plan_memory):
        assert not set(inspect.signature(function).parameters) & fields, function.__name__
    with pytest.raises(TypeError, match="options must be an infinite_width.kernels.NNPKOptions"):
        nnpk(MLP, X, options={"width": 8}, key=0)
    assert iw.KernelRidge("nnpk", width=8, networks=6).nnpk_options == kernels.NNPKOptions(8, 6)
    with pytest.raises(ValueError, match="networks must be an integer >= 1"):
        iw.KernelRidge("nnpk", width=8, networks=0)  # the record's own check
