"""The Sernau (2024) reproduction's statistics: bootstrap error bars and the verdicts on the three claims."""

import math

import numpy as np
import pytest

from infinite_width.experiments import sernau
from infinite_width.problem import Problem
from infinite_width.workflow.trajectory import Trajectory


def _trajectory(predictions, test_stderr=None):
    """A one-step trajectory of (S, Nt, k) test predictions (train split unused)."""
    seeds = predictions.shape[0]
    zeros = np.zeros((seeds, 1))
    return Trajectory.from_arrays(steps=[5], train_predictions=predictions[:, None, :1], test_predictions=predictions[:, None],
                      train_loss=zeros, test_loss=zeros, train_accuracy=zeros, test_accuracy=zeros,
                      diverged=np.zeros(seeds, bool), train_stderr=None if test_stderr is None else
                      test_stderr[None, :1], test_stderr=None if test_stderr is None else test_stderr[None])


def test_bootstrap_spread_matches_the_binomial_standard_error():
    n, k, correct = 400, 3, 300
    labels = np.arange(n) % k
    y = np.eye(k)[labels]
    predicted = np.where(np.arange(n) < correct, labels, (labels + 1) % k)
    deterministic = _trajectory(np.eye(k)[predicted][None])
    # a limit with a vanishing Monte Carlo error behaves like a deterministic model
    limit = _trajectory(np.eye(k)[predicted][None], test_stderr=np.full((n, k), 1e-6))
    boot = sernau.bootstrap_accuracies({"kernel": dict(trajectory=deterministic), "limit": dict(trajectory=limit)},
                                       y, draws=4000, seed=3)
    binomial = math.sqrt(0.75 * 0.25 / n)
    for name in ("kernel", "limit"):
        assert boot[name].mean() == pytest.approx(0.75, abs=3 * binomial / math.sqrt(400))
        assert boot[name].std() == pytest.approx(binomial, rel=0.07)
    # paired: the same resampled test points for both
    np.testing.assert_array_equal(boot["kernel"], boot["limit"])


def _entries_and_boot(accuracies, spread=0.005, draws=2000):
    """Entries (validation accuracy = mean) and bootstrap draws around the given mean test accuracies."""
    rng = np.random.default_rng(0)
    entries, boot = {}, {}
    for regime, mean in accuracies.items():
        entries[regime] = dict(regime=regime, depth=2, validation_accuracy=mean)
        boot[regime] = mean + spread * rng.standard_normal(draws)
    return entries, boot


def test_claims_read_the_paired_intervals():
    entries, boot = _entries_and_boot(dict(traditional_adam=0.95, linearized_adam=0.93, adam_limit=0.90,
                                           ntk_descent=0.85, ntk_ridge=0.80, readout_adam=0.50))
    one, two, three = sernau.claims(entries, boot, depth=2)
    # claim 1 against the best kernel model on validation (NTK descent), claim 2 with the best frozen network
    assert one["verdict"] == "supported" and one["numbers"]["worse"] == "ntk_descent"
    assert one["numbers"]["difference"] == pytest.approx(0.10, abs=0.002)
    assert two["verdict"] == "supported" and two["numbers"]["better"] == "linearized_adam"
    # the limit closes (0.90 - 0.85) / (0.95 - 0.85) = half of the gap: not all of it
    assert three["verdict"] == "not supported"
    assert three["numbers"]["fraction_closed"] == pytest.approx(0.5, abs=0.02)
    low, high = three["numbers"]["fraction_interval"]
    assert low < 0.5 < high and high - low < 0.3

    entries, boot = _entries_and_boot(dict(traditional_adam=0.90, adam_limit=0.90, ntk_descent=0.80,
                                           linearized_adam=0.70))
    one, two, three = sernau.claims(entries, boot, depth=2)
    assert three["verdict"] == "supported" and three["numbers"]["fraction_closed"] == pytest.approx(1.0, abs=0.03)
    assert two["verdict"] == "not supported" and "contradict" in two["text"]  # the kernel beats the frozen network

    entries, boot = _entries_and_boot(dict(traditional_adam=0.80, adam_limit=0.85, ntk_descent=0.80), spread=0.05)
    assert sernau.claims(entries, boot, depth=2)[0]["verdict"] == "inconclusive at this size"
    assert sernau.claims(entries, boot, depth=3)[0]["verdict"] == "not run"  # no entry at that depth


def test_bad_configuration_and_split_are_named():
    with pytest.raises(ValueError, match="unknown regimes"):
        sernau.Config(regimes=("ntk_descent", "adam_lmit"))
    with pytest.raises(ValueError, match="widths"):
        sernau.Config(widths=())
    x, y = np.zeros((10, 3), np.float32), np.eye(2, dtype=np.float32)[np.arange(10) % 2]
    with pytest.raises(ValueError, match="validation"):
        sernau.split_validation(Problem(x, y, x, y), 10)
    split = sernau.split_validation(Problem(x, y, x[:4], y[:4]), 3)
    assert (split.n_train, split.n_test) == (7, 3)


def test_tuning_limits_are_flagged():
    # a best setting at an end of its grid, or a best step at the budget, may mean the budget bounded the regime
    assert sernau._limited_by(dict(grid=[0.01, 0.03], setting=0.03, step=200, steps=200)) == "grid max, step budget"
    assert sernau._limited_by(dict(grid=[0.01, 0.03, 0.1], setting=0.03, step=50, steps=200)) == ""
    assert sernau._limited_by(dict(grid=[1e-4, 1e-1], setting=1e-4, step=None, steps=200)) == "grid min"
