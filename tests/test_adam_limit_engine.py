"""Monte Carlo engine of the Adam-like limit against independent references.

References are written here in numpy: discrete-time kernel gradient descent
``f_{t+1} = f_t - lr K[:, batch] chi(f_t)`` (with the NTK or NNGP from
neural-tangents), whose chi is coded by hand, not taken from
``infinite_width.losses``.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import jax
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels, optim
from infinite_width.limits import adam_limit
from infinite_width._src.nt import predict
from infinite_width._src.rng import run_keys

N_TRAIN, N_TEST, DIM = 24, 12, 6


def _data(out_dim=1, seed=0, classes=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM)).astype(np.float32)
    if classes:
        y = np.eye(out_dim, dtype=np.float32)[rng.integers(0, out_dim, N_TRAIN)]
    else:
        y = rng.normal(size=(N_TRAIN, out_dim)).astype(np.float32)
    return x[:N_TRAIN], y, x[N_TRAIN:]


def _chi(loss, f, y):
    """d loss / d f in numpy: mse = 0.5 mean over all entries, CE = mean over rows."""
    if loss == "mse":
        return (f - y) / f.size
    shifted = np.exp(f - f.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True) - y) / f.shape[0]


def kernel_descent(kernel_rates, y_train, steps, rows, loss="mse", beta=0.0, f0=None):
    """Kernel gradient descent (heavy-ball with ``beta``) on all P points.

    ``kernel_rates``: list of (kernel (P, N_train), rate); returns (steps+1, P, k).
    """
    n_points = kernel_rates[0][0].shape[0]
    f = np.zeros((n_points, y_train.shape[1])) if f0 is None else np.array(f0, dtype=np.float64)
    velocity = np.zeros_like(f)
    out = [f.copy()]
    for t in range(steps):
        batch = rows[t]
        chi = _chi(loss, f[batch], y_train[batch])
        velocity = beta * velocity + sum(rate * k[:, batch] @ chi for k, rate in kernel_rates)
        f = f - velocity
        out.append(f.copy())
    return np.stack(out)


def _agreement(result, reference):
    """Relative RMS error of the replica mean and the fraction of outputs within 3 standard errors."""
    n = result.train_predictions.shape[1]
    mean = np.concatenate([result.train_predictions, result.test_predictions], axis=1)
    stderr = np.concatenate([result.train_stderr, result.test_stderr], axis=1)
    error = mean - reference
    relative = np.sqrt(np.mean(error[1:] ** 2) / np.mean(reference[1:] ** 2))
    covered = np.mean(np.abs(error[1:]) <= 3 * stderr[1:] + 1e-6)
    return relative, covered, n


def test_reference_is_neural_tangents_gradient_flow_at_small_rate():
    x_train, y, x_test = _data()
    arch = iw.mlp(2, "relu", 1.3, 0.2, 1)
    x_all = np.concatenate([x_train, x_test])
    k_all = np.asarray(kernels.ntk(arch, x_all, x_train), np.float64)
    lr, steps = 2e-3, 500
    ours = kernel_descent([(k_all, lr)], y.astype(np.float64), steps, np.tile(np.arange(N_TRAIN), (steps, 1)))[-1]
    flow = predict.gradient_descent_mse(k_all[:N_TRAIN], y.astype(np.float64), learning_rate=lr)
    train_nt, test_nt = flow(float(steps), np.zeros_like(y), np.zeros((N_TEST, 1)), k_all[N_TRAIN:])
    nt_all = np.concatenate([np.asarray(train_nt), np.asarray(test_nt)])
    # Euler's discretisation error is O(lr * lambda_max / N), about 1e-3 here.
    assert np.max(np.abs(ours - nt_all)) < 5e-3 * np.max(np.abs(nt_all))
    assert np.max(np.abs(nt_all)) > 0.1  # the dynamics moved


@pytest.mark.slow
def test_sgd_monte_carlo_converges_to_ntk_descent_like_inverse_sqrt_samples():
    x_train, y, x_test = _data()
    arch = iw.mlp(2, "relu", 1.3, 0.2, 1)
    x_all = np.concatenate([x_train, x_test])
    steps, lr = 15, 0.5
    reference = kernel_descent(
        [(np.asarray(kernels.ntk(arch, x_all, x_train), np.float64), lr)], y, steps, np.tile(np.arange(N_TRAIN), (steps, 1))
    )
    replicas = 8
    per_replica = np.array([128, 512, 2048, 8192])
    errors = []
    for m in per_replica:
        result = adam_limit.simulate(
            arch, x_train, y, x_test, optim.sgd(lr), steps, key=jax.random.PRNGKey(1),
            samples=int(m) * replicas, replicas=replicas, record=[steps],
        )
        replica = np.concatenate([result.replica_train_predictions, result.replica_test_predictions], axis=2)[:, 0]
        # Each replica is an independent estimate with m samples: average its squared error.
        errors.append(np.sqrt(np.mean((replica - reference[-1]) ** 2) / np.mean(reference[-1] ** 2)))
    slope = np.polyfit(np.log(per_replica), np.log(errors), 1)[0]
    print("sgd relative errors", errors, "slope", slope)
    assert -0.7 <= slope <= -0.3
    assert errors[-1] < 0.05


CASES = {
    # name: (arch, optimizer, loss, out_dim, readout_only, batch_size, f0)
    "sgd-relu-depth1": (iw.mlp(1, "relu", 1.5, 0.3, 1), optim.sgd(0.5), "mse", 1, False, None, False),
    "momentum-erf-depth3-k2": (iw.mlp(3, "erf", 1.4, 0.1, 2), optim.momentum(0.2, 0.8), "mse", 2, False, None, False),
    "sgd-minibatch-f0": (iw.mlp(2, "gelu", 1.3, 0.2, 1), optim.sgd(0.5), "mse", 1, False, 8, True),
    "sgd-cross-entropy-k3": (iw.mlp(2, "relu", 1.3, 0.2, 3), optim.sgd(2.0), "cross_entropy", 3, False, None, False),
    "sgd-readout-nngp": (iw.mlp(2, "sin", 1.2, 0.3, 1), optim.sgd(0.5),
                         "mse", 1, True, None, False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_linear_optimizers_match_kernel_descent(name):
    arch, optimizer, loss, out_dim, readout_only, batch_size, with_f0 = CASES[name]
    x_train, y, x_test = _data(out_dim, seed=3, classes=loss == "cross_entropy")
    x_all = np.concatenate([x_train, x_test])
    steps = 12
    key = jax.random.PRNGKey(7)
    rows = run_keys(key).minibatch_order(N_TRAIN, batch_size, steps)  # the finite trainer's order
    f0 = np.random.default_rng(5).normal(size=(N_TRAIN + N_TEST, out_dim)).astype(np.float32) if with_f0 else None
    kernel = kernels.nngp(arch, x_all, x_train) if readout_only else kernels.ntk(arch, x_all, x_train)
    reference = kernel_descent(
        [(np.asarray(kernel, np.float64), optimizer.lr)], y, steps, rows, loss=loss, beta=optimizer.beta, f0=f0
    )
    result = adam_limit.simulate(
        arch, x_train, y, x_test, optimizer, steps, key=key, loss=loss, readout_only=readout_only, batch_size=batch_size,
        samples=2**15, replicas=8,
        f0_train=None if f0 is None else f0[:N_TRAIN], f0_test=None if f0 is None else f0[N_TRAIN:],
    )
    relative, covered, _ = _agreement(result, reference)
    print(name, "relative RMS error", relative, "covered", covered)
    assert result.train_predictions.shape == (steps + 1, N_TRAIN, out_dim)
    assert result.test_predictions.shape == (steps + 1, N_TEST, out_dim)
    assert relative < 0.05
    assert covered >= 0.9
    if with_f0:
        np.testing.assert_allclose(result.test_predictions[0], f0[N_TRAIN:], atol=1e-6)


def test_adam_with_huge_eps_is_groupwise_kernel_descent():
    """b1 = 0, eps >> |g|: Q -> g / eps, i.e. SGD with rate lr/(eps W_std) on weights, lr/(eps b_std) on biases."""
    x_train, y, x_test = _data(2, seed=11)
    W_std, b_std, eps, lr, steps = 1.3, 0.4, 1e4, 1e4 * 0.3, 12
    arch = iw.mlp(2, "relu", W_std, b_std, 2)
    x_all = np.concatenate([x_train, x_test])
    layer = kernels.layerwise(arch, x_all, x_train)
    kernel_rates = []
    for l in range(arch.depth + 1):
        kernel_rates.append((layer.B[l] * W_std**2 * layer.S[l], lr / (eps * W_std)))
        kernel_rates.append((layer.B[l] * b_std**2, lr / (eps * b_std)))
    kernel_rates = [(np.asarray(k, np.float64), rate) for k, rate in kernel_rates]
    reference = kernel_descent(kernel_rates, y, steps, np.tile(np.arange(N_TRAIN), (steps, 1)))
    result = adam_limit.simulate(
        arch, x_train, y, x_test, optim.adam(lr, b1=0.0, b2=0.99, eps=eps), steps,
        key=jax.random.PRNGKey(2), samples=2**15, replicas=8,
    )
    relative, covered, _ = _agreement(result, reference)
    print("huge-eps adam vs group-wise kernel descent", relative, covered)
    assert relative < 0.05
    assert covered >= 0.9
    # The plain NTK at one rate is a different dynamics here (rates differ per group): the check has teeth.
    plain = kernel_descent([(sum(k for k, _ in kernel_rates), lr / (eps * W_std))], y, steps,
                           np.tile(np.arange(N_TRAIN), (steps, 1)))
    assert _agreement(result, plain)[0] > 5 * relative


ADAM = optim.adam(0.05, b1=0.9, b2=0.99)


def _adam_run(key, samples, replicas=8, **kwargs):
    x_train, y, x_test = _data(2, seed=4)
    return adam_limit.simulate(
        iw.mlp(2, "relu", 1.3, 0.2, 2), x_train, y, x_test, ADAM, 10, key=key,
        samples=samples, replicas=replicas, record=[0, 5, 10], **kwargs,
    )


def test_same_key_same_result_and_error_bars_cover_a_larger_run():
    first = _adam_run(jax.random.PRNGKey(0), 2**12)
    again = _adam_run(jax.random.PRNGKey(0), 2**12)
    other = _adam_run(jax.random.PRNGKey(1), 2**12)
    np.testing.assert_array_equal(first.replica_test_predictions, again.replica_test_predictions)
    assert not np.allclose(first.test_predictions[-1], other.test_predictions[-1])
    np.testing.assert_array_equal(first.steps, [0, 5, 10])
    assert first.options.samples == 2**12 and first.options.replicas == 8 and first.timings["total"] > 0

    reference = _adam_run(jax.random.PRNGKey(2), 2**16)
    mean = np.concatenate([first.train_predictions, first.test_predictions], axis=1)[1:]
    stderr = np.concatenate([first.train_stderr, first.test_stderr], axis=1)[1:]
    ref = np.concatenate([reference.train_predictions, reference.test_predictions], axis=1)[1:]
    ref_stderr = np.concatenate([reference.train_stderr, reference.test_stderr], axis=1)[1:]
    within = np.abs(mean - ref) <= 2 * np.sqrt(stderr**2 + ref_stderr**2)
    print("fraction within 2 standard errors", within.mean())
    assert within.mean() >= 0.8
    # The error bars are honest, not huge: 16x the samples shrinks them about 4x.
    ratio = np.median(stderr / ref_stderr)
    assert 2.5 < ratio < 6.5


def test_bfloat16_storage_rounds_the_same_draws_and_blocks_do_not_matter():
    base = _adam_run(jax.random.PRNGKey(0), 2**12)
    blocked = _adam_run(jax.random.PRNGKey(0), 2**12, block_rows=5)
    half = _adam_run(jax.random.PRNGKey(0), 2**12, storage_dtype="bfloat16")
    assert base.options.block_rows > 36 and blocked.options.block_rows == 5
    # Blocks of points change only the summation order.
    np.testing.assert_allclose(blocked.replica_test_predictions, base.replica_test_predictions, rtol=0, atol=1e-5)
    # bfloat16 rounds the same samples (8 bits of mantissa): close to float32, not equal, well within the error bars.
    gap = np.abs(half.test_predictions[-1] - base.test_predictions[-1])
    assert 0 < gap.max() < 0.02 * np.abs(base.test_predictions[-1]).max()
    assert np.sqrt(np.mean(gap**2)) < 0.5 * np.sqrt(np.mean(base.test_stderr[-1] ** 2))
    # Half the bytes of h^1, h^2 and z^1 (k = 2): 4 numbers per sample and point.
    assert base.memory.parts["storage"] - half.memory.parts["storage"] == 2**12 * 36 * 4 * 2


@pytest.mark.slow
def test_sharded_over_four_devices_equals_one_device():
    script = textwrap.dedent(
        """
        import jax, numpy as np
        import infinite_width as iw
        from infinite_width import optim
        from infinite_width.limits import adam_limit
        assert len(jax.devices()) == 4, jax.devices()
        rng = np.random.default_rng(0)
        x = rng.normal(size=(20, 5)).astype(np.float32)
        y = rng.normal(size=(14, 2)).astype(np.float32)
        arch = iw.mlp(2, "relu", 1.3, 0.2, 2)
        runs = [adam_limit.simulate(arch, x[:14], y, x[14:], optim.adam(0.05, 0.9, 0.99), 8,
                                 key=jax.random.PRNGKey(3), samples=4096, replicas=4, devices=devices,
                                 batch_size=5, record=[8])
                for devices in (jax.devices()[:1], jax.devices())]
        assert runs[1].devices == 4
        a, b = runs[0].replica_test_predictions, runs[1].replica_test_predictions
        print("MAXDIFF", float(np.max(np.abs(a - b))), float(np.max(np.abs(a))))
        """
    )
    diff, scale = run_on_four_cpu_devices(script)
    assert scale > 0.05
    assert diff <= 1e-5 * max(scale, 1.0)


def run_on_four_cpu_devices(script):
    """Run ``script`` in a subprocess with 4 CPU devices; the two numbers it prints after ``MAXDIFF``."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    diff, scale = map(float, out.stdout.split("MAXDIFF")[1].split())
    return diff, scale


