"""The Sernau (2024) reproduction: runs checked against independent solves, early stopping and bracketing grids at
work, the claims read from paired intervals, the conv Adam-like limit entry, the plan, the figures."""

import dataclasses
import math

import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels, optim
from infinite_width.experiments import sernau
from infinite_width.experiments.bootstrap import PairedBootstrap
from infinite_width.experiments.images import pooled_problem
from infinite_width.experiments.store import Store
from infinite_width.experiments.tuning import Budget, Grid
from infinite_width.experiments.validation import Split

DIGITS = iw.datasets.load("digits", n_train=60, n_test=50, seed=0)
PROBLEM = iw.Problem(DIGITS.x_train, DIGITS.y_train, DIGITS.x_test, DIGITS.y_test, name="digits")
SPLIT = Split.from_test_rows(PROBLEM, 20)
BUDGET = Budget(batch_size=20, initial_epochs=2, patience=3, max_epochs=8)
ARCH = sernau.ARCHITECTURES["mlp2"].build(10)


def _config(**changes):
    return sernau.Config(**{**dict(n_train=(60,), widths=(8,), seeds=2, budget=BUDGET, samples=32, replicas=2,
                                   bootstrap=200), **changes})


def test_kernel_descent_runs_are_solves_stopped_early_and_extended_until_validation_stops_improving(tmp_path):
    regime = dataclasses.replace(sernau.REGIMES[[r.name for r in sernau.REGIMES].index("ntk_descent")],
                                 grid=Grid((0.5,), 2.0, 0.5, 0.5))
    config = _config(regimes=("ntk_descent",), grids=(("ntk_descent", regime.grid),))
    entries, notes = sernau.run({60: SPLIT}, config, tmp_path, progress=False)
    (entry,) = entries
    assert notes == [] and entry["landing"] == "single value"
    # Validation kept improving within 2 + 3 epochs: the budget doubled (2, 4, 8) until the patience was seen
    # or the bound reached; every budget's run is stored.
    runs = sorted(path.stem for path in (tmp_path / "runs").glob("*.npz"))
    assert [name.rsplit("-e", 1)[1] for name in runs] == sorted(str(e) for e in range(2, entry["epochs"] + 1)
                                                                 if e in (2, 4, 8))
    assert entry["stopped_by"] == ("patience" if entry["epochs"] - entry["best_epoch"] >= 3 else "max_epochs")
    assert entry["epochs"] > 2
    # Independently: the same descent by iw.solve (KernelDynamics, the same minibatch order from the same key),
    # scored on the validation points, has its best epoch where the entry says and the same test accuracy there.
    lr_max = kernels.max_learning_rate(np.asarray(kernels.ntk(ARCH, SPLIT.train.x_train, dtype="float64")), 10)
    steps_per_epoch = 60 // 20
    record = [e * steps_per_epoch for e in range(entry["epochs"] + 1)]
    evaluation = iw.solve(SPLIT.evaluation_problem(), ARCH, iw.KernelDynamics(), optim.sgd(0.5 * lr_max),
                          steps=entry["epochs"] * steps_per_epoch, batch_size=20, record=record, key=0,
                          progress=False)
    validation, test = SPLIT.parts(evaluation.test_predictions[0])
    accuracy = lambda f, y: (np.argmax(f, -1) == np.argmax(y, -1)).mean(-1)  # noqa: E731
    val_curve = accuracy(validation, SPLIT.y_validation)
    mse = 0.5 * ((validation - SPLIT.y_validation) ** 2).mean(axis=(-2, -1))
    best = max(range(len(record)), key=lambda i: (val_curve[i], -mse[i], -i))
    assert entry["best_epoch"] == best
    np.testing.assert_allclose(entry["record"]["validation_accuracy"][0], val_curve, atol=1.5 / 20)
    assert entry["record"]["test_accuracy"][0, entry["record"]["best"]] == pytest.approx(
        accuracy(test[best], SPLIT.y_test), abs=1.5 / 30)
    # A rerun reads everything back.
    mtimes = {path: path.stat().st_mtime_ns for path in (tmp_path / "runs").glob("*.npz")}
    again, _ = sernau.run({60: SPLIT}, config, tmp_path, progress=False)
    assert again[0]["run"] == entry["run"]
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "runs").glob("*.npz")} == mtimes


