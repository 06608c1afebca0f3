"""The shared solver: every route on one small problem, against independent computations and each other."""

import dataclasses
import math

import jax
import numpy as np
import optax
import pytest

import infinite_width as iw
from infinite_width import kernels, optim
from infinite_width._src.rng import run_keys
from infinite_width.problem import Problem
from infinite_width.workflow import Record, Trajectory, compare, distance, fit_slope, method_for, solve
from infinite_width.workflow.plotting import accuracy_vs_width, distance_vs_width, learning_curves

ARCH = iw.mlp(2, "relu", W_std=1.3, b_std=0.2, out_dim=2)


def _data(seed=0, n=20, nt=10, d=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + nt, d)).astype(np.float32)
    labels = (x[:, 0] * x[:, 1] + x[:, 2] > 0).astype(int)
    return x, np.eye(2, dtype=np.float32)[labels]


@pytest.fixture(scope="module")
def problem():
    x, y = _data()
    return Problem(x[:20], y[:20], x[20:], y[20:], loss="mse", name="toy")


@pytest.fixture(scope="module")
def ce_problem(problem):
    return Problem(problem.x_train, problem.y_train, problem.x_test, problem.y_test, loss="cross_entropy")


# ---------------------------------------------------------------- Problem


def test_problem_validates_at_construction(problem):
    x, y = problem.x_train, problem.y_train
    xt, yt = problem.x_test, problem.y_test
    with pytest.raises(ValueError, match="x_train has 20 samples but y_train has 19"):
        Problem(x, y[:-1], xt, yt)
    with pytest.raises(ValueError, match="x_test has 10 samples but y_test has 9"):
        Problem(x, y, xt, yt[:-1])
    with pytest.raises(ValueError, match=r"y_train must have shape \(N, k\)"):
        Problem(x, y[:, 0], xt, yt)
    with pytest.raises(ValueError, match="k >= 2"):
        Problem(x, y[:, :1], xt, yt[:, :1], loss="cross_entropy")
    with pytest.raises(ValueError, match="one-hot rows or probabilities"):
        Problem(x, 2 * y, xt, yt, loss="cross_entropy")
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="x_train contains 1 NaN"):
        Problem(bad, y, xt, yt)
    with pytest.raises(ValueError, match="y_test contains"):
        Problem(x, y, xt, np.full_like(yt, np.inf))
    with pytest.raises(ValueError, match="feature shapes"):
        Problem(x, y, xt[:, :3], yt)
    with pytest.raises(ValueError, match="different numbers of outputs"):
        Problem(x, y, xt, np.concatenate([yt, yt], axis=1))
    with pytest.raises(TypeError, match="real numbers"):
        Problem(x.astype(str), y, xt, yt)
    with pytest.raises(ValueError, match="unknown loss"):
        Problem(x, y, xt, yt, loss="hinge")
    with pytest.raises(TypeError, match="datasets.Dataset"):
        Problem.from_dataset((x, y))


def test_problem_from_dataset():
    from infinite_width import datasets

    data = datasets.load("digits", n_train=50, n_test=30)
    p = Problem.from_dataset(data, loss="cross_entropy")
    assert (p.n_train, p.n_test, p.out_dim, p.loss, p.name) == (50, 30, 10, "cross_entropy", "digits")
    np.testing.assert_array_equal(p.x_train, data.x_train)


# ---------------------------------------------------------------- methods, routing and errors


