"""Metrics computed once from the predictions: divergence, the threshold of one output, recorded steps, labels.

Each test is a reproducer of issue 24 (or 21, for labels), checked against values worked out by hand.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infinite_width as iw
from infinite_width import finite, losses, optim
from infinite_width.predictions import Predictions
from infinite_width.workflow import Record
from infinite_width.workflow.metrics import EXPLOSION_FACTOR, to_trajectory

X = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)


def _classes(labels, k=3):
    return np.eye(k, dtype=np.float32)[labels]


# ------------------------------------------------------------------------------------------------ divergence


def test_a_finite_but_exploded_run_has_no_accuracy_from_the_step_it_diverged():
    """Issue 24: a diverged but finite run reported test accuracy 0.667 while final() said NaN."""
    labels_train, labels_test = np.array([0, 1, 2, 0]), np.array([0, 1, 2])
    problem = iw.Problem(X[:4], _classes(labels_train), X[4:], _classes(labels_test))
    good_train, good_test = 0.9 * problem.y_train, 0.9 * problem.y_test
    # the last record: the training outputs explode (1e4 x the zero function's loss) but their argmax is right,
    # and 2 of the 3 test rows still have the right argmax
    blown = 1e4 * problem.y_test
    blown[2] = 1e4 * _classes([0])[0]
    train = np.stack([np.zeros_like(good_train), good_train, 1e4 * problem.y_train])
    test = np.stack([np.zeros_like(good_test), good_test, blown])
    t = to_trajectory(problem, Predictions(np.array([0, 5, 10]), train[None], test[None]), {})
    zero_loss = 0.5 * np.mean(problem.y_train**2)
    assert t.train_loss[0, -1] > EXPLOSION_FACTOR * zero_loss
    assert t.diverged.tolist() == [True]
    np.testing.assert_allclose(t.test_accuracy[0], [1 / 3, 1.0, np.nan], rtol=1e-6)  # not 2/3 at step 10
    np.testing.assert_allclose(t.train_accuracy[0], [0.5, 1.0, np.nan], rtol=1e-6)  # argmax of zeros is class 0: 2 of 4
    assert math.isnan(t.final("test_accuracy")[0]) and math.isnan(t.final("train_loss")[0])
    row = iw.compare([t]).rows()[0]
    assert row["diverged"] == "1/1" and math.isnan(row["test_accuracy"])
    assert t.train_loss[0, -1] > 1e3  # the losses are kept, to show how it diverged


def test_an_exploding_test_loss_is_divergence_even_when_the_training_loss_is_zero():
    """Issue 24: cross-entropy kernel dynamics at lr 1e6 had train loss -0 and test loss 1.3e5 but diverged False."""
    problem = iw.Problem(X[:4], _classes([0, 1, 2, 0]), X[4:], _classes([0, 1, 2]), loss="cross_entropy")
    train = 1e6 * (2 * problem.y_train - 1)  # confidently right: log_softmax gives exactly 0
    test = 1e6 * (1 - 2 * problem.y_test)  # confidently wrong
    t = to_trajectory(problem, Predictions(np.array([0, 1]), np.stack([0 * train, train])[None],
                                           np.stack([0 * test, test])[None]), {})
    assert t.train_loss[0, -1] <= 0 and t.test_loss[0, -1] > EXPLOSION_FACTOR * math.log(3)
    assert t.diverged.tolist() == [True] and np.isnan(t.test_accuracy[0, -1])
    assert t.test_accuracy[0, 0] == pytest.approx(1 / 3)  # step 0 (the zero function) is before the divergence


def test_the_methods_own_verdict_counts_from_the_step_it_names():
    problem = iw.Problem(X[:4], _classes([0, 1, 2, 0]), X[4:], _classes([0, 1, 2]))
    train, test = np.repeat(problem.y_train[None], 3, 0), np.repeat(problem.y_test[None], 3, 0)
    flagged = Predictions(np.array([0, 5, 10]), np.stack([train, train]), np.stack([test, test]),
                          diverged=np.array([False, True]), first_nonfinite_step=np.array([-1, 5]))
    t = to_trajectory(problem, flagged, {})
    assert t.diverged.tolist() == [False, True]
    np.testing.assert_array_equal(t.test_accuracy, [[1, 1, 1], [1, np.nan, np.nan]])
    baseline = Predictions.at_infinity(problem.y_train, np.full_like(problem.y_test, np.nan))
    assert baseline.diverged.tolist() == [True]  # its only step is -1, which is no "first finite step"
    assert np.isnan(to_trajectory(problem, baseline, {}).test_accuracy).all()


# ------------------------------------------------------------------------------------------ one output, k = 1


def test_one_output_is_classified_at_the_midpoint_of_its_training_targets():
    """Issue 24: a k = 1 target in {0, 1} that ridge fits exactly reported train accuracy 0.5 (sign rule)."""
    y = np.array([[0.0], [1.0], [1.0], [0.0]], np.float32)
    assert float(losses.accuracy(y + 1e-6, y)) == 1.0  # once sign(1e-6) != sign(0): 0.5
    assert float(losses.accuracy(np.array([[0.4], [0.6], [0.9], [0.7]]), y)) == 0.75
    assert float(losses.binary_threshold(2 * y - 1)) == 0.0 and float(losses.binary_threshold(y)) == 0.5
    assert math.isnan(float(losses.accuracy(y, np.ones_like(y))))  # one class: nothing to tell apart
    problem = iw.Problem(X[:4], y, X[4:6], np.array([[1.0], [1.0]]))  # the test split holds one class only
    t = iw.solve(problem, iw.mlp(1), iw.KernelRidge("ntk", ridge=1e-6), progress=False)
    np.testing.assert_allclose(t.train_predictions[0, 0], y, atol=1e-3)
    assert t.train_accuracy[0, 0] == 1.0
    expected = np.mean(t.test_predictions[0, 0, :, 0] > 0.5)  # the training targets' threshold, on the test split
    assert t.test_accuracy[0, 0] == expected


# ----------------------------------------------------------------------------------------------- recording


@settings(max_examples=200, deadline=None, derandomize=True)
@given(steps=st.integers(1, 10**6), count=st.integers(2, 400), spacing=st.sampled_from(["linear", "log"]))
def test_record_gives_exactly_count_steps_from_0_to_the_last(steps, count, spacing):
    recorded = Record(count=count, spacing=spacing).steps(steps)
    assert recorded.size == min(count, steps + 1)
    assert recorded[0] == 0 and recorded[-1] == steps and np.all(np.diff(recorded) > 0)


def test_log_spacing_is_geometric():
    """Issue 24: Record(count=2, spacing="log") over 1,000 steps recorded 0, 1 and 1000."""
    np.testing.assert_array_equal(Record(count=2, spacing="log").steps(1000), [0, 1000])
    np.testing.assert_array_equal(Record(count=5, spacing="log").steps(1000), [0, 1, 10, 100, 1000])
    np.testing.assert_array_equal(Record(count=3, spacing="linear").steps(10), [0, 5, 10])


# ------------------------------------------------------------------------------------ 1-D integer labels


def test_integer_class_labels_become_one_hot_targets():
    problem = iw.Problem(X[:4], np.array([0, 2, 1, 2]), X[4:], [1, 0, 0])
    np.testing.assert_array_equal(problem.y_train, _classes([0, 2, 1, 2]))
    np.testing.assert_array_equal(problem.y_test, _classes([1, 0, 0]))  # k from both splits: 3
    assert problem.y_train.dtype == np.float32 and problem.out_dim == 3
    mixed = iw.Problem(X[:4], np.array([0, 1, 1, 0]), X[4:], np.eye(4)[[0, 1, 3]], loss="cross_entropy")
    assert mixed.y_train.shape == (4, 4)  # the one-hot split says k = 4
    net = finite.network(iw.mlp(1, out_dim=3), 4)
    by_labels = finite.train(net, X[:4], np.array([0, 2, 1, 2]), optim.sgd(0.1), 2, record=[2])
    by_rows = finite.train(net, X[:4], _classes([0, 2, 1, 2]), optim.sgd(0.1), 2, record=[2])
    np.testing.assert_array_equal(by_labels.train, by_rows.train)


@pytest.mark.parametrize("y_train, message", [
    (np.array([0.0, 1.0, 1.0, 0.0]), r"y_train must have shape \(N, k\) .* or hold 1-D integer class labels"),
    (np.zeros(4, int), "need k >= 2 classes, got k = 1; for one real output pass y_train.reshape"),
    (np.array([0, 1, -1, 0]), r"y_train holds class labels in \[-1, 1\], outside \[0, 2\)"),
])
def test_labels_that_cannot_be_classes_are_named(y_train, message):
    with pytest.raises(ValueError, match=message):
        iw.Problem(X[:4], y_train, X[4:], np.zeros(3, int) if y_train.dtype.kind == "i" else np.zeros((3, 1)))


def test_labels_beyond_the_outputs_are_named():
    with pytest.raises(ValueError, match=r"y_train holds class labels in \[0, 3\], outside \[0, 3\)"):
        finite.train(finite.network(iw.mlp(1, out_dim=3), 4), X[:4], np.array([0, 3, 1, 2]), optim.sgd(0.1), 1,
                     record=[1])
