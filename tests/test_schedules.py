"""Learning-rate schedules: their factors, and the same factor applied on every side (finite, kernel, limit)."""

import json
import math

import jax
import jax.flatten_util
import numpy as np
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


def test_factors_follow_their_definitions_and_specs_are_hashable_json():
    warmup, total, final = 4, 12, 0.1
    factors = optim.warmup_cosine(warmup, total, final).factors(15)
    expected = [t / warmup if t < warmup else
                final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(t - warmup, total - warmup) / (total - warmup)))
                for t in range(15)]
    np.testing.assert_allclose(factors, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(optim.step_decay([3, 5], 0.5).factors(7), [1, 1, 1, 0.5, 0.5, 0.25, 0.25], rtol=1e-7)
    assert optim.constant().factors(4).tolist() == [1.0] * 4
    opt = optim.adam(1e-3, schedule=optim.step_decay([3, 5], 0.5))
    np.testing.assert_array_equal(opt.rate_factors(7), optim.step_decay([3, 5], 0.5).factors(7))
    assert {opt, optim.adam(1e-3, schedule=optim.step_decay((3, 5), 0.5))} == {opt}  # hashable, value equality
    assert opt != optim.adam(1e-3)
    assert json.loads(json.dumps(opt.schedule.describe())) == {"name": "step_decay", "boundaries": [3, 5],
                                                               "factor": 0.5}
    assert "schedule=warmup_cosine(warmup=2, total=9" in optim.sgd(1.0, schedule=optim.warmup_cosine(2, 9)).describe()


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: optim.warmup_cosine(5, 5), ValueError, "total must be an integer >= 6"),
        (lambda: optim.warmup_cosine(-1, 5), ValueError, "warmup"),
        (lambda: optim.step_decay([4, 2]), ValueError, "boundaries must be a non-empty increasing"),
        (lambda: optim.step_decay([], 0.5), ValueError, "boundaries"),
        (lambda: optim.step_decay([2], 0.0), ValueError, "factor"),
        (lambda: optim.Schedule("linear"), ValueError, "unknown schedule 'linear'"),
        (lambda: optim.sgd(1.0, schedule="cosine"), TypeError, "schedule must be an infinite_width.optim.Schedule"),
    ],
)
def test_bad_schedules_are_named(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_finite_sgd_under_a_schedule_is_params_minus_lr_t_times_grad():
    """Hand-written SGD with lr * factor(t), factors typed out from the definition of warmup then cosine."""
    net, lr, steps = finite.network(ARCH, 16), 0.5, 4
    opt = optim.sgd(lr, schedule=optim.warmup_cosine(2, 4))
    factors = [0.0, 0.5, 1.0, 0.5]  # warmup 0, 1/2; cosine from 1 at step 2 to 0 at step 4
    _, state = finite.train(net, X, Y, opt, steps, key=2, record=[steps], return_params=True)
    params = jax.tree_util.tree_map(lambda a: a[0], state.initial_params)
    for t in range(steps):
        grads = jax.grad(lambda p: losses.mse(net.apply(p, X), Y))(params)
        params = jax.tree_util.tree_map(lambda p, g, t=t: p - lr * factors[t] * g, params, grads)
    final = jax.tree_util.tree_map(lambda a: a[0], state.final_params)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(final)[0], jax.flatten_util.ravel_pytree(params)[0],
                               rtol=1e-5, atol=1e-6)


def test_a_factor_of_one_is_no_schedule_bit_for_bit_in_the_network_and_the_limit():
    """A step decay whose boundary lies after the last step multiplies every update by exactly 1."""
    p = Problem(X, Y, X_TEST, np.sin(2 * X_TEST[:, :1]))
    plain, late = optim.adam(0.05, b2=0.99), optim.adam(0.05, b2=0.99, schedule=optim.step_decay([50], 0.5))
    for method in (iw.Finite(16, seeds=2), iw.AdamLimit(256, 2)):
        a, b = (iw.solve(p, ARCH, method, opt, steps=6, record=[0, 3, 6], progress=False) for opt in (plain, late))
        np.testing.assert_array_equal(a.test_predictions, b.test_predictions)
        assert b.metadata["optimizer"]["schedule"] == {"name": "step_decay", "boundaries": [50], "factor": 0.5}
        assert "schedule" not in a.metadata["optimizer"]


def test_kernel_descent_under_a_step_schedule_is_two_closed_form_runs_chained():
    """Full-batch MSE SGD with lr halved at step 6 (the recursion) equals the closed form for 6 steps at lr
    followed by the closed form for 5 steps at lr / 2 started from there; gradient flow is reparametrized."""
    k = np.asarray(iw.kernels.ntk(ARCH, np.concatenate([X, X_TEST]), X, dtype="float64"))
    k_train, k_test = k[: len(X)], k[len(X):]
    lr = 0.8
    opt = optim.sgd(lr, schedule=optim.step_decay([6], 0.5))
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


def test_a_constant_schedule_leaves_the_optimizer_and_its_sweep_fingerprint_as_without_schedules():
    from infinite_width.workflow.sweeps import job_fingerprint

    plain = optim.adam(0.01)
    assert repr(plain) == "Optimizer(name='adam', lr=0.01, beta=0.0, b1=0.9, b2=0.999, eps=1e-08)"
    assert repr(optim.adam(0.01, schedule=optim.constant())) == repr(plain)
    scheduled = optim.adam(0.01, schedule=optim.warmup_cosine(5, 50))
    assert "warmup_cosine" in repr(scheduled)
    assert job_fingerprint({"optimizer": scheduled}) != job_fingerprint({"optimizer": plain})