# --------------------------------------------------------------------------
# Bad input.


def test_memory_refusal_names_a_sample_count_that_fits():
    x_train, y, x_test = _data()
    arguments = dict(arch=iw.mlp(2), x_train=x_train, y_train=y, x_test=x_test, optimizer=ADAM, steps=3,
                     key=jax.random.PRNGKey(0), replicas=8, block_rows=36, record=[3])
    # Room for 2^18 samples: the message names the largest multiple of the 8 replicas that fits.
    budget = adam_limit.estimate_memory(2, 1, N_TRAIN, N_TEST, samples=2**18, input_dim=DIM, replicas=8,
                                        block_rows=36, optimizer_state=2).peak_bytes
    with pytest.raises(MemoryError, match=r"needs about .* GiB.*available.*samples=\d+ would fit") as refusal:
        adam_limit.simulate(**arguments, samples=2**20, max_memory_bytes=budget)
    fitting = int(refusal.value.args[0].split("samples=")[1].split()[0])
    assert fitting % 8 == 0 and fitting == 2**18
    with pytest.raises(MemoryError, match="no sample count fits"):
        adam_limit.simulate(**arguments, samples=2**12, max_memory_bytes=2**20)
    small = adam_limit.estimate_memory(2, 1, N_TRAIN, N_TEST, samples=2**10, input_dim=DIM)
    large = adam_limit.estimate_memory(2, 1, N_TRAIN, N_TEST, samples=2**12, input_dim=DIM)
    assert large.parts["storage"] == 4 * small.parts["storage"]
    # h^1, h^2 and z^1 (k = 1) per sample and point, plus zeta (k) and the input coordinate per sample.
    assert large.parts["storage"] == 2**12 * ((N_TRAIN + N_TEST) * 3 + 2) * 4
    sharded = adam_limit.estimate_memory(2, 1, N_TRAIN, N_TEST, samples=2**12, input_dim=DIM, devices=4)
    assert sharded.parts["storage"] * 4 == large.parts["storage"]


