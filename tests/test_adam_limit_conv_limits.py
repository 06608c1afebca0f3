"""The convolutional Adam-like limit against references that share no code with the engine (docs/theory.md, section 10).

* one hidden conv layer: the engine against a direct numpy sampler of the limit written here from its
  definition (every sample's whole filter, every filter entry its own Adam state, Adam coded by hand);
  the comparison resolves a 1% bias, and the engine's root options do not change a number (no roots, so no
  truncation bias at any size);
* two conv layers: the bias of truncated roots measured against exact roots on the same draws, with and
  without random features of the residual;
* finite conv nets of n channels, trained by Adam (b1 > 0) with the limit-matched per-group rates and
  centred, approach the limit on test points like n^-1/2 (slope fitted over four widths);
* the memory estimate against the peak anonymous resident memory of a run, in a subprocess.
"""

import math
import textwrap

import numpy as np
import pytest
from test_adam_limit_independent import HandAdam, _scale_and_error
from test_adam_limit_memory import MEASURE, memory_report

from infinite_width import optim
from infinite_width.architectures import Activation, Architecture, Conv, Dense, GlobalAvgPool
from infinite_width.finite import network, train
from infinite_width.limits import adam_limit

N_TRAIN, N_TEST, IMAGE, K = 10, 5, (3, 4, 2), 2
ADAM = optim.adam(0.08, b1=0.9, b2=0.99, eps=1e-8)


def _arch(depth):
    """Different scales and filters per layer, k = 2 outputs, a non-square image."""
    blocks = [Conv(None, (3, 3), W_std=1.3, b_std=0.2), Activation("relu"), Conv(None, (1, 3), W_std=1.1, b_std=0.3),
              Activation("relu")]
    return Architecture(tuple(blocks[:2 * depth]) + (GlobalAvgPool(), Dense(K, 1.2, 0.4)), name=f"conv{depth}",
                        input_kind="image")


def _data(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_TRAIN + N_TEST,) + IMAGE).astype(np.float32)
    y = rng.normal(size=(N_TRAIN, K)).astype(np.float32)
    return x[:N_TRAIN], y, x[N_TRAIN:]


def _replicas(result):
    return np.concatenate([result.replica_train_predictions, result.replica_test_predictions], axis=2)


