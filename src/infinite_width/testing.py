"""Property-testing tools for infinite-width kernels.

Hypothesis strategies that draw architectures and inputs, and checkers for
the identities every NNGP/NTK pair must satisfy. Each checker raises
``AssertionError`` with an informative message when the identity fails and
otherwise returns the measured quantity (an error or an eigenvalue ratio), so
that it can be used inside a hypothesis test or on its own:

```python
from hypothesis import given
import infinite_width.testing as iwt

@iwt.property_settings(max_examples=20)
@given(iwt.architectures().flatmap(lambda a: iwt.inputs(a).map(lambda x: (a, x))))
def test_psd(arch_and_x):
    arch, x = arch_and_x
    iwt.check_psd(infinite_width.kernels.ntk(arch, x, dtype="float64"))
```

Independent references (pure numpy, no neural-tangents):

* [`arccos_relu_kernels`][infinite_width.testing.arccos_relu_kernels]: the arc-cosine recursion of Cho & Saul (2009)
  for bias-and-weight-scaled ReLU MLPs, NNGP and NTK;
* [`bivariate_gaussian_expectation`][infinite_width.testing.bivariate_gaussian_expectation]: ``E[f(u) g(v)]`` for a
  centered Gaussian pair by 2-D Gauss-Hermite quadrature (accurate for smooth f, g).

This module needs ``hypothesis`` (the ``test`` extra); ``import
infinite_width`` does not import it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Tuple

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from infinite_width import kernels
from infinite_width.architectures import (
    ACTIVATIONS,
    Activation,
    Architecture,
    AvgPool,
    Conv,
    Dense,
    GlobalAvgPool,
    LayerNorm,
    mlp,
)

__all__ = [
    "property_settings",
    "architectures",
    "inputs",
    "architectures_and_inputs",
    "check_symmetric",
    "check_psd",
    "check_ntk_dominates_nngp",
    "arccos_relu_kernels",
    "bivariate_gaussian_expectation",
    "check_positive_homogeneity",
    "check_permutation_equivariance",
    "check_batched_equals_unbatched",
    "check_float32_matches_float64",
    "POSITIVELY_HOMOGENEOUS",
]

POSITIVELY_HOMOGENEOUS: Tuple[str, ...] = ("relu", "leaky_relu", "abs", "identity")
"""Activations with ``phi(a u) = a phi(u)`` for ``a > 0``."""


def property_settings(max_examples: int = 15, **overrides) -> settings:
    """Deterministic hypothesis settings for kernel properties.

    ``derandomize=True`` (the same examples on every run and machine),
    ``deadline=None`` (the first example of an architecture pays for its
    compilation), no example database. Use as a decorator.
    """
    options = dict(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
    options.update(overrides)
    return settings(**options)


# --------------------------------------------------------------------------
# Strategies.


def _scale(bounds: Tuple[float, float]):
    low, high = bounds
    # One decimal: repeated values reuse the compiled kernel of an architecture.
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 1))


@st.composite
def _conv_architecture(draw, activations, depths, W_std, b_std, out_dims, bias):
    activation = draw(st.sampled_from(activations))
    depth = draw(st.integers(*depths))
    layers = []
    for i in range(depth):
        w = draw(_scale(W_std))
        b = draw(_scale(b_std)) if bias else 0.0
        layers += [Conv(None, (3, 3), (1, 1), "SAME", w, b), Activation(activation)]
        if i == 0 and draw(st.booleans()):
            layers.append(AvgPool((2, 2), (2, 2)))
    out = draw(st.sampled_from(out_dims))
    w = draw(_scale(W_std))
    b = draw(_scale(b_std)) if bias else 0.0
    layers += [GlobalAvgPool(), Dense(out, w, b)]
    return Architecture(tuple(layers), name=f"conv{depth}-{activation}", input_kind="image")


def architectures(
    activations: Sequence[str] = ACTIVATIONS,
    depths: Tuple[int, int] = (0, 3),
    W_std: Tuple[float, float] = (0.5, 2.0),
    b_std: Tuple[float, float] = (0.0, 0.5),
    out_dims: Sequence[int] = (1, 3),
    bias: bool = True,
    conv: bool = False,
    conv_depths: Tuple[int, int] = (1, 2),
):
    """Strategy for [`Architecture`][infinite_width.Architecture] objects with closed-form kernels.

    MLPs ``mlp(depth, activation, W_std, b_std, out_dim)`` with depth in the
    closed interval ``depths`` and scales in the intervals ``W_std`` and
    ``b_std`` (rounded to one decimal); ``bias=False`` sets every ``b_std``
    to 0. With ``conv=True`` small convolutional networks (``conv_depths``
    3x3 SAME convolutions, optionally one 2x2 average pooling, global average
    pooling, dense readout; per-layer scales) are drawn too; they take NHWC
    images. (Each new architecture costs a compilation, about 0.3 s per
    convolution on a CPU: keep ``conv_depths`` small in tests.)
    """
    activations = tuple(activations)
    if not activations:
        raise ValueError("activations must not be empty")
    for name in activations:
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    if not (0 <= depths[0] <= depths[1]):
        raise ValueError(f"depths must be an interval (low, high) with 0 <= low <= high, got {depths!r}")
    if not (1 <= conv_depths[0] <= conv_depths[1]):
        raise ValueError(f"conv_depths must be an interval (low, high) with 1 <= low <= high, got {conv_depths!r}")
    for name, (low, high) in (("W_std", W_std), ("b_std", b_std)):
        if not (0 <= low <= high):
            raise ValueError(f"{name} must be an interval (low, high) with 0 <= low <= high, got {(low, high)!r}")
    zero = (0.0, 0.0)
    mlps = st.builds(
        mlp,
        depth=st.integers(*depths),
        activation=st.sampled_from(activations),
        W_std=_scale(W_std),
        b_std=_scale(b_std if bias else zero),
        out_dim=st.sampled_from(tuple(out_dims)),
    )
    if not conv:
        return mlps
    return st.one_of(mlps, _conv_architecture(activations, conv_depths, W_std, b_std, tuple(out_dims), bias))


@st.composite
def _input_array(draw, shape_prefix, feature_shape, scale):
    n = draw(shape_prefix)
    shape = (n,) + draw(feature_shape)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    # Each example gets its own norm: kernels must not only see unit inputs.
    row_scale = draw(st.lists(st.floats(scale[0], scale[1]), min_size=n, max_size=n))
    return x * np.asarray(row_scale).reshape((n,) + (1,) * (x.ndim - 1))


def inputs(
    arch: Architecture,
    n: Tuple[int, int] = (2, 6),
    d: Tuple[int, int] = (1, 6),
    image_size: Tuple[int, int] = (4, 5),
    channels: Tuple[int, int] = (1, 3),
    scale: Tuple[float, float] = (0.5, 2.0),
):
    """Strategy for input arrays of ``arch``: (N, d) vectors or (N, H, W, C) images.

    N, d, H = W and C are drawn from the closed intervals given. Entries are
    standard normal draws from a drawn seed, each example multiplied by its
    own factor in ``scale``, so inputs are finite, nonzero and of order one
    (bias-free arc-cosine kernels are 0/0 at x = 0).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be an interval (low, high) with 0 < low <= high, got {scale!r}")
    if arch.input_kind == "vector":
        feature = st.tuples(st.integers(*d))
    else:
        feature = st.builds(lambda s, c: (s, s, c), st.integers(*image_size), st.integers(*channels))
    return _input_array(st.integers(*n), feature, scale)


