"""The optax trainer: limits, per-group scaling, minibatches, ensembles, errors."""

import contextlib
import re

import jax
import jax.flatten_util
import numpy as np
import optax
import pytest
from conftest import TerminalStream

import infinite_width as iw
from infinite_width import finite, kernels, losses, optim
from infinite_width._src.nt import predict
from infinite_width._src.rng import run_keys

RNG = np.random.default_rng(0)
D = 4
X = RNG.normal(size=(16, D)).astype(np.float32)
Y = np.sin(2 * X[:, :1]).astype(np.float32)
X_TEST = RNG.normal(size=(8, D)).astype(np.float32)
ARCH = iw.mlp(2, "relu", 1.4, 0.1, 1)
NET = finite.network(ARCH, 32)  # shared by the quick tests, so they share compiled code
SGD = optim.sgd(0.5)


def fitted_slope(widths, values):
    return np.polyfit(np.log(widths), np.log(values), 1)[0]


def kernel_gradient_descent(k_train, k_test_train, y, lr, steps):
    """Discrete-time gradient descent on 0.5 * mean((f - y)^2) with a fixed kernel, from f = 0 (numpy)."""
    f_train, f_test = np.zeros_like(y, dtype=np.float64), np.zeros((k_test_train.shape[0], y.shape[1]))
    for _ in range(steps):
        residual = (f_train - y) / y.size
        f_train, f_test = f_train - lr * k_train @ residual, f_test - lr * k_test_train @ residual
    return f_train, f_test


def relative_distance_to_limit(arch, kernel_fn, readout_only, widths, lr=1.0, steps=30, seeds=8):
    k_train = kernel_fn(arch, X, dtype="float64")
    k_test_train = kernel_fn(arch, X_TEST, X, dtype="float64")
    _, limit = kernel_gradient_descent(k_train, k_test_train, Y, lr, steps)
    distances = []
    for width in widths:
        result = finite.train(
            finite.network(arch, width), X, Y, optim.sgd(lr), steps,
            readout_only=readout_only, centered=True, seeds=seeds, record=[steps], x_test=X_TEST, key=1,
        )
        diff = result.test[:, -1] - limit
        distances.append(np.sqrt(np.mean(diff**2) / np.mean(limit**2)))
    return distances


def test_numpy_kernel_descent_uses_neural_tangents_rate_convention():
    """Small-step discrete descent approaches neural-tangents' gradient flow at time lr * steps."""
    k_train, k_test_train = kernels.ntk(ARCH, X, dtype="float64"), kernels.ntk(ARCH, X_TEST, X, dtype="float64")
    flow = predict.gradient_descent_mse(k_train, Y.astype(np.float64), learning_rate=1.0)
    expected = np.asarray(flow(3.0, np.zeros_like(Y), np.zeros((8, 1)), k_test_train)[1])
    errors = []
    for refine in (10, 100):
        _, f_test = kernel_gradient_descent(k_train, k_test_train, Y, 3.0 / refine, refine)
        errors.append(np.max(np.abs(f_test - expected)))
    assert errors[1] < 0.2 * errors[0]  # first-order convergence in the step size
    assert errors[1] < 1e-2 * np.max(np.abs(expected))


@pytest.mark.slow
def test_sgd_tracks_ntk_gradient_descent_like_inverse_sqrt_width():
    widths = [32, 128, 512, 2048]
    distances = relative_distance_to_limit(ARCH, kernels.ntk, False, widths)
    slope = fitted_slope(widths, distances)
    assert -0.8 <= slope <= -0.3, (slope, distances)
    assert distances[-1] < 0.1


@pytest.mark.slow
def test_readout_sgd_tracks_nngp_gradient_descent_like_inverse_sqrt_width():
    widths = [32, 128, 512, 2048]
    distances = relative_distance_to_limit(ARCH, kernels.nngp, True, widths)
    slope = fitted_slope(widths, distances)
    assert -0.8 <= slope <= -0.3, (slope, distances)
    assert distances[-1] < 0.12


