"""Low-rank roots of the layer kernels: unbiased covariance, and the truncation bias of the limit.

A truncated root keeps the leading pivoted Cholesky columns and adds, per
replica, random features of the residual (docs/theory.md, section 7); the
engine's documented bound is that the bias this leaves is below a third of
the Monte Carlo standard error. Plain truncation (no features) is biased:
the tests show both.
"""

import math

import jax
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels, optim
from infinite_width.limits import adam_limit
from infinite_width.limits.adam_limit import fields, sampling
from infinite_width.limits.adam_limit.features import ReplicaRoots
from infinite_width.limits.adam_limit.terms import layer_scales, limit_terms
from infinite_width.architectures import Activation, Architecture, Dense

ARCH = Architecture((Dense(None, 1.3, 0.2), Activation("erf"), Dense(None, 1.2, 0.4), Activation("relu"),
                     Dense(None, 0.9, 0.3), Activation("gelu"), Dense(2, 1.1, 0.1)), name="mixed-mlp3")


def test_random_features_of_the_residual_restore_every_kernel_in_expectation():
    """Mean over replicas of root root^T equals each field's kernel (from neural-tangents), within the
    replicas' standard error; the leading columns alone miss it by many standard errors."""
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    terms, _ = limit_terms(ARCH, readout_only=False, linear=False)
    exact = sampling.mlp_field_roots(ARCH, x, fields.field_layout(terms, ARCH.depth, 2, 40, 1, 1), None, 0)
    W_std, b_std = layer_scales(ARCH)
    replicas, rank = 100, 3
    roots = ReplicaRoots(exact, fields.first_layer_root(x, W_std[0], b_std[0]), rank, 16, W_std, b_std,
                         ARCH.activations, jax.random.PRNGKey(0), replicas)
    layer = kernels.layerwise(ARCH, x, dtype="float64")
    expected = {"h2": layer.K[1], "h3": layer.K[2], "z1": W_std[1] ** 2 * layer.B[1],
                "z2": W_std[2] ** 2 * layer.B[2]}
    assert set(roots.per_replica[0]) == set(expected)  # every root is truncated at rank 3
    for name, kernel in expected.items():
        covariances = np.stack([root @ root.T for root in (roots(r)[name].astype(np.float64) for r in range(replicas))])
        # float32 roots: entries whose residual vanishes (the pivots) agree to float32 round-off only.
        z = (covariances.mean(0) - kernel) / (covariances.std(0, ddof=1) / math.sqrt(replicas)
                                              + 1e-5 * np.abs(kernel).max())
        leading = exact[name].leading(rank)
        truncation = np.abs(leading @ leading.T - kernel).max() / (covariances.std(0).max() / math.sqrt(replicas))
        print(name, "max |z|", np.abs(z).max(), "mean z^2", np.mean(z**2), "truncation error / se", truncation)
        assert np.abs(z).max() < 5 and np.mean(z**2) < 1.5
        assert truncation > 10


def _squared_bias(difference):
    """mean over entries of (mean difference)^2 minus its sampling variance: unbiased for the squared bias."""
    return np.mean(difference.mean(0) ** 2 - difference.var(0, ddof=1) / difference.shape[0])


@pytest.mark.slow
def test_truncation_bias_is_within_the_documented_bound_and_plain_truncation_is_not():
    """Same key: a truncated run shares every draw of the exact run except the dropped columns, so the
    per-replica difference measures the bias (docs/BENCHMARKS.md, "low-rank roots")."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.normal(size=(150, 4)).astype(np.float32)
    arch = iw.mlp(2, "relu", 1.4, 0.2, 4)
    replicas, samples = 16, 2**16

    def run(rank, features):
        result = adam_limit.simulate(arch, x[:150], y, x[150:], optim.adam(0.05, 0.9, 0.99), 8, key=3, batch_size=25,
                                  samples=samples, replicas=replicas, rank=rank, features=features, record=[8])
        return result, np.concatenate([result.replica_train_predictions, result.replica_test_predictions], 2)

    exact, exact_predictions = run(None, 0)
    stderr = math.sqrt(np.mean(np.concatenate([exact.train_stderr[-1], exact.test_stderr[-1]]) ** 2))
    bound = (stderr / 3) ** 2
    for features, within in ((64, True), (0, False)):
        truncated, predictions = run(64, features)
        print(truncated.residual_fractions)
        assert truncated.ranks == {"h2": 64, "z1": 64} and truncated.residual_fractions["z1"] > 0.05
        difference = predictions - exact_predictions
        squared = _squared_bias(difference)
        drops = np.array([_squared_bias(np.delete(difference, i, 0)) for i in range(replicas)])
        error = math.sqrt((replicas - 1) * np.mean((drops - drops.mean()) ** 2))
        print(f"features {features}: squared bias {squared:.3g} +- {error:.3g}, bound (se/3)^2 {bound:.3g}")
        if within:
            assert squared + 2 * error < bound
        else:
            assert squared - 2 * error > bound
