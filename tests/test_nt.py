"""Every neural-tangents call the library relies on, each checked against an independent computation.

Normalizations established here (and relied on by the rest of the library):

* ``predict.gradient_descent_mse(K, y, learning_rate)`` integrates
  ``df/dt = -(learning_rate / y.size) K (f - y)``, i.e. gradient flow on
  ``losses.mse = 0.5 * mean((f - y)^2)``; ``t`` counts steps of size
  ``learning_rate``.
* ``predict.gradient_descent(loss, K, y, learning_rate)`` integrates
  ``df/dt = -learning_rate K dloss/df``; with ``momentum=m`` it integrates
  ``f'' = -K dloss/df - (1 - m) / sqrt(lr) f'`` in ``tau = sqrt(lr) t``, the
  continuous limit of heavy ball ``v <- m v - lr K chi; f <- f + v`` (one
  step advances ``tau`` by ``sqrt(lr)``).
* ``empirical_ntk_fn`` / ``monte_carlo_kernel_fn`` with ``trace_axes=(-1,)``
  average (not sum) over the output axis.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

import infinite_width as iw
import infinite_width.testing as iwt
from infinite_width import kernels, losses
from infinite_width._src.nt import nt, predict
from infinite_width._src.numerics import precision_scope
from infinite_width.architectures import (
    Activation,
    Architecture,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
)

W_STD, B_STD = 1.4, 0.3


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---- stax: closed-form kernels ---------------------------------------------


def test_dense_kernel_is_the_scaled_linear_kernel():
    arch = iw.mlp(0, "relu", W_STD, B_STD)
    x1, x2 = _rng().standard_normal((4, 5)), _rng(1).standard_normal((3, 5))
    nngp, ntk = kernels.nngp_and_ntk(arch, x1, x2, dtype="float64")
    expected = W_STD**2 * x1 @ x2.T / 5 + B_STD**2
    np.testing.assert_allclose(nngp, expected, rtol=1e-12)
    np.testing.assert_allclose(ntk, expected, rtol=1e-12)


def _arccos_J(k11, k12, k22, angle):
    return np.sqrt(k11 * k22) / (2 * np.pi) * (np.sin(angle) + (np.pi - angle) * np.cos(angle))


def _gelu(u):
    return 0.5 * u * (1.0 + scipy.special.erf(u / np.sqrt(2.0)))


def _dgelu(u):
    return scipy.stats.norm.cdf(u) + u * scipy.stats.norm.pdf(u)


def _closed_form_S_and_Sd(name, k11, k12, k22):
    """E[phi(u) phi(v)] and E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]])."""
    angle = np.arccos(np.clip(k12 / np.sqrt(k11 * k22), -1, 1))
    J, J_opposite = _arccos_J(k11, k12, k22, angle), _arccos_J(k11, k12, k22, np.pi - angle)
    damping = np.exp(-(k11 + k22) / 2)
    alpha = 0.1  # the library's leaky_relu slope
    if name == "relu":
        return J, (np.pi - angle) / (2 * np.pi)
    if name == "leaky_relu":  # phi(u) = relu(u) - alpha relu(-u)
        return (1 + alpha**2) * J - 2 * alpha * J_opposite, (
            (1 + alpha**2) * (np.pi - angle) + 2 * alpha * angle
        ) / (2 * np.pi)
    if name == "abs":  # |u| = relu(u) + relu(-u)
        return 2 * J + 2 * J_opposite, 1 - 2 * angle / np.pi
    if name == "erf":  # arcsine kernel (Williams 1997)
        denominator = (1 + 2 * k11) * (1 + 2 * k22)
        return 2 / np.pi * np.arcsin(2 * k12 / np.sqrt(denominator)), 4 / np.pi / np.sqrt(denominator - 4 * k12**2)
    if name == "identity":
        return k12, np.ones_like(k12)
    if name == "sin":
        return damping * np.sinh(k12), damping * np.cosh(k12)
    if name == "cos":
        return damping * np.cosh(k12), damping * np.sinh(k12)
    if name == "gelu":  # no elementary closed form: quadrature of a smooth integrand
        return (
            iwt.bivariate_gaussian_expectation(_gelu, _gelu, k11, k12, k22, order=80),
            iwt.bivariate_gaussian_expectation(_dgelu, _dgelu, k11, k12, k22, order=80),
        )
    raise KeyError(name)


@pytest.mark.parametrize("activation", iw.ACTIVATIONS)
def test_activation_kernels_match_closed_forms(activation):
    arch = iw.mlp(1, activation, W_STD, B_STD)
    x1, x2 = _rng().standard_normal((4, 3)), _rng(1).standard_normal((3, 3))
    first = lambda a, b: W_STD**2 * a @ b.T / 3 + B_STD**2  # noqa: E731
    k12 = first(x1, x2)
    k11, k22 = np.diag(first(x1, x1))[:, None], np.diag(first(x2, x2))[None, :]
    S, Sd = _closed_form_S_and_Sd(activation, k11, k12, k22)
    expected_nngp = W_STD**2 * S + B_STD**2
    expected_ntk = expected_nngp + W_STD**2 * Sd * k12
    nngp, ntk = kernels.nngp_and_ntk(arch, x1, x2, dtype="float64")
    np.testing.assert_allclose(nngp, expected_nngp, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ntk, expected_ntk, rtol=1e-7, atol=1e-9)


# A plain numpy CNN-GP/NTK: kernels over (image, pixel) pairs as 6-D arrays (N, H, W, N, H, W).


def _conv_same_3x3(K):
    n, h, w = K.shape[:3]
    padded = np.pad(K, ((0, 0), (1, 1), (1, 1), (0, 0), (1, 1), (1, 1)))
    total = np.zeros_like(K)
    for a in range(3):
        for b in range(3):
            total += padded[:, a : a + h, b : b + w, :, a : a + h, b : b + w]
    return total / 9  # zero padding counts in the fan-in


def _relu_6d(K, Theta):
    n, h, w = K.shape[:3]
    diag = np.einsum("nijnij->nij", K)
    k11, k22 = diag[:, :, :, None, None, None], diag[None, None, None]
    S, Sd = _closed_form_S_and_Sd("relu", k11, K, k22)
    return S, Theta * Sd


def _avg_pool_2x2(K):
    n, h, w = K.shape[:3]
    K = K.reshape(n, h // 2, 2, w // 2, 2, n, h // 2, 2, w // 2, 2)
    return K.mean(axis=(2, 4, 7, 9))


def _numpy_cnn_kernels(layers, x1, x2):
    x = np.concatenate([x1, x2])
    K = np.einsum("nijc,mklc->nijmkl", x, x) / x.shape[-1]
    Theta = np.zeros_like(K)
    pooled = False
    for layer in layers:
        if isinstance(layer, Conv):
            K = W_STD**2 * _conv_same_3x3(K) + B_STD**2
            Theta = K + W_STD**2 * _conv_same_3x3(Theta)
        elif isinstance(layer, Activation):
            K, Theta = _relu_6d(K, Theta)
        elif isinstance(layer, AvgPool):
            K, Theta = _avg_pool_2x2(K), _avg_pool_2x2(Theta)
        elif isinstance(layer, GlobalAvgPool):
            K, Theta = K.mean(axis=(1, 2, 4, 5)), Theta.mean(axis=(1, 2, 4, 5))
            pooled = True
        elif isinstance(layer, Flatten):  # then a dense readout: i.i.d. weights per pixel
            K, Theta = np.einsum("nijmij->nm", K) / np.prod(K.shape[1:3]), np.einsum("nijmij->nm", Theta) / np.prod(
                K.shape[1:3]
            )
            pooled = True
        elif isinstance(layer, Dense):
            assert pooled
            K = W_STD**2 * K + B_STD**2
            Theta = K + W_STD**2 * Theta
    n1 = x1.shape[0]
    return K[:n1, n1:], Theta[:n1, n1:]


CONV = Conv(None, (3, 3), (1, 1), "SAME", W_STD, B_STD)
CNN_ARCHITECTURES = {
    "conv-relu-conv-relu-flatten": (CONV, Activation("relu"), CONV, Activation("relu"), Flatten()),
    "conv-relu-avgpool-conv-relu-globalavgpool": (
        CONV,
        Activation("relu"),
        AvgPool((2, 2), (2, 2)),
        CONV,
        Activation("relu"),
        GlobalAvgPool(),
    ),
}


@pytest.mark.parametrize("name", sorted(CNN_ARCHITECTURES))
def test_conv_pool_flatten_kernels_match_numpy_cnn_gp(name):
    layers = CNN_ARCHITECTURES[name] + (Dense(1, W_STD, B_STD),)
    arch = Architecture(layers, name=name, input_kind="image")
    x1, x2 = _rng().standard_normal((2, 4, 4, 2)), _rng(1).standard_normal((3, 4, 4, 2))
    expected_nngp, expected_ntk = _numpy_cnn_kernels(layers, x1, x2)
    nngp, ntk = kernels.nngp_and_ntk(arch, x1, x2, dtype="float64")
    np.testing.assert_allclose(nngp, expected_nngp, rtol=1e-9)
    np.testing.assert_allclose(ntk, expected_ntk, rtol=1e-9)


# ---- nt.batch ----------------------------------------------------------------


def test_batch_equals_unbatched():
    kernel_fn = kernels.stax(iw.mlp(2, "erf", W_STD, B_STD))[2]
    x1, x2 = _rng().standard_normal((4, 3)), _rng(1).standard_normal((6, 3))
    with precision_scope("float64"):
        whole = kernel_fn(x1, x2, ("nngp", "ntk"))
        batched = nt.batch(kernel_fn, batch_size=2, store_on_device=False)(x1, x2, ("nngp", "ntk"))
        batched_self = nt.batch(kernel_fn, batch_size=2, store_on_device=False)(x2, None, "ntk")
        whole_self = kernel_fn(x2, None, "ntk")
    for b, w in zip(batched, whole):
        np.testing.assert_allclose(np.asarray(b), np.asarray(w), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(batched_self), np.asarray(whole_self), rtol=1e-12)


# ---- predict ---------------------------------------------------------------


@pytest.fixture(scope="module")
def regression():
    """NTK/NNGP blocks of a small regression problem, float64; y of shape (N, 2)."""
    arch = iw.mlp(2, "relu", W_STD, B_STD, out_dim=2)
    rng = _rng(5)
    x_train, x_test = rng.standard_normal((6, 3)), rng.standard_normal((3, 3))
    y_train = rng.standard_normal((6, 2))
    blocks = {}
    for name, (a, b) in {"tt": (x_train, x_train), "st": (x_test, x_train), "ss": (x_test, x_test)}.items():
        blocks["K" + name], blocks["T" + name] = kernels.nngp_and_ntk(arch, a, b, dtype="float64")
    return dict(arch=arch, x_train=x_train, x_test=x_test, y=y_train, **blocks)


def _expm_decay(K, rate_t):
    """V diag(exp(-rate_t * lambda)) V^T and V diag((1 - exp(-rate_t lambda)) / lambda) V^T."""
    lam, V = np.linalg.eigh(K)
    return (V * np.exp(-rate_t * lam)) @ V.T, (V * (-np.expm1(-rate_t * lam) / lam)) @ V.T


def test_gradient_descent_mse_equals_eigendecomposition(regression):
    T, Tst, y = regression["Ttt"], regression["Tst"], regression["y"]
    rng = _rng(6)
    f_train_0, f_test_0 = rng.standard_normal(y.shape), rng.standard_normal((3, 2))
    lr = 0.7
    with precision_scope("float64"):
        predict_fn = predict.gradient_descent_mse(T, y, learning_rate=lr)
        for t in (0.0, 3.0, 40.0):
            f_train, f_test = map(np.asarray, predict_fn(t, f_train_0, f_test_0, Tst))
            decay, integral = _expm_decay(T, lr * t / y.size)
            np.testing.assert_allclose(f_train, y + decay @ (f_train_0 - y), rtol=1e-9, atol=1e-10)
            np.testing.assert_allclose(f_test, f_test_0 + Tst @ integral @ (y - f_train_0), rtol=1e-9, atol=1e-10)
        # The normalization: df/dt = -lr K chi with chi = d losses.mse / df.
        h, t = 1e-4, 2.0
        f_plus, f_minus, f_t = (np.asarray(predict_fn(s, f_train_0, None, None)) for s in (t + h, t - h, t))
        chi = np.asarray(losses.chi("mse", jnp.asarray(f_t), jnp.asarray(y)))
        np.testing.assert_allclose((f_plus - f_minus) / (2 * h), -lr * T @ chi, rtol=1e-6)


def test_gradient_descent_mse_ensemble_matches_gp_posteriors(regression):
    r = regression
    K, Kst, Kss, T, Tst = r["Ktt"], r["Kst"], r["Kss"], r["Ttt"], r["Tst"]
    y = r["y"]
    with precision_scope("float64"):
        predict_fn = predict.gradient_descent_mse_ensemble(kernels.stax(r["arch"])[2], r["x_train"], y, learning_rate=0.5)
        nngp = predict_fn(None, r["x_test"], "nngp", compute_cov=True)
        ntk = predict_fn(None, r["x_test"], "ntk", compute_cov=True)
        ntk_mean_t = predict_fn(5.0, r["x_test"], "ntk")
        reference_t = predict.gradient_descent_mse(T, y, learning_rate=0.5)(5.0, np.zeros_like(y), np.zeros((3, 2)), Tst)
        nngp, ntk, ntk_mean_t, reference_t = jax.tree_util.tree_map(np.asarray, (nngp, ntk, ntk_mean_t, reference_t))
    # NNGP: the exact Gaussian-process posterior.
    np.testing.assert_allclose(nngp.mean, Kst @ np.linalg.solve(K, y), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(nngp.covariance, Kss - Kst @ np.linalg.solve(K, Kst.T), rtol=1e-6, atol=1e-9)
    # NTK at t = inf: mean Theta_* Theta^-1 y, covariance of Lee et al. (2019), eq. (16).
    A = Tst @ np.linalg.inv(T)
    np.testing.assert_allclose(ntk.mean, A @ y, rtol=1e-7, atol=1e-9)
    expected_cov = Kss + A @ K @ A.T - (A @ Kst.T + Kst @ A.T)
    np.testing.assert_allclose(ntk.covariance, expected_cov, rtol=1e-6, atol=1e-9)
    # NTK mean at finite time is gradient_descent_mse from f_0 = 0.
    np.testing.assert_allclose(ntk_mean_t, reference_t[1], rtol=1e-8, atol=1e-10)


def test_gradient_descent_mse_fails_under_jit_and_the_ensemble_works(regression):
    # The trap documented in infinite_width/_src/nt.py: if the first half stops raising, update it there.
    r = regression
    kernel_fn = kernels.stax(r["arch"])[2]

    def ensemble_mean(x_train):
        predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x_train, r["y"], learning_rate=0.5)
        return predict_fn(5.0, r["x_test"], "ntk")

    with precision_scope("float64"):
        with pytest.raises(jax.errors.UnexpectedTracerError):
            jax.jit(lambda T: predict.gradient_descent_mse(T, r["y"], learning_rate=0.5)(5.0))(r["Ttt"])
        jitted = jax.jit(ensemble_mean)(r["x_train"])
        eager = predict.gradient_descent_mse(r["Ttt"], r["y"], learning_rate=0.5)(
            5.0, np.zeros_like(r["y"]), np.zeros((3, 2)), r["Tst"]
        )[1]
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-7)  # eigh inside and outside jit


def _rk4(rhs, state, t_end, steps):
    dt = t_end / steps
    for _ in range(steps):
        k1 = rhs(state)
        k2 = rhs([s + dt / 2 * k for s, k in zip(state, k1)])
        k3 = rhs([s + dt / 2 * k for s, k in zip(state, k2)])
        k4 = rhs([s + dt * k for s, k in zip(state, k3)])
        state = [s + dt / 6 * (a + 2 * b + 2 * c + d) for s, a, b, c, d in zip(state, k1, k2, k3, k4)]
    return state


def _softmax_chi(f, y):
    """d cross_entropy / df in numpy: (softmax(f) - y) / N."""
    p = np.exp(f - f.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True) - y) / f.shape[0]


def test_gradient_descent_ode_mse_equals_closed_form(regression):
    T, Tst, y = regression["Ttt"], regression["Tst"], regression["y"]
    f_train_0, f_test_0 = _rng(7).standard_normal(y.shape), _rng(8).standard_normal((3, 2))
    with precision_scope("float64"):
        ode = predict.gradient_descent(losses.mse, T, y, learning_rate=0.7)(4.0, f_train_0, f_test_0, Tst)
        closed = predict.gradient_descent_mse(T, y, learning_rate=0.7)(4.0, f_train_0, f_test_0, Tst)
        ode, closed = jax.tree_util.tree_map(np.asarray, (ode, closed))
    for a, b in zip(ode, closed):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_gradient_descent_ode_cross_entropy_matches_rk4(regression):
    T, Tst = regression["Ttt"], regression["Tst"]
    labels = np.eye(2)[[0, 1, 1, 0, 1, 0]]
    f_train_0, f_test_0 = _rng(9).standard_normal(labels.shape), _rng(10).standard_normal((3, 2))
    lr, t = 2.0, 6.0
    with precision_scope("float64"):
        f_train, f_test = map(
            np.asarray,
            predict.gradient_descent(losses.cross_entropy, T, labels, learning_rate=lr)(t, f_train_0, f_test_0, Tst),
        )

    def rhs(state):
        chi = _softmax_chi(state[0], labels)
        return [-lr * T @ chi, -lr * Tst @ chi]

    reference = _rk4(rhs, [f_train_0, f_test_0], t, steps=2000)
    np.testing.assert_allclose(f_train, reference[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(f_test, reference[1], rtol=1e-6, atol=1e-8)
    assert np.max(np.abs(f_train - f_train_0)) > 0.1  # it actually trained


def test_gradient_descent_ode_momentum_matches_heavy_ball(regression):
    T, Tst, y = regression["Ttt"], regression["Tst"], regression["y"]
    f_train_0, f_test_0 = _rng(11).standard_normal(y.shape), _rng(12).standard_normal((3, 2))
    lr, m, steps = 1e-3, 0.9, 1000
    with precision_scope("float64"):
        f_train, f_test = map(
            np.asarray,
            predict.gradient_descent(losses.mse, T, y, learning_rate=lr, momentum=m)(
                float(steps), f_train_0, f_test_0, Tst
            ),
        )

    # (1) The stated ODE, integrated by RK4 in tau = sqrt(lr) * steps.
    damping = (1 - m) / np.sqrt(lr)

    def rhs(state):
        f, g, v, w = state
        chi = (f - y) / y.size
        return [v, w, -T @ chi - damping * v, -Tst @ chi - damping * w]

    zero = np.zeros_like
    reference = _rk4(rhs, [f_train_0, f_test_0, zero(f_train_0), zero(f_test_0)], np.sqrt(lr) * steps, 4000)
    np.testing.assert_allclose(f_train, reference[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(f_test, reference[1], rtol=1e-6, atol=1e-8)

    # (2) Discrete heavy ball for the same number of steps: close for a small rate.
    f, g = f_train_0.copy(), f_test_0.copy()
    v, w = zero(f), zero(g)
    for _ in range(steps):
        chi = (f - y) / y.size
        v, w = m * v - lr * T @ chi, m * w - lr * Tst @ chi
        f, g = f + v, g + w
    moved = np.max(np.abs(f_train - f_train_0))
    assert moved > 0.05
    assert np.max(np.abs(f - f_train)) < 0.05 * moved
    assert np.max(np.abs(g - f_test)) < 0.05 * np.max(np.abs(f_test - f_test_0))


# ---- empirical and Monte Carlo kernels ----------------------------------------


@pytest.fixture(scope="module")
def small_network():
    arch = iw.mlp(2, "erf", W_STD, B_STD, out_dim=3)
    init_fn, apply_fn, _ = kernels.stax(arch, 16)
    x1, x2 = _rng().standard_normal((4, 3)), _rng(1).standard_normal((2, 3))
    return init_fn, apply_fn, x1, x2


def _explicit_ntk(apply_fn, params, x1, x2):
    """(N1, N2, k, k) from jax.jacobian, contracted by hand."""
    flat = lambda x: np.concatenate(  # noqa: E731
        [np.asarray(j).reshape(x.shape[0], 3, -1) for j in jax.tree_util.tree_leaves(jax.jacobian(apply_fn)(params, x))],
        axis=-1,
    )
    return np.einsum("nap,mbp->nmab", flat(x1), flat(x2))


def test_empirical_ntk_implementations_agree_with_jacobian_contraction(small_network):
    init_fn, apply_fn, x1, x2 = small_network
    with precision_scope("float64"):
        _, params = init_fn(jax.random.PRNGKey(0), x1.shape)
        explicit = _explicit_ntk(apply_fn, params, x1, x2)
        for implementation in (1, 2):
            full = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=implementation)(x1, x2, params)
            traced = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=implementation)(x1, x2, params)
            np.testing.assert_allclose(np.asarray(full), explicit, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(
                np.asarray(traced), np.einsum("nmaa->nm", explicit) / 3, rtol=1e-10, atol=1e-12
            )


def test_monte_carlo_kernel_fn_is_the_mean_over_its_keys(small_network):
    init_fn, apply_fn, x1, x2 = small_network
    key, n_samples = jax.random.PRNGKey(3), 3
    with precision_scope("float64"):
        monte_carlo = nt.monte_carlo_kernel_fn(
            init_fn, apply_fn, key, n_samples=n_samples, device_count=0, implementation=2
        )
        nngp, ntk = monte_carlo(x1, x2, ("nngp", "ntk"))
        # neural-tangents' key schedule: split the running key per sample, then
        # split again into (init, dropout) keys.
        expected_nngp, expected_ntk, running = 0.0, 0.0, key
        for _ in range(n_samples):
            running, sample_key = jax.random.split(running)
            init_key, _ = jax.random.split(sample_key)
            _, params = init_fn(init_key, x1.shape)
            f1, f2 = np.asarray(apply_fn(params, x1)), np.asarray(apply_fn(params, x2))
            expected_nngp += f1 @ f2.T / 3 / n_samples
            expected_ntk += np.einsum("nmaa->nm", _explicit_ntk(apply_fn, params, x1, x2)) / 3 / n_samples
    np.testing.assert_allclose(np.asarray(nngp), expected_nngp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ntk), expected_ntk, rtol=1e-10, atol=1e-12)