def test_network_runs_score_the_validation_points_as_a_solve_on_them_does(tmp_path):
    config = _config(regimes=("practitioner",), losses=("cross_entropy",),
                     grids=(("practitioner", Grid((1e-2,), 3.0, 1e-2, 1e-2)),),
                     budget=dataclasses.replace(BUDGET, max_epochs=2))
    (entry,), _ = sernau.run({60: SPLIT}, config, tmp_path, progress=False)
    assert entry["loss"] == "cross_entropy" and entry["epochs"] == 2 and entry["stopped_by"] in ("patience",
                                                                                                 "max_epochs")
    # The practitioner's network trained by iw.solve on the split's tuning problem (validation points only):
    # a network's prediction on a point does not depend on the other evaluated points.
    tuning = SPLIT.with_loss("cross_entropy").train
    trajectory = iw.solve(tuning, ARCH, iw.Finite.traditional(8, seeds=2), optim.adam(1e-2), steps=6, batch_size=20,
                          record=[0, 3, 6], key=0, progress=False)
    np.testing.assert_allclose(entry["record"]["validation_accuracy"], trajectory.test_accuracy, atol=1e-6)
    losses = np.array([[float(iw.losses.cross_entropy(f, tuning.y_test)) for f in seed]
                       for seed in trajectory.test_predictions])
    np.testing.assert_allclose(entry["record"]["validation_loss"], losses, rtol=1e-4)


def _rows_and_boot(accuracies, n=2000, seed=0):
    """Rows at one N and a paired bootstrap of models with the given test accuracies (independent points)."""
    rng = np.random.default_rng(seed)
    correct = {name: rng.random(n) < value for name, (value, _) in accuracies.items()}
    boot = PairedBootstrap(correct, resamples=2000, seed=1)
    roles = {r.name: r.role for r in sernau.REGIMES}
    rows = [dict(name=name, regime=regime, role=roles[regime], label=regime, loss="mse", width="inf",
                 validation_accuracy=value) for name, (value, regime) in accuracies.items()]
    return rows, boot


def test_claims_read_the_paired_intervals():
    rows, boot = _rows_and_boot({"trad": (0.95, "practitioner"), "lin": (0.93, "linearized"),
                                 "limit": (0.90, "adam_limit"), "ntk": (0.85, "ntk_descent"),
                                 "ridge": (0.80, "ntk_ridge"), "readout": (0.50, "readout")})
    one, two, three = sernau.claims(rows, boot)
    assert one["verdict"] == "supported" and one["numbers"]["worse"] == "ntk"  # the best kernel model on validation
    assert one["numbers"]["difference"] == pytest.approx(0.10, abs=0.03)
    assert two["verdict"] == "supported" and two["numbers"]["better"] == "lin"
    assert three["verdict"] == "not supported"  # the limit closes about half of the gap, not all of it
    assert three["numbers"]["fraction_closed"] == pytest.approx(0.5, abs=0.25)
    low, high = three["numbers"]["fraction_interval"]
    assert low < three["numbers"]["fraction_closed"] < high

    rows, boot = _rows_and_boot({"trad": (0.90, "practitioner"), "limit": (0.90, "adam_limit"),
                                 "ntk": (0.80, "ntk_descent"), "lin": (0.70, "linearized")}, seed=3)
    one, two, three = sernau.claims(rows, boot)
    assert three["verdict"] == "supported" and "contradict" in two["text"]

    rows, boot = _rows_and_boot({"trad": (0.80, "practitioner"), "ntk": (0.80, "ntk_descent")}, n=100)
    one, two, three = sernau.claims(rows, boot)
    assert one["verdict"] == "inconclusive" and two["verdict"] == three["verdict"] == "not run"


def test_the_conv_adam_limit_entry_runs_and_bad_configurations_are_named(tmp_path):
    images = iw.datasets.load("digits", n_train=20, n_test=20, seed=0, flatten=False)
    split = Split.from_test_rows(pooled_problem(images, 2), 10)
    # One learning rate (bounds at it, so no extension): the entry's path, not the tuning, is under test here.
    config = _config(arch="conv2", regimes=("adam_limit",), n_train=(20,),
                     grids=(("adam_limit", Grid((0.03,), 3.0, 0.03, 0.03)),))
    entries, notes = sernau.run({20: split}, config, tmp_path, progress=False)
    # The library has the conv limit (AdamLimit accepts conv2), so the entry runs instead of leaving a note.
    iw.AdamLimit().check(sernau.ARCHITECTURES["conv2"].build(10), optim.adam(1e-3), False, 20)
    assert notes == [] and [entry["regime"] for entry in entries] == ["adam_limit"]
    assert 0.0 <= entries[0]["record"]["test_accuracy"].min() <= entries[0]["record"]["test_accuracy"].max() <= 1.0
    for bad, match in ((dict(arch="resnet"), "unknown arch"), (dict(regimes=("ntk_descnt",)), "unknown regimes"),
                       (dict(losses=("hinge",)), "losses"), (dict(widths=()), "widths"),
                       (dict(samples=33), "multiple of replicas")):
        with pytest.raises(ValueError, match=match):
            _config(**bad)