@pytest.mark.parametrize("name", ["adam", "sign"])
def test_adaptive_trajectories_do_not_depend_on_the_loss_scale(name):
    c = 1000.0
    scaled = lambda f, y: c * losses.mse(f, y)  # noqa: E731
    if name == "adam":
        base, rescaled = optim.adam(0.02, eps=0.3), optim.adam(0.02, eps=0.3 * c)
    else:
        base = rescaled = optim.sign(0.02)
    kwargs = dict(centered=True, seeds=2, key=4, x_test=X_TEST, record=[0, 5, 20])
    reference = finite.train(NET, X, Y, base, 20, **kwargs).test
    invariant = finite.train(NET, X, Y, rescaled, 20, loss=scaled, **kwargs).test
    np.testing.assert_allclose(invariant, reference, rtol=2e-3, atol=2e-5)
    if name == "adam":  # eps not rescaled: a visibly different trajectory, so the check above can fail
        other = finite.train(NET, X, Y, base, 20, loss=scaled, **kwargs).test
        assert np.max(np.abs(other - reference)) > 0.05 * np.max(np.abs(reference))


@pytest.mark.slow
def test_one_adam_step_moves_the_function_by_order_one_at_every_width():
    widths = [64, 256, 1024, 4096]
    sizes = []
    for width in widths:
        result = finite.train(
            finite.network(ARCH, width), X, Y, optim.adam(0.05), 1,
            centered=True, seeds=2, key=2, record=[1], x_test=X_TEST,
        )
        sizes.append(np.sqrt(np.mean(result.test[:, -1] ** 2)))
    assert abs(fitted_slope(widths, sizes)) < 0.15, sizes
    assert max(sizes) / min(sizes) < 2.0, sizes
    assert min(sizes) > 1e-3


def grad_of_loss(net, params, x, y):
    return jax.grad(lambda p: losses.mse(net.apply(p, x), y))(params)


@pytest.mark.parametrize("batch_size", [None, 4])
def test_one_sgd_step_is_params_minus_lr_times_grad(batch_size):
    _, result = finite.train(NET, X, Y, SGD, 1, batch_size=batch_size, key=6, record=[1], centered=False,
                             return_params=True)
    first = jax.tree_util.tree_map(lambda a: a[0], result.initial_params)
    rows = run_keys(6).minibatch_order(16, batch_size, 1)[0]  # the documented minibatch order of key 6
    assert rows.shape == (16 if batch_size is None else 4,)
    grads = grad_of_loss(NET, first, X[rows], Y[rows])
    expected = jax.tree_util.tree_map(lambda p, g: p - SGD.lr * g, first, grads)
    final = jax.tree_util.tree_map(lambda a: a[0], result.final_params)
    for got, want in zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)


def test_sign_step_moves_each_group_by_lr_times_r():
    lr = 0.1
    _, result = finite.train(NET, X, Y, optim.sign(lr), 1, key=7, record=[1], centered=False, return_params=True)
    first = jax.tree_util.tree_map(lambda a: a[0], result.initial_params)
    grads = grad_of_loss(NET, first, X, Y)
    scales = NET.group_scales(D)
    groups = set()
    for layer, start, end, grad, scale in [
        (i, result.initial_params[i][name][0], result.final_params[i][name][0], grads[i][name], scales[i][name])
        for i in range(len(scales)) for name in ("W", "b")
    ]:
        np.testing.assert_allclose(end - start, -lr * scale.r * np.sign(np.asarray(grad)), rtol=1e-4, atol=1e-7)
        groups.add(scale.group)
    assert groups == set(finite.GROUPS)


def test_adam_with_huge_eps_is_sgd_with_rate_lr_over_eps_times_std():
    """Q -> G / (eps s) and r / s = 1 / W_std (weights), 1 / b_std (biases): docs/theory.md, section 6."""
    std = 1.3
    arch = iw.mlp(2, "erf", std, std, 1)
    net = finite.network(arch, 32)
    eta, eps = 0.3, 1e5
    kwargs = dict(centered=True, key=8, x_test=X_TEST, record=[0, 10])
    adam = finite.train(net, X, Y, optim.adam(eta * eps * std, b1=0.0, eps=eps), 10, **kwargs)
    sgd = finite.train(net, X, Y, optim.sgd(eta), 10, **kwargs)
    assert np.max(np.abs(sgd.test[:, -1])) > 0.05
    np.testing.assert_allclose(adam.test, sgd.test, rtol=1e-3, atol=1e-4)


