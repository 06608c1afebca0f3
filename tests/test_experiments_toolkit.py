"""The experiments' toolkit: one validation split, one bootstrap, one resumable store, the tuning protocol."""

import math
import os
import warnings

import numpy as np
import pytest

from infinite_width.experiments.bootstrap import PairedBootstrap, accuracy_interval
from infinite_width.experiments.images import pool_images, pooled_problem
from infinite_width.experiments.store import Store, StoreFileError
from infinite_width.experiments.tuning import Budget, Grid, best_index, tune
from infinite_width.experiments.validation import Split
from infinite_width.problem import Problem

RNG = np.random.default_rng(0)
X = RNG.standard_normal((50, 3)).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[(X[:, 0] > 0).astype(int)]
PROBLEM = Problem(X[:30], Y[:30], X[30:], Y[30:], name="toy")


# ---------------------------------------------------------------- the validation split


def test_splits_carve_disjoint_points_and_parts_separate_predictions():
    held = Split.from_test_rows(PROBLEM, 8)
    assert (held.n_train, held.n_validation, held.n_test) == (30, 8, 12)
    np.testing.assert_array_equal(held.x_validation, X[30:38])
    np.testing.assert_array_equal(held.x_test, X[38:])
    evaluation = held.evaluation_problem()
    np.testing.assert_array_equal(evaluation.x_test, X[30:])  # validation then test, one solve scores both
    predictions = np.arange(2 * 20 * 2).reshape(2, 20, 2)
    validation, test = held.parts(predictions)
    assert validation.shape == (2, 8, 2) and test.shape == (2, 12, 2)
    np.testing.assert_array_equal(np.concatenate([validation, test], axis=1), predictions)

    carved = Split.from_training_rows(PROBLEM, 6)
    assert (carved.n_train, carved.n_validation, carved.n_test) == (24, 6, 20)
    np.testing.assert_array_equal(carved.x_validation, X[24:30])
    refit = carved.refit_problem()
    np.testing.assert_array_equal(refit.x_train, X[:30])  # refit on training and validation points
    assert carved.with_loss("cross_entropy").evaluation_problem().loss == "cross_entropy"


@pytest.mark.parametrize("make, match", [
    (lambda: Split.from_test_rows(PROBLEM, 20), "n_validation must lie in"),
    (lambda: Split.from_training_rows(PROBLEM, 0), "n_validation"),
    (lambda: Split.from_test_rows("data", 3), "Problem"),
    (lambda: Split.from_test_rows(PROBLEM, 5).parts(np.zeros((3, 19, 2))), "validation then test"),
])
def test_bad_splits_are_named(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


# ---------------------------------------------------------------- the bootstrap


def test_bootstrap_errors_match_the_binomial_and_the_paired_standard_errors():
    n = 800
    a = RNG.random(n) < 0.8
    b = a.copy()
    flip = RNG.choice(n, 80, replace=False)  # b differs from a on 80 points only
    b[flip] = ~b[flip]
    boot = PairedBootstrap({"a": a, "b": b}, resamples=4000, seed=1)
    p = a.mean()
    assert boot.accuracy("a") == p
    assert boot.standard_error("a") == pytest.approx(math.sqrt(p * (1 - p) / n), rel=0.08)
    difference = boot.difference("a", "b")
    d = a.astype(float) - b.astype(float)
    paired_se = d.std(ddof=1) / math.sqrt(n)
    assert difference["difference"] == pytest.approx(d.mean())
    assert difference["se"] == pytest.approx(paired_se, rel=0.08)
    # pairing matters: unpaired errors would add, sqrt(se_a^2 + se_b^2) is about twice the paired one here
    assert difference["se"] < 0.6 * math.hypot(boot.standard_error("a"), boot.standard_error("b"))
    low, high = difference["interval"]
    assert high - low == pytest.approx(2 * 1.96 * paired_se, rel=0.12)
    single = accuracy_interval(a, resamples=4000, seed=1)
    assert single["accuracy"] == p and single["low"] < p < single["high"]


def test_model_noise_adds_in_quadrature_and_ratios_use_the_same_draws():
    n = 1000
    a, b = RNG.random(n) < 0.7, RNG.random(n) < 0.6
    plain = PairedBootstrap({"a": a, "b": b}, resamples=4000, seed=2)
    noisy = PairedBootstrap({"a": a, "b": b}, resamples=4000, seed=2, model_se={"a": 0.02})
    assert noisy.standard_error("a") == pytest.approx(math.hypot(plain.standard_error("a"), 0.02), rel=0.08)
    assert noisy.standard_error("b") == plain.standard_error("b")
    low, high = plain.ratio_interval(("a", "b"), ("a", "b"))
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)


