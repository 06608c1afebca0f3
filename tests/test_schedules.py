"""Learning-rate schedules are optax schedules: the same rate applied on every side (finite, kernel, limit)."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import infinite_width as iw
from infinite_width import finite, losses, optim
from infinite_width.limits import kernel_dynamics
from infinite_width.problem import Problem

RNG = np.random.default_rng(3)
X = RNG.normal(size=(12, 4)).astype(np.float32)
Y = np.sin(2 * X[:, :1]).astype(np.float32)
X_TEST = RNG.normal(size=(6, 4)).astype(np.float32)
ARCH = iw.mlp(1, "relu", 1.4, 0.1, 1)


def test_an_optax_schedule_is_the_rate_and_is_described_by_value():
    schedule = optax.warmup_cosine_decay_schedule(0.0, 0.5, 4, 12, end_value=0.05)
    spec = optim.adam(schedule, b2=0.99)
    assert spec.lr == 1.0 and not spec.schedule.is_constant
    for t in (0, 2, 4, 9, 20):  # the spec's rate is optax's, traced or not
        assert float(spec.rate(t)) == pytest.approx(float(schedule(t)))
        assert float(jax.jit(spec.rate)(jnp.int32(t))) == pytest.approx(float(schedule(t)))
    description = spec.schedule.describe()
    again = optim.adam(optax.warmup_cosine_decay_schedule(0.0, 0.5, 4, 12, end_value=0.05), b2=0.99)
    other = optim.adam(optax.warmup_cosine_decay_schedule(0.0, 0.5, 4, 13, end_value=0.05), b2=0.99)
    assert again.schedule.describe() == description != other.schedule.describe()
    assert repr(again) == repr(spec) != repr(other) and "0x" not in repr(spec)
    assert spec.fields()["schedule"] == description and "schedule=join_schedules" in spec.describe()
    constant = optim.sgd(0.1)
    assert constant.schedule.is_constant and constant.rate(7) == 0.1


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: optim.sgd("cosine"), TypeError, "learning rate"),
        (lambda: optim.sgd(lambda t: jnp.ones(3)), TypeError, "real scalar"),
        (lambda: optim.sgd(lambda t: float(t) * 0.1), TypeError, "traceable"),
        (lambda: optim.sgd(lambda t: -0.1 + 0 * t), ValueError, "schedule at step 0"),
        (lambda: optim.Schedule(0.5), TypeError, "function step -> learning rate"),
        (lambda: optim.Optimizer("sgd", 0.1, schedule="cosine"), TypeError, "schedule must be"),
    ],
)
def test_bad_schedules_are_named(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_finite_sgd_under_a_schedule_is_params_minus_lr_t_times_grad():
    """Hand-written SGD with the rates of a warmup then cosine, typed out from their definition."""
    net, steps = finite.network(ARCH, 16), 4
    opt = optim.sgd(optax.warmup_cosine_decay_schedule(0.0, 0.5, 2, 4))
    rates = [0.0, 0.25, 0.5, 0.25]  # warmup 0, 1/2 of 0.5; cosine from 0.5 at step 2 to 0 at step 4
    _, state = finite.train(net, X, Y, opt, steps, key=2, record=[steps], centered=False, return_params=True)
    params = jax.tree_util.tree_map(lambda a: a[0], state.initial_params)
    for t in range(steps):
        grads = jax.grad(lambda p: losses.mse(net.apply(p, X), Y))(params)
        params = jax.tree_util.tree_map(lambda p, g, t=t: p - rates[t] * g, params, grads)
    final = jax.tree_util.tree_map(lambda a: a[0], state.final_params)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(final)[0], jax.flatten_util.ravel_pytree(params)[0],
                               rtol=1e-5, atol=1e-6)


def test_a_constant_schedule_gives_the_constant_rate_in_the_network_and_the_limit():
    """A step decay whose boundary lies after the last step is the constant rate (to rounding: the rate is
    now a float32 scalar of the schedule), and the metadata records the schedule."""
    p = Problem(X, Y, X_TEST, np.sin(2 * X_TEST[:, :1]))
    plain = optim.adam(0.05, b2=0.99)
    late = optim.adam(optax.piecewise_constant_schedule(0.05, {50: 0.5}), b2=0.99)
    for method in (iw.Finite(16, seeds=2), iw.AdamLimit(256, 2)):
        a, b = (iw.solve(p, ARCH, method, opt, steps=6, record=[0, 3, 6], progress=False) for opt in (plain, late))
        np.testing.assert_allclose(a.test_predictions, b.test_predictions, rtol=1e-5, atol=1e-6)
        assert b.metadata["optimizer"]["schedule"]["closure"]["boundaries_and_scales"] == {"50": 0.5}
        assert "schedule" not in a.metadata["optimizer"]


def test_kernel_descent_under_a_step_schedule_is_two_closed_form_runs_chained():
    """Full-batch MSE SGD with lr halved at step 6 (the recursion) equals the closed form for 6 steps at lr
    followed by the closed form for 5 steps at lr / 2 started from there; gradient flow is reparametrized."""
    k = np.asarray(iw.kernels.ntk(ARCH, np.concatenate([X, X_TEST]), X, dtype="float64"))
    k_train, k_test = k[: len(X)], k[len(X):]
    lr = 0.8
    opt = optim.sgd(optax.piecewise_constant_schedule(lr, {6: 0.5}))
    scheduled = kernel_dynamics.run(k_train, k_test, Y, opt, [6, 11], dtype="float64")
    first = kernel_dynamics.mse_closed_form(k_train, k_test, Y, lr, [6])
    second = kernel_dynamics.mse_closed_form(k_train, k_test, Y, lr / 2, [5], f0_train=first.train[0, 0],
                                             f0_test=first.test[0, 0])
    np.testing.assert_allclose(scheduled.train[0, 0], first.train[0, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scheduled.test[0, 1], second.test[0, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scheduled.train[0, 1], second.train[0, 0], rtol=1e-10, atol=1e-12)
    flow = kernel_dynamics.run(k_train, k_test, Y, opt, [11], time="continuous")
    flow_time = lr * (6 * 1.0 + 5 * 0.5)  # gradient flow df/dt = -K (f - y) / (N k) from f = 0
    expected = Y - scipy.linalg.expm(-flow_time * k_train / Y.size) @ Y
    np.testing.assert_allclose(flow.train[0, -1], expected, rtol=1e-6, atol=1e-8)


def test_sweep_fingerprints_of_schedules_are_stable_and_by_value():
    from infinite_width.workflow.sweeps import job_fingerprint

    plain = optim.adam(0.01)
    assert repr(plain) == "Optimizer(name='adam', lr=0.01, beta=0.0, b1=0.9, b2=0.999, eps=1e-08)"
    cosine = lambda total: optim.adam(optax.cosine_decay_schedule(0.01, total))  # noqa: E731
    assert job_fingerprint({"optimizer": cosine(50)}) == job_fingerprint({"optimizer": cosine(50)})
    assert job_fingerprint({"optimizer": cosine(50)}) != job_fingerprint({"optimizer": cosine(60)})
    assert job_fingerprint({"optimizer": cosine(50)}) != job_fingerprint({"optimizer": plain})
    # Two lambdas that differ only in their code are told apart too.
    assert repr(optim.sgd(lambda t: 0.1 / (1 + t))) != repr(optim.sgd(lambda t: 0.1 * (1 + t)))


def test_comparisons_name_scheduled_optimizers_and_raw_transformations():
    """compare() formatted every metadata field as a number and failed on a schedule (a dict)."""
    p = Problem(X, Y, X_TEST, np.sin(2 * X_TEST[:, :1]))
    runs = [iw.solve(p, ARCH, iw.Finite(8), opt, steps=3, progress=False)
            for opt in (optim.sgd(optax.cosine_decay_schedule(0.1, 3)), optax.adam(0.01))]
    assert [row["optimizer"] for row in iw.compare(runs).rows()] == ["sgd(lr=1, schedule=cosine_decay_schedule)",
                                                                      "optax()"]