def test_standard_parametrization_gives_the_ntk_adam_trajectory():
    kwargs = dict(seeds=2, key=9, x_test=X_TEST, record=[0, 3, 15])
    opt = optim.adam(0.05, eps=1e-3)
    ntk = finite.train(NET, X, Y, opt, 15, **kwargs)
    std = finite.train(finite.network(ARCH, 32, "standard"), X, Y, opt, 15, **kwargs)
    np.testing.assert_allclose(std.test, ntk.test, rtol=1e-3, atol=1e-4)


def test_global_rates_are_plain_optax_adam_on_the_stored_parameters():
    """rates="global": one optax.adam(lr, eps) for every leaf, checked against a hand-written optax loop."""
    net, opt, steps = finite.network(ARCH, 32, "standard"), optim.adam(0.01, eps=1e-8), 4
    result, params = finite.train(net, X, Y, opt, steps, rates="global", centered=False, key=4, record=[steps],
                                  return_params=True)
    current = jax.tree_util.tree_map(lambda a: a[0], params.initial_params)
    tx = optax.adam(0.01, b1=0.9, b2=0.999, eps=1e-8)
    state = tx.init(current)
    for _ in range(steps):
        updates, state = tx.update(grad_of_loss(net, current, X, Y), state)
        current = optax.apply_updates(current, updates)
    np.testing.assert_allclose(result.train[0, -1], net.apply(current, X), rtol=1e-4, atol=1e-5)
    per_group = finite.train(net, X, Y, opt, steps, centered=False, key=4, record=[steps])
    assert not np.allclose(per_group.train, result.train, atol=1e-3)  # the limit-matched rates differ


