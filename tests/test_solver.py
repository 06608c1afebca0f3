"""The shared solver: every route on one small problem, against independent computations and each other."""

import math

import jax
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels, optim
from infinite_width._src.rng import batch_indices_for, split_run_key
from infinite_width.problem import Problem
from infinite_width.workflow import BASELINES, Trajectory, compare, distance, fit_slope, record_steps, solve
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


# ---------------------------------------------------------------- routing errors


def test_bad_solve_arguments_are_named(problem):
    sgd = optim.sgd(1.0)
    with pytest.raises(ValueError, match="width must be an integer >= 1 or math.inf"):
        solve(problem, ARCH, sgd, width=0)
    with pytest.raises(ValueError, match="width"):
        solve(problem, ARCH, sgd, width=100.5)
    conv = iw.conv(1, out_dim=2)
    images = Problem(np.zeros((4, 4, 4, 1)) + np.arange(4)[:, None, None, None], problem.y_train[:4],
                     np.ones((2, 4, 4, 1)), problem.y_test[:2])
    with pytest.raises(ValueError, match="Adam-like limit.*MLPs"):
        solve(images, conv, optim.adam(0.1), width=math.inf)
    no_readout = iw.Architecture(ARCH.layers + (iw.Activation("erf"),))
    with pytest.raises(ValueError, match="train='readout' needs a readout layer"):
        solve(problem, no_readout, sgd, train="readout")
    with pytest.raises(ValueError, match="3 outputs but the targets have k = 2"):
        solve(problem, iw.mlp(1, out_dim=3), sgd)
    with pytest.raises(ValueError, match="takes image inputs"):
        solve(problem, conv, sgd)
    with pytest.raises(ValueError, match="not a baseline"):
        solve(problem, ARCH, regime="ntk")
    with pytest.raises(ValueError, match="pass optimizer=None"):
        solve(problem, ARCH, sgd, regime="ntk_ridge")
    with pytest.raises(ValueError, match="give an optimizer"):
        solve(problem, ARCH)
    with pytest.raises(TypeError, match="Optimizer"):
        solve(problem, ARCH, "sgd")
    with pytest.raises(ValueError, match="train must be"):
        solve(problem, ARCH, sgd, train="hidden")
    with pytest.raises(ValueError, match="time='continuous'"):
        solve(problem, ARCH, sgd, batch_size=5, time="continuous")
    with pytest.raises(ValueError, match="time must be"):
        solve(problem, ARCH, sgd, time="euler")
    with pytest.raises(ValueError, match="nnpk_ridge needs a finite width"):
        solve(problem, ARCH, regime="nnpk_ridge")
    with pytest.raises(ValueError, match="batch_size 50 exceeds"):
        solve(problem, ARCH, sgd, batch_size=50)
    with pytest.raises(ValueError, match="recorded steps must lie in"):
        solve(problem, ARCH, sgd, steps=5, record=[0, 9])
    with pytest.raises(ValueError, match="seeds"):
        solve(problem, ARCH, sgd, width=8, seeds=0)
    with pytest.raises(TypeError, match="key"):
        solve(problem, ARCH, sgd, key="seed")
    with pytest.raises(TypeError, match="Problem"):
        solve((problem.x_train, problem.y_train), ARCH, sgd)


def test_record_steps():
    np.testing.assert_array_equal(record_steps(5), np.arange(6))
    assert record_steps(1000).tolist()[:3] == [0, 10, 20] and record_steps(1000)[-1] == 1000
    np.testing.assert_array_equal(record_steps(10, 3), [0, 5, 10])
    np.testing.assert_array_equal(record_steps(10, [7, 0, 7]), [0, 7])


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
    "opt, train, batch_size, loss",
    [
        (optim.sgd(2.0), "all", None, "mse"),
        (optim.sgd(2.0), "readout", None, "mse"),
        (optim.momentum(0.5, 0.8), "all", None, "mse"),
        (optim.sgd(2.0), "all", 5, "cross_entropy"),
        (optim.momentum(1.0, 0.5), "readout", 4, "cross_entropy"),
    ],
)
def test_kernel_routes_match_explicit_function_space_loops(problem, ce_problem, opt, train, batch_size, loss):
    p = problem if loss == "mse" else ce_problem
    t = solve(p, ARCH, opt, steps=12, train=train, batch_size=batch_size, key=3, dtype="float64", progress=False)
    assert t.regime == ("ntk" if train == "all" else "nngp")
    kernel = kernels.ntk if train == "all" else kernels.nngp
    x_all = np.concatenate([p.x_train, p.x_test])
    k_all = kernel(ARCH, x_all, p.x_train, dtype="float64")
    batches = None
    if batch_size is not None:
        batches = batch_indices_for(3, p.n_train, batch_size, 12)
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
        discrete = solve(problem, ARCH, optim.sgd(lr), steps=steps, record=[steps], progress=False)
        continuous = solve(problem, ARCH, optim.sgd(lr), steps=steps, record=[steps], time="continuous",
                           progress=False)
        assert continuous.metadata["time"] == "continuous"
        gaps.append(distance(discrete, continuous)[1][-1])
    assert 0.85 < fit_slope(rates, gaps)[0] < 1.15, gaps


