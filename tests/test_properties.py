"""Kernel identities on hypothesis-drawn architectures and inputs (infinite_width.testing)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import infinite_width as iw
import infinite_width.testing as iwt
from infinite_width import kernels

ALL_ARCHS = iwt.architectures(conv=True)
HOMOGENEOUS_ARCHS = iwt.architectures(activations=iwt.POSITIVELY_HOMOGENEOUS, bias=False, conv=True)


# One test for three properties: each new architecture costs a compilation.
@iwt.property_settings(max_examples=20)
@given(iwt.architectures_and_inputs(ALL_ARCHS))
def test_kernels_are_symmetric_psd_and_ntk_dominates_nngp(arch_and_x):
    arch, x = arch_and_x
    nngp, ntk = kernels.nngp_and_ntk(arch, x, dtype="float64")
    for K in (nngp, ntk):
        iwt.check_symmetric(K, rtol=1e-6)
        iwt.check_psd(K, tol=1e-6)
    iwt.check_ntk_dominates_nngp(arch, x, tol=1e-6)


@iwt.property_settings(max_examples=15)
@given(
    iwt.architectures_and_inputs(iwt.architectures(activations=("relu",), depths=(0, 4))),
    st.integers(1, 4),
)
def test_relu_kernels_equal_arccos_recursion(arch_and_x, n_other):
    arch, x = arch_and_x
    x_other = np.random.default_rng(n_other).standard_normal((n_other, x.shape[1]))
    dense = arch.layers[0]
    expected = iwt.arccos_relu_kernels(x, x_other, depth=arch.depth, W_std=dense.W_std, b_std=dense.b_std)
    actual = kernels.nngp_and_ntk(arch, x, x_other, dtype="float64")
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6 * np.abs(e).max())


@iwt.property_settings(max_examples=10)
@given(
    iwt.architectures_and_inputs(HOMOGENEOUS_ARCHS),
    st.floats(0.1, 10.0),
    st.floats(0.1, 10.0),
)
def test_bias_free_homogeneous_kernels_are_positively_homogeneous(arch_and_x, a, b):
    arch, x = arch_and_x
    iwt.check_positive_homogeneity(arch, x, a, b, rtol=1e-6)


@iwt.property_settings(max_examples=10)
@given(iwt.architectures_and_inputs(ALL_ARCHS), st.integers(0, 2**16))
def test_kernels_are_permutation_equivariant(arch_and_x, seed):
    arch, x = arch_and_x
    iwt.check_permutation_equivariance(arch, x, seed=seed, rtol=1e-6)


@iwt.property_settings(max_examples=8)
@given(
    iwt.architectures_and_inputs(iwt.architectures(conv=True), n=(3, 7)),
    st.integers(1, 3),
    st.booleans(),
)
def test_batched_kernels_equal_unbatched(arch_and_x, batch_size, with_x2):
    arch, x = arch_and_x
    x2 = x[::-1][:-1] if with_x2 else None
    iwt.check_batched_equals_unbatched(arch, x, x2, batch_size=batch_size)


@iwt.property_settings(max_examples=10)
@given(iwt.architectures_and_inputs(ALL_ARCHS))
def test_float32_kernels_match_float64(arch_and_x):
    arch, x = arch_and_x
    iwt.check_float32_matches_float64(arch, x, rtol=1e-3)


# ---- the checkers themselves must be able to fail --------------------------


def test_checkers_reject_broken_kernels():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    gram = A @ A.T
    assert iwt.check_symmetric(gram) < 1e-12
    assert iwt.check_psd(gram) > 0
    with pytest.raises(AssertionError, match="not symmetric"):
        iwt.check_symmetric(gram + np.triu(np.ones((5, 5)), 1))
    with pytest.raises(AssertionError, match="not positive semi-definite"):
        iwt.check_psd(gram - 2 * np.linalg.eigvalsh(gram)[-1] * np.eye(5))
    with pytest.raises(AssertionError, match="non-finite"):
        iwt.check_psd(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="square"):
        iwt.check_psd(np.ones((2, 3)))


def test_checkers_reject_invalid_requests():
    x = np.random.default_rng(0).standard_normal((3, 2))
    with pytest.raises(ValueError, match="bias-free"):
        iwt.check_positive_homogeneity(iw.mlp(1, "relu", 1.0, 0.1), x, 2.0, 3.0)
    with pytest.raises(ValueError, match="homogeneous activations"):
        iwt.check_positive_homogeneity(iw.mlp(1, "erf", 1.0, 0.0), x, 2.0, 3.0)
    with pytest.raises(ValueError, match="positive"):
        iwt.check_positive_homogeneity(iw.mlp(1, "relu", 1.0, 0.0), x, -1.0, 3.0)
    with pytest.raises(ValueError, match="unknown activation"):
        iwt.architectures(activations=("swish",))
    with pytest.raises(TypeError, match="Architecture"):
        iwt.inputs("mlp")


def test_homogeneity_fails_once_biases_are_present():
    # The identity genuinely fails once biases are present: the check detects it.
    x = np.random.default_rng(1).standard_normal((4, 3))
    with_bias = iw.mlp(2, "relu", 1.2, 0.5)
    nngp = kernels.nngp(with_bias, x, dtype="float64")
    scaled = kernels.nngp(with_bias, 2.0 * x, 3.0 * x, dtype="float64")
    assert np.max(np.abs(scaled - 6.0 * nngp)) > 1e-2 * np.max(np.abs(nngp))


def test_ntk_minus_nngp_is_zero_without_hidden_layers_and_not_psd_beyond():
    # Equality for a linear model; and NTK - c NNGP is indefinite for some c > 1,
    # so check_ntk_dominates_nngp checks the sharpest Loewner bound there is.
    x = np.random.default_rng(2).standard_normal((6, 3))
    linear = iw.mlp(0, "relu", 1.3, 0.4)
    nngp, ntk = kernels.nngp_and_ntk(linear, x, dtype="float64")
    np.testing.assert_allclose(ntk, nngp, rtol=1e-12)
    assert abs(iwt.check_ntk_dominates_nngp(linear, x)) < 1e-10

    deep = iw.mlp(2, "relu", 1.4, 0.1)
    nngp, ntk = kernels.nngp_and_ntk(deep, x, dtype="float64")
    assert iwt.check_ntk_dominates_nngp(deep, x) > 0
    ratio = np.max(np.diag(ntk) / np.diag(nngp))
    with pytest.raises(AssertionError):
        iwt.check_psd(ntk - 1.01 * ratio * nngp)


def test_arccos_reference_matches_a_monte_carlo_estimate():
    # The reference itself, checked against sampled ReLU features (width 2e5).
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4))
    W_std, b_std = 1.5, 0.3
    nngp, _ = iwt.arccos_relu_kernels(x, depth=1, W_std=W_std, b_std=b_std)
    width = 200_000
    h = W_std * x @ rng.standard_normal((4, width)) / 2.0 + b_std * rng.standard_normal(width)
    features = np.maximum(h, 0.0)
    monte_carlo = W_std**2 * features @ features.T / width + b_std**2
    np.testing.assert_allclose(monte_carlo, nngp, rtol=2e-2)