def explicit_jacobian(net, params, x):
    """d f(x) / d params as a dense (P, n_params) matrix (one output), by jax.jacobian: independent of jvp."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return np.asarray(jax.jacobian(lambda v: net.apply(unravel(v), x)[:, 0])(flat)), flat


@pytest.mark.parametrize("width", [8, 128])
def test_linearized_sgd_is_empirical_ntk_descent_and_adam_stays_linear(width):
    """Linearized SGD moves f by -lr Theta_emp chi at every step, exactly, at any width; under Adam the
    outputs are f_0 + J (theta_t - theta_0) with the explicit Jacobian at init."""
    net, steps, lr = finite.network(ARCH, width), 8, 0.5
    x_all = np.concatenate([X, X_TEST])
    with jax.enable_x64(True):
        sgd, state = finite.train(net, X, Y, optim.sgd(lr), steps, linearized=True, centered=False, key=3,
                                  x_test=X_TEST, record=np.arange(steps + 1), return_params=True)
        first = jax.tree_util.tree_map(lambda a: a[0], state.initial_params)
        jacobian, theta0 = explicit_jacobian(net, first, x_all)
        theta_ntk = jacobian @ jacobian[: len(X)].T  # (P, N) empirical NTK at init
        f = np.asarray(net.apply(first, x_all))
        for t in range(steps):
            np.testing.assert_allclose(np.concatenate([sgd.train[0, t], sgd.test[0, t]]), f, rtol=1e-9, atol=1e-11)
            f = f - lr * theta_ntk @ (f[: len(X)] - Y) / Y.size
        adam, state = finite.train(net, X, Y, optim.adam(0.05), steps, linearized=True, centered=True, key=3,
                                   x_test=X_TEST, record=[steps], return_params=True)
        last = jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], state.final_params))[0]
        np.testing.assert_allclose(adam.test[0, -1, :, 0], jacobian[len(X):] @ (last - theta0), rtol=1e-9, atol=1e-11)
    assert np.abs(adam.test[0, -1]).max() > 0.05 and np.abs(sgd.test[0, -1] - sgd.test[0, 0]).max() > 0.05


def test_centered_outputs_start_at_zero_and_uncentered_at_the_network():
    centered = finite.train(NET, X, Y, SGD, 3, centered=True, key=1, x_test=X_TEST, record=[0, 1, 2, 3])
    plain, params = finite.train(NET, X, Y, SGD, 3, centered=False, key=1, x_test=X_TEST, record=[0, 2, 3],
                                 return_params=True)
    assert np.all(centered.train[:, 0] == 0) and np.all(centered.test[:, 0] == 0)
    first = jax.tree_util.tree_map(lambda a: a[0], params.initial_params)
    np.testing.assert_allclose(plain.test[0, 0], NET.apply(first, X_TEST), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(plain.steps, [0, 2, 3])


def test_readout_only_moves_only_the_readout():
    _, result = finite.train(NET, X, Y, optim.adam(0.05), 5, readout_only=True, key=3, record=[5], return_params=True)
    labels = NET.groups(NET.init(0, D))
    for layer_before, layer_after, layer_labels in zip(result.initial_params, result.final_params, labels):
        for name in ("W", "b"):
            moved = not np.array_equal(layer_before[name], layer_after[name])
            assert moved == (layer_labels[name] in ("readout_W", "output_b")), layer_labels[name]


def test_zero_bias_std_is_frozen_under_adam_without_nans():
    net = finite.network(iw.mlp(1, "relu", 1.4, 0.0, 1), 16)
    predictions, result = finite.train(net, X, Y, optim.adam(0.05, eps=0.0), 5, key=3, record=[5],
                                       return_params=True)
    assert not predictions.diverged.any()
    np.testing.assert_array_equal(result.final_params[0]["b"], result.initial_params[0]["b"])
    assert not np.array_equal(result.final_params[0]["W"], result.initial_params[0]["W"])


def test_minibatch_order_is_shared_and_explicit_indices_reproduce_it():
    result = finite.train(NET, X, Y, SGD, 12, batch_size=4, key=5, record=[12])
    rows = run_keys(5).minibatch_order(16, 4, 12)  # the package's one derivation
    np.testing.assert_array_equal(np.sort(rows[:4].ravel()), np.arange(16))  # each epoch is a permutation
    again = finite.train(NET, X, Y, SGD, 12, batch_indices=rows, key=5, record=[12])
    np.testing.assert_array_equal(again.train, result.train)
    shuffled = finite.train(NET, X, Y, SGD, 12, batch_indices=rows[::-1].copy(), key=5, record=[12])
    assert not np.array_equal(shuffled.train, result.train)


def test_ensemble_members_are_documented_inits_and_runs_are_deterministic():
    a, params = finite.train(NET, X, Y, SGD, 4, key=jax.random.PRNGKey(3), seeds=3, record=[0, 1, 2, 3, 4],
                             return_params=True)
    b = finite.train(NET, X, Y, SGD, 4, key=jax.random.PRNGKey(3), seeds=3, record=[0, 1, 2, 3, 4])
    np.testing.assert_array_equal(a.train, b.train)
    init_keys = run_keys(jax.random.PRNGKey(3)).init_keys(3)
    for i in range(3):
        expected = NET.init(init_keys[i], D)
        np.testing.assert_array_equal(params.initial_params[1]["W"][i], np.asarray(expected[1]["W"]))
    assert a.train.shape == (3, 5, 16, 1) and a.test.shape == (3, 5, 0, 1)
    assert not np.allclose(a.train[0], a.train[1])


def test_progress_bar_chunks_give_identical_results():
    quiet = finite.train(NET, X, Y, SGD, 7, key=2, record=[0, 3, 7])
    with contextlib.redirect_stderr(TerminalStream()) as terminal:  # bars are drawn on terminals only
        loud = finite.train(NET, X, Y, SGD, 7, key=2, record=[0, 3, 7], progress=True)
    np.testing.assert_allclose(loud.train, quiet.train, rtol=1e-6, atol=1e-7)
    assert "train width 32" in terminal.getvalue()


def test_nonfinite_loss_raises_naming_the_step_or_is_recorded():
    huge = optim.sgd(1e4)
    recorded = finite.train(NET, X, Y, huge, 10, seeds=2, key=1, on_nonfinite="record", record=[0, 5, 10])
    assert recorded.diverged.all()
    step = int(recorded.first_nonfinite_step.min())
    assert 0 < step <= 10
    assert np.all(np.isnan(recorded.train[:, recorded.steps >= recorded.first_nonfinite_step.max()]))
    assert np.all(np.isfinite(recorded.train[:, 0]))
    with pytest.raises(FloatingPointError, match=f"step {step}"):
        finite.train(NET, X, Y, huge, 10, seeds=2, key=1, record=[0, 5, 10])


def test_an_ensemble_that_does_not_fit_is_refused_before_allocating_with_what_fits():
    """Issue 9, item 2: width 1024 x 4000 seeds (about 17 GB of parameters alone) is refused, not attempted."""
    x, y = RNG.normal(size=(100, 64)).astype(np.float32), np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 100)]
    wide = finite.network(iw.mlp(2, "relu", 1.4, 0.1, 10), 1024)
    with pytest.raises(MemoryError, match=r"training 4000 networks of width 1024 needs about .* GiB .*seeds would fit"):
        finite.train(wide, x, y, optim.adam(0.01), 2, record=[0, 2], seeds=4000, max_memory_bytes=16 * 2**30)
    # The advice is right: the suggested number of seeds fits under the same limit and trains.
    net, limit = finite.network(iw.mlp(2, "relu", 1.4, 0.1, 10), 128), 64 * 2**20
    with pytest.raises(MemoryError) as refused:
        finite.train(net, x, y, optim.adam(0.01), 2, record=[0, 2], seeds=4000, max_memory_bytes=limit)
    fitting = int(re.search(r"about (\d+) seeds would fit", str(refused.value)).group(1))
    assert 1 <= fitting < 4000
    result = finite.train(net, x, y, optim.adam(0.01), 2, record=[0, 2], seeds=fitting, max_memory_bytes=limit)
    assert result.train.shape == (fitting, 2, 100, 10) and not result.diverged.any()


def test_float64_training_under_x64():
    """Issue 9, item 5: with JAX's x64 mode on, training (full batch and minibatches) runs in float64."""
    with jax.enable_x64(True):
        for batch_size in (None, 4):
            result = finite.train(NET, X, Y, optim.adam(0.05), 6, centered=True, record=[0, 3, 6], x_test=X_TEST,
                                  batch_size=batch_size, seeds=2)
            assert result.train.dtype == np.float64 and result.test.dtype == np.float64
            assert np.all(np.isfinite(result.train)) and not result.diverged.any()
            assert np.abs(result.test[:, 0]).max() < 1e-12 and np.abs(result.test[:, -1]).min() > 0