def test_bad_solve_arguments_are_named(problem):
    sgd = optim.sgd(1.0)
    with pytest.raises(ValueError, match="width must be an integer >= 1 or math.inf"):
        solve(problem, ARCH, optimizer=sgd, width=0)
    with pytest.raises(ValueError, match="width"):
        solve(problem, ARCH, optimizer=sgd, width=100.5)
    conv = iw.conv(1, out_dim=2)
    strided = dataclasses.replace(conv, layers=(dataclasses.replace(conv.layers[0], strides=(2, 2)),)
                                  + conv.layers[1:])
    images = Problem(np.zeros((4, 4, 4, 1)) + np.arange(4)[:, None, None, None], problem.y_train[:4],
                     np.ones((2, 4, 4, 1)), problem.y_test[:2])
    with pytest.raises(ValueError, match=r"layer 0 \(Conv\) has strides"):  # the conv limit is stride 1
        solve(images, strided, optimizer=optim.adam(0.1), width=math.inf)
    no_readout = iw.Architecture(ARCH.layers + (iw.Activation("erf"),))
    with pytest.raises(ValueError, match="readout_only=True needs a readout layer"):
        solve(problem, no_readout, optimizer=sgd, width=math.inf, readout_only=True)
    with pytest.raises(ValueError, match="3 outputs but the targets have k = 2"):
        solve(problem, iw.mlp(1, out_dim=3), optimizer=sgd, width=math.inf)
    with pytest.raises(ValueError, match="takes image inputs"):
        solve(problem, conv, optimizer=sgd, width=math.inf)
    with pytest.raises(ValueError, match="exactly one of method"):
        solve(problem, ARCH, iw.KernelDynamics(), sgd, width=math.inf)
    with pytest.raises(ValueError, match="exactly one of method"):
        solve(problem, ARCH, optimizer=sgd)
    with pytest.raises(TypeError, match="method must be a method object"):
        solve(problem, ARCH, "ntk", sgd)
    with pytest.raises(ValueError, match="trains nothing: pass no optimizer"):
        solve(problem, ARCH, iw.KernelRidge(), sgd)
    with pytest.raises(ValueError, match="readout_only applies to trained methods"):
        solve(problem, ARCH, iw.Posterior(), readout_only=True)
    with pytest.raises(ValueError, match="Finite trains: give an optimizer"):
        solve(problem, ARCH, iw.Finite(8))
    with pytest.raises(TypeError, match="Optimizer"):
        solve(problem, ARCH, iw.Finite(8), "sgd")
    with pytest.raises(TypeError, match="readout_only must be True or False"):
        solve(problem, ARCH, iw.Finite(8), sgd, readout_only="readout")
    with pytest.raises(ValueError, match="KernelDynamics is the limit of sgd and momentum"):
        solve(problem, ARCH, iw.KernelDynamics(), optim.adam(0.1))
    with pytest.raises(ValueError, match="time='continuous'"):
        solve(problem, ARCH, iw.KernelDynamics(time="continuous"), sgd, batch_size=5)
    with pytest.raises(ValueError, match="batch_size 50 exceeds"):
        solve(problem, ARCH, optimizer=sgd, width=math.inf, batch_size=50)
    with pytest.raises(ValueError, match="recorded steps must lie in"):
        solve(problem, ARCH, optimizer=sgd, width=math.inf, steps=5, record=[0, 9])
    with pytest.raises(TypeError, match="key"):
        solve(problem, ARCH, optimizer=sgd, width=math.inf, key="seed")
    with pytest.raises(TypeError, match="Problem"):
        solve((problem.x_train, problem.y_train), ARCH, optimizer=sgd, width=math.inf)


def test_methods_check_their_options_when_built():
    for build, error, match in [
        (lambda: iw.Finite(0), ValueError, "width must be an integer >= 1"),
        (lambda: iw.Finite(8, seeds=0), ValueError, "seeds"),
        (lambda: iw.Finite(8, parametrization="sp"), ValueError, "parametrization must be one of"),
        (lambda: iw.Finite(8, init="zeros"), ValueError, "init must be one of"),
        (lambda: iw.Finite(8, centered="yes"), TypeError, "centered"),
        (lambda: iw.Finite(8, rates="adam"), ValueError, "rates must be one of"),
        (lambda: iw.Finite(8, linearized=1), TypeError, "linearized"),
        (lambda: iw.KernelDynamics(time="euler"), ValueError, "time must be one of"),
        (lambda: iw.KernelDynamics(dtype="float16"), ValueError, "dtype"),
        (lambda: iw.AdamLimit(samples=3, replicas=2), ValueError, r"multiple of replicas \(2\), e.g. 2"),
        (lambda: iw.AdamLimit(replicas=1), ValueError, "replicas must be an integer >= 2"),
        (lambda: iw.AdamLimit(samples=64, replicas=2, block_rows=0), ValueError, "block_rows"),
        (lambda: iw.AdamLimit(storage_dtype="int8"), ValueError, "storage_dtype"),
        (lambda: iw.Posterior(ridge=-1.0), ValueError, "ridge"),
        (lambda: iw.KernelRidge("rbf"), ValueError, "kernel must be one of"),
        (lambda: iw.KernelRidge("nnpk"), ValueError, "needs the width"),
        (lambda: iw.KernelRidge("ntk", width=32), ValueError, "has none"),
        (lambda: iw.KernelRidge("nnpk", width=32, networks=0), ValueError, "networks"),
    ]:
        with pytest.raises(error, match=match):
            build()


