"""The contract of the Monte Carlo engine (docs/theory.md, sections 6 and 7).

* cases 6.2 and 6.3: the engine converges to the exact closed forms of
  :mod:`infinite_width.limits.adam_limit.exact` with error ~ M^-1/2;
* finite-width Adam networks (:func:`infinite_width.finite.train`, per-group
  scaling, centered) converge to the engine's limit on test inputs with
  distance ~ n^-1/2, with two outputs (the case where hidden-layer gradients
  are shared by the outputs).

Slopes are fitted on log-log scales over three or four sizes.
"""

import jax
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import optim
from infinite_width._src.rng import run_keys
from infinite_width.finite import network, train
from infinite_width.limits import adam_limit
from infinite_width.limits.adam_limit import exact

N_TRAIN, N_TEST, DIM = 24, 12, 6
PER_REPLICA = np.array([128, 512, 2048, 8192])
REPLICAS = 8


def _data(out_dim, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM)).astype(np.float32)
    y = rng.normal(size=(N_TRAIN, out_dim)).astype(np.float32)
    return x[:N_TRAIN], y, x[N_TRAIN:]


def _replica_errors(run, exact_all):
    """Relative RMS error of single replicas (M / R samples each) against the exact trajectory, per M."""
    errors = []
    for m in PER_REPLICA:
        result = run(int(m) * REPLICAS)
        replicas = np.concatenate([result.replica_train_predictions, result.replica_test_predictions], axis=2)
        errors.append(np.sqrt(np.mean((replicas - exact_all[result.steps]) ** 2) / np.mean(exact_all[result.steps] ** 2)))
    return np.array(errors), np.polyfit(np.log(PER_REPLICA), np.log(errors), 1)[0]


@pytest.mark.slow
def test_sign_sgd_one_point_per_step_converges_to_the_sign_kernel():
    x_train, _, x_test = _data(1, seed=0)
    # |y| = 1, far from the outputs reached in 12 small steps: sign(chi) never hinges on Monte Carlo noise.
    y = np.sign(np.random.default_rng(1).normal(size=(N_TRAIN, 1))).astype(np.float32)
    arch = iw.mlp(2, "relu", 1.3, 0.2, 1)
    steps, lr = 12, 0.02
    rows = run_keys(jax.random.PRNGKey(4)).minibatch_order(N_TRAIN, 1, steps)
    closed = exact.sign_sgd_dynamics(arch, x_train, y, x_test, lr, rows)
    exact_all = np.concatenate([closed.train[0], closed.test[0]], axis=1)

    def run(samples):
        return adam_limit.simulate(arch, x_train, y, x_test, optim.sign(lr), steps, key=jax.random.PRNGKey(4),
                                batch_size=1, samples=samples, replicas=REPLICAS, record=[4, 8, 12])

    errors, slope = _replica_errors(run, exact_all)
    print("sign kernel: relative errors", errors, "slope", slope)
    assert -0.7 <= slope <= -0.3
    assert errors[-1] < 0.05


@pytest.mark.slow
def test_readout_sign_converges_to_normalized_kernel_descent():
    x_train, y, x_test = _data(2, seed=2)
    # Gaussian readout features (identity): case 6.3 is exact. No output bias: its update
    # sign(sum_i chi_i) jumps by lr whenever Monte Carlo noise flips that sign near a fit
    # (docs/theory.md, section 6), which spoils the M^-1/2 law of the other terms.
    arch = iw.mlp(2, "identity", 1.2, 0.0, 2)
    steps, lr = 10, 0.05
    closed = exact.normalized_readout_dynamics(arch, x_train, y, x_test, lr, steps)
    exact_all = np.concatenate([closed.train[0], closed.test[0]], axis=1)

    def run(samples):
        return adam_limit.simulate(arch, x_train, y, x_test, optim.sign(lr), steps, key=jax.random.PRNGKey(5),
                                readout_only=True, samples=samples, replicas=REPLICAS, record=[5, 10])

    errors, slope = _replica_errors(run, exact_all)
    print("normalized readout: relative errors", errors, "slope", slope)
    assert -0.7 <= slope <= -0.3
    assert errors[-1] < 0.05


@pytest.mark.slow
def test_finite_width_adam_converges_to_the_limit_with_two_outputs():
    """docs/theory.md, section 6: 2 hidden ReLU layers, d = 6, 24 + 12 points, W_std = 1.3, b_std = 0.2,
    30 full-batch Adam steps (b1 = 0.9, b2 = 0.99, lr = 0.05), squared loss, all groups, k = 2 outputs."""
    x_train, y, x_test = _data(2, seed=0)
    arch = iw.mlp(2, "relu", 1.3, 0.2, 2)
    adam = optim.adam(0.05, b1=0.9, b2=0.99)
    steps = 30
    limit = adam_limit.simulate(arch, x_train, y, x_test, adam, steps, key=jax.random.PRNGKey(0),
                             samples=65536, replicas=4, record=[steps])
    reference = limit.test_predictions[-1]
    mc_error = np.sqrt(np.mean(limit.test_stderr[-1] ** 2) / np.mean(reference**2))
    widths = np.array([64, 256, 1024])
    distances = []
    for width, seeds in zip(widths, (4, 4, 4)):
        finite = train(network(arch, int(width)), x_train, y, adam, steps, centered=True, key=1,
                       seeds=seeds, record=[steps], x_test=x_test)
        outputs = finite.test[:, -1]  # (seeds, Nt, k)
        per_seed = np.sqrt(np.mean((outputs - reference) ** 2, axis=(1, 2)) / np.mean(reference**2))
        distances.append(per_seed.mean())
    slope = np.polyfit(np.log(widths), np.log(distances), 1)[0]
    print("finite Adam -> limit: relative RMS distances", distances, "slope", slope, "limit MC error", mc_error)
    assert mc_error < 0.25 * distances[-1]  # the limit is known well enough to see the last width's distance
    assert -0.7 <= slope <= -0.3
    assert distances[-1] < 0.15  # 0.12 measured at width 1024