def test_roots_are_exact_pivoted_cholesky_factors_and_a_non_psd_kernel_is_named():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 3))
    kernel = a @ a.T + np.outer(a[:, 0], a[:, 0])  # rank 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a PSD, rank-deficient kernel is factorized silently at its rank
        root = adam_limit.pivoted_root(kernel, "K^2")
    assert root.numerical_rank == 3
    np.testing.assert_allclose(root.factor @ root.factor.T, kernel, atol=1e-12 * np.abs(kernel).max())
    # The leading columns are the greedy pivoted Cholesky approximation: exact at the pivots, PSD residual.
    leading = root.leading(2)
    residual = kernel - leading @ leading.T
    np.testing.assert_allclose(residual[np.ix_(root.pivots[:2], root.pivots[:2])], 0, atol=1e-12)
    assert np.linalg.eigvalsh(residual).min() > -1e-12 and root.residual_fraction(2) > 0.01
    # The greedy partial factorization computes the same leading columns, and completes at the numerical rank.
    partial = adam_limit.roots.partial_pivoted_root(kernel, "K^2", 2)
    assert not partial.complete and np.array_equal(partial.pivots, root.pivots[:2])
    np.testing.assert_allclose(partial.factor, leading, atol=1e-12)
    assert adam_limit.roots.partial_pivoted_root(kernel, "K^2", 5).complete
    lam, vec = np.linalg.eigh(a @ a.T + np.eye(8))
    lam[0] = -0.05 * lam[-1]
    with pytest.warns(RuntimeWarning, match=r"K\^2 is not positive semi-definite"):
        adam_limit.sampling_root((vec * lam) @ vec.T, "K^2")