def architectures_and_inputs(arch_strategy=None, **input_options):
    """Strategy for ``(arch, x)`` pairs: an architecture and inputs it accepts."""
    arch_strategy = architectures() if arch_strategy is None else arch_strategy
    return arch_strategy.flatmap(lambda arch: st.tuples(st.just(arch), inputs(arch, **input_options)))


# --------------------------------------------------------------------------
# Checkers.


def _square(name, K) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise AssertionError(f"{name} has {int(np.sum(~np.isfinite(K)))} non-finite entries")
    return K


def _relative_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(actual - expected)) / scale)


def _assert_close(what: str, actual, expected, rtol: float) -> float:
    error = _relative_error(actual, expected)
    if not error <= rtol:
        index = np.unravel_index(np.argmax(np.abs(np.asarray(actual) - np.asarray(expected))), np.shape(expected))
        raise AssertionError(
            f"{what}: max |difference| / max |expected| = {error:.3g} > rtol = {rtol:g} "
            f"(worst entry {tuple(int(i) for i in index)}: {np.asarray(actual)[index]!r} vs "
            f"{np.asarray(expected)[index]!r})"
        )
    return error


def check_symmetric(K, rtol: float = 1e-6) -> float:
    """Assert ``K == K.T``; return ``max|K - K.T| / max|K|``. K of shape (N, N)."""
    K = _square("K", K)
    return _assert_close("kernel is not symmetric", K.T, K, rtol)


