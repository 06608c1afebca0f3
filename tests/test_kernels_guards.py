"""The kernels' guards (issue 24): inputs at a scale the dtype cannot compute, sizes that cannot fit, kernels
that are not symmetric, parameters of another network. Each reproducer of the issue is a test here."""

import math

import numpy as np
import pytest

import infinite_width as iw
from infinite_width import finite, kernels
from infinite_width.kernels import scale
from infinite_width.limits import baselines

RNG = np.random.default_rng(11)
UNIT_ROWS = RNG.standard_normal((10, 6))
UNIT_ROWS /= np.sqrt(np.mean(UNIT_ROWS**2, axis=1, keepdims=True))  # every row at q = ||x||^2 / d = 1
RELU = iw.mlp(2, "relu", 1.4, 0.0)  # positively homogeneous: K(c x) = c^2 K(x) exactly
ERF = iw.mlp(2, "erf", 1.4, 0.1)


def _normalized_error(k32, k64) -> float:
    k32, k64 = np.asarray(k32, np.float64), np.asarray(k64, np.float64)
    diagonal = np.sqrt(np.abs(np.diag(k64)))
    return float(np.max(np.abs(k32 - k64) / np.outer(diagonal, diagonal)))


def test_inputs_at_scale_1e15_are_refused_with_advice_and_the_advice_is_exact():
    """Issue 24: nngp of inputs at 1e15 returned finite values 14.5% wrong against float64 (1e10 raised)."""
    x = UNIT_ROWS * 1e15
    for kernel in (kernels.nngp, kernels.ntk):
        with pytest.raises(ValueError, match=r"x1 has rows at scale .*1e\+30.*dtype='float64'.*positively homogeneous"):
            kernel(RELU, x)
    exact = np.asarray(kernels.nngp(RELU, x, dtype="float64"))
    c = 1e15  # the advice: kernel(arch, x / c) * c**2
    rescaled = np.asarray(kernels.nngp(RELU, x / c), np.float64) * c**2
    np.testing.assert_allclose(rescaled, exact, rtol=1e-5)
    with pytest.raises(ValueError, match=r"x1 has rows at scale") as refused:
        kernels.nngp(ERF, x)
    assert "homogeneous" not in str(refused.value)  # biases: rescaling would change the kernel


@pytest.mark.parametrize("side", ["high", "low"])
def test_the_range_boundary_accepts_accurate_kernels_and_refuses_beyond(side):
    """Just inside the float32 range the (verified) kernels match float64; just outside they are refused."""
    lowest, highest = scale.scale_range(np.float32)
    q = highest if side == "high" else lowest
    inside = UNIT_ROWS * math.sqrt(q / 2 if side == "high" else 2 * q)
    outside = UNIT_ROWS * math.sqrt(2 * q if side == "high" else q / 2)
    k32 = kernels.ntk(RELU, inside)
    assert _normalized_error(k32, kernels.ntk(RELU, inside, dtype="float64")) < scale.TOLERANCE
    with pytest.raises(ValueError, match="outside"):
        kernels.ntk(RELU, outside)
    kernels.ntk(RELU, outside, dtype="float64")  # float64's range is far wider


def test_the_accuracy_boundary_of_float32_is_measured_not_assumed():
    """erf's NTK loses float32 digits as the inputs grow (saturation): accepted where float32 is within the
    tolerance of float64 on the whole matrix, refused where it is not, and float64 computes both."""
    accepted = UNIT_ROWS * 30.0  # q = 900: outside the unit band, so verified
    k32 = kernels.ntk(ERF, accepted)
    assert _normalized_error(k32, kernels.ntk(ERF, accepted, dtype="float64")) < scale.TOLERANCE
    refused = UNIT_ROWS * 300.0
    assert np.all(np.isfinite(kernels.ntk(ERF, refused, dtype="float64")))  # the advice: float64 computes it
    with pytest.raises(ValueError, match=r"x1 has rows at scale .* off by .* against float64, beyond the tolerance"):
        kernels.ntk(ERF, refused)
    with pytest.raises(ValueError, match="x1 and x2 have rows at scale"):
        kernels.ntk(ERF, UNIT_ROWS, refused)
    kernels.nngp(ERF, refused)  # the NNGP of the same inputs stays accurate, and is returned


def test_posterior_and_kernel_ridge_refuse_such_inputs_instead_of_moving_predictions():
    """Issue 24: Posterior/KernelRidge on inputs at 1e15 moved test predictions by 0.86 without a word."""
    y = np.eye(2)[np.arange(10) % 2]
    problem = iw.Problem(UNIT_ROWS * 1e15, y, UNIT_ROWS[:4] * 1e15, y[:4])
    arch = iw.mlp(2, "relu", 1.4, 0.0, out_dim=2)
    for method in (iw.Posterior(), iw.KernelRidge("ntk"), iw.KernelRidge("nngp")):
        with pytest.raises(ValueError, match="rows at scale"):
            iw.solve(problem, arch, method, progress=False)
    with pytest.raises(ValueError, match="x1 has rows at scale"):
        iw.solve(iw.Problem(UNIT_ROWS * 1e25, y, UNIT_ROWS[:4], y[:4]), arch, iw.KernelRidge("nnpk", width=8,
                 networks=4), progress=False)


