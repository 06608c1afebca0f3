"""Comparisons never pass a partly diverged ensemble off as healthy, nor a NaN prediction as an accuracy."""

import csv
import io

import numpy as np
import pytest

import infinite_width as iw
from infinite_width import optim
from infinite_width.problem import Problem
from infinite_width.workflow import Trajectory


def test_partly_diverged_ensembles_show_diverged_k_of_s_everywhere_metrics_are_averaged():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    y = np.eye(2)[(x[:, 0] > 0).astype(int)]
    problem = Problem(x[:8], y[:8], x[8:], y[8:])
    # Width 4 at a large rate: some of the 8 seeds blow up, the others train.
    ensemble = iw.solve(problem, iw.mlp(1, out_dim=2), iw.Finite(4, seeds=8), optim.sgd(3.0), steps=30, record=[0, 30],
                        progress=False)
    diverged = int(ensemble.diverged.sum())
    assert 0 < diverged < 8, ensemble.diverged
    # A diverged seed has no accuracy (argmax of NaN would have counted as class 0).
    assert np.all(np.isnan(ensemble.test_accuracy[ensemble.diverged, -1]))
    assert np.all(np.isfinite(ensemble.test_accuracy[~ensemble.diverged, -1]))
    keep = ~ensemble.diverged  # the seeds that trained, as an ensemble of their own
    healthy = Trajectory.from_arrays(
        **{name: getattr(ensemble, name)[keep] for name in ("train_predictions", "test_predictions", "train_loss",
                                                             "test_loss", "train_accuracy", "test_accuracy",
                                                             "diverged")},
        steps=ensemble.steps, metadata={**ensemble.metadata, "label": "healthy"},
    )
    table = iw.compare([ensemble, healthy])

    rows = table.rows()
    trained = f"0/{8 - diverged}"
    assert [row["diverged"] for row in rows] == [f"{diverged}/8", trained]
    assert rows[0]["test_accuracy"] == np.mean(ensemble.test_accuracy[keep, -1]) == rows[1]["test_accuracy"]
    csv_rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [row["diverged"] for row in csv_rows] == [f"{diverged}/8", trained]
    assert [row["seeds"] for row in csv_rows] == ["8", str(8 - diverged)]

    text = str(table)
    header, rule, first, second = text.splitlines()[:4]
    assert "diverged" in header.split() and f"{diverged}/8" in first.split() and trained in second.split()
    assert len({len(header), len(rule), len(first), len(second)}) == 1  # the new column keeps the table aligned
    warning = text.splitlines()[4]
    assert warning.startswith(f"WARNING: seeds diverged in {ensemble.label}:") and "healthy" not in warning
    assert "WARNING" not in str(iw.compare([healthy]))


def _two_problems():
    rng = np.random.default_rng(3)
    x, other = rng.normal(size=(12, 3)), rng.normal(size=(4, 3))
    y = np.tanh(x[:, :1])
    same = Problem(x[:8], y[:8], x[8:], y[8:])
    return same, Problem(x[:8], y[:8], other, np.tanh(other[:, :1]))  # the same training set, another test set


def test_distances_between_solves_on_different_inputs_are_refused_or_left_out_with_a_message():
    """Issue 24: compare(reference=) of a problem with another test set printed distances as if comparable."""
    problem, other_test = _two_problems()
    arch = iw.mlp(1)
    reference = iw.solve(problem, arch, iw.KernelRidge("ntk"), progress=False)
    moved = iw.solve(other_test, arch, iw.KernelRidge("ntk"), label="other test set", progress=False)
    same = iw.solve(problem, arch, iw.Posterior(), progress=False)
    with pytest.raises(ValueError, match="not comparable: different test inputs"):
        iw.workflow.distance(moved, reference)
    # the training inputs are shared, and so is the fit: the same function on them
    np.testing.assert_array_equal(iw.workflow.distance(moved, reference, "train")[1], [0.0])
    table = iw.compare([moved, same], reference=reference)
    rows = {row["a"]: row for row in table.distance_rows()}
    assert rows["other test set"]["test_distance"] is None and rows["other test set"]["train_distance"] == 0
    assert rows["nngp_posterior"]["test_distance"] > 0
    assert table.left_out() == [("other test set", "ntk_ridge",
                                 f"different test inputs (checksums {other_test.checksums['x_test']} and "
                                 f"{problem.checksums['x_test']})")]
    assert "not compared: other test set with ntk_ridge: different test inputs" in str(table)
    # different data of another shape: no distance at all, and no row
    wider = Problem(problem.x_train[:6], problem.y_train[:6], problem.x_test, problem.y_test)
    fewer = iw.solve(wider, arch, iw.KernelRidge("ntk"), label="fewer", progress=False)
    both = iw.compare([fewer, moved], pairs=[("fewer", "other test set")])
    assert both.distance_rows() == [] and len(both.left_out()) == 2


def test_pairs_name_the_unknown_or_ambiguous_label():
    """Issue 24: compare(pairs=...) with an unknown label named another label."""
    problem, _ = _two_problems()
    arch = iw.mlp(1)
    a = iw.solve(problem, arch, iw.KernelRidge("ntk"), label="a", progress=False)
    b = iw.solve(problem, arch, iw.Posterior(), label="b", progress=False)
    assert iw.compare([a, b], pairs=[("a", "b")]).pairs == [(a, b)]  # labels of a list
    with pytest.raises(ValueError, match=r"unknown trajectory 'zz' in pairs; the labels are \['a', 'b'\]"):
        iw.compare([a, b], pairs=[("a", "zz")])
    with pytest.raises(ValueError, match=r"unknown trajectory 'a' in pairs; the keys are \['x', 'y'\]"):
        iw.compare({"x": a, "y": b}, pairs=[("a", "y")])
    with pytest.raises(ValueError, match="2 trajectories have the label 'a'"):
        iw.compare([a, a], pairs=[("a", "a")])
