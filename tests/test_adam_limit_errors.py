"""Honest error bars of the Adam-like limit's Monte Carlo engine, and a check that variance reduction keeps the mean.

The engine reports the standard error of its mean prediction from the spread of
R independent replicas (docs/theory.md, section 7). Here that claim is checked
against what it promises, on a problem small enough to solve with many
independent keys in seconds:

* the reported standard error against the spread of the means over
  independent keys (their ratio within 0.85-1.15), with exact roots and with
  truncated roots, whose random features of the residual are part of every
  replica's randomness (they must be inside the error bars too);
* the coverage of the 95% intervals ``mean +- t_{0.975, R-1} se``: measured
  0.94-0.96 (each key's interval against the mean of the other keys, whose own
  error is added in quadrature), asserted within 0.90-0.99;
* [`assert_same_mean`]: two estimators of the same limit (the plain one and,
  once it exists, a variance-reduced one) agree within 3 combined standard
  errors on the functionals a bias would move (the scale along the prediction,
  a constant offset), and only with enough samples that a 1% shift of either
  would be caught with probability 0.95 (the shift is at least 3 + 1.645
  combined standard errors). Today it compares two independent plain
  estimators; that it catches a 1% shift is tested on purpose-shifted replicas.
"""

import numpy as np
import pytest
import scipy.stats

import infinite_width as iw
from infinite_width import optim
from infinite_width.limits import adam_limit

N_TRAIN, N_TEST, DIM, OUT = 16, 24, 5, 2
STEPS = 15
SHIFT = 0.01  # the relative shift the mean comparison must be able to see
POWER = 0.95  # the probability with which it must see it


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM)).astype(np.float32)
    y = rng.normal(size=(N_TRAIN, OUT)).astype(np.float32)
    return x[:N_TRAIN], y, x[N_TRAIN:]


ARCH = iw.mlp(2, "relu", 1.3, 0.2, OUT)
ADAM = optim.adam(0.05, b1=0.9, b2=0.99)


def _run(key, samples, replicas, **roots):
    x_train, y, x_test = _problem()
    return adam_limit.simulate(ARCH, x_train, y, x_test, ADAM, STEPS, key=key, samples=samples, replicas=replicas,
                               record=[STEPS], **roots)


# Exact roots, and roots truncated to 6 columns plus 6 random features of the residual per replica
# (K^2 and B^2 have rank 24 here, above 6 + 6, so they are truncated).
ROOTS = {"exact": dict(rank=None), "truncated": dict(rank=6, features=6)}


@pytest.mark.parametrize("roots", sorted(ROOTS))
def test_reported_standard_error_matches_the_spread_over_independent_keys(roots):
    keys, replicas = 24, 8
    results = [_run(key, 1024, replicas, **ROOTS[roots]) for key in range(keys)]
    if roots == "truncated":
        assert all(r.residual_fractions["h2"] > 0.01 and r.residual_fractions["z1"] > 0.01 for r in results)
    means = np.stack([r.test_predictions[-1] for r in results])  # (keys, Nt, k)
    stderrs = np.stack([r.test_stderr[-1] for r in results])
    # Both are unbiased for the variance of one key's mean: compare their averages over keys and outputs.
    ratio = np.sqrt(np.mean(stderrs**2) / np.mean(np.var(means, axis=0, ddof=1)))
    assert 0.85 < ratio < 1.15, ratio
    # 95% t-intervals of each key against the mean of the other keys (whose own error adds in quadrature).
    others = (means.sum(axis=0) - means) / (keys - 1)
    half_width = scipy.stats.t.ppf(0.975, replicas - 1) * stderrs * np.sqrt(1 + 1 / (keys - 1))
    coverage = np.mean(np.abs(means - others) <= half_width)
    assert 0.90 <= coverage <= 0.99, coverage


# --------------------------------------------------------------------------
# Same mean, with power.


def _functionals(replicas, direction):
    """Per replica (R,): the scale of the prediction along ``direction`` (1 for the direction itself) and its
    constant offset from it in units of its RMS: a multiplicative and an additive shift, relative."""
    scale = np.tensordot(replicas, direction, axes=direction.ndim) / np.sum(direction**2)
    offset = np.mean(replicas - direction, axis=tuple(range(1, replicas.ndim))) / np.sqrt(np.mean(direction**2))
    return {"scale": scale, "offset": offset}


def assert_same_mean(plain, other, shift=SHIFT, tolerance=3.0, power=POWER):
    """Assert that two estimators of the same limit have the same mean, with power to see a ``shift``.

    Args:
      plain: (R1, ...) replica predictions of the plain estimator (independent replicas).
      other: (R2, ...) replica predictions of the estimator under test (a variance-reduced one), same points.
      shift: the relative shift that must be detectable: a change of ``shift`` in either functional (the
        scale of the prediction along the plain mean, or a constant offset of ``shift`` times its RMS) must
        be caught with probability ``power``, or the comparison fails for lack of samples.
      tolerance: combined standard errors allowed between the two means of each functional.
      power: the probability of catching ``shift`` (``shift`` must be ``tolerance + z_power`` combined
        standard errors, ``z_power`` the normal quantile of ``power``).

    Returns:
      ``{functional: (difference, combined standard error)}``.

    Raises:
      AssertionError: the means differ by more than ``tolerance`` combined standard errors, or the
        comparison has no power to see ``shift`` (too few samples).
    """
    direction = np.mean(plain, axis=0)
    needed = tolerance + scipy.stats.norm.ppf(power)
    measured = {}
    for name, a in _functionals(plain, direction).items():
        b = _functionals(other, direction)[name]
        error = np.sqrt(np.var(a, ddof=1) / a.size + np.var(b, ddof=1) / b.size)
        assert needed * error <= shift, (
            f"{name}: a shift of {shift} is {shift / error:.1f} combined standard errors, below the {needed:.2f} "
            f"that catch it with probability {power}: use more samples")
        difference = float(np.mean(b) - np.mean(a))
        assert abs(difference) <= tolerance * error, (
            f"{name}: the means differ by {difference:.4g}, {abs(difference) / error:.1f} combined standard errors")
        measured[name] = (difference, float(error))
    return measured


@pytest.fixture(scope="module")
def two_plain_estimators():
    """Replica test predictions (R, Nt, k) of two independent plain estimators (different keys)."""
    return [_run(key, 2**18, 16).replica_test_predictions[:, -1] for key in (11, 12)]


def test_two_independent_plain_estimators_have_the_same_mean(two_plain_estimators):
    measured = assert_same_mean(*two_plain_estimators)
    assert set(measured) == {"scale", "offset"}


@pytest.mark.parametrize("shifted", ["scale", "offset"])
def test_the_mean_comparison_catches_a_one_percent_shift(two_plain_estimators, shifted):
    plain, other = two_plain_estimators
    rms = np.sqrt(np.mean(np.mean(plain, axis=0) ** 2))
    moved = other * (1 + SHIFT) if shifted == "scale" else other + SHIFT * rms
    with pytest.raises(AssertionError, match=f"{shifted}: the means differ"):
        assert_same_mean(plain, moved)


def test_the_mean_comparison_refuses_to_pass_without_power(two_plain_estimators):
    plain, other = two_plain_estimators
    with pytest.raises(AssertionError, match="use more samples"):
        assert_same_mean(plain[:2], other[:2])
