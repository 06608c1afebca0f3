"""Kernels as JAX functions: grad, jit, vmap, raw stax kernel_fns, result types, and the memory plan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels, nt
from infinite_width.kernels import analytic  # the memory plan's block choice is observed through it

W_STD, B_STD = 1.3, 0.2


def _vectors(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def _central_difference(f, x, h):
    """Gradient of the scalar function f at the array x by central differences, entry by entry."""
    x = np.asarray(x, dtype=np.float64)
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        gradient[index] = (f(x + step) - f(x - step)) / (2 * h)
    return gradient


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_grad_in_inputs_and_scales_matches_finite_differences(activation):
    x1, x2 = _vectors(4, 3), _vectors(3, 3, seed=1)
    weights = np.random.default_rng(2).standard_normal((4, 3))  # a generic linear functional of the kernel

    def functional(w, b, x):
        nngp, ntk = kernels.nngp_and_ntk(iw.mlp(2, activation, w, b), x, x2, dtype="float64")
        return jnp.sum(weights * nngp) + jnp.sum(weights**2 * ntk)

    with jax.enable_x64(True):
        grad_w, grad_b, grad_x = jax.grad(functional, argnums=(0, 1, 2))(W_STD, B_STD, x1)
        value = lambda w, b, x: float(functional(w, b, x))  # noqa: E731
        h = 1e-5
        expected_w = (value(W_STD + h, B_STD, x1) - value(W_STD - h, B_STD, x1)) / (2 * h)
        expected_b = (value(W_STD, B_STD + h, x1) - value(W_STD, B_STD - h, x1)) / (2 * h)
        expected_x = _central_difference(lambda x: value(W_STD, B_STD, x), x1, h)
    assert float(grad_w) == pytest.approx(expected_w, rel=1e-6)
    assert float(grad_b) == pytest.approx(expected_b, rel=1e-6)
    np.testing.assert_allclose(np.asarray(grad_x), expected_x, rtol=1e-5, atol=1e-7 * np.abs(expected_x).max())


def test_jit_equals_eager_and_vmap_equals_a_loop():
    arch = iw.mlp(2, "relu", W_STD, B_STD)
    batch = np.stack([_vectors(5, 3, seed) for seed in range(3)])
    eager = [kernels.nngp_and_ntk(arch, x) for x in batch]

    jitted = jax.jit(lambda x: kernels.nngp_and_ntk(arch, x))(batch[0])
    for a, b in zip(jitted, eager[0]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)

    mapped = jax.vmap(lambda x: kernels.nngp_and_ntk(arch, x))(batch)
    for which in range(2):
        np.testing.assert_allclose(np.asarray(mapped[which]), np.stack([e[which] for e in eager]), rtol=1e-6, atol=1e-6)

    # Over the scales too. Float64, and 1e-8: at cos t = 1 (the diagonal) neural-tangents' arc-cosine is
    # rounding-sensitive (about 1e-4 relative in float32, 1e-9 in float64) and vmap reorders operations.
    scales = np.array([0.8, 1.3, 2.0])
    with jax.enable_x64(True):
        over_scales = jax.vmap(lambda w: kernels.ntk(iw.mlp(2, "relu", w, B_STD), batch[0], dtype="float64"))(scales)
        looped = np.stack([kernels.ntk(iw.mlp(2, "relu", float(w), B_STD), batch[0], dtype="float64") for w in scales])
    np.testing.assert_allclose(np.asarray(over_scales), looped, rtol=1e-8)

    # Layer-wise kernels under jit: LayerwiseKernels is a pytree.
    layers = jax.jit(lambda x: kernels.layerwise(arch, x))(batch[0])
    np.testing.assert_allclose(np.asarray(layers.ntk), np.asarray(eager[0][1]), rtol=1e-5, atol=1e-5)


def test_a_raw_stax_kernel_fn_gives_the_architecture_kernels():
    arch = iw.mlp(2, "erf", W_STD, B_STD)
    layers = [nt.stax.Dense(1, W_STD, B_STD), nt.stax.Erf()] * 2 + [nt.stax.Dense(1, W_STD, B_STD)]
    x1, x2 = _vectors(4, 3), _vectors(2, 3, seed=1)
    kernel_fn = nt.stax.serial(*layers)[2]
    for ours, theirs in zip(kernels.nngp_and_ntk(arch, x1, x2, dtype="float64"),
                            kernels.nngp_and_ntk(kernel_fn, x1, x2, dtype="float64")):
        np.testing.assert_allclose(theirs, ours, rtol=1e-12, atol=1e-14)
    # A kernel_fn built inside the transformation (its layers hold the traced W_std) differentiates like the
    # architecture, eagerly and under jit.
    def through_stax(w):
        serial = nt.stax.serial(nt.stax.Dense(1, w, B_STD), nt.stax.Erf(), nt.stax.Dense(1, w, B_STD))
        return kernels.nngp(serial[2], x1, x2).sum()

    via_arch = float(jax.grad(lambda w: kernels.nngp(iw.mlp(1, "erf", w, B_STD), x1, x2).sum())(W_STD))
    assert float(jax.grad(through_stax)(W_STD)) == pytest.approx(via_arch, rel=1e-5)
    assert float(jax.jit(jax.grad(through_stax))(W_STD)) == pytest.approx(via_arch, rel=1e-5)
    with pytest.raises(ValueError, match=r"shape \(N, \.\.\.\) for a kernel_fn"):
        kernels.nngp(kernel_fn, np.ones(3))


def test_result_types_keep_float64_safe():
    x = _vectors(4, 3)
    arch = iw.mlp(1, "relu")
    assert isinstance(kernels.nngp(arch, x), jax.Array) and kernels.nngp(arch, x).dtype == jnp.float32
    # float64 with x64 mode off: numpy, since the next jax operation would silently make a float64 jax array float32.
    k64 = kernels.nngp(arch, x, dtype="float64")
    assert isinstance(k64, np.ndarray) and (2.0 * k64).dtype == np.float64
    with jax.enable_x64(True):
        k64_x64 = kernels.nngp(arch, x, dtype="float64")
        assert isinstance(k64_x64, jax.Array) and (2.0 * k64_x64).dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(k64_x64), k64)


def test_checks_under_transformations():
    arch = iw.mlp(1, "relu")
    x = _vectors(3, 2)
    # Static checks still run under jit.
    with pytest.raises(ValueError, match="different feature shapes"):
        jax.jit(lambda a: kernels.nngp(arch, a, np.ones((2, 5))))(x)
    with pytest.raises(ValueError, match="x64 mode"):
        jax.jit(lambda a: kernels.nngp(arch, a, dtype="float64"))(x)
    with pytest.raises(ValueError, match="batch_size works on concrete inputs only"):
        jax.jit(lambda a: kernels.nngp(arch, a, batch_size=2))(x)
    with pytest.raises(ValueError, match="W_std must be a real scalar"):
        jax.jit(lambda w: kernels.nngp(iw.mlp(1, "relu", w), x))(np.ones(2, np.float32))
    # Values are not: a NaN input propagates instead of raising (documented).
    poisoned = x.copy()
    poisoned[0, 0] = np.nan
    assert np.isnan(np.asarray(jax.jit(lambda a: kernels.nngp(arch, a))(poisoned))[0]).all()
    with pytest.raises(ValueError, match="x1 contains 1 NaN"):
        kernels.nngp(arch, poisoned)


# ---- memory plan (issue 9, item 3) ----------------------------------------------


def test_a_kernel_too_large_for_memory_is_refused_before_computing():
    # The reproducer: 40000 inputs give a 6.4 GB NTK. With 1 GiB allowed it is refused up front.
    with pytest.raises(MemoryError, match=r"40000 x 40000 inputs: the result alone takes 5.96 GiB.*fewer inputs"):
        kernels.ntk(iw.mlp(2, "relu"), np.zeros((40000, 64), np.float32), max_memory_bytes=2**30)
    with pytest.raises(ValueError, match="max_memory_bytes"):
        kernels.ntk(iw.mlp(2, "relu"), np.zeros((4, 2)), max_memory_bytes=0)


def test_kernels_that_fit_only_in_blocks_are_computed_in_blocks(monkeypatch):
    arch = iw.mlp(2, "erf", W_STD, B_STD)
    x1 = _vectors(48, 3)
    whole = kernels.nngp_and_ntk(arch, x1, dtype="float64")
    blocks = []
    blocked = analytic._blocked
    monkeypatch.setattr(analytic, "_blocked", lambda *args: blocks.append(args[4]) or blocked(*args))
    # Room for the two 48 x 48 float64 results (36 KiB) and a little more, not for the whole program.
    limit = 2 * 48 * 48 * 8 + 20_000
    # (Blocks of x1 against x2 are covered by test_properties.py::test_batched_kernels_equal_unbatched.)
    result = kernels.nngp_and_ntk(arch, x1, dtype="float64", max_memory_bytes=limit)
    for a, b in zip(result, whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert len(blocks) == 1 and 1 <= blocks[0] < 48, blocks
    with pytest.raises(MemoryError, match="batch_size=40 rows takes .* use a smaller batch_size"):
        kernels.nngp_and_ntk(arch, x1, dtype="float64", batch_size=40, max_memory_bytes=limit)
    with pytest.raises(MemoryError, match="the result alone"):
        kernels.nngp_and_ntk(arch, x1, dtype="float64", max_memory_bytes=2 * 48 * 48 * 8 - 1)


def test_non_finite_kernels_are_reported_whole_and_in_blocks():
    # Unit-scale inputs (the scale rule lets them through) whose kernel overflows, W_std^2 x.x'/d ~ 1e40;
    # the check runs inside the program.
    x = np.full((6, 2), 1.0)
    arch = iw.mlp(1, "relu", W_std=1e20)
    with pytest.raises(FloatingPointError, match="the nngp and ntk kernel of 'mlp1-relu' has non-finite entries"):
        kernels.nngp_and_ntk(arch, x)
    with pytest.raises(FloatingPointError, match="the ntk kernel of 'mlp1-relu'"):
        kernels.ntk(arch, x, batch_size=4)