def test_baselines_match_numpy_kernel_regression_and_gp_posterior(problem):
    ridge = 1e-3
    x_all = np.concatenate([problem.x_train, problem.x_test])
    for regime, kernel in (("ntk_ridge", kernels.ntk), ("nngp_ridge", kernels.nngp), ("nngp_posterior", kernels.nngp)):
        t = solve(problem, ARCH, regime=regime, ridge=ridge, dtype="float64", progress=False)
        assert t.is_static and t.steps.tolist() == [-1] and t.regime == regime
        k = kernel(ARCH, x_all, dtype="float64")
        k_tt = k[:20, :20]
        reg = k_tt + ridge * np.mean(np.diag(k_tt)) * np.eye(20)
        mean_test = k[20:, :20] @ np.linalg.solve(reg, problem.y_train)
        np.testing.assert_allclose(t.test_predictions[0, 0], mean_test, rtol=2e-4, atol=2e-5)
        if regime == "nngp_posterior":
            variance = np.diag(k[20:, 20:] - k[20:, :20] @ np.linalg.solve(reg, k[:20, 20:]))
            np.testing.assert_allclose(t.extras["test_variance"][:, 0], variance, rtol=1e-3, atol=1e-5)
    assert set(BASELINES) == {"nngp_posterior", "ntk_ridge", "nngp_ridge", "nnpk_ridge"}


def test_nnpk_ridge_is_kernel_regression_with_the_nnpk(problem):
    t = solve(problem, ARCH, regime="nnpk_ridge", width=32, samples=64, key=5, ridge=1e-3, progress=False)
    x_all = np.concatenate([problem.x_train, problem.x_test])
    k = kernels.nnpk(ARCH, x_all, problem.x_train, width=32, networks=64, key=split_run_key(5)[0],
                     normalize="mean")
    expected = k[20:] @ np.linalg.solve(k[:20] + 1e-3 * np.mean(np.diag(k[:20])) * np.eye(20), problem.y_train)
    np.testing.assert_allclose(t.test_predictions[0, 0], expected, rtol=1e-3, atol=1e-4)
    assert t.label == "nnpk_ridge w=32"


# ---------------------------------------------------------------- finite and Adam-limit routes


def test_every_dynamical_route_has_one_layout_and_same_key_same_trajectory(problem):
    runs = {
        "finite": dict(optimizer=optim.adam(0.05, 0.9, 0.99), width=16, seeds=3, batch_size=10),
        "adam_limit": dict(optimizer=optim.adam(0.05, 0.9, 0.99), samples=256, replicas=2),
        "adam_limit_readout": dict(optimizer=optim.sign(0.02), samples=256, replicas=2, train="readout"),
    }
    for name, kwargs in runs.items():
        a = solve(problem, ARCH, steps=6, key=7, progress=False, **kwargs)
        b = solve(problem, ARCH, steps=6, key=7, progress=False, **kwargs)
        c = solve(problem, ARCH, steps=6, key=8, progress=False, **kwargs)
        seeds = kwargs.get("seeds", 1)
        assert a.train_predictions.shape == (seeds, 7, 20, 2) and a.test_predictions.shape == (seeds, 7, 10, 2)
        assert a.test_loss.shape == (seeds, 7) and a.diverged.shape == (seeds,) and not a.diverged.any()
        np.testing.assert_array_equal(a.test_predictions, b.test_predictions)
        assert not np.array_equal(a.test_predictions, c.test_predictions)
        assert np.all(a.test_predictions[:, 0] == 0)  # centred finite networks and limits start at 0
        if name.startswith("adam_limit"):
            assert a.regime == "adam_limit" and a.test_stderr.shape == (7, 10, 2)
            assert np.all(a.test_stderr[1:] > 0)
        else:
            assert a.regime == "finite" and a.test_stderr is None and a.seeds == 3
        for field in ("regime", "label", "architecture", "optimizer", "width", "wall_time", "versions", "device"):
            assert field in a.metadata
    assert a.metadata["versions"]["jax"] == jax.__version__