def test_cross_entropy_training_learns_a_separable_problem():
    net = finite.network(iw.mlp(1, "relu", 1.4, 0.1, 2), 64)
    labels = (X[:, 0] > 0).astype(int)
    onehot = np.eye(2, dtype=np.float32)[labels]
    result = finite.train(net, X, onehot, optim.adam(0.05), 60, loss="cross_entropy", centered=False, key=0,
                          record=[0, 60])
    start, end = (float(losses.cross_entropy(f, onehot)) for f in result.train[0])
    assert end < 0.5 * start
    assert np.all(result.train[0, -1].argmax(axis=1) == labels)


def test_convolutional_network_trains_on_images():
    images = RNG.normal(size=(6, 8, 8, 3)).astype(np.float32)
    targets = RNG.normal(size=(6, 2)).astype(np.float32)
    net = finite.network(iw.myrtle(5, "relu", 1.4, 0.0, 2), 8)
    result = finite.train(net, images, targets, optim.momentum(0.2), 10, key=0, record=[0, 10], x_test=images[:2])
    start, end = (np.mean((f - targets) ** 2) for f in result.train[0])
    assert end < start
    assert result.test.shape == (1, 2, 2, 2)


def test_width_sweep_trains_every_width():
    results = finite.width_sweep(ARCH, [8, 16], X, Y, SGD, 2, key=0, record=[2])
    assert sorted(results) == [8, 16]
    assert all(isinstance(r, iw.Predictions) and r.train.shape == (1, 1, 16, 1) for r in results.values())
    alone = finite.train(finite.network(ARCH, 16), X, Y, SGD, 2, key=0, record=[2])
    np.testing.assert_array_equal(results[16].train, alone.train)
    with pytest.raises(ValueError, match="widths"):
        finite.width_sweep(ARCH, [], X, Y, SGD, 2)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(y_train=Y[:10]), ValueError, "10 rows"),
        (dict(y_train=np.zeros((16, 3), np.float32)), ValueError, "out_dim"),
        (dict(y_train=Y[:, 0]), ValueError, "shape"),
        (dict(x_train=X[:, :, None]), ValueError, "x_train"),
        (dict(x_train=np.where(X > 1, np.nan, X)), ValueError, "NaN"),
        (dict(x_test=X_TEST[:, :3]), ValueError, "x_test"),
        (dict(loss="hinge"), ValueError, "loss"),
        (dict(loss=3), TypeError, "loss"),
        (dict(readout_only="readout"), TypeError, "readout_only"),
        (dict(linearized="yes"), TypeError, "linearized"),
        (dict(on_nonfinite="ignore"), ValueError, "on_nonfinite"),
        (dict(rates="layerwise"), ValueError, "rates"),
        (dict(optimizer="adam"), TypeError, "optimizer must be an infinite_width.optim.Optimizer spec or an optax"),
        (dict(net="mlp"), TypeError, "Network"),
        (dict(net=ARCH), TypeError, "needs its width"),
        (dict(options=iw.Finite(64)), ValueError, "contradict the network"),
        (dict(options="fast"), TypeError, "options must be"),
        (dict(y_train=np.full(16, 99)), ValueError, r"y_train holds integer class labels, which need k >= 2"),
        (dict(steps=2**31), ValueError, "at most"),
        (dict(steps=-1), ValueError, "steps"),
        (dict(seeds=0), ValueError, "seeds"),
        (dict(record=[0, 99]), ValueError, "record"),
        (dict(batch_size=40), ValueError, "batch_size"),
        (dict(batch_indices=np.zeros((3, 4), int)), ValueError, "batch_indices"),
        (dict(batch_indices=np.full((5, 4), 16)), ValueError, "batch_indices"),
        (dict(key="seven"), TypeError, "key"),
    ],
)
def test_bad_input_is_named(change, error, match):
    kwargs = dict(net=NET, x_train=X, y_train=Y, optimizer=SGD, steps=5, record=[5])
    kwargs.update(change)
    args = [kwargs.pop(name) for name in ("net", "x_train", "y_train", "optimizer", "steps")]
    with pytest.raises(error, match=match):
        finite.train(*args, **kwargs)