def check_psd(K, tol: float = 1e-6) -> float:
    """Assert ``K`` is positive semi-definite: ``lambda_min >= -tol * lambda_max``.

    K of shape (N, N) (symmetrised before the eigendecomposition). Returns
    ``lambda_min / lambda_max`` (0 for the zero matrix).
    """
    K = _square("K", K)
    eigenvalues = np.linalg.eigvalsh(0.5 * (K + K.T))
    largest = max(float(np.max(np.abs(eigenvalues))), 0.0)
    ratio = float(eigenvalues[0] / largest) if largest > 0 else 0.0
    if not ratio >= -tol:
        raise AssertionError(
            f"kernel is not positive semi-definite: lambda_min = {eigenvalues[0]:.3g}, "
            f"lambda_max = {eigenvalues[-1]:.3g}, ratio {ratio:.3g} < -{tol:g}"
        )
    return ratio


def check_ntk_dominates_nngp(arch: Architecture, x, tol: float = 1e-6) -> float:
    """Assert that ``NTK - NNGP`` is positive semi-definite on inputs ``x``; return its eigenvalue ratio.

    Why it holds: the NTK is a sum over parameters of ``df(x)/dp df(x')/dp``.
    The readout parameters alone contribute ``W_std^2 S^L + b_std^2 = K^{L+1}``,
    which is exactly the NNGP (for an MLP, the ``l = L+1`` term of
    ``NTK = sum_l B^l * (W_std^2 S^{l-1} + b_std^2)``, since ``B^{L+1} = 1``).
    The remaining terms ``B^l * (W_std^2 S^{l-1} + b_std^2)``, l <= L, are
    elementwise products of PSD matrices, hence PSD (Schur product theorem);
    in general they are the Gram matrix of the other parameters' gradients.
    So ``NTK >= NNGP`` in the Loewner order for every architecture whose last
    weighted layer is the readout, with equality when there are no hidden
    layers. Nothing stronger holds in general (e.g. ``NTK - c NNGP`` for
    ``c > 1`` can be indefinite).

    Computed in float64. ``tol`` is relative to ``lambda_max(NTK)``.
    """
    nngp, ntk = kernels.nngp_and_ntk(arch, x, dtype="float64")
    eigenvalues = np.linalg.eigvalsh(0.5 * ((ntk - nngp) + (ntk - nngp).T))
    largest = float(np.linalg.eigvalsh(ntk)[-1])
    ratio = float(eigenvalues[0] / largest) if largest > 0 else 0.0
    if not ratio >= -tol:
        raise AssertionError(
            f"NTK - NNGP of {arch.name!r} is not PSD: lambda_min(NTK - NNGP) = {eigenvalues[0]:.3g}, "
            f"lambda_max(NTK) = {largest:.3g}, ratio {ratio:.3g} < -{tol:g}"
        )
    return ratio