def test_uncentred_finite_networks_start_at_their_initial_outputs(problem):
    t = solve(problem, ARCH, optim.sgd(1.0), width=32, steps=2, centred=False, progress=False)
    assert np.abs(t.test_predictions[0, 0]).max() > 0.1


@pytest.mark.slow
def test_finite_networks_approach_their_limits_like_width_to_the_minus_half():
    """Relative RMS distance (per seed, averaged) to the NTK (SGD) and Adam-like (Adam) limits, fitted slope."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(36, 6))
    y = np.tanh(x @ rng.normal(size=6) / 2)[:, None]
    p = Problem(x[:24], y[:24], x[24:], y[24:])
    arch = iw.mlp(2, "relu", W_std=1.3, b_std=0.2, out_dim=1)
    widths = [64, 256, 1024]
    slopes = {}
    for opt, options in ((optim.sgd(1.0), {}), (optim.adam(0.05, 0.9, 0.99), dict(samples=65536, replicas=4))):
        limit = solve(p, arch, opt, steps=30, record=[0, 30], progress=False, **options)
        reference = limit.test_predictions[0, -1]
        distances = []
        for width in widths:
            finite = solve(p, arch, opt, width=width, steps=30, record=[0, 30], seeds=6, key=1, progress=False)
            per_seed = np.sqrt(np.mean((finite.test_predictions[:, -1] - reference) ** 2, axis=(1, 2)))
            distances.append(np.sqrt(np.mean(per_seed**2)) / np.sqrt(np.mean(reference**2)))
        slopes[opt.name] = fit_slope(widths, distances)[0]
        assert distances[-1] < 0.5 * distances[0], (opt.name, distances)
    for name, slope in slopes.items():
        assert -0.8 < slope < -0.3, slopes


# ---------------------------------------------------------------- saving, comparing, plotting


def test_save_load_round_trip_of_every_field(problem, tmp_path):
    limit = solve(problem, ARCH, optim.adam(0.05), steps=3, samples=128, replicas=2, progress=False)
    posterior = solve(problem, ARCH, regime="nngp_posterior", progress=False)
    finite = solve(problem, ARCH, optim.sgd(1.0), width=8, seeds=2, steps=3, progress=False)
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
    ntk = solve(problem, ARCH, optim.sgd(2.0), steps=10, progress=False)
    finite = solve(problem, ARCH, optim.sgd(2.0), width=64, seeds=2, steps=10, record=[0, 5, 10], progress=False)
    ridge = solve(problem, ARCH, regime="ntk_ridge", progress=False)
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
    with pytest.raises(ValueError, match="unknown trajectory name"):
        compare({"f": finite}, pairs=[("f", "g")])
    with pytest.raises(TypeError):
        compare([ntk, "x"])


def test_plots_write_pngs_and_fit_the_slope(problem, tmp_path):
    ntk = solve(problem, ARCH, optim.sgd(2.0), steps=8, progress=False)
    finite = [solve(problem, ARCH, optim.sgd(2.0), width=w, steps=8, seeds=2, progress=False) for w in (8, 32, 128)]
    posterior = solve(problem, ARCH, regime="nngp_posterior", progress=False)
    learning_curves([ntk, posterior] + finite, path=tmp_path / "curves.png")
    accuracy_vs_width([ntk, posterior] + finite, path=tmp_path / "width.png")
    _, slope = distance_vs_width(finite, ntk, path=tmp_path / "distance.png")
    for name in ("curves.png", "width.png", "distance.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    finals = [distance(t, ntk)[1][-1] for t in finite]
    assert slope == pytest.approx(np.polyfit(np.log([8, 32, 128]), np.log(finals), 1)[0])
    with pytest.raises(ValueError, match="unknown metric"):
        learning_curves([ntk], metric="f1")