def test_plan_calibrates_every_entry_and_estimates_from_the_measured_costs(tmp_path, capsys):
    config = _config(regimes=("ntk_descent", "ntk_ridge"))
    rows = sernau.plan({60: SPLIT}, config, tmp_path)
    names = [row["name"] for row in rows]
    assert names == ["closed-form kernels (once per N)", "n60-ntk_descent-mse", "n60-ntk_ridge-mse"]
    descent, ridge = rows[1], rows[2]
    assert descent["jobs"] == 3 and ridge["jobs"] == 4  # the first values of the table's grids
    assert descent["estimate_s"] == pytest.approx(3 * (descent["fixed_s"] + descent["epoch_s"] * 2))
    assert ridge["epoch_s"] == 0.0 and ridge["estimate_s"] == pytest.approx(4 * ridge["fixed_s"])
    assert all(row["typical_s"] >= row["estimate_s"] for row in rows)
    printed = capsys.readouterr().out
    assert "n60-ntk_descent-mse: 3 settings" in printed and "all sizes: at least" in printed
    # The calibration runs are stored: planning again measures nothing new.
    stored = sorted(Store(tmp_path / "plan").folder.glob("*.npz"))
    assert len(stored) == 1 + 2 + 1
    mtimes = {path: path.stat().st_mtime_ns for path in stored}
    sernau.plan({60: SPLIT}, config, tmp_path)
    assert {path: path.stat().st_mtime_ns for path in stored} == mtimes


def _results(title, ns=(100, 200)):
    """A results set of two regimes and the claims at every N, as write_results stores them."""
    rows, claims = [], {}
    for i, n in enumerate(ns):
        at_n, boot = _rows_and_boot({"practitioner-ce-w8": (0.8 + 0.05 * i, "practitioner"),
                                     "ntk_descent-mse": (0.85, "ntk_descent"), "adam_limit-mse": (0.82, "adam_limit")})
        for row in at_n:
            row.update(n_train=n, test_accuracy=boot.accuracy(row["name"]),
                       test_accuracy_err=boot.standard_error(row["name"]),
                       loss="cross_entropy" if row["regime"] == "practitioner" else "mse")
        rows += at_n
        claims[str(n)] = sernau.claims(at_n, boot)
    return title, dict(title=title, rows=rows, claims=claims)


def test_every_figure_has_one_legend_and_a_panel_per_results_set():
    sets = [_results("mnist, mlp2"), _results("cifar10, mlp2", ns=(100,))]
    figures = sernau.figures_of(sets)
    assert sorted(figures) == ["sernau_2024_accuracy", "sernau_2024_claim1", "sernau_2024_claim2",
                               "sernau_2024_claim3", "sernau_2024_learning_curves"]
    for name, figure in figures.items():
        assert len(figure.legends) == 1, name
        figure.canvas.draw()  # renders (log axes with their ticks, "not run" panels)
        legend = figure.legends[0].get_window_extent()
        assert legend.x0 >= 0 and legend.x1 <= figure.bbox.width + 1, name  # the legend is not clipped
    titles = [ax.get_title() for ax in figures["sernau_2024_claim2"].axes if ax.get_title()]
    assert titles == ["mnist, mlp2: claim 2", "cifar10, mlp2: claim 2"]
    texts = [t.get_text() for ax in figures["sernau_2024_claim2"].axes for t in ax.texts]
    assert texts == ["not run", "not run"]  # no frozen-feature network in these sets


def test_mc_and_seed_errors_widen_the_error_bars():
    # A deterministic model's error bar is the test points' (binomial); seeds add their spread over sqrt(seeds).
    n = 400
    labels = np.arange(n) % 10
    y = np.eye(10, dtype=np.float32)[labels]
    split = Split(iw.Problem(y[:2], y[:2], y[:2], y[:2]), np.zeros((n, 10), np.float32), y)
    right = np.eye(10, dtype=np.float32)[labels]
    wrong = np.eye(10, dtype=np.float32)[(labels + 1) % 10]
    one = np.where((np.arange(n) < 300)[:, None], right, wrong)[None]  # 75 % correct
    seeds = np.stack([np.where((np.arange(n) < c)[:, None], right, wrong) for c in (280, 320)])
    entry = lambda predictions: dict(n_train=2, record=dict(test_predictions=predictions,  # noqa: E731
                                                            diverged=np.zeros(len(predictions), bool)))
    correct, se, what = sernau._per_point(entry(one), split)
    assert correct.mean() == 0.75 and se == 0.0 and what == "test points"
    correct, se, what = sernau._per_point(entry(seeds), split)
    assert correct.mean() == 0.75 and se == pytest.approx(np.std([0.7, 0.8], ddof=1) / math.sqrt(2))
    assert what == "test points and 2 seeds"