def test_invalid_optimizer_and_network_settings_are_rejected():
    with pytest.raises(ValueError, match="learning rate"):
        optim.adam(0.0)
    with pytest.raises(ValueError, match="width"):
        finite.width_sweep(ARCH, [0], X, Y, SGD, 2)
    with pytest.raises(ValueError, match="parametrization"):
        finite.width_sweep(ARCH, [8], X, Y, SGD, 2, parametrization="sp")


def test_an_optax_transformation_trains_as_it_is_on_every_trained_leaf():
    """finite.train (and solve's Finite) with optax.adam itself equals a hand-written optax loop on the raw
    network; with readout_only the other leaves stay; a limit refuses the transformation, saying what to pass."""
    net, steps, tx = finite.network(ARCH, 16), 4, optax.adam(0.01)
    result, params = finite.train(net, X, Y, tx, steps, centered=False, key=4, record=[steps], return_params=True)
    current = jax.tree_util.tree_map(lambda a: a[0], params.initial_params)
    state = tx.init(current)
    for _ in range(steps):
        updates, state = tx.update(grad_of_loss(net, current, X, Y), state)
        current = optax.apply_updates(current, updates)
    np.testing.assert_allclose(result.train[0, -1], net.apply(current, X), rtol=1e-4, atol=1e-5)
    _, readout = finite.train(net, X, Y, tx, 2, readout_only=True, key=4, record=[2], return_params=True)
    np.testing.assert_array_equal(readout.final_params[0]["W"], readout.initial_params[0]["W"])
    assert not np.array_equal(readout.final_params[-1]["W"], readout.initial_params[-1]["W"])
    problem = iw.Problem(X, Y, X_TEST, np.sin(2 * X_TEST[:, :1]))
    solved = iw.solve(problem, ARCH, iw.Finite(16, centered=False), tx, steps=steps, record=[steps], key=0,
                      progress=False)
    assert solved.metadata["optimizer"] == {"name": "optax"} and solved.metadata["label"] == "w=16 optax all"
    for method in (iw.KernelDynamics(), iw.AdamLimit(64, 2)):
        with pytest.raises(TypeError, match="needs an infinite_width.optim spec.*entrywise"):
            iw.solve(problem, ARCH, method, tx, steps=2, progress=False)