def test_width_shortcut_routes_to_the_method_objects(problem):
    assert method_for(math.inf, optim.sgd(1.0)) == iw.KernelDynamics()
    assert method_for(math.inf, optim.momentum(1.0)) == iw.KernelDynamics()
    assert method_for(math.inf, optim.adam(0.1)) == iw.AdamLimit()
    assert method_for(math.inf, optim.sign(0.1)) == iw.AdamLimit()
    assert method_for(16, optim.sign(0.1)) == iw.Finite(16)
    with pytest.raises(ValueError, match="give optimizer"):
        method_for(math.inf, None)
    short = solve(problem, ARCH, optimizer=optim.sgd(1.0), width=8, steps=3, key=2, progress=False)
    explicit = solve(problem, ARCH, iw.Finite(8), optim.sgd(1.0), steps=3, key=2, progress=False)
    np.testing.assert_array_equal(short.test_predictions, explicit.test_predictions)
    assert short.metadata["method"] == {"name": "Finite", "width": 8, "seeds": 1, "parametrization": "ntk",
                                        "init": "gaussian", "centered": True, "rates": "per_group",
                                        "linearized": False}
    assert short.metadata["optimizer"] == {"name": "sgd", "lr": 1.0} and short.metadata["readout_only"] is False


def test_record_policy():
    np.testing.assert_array_equal(Record().steps(5), np.arange(6))
    assert Record().steps(1000).tolist()[:3] == [0, 10, 20] and Record().steps(1000)[-1] == 1000
    np.testing.assert_array_equal(Record(count=3).steps(10), [0, 5, 10])
    np.testing.assert_array_equal(Record(at=[7, 0, 7]).steps(10), [0, 7])
    # log spacing: 0, then geometric from 1 to the last step (1, 100^(1/3), 100^(2/3), 100)
    np.testing.assert_array_equal(Record(count=5, spacing="log").steps(100), [0, 1, 5, 22, 100])
    assert Record(count=50, spacing="log").steps(10).tolist() == list(range(11))
    assert Record(at=(3,)).describe() == {"at": [3]}
    with pytest.raises(ValueError, match="count must be an integer >= 2"):
        Record(count=1)
    with pytest.raises(ValueError, match="spacing"):
        Record(spacing="cubic")
    with pytest.raises(ValueError, match=">= 0"):
        Record(at=[-1, 2])
    with pytest.raises(ValueError, match=r"must lie in \[0, 5\]"):
        Record(at=[0, 9]).steps(5)


# ---------------------------------------------------------------- kernel routes


def _explicit_kernel_gd(k_all, y, lr, total, beta=0.0, batches=None, ce=False):
    n, k = y.shape
    f, u = np.zeros((k_all.shape[0], k)), np.zeros((k_all.shape[0], k))
    out = [f.copy()]
    for step in range(total):
        rows = np.arange(n) if batches is None else batches[step]
        fb = f[rows]
        if ce:
            p = np.exp(fb - fb.max(1, keepdims=True))
            chi = (p / p.sum(1, keepdims=True) - y[rows]) / len(rows)
        else:
            chi = (fb - y[rows]) / fb.size
        u = beta * u + k_all[:, rows] @ chi
        f = f - lr * u
        out.append(f.copy())
    return np.stack(out)