@pytest.mark.parametrize("correct, options, match", [
    ({"a": np.ones(5), "b": np.ones(6)}, {}, "same test points"),
    ({"a": np.array([0.0, 2.0])}, {}, r"\[0, 1\]"),
    ({"a": np.ones(5)}, {"model_se": {"c": 0.1}}, "not in correct"),
    ({"a": np.ones(5)}, {"model_se": {"a": -1.0}}, "model_se"),
    ({"a": np.ones(5)}, {"resamples": 3}, "resamples"),
])
def test_bad_bootstrap_input_is_named(correct, options, match):
    with pytest.raises(ValueError, match=match):
        PairedBootstrap(correct, **options)


# ---------------------------------------------------------------- the store


def test_store_computes_once_resumes_and_recomputes_changed_or_unreadable_results(tmp_path):
    store = Store(tmp_path / "runs")
    calls = []

    def compute(value):
        calls.append(value)
        return {"value": value, "curve": np.arange(3.0) * value, "flags": np.array([True, False]), "text": "x"}

    first = store.fetch("a", {"setting": 1.0, "problem": PROBLEM}, lambda: compute(1.0))
    again = Store(tmp_path / "runs").fetch("a", {"setting": 1.0, "problem": PROBLEM}, lambda: compute(9.0))
    assert calls == [1.0]  # read back, not recomputed
    np.testing.assert_array_equal(again["curve"], [0.0, 1.0, 2.0])
    assert again["flags"].dtype == bool and again["text"] == "x"
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)
    assert store.fetch("b", {"setting": 2.0}, lambda: compute(2.0), finished_only=True) is None
    assert calls == [1.0]
    # another job under the same name: recomputed with a warning
    with pytest.warns(UserWarning, match="holds a different job"):
        changed = store.fetch("a", {"setting": 3.0, "problem": PROBLEM}, lambda: compute(3.0))
    assert changed["value"] == 3.0
    # data that differ by one entry are another job too (problems are hashed by content)
    other = Problem(X[:30] + np.float32(1e-3) * (np.arange(30) == 0)[:, None], Y[:30], X[30:], Y[30:], name="toy")
    with pytest.warns(UserWarning, match="holds a different job"):
        store.fetch("a", {"setting": 3.0, "problem": other}, lambda: compute(4.0))
    # a truncated file: recomputed with a warning naming it; read() says what is wrong
    path = store.path("a")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(StoreFileError, match="a.npz"):
        store.read("a")
    with pytest.warns(UserWarning, match="a.npz"):
        assert store.fetch("a", {"setting": 5.0}, lambda: compute(5.0))["value"] == 5.0
    assert calls == [1.0, 3.0, 4.0, 5.0]