def test_layerwise_refuses_what_would_be_inf_and_what_cannot_fit():
    """Issue 24: layerwise at 1e30 returned Inf in B, K, S and Sd; of 200,000 points it crashed with XLA's
    out-of-memory error (0.6 TB). Both are refused before computing, with advice."""
    with pytest.raises(ValueError, match="x1 has rows at scale"):
        kernels.layerwise(RELU, UNIT_ROWS * 1e30)
    big = np.ones((200_000, 3), np.float32)
    with pytest.raises(MemoryError, match=r"the 11 layer-wise kernels of 200000 x 200000 inputs needs at least .*"
                                          r"row blocks of x1"):
        kernels.layerwise(RELU, big)
    with pytest.raises(MemoryError, match="computing it takes"):  # the compiled program, not the result alone
        kernels.layerwise(RELU, UNIT_ROWS, max_memory_bytes=11 * 100 * 4 + 1)
    with pytest.raises(FloatingPointError, match="layer-wise kernels K, S, Sd, B of 'mlp1-relu'"):
        kernels.layerwise(iw.mlp(1, "relu", W_std=1e20), UNIT_ROWS)  # unit inputs, a kernel beyond float32
    lw = kernels.layerwise(RELU, UNIT_ROWS)
    np.testing.assert_allclose(lw.ntk, kernels.ntk(RELU, UNIT_ROWS), rtol=1e-5)


def test_fit_hyperparameters_on_60000_points_is_refused_before_allocating():
    """Issue 24: fit_hyperparameters on 60,000 points gave RESOURCE_EXHAUSTED at 345 GB."""
    x = RNG.standard_normal((60_000, 3))
    y = RNG.standard_normal((60_000, 1))
    with pytest.raises(MemoryError, match=r"hyperparameter fit on 60000 points needs at least .*random subset"):
        kernels.fit_hyperparameters(iw.mlp(1, "relu"), x, y, steps=1)
    with pytest.raises(MemoryError, match="computing it takes"):
        kernels.fit_hyperparameters(iw.mlp(1, "relu"), x[:20], y[:20], steps=1, max_memory_bytes=20 * 20 * 8 * 2 + 1)
    with pytest.raises(ValueError, match="x_train has rows at scale"):
        kernels.fit_hyperparameters(iw.mlp(1, "relu"), x[:20] * 1e200, y[:20], steps=1)


def _spd(n=6, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


def test_non_symmetric_kernels_and_complex_targets_are_refused():
    """Issue 24: log_marginal_likelihood read one triangle of a non-symmetric K and took complex targets;
    max_learning_rate took a non-symmetric matrix. Every function reading a triangle now refuses it."""
    k = _spd()
    skewed = k + np.triu(np.ones_like(k), 1)
    y = np.random.default_rng(1).standard_normal((6, 2))
    calls = {
        "k_train_train": lambda m: kernels.log_marginal_likelihood(m, y, 0.1),
        "ntk_train_train": lambda m: kernels.max_learning_rate(m, 2),
        "K_train_train": lambda m: baselines.kernel_regression(m, y, m),
        "k_test_test": lambda m: baselines.nngp_posterior(k, y, k, m),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"{name} is not symmetric"):
            call(skewed)
        call(k + 1e-9 * np.triu(np.ones_like(k), 1))  # rounding-level asymmetry is fine
    with pytest.raises(TypeError, match="y_train must hold real numbers, got dtype complex128"):
        kernels.log_marginal_likelihood(k, y + 1j, 0.1)
    with pytest.raises(ValueError, match=r"integer entries: class labels.*np.eye"):
        baselines.kernel_ridge(k, k, np.arange(6) % 2)


def test_stax_and_empirical_kernels_refuse_bad_widths_and_foreign_params():
    """Issue 24: kernels.stax(arch, width=0) was accepted; empirical_ntk with params of another width did not
    name params."""
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        kernels.stax(RELU, width=0)
    net = finite.network(RELU, 16)
    foreign = finite.network(RELU, 32).init(0, 6)
    for kernel in (kernels.empirical_ntk, kernels.empirical_nngp):
        with pytest.raises(ValueError, match=r"params\[0\]\['W'\] has shape \(6, 32\).*width 16.*\(6, 16\)"):
            kernel(net, foreign, UNIT_ROWS)
    with pytest.raises(ValueError, match="x1 has rows at scale"):
        kernels.empirical_ntk(net, net.init(0, 6), UNIT_ROWS * 1e20)