@pytest.mark.parametrize(
    "opt, readout_only, batch_size, loss",
    [
        (optim.sgd(2.0), False, None, "mse"),
        (optim.sgd(2.0), True, None, "mse"),
        (optim.momentum(0.5, 0.8), False, None, "mse"),
        (optim.sgd(2.0), False, 5, "cross_entropy"),
        (optim.momentum(1.0, 0.5), True, 4, "cross_entropy"),
    ],
)
def test_kernel_routes_match_explicit_function_space_loops(problem, ce_problem, opt, readout_only, batch_size, loss):
    p = problem if loss == "mse" else ce_problem
    t = solve(p, ARCH, iw.KernelDynamics(dtype="float64"), opt, steps=12, readout_only=readout_only,
              batch_size=batch_size, key=3, progress=False)
    assert t.regime == ("nngp" if readout_only else "ntk")
    kernel = kernels.nngp if readout_only else kernels.ntk
    x_all = np.concatenate([p.x_train, p.x_test])
    k_all = kernel(ARCH, x_all, p.x_train, dtype="float64")
    batches = None
    if batch_size is not None:
        batches = iw.workflow.minibatch_order(3, p.n_train, batch_size, 12)  # the public order is solve's
    beta = opt.beta if opt.name == "momentum" else 0.0
    expected = _explicit_kernel_gd(k_all, p.y_train, opt.lr, 12, beta, batches, ce=(loss == "cross_entropy"))
    np.testing.assert_allclose(t.train_predictions[0], expected[:, :20], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.test_predictions[0], expected[:, 20:], rtol=1e-5, atol=1e-6)
    # losses and accuracies recomputed independently from the predictions
    if loss == "mse":
        np.testing.assert_allclose(t.train_loss[0], 0.5 * ((expected[:, :20] - p.y_train) ** 2).mean(axis=(1, 2)),
                                   rtol=1e-5)
    accuracy = (expected[:, 20:].argmax(-1) == p.y_test.argmax(-1)).mean(-1)
    np.testing.assert_allclose(t.test_accuracy[0], accuracy)


def test_discrete_time_approaches_continuous_time_at_rate_lr(problem):
    """At fixed t = lr * steps the discrete-GD/gradient-flow gap is O(lr): fitted slope about 1."""
    rates, gaps = [0.4, 0.2, 0.1], []
    for lr in rates:
        steps = int(round(20 / lr))
        discrete = solve(problem, ARCH, iw.KernelDynamics(), optim.sgd(lr), steps=steps, record=[steps],
                         progress=False)
        continuous = solve(problem, ARCH, iw.KernelDynamics(time="continuous"), optim.sgd(lr), steps=steps,
                           record=[steps], progress=False)
        assert continuous.metadata["method"]["time"] == "continuous"
        gaps.append(distance(discrete, continuous)[1][-1])
    assert 0.85 < fit_slope(rates, gaps)[0] < 1.15, gaps


def test_baselines_match_numpy_kernel_regression_and_gp_posterior(problem):
    ridge = 1e-3
    x_all = np.concatenate([problem.x_train, problem.x_test])
    methods = {"ntk_ridge": iw.KernelRidge("ntk", ridge=ridge, dtype="float64"),
               "nngp_ridge": iw.KernelRidge("nngp", ridge=ridge, dtype="float64"),
               "nngp_posterior": iw.Posterior(ridge=ridge, dtype="float64")}
    for regime, kernel in (("ntk_ridge", kernels.ntk), ("nngp_ridge", kernels.nngp), ("nngp_posterior", kernels.nngp)):
        t = solve(problem, ARCH, methods[regime], progress=False)
        assert t.is_static and t.steps.tolist() == [-1] and t.regime == regime
        k = kernel(ARCH, x_all, dtype="float64")
        k_tt = k[:20, :20]
        reg = k_tt + ridge * np.mean(np.diag(k_tt)) * np.eye(20)
        mean_test = k[20:, :20] @ np.linalg.solve(reg, problem.y_train)
        np.testing.assert_allclose(t.test_predictions[0, 0], mean_test, rtol=2e-4, atol=2e-5)
        if regime == "nngp_posterior":
            variance = np.diag(k[20:, 20:] - k[20:, :20] @ np.linalg.solve(reg, k[:20, 20:]))
            np.testing.assert_allclose(t.extras["test_variance"][:, 0], variance, rtol=1e-3, atol=1e-5)
    assert iw.Posterior().ridge == iw.KernelRidge().ridge == iw.workflow.DEFAULT_RIDGE == 1e-4