def arccos_relu_kernels(x1, x2=None, *, depth: int, W_std: float, b_std: float) -> Tuple[np.ndarray, np.ndarray]:
    """NNGP and NTK of ``mlp(depth, "relu", W_std, b_std)`` by the arc-cosine recursion, in numpy.

    Independent of neural-tangents (Cho & Saul 2009; Jacot et al. 2018), in
    NTK parametrization:

    ```text
    K^1 = W_std^2 x.x'/d + b_std^2,          Theta^1 = K^1
    cos t = K^l(x,x') / sqrt(K^l(x,x) K^l(x',x'))
    S^l  = sqrt(K^l(x,x) K^l(x',x')) (sin t + (pi - t) cos t) / (2 pi)
    Sd^l = (pi - t) / (2 pi)
    K^{l+1} = W_std^2 S^l + b_std^2,  Theta^{l+1} = K^{l+1} + W_std^2 Sd^l Theta^l
    ```

    x1 of shape (N1, d), x2 of shape (N2, d) (None: x1). Returns
    ``(K^{L+1}, Theta^{L+1})``, each (N1, N2), float64.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=np.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 and x2 must have shapes (N1, d) and (N2, d), got {x1.shape} and {x2.shape}")
    d = x1.shape[1]
    w2, b2 = float(W_std) ** 2, float(b_std) ** 2
    cross = w2 * x1 @ x2.T / d + b2
    diag1 = w2 * np.sum(x1 * x1, axis=1) / d + b2
    diag2 = w2 * np.sum(x2 * x2, axis=1) / d + b2
    theta = cross.copy()
    for _ in range(depth):
        norms = np.sqrt(np.outer(diag1, diag2))
        angle = np.arccos(np.clip(cross / norms, -1.0, 1.0))
        S = norms * (np.sin(angle) + (np.pi - angle) * np.cos(angle)) / (2 * np.pi)
        Sd = (np.pi - angle) / (2 * np.pi)
        cross = w2 * S + b2
        theta = cross + w2 * Sd * theta
        # On the diagonal t = 0: S^l(x, x) = K^l(x, x) / 2.
        diag1 = w2 * diag1 / 2 + b2
        diag2 = w2 * diag2 / 2 + b2
    return cross, theta


def bivariate_gaussian_expectation(
    f: Callable, g: Callable, k11, k12, k22, order: int = 64
) -> np.ndarray:
    """``E[f(u) g(v)]`` for ``(u, v) ~ N(0, [[k11, k12], [k12, k22]])``, by 2-D Gauss-Hermite quadrature.

    ``k11, k12, k22`` are arrays of one shape (broadcast); ``f, g`` are
    vectorised numpy functions. Exact for polynomials of degree < 2 * order,
    fast-converging for smooth functions; for kinks (ReLU, its step
    derivative) use closed forms instead. The covariance may be singular
    (``u = v`` on a kernel's diagonal).
    """
    k11, k12, k22 = np.broadcast_arrays(*(np.asarray(k, dtype=np.float64) for k in (k11, k12, k22)))
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    weights = weights / math.sqrt(2 * math.pi)  # probabilists' weights sum to sqrt(2 pi)
    # u = sqrt(k11) z1, v = rho sqrt(k22) z1 + sqrt(k22 (1 - rho^2)) z2.
    root11 = np.sqrt(k11)[..., None, None]
    rho = np.clip(k12 / np.sqrt(k11 * k22), -1.0, 1.0)[..., None, None]
    root22 = np.sqrt(k22)[..., None, None]
    z1, z2 = nodes[:, None], nodes[None, :]
    u = root11 * z1
    v = root22 * (rho * z1 + np.sqrt(1.0 - rho**2) * z2)
    return np.sum(weights[:, None] * weights[None, :] * f(u) * g(v), axis=(-2, -1))


def _require_homogeneous(arch: Architecture) -> None:
    weighted = [layer for layer in arch.layers if isinstance(layer, (Dense, Conv))]
    if any(layer.b_std != 0 for layer in weighted):
        raise ValueError(f"positive homogeneity needs a bias-free network; {arch.name!r} has b_std > 0")
    bad = [name for name in arch.activations if name not in POSITIVELY_HOMOGENEOUS]
    if bad:
        raise ValueError(
            f"positive homogeneity needs positively homogeneous activations {POSITIVELY_HOMOGENEOUS}, got {bad}"
        )
    if any(isinstance(layer, LayerNorm) for layer in arch.layers):
        raise ValueError("positive homogeneity does not hold with LayerNorm (it is homogeneous of degree 0)")


def check_positive_homogeneity(arch: Architecture, x, a: float, b: float, rtol: float = 1e-6) -> float:
    """Assert ``K(a x, b x) = a b K(x, x)`` for NNGP and NTK; return the largest relative error.

    Holds for bias-free networks whose activations are positively homogeneous
    of degree 1 ([`POSITIVELY_HOMOGENEOUS`][infinite_width.testing.POSITIVELY_HOMOGENEOUS]): every pre-activation is
    then homogeneous of degree 1 in its input, so ``K^l`` and ``S^l`` are of degree
    1 in each argument while ``Sd^l`` (hence ``B^l``) is of degree 0; both the
    NNGP and the NTK are of degree 1 in each argument. ``a, b > 0``. Float64.
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"a and b must be positive, got a={a!r}, b={b!r}")
    _require_homogeneous(arch)
    x = np.asarray(x, dtype=np.float64)
    nngp, ntk = kernels.nngp_and_ntk(arch, x, dtype="float64")
    nngp_ab, ntk_ab = kernels.nngp_and_ntk(arch, a * x, b * x, dtype="float64")
    return max(
        _assert_close(f"NNGP(a x, b x) != a b NNGP(x, x) for {arch.name!r}", nngp_ab, a * b * nngp, rtol),
        _assert_close(f"NTK(a x, b x) != a b NTK(x, x) for {arch.name!r}", ntk_ab, a * b * ntk, rtol),
    )