def _windows(x, filter_shape):
    """(P, |S|, |F| C): every image's values under the filter centred at each position, zero outside."""
    fh, fw = filter_shape
    H, W = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (fh // 2, fh // 2), (fw // 2, fw // 2), (0, 0)))
    windows = [padded[:, i:i + H, j:j + W] for i in range(fh) for j in range(fw)]
    return np.stack(windows, axis=3).reshape(x.shape[0], H * W, -1).astype(np.float64)


def one_layer_reference_replica(arch, x, y, rng, samples, steps):
    """One replica of the limit of a one-conv-layer net, ``samples`` channels drawn: (steps + 1, P, k).

    Channel a of the infinitely wide net is a filter w (|F| C normals), a bias and readout weights
    zeta (k normals): ``h(x, s) = W_1 w . window(x, s) / sqrt(|F| C) + b_1 bias``,
    ``f_c = W_2 zeta_c mean_s relu(h)``. Each filter entry e, the bias and the readout weights are entries
    with their own Adam state, updated by the normalized gradient of the loss, and the outputs move by
    the mean over channels (and over filter entries) of each entry's derivative times its Adam direction,
    times the layer's scale.
    """
    conv, readout = arch.layers[0], arch.layers[-1]
    W1, b1, W2, b2 = conv.W_std, conv.b_std, readout.W_std, readout.b_std
    windows = _windows(x, conv.filter_shape)
    P, S, F = windows.shape
    w, bias, zeta = rng.standard_normal((samples, F)), rng.standard_normal(samples), rng.standard_normal((samples, K))
    h = W1 / math.sqrt(F) * np.einsum("psf,mf->psm", windows, w) + b1 * bias
    slope = (h > 0).astype(np.float64)
    # d f_c / d (entry), per unit of that entry's scale and of 1/sqrt(channels):
    d_filter = W2 / S * np.einsum("psm,psf,mc->pmfc", slope, windows, zeta)  # (P, M, F, k)
    d_bias = W2 / S * np.einsum("psm,mc->pmc", slope, zeta)  # (P, M, k)
    pooled = np.maximum(h, 0).mean(axis=1)  # (P, M): d f_c / d (readout weight c)
    adams = [HandAdam(shape, ADAM.b1, ADAM.b2, ADAM.eps) for shape in ((samples, F), (samples,), (samples, K), (K,))]
    f = np.zeros((P, K))
    history = [f.copy()]
    for _ in range(steps):
        chi = (f[:N_TRAIN] - y) / y.size  # d/df of 0.5 mean((f - y)^2)
        q_filter = adams[0](np.einsum("imfc,ic->mf", d_filter[:N_TRAIN], chi))
        q_bias = adams[1](np.einsum("imc,ic->m", d_bias[:N_TRAIN], chi))
        q_readout = adams[2](np.einsum("im,ic->mc", pooled[:N_TRAIN], chi))
        update = (W1 * np.einsum("pmfc,mf->pc", d_filter, q_filter) / (samples * F)
                  + b1 * np.einsum("pmc,m->pc", d_bias, q_bias) / samples
                  + W2 * np.einsum("pm,mc->pc", pooled, q_readout) / samples
                  + b2 * adams[3](chi.sum(axis=0)))
        f = f - ADAM.lr * update
        history.append(f.copy())
    return np.stack(history)


@pytest.mark.slow
def test_one_conv_layer_matches_a_direct_numpy_sampler_to_a_third_of_a_percent_and_has_no_roots():
    x_train, y, x_test = _data(3)
    arch, steps, replicas = _arch(1), 5, 16
    x = np.concatenate([x_train, x_test]).astype(np.float64)
    rng = np.random.default_rng(11)
    reference = np.stack([one_layer_reference_replica(arch, x, y, rng, 2**12, steps) for _ in range(replicas)])[:, -1]
    runs = [adam_limit.simulate(arch, x_train, y, x_test, ADAM, steps, key=5, samples=2**17, replicas=replicas,
                                record=[steps], rank=rank, features=features)
            for rank, features in ((None, 0), (1, 0))]
    # One hidden layer is drawn from each sample's filter: no root, so the root options change nothing.
    assert runs[0].ranks == runs[1].ranks == {}
    np.testing.assert_array_equal(_replicas(runs[0]), _replicas(runs[1]))
    engine = _replicas(runs[0])[:, 0]
    s, s_error = _scale_and_error(engine, reference)
    combined = np.sqrt(engine.var(axis=0, ddof=1) / replicas + reference.var(axis=0, ddof=1) / replicas)
    z = (engine.mean(axis=0) - reference.mean(axis=0)) / combined
    signal = np.sqrt(np.mean(reference.mean(axis=0) ** 2))
    print(f"scale {s:.5f} +- {s_error:.5f}; max |z| {np.abs(z).max():.2f}, mean z^2 {np.mean(z**2):.2f}; "
          f"signal {signal:.3f}")
    assert signal > 0.2  # the outputs moved
    assert 3 * s_error < 0.01  # a 1% bias of the limit would be 3 standard errors away
    assert abs(s - 1) < 3 * s_error
    assert np.all(np.abs(z) < 4) and np.mean(z**2) < 2.5


def _squared_bias(difference):
    """Mean over entries of (mean difference)^2 minus its sampling variance: unbiased for the squared bias."""
    return np.mean(difference.mean(0) ** 2 - difference.var(0, ddof=1) / difference.shape[0])


@pytest.mark.slow
def test_truncated_roots_of_two_conv_layers_are_biased_and_residual_features_remove_most_of_it():
    """Same key: a truncated run shares the exact run's draws of every kept column, so the per-replica
    difference measures the bias of the truncation (docs/theory.md, section 10)."""
    x_train, y, x_test = _data(9)
    arch, replicas = _arch(2), 16

    def run(rank, features):
        result = adam_limit.simulate(arch, x_train, y, x_test, optim.adam(0.05, 0.9, 0.99), 8, key=3, batch_size=5,
                                     samples=2**16, replicas=replicas, rank=rank, features=features, record=[8])
        return result, _replicas(result)[:, -1]

    exact, exact_predictions = run(None, 0)
    coordinates = (N_TRAIN + N_TEST) * IMAGE[0] * IMAGE[1]
    assert exact.ranks == {"h2": coordinates, "z1": coordinates}  # exact roots have full rank here
    signal = math.sqrt(np.mean(exact_predictions.mean(0) ** 2))
    measured = {}
    for features in (0, 48):
        truncated, predictions = run(16, features)
        assert truncated.ranks == {"h2": 16, "z1": 16} and min(truncated.residual_fractions.values()) > 0.2
        difference = predictions - exact_predictions
        drops = np.array([_squared_bias(np.delete(difference, i, 0)) for i in range(replicas)])
        measured[features] = (_squared_bias(difference), math.sqrt((replicas - 1) * np.mean((drops - drops.mean()) ** 2)))
        print(f"rank 16, features {features}: dropped variance {truncated.residual_fractions}, squared bias "
              f"{measured[features][0]:.3g} +- {measured[features][1]:.3g}, relative bias "
              f"{math.sqrt(max(measured[features][0], 0.0)) / signal:.4f}")
    plain, plain_error = measured[0]
    with_features, features_error = measured[48]
    assert plain - 3 * plain_error > (0.03 * signal) ** 2  # plain truncation: a bias of several percent
    assert with_features + 2 * features_error < plain / 100  # features: at least ten times smaller


@pytest.mark.slow
def test_finite_conv_nets_with_limit_matched_rates_converge_to_the_limit_like_inverse_sqrt_channels():
    """Two conv layers (3x3 and 1x3 filters), 20 full-batch Adam steps (b1 = 0.9), k = 2, per-group rates."""
    x_train, y, x_test = _data(8)
    arch, adam, steps = _arch(2), optim.adam(0.05, b1=0.9, b2=0.99), 20
    limit = adam_limit.simulate(arch, x_train, y, x_test, adam, steps, key=0, samples=2**16, replicas=8,
                                record=[steps], rank=None)
    reference = limit.test_predictions[-1]
    mc_error = np.sqrt(np.mean(limit.test_stderr[-1] ** 2) / np.mean(reference**2))
    widths = np.array([64, 128, 256, 512])
    distances = []
    for width, seeds in zip(widths, (8, 4, 4, 2)):
        finite = train(network(arch, int(width)), x_train, y, adam, steps, centered=True, key=1, seeds=seeds,
                       record=[steps], x_test=x_test)
        per_seed = np.sqrt(np.mean((finite.test[:, -1] - reference) ** 2, axis=(1, 2)) / np.mean(reference**2))
        distances.append(per_seed.mean())
    slope = np.polyfit(np.log(widths), np.log(distances), 1)[0]
    print("finite conv Adam -> limit: relative RMS distances", distances, "slope", slope, "limit MC error", mc_error)
    assert np.abs(reference).max() > 0.2  # the outputs moved
    assert mc_error < 0.25 * distances[-1]  # the limit is known well enough to see the last width's distance
    assert -0.7 <= slope <= -0.3
    assert distances[-1] < 0.05


MEMORY_SCRIPT = MEASURE + textwrap.dedent(
    """
    import numpy as np
    import infinite_width as iw
    from infinite_width import optim
    from infinite_width.limits import adam_limit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4, 4, 3)).astype(np.float32)
    y = rng.normal(size=(320, 10)).astype(np.float32)
    arch, adam = iw.conv(2, "relu", (3, 3), 1.4, 0.1, 10), optim.adam(0.01, 0.9, 0.99)
    adam_limit.simulate(arch, x[:20], y[:20], x[20:30], adam, 2, key=0, samples=64, replicas=2, batch_size=8,
                        rank=8, features=8)
    result, used = measured(lambda: adam_limit.simulate(arch, x[:320], y, x[320:], adam, 3, key=1, samples=16384,
                                                        replicas=4, rank=32, features=32, batch_size=64, record=[3]))
    assert result.ranks == {"h2": 32, "z1": 32}, result.ranks
    print("MEMORY", result.memory.peak_bytes, used, result.memory.parts["storage"])
    """
)


@pytest.mark.slow
def test_peak_resident_memory_of_a_conv_run_is_within_a_quarter_of_the_estimate():
    """Two 3x3 conv layers on 4x4x3 images, 400 points, k = 10, M = 16,384, truncated roots with features."""
    estimate, measured, storage = memory_report(MEMORY_SCRIPT, "stored features")
    assert storage > 0.5 * 2**30  # the stored features dominate: a measurement, not runtime noise
    assert abs(measured - estimate) <= 0.25 * estimate