def test_nnpk_ridge_is_kernel_regression_with_the_nnpk(problem):
    t = solve(problem, ARCH, iw.KernelRidge("nnpk", ridge=1e-3, width=32, networks=64), key=5, progress=False)
    x_all = np.concatenate([problem.x_train, problem.x_test])
    k = kernels.nnpk(ARCH, x_all, problem.x_train, width=32, networks=64, key=run_keys(5).model,
                     normalize="mean")
    expected = k[20:] @ np.linalg.solve(k[:20] + 1e-3 * np.mean(np.diag(k[:20])) * np.eye(20), problem.y_train)
    np.testing.assert_allclose(t.test_predictions[0, 0], expected, rtol=1e-3, atol=1e-4)
    assert t.label == "nnpk_ridge w=32" and t.regime == "nnpk_ridge" and t.width == 32


# ---------------------------------------------------------------- finite and Adam-limit routes


def test_every_dynamical_route_has_one_layout_and_same_key_same_trajectory(problem):
    limit = iw.AdamLimit(samples=256, replicas=2)
    runs = {
        "finite": dict(method=iw.Finite(16, seeds=3), optimizer=optim.adam(0.05, 0.9, 0.99), batch_size=10),
        "adam_limit": dict(method=limit, optimizer=optim.adam(0.05, 0.9, 0.99)),
        "adam_limit_readout": dict(method=limit, optimizer=optim.sign(0.02), readout_only=True),
    }
    for name, kwargs in runs.items():
        a = solve(problem, ARCH, steps=6, key=7, progress=False, **kwargs)
        b = solve(problem, ARCH, steps=6, key=7, progress=False, **kwargs)
        c = solve(problem, ARCH, steps=6, key=8, progress=False, **kwargs)
        seeds = 3 if name == "finite" else 1
        assert a.train_predictions.shape == (seeds, 7, 20, 2) and a.test_predictions.shape == (seeds, 7, 10, 2)
        assert a.test_loss.shape == (seeds, 7) and a.diverged.shape == (seeds,) and not a.diverged.any()
        np.testing.assert_array_equal(a.test_predictions, b.test_predictions)
        assert not np.array_equal(a.test_predictions, c.test_predictions)
        assert np.all(a.test_predictions[:, 0] == 0)  # centered finite networks and limits start at 0
        if name.startswith("adam_limit"):
            assert a.regime == "adam_limit" and a.test_stderr.shape == (7, 10, 2)
            assert np.all(a.test_stderr[1:] > 0)
            # one accuracy per Monte Carlo replica and recorded step (the spread of the limit's accuracy)
            replica_accuracy = a.extras["replica_test_accuracy"]
            assert replica_accuracy.shape == (2, 7) and np.all((0 <= replica_accuracy) & (replica_accuracy <= 1))
            assert a.metadata["info"]["samples"] == 256 and a.metadata["info"]["replicas"] == 2
        else:
            assert a.regime == "finite" and a.test_stderr is None and a.seeds == 3
        for field in ("regime", "method", "label", "architecture", "optimizer", "readout_only", "width", "wall_time",
                      "versions", "device"):
            assert field in a.metadata
    assert a.metadata["versions"]["jax"] == jax.__version__


def test_uncentered_finite_networks_start_at_their_initial_outputs(problem):
    t = solve(problem, ARCH, iw.Finite(32, centered=False), optim.sgd(1.0), steps=2, progress=False)
    assert np.abs(t.test_predictions[0, 0]).max() > 0.1


