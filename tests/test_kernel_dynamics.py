"""Kernel dynamics against independent computations: explicit loops, matrix exponentials, an ODE solver."""

import numpy as np
import optax
import pytest
import scipy.integrate
import scipy.linalg

import infinite_width as iw
from infinite_width import datasets, kernels, optim
from infinite_width.limits import kernel_dynamics

N, NT, K_OUT = 12, 5, 3


def _kernels(seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(N + NT, 20))
    k_all = features @ features[:N].T / 20 + 0.1
    return k_all[:N], k_all[N:], rng.normal(size=(N, K_OUT)), rng


def _softmax_ce_grad(f, y):
    # d/df of mean_i(-sum_c y_ic log softmax(f_i)_c)
    p = np.exp(f - f.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (p - y) / f.shape[0]


def _loop(k_tt, k_te, y, lr, total, grad, beta=0.0, batches=None, f0=None, f0_test=None):
    """Function-space (momentum) gradient descent written out step by step."""
    f = np.zeros_like(y) if f0 is None else f0.copy()
    g = np.zeros((NT, y.shape[1])) if f0_test is None else f0_test.copy()
    u, u_test = np.zeros_like(f), np.zeros_like(g)
    history = [(f.copy(), g.copy())]
    for step in range(total):
        rows = np.arange(N) if batches is None else batches[step]
        chi = grad(f[rows], y[rows])
        u = beta * u + k_tt[:, rows] @ chi
        u_test = beta * u_test + k_te[:, rows] @ chi
        f, g = f - lr * u, g - lr * u_test
        history.append((f.copy(), g.copy()))
    return history


def _mse_grad(f, y):
    return (f - y) / f.size


def _arrays(predictions):
    """(train (R, N, k), test (R, Nt, k)) of a deterministic run's Predictions."""
    assert predictions.seeds == 1 and not predictions.diverged.any()
    return predictions.train[0], predictions.test[0]


@pytest.mark.parametrize("lr_fraction", [0.3, 1.7])  # 1.7: 1 - a*lam < 0 for the top modes, still stable
def test_mse_closed_form_matches_explicit_loop(lr_fraction):
    k_tt, k_te, y, rng = _kernels()
    lr = lr_fraction * N * K_OUT / np.linalg.eigvalsh(k_tt)[-1]
    f0, f0_test = rng.normal(size=(N, K_OUT)), rng.normal(size=(NT, K_OUT))
    steps = np.array([0, 1, 4, 17, 40])
    train, test = _arrays(kernel_dynamics.mse_closed_form(k_tt, k_te, y, lr, steps, f0_train=f0, f0_test=f0_test))
    history = _loop(k_tt, k_te, y, lr, 40, _mse_grad, f0=f0, f0_test=f0_test)
    for r, step in enumerate(steps):
        np.testing.assert_allclose(train[r], history[step][0], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(test[r], history[step][1], rtol=1e-9, atol=1e-10)


def test_closed_form_handles_a_singular_kernel():
    k_tt, k_te, y, _ = _kernels()
    v = np.linalg.eigh(k_tt)[1][:, -2:]
    low_rank = v @ np.diag([1.0, 2.0]) @ v.T  # rank 2: zero eigenvalues take the a*t limit
    k_te_low = k_te @ v @ v.T
    lr = 0.5 * N * K_OUT / 2.0
    train, test = _arrays(kernel_dynamics.mse_closed_form(low_rank, k_te_low, y, lr, [0, 3, 9]))
    history = _loop(low_rank, k_te_low, y, lr, 9, _mse_grad)
    np.testing.assert_allclose(train[2], history[9][0], atol=1e-10)
    np.testing.assert_allclose(test[1], history[3][1], atol=1e-10)


@pytest.mark.parametrize(
    "loss, beta, batch", [("mse", 0.0, None), ("cross_entropy", 0.0, None), ("mse", 0.8, None), ("cross_entropy", 0.5, 4)]
)
def test_kernel_descent_matches_explicit_loop(loss, beta, batch):
    k_tt, k_te, y, rng = _kernels(1)
    if loss == "cross_entropy":
        y = np.eye(K_OUT)[rng.integers(0, K_OUT, size=N)]
    grad = _mse_grad if loss == "mse" else _softmax_ce_grad
    batches = None if batch is None else np.stack([rng.permutation(N)[:batch] for _ in range(25)])
    lr = 0.5
    steps = np.array([0, 2, 11, 25])
    train, test = _arrays(kernel_dynamics.kernel_descent(
        k_tt, k_te, y, lr, steps, loss=loss, momentum=beta, batch_indices=batches, dtype="float64"
    ))
    history = _loop(k_tt, k_te, y, lr, 25, grad, beta=beta, batches=batches)
    for r, step in enumerate(steps):
        np.testing.assert_allclose(train[r], history[step][0], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(test[r], history[step][1], rtol=1e-8, atol=1e-10)


def test_float32_kernel_descent_is_close_to_float64():
    k_tt, k_te, y, _ = _kernels(2)
    steps = np.arange(0, 31, 10)
    f32 = _arrays(kernel_dynamics.kernel_descent(k_tt, k_te, y, 1.0, steps, dtype="float32"))
    f64 = _arrays(kernel_dynamics.mse_closed_form(k_tt, k_te, y, 1.0, steps))
    assert f32[1].dtype == np.float32 and f64[1].dtype == np.float64
    np.testing.assert_allclose(f32[1], f64[1], rtol=1e-4, atol=1e-5)


def test_mse_gradient_flow_matches_matrix_exponential():
    k_tt, k_te, y, rng = _kernels(3)
    f0 = rng.normal(size=(N, K_OUT))
    lr, steps = 0.7, np.array([0, 5, 50])
    train, test = _arrays(kernel_dynamics.kernel_flow(k_tt, k_te, y, lr, steps, f0_train=f0))
    for r, step in enumerate(steps):
        propagator = scipy.linalg.expm(-lr * step * k_tt / (N * K_OUT))
        np.testing.assert_allclose(train[r], y + propagator @ (f0 - y), rtol=1e-6, atol=1e-8)
        # test: f_test(t) = -K_te K^{-1} (I - e^{-tK/Nk}) (f0 - y)
        expected = -k_te @ np.linalg.solve(k_tt, (np.eye(N) - propagator) @ (f0 - y))
        np.testing.assert_allclose(test[r], expected, rtol=1e-5, atol=1e-7)


def _ode(k_tt, k_te, y, grad, beta, lr, times):
    """scipy's ODE solver on the documented flow: df/dt = -K chi, or its heavy-ball version in tau."""
    size = N * K_OUT + NT * K_OUT

    def rhs(_, state):
        f = state[: N * K_OUT].reshape(N, K_OUT)
        chi = grad(f, y)
        velocity = -np.concatenate([(k_tt @ chi).ravel(), (k_te @ chi).ravel()])
        if beta is None:
            return velocity
        q = state[size:]
        return np.concatenate([q, velocity - (1 - beta) / np.sqrt(lr) * q])

    state0 = np.zeros(size if beta is None else 2 * size)
    solution = scipy.integrate.solve_ivp(rhs, (0, times[-1]), state0, t_eval=times, rtol=1e-10, atol=1e-12)
    f = solution.y[:size].T
    return f[:, : N * K_OUT].reshape(-1, N, K_OUT), f[:, N * K_OUT :].reshape(-1, NT, K_OUT)


def test_cross_entropy_flow_matches_scipy_ode():
    k_tt, k_te, _, rng = _kernels(4)
    y = np.eye(K_OUT)[rng.integers(0, K_OUT, size=N)]
    lr, steps = 2.0, np.array([0, 10, 40])
    train, test = _arrays(kernel_dynamics.kernel_flow(k_tt, k_te, y, lr, steps, loss="cross_entropy"))
    expected_train, expected_test = _ode(k_tt, k_te, y, _softmax_ce_grad, None, lr, lr * steps)
    np.testing.assert_allclose(train, expected_train, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(test, expected_test, rtol=1e-4, atol=1e-6)


def test_momentum_flow_is_the_documented_heavy_ball_ode_and_the_small_rate_limit():
    k_tt, k_te, y, _ = _kernels(5)
    lr, beta, steps = 0.05, 0.9, np.array([0, 20, 80])
    train, test = _arrays(kernel_dynamics.kernel_flow(k_tt, k_te, y, lr, steps, momentum=beta))
    expected_train, expected_test = _ode(k_tt, k_te, y, _mse_grad, beta, lr, np.sqrt(lr) * steps)
    np.testing.assert_allclose(train, expected_train, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(test, expected_test, rtol=1e-4, atol=1e-6)
    # The discrete heavy ball approaches the ODE as lr -> 0 with (1 - beta)/sqrt(lr) fixed: error ~ sqrt(lr).
    errors = []
    rates = np.array([0.05, 0.0125, 0.003125])
    for rate in rates:
        b = 1 - (1 - beta) * np.sqrt(rate / lr)
        n_steps = int(round(80 * np.sqrt(lr / rate)))
        discrete, _ = _arrays(kernel_dynamics.kernel_descent(k_tt, k_te, y, rate, [n_steps], momentum=b, dtype="float64"))
        errors.append(np.abs(discrete[0] - expected_train[-1]).max())
    slope = np.polyfit(np.log(rates), np.log(errors), 1)[0]
    assert 0.35 < slope < 0.65, (errors, slope)


def test_bad_inputs_are_named():
    k_tt, k_te, y, _ = _kernels()
    with pytest.raises(ValueError, match="k_train_train"):
        kernel_dynamics.mse_closed_form(k_tt[:-1], k_te, y, 1.0, [0, 1])
    with pytest.raises(ValueError, match="k_test_train"):
        kernel_dynamics.kernel_descent(k_tt, k_te[:, :-1], y, 1.0, [0, 1])
    with pytest.raises(ValueError, match="increasing"):
        kernel_dynamics.kernel_flow(k_tt, k_te, y, 1.0, [3, 1])
    with pytest.raises(ValueError, match="y_train"):
        kernel_dynamics.mse_closed_form(k_tt, k_te, y[:, 0], 1.0, [0])
    with pytest.raises(ValueError, match="batch_indices"):
        kernel_dynamics.kernel_descent(k_tt, k_te, y, 1.0, [0, 5], batch_indices=np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="unknown loss"):
        kernel_dynamics.kernel_descent(k_tt, k_te, y, 1.0, [0, 5], loss="hinge")
    with pytest.raises(TypeError, match="needs an infinite_width.optim spec"):
        kernel_dynamics.run(k_tt, k_te, y, optax.sgd(0.1), [0, 5])


def _one_hot_kernels(seed):
    k_tt, k_te, _, rng = _kernels(seed)
    return k_tt, k_te, np.eye(K_OUT)[rng.integers(0, K_OUT, size=N)]


def test_cross_entropy_at_a_huge_rate_is_diverged_from_the_step_it_degenerates():
    """Issue 24: KernelDynamics with cross-entropy and lr 1e6 reported train loss -0, test loss 1.3e5 and
    diverged False. The recursion now marks the first state whose float32 training loss has rounded to 0:
    an explicit float64 loop at that step has logits of order the rate; a stable rate is not flagged."""
    k_tt, k_te, y = _one_hot_kernels(6)
    steps = np.arange(0, 21)
    huge = kernel_dynamics.kernel_descent(k_tt, k_te, y, 1e6, steps, loss="cross_entropy", dtype="float32")
    assert huge.diverged.all()
    bad = int(huge.first_nonfinite_step[0])
    assert 1 <= bad <= 20
    assert np.all(np.isnan(huge.train[0, bad:])) and np.all(np.isnan(huge.test[0, bad:]))
    assert np.all(np.isfinite(huge.train[0, :bad]))
    history = _loop(k_tt, k_te, y, 1e6, bad, _softmax_ce_grad)
    assert np.abs(history[bad][0]).max() > 1e3  # what the state was: logits far beyond any stable step
    stable = kernel_dynamics.kernel_descent(k_tt, k_te, y, 0.5, [0, 200], loss="cross_entropy", dtype="float32")
    assert not stable.diverged.any()
    # Through solve, on data: the reproducer of the issue.
    problem = iw.Problem.from_dataset(datasets.load("digits", n_train=100, n_test=100), loss="cross_entropy")
    arch = iw.mlp(1, "relu", out_dim=10)
    diverged = iw.solve(problem, arch, iw.KernelDynamics(), optim.sgd(1e6), steps=20, progress=False)
    converged = iw.solve(problem, arch, iw.KernelDynamics(), optim.sgd(10.0), steps=20, progress=False)
    assert diverged.diverged.all() and not converged.diverged.any()


def test_non_finite_states_are_found_between_the_recorded_steps():
    """MSE far above the stable rate overflows to Inf/NaN at some step; the run records that step even when
    only steps 0 and 400 are recorded."""
    k_tt, k_te, y, _ = _kernels(7)
    lr = 50 * kernels.max_learning_rate(k_tt, K_OUT)
    run = kernel_dynamics.kernel_descent(k_tt, k_te, y, lr, [0, 400], dtype="float32")
    assert run.diverged.all() and 0 < run.first_nonfinite_step[0] < 400
    every = kernel_dynamics.kernel_descent(k_tt, k_te, y, lr, np.arange(401), dtype="float32")
    first = int(np.flatnonzero(~np.isfinite(every.train[0]).all(axis=(1, 2)))[0])
    assert run.first_nonfinite_step[0] == every.first_nonfinite_step[0] == first


def test_full_batch_and_schedules_allocate_nothing_of_the_size_of_the_steps():
    """Issue 24: full batch tiled a (steps, N) index array and a (steps,) rate array. Peak host allocations of a
    million steps are those of ten steps; the in-loop schedule equals the closed form of a constant rate."""
    import tracemalloc

    k, y = np.eye(3) + 0.1, np.ones((3, 2))
    schedule = optax.constant_schedule(0.5)
    peaks = []
    for steps in (10, 10**6):
        tracemalloc.start()
        try:
            run = kernel_dynamics.kernel_descent(k, None, y, 1.0, [0, steps], schedule=schedule, dtype="float64")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] + 2**20, peaks  # 10**6 steps of (3,) rows and rates would be 24 MB and 8 MB
    closed = kernel_dynamics.mse_closed_form(k, None, y, 0.5, [0, 10**6])
    np.testing.assert_allclose(run.train, closed.train, rtol=1e-9, atol=1e-12)


def test_a_billion_full_batch_steps_through_solve_allocate_nothing_of_their_size():
    """Issue 24: KernelDynamics full batch with steps=10**9 (44.7 GiB of indices). The closed form of full-batch
    MSE needs only the recorded steps; the run ends at the interpolating solution."""
    import tracemalloc

    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 1))
    problem = iw.Problem(x, y, x[:4], y[:4])
    tracemalloc.start()
    try:
        run = iw.solve(problem, iw.mlp(1, "relu"), iw.KernelDynamics(dtype="float64"), optim.sgd(1.0),
                       steps=10**9, record=[0, 10**9], progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak
    assert not run.diverged.any() and run.train_loss[0, -1] < 1e-6 * run.train_loss[0, 0]