def test_the_options_record_is_what_train_takes_and_its_keywords_build_it():
    """train(arch, options=Finite(...)) is train(network, **keywords); keywords replace the record's fields."""
    options = finite.Finite(32, seeds=2, centered=False)
    by_record = finite.train(ARCH, X, Y, SGD, 3, options=options, key=1, record=[3])
    by_keywords = finite.train(NET, X, Y, SGD, 3, seeds=2, centered=False, key=1, record=[3])
    np.testing.assert_array_equal(by_record.train, by_keywords.train)
    replaced = finite.train(ARCH, X, Y, SGD, 3, options=options, centered=True, key=1, record=[0])
    assert np.all(replaced.train == 0)  # centered=True replaced the record's False
    assert isinstance(iw.Finite(8), finite.Finite) and iw.Finite.traditional(8) == iw.Finite(
        8, seeds=3, parametrization="standard", centered=False, rates="global")


def test_full_batch_never_builds_an_array_of_the_steps(monkeypatch):
    """Issue 24: full batch with steps=10**9 allocated (steps, N) index arrays (44.7 GiB) before anything else.
    Now nothing of size steps exists: the memory plan is reached at once (and, told that nothing fits,
    refuses) with a small peak of host allocations, through finite.train and solve's Finite alike."""
    import tracemalloc

    from infinite_width.finite import training

    problem = iw.Problem(X, Y, X_TEST, np.sin(2 * X_TEST[:, :1]))
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match="training 1 networks of width 32"):
            finite.train(NET, X, Y, SGD, 10**9, record=[0, 10**9], key=0, max_memory_bytes=1)
        monkeypatch.setattr(training, "available_memory", lambda device=None: 1)
        with pytest.raises(MemoryError, match="training 2 networks of width 32"):
            iw.solve(problem, ARCH, iw.Finite(32, seeds=2), SGD, steps=10**9, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak


def test_full_batch_without_index_arrays_matches_explicit_full_batch_rows():
    """The full-batch loop (no rows) and explicit rows 0..N-1 at every step give the same run."""
    implicit = finite.train(NET, X, Y, SGD, 5, key=3, record=[0, 2, 5])
    rows = np.tile(np.arange(16), (5, 1))
    explicit = finite.train(NET, X, Y, SGD, 5, key=3, record=[0, 2, 5], batch_indices=rows)
    np.testing.assert_allclose(explicit.train, implicit.train, rtol=1e-6, atol=1e-7)
    shifted = finite.train(NET, X, Y, SGD, 5, key=3, record=[2], batch_indices=np.roll(rows, 1, axis=1)[:, :8])
    assert not np.allclose(shifted.train[:, 0], implicit.train[:, 1])