def test_traditional_network_learns_where_limit_matched_rates_stay_at_chance():
    """Issue 13's reproducer, reduced: standard parametrization, adam(1e-3), not centered, cross-entropy.

    With one global optax rate (the practitioner's network) it learns; with the per-group rates of
    the Adam-like limit the same lr barely moves a wide network (test accuracy near chance, 0.1).
    """
    p = Problem.from_dataset(iw.datasets.load("digits", n_train=200, n_test=200), loss="cross_entropy")
    arch = iw.mlp(2, "relu", out_dim=10)
    traditional = iw.Finite.traditional(128, seeds=1)
    assert (traditional.parametrization, traditional.rates, traditional.centered) == ("standard", "global", False)
    kwargs = dict(steps=30, record=[30], progress=False)
    learned = solve(p, arch, traditional, optim.adam(1e-3), **kwargs)
    matched = solve(p, arch, iw.Finite(128, parametrization="standard", centered=False), optim.adam(1e-3), **kwargs)
    assert learned.final("test_accuracy")[0] > 0.6, learned.final("test_accuracy")
    assert matched.final("test_accuracy")[0] < 0.3, matched.final("test_accuracy")
    assert learned.metadata["method"]["rates"] == "global"


SLOPE_WIDTHS = (64, 256, 1024)


def _distances_to_limit(optimizer, limit_method, variants, steps=30):
    """{variant: relative RMS distances (per seed, averaged) of Finite(width, seeds=6, **variant) to the limit}."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(36, 6))
    y = np.tanh(x @ rng.normal(size=6) / 2)[:, None]
    p, arch = Problem(x[:24], y[:24], x[24:], y[24:]), iw.mlp(2, "relu", W_std=1.3, b_std=0.2, out_dim=1)
    limit = solve(p, arch, limit_method, optimizer, steps=steps, record=[0, steps], progress=False)
    reference = limit.test_predictions[0, -1]
    distances = {}
    for name, options in variants.items():
        distances[name] = []
        for width in SLOPE_WIDTHS:
            finite = solve(p, arch, iw.Finite(width, seeds=6, **options), optimizer, steps=steps, record=[0, steps],
                           key=1, progress=False)
            per_seed = np.sqrt(np.mean((finite.test_predictions[:, -1] - reference) ** 2, axis=(1, 2)))
            distances[name].append(np.sqrt(np.mean(per_seed**2)) / np.sqrt(np.mean(reference**2)))
    return distances


def _assert_inverse_sqrt_width(distances):
    slopes = {name: fit_slope(SLOPE_WIDTHS, values)[0] for name, values in distances.items()}
    for name, values in distances.items():
        assert values[-1] < 0.5 * values[0], (name, values)
        assert -0.8 < slopes[name] < -0.3, (slopes, distances)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, limit_method", [
    (optim.sgd(optax.warmup_cosine_decay_schedule(0.0, 1.0, 5, 30)), iw.KernelDynamics()),
    (optim.adam(optax.warmup_cosine_decay_schedule(0.0, 0.05, 5, 30), 0.9, 0.99), iw.AdamLimit(65536, 4)),
])
def test_trained_and_linearized_networks_approach_their_limits_under_a_schedule(optimizer, limit_method):
    """Relative RMS distance to the NTK (SGD) and Adam-like (Adam) limits under the same warmup-cosine
    schedule (factor 0 at steps 0 and 30), fitted slope about -1/2, for trained networks and for their
    linearizations (feature learning disabled in every layer). Without a schedule: test_training's and
    test_adam_limit_contract's slope tests."""
    _assert_inverse_sqrt_width(_distances_to_limit(optimizer, limit_method,
                                                   {"trained": {}, "linearized": {"linearized": True}}))


# ---------------------------------------------------------------- saving, comparing, plotting


def test_save_load_round_trip_of_every_field(problem, tmp_path):
    limit = solve(problem, ARCH, iw.AdamLimit(128, 2), optim.adam(0.05), steps=3, progress=False)
    posterior = solve(problem, ARCH, iw.Posterior(), progress=False)
    finite = solve(problem, ARCH, iw.Finite(8, seeds=2), optim.sgd(1.0), steps=3, progress=False)
    for t in (limit, posterior, finite):
        path = t.save(tmp_path / t.regime)
        loaded = Trajectory.load(path)
        assert loaded == t
        for field in ("steps", "train_predictions", "test_predictions", "train_loss", "test_loss",
                      "train_accuracy", "test_accuracy", "diverged"):
            np.testing.assert_array_equal(getattr(loaded, field), getattr(t, field))
            assert getattr(loaded, field).dtype == getattr(t, field).dtype
        assert loaded.metadata == t.metadata and loaded.extras.keys() == t.extras.keys()
        assert (loaded.test_stderr is None) == (t.test_stderr is None)
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temporary files
    changed = Trajectory.load(tmp_path / "finite.npz")
    changed.metadata["label"] = "other"
    assert changed != finite