def test_store_removes_orphans_names_its_folder_and_refuses_bad_names(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    orphan = folder / ".a.npz.partial-999999-0123abcd.npz"  # a save killed mid-write, by a process that is gone
    orphan.write_bytes(b"partial")
    os.utime(orphan, (0, 0))
    kept = folder / "notes.txt"
    kept.write_text("mine")
    Store(folder)
    assert not orphan.exists() and kept.exists()
    with pytest.raises(ValueError, match="safe file name"):
        Store(folder).path("../escape")
    with pytest.raises(TypeError, match="dict"):
        Store(folder).fetch("c", {}, lambda: [1, 2])
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(PermissionError, match="locked"):
                Store(locked)
        finally:
            locked.chmod(0o700)


# ---------------------------------------------------------------- tuning


def test_grids_extend_beyond_a_winning_end_until_the_optimum_is_inside_or_a_bound_stops_them():
    grid = Grid((0.01, 0.03, 0.1), factor=3.0, low=1e-4, high=10.0)
    optimum = 2.0  # a validation score peaked at 2 on a log scale: the grid climbs until a value beyond 2 loses
    evaluated = []

    def evaluate(value):
        evaluated.append(value)
        return -abs(math.log(value / optimum)), 0.0

    results, best = tune(grid, evaluate)
    assert evaluated == [0.01, 0.03, 0.1, 0.3, 0.9, 2.7, 8.1]
    assert best == 2.7 and grid.landing(list(results), best) == "inside"
    # the bound stops the climb: an optimum above it lands at the upper bound
    results, best = tune(Grid((0.01, 0.03), factor=3.0, low=0.01, high=0.1), lambda v: (v, 0.0))
    assert sorted(results) == [0.01, 0.03, 0.09] and best == 0.09
    assert Grid((0.01, 0.03), 3.0, 0.01, 0.1).landing(list(results), best) == "at the upper bound"
    # down as well, and a single value is a fixed setting
    results, best = tune(Grid((1.0, 3.0), factor=10.0, low=1e-3, high=3.0), lambda v: (-v, 0.0))
    assert best == 1e-3 and sorted(results) == [1e-3, 0.01, 0.1, 1.0, 3.0]
    assert tune(Grid((1.0,), 3.0, 0.1, 10.0), lambda v: (v, 0.0))[0].keys() == {1.0}
    for bad in (dict(values=(), factor=3, low=1, high=2), dict(values=(1.0,), factor=1.0, low=0.1, high=2),
                dict(values=(5.0,), factor=3, low=0.1, high=2), dict(values=(1.0,), factor=3, low=0.0, high=2)):
        with pytest.raises(ValueError):
            Grid(**bad)


def test_budget_doubles_until_patience_is_seen_and_records_epochs():
    budget = Budget(batch_size=10, initial_epochs=4, patience=3, max_epochs=20, records=8)
    assert budget.steps_per_epoch(95) == 9
    assert budget.next_epochs(4, best_epoch=1) is None and budget.stopped_by(4, 1) == "patience"
    assert budget.next_epochs(4, best_epoch=2) == 8  # validation may still improve: twice the epochs
    assert budget.next_epochs(16, best_epoch=15) == 20  # up to the bound
    assert budget.next_epochs(20, best_epoch=20) is None and budget.stopped_by(20, 20) == "max_epochs"
    assert budget.recorded_epochs(6) == [0, 1, 2, 3, 4, 5, 6]
    assert budget.recorded_epochs(20) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    with pytest.raises(ValueError, match="exceeds"):
        budget.steps_per_epoch(5)
    with pytest.raises(ValueError, match="initial_epochs"):
        Budget(initial_epochs=30, max_epochs=20)


def test_best_index_prefers_accuracy_then_loss_then_the_earliest_and_nan_is_worst():
    assert best_index([0.5, 0.7, 0.7, 0.6], [1.0, 0.9, 0.8, 0.1]) == 2
    assert best_index([0.5, 0.7, 0.7], [1.0, 0.8, 0.8]) == 1
    assert best_index([np.nan, 0.2], [np.nan, 5.0]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert best_index([np.nan, np.nan], [np.nan, np.nan]) == 0


# ---------------------------------------------------------------- images


def test_pooling_averages_blocks_and_names_the_problem():
    images = RNG.standard_normal((6, 4, 4, 3)).astype(np.float32)
    pooled = pool_images(images, 2)
    assert pooled.shape == (6, 2, 2, 3) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[1, 0, 1, 2], images[1, 0:2, 2:4, 2].mean(), rtol=1e-6)

    class Data:  # the fields of a datasets.Dataset that pooled_problem reads
        name, x_train, y_train, x_test, y_test = "toy", images[:4], Y[:4], images[4:], Y[4:6]

    problem = pooled_problem(Data, 2)
    assert problem.x_train.shape == (4, 2, 2, 3) and problem.name == "toy pooled x2"
    assert pooled_problem(Data, 1).name == "toy"