def check_permutation_equivariance(arch: Architecture, x, seed: int = 0, rtol: float = 1e-6) -> float:
    """Assert permutation symmetries of NNGP and NTK on x of shape (N, ...); return the largest error.

    * examples: ``K(x[p], x[q]) = K(x, x)[p][:, q]`` for random permutations
      p, q (the kernel is computed pairwise);
    * features: permuting the last axis of the inputs (vector features or
      image channels) leaves the kernel unchanged, because the first layer's
      weights are i.i.d. over it.

    Float64.
    """
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    p, q = rng.permutation(x.shape[0]), rng.permutation(x.shape[0])
    features = rng.permutation(x.shape[-1])
    nngp, ntk = kernels.nngp_and_ntk(arch, x, dtype="float64")
    nngp_pq, ntk_pq = kernels.nngp_and_ntk(arch, x[p], x[q], dtype="float64")
    nngp_f, ntk_f = kernels.nngp_and_ntk(arch, x[..., features], dtype="float64")
    return max(
        _assert_close("NNGP(x[p], x[q]) != NNGP(x)[p][:, q]", nngp_pq, nngp[np.ix_(p, q)], rtol),
        _assert_close("NTK(x[p], x[q]) != NTK(x)[p][:, q]", ntk_pq, ntk[np.ix_(p, q)], rtol),
        _assert_close("NNGP changed when input features were permuted", nngp_f, nngp, rtol),
        _assert_close("NTK changed when input features were permuted", ntk_f, ntk, rtol),
    )


def check_batched_equals_unbatched(
    arch: Architecture, x1, x2=None, batch_size: int = 2, rtol: float = 1e-7
) -> float:
    """Assert ``kernels.nngp_and_ntk(..., batch_size=b)`` equals the unbatched kernels; return the error.

    x1 of shape (N1, ...), x2 of shape (N2, ...) or None; N need not be a
    multiple of ``batch_size``. Float64. The tolerance is not 1e-15 because
    an example paired with itself in an off-diagonal block goes through the
    ``x1 != x2`` code path, where neural-tangents' arc-cosine (safe square
    root and clipping near ``cos t = 1``) differs from the diagonal path by
    about 1e-9 relative.
    """
    batched = kernels.nngp_and_ntk(arch, x1, x2, batch_size=batch_size, dtype="float64")
    whole = kernels.nngp_and_ntk(arch, x1, x2, dtype="float64")
    return max(
        _assert_close(f"batched (batch_size={batch_size}) NNGP != unbatched", batched[0], whole[0], rtol),
        _assert_close(f"batched (batch_size={batch_size}) NTK != unbatched", batched[1], whole[1], rtol),
    )


def check_float32_matches_float64(arch: Architecture, x, rtol: float = 1e-3) -> float:
    """Assert float32 kernels match float64 ones to ``rtol`` (relative to max |K|); return the error.

    The default allows for the arc-cosine's square-root sensitivity near
    ``cos t = 1`` (the diagonal), where float32 rounding of ``cos t`` moves
    ``t`` by about ``sqrt(1e-7)``.
    """
    single = kernels.nngp_and_ntk(arch, x, dtype="float32")
    double = kernels.nngp_and_ntk(arch, x, dtype="float64")
    return max(
        _assert_close("float32 NNGP != float64 NNGP", single[0], double[0], rtol),
        _assert_close("float32 NTK != float64 NTK", single[1], double[1], rtol),
    )