def test_compare_table_rows_csv_and_distances(problem, tmp_path):
    ntk = solve(problem, ARCH, optimizer=optim.sgd(2.0), width=math.inf, steps=10, progress=False)
    finite = solve(problem, ARCH, iw.Finite(64, seeds=2), optim.sgd(2.0), steps=10, record=[0, 5, 10], progress=False)
    ridge = solve(problem, ARCH, iw.KernelRidge(), progress=False)
    table = compare([ntk, finite, ridge])
    rows = table.rows()
    assert [r["label"] for r in rows] == ["NTK sgd all", "w=64 sgd all", "ntk_ridge"]
    assert rows[1]["seeds"] == 2 and rows[1]["test_loss"] == pytest.approx(finite.test_loss[:, -1].mean())
    assert rows[1]["test_loss_std"] == pytest.approx(finite.test_loss[:, -1].std())
    distances = {(r["a"], r["b"]): r for r in table.distance_rows()}
    assert len(distances) == 3  # every pair
    assert distances[("NTK sgd all", "w=64 sgd all")]["step"] == 10
    assert distances[("NTK sgd all", "ntk_ridge")]["step"] == 10  # a baseline is constant in time
    expected = np.sqrt(np.mean((finite.test_predictions[:, -1].mean(0) - ntk.test_predictions[0, -1]) ** 2))
    expected /= np.sqrt(np.mean(ntk.test_predictions[0, -1] ** 2))
    to_limit = compare([finite], reference=ntk).distance_rows()
    assert [(r["a"], r["b"]) for r in to_limit] == [("w=64 sgd all", "NTK sgd all")]
    assert to_limit[0]["test_distance"] == pytest.approx(expected, rel=1e-5)
    text = str(table)
    assert "w=64 sgd all" in text and "relative RMS distance" in text
    csv_text = table.to_csv(tmp_path / "table.csv")
    lines = (tmp_path / "table.csv").read_text().splitlines()
    assert lines[0].split(",") == list(table.COLUMNS) and len(lines) == 4 and csv_text.splitlines() == lines
    only = compare({"f": finite, "n": ntk}, pairs=[("f", "n")]).distance_rows()
    assert len(only) == 1 and only[0]["test_distance"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="unknown trajectory 'g' in pairs; the keys are"):
        compare({"f": finite}, pairs=[("f", "g")])
    with pytest.raises(TypeError):
        compare([ntk, "x"])