def test_nan_stops_the_run_naming_the_step():
    x_train, y, x_test = _data()
    with pytest.raises(FloatingPointError, match=r"NaN or Inf at step \d+"):
        adam_limit.simulate(iw.mlp(2), x_train, 1e30 * y, x_test, optim.sgd(1e10), 50, key=jax.random.PRNGKey(0),
                         samples=256, replicas=2, record=[50])


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(arch=iw.myrtle(5)), ValueError, r"layer \d+ \(AvgPool\) is not supported"),
        (dict(arch=iw.mlp(0)), ValueError, "at least one hidden layer"),
        (dict(arch="mlp"), TypeError, "Architecture"),
        (dict(optimizer="adam"), TypeError, "unknown optimizer"),
        (dict(loss="hinge"), ValueError, "unknown loss"),
        (dict(readout_only="readout"), TypeError, "readout_only must be True or False"),
        (dict(storage_dtype="float16"), ValueError, "storage_dtype must be one of"),
        (dict(y_train=np.zeros((N_TRAIN, 2))), ValueError, r"y_train must have shape \(24, 1\)"),
        (dict(y_train=np.full((N_TRAIN, 1), np.nan)), ValueError, "NaN"),
        (dict(x_test=np.zeros((3, DIM + 1))), ValueError, "feature shapes"),
        (dict(x_train=np.zeros((N_TRAIN,))), ValueError, r"shape \(N, d\)"),
        (dict(f0_test=np.zeros((N_TEST + 1, 1))), ValueError, "f0_test"),
        (dict(batch_indices=np.full((4, 3), N_TRAIN)), ValueError, "batch_indices must lie"),
        (dict(batch_indices=np.zeros((2, 3), int)), ValueError, r"shape \(steps=4"),
        (dict(samples=100, replicas=3), ValueError, "multiple of replicas"),
        (dict(block_rows=0), ValueError, "block_rows"),
        (dict(rank=0), ValueError, "rank"),
        (dict(features=-1), ValueError, "features"),
        (dict(samples=63, replicas=3, devices=jax.devices() * 2), ValueError, "divisible by the number of devices"),
        (dict(replicas=1, samples=64), ValueError, "replicas must be"),
        (dict(record=[5]), ValueError, r"record steps must lie in \[0, 4\]"),
        (dict(key="seed"), TypeError, "PRNG key"),
        (dict(steps=-1), ValueError, "steps"),
    ],
)
def test_bad_input_is_named(change, error, message):
    x_train, y, x_test = _data()
    arguments = dict(arch=iw.mlp(2), x_train=x_train, y_train=y, x_test=x_test, optimizer=ADAM, steps=4,
                     key=jax.random.PRNGKey(0), samples=64, replicas=2)
    arguments.update(change)
    with pytest.raises(error, match=message):
        adam_limit.simulate(**arguments)
