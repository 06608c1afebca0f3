"""Exact special cases of the Adam-like infinite-width limit (docs/theory.md, section 6).

These closed forms pin the Monte Carlo engine down: they are the limit itself,
computed without sampling.

Case 6.2 (section 6, "the sign kernel"), SignSGD with one training point per step, scalar output. Then
``sign(chi u(x) v(x)) = sign(chi) sign(u(x)) sign(v(x))`` and every term of the
limit factorizes into two-dimensional Gaussian integrals, giving an asymmetric
*sign kernel* ([`sign_kernel`][infinite_width.limits.adam_limit.sign_kernel]):

```text
Theta_sign(xi, x) =   sum_{l=2}^{L} sw_l  E[u^l(xi) sign u^l(x)] E[v^l(xi) sign v^l(x)]
                    +  sw_1 E[u^1(xi) sign u^1(x)] (1/d) sum_b xi_b sign(x_b)
                    +  sum_{l=1}^{L} sb_l E[u^l(xi) sign u^l(x)]
                    +  sw_{L+1} E[v^{L+1}(xi) sign v^{L+1}(x)]  +  sb_{L+1}
```

and the exact dynamics ``f_{t+1}(xi) = f_t(xi) - lr sign(chi_t) Theta_sign(xi, x_{i_t})``
([`sign_dynamics`][infinite_width.limits.adam_limit.sign_dynamics],
[`sign_sgd_dynamics`][infinite_width.limits.adam_limit.sign_sgd_dynamics]). With ``u^l = phi'(h^l) z^l``
(``h^l ~ GP(0, K^l)`` and ``z^l ~ GP(0, sw_{l+1}^2 B^{l+1})`` independent) and ``v^l = phi(h^{l-1})``:

* ``E[u(xi) sign u(x)] = E[phi'(a) sign phi'(b)] * sqrt(2/pi) C(xi,x) / sqrt(C(x,x))``
  ([`derivative_sign_expectation`][infinite_width.limits.adam_limit.derivative_sign_expectation],
  [`linear_sign_expectation`][infinite_width.limits.adam_limit.linear_sign_expectation]);
* ``E[v(xi) sign v(x)] = E[phi(a) sign phi(b)]``
  ([`activation_sign_expectation`][infinite_width.limits.adam_limit.activation_sign_expectation]),

with ``(a, b) = (h(xi), h(x))``. For the piecewise-linear activations
(``relu``, ``leaky_relu``, ``abs``, ``identity``: ``phi(a) = p a`` for
``a > 0`` and ``q a`` for ``a < 0``) both integrals have closed forms, from
the orthant probability ``P(a > 0, b > 0) = 1/4 + arcsin(rho) / (2 pi)`` and
``E[a 1{a > 0, b > 0}] = sigma_a (1 + rho) / (2 sqrt(2 pi))``; with
``rho = corr(a, b)``, ``Pd = 1/4 + arcsin(rho)/(2 pi)``, ``Po = 1/2 - Pd``:

```text
E[phi'(a) sign phi'(b)] = (|p| + |q|) Pd + (p sgn q + q sgn p) Po
E[phi(a)  sign phi(b)]  = sigma_a / (2 sqrt(2 pi)) [(1 + rho)(|p| + |q|) - (1 - rho)(p sgn q + q sgn p)]
```

(``sign(0) = 0``, as ``jnp.sign`` and ``optax.scale_by_sign``: a ReLU unit
that is off at ``x`` does not move). Other activations use two-dimensional
quadrature ([`gaussian_expectation_2d`][infinite_width.limits.adam_limit.gaussian_expectation_2d]).

Case 6.3 (section 6, "normalized kernel descent"), readout only, sign, Gaussian readout features (last activation the
identity), any batch, several outputs
([`normalized_readout_dynamics`][infinite_width.limits.adam_limit.normalized_readout_dynamics]):

```text
f_{t+1,c}(xi) = f_{t,c}(xi) - lr [ sw sqrt(2/pi) (K chi_c)(xi) / sqrt(chi_c^T K chi_c)
                                   + sb sign(sum_i chi_{i,c}) ]
```

with ``K = S^L`` the covariance of the readout features: normalized kernel
gradient descent.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from infinite_width import losses
from infinite_width.architectures import ACTIVATIONS, Architecture, activation_fn
from infinite_width._src.checks import validate_inputs
from infinite_width._src.numerics import precision_scope
from infinite_width._src.rng import minibatch_indices
from infinite_width.kernels import layerwise
from infinite_width.predictions import Predictions

__all__ = [
    "gaussian_expectation_2d",
    "linear_sign_expectation",
    "derivative_sign_expectation",
    "activation_sign_expectation",
    "sign_kernel",
    "sign_dynamics",
    "sign_sgd_dynamics",
    "normalized_readout_dynamics",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# Slopes (p, q) of the piecewise-linear activations, ``phi(a) = p a`` for
# ``a > 0`` and ``q a`` for ``a < 0``, as in `infinite_width.architectures`.
# The tests check this table against `activation_fn` by quadrature.
_PIECEWISE_LINEAR_SLOPES = {"relu": (1.0, 0.0), "leaky_relu": (1.0, 0.1), "abs": (1.0, -1.0), "identity": (1.0, 1.0)}

# Activations whose phi or phi' is not smooth at 0 (a kink or a jump): the
# quadrature splits its integration ranges there.
_NONSMOOTH_AT_ZERO = ("relu", "leaky_relu", "abs")

_METHODS = ("auto", "closed_form", "quadrature")

# Integration ranges are +-_HALF_WIDTH standard deviations (Gaussian mass
# outside: 2e-19).
_HALF_WIDTH = 9.0

# Outer panel edges used for every integral (standard deviations of b).
_FIXED_EDGES = np.array([-_HALF_WIDTH, -6.0, -3.0, 0.0, 3.0, 6.0, _HALF_WIDTH])

# Offsets, in units of the conditional standard deviation, of the extra panel
# edges placed around the point where the inner integral crosses a break of f
# (it varies fast there when |corr| is close to 1).
_REFINE_OFFSETS = np.array([0.0, -0.25, 0.25, -0.5, 0.5, -1.0, 1.0, -2.0, 2.0, -4.0, 4.0, -8.0, 8.0])

# Points per call of the jitted activation functions.
_EVALUATION_CHUNK = 1 << 16

# Entries processed at once by the quadrature (bounds its memory).
_QUADRATURE_POINTS_PER_BLOCK = 2_000_000


def _trajectory(history: np.ndarray, n_train: int) -> Predictions:
    """Rows ``t = 0..steps`` of ``history`` (steps + 1, P[, k]) over [train; eval] points as [`Predictions`][infinite_width.Predictions]."""
    if history.ndim == 2:  # scalar output
        history = history[..., None]
    return Predictions.deterministic(np.arange(history.shape[0]), history[:, :n_train], history[:, n_train:])


# --------------------------------------------------------------------------
# Two-dimensional Gaussian integrals.


def _panel_nodes(edges: np.ndarray, order: int):
    """Gauss-Legendre nodes and weights on consecutive panels.

    ``edges`` (..., E) sorted along the last axis; returns nodes and weights
    of shape (..., (E - 1) * order). Empty panels get zero weight.
    """
    x, w = np.polynomial.legendre.leggauss(order)
    lo, hi = edges[..., :-1, None], edges[..., 1:, None]
    half = 0.5 * (hi - lo)
    nodes = (0.5 * (hi + lo) + half * x).reshape(*edges.shape[:-1], -1)
    weights = (half * w).reshape(*edges.shape[:-1], -1)
    return nodes, weights


def _std_normal_pdf(t):
    return np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def _as_float_array(name, value):
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be real numbers: {error}") from error
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or Inf entries")
    return array


def _check_order(order):
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 2:
        raise ValueError(f"quadrature order must be an integer >= 2, got {order!r}")
    return int(order)


def _covariance_parts(var_a, var_b, cov):
    """Broadcast and check a 2x2 covariance; return (sigma_a, sigma_b, rho) of the common shape."""
    var_a = _as_float_array("var_a", var_a)
    var_b = _as_float_array("var_b", var_b)
    cov = _as_float_array("cov", cov)
    try:
        var_a, var_b, cov = np.broadcast_arrays(var_a, var_b, cov)
    except ValueError as error:
        raise ValueError(f"var_a, var_b and cov have incompatible shapes: {error}") from error
    if np.any(var_a < 0) or np.any(var_b < 0):
        raise ValueError("variances var_a and var_b must be >= 0")
    product = var_a * var_b
    # Kernels in float32 can overshoot |cov| <= sqrt(var_a var_b) by rounding; allow a little.
    if np.any(cov * cov > product * (1 + 1e-4) + 1e-12):
        raise ValueError("cov^2 > var_a * var_b: not a covariance matrix")
    sigma_a, sigma_b = np.sqrt(var_a), np.sqrt(var_b)
    positive = product > 0
    rho = np.where(positive, cov / np.sqrt(np.where(positive, product, 1.0)), 0.0)
    return sigma_a, sigma_b, np.clip(rho, -1.0, 1.0)


def gaussian_expectation_2d(
    f: Callable,
    g: Callable,
    var_a,
    var_b,
    cov,
    order: int = 32,
    *,
    a_breaks: Sequence[float] = (),
    b_breaks: Sequence[float] = (),
) -> np.ndarray:
    """``E[f(a) g(b)]`` for ``(a, b) ~ N(0, [[var_a, cov], [cov, var_b]])``, by quadrature.

    Args:
      f: elementwise function of ``a`` taking and returning float64 numpy
        arrays of any shape.
      g: the same for ``b``.
      var_a: variance of ``a``, an array broadcastable with ``var_b`` and
        ``cov`` to a common shape S (one integral per entry).
      var_b: variance of ``b``.
      cov: covariance of ``a`` and ``b``.
      order: quadrature nodes per panel and dimension.
      a_breaks: points (in the units of ``a``) where ``f`` is not smooth
        (kinks, jumps such as those of ``sign``). The integration ranges are
        split there, since Gauss-Hermite quadrature converges only slowly on
        step functions.
      b_breaks: the same for ``g`` (in the units of ``b``).

    Returns:
      array of shape S.

    Method: with ``b = sigma_b t`` and ``a = sigma_a (rho t + sqrt(1 - rho^2) w)``
    for independent standard normals ``t, w``, the inner integral over ``w``
    is Gauss-Hermite (``order`` nodes) when ``f`` is smooth, and otherwise
    Gauss-Legendre on [-9, 9] split where ``a`` crosses a break of ``f``; the
    outer integral over ``t`` is Gauss-Legendre on [-9, 9] split at -6, -3,
    0, 3, 6 and at the breaks of ``g``, and refined around the points where the inner integral crosses a
    break of ``f`` (it varies on the scale ``sqrt(1 - rho^2) / |rho|`` there).
    The result is exact up to the quadrature error (about 1e-10 at the
    default order) and the 2e-19 Gaussian mass beyond 9 standard deviations.
    """
    order = _check_order(order)
    sigma_a, sigma_b, rho = _covariance_parts(var_a, var_b, cov)
    shape = rho.shape
    a_breaks = np.sort(_as_float_array("a_breaks", a_breaks).ravel())
    b_breaks = np.sort(_as_float_array("b_breaks", b_breaks).ravel())
    sigma_a, sigma_b, rho = (np.ravel(v) for v in (sigma_a, sigma_b, rho))
    outer_panels = b_breaks.size + _FIXED_EDGES.size + a_breaks.size * _REFINE_OFFSETS.size
    points_per_entry = outer_panels * order * (a_breaks.size + 1) * order
    block = max(1, _QUADRATURE_POINTS_PER_BLOCK // points_per_entry)
    out = np.empty(rho.size)
    for start in range(0, rho.size, block):
        part = slice(start, start + block)
        out[part] = _expectation_block(f, g, sigma_a[part], sigma_b[part], rho[part], order, a_breaks, b_breaks)
    return out.reshape(shape)


def _expectation_block(f, g, sigma_a, sigma_b, rho, order, a_breaks, b_breaks):
    """One block of [`gaussian_expectation_2d`][infinite_width.limits.adam_limit.gaussian_expectation_2d]; all arrays of shape (n,)."""
    R = _HALF_WIDTH
    n = rho.size
    c = np.sqrt(np.maximum(1.0 - rho * rho, 0.0))
    tiny = np.finfo(np.float64).tiny
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # Outer panels in t: the breaks of g (in units of sigma_b) and, around
        # each break of f, the t where a = sigma_a (rho t + c w) crosses it at w ~ 0.
        edges = [np.broadcast_to(_FIXED_EDGES, (n, _FIXED_EDGES.size))]
        edges.append(b_breaks[None, :] / np.maximum(sigma_b, tiny)[:, None])
        if a_breaks.size:
            rho_safe = np.where(np.abs(rho) > tiny, rho, tiny)
            standardized = a_breaks[None, :] / np.maximum(sigma_a, tiny)[:, None]
            centre = np.where(a_breaks[None, :] == 0, 0.0, standardized / rho_safe[:, None])
            scale = c / np.abs(rho_safe)
            edges.append((centre[:, :, None] + scale[:, None, None] * _REFINE_OFFSETS).reshape(n, -1))
        edges = np.sort(np.clip(np.nan_to_num(np.concatenate(edges, axis=1), nan=0.0), -R, R), axis=1)
        t, wt = _panel_nodes(edges, order)  # (n, T)
        wt = wt * _std_normal_pdf(t)
        g_values = g(sigma_b[:, None] * t)
        mean_a = (sigma_a * rho)[:, None] * t  # (n, T): E[a | t]
        spread = (sigma_a * c)[:, None, None]
        if a_breaks.size:
            # Inner panels in w, split where a crosses a break of f.
            w_breaks = (a_breaks[None, None, :] - mean_a[:, :, None]) / np.maximum(spread, tiny)
            ends = np.ones(w_breaks.shape[:2] + (1,)) * R
            w_edges = np.concatenate([-ends, np.clip(np.nan_to_num(w_breaks), -R, R), ends], axis=2)
            w, ww = _panel_nodes(w_edges, order)  # (n, T, W)
            ww = ww * _std_normal_pdf(w)
        else:
            x, weights = np.polynomial.hermite_e.hermegauss(order)
            w = x[None, None, :]
            ww = (weights / math.sqrt(2.0 * math.pi))[None, None, :]
        inner = np.sum(ww * f(mean_a[:, :, None] + spread * w), axis=2)
    return np.sum(wt * g_values * inner, axis=1)


def linear_sign_expectation(var_b, cov) -> np.ndarray:
    """``E[z(xi) sign z(x)] = sqrt(2/pi) cov / sqrt(var_b)`` for jointly Gaussian centered z.

    ``var_b = Var z(x)`` and ``cov = Cov(z(xi), z(x))``, broadcastable arrays;
    where ``var_b = 0`` (``z(x) = 0`` surely) the result is 0.
    """
    var_b = _as_float_array("var_b", var_b)
    cov = _as_float_array("cov", cov)
    if np.any(var_b < 0):
        raise ValueError("var_b must be >= 0")
    positive = var_b > 0
    return np.where(positive, _SQRT_2_OVER_PI * cov / np.sqrt(np.where(positive, var_b, 1.0)), 0.0)


@functools.lru_cache(maxsize=None)
def _elementwise(activation: str, derivative: bool) -> Callable:
    """phi (or phi', by forward-mode differentiation) of [`activation_fn`][infinite_width.architectures.activation_fn], on float64 numpy arrays."""
    phi = activation_fn(activation)
    if derivative:
        fn = jax.jit(lambda x: jax.jvp(phi, (x,), (jnp.ones_like(x),))[1])
    else:
        fn = jax.jit(phi)

    def evaluate(x):
        # Fixed-size chunks: one compilation however many points are asked for.
        x = np.asarray(x, dtype=np.float64)
        flat = x.ravel()
        padded = np.zeros(-(-flat.size // _EVALUATION_CHUNK) * _EVALUATION_CHUNK)
        padded[: flat.size] = flat
        with precision_scope("float64"):
            values = [np.asarray(fn(chunk)) for chunk in padded.reshape(-1, _EVALUATION_CHUNK)]
        return np.concatenate(values)[: flat.size].reshape(x.shape) if values else np.zeros(x.shape)

    return evaluate


def _sign_change_points(fn: Callable, half_range: float, grid: int = 20001, iterations: int = 64) -> np.ndarray:
    """Points in [-half_range, half_range] where sign(fn) changes, located by bisection."""
    x = np.linspace(-half_range, half_range, grid)
    s = np.sign(fn(x))
    idx = np.nonzero(s[:-1] != s[1:])[0]
    lo, hi = x[idx], x[idx + 1]
    s_lo = s[idx]
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        same = np.sign(fn(mid)) == s_lo
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    return np.unique(0.5 * (lo + hi))


def _check_method(method):
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")


def _sign_expectation(activation, var_a, var_b, cov, method, order, derivative):
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    _check_method(method)
    closed = activation in _PIECEWISE_LINEAR_SLOPES
    if method == "closed_form" and not closed:
        raise ValueError(
            f"no closed form for activation {activation!r}; closed forms exist for "
            f"{tuple(_PIECEWISE_LINEAR_SLOPES)}; use method='quadrature'"
        )
    if closed and method != "quadrature":
        sigma_a, _, rho = _covariance_parts(var_a, var_b, cov)
        p, q = _PIECEWISE_LINEAR_SLOPES[activation]
        same_side = abs(p) + abs(q)
        cross = p * np.sign(q) + q * np.sign(p)
        if derivative:
            both_positive = 0.25 + np.arcsin(rho) / (2.0 * math.pi)
            return same_side * both_positive + cross * (0.5 - both_positive)
        return sigma_a / (2.0 * math.sqrt(2.0 * math.pi)) * ((1.0 + rho) * same_side - (1.0 - rho) * cross)
    fn = _elementwise(activation, derivative)
    sigma_b_max = float(np.sqrt(np.max(_as_float_array("var_b", var_b))))
    b_breaks = _sign_change_points(fn, _HALF_WIDTH * sigma_b_max) if sigma_b_max > 0 else ()
    a_breaks = (0.0,) if activation in _NONSMOOTH_AT_ZERO else ()

    def sign_of_fn(x):
        return np.sign(fn(x))

    return gaussian_expectation_2d(fn, sign_of_fn, var_a, var_b, cov, order, a_breaks=a_breaks, b_breaks=b_breaks)


def derivative_sign_expectation(
    activation: str, var_a, var_b, cov, *, method: str = "auto", order: int = 32
) -> np.ndarray:
    """``E[phi'(a) sign phi'(b)]`` for ``(a, b) ~ N(0, [[var_a, cov], [cov, var_b]])``.

    ``var_a, var_b, cov`` broadcast to a common shape S; returns shape S.
    ``method``: ``"auto"`` (closed form for relu, leaky_relu, abs, identity;
    quadrature otherwise), ``"closed_form"`` or ``"quadrature"`` (``order``
    nodes per panel, [`gaussian_expectation_2d`][infinite_width.limits.adam_limit.gaussian_expectation_2d]).
    """
    return _sign_expectation(activation, var_a, var_b, cov, method, order, derivative=True)


def activation_sign_expectation(
    activation: str, var_a, var_b, cov, *, method: str = "auto", order: int = 32
) -> np.ndarray:
    """``E[phi(a) sign phi(b)]`` for ``(a, b) ~ N(0, [[var_a, cov], [cov, var_b]])``.

    Shapes and ``method`` as in
    [`derivative_sign_expectation`][infinite_width.limits.adam_limit.derivative_sign_expectation].
    """
    return _sign_expectation(activation, var_a, var_b, cov, method, order, derivative=False)


# --------------------------------------------------------------------------
# Case 6.2: the sign kernel.

def _require_mlp(arch, *, scalar_output: bool):
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if not arch.is_mlp:
        raise ValueError(
            f"the exact cases are defined for MLPs (alternating Dense/Activation layers), not for {arch.name!r}"
        )
    if arch.depth < 1:
        raise ValueError("the exact cases need at least one hidden layer (depth >= 1)")
    if scalar_output and arch.out_dim != 1:
        raise ValueError(
            f"the sign kernel is exact for a scalar output only (out_dim = 1), got out_dim = {arch.out_dim}: "
            "with several outputs the hidden-layer gradient sums over outputs and no longer factorizes"
        )


def _check_readout_only(readout_only):
    if not isinstance(readout_only, (bool, np.bool_)):
        raise TypeError(f"readout_only must be True or False, got {readout_only!r}")


def _layer_blocks(kernel: np.ndarray, n_eval: int):
    """Split a kernel over [eval; train] points into (var_eval (Ne, 1), var_train (1, Nt), cov (Ne, Nt))."""
    diag = np.diag(kernel).astype(np.float64)
    return diag[:n_eval, None], diag[None, n_eval:], kernel[:n_eval, n_eval:].astype(np.float64)


def sign_kernel(
    arch: Architecture,
    x_eval,
    x_train,
    *,
    readout_only: bool = False,
    method: str = "auto",
    quadrature_order: int = 32,
    dtype: str = "float64",
    progress: bool = False,
) -> np.ndarray:
    """The sign kernel ``Theta_sign(xi, x)`` of SignSGD with one training point per step, shape (N_eval, N_train).

    Exact infinite-width dynamics (docs/theory.md, section 6, the sign kernel) of an MLP
    with scalar output trained by ``dp = -lr * r_grp * sign(G_p)`` on one
    training point ``x_{i_t}`` per step:

    ```text
    f_{t+1}(xi) = f_t(xi) - lr * sign(chi_t) * Theta_sign(xi, x_{i_t})
    ```

    Args:
      arch: an MLP ([`infinite_width.mlp`][]) with ``depth >= 1`` and
        ``out_dim = 1``, any activation of [`infinite_width.ACTIVATIONS`][].
      x_eval: (N_eval, d) points where the function moves (first argument).
      x_train: (N_train, d) training points whose sign drives the step
        (second argument). The kernel is not symmetric.
      readout_only: train the readout weights and output bias only
        (default: every parameter group).
      method: ``"auto"``: closed forms for relu, leaky_relu, abs and identity,
        quadrature otherwise; ``"quadrature"`` forces quadrature.
      quadrature_order: nodes per panel and dimension of the quadrature.
      dtype: precision of the layer kernels (``"float64"`` or ``"float32"``);
        the Gaussian integrals are always computed in float64.
      progress: show a progress bar over layers.

    Returns:
      numpy float64 array (N_eval, N_train). Its diagonal ``Theta_sign(x, x)``
      is positive.
    """
    _require_mlp(arch, scalar_output=True)
    _check_readout_only(readout_only)
    if method not in ("auto", "quadrature"):
        raise ValueError(f"method must be 'auto' or 'quadrature', got {method!r}")
    order = _check_order(quadrature_order)
    with precision_scope(dtype) as np_dtype:
        x_eval, x_train = validate_inputs(arch, x_eval, x_train, np_dtype, names=("x_eval", "x_train"))
    x_eval = x_eval.astype(np.float64)
    x_train = x_train.astype(np.float64)
    n_eval = x_eval.shape[0]
    kernels = layerwise(arch, np.concatenate([x_eval, x_train]), dtype=dtype)
    depth = kernels.depth
    sw, sb = kernels.W_std, kernels.b_std
    activation = arch.activations
    for l in range(1, depth + 1):
        bad = np.nonzero(np.diag(kernels.K[l - 1])[n_eval:] <= 0)[0]
        if bad.size:
            raise ValueError(
                f"training point {int(bad[0])} has zero pre-activation variance at layer {l} "
                "(a zero input with b_std = 0): the signs of its features are undefined"
            )

    def activation_term(l):  # E[phi(h^l(xi)) sign phi(h^l(x))], h^l ~ GP(0, K^l)
        blocks = _layer_blocks(kernels.K[l - 1], n_eval)
        return activation_sign_expectation(activation[l - 1], *blocks, method=method, order=order)

    theta = sw[depth] * activation_term(depth) + sb[depth]
    if readout_only:
        return theta
    input_term = x_eval @ np.sign(x_train).T / x_eval.shape[1]  # (1/d) sum_b xi_b sign(x_b)
    for l in tqdm(range(1, depth + 1), desc="sign kernel layers", disable=not progress):
        blocks = _layer_blocks(kernels.K[l - 1], n_eval)
        derivative = derivative_sign_expectation(activation[l - 1], *blocks, method=method, order=order)
        # z^l ~ GP(0, sw_{l+1}^2 B^{l+1}); sw[l] is layer l+1's and B[l] is B^{l+1}.
        _, var_z, cov_z = _layer_blocks(sw[l] ** 2 * kernels.B[l], n_eval)
        u_sign = derivative * linear_sign_expectation(var_z, cov_z)  # E[u^l(xi) sign u^l(x)]
        theta = theta + sb[l - 1] * u_sign
        theta = theta + sw[l - 1] * u_sign * (input_term if l == 1 else activation_term(l - 1))
    return theta


# --------------------------------------------------------------------------
# Dynamics.


def _check_lr(lr):
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate must be a finite number > 0, got {lr!r}")
    return float(lr)


def _check_loss(loss, n_outputs):
    losses.get(loss)
    if loss == "cross_entropy" and n_outputs < 2:
        raise ValueError("cross_entropy needs at least 2 outputs (with one logit its gradient is 0); use loss='mse'")


def _check_matrix(name, value, shape):
    array = _as_float_array(name, value)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return array


def _initial(name, f0, shape):
    return np.zeros(shape) if f0 is None else _check_matrix(name, f0, shape)


def _scalar_targets(y_train, n_train):
    y = _as_float_array("y_train", y_train)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n_train,):
        raise ValueError(f"y_train must have shape ({n_train},) or ({n_train}, 1) for a scalar output, got {y.shape}")
    return y


def _train_indices(train_indices, n_train):
    try:
        idx = np.asarray(train_indices)
    except Exception as error:
        raise TypeError(f"train_indices cannot be converted to an array: {error}") from error
    if idx.ndim == 2 and idx.shape[1] == 1:  # minibatch_indices(key, n, 1, steps)
        idx = idx[:, 0]
    if idx.ndim != 1:
        raise ValueError(
            f"train_indices must have shape (steps,) or (steps, 1): one training point per step, got {idx.shape}"
        )
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"train_indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_train):
        raise ValueError(f"train_indices must lie in [0, {n_train}), got range [{idx.min()}, {idx.max()}]")
    return idx.astype(np.int64)


def sign_dynamics(
    theta_train_train,
    theta_eval_train,
    y_train,
    lr: float,
    train_indices,
    *,
    loss: str = "mse",
    f0_train=None,
    f0_eval=None,
    dtype: str = "float64",
) -> Predictions:
    """Run ``f_{t+1}(xi) = f_t(xi) - lr sign(chi_t) Theta_sign(xi, x_{i_t})`` exactly.

    Args:
      theta_train_train: (N_train, N_train) sign kernel, row = point that
        moves, column = training point of the step ([`sign_kernel`][infinite_width.limits.adam_limit.sign_kernel]).
      theta_eval_train: (N_eval, N_train) sign kernel on evaluation points.
      y_train: (N_train,) or (N_train, 1) targets.
      lr: learning rate.
      train_indices: (steps,) or (steps, 1) integers, the training point of
        each step (e.g. the minibatch order of batch size 1 that
        [`infinite_width.finite.train`][] draws from the same key).
      loss: a loss of [`infinite_width.losses`][]; ``chi_t`` is its gradient
        at ``f_t(x_{i_t})`` (for ``"mse"``, ``sign(chi) = sign(f - y)``).
      f0_train: (N_train,) initial predictions; zeros (the centered model) by default.
      f0_eval: (N_eval,) initial predictions; zeros by default.
      dtype: ``"float64"`` or ``"float32"``.

    Returns:
      [`Predictions`][infinite_width.Predictions] at steps ``0..steps`` with
      ``train`` (1, steps + 1, N_train, 1) and ``test`` (1, steps + 1, N_eval, 1)
      (the evaluation points).
    """
    theta_tt = _as_float_array("theta_train_train", theta_train_train)
    if theta_tt.ndim != 2 or theta_tt.shape[0] != theta_tt.shape[1]:
        raise ValueError(f"theta_train_train must be a square (N_train, N_train) matrix, got shape {theta_tt.shape}")
    n_train = theta_tt.shape[0]
    theta_et = _as_float_array("theta_eval_train", theta_eval_train)
    if theta_et.ndim != 2 or theta_et.shape[1] != n_train:
        raise ValueError(f"theta_eval_train must have shape (N_eval, {n_train}), got {theta_et.shape}")
    y = _scalar_targets(y_train, n_train)
    lr = _check_lr(lr)
    idx = _train_indices(train_indices, n_train)
    _check_loss(loss, 1)
    f_train = _initial("f0_train", f0_train, (n_train,))
    f_eval = _initial("f0_eval", f0_eval, (theta_et.shape[0],))
    with precision_scope(dtype) as np_dtype:
        theta_all = jnp.asarray(np.concatenate([theta_tt, theta_et]), np_dtype)
        f_all = jnp.asarray(np.concatenate([f_train, f_eval]), np_dtype)
        history = _sign_scan(loss)(theta_all, f_all, jnp.asarray(y, np_dtype), jnp.asarray(idx), np_dtype(lr))
        history = np.concatenate([np.asarray(f_all)[None], np.asarray(history)])
    return _trajectory(history, n_train)


@functools.lru_cache(maxsize=None)
def _sign_scan(loss: str):
    def run(theta_all, f_all, y, idx, lr):
        # Rows of theta_all and f_all: training points first, then evaluation points.
        def step(f, i):
            chi = losses.chi(loss, f[i][None, None], y[i][None, None])[0, 0]
            f = f - lr * jnp.sign(chi) * theta_all[:, i]
            return f, f

        return jax.lax.scan(step, f_all, idx)[1]

    return jax.jit(run)


def sign_sgd_dynamics(
    arch: Architecture,
    x_train,
    y_train,
    x_eval,
    lr: float,
    train_indices,
    *,
    readout_only: bool = False,
    loss: str = "mse",
    f0_train=None,
    f0_eval=None,
    method: str = "auto",
    quadrature_order: int = 32,
    dtype: str = "float64",
) -> Predictions:
    """Exact infinite-width SignSGD, one training point per step: [`sign_kernel`][infinite_width.limits.adam_limit.sign_kernel] then [`sign_dynamics`][infinite_width.limits.adam_limit.sign_dynamics].

    Shapes: ``x_train`` (N_train, d), ``y_train`` (N_train,) or (N_train, 1),
    ``x_eval`` (N_eval, d), ``train_indices`` (steps,) or (steps, 1). Returns
    [`Predictions`][infinite_width.Predictions] with ``train`` (1, steps + 1, N_train, 1)
    and ``test`` (1, steps + 1, N_eval, 1).
    """
    with precision_scope(dtype) as np_dtype:
        x_train, x_eval = validate_inputs(arch, x_train, x_eval, np_dtype, names=("x_train", "x_eval"))
    theta = sign_kernel(
        arch,
        np.concatenate([x_train, x_eval]),
        x_train,
        readout_only=readout_only,
        method=method,
        quadrature_order=quadrature_order,
        dtype=dtype,
    )
    n_train = x_train.shape[0]
    return sign_dynamics(
        theta[:n_train],
        theta[n_train:],
        y_train,
        lr,
        train_indices,
        loss=loss,
        f0_train=f0_train,
        f0_eval=f0_eval,
        dtype=dtype,
    )


# --------------------------------------------------------------------------
# Case 6.3: normalized readout dynamics.


def normalized_readout_dynamics(
    arch: Architecture,
    x_train,
    y_train,
    x_eval,
    lr: float,
    steps: int,
    *,
    loss: str = "mse",
    batch_indices=None,
    f0_train=None,
    f0_eval=None,
    dtype: str = "float64",
) -> Predictions:
    """Exact readout-only sign dynamics with Gaussian readout features (docs/theory.md, section 6).

    Only the readout weights and the output bias train, by sign updates
    (Adam with b1 = b2 = 0, eps = 0); with the last activation the identity
    the readout features ``v = h^L ~ GP(0, K)``, ``K = S^L``, are Gaussian and
    for every output c:

    ```text
    f_{t+1,c}(xi) = f_{t,c}(xi) - lr [ sw sqrt(2/pi) (K_{xi,B} chi_c) / sqrt(chi_c^T K_{B,B} chi_c)
                                       + sb sign(sum_{i in B} chi_{i,c}) ]
    ```

    where ``B`` is the step's batch and ``chi = d loss / d f`` on it. A zero
    ``chi_c`` (or ``chi_c^T K chi_c = 0``) moves nothing.

    Args:
      arch: MLP with ``depth >= 1`` whose last activation is ``"identity"``
        (earlier layers may use any activation), ``out_dim = k``.
      x_train: (N_train, d) training inputs.
      y_train: (N_train, k) targets.
      x_eval: (N_eval, d) evaluation inputs.
      lr: learning rate.
      steps: number of steps.
      loss: ``"mse"`` or ``"cross_entropy"`` ([`infinite_width.losses`][]).
      batch_indices: (steps, batch) training rows per step (e.g. the order
        [`infinite_width.finite.train`][] draws from the same key); None means
        full batch.
      f0_train: (N_train, k) initial predictions; zeros (the centered model) by default.
      f0_eval: (N_eval, k) initial predictions; zeros by default.
      dtype: precision of kernels and dynamics.

    Returns:
      [`Predictions`][infinite_width.Predictions] with ``train`` (1, steps + 1, N_train, k)
      and ``test`` (1, steps + 1, N_eval, k).
    """
    _require_mlp(arch, scalar_output=False)
    if arch.activations[-1] != "identity":
        raise ValueError(
            f"normalized readout dynamics are exact only for Gaussian readout features, i.e. the last "
            f"activation 'identity' (got {arch.activations[-1]!r}): E[v sign(chi.v)] = sqrt(2/pi) K chi / "
            "sqrt(chi K chi) needs v Gaussian; use the Monte Carlo engine (or sign_kernel for one point per step)"
        )
    with precision_scope(dtype) as np_dtype:
        x_train, x_eval = validate_inputs(arch, x_train, x_eval, np_dtype, names=("x_train", "x_eval"))
    n_train, n_eval, k = x_train.shape[0], x_eval.shape[0], arch.out_dim
    y = _check_matrix("y_train", y_train, (n_train, k))
    lr = _check_lr(lr)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    _check_loss(loss, k)
    if batch_indices is None:
        batches = minibatch_indices(None, n_train, None, int(steps))
    else:
        batches = np.asarray(batch_indices)
        if batches.ndim != 2 or batches.shape[0] != steps or batches.shape[1] < 1:
            raise ValueError(f"batch_indices must have shape (steps={steps}, batch), got {batches.shape}")
        if not np.issubdtype(batches.dtype, np.integer):
            raise TypeError(f"batch_indices must be integers, got dtype {batches.dtype}")
        if batches.size and (batches.min() < 0 or batches.max() >= n_train):
            raise ValueError(f"batch_indices must lie in [0, {n_train})")
    f_train = _initial("f0_train", f0_train, (n_train, k))
    f_eval = _initial("f0_eval", f0_eval, (n_eval, k))
    kernels = layerwise(arch, np.concatenate([x_train, x_eval]), dtype=dtype)
    features = kernels.S[-1]  # Cov of v^{L+1} = h^L on [train; eval], (P, P)
    with precision_scope(dtype) as np_dtype:
        f_all = jnp.asarray(np.concatenate([f_train, f_eval]), np_dtype)
        history = _readout_scan(loss)(
            jnp.asarray(features[:, :n_train], np_dtype),
            f_all,
            jnp.asarray(y, np_dtype),
            jnp.asarray(batches.astype(np.int64)),
            np_dtype(lr),
            np_dtype(kernels.W_std[-1]),
            np_dtype(kernels.b_std[-1]),
        )
        history = np.concatenate([np.asarray(f_all)[None], np.asarray(history)])
    return _trajectory(history, n_train)


@functools.lru_cache(maxsize=None)
def _readout_scan(loss: str):
    def run(k_all_train, f_all, y, batches, lr, w_std, b_std):
        def step(f, rows):
            chi = losses.chi(loss, f[rows], y[rows])  # (B, k)
            k_batch = k_all_train[:, rows]  # (P, B)
            numerator = k_batch @ chi  # (P, k): Cov(v(xi), g_c)
            variance = jnp.sum(chi * numerator[rows], axis=0)  # (k,): Var g_c = chi_c^T K_BB chi_c
            # g_c = 0 surely when its variance vanishes (up to rounding): sign 0, no move.
            scale = jnp.sum(chi * chi, axis=0) * jnp.max(jnp.diagonal(k_batch[rows])) * 1e3 * jnp.finfo(f.dtype).eps
            moving = variance > scale
            direction = jnp.where(moving, numerator / jnp.sqrt(jnp.where(moving, variance, 1.0)), 0.0)
            # Likewise sum_i chi_ic is exactly 0 in common ties (a class-balanced batch at f = 0
            # under cross-entropy); rounding must not turn it into +-1.
            total = jnp.sum(chi, axis=0)
            tie = jnp.abs(total) <= 4 * rows.size * jnp.finfo(f.dtype).eps * jnp.sum(jnp.abs(chi), axis=0)
            update = w_std * _SQRT_2_OVER_PI * direction + b_std * jnp.where(tie, 0.0, jnp.sign(total))
            f = f - lr * update
            return f, f

        return jax.lax.scan(step, f_all, batches)[1]

    return jax.jit(run)