def test_plots_write_pngs_and_fit_the_slope(problem, tmp_path):
    ntk = solve(problem, ARCH, optimizer=optim.sgd(2.0), width=math.inf, steps=8, progress=False)
    finite = [solve(problem, ARCH, iw.Finite(w, seeds=2), optim.sgd(2.0), steps=8, progress=False) for w in (8, 32, 128)]
    posterior = solve(problem, ARCH, iw.Posterior(), progress=False)
    learning_curves([ntk, posterior] + finite, path=tmp_path / "curves.png")
    accuracy_vs_width([ntk, posterior] + finite, path=[tmp_path / "width.png", tmp_path / "width.pdf"])
    _, slope = distance_vs_width(finite, ntk, path=tmp_path / "distance.png")
    for name in ("curves.png", "width.png", "distance.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert (tmp_path / "width.pdf").read_bytes()[:5] == b"%PDF-"
    finals = [distance(t, ntk)[1][-1] for t in finite]
    assert slope == pytest.approx(np.polyfit(np.log([8, 32, 128]), np.log(finals), 1)[0])
    with pytest.raises(ValueError, match="unknown metric"):
        learning_curves([ntk], metric="f1")


# ---------------------------------------------------------------- issue 9 regressions


@pytest.mark.parametrize("method, optimizer", [
    (iw.Finite(16), optim.sgd(1.0)),
    (iw.AdamLimit(256, 2), optim.adam(0.05)),
    (iw.KernelDynamics(), optim.sgd(1.0)),
])
def test_minibatches_with_a_record_list(problem, method, optimizer):
    """Issue 9, item 4: record=[0, 5] with batch_size=10 and steps=10 drew minibatches only up to step 5."""
    sparse = solve(problem, ARCH, method, optimizer, steps=10, record=[0, 5], batch_size=10, key=4, progress=False)
    dense = solve(problem, ARCH, method, optimizer, steps=10, record=[0, 5, 10], batch_size=10, key=4, progress=False)
    assert sparse.steps.tolist() == [0, 5]
    np.testing.assert_allclose(sparse.test_predictions, dense.test_predictions[:, :2], rtol=1e-6, atol=1e-7)


def test_every_route_runs_under_x64(problem):
    """Issue 9, item 5: every method of solve works with JAX's x64 mode on (deterministic ones as in float32)."""
    routes = [
        (iw.Finite(16, seeds=2), optim.adam(0.05), dict(batch_size=5), False),
        (iw.KernelDynamics(), optim.sgd(2.0), {}, True),
        (iw.KernelDynamics(), optim.momentum(1.0, 0.5), dict(batch_size=5, readout_only=True), False),
        (iw.AdamLimit(256, 2), optim.adam(0.05), dict(batch_size=5), False),
        (iw.Posterior(), None, {}, True),
        (iw.KernelRidge("nnpk", width=16, networks=8), None, {}, False),
    ]
    for method, optimizer, options, deterministic in routes:
        with jax.enable_x64(True):
            wide = solve(problem, ARCH, method, optimizer, steps=5, key=1, progress=False, **options)
        assert np.all(np.isfinite(wide.test_predictions)) and not wide.diverged.any(), method
        if deterministic:  # random draws differ in x64 mode; closed forms do not
            narrow = solve(problem, ARCH, method, optimizer, steps=5, key=1, progress=False, **options)
            np.testing.assert_allclose(wide.test_predictions, narrow.test_predictions, rtol=2e-3, atol=2e-4)


def test_divergence_counts_exploding_and_infinite_losses(problem):
    """Issue 9, item 8: NTK descent past max_learning_rate and sign(1e30) in the limit are flagged as diverged."""
    k = kernels.ntk(ARCH, problem.x_train)
    lr = 1.1 * kernels.max_learning_rate(k, problem.out_dim)
    with pytest.warns(RuntimeWarning, match="exceeds max_learning_rate"):
        unstable = solve(problem, ARCH, iw.KernelDynamics(), optim.sgd(lr), steps=100, progress=False)
    assert np.all(np.isfinite(unstable.train_loss)) and unstable.train_loss[0, -1] > 1e4 * unstable.train_loss[0, 0]
    assert unstable.diverged.tolist() == [True]
    stable = solve(problem, ARCH, iw.KernelDynamics(), optim.sgd(0.9 * lr), steps=100, progress=False)
    assert stable.diverged.tolist() == [False]
    with np.errstate(over="ignore"):
        huge = solve(problem, ARCH, iw.AdamLimit(128, 2), optim.sign(1e30), steps=2, progress=False)
    assert not np.all(np.isfinite(huge.train_loss)) and huge.diverged.tolist() == [True]


def test_minibatch_order_epochs_are_permutations_and_full_batch_is_every_row():
    order = iw.workflow.minibatch_order(3, 50, 10, 12)
    assert order.shape == (12, 10)
    for epoch in (order[:5], order[5:10]):
        assert sorted(epoch.ravel().tolist()) == list(range(50))
    assert not np.array_equal(order[:5], order[5:10])  # a fresh permutation each epoch
    assert not np.array_equal(order, iw.workflow.minibatch_order(4, 50, 10, 12))  # the key decides it
    np.testing.assert_array_equal(iw.workflow.minibatch_order(3, 50, None, 4), np.tile(np.arange(50), (4, 1)))
