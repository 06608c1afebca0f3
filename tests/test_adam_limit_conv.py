"""The Adam-like limit of convolutional networks (docs/theory.md, section 10) against independent references.

References are numpy: discrete-time kernel gradient descent ``f_{t+1} = f_t - lr K[:, batch] chi``
(that of tests/test_adam_limit_engine.py) with neural-tangents' CNTK (or the NNGP kernel for the readout alone), chi coded by hand; the
normalized kernel descent of readout-only sign updates with Gaussian features, from neural-tangents'
pooled NNGP kernel; the MLP engine on the same data written as 1 x 1 images.
"""

import math
import textwrap

import jax
import numpy as np
import optax
import pytest
from test_adam_limit_engine import _chi, kernel_descent, run_on_four_cpu_devices

import infinite_width as iw
from infinite_width import kernels, optim
from infinite_width.architectures import Activation, Architecture, AvgPool, Conv, Dense, Flatten, GlobalAvgPool
from infinite_width.limits import adam_limit
from infinite_width.workflow import minibatch_order

N_TRAIN, N_TEST, IMAGE = 10, 5, (3, 4, 2)


def _conv_arch(depth, last="relu", readout_b_std=0.4, out_dim=2):
    """Different scales, filters and activations per layer, a non-square image."""
    blocks = [(Conv(None, (3, 3), W_std=1.3, b_std=0.2), "relu"), (Conv(None, (1, 3), W_std=1.1, b_std=0.3), "erf")]
    layers = []
    for l, (conv, name) in enumerate(blocks[:depth]):
        layers += [conv, Activation(last if l == depth - 1 else name)]
    return Architecture(tuple(layers) + (GlobalAvgPool(), Dense(out_dim, 1.2, readout_b_std)), name=f"conv{depth}",
                        input_kind="image")


def _data(out_dim=2, seed=0, classes=False, image=IMAGE):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_TRAIN + N_TEST,) + image).astype(np.float32)
    if classes:
        y = np.eye(out_dim, dtype=np.float32)[rng.integers(0, out_dim, N_TRAIN)]
    else:
        y = rng.normal(size=(N_TRAIN, out_dim)).astype(np.float32)
    return x[:N_TRAIN], y, x[N_TRAIN:]


def _all(result):
    return (np.concatenate([result.train_predictions, result.test_predictions], axis=1),
            np.concatenate([result.train_stderr, result.test_stderr], axis=1))


def _replicas(result):
    return np.concatenate([result.replica_train_predictions, result.replica_test_predictions], axis=2)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [1, 2])
def test_sgd_converges_to_neural_tangents_cntk_descent_like_inverse_sqrt_samples(depth):
    x_train, y, x_test = _data()
    arch = _conv_arch(depth)
    x_all = np.concatenate([x_train, x_test])
    steps, lr = 12, 2.0
    reference = kernel_descent([(np.asarray(kernels.ntk(arch, x_all, x_train), np.float64), lr)], y, steps,
                               np.tile(np.arange(N_TRAIN), (steps, 1)))
    replicas, per_replica = 8, np.array([128, 512, 2048, 8192])
    errors = []
    for m in per_replica:
        result = adam_limit.simulate(arch, x_train, y, x_test, optim.sgd(lr), steps, key=1, samples=int(m) * replicas,
                                     replicas=replicas, record=[4, 8, 12])
        errors.append(np.sqrt(np.mean((_replicas(result) - reference[result.steps]) ** 2)
                              / np.mean(reference[result.steps] ** 2)))
    slope = np.polyfit(np.log(per_replica), np.log(errors), 1)[0]
    print(f"depth {depth}: relative errors {errors}, slope {slope:.3f}")
    assert -0.7 <= slope <= -0.3
    assert errors[-1] < 0.05
    assert np.abs(reference[-1]).max() > 0.2  # the dynamics moved


CASES = {
    # name: (depth, optimizer, loss, k, readout_only, batch_size)
    "momentum-depth1-k3": (1, optim.momentum(0.5, 0.8), "mse", 3, False, None),
    "sgd-depth2-minibatch-cross-entropy": (2, optim.sgd(4.0), "cross_entropy", 3, False, 4),
    "sgd-depth2-readout-nngp": (2, optim.sgd(2.0), "mse", 2, True, None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_linear_optimizers_match_kernel_descent(name):
    depth, optimizer, loss, k, readout_only, batch_size = CASES[name]
    x_train, y, x_test = _data(k, seed=3, classes=loss == "cross_entropy")
    arch = _conv_arch(depth, out_dim=k)
    x_all = np.concatenate([x_train, x_test])
    steps = 10
    rows = minibatch_order(7, N_TRAIN, batch_size, steps)  # what solve and the engine use for key 7
    kernel = (kernels.nngp if readout_only else kernels.ntk)(arch, x_all, x_train)
    reference = kernel_descent([(np.asarray(kernel, np.float64), optimizer.lr)], y, steps, rows, loss=loss,
                               beta=optimizer.beta)
    result = adam_limit.simulate(arch, x_train, y, x_test, optimizer, steps, key=7, loss=loss,
                                 readout_only=readout_only, batch_size=batch_size, samples=2**15, replicas=8)
    mean, stderr = _all(result)
    error = mean[1:] - reference[1:]
    relative = np.sqrt(np.mean(error**2) / np.mean(reference[1:] ** 2))
    covered = np.mean(np.abs(error) <= 3 * stderr[1:] + 1e-6)
    print(name, "relative RMS error", relative, "covered", covered)
    assert result.test_predictions.shape == (steps + 1, N_TEST, k)
    assert relative < 0.05 and covered >= 0.9
    assert np.abs(reference[-1]).max() > 0.1


def test_a_learning_rate_schedule_scales_every_steps_update():
    """SGD with a step decay: each step of the limit is CNTK descent at that step's rate (numpy loop here)."""
    x_train, y, x_test = _data(seed=8)
    arch = _conv_arch(2)
    steps, lr = 8, 3.0
    decay = optax.piecewise_constant_schedule(1.0, {3: 0.3, 6: 0.3})  # the factor: 1, then 0.3, then 0.09
    kernel = np.asarray(kernels.ntk(arch, np.concatenate([x_train, x_test]), x_train), np.float64)
    f = np.zeros((N_TRAIN + N_TEST, 2))
    reference = [f.copy()]
    for t in range(steps):
        f = f - lr * decay(t) * kernel @ _chi("mse", f[:N_TRAIN], y)
        reference.append(f.copy())
    reference = np.stack(reference)
    result = adam_limit.simulate(arch, x_train, y, x_test, optim.sgd(lambda t: lr * decay(t)), steps, key=4,
                                 samples=2**15, replicas=8)
    mean, stderr = _all(result)
    relative = np.sqrt(np.mean((mean - reference) ** 2) / np.mean(reference[1:] ** 2))
    unscheduled = kernel_descent([(kernel, lr)], y, steps, np.tile(np.arange(N_TRAIN), (steps, 1)))
    print("schedule: relative RMS error", relative)
    assert relative < 0.05 and np.mean(np.abs(mean - reference) <= 3 * stderr + 1e-6) >= 0.9
    # The test tells the schedule from its absence: without it the reference is much farther than the engine.
    assert np.sqrt(np.mean((unscheduled - reference) ** 2) / np.mean(reference[1:] ** 2)) > 5 * relative


def _mlp_as_conv(mlp_layers, readout):
    """The same network on 1 x 1 images: every Dense hidden layer a 1 x 1 convolution."""
    layers = []
    for layer in mlp_layers:
        layers.append(Conv(None, (1, 1), W_std=layer.W_std, b_std=layer.b_std) if isinstance(layer, Dense) else layer)
    return Architecture(tuple(layers) + (GlobalAvgPool(), readout), input_kind="image")


@pytest.mark.parametrize("depth", [1, 2])
def test_a_one_by_one_image_with_one_by_one_filters_gives_the_mlp_engines_numbers(depth):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(N_TRAIN + N_TEST, 5)).astype(np.float32)
    y = rng.normal(size=(N_TRAIN, 2)).astype(np.float32)
    hidden = [Dense(None, 1.3, 0.2), Activation("relu"), Dense(None, 1.1, 0.3), Activation("gelu")][:2 * depth]
    readout = Dense(2, 1.2, 0.4)
    mlp, conv = Architecture(tuple(hidden) + (readout,)), _mlp_as_conv(hidden, readout)
    for readout_only in (False, True):
        runs = [adam_limit.simulate(arch, inputs[:N_TRAIN], y, inputs[N_TRAIN:], optim.adam(0.05, 0.9, 0.99), 6,
                                    key=3, samples=512, replicas=4, batch_size=4, readout_only=readout_only)
                for arch, inputs in ((mlp, x), (conv, x[:, None, None, :]))]
        ours, theirs = _replicas(runs[1]), _replicas(runs[0])
        assert np.abs(theirs[:, -1]).max() > 0.05
        # The same draws (every latent normal has the same key), summed in another order: float32 round-off.
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-6 * np.abs(theirs).max())


def _normalized_readout_descent(pooled, y, lr, steps, W_std):
    """Readout-only sign descent with Gaussian features: f -= lr W sqrt(2/pi) K chi_c / sqrt(chi_c^T K chi_c)."""
    f = np.zeros((pooled.shape[0], y.shape[1]))
    out = [f.copy()]
    for _ in range(steps):
        chi = _chi("mse", f[:N_TRAIN], y)
        numerator = pooled[:, :N_TRAIN] @ chi
        norm = np.sqrt(np.sum(chi * numerator[:N_TRAIN], axis=0))
        f = f - lr * W_std * math.sqrt(2 / math.pi) * numerator / norm
        out.append(f.copy())
    return np.stack(out)


@pytest.mark.slow
def test_readout_sign_with_identity_activation_is_normalized_descent_with_the_pooled_kernel():
    x_train, y, x_test = _data(seed=5)
    # No output bias: its sign(sum_i chi_i) flips with the Monte Carlo noise near a fit (docs/theory.md, section 6).
    arch = _conv_arch(2, last="identity", readout_b_std=0.0)
    x_all = np.concatenate([x_train, x_test])
    # The readout features mean_s h^L(x, s) are Gaussian with the pooled kernel (NNGP - b^2) / W^2.
    pooled = np.asarray(kernels.nngp(arch, x_all), np.float64) / 1.2**2
    steps, lr = 8, 0.05
    reference = _normalized_readout_descent(pooled, y, lr, steps, 1.2)
    replicas, per_replica = 8, np.array([128, 512, 2048, 8192])
    errors = []
    for m in per_replica:
        result = adam_limit.simulate(arch, x_train, y, x_test, optim.sign(lr), steps, key=5, readout_only=True,
                                     samples=int(m) * replicas, replicas=replicas, record=[4, 8])
        errors.append(np.sqrt(np.mean((_replicas(result) - reference[result.steps]) ** 2)
                              / np.mean(reference[result.steps] ** 2)))
    slope = np.polyfit(np.log(per_replica), np.log(errors), 1)[0]
    print("normalized readout descent: relative errors", errors, "slope", slope)
    assert -0.7 <= slope <= -0.3
    assert errors[-1] < 0.03


def _adam_run(key=0, storage_dtype="float32", **options):
    x_train, y, x_test = _data(seed=4)
    return adam_limit.simulate(_conv_arch(2), x_train, y, x_test, optim.adam(0.05, 0.9, 0.99), 6, key=key,
                               samples=1024, replicas=4, storage_dtype=storage_dtype, record=[0, 3, 6], **options)


def test_same_key_gives_identical_predictions_and_storage_and_blocks_change_only_rounding():
    for storage in ("float32", "bfloat16"):
        first, again = _adam_run(storage_dtype=storage), _adam_run(storage_dtype=storage)
        np.testing.assert_array_equal(_replicas(first), _replicas(again))  # bit for bit
    base, other = _adam_run(), _adam_run(key=1)
    assert not np.allclose(base.test_predictions[-1], other.test_predictions[-1])
    blocked = _adam_run(block_rows=3)
    assert blocked.options.block_rows == 3
    np.testing.assert_allclose(_replicas(blocked), _replicas(base), rtol=0, atol=1e-5)
    half = _adam_run(storage_dtype="bfloat16")
    gap = np.abs(half.test_predictions[-1] - base.test_predictions[-1])
    assert 0 < gap.max() < 0.03 * np.abs(base.test_predictions[-1]).max()
    assert base.memory.parts["storage"] > half.memory.parts["storage"]


@pytest.mark.parametrize("depth", [2, 3])
def test_both_orders_of_the_backward_contraction_draw_the_same_features(depth, monkeypatch):
    """z^l contracted over positions first or drawn on the positions first: the same stored features."""
    from infinite_width.limits.adam_limit import conv_fields

    x_train, _, x_test = _data(seed=5)
    arch, x_all = iw.conv(depth, "relu", (3, 3), W_std=1.3, b_std=0.2, out_dim=3), np.concatenate([x_train, x_test])
    drawn, chosen = {}, {}
    for advantage in (0.0, 1e9):  # never / always on the positions
        monkeypatch.setattr(conv_fields, "GEMM_ADVANTAGE", advantage)
        sampled = adam_limit.sample_fields(arch, x_all, key=3, samples=256, replicas=2, rank=6, features=6)
        layout = sampled.model.layout
        chosen[advantage] = set(conv_fields.z_on_positions(layout, {f"z{l}": 13 for l in layout.z_layers}).values())
        drawn[advantage] = {name: np.asarray(adam_limit.fields.widen(value)) for name, value in sampled.fields.items()}
    assert chosen == {0.0: {False}, 1e9: {True}}
    assert len(layout.z_layers) == depth - 1
    for name, value in drawn[0.0].items():
        scale = np.abs(value).max()
        assert scale > 0, name
        np.testing.assert_allclose(drawn[1e9][name], value, rtol=0, atol=2e-5 * scale, err_msg=name)


def test_solve_with_an_infinite_width_and_adam_runs_the_conv_limit_and_repeats_itself():
    x_train, y, x_test = _data(seed=6)
    problem = iw.Problem(x_train, y, x_test, np.zeros((N_TEST, 2), np.float32))
    arch = iw.conv(2, "relu", (3, 3), W_std=1.4, b_std=0.1, out_dim=2)
    assert isinstance(iw.workflow.method_for(math.inf, optim.adam(0.01)), iw.AdamLimit)
    method = iw.AdamLimit(samples=512, replicas=2)
    runs = [iw.solve(problem, arch, method, optim.adam(0.05), steps=4, batch_size=5, key=2, progress=False)
            for _ in range(2)]
    assert runs[0].metadata["regime"] == "adam_limit"
    np.testing.assert_array_equal(runs[0].test_predictions, runs[1].test_predictions)
    np.testing.assert_array_equal(runs[0].train_predictions, runs[1].train_predictions)
    assert np.abs(runs[0].test_predictions[-1]).max() > 0.01
    shortcut = iw.solve(problem, arch, None, optim.adam(0.05), width=math.inf, steps=1, progress=False)
    assert shortcut.metadata["method"]["name"] == "AdamLimit"


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
        x = rng.normal(size=(14, 3, 4, 2)).astype(np.float32)
        y = rng.normal(size=(10, 2)).astype(np.float32)
        arch = iw.conv(2, "relu", (3, 3), 1.3, 0.2, 2)
        runs = [adam_limit.simulate(arch, x[:10], y, x[10:], optim.adam(0.05, 0.9, 0.99), 6, key=3, samples=2048,
                                    replicas=4, devices=devices, batch_size=4, record=[6], rank=8, features=8)
                for devices in (jax.devices()[:1], jax.devices())]
        assert runs[1].devices == 4 and runs[0].ranks == {"h2": 8, "z1": 8}
        a, b = runs[0].replica_test_predictions, runs[1].replica_test_predictions
        print("MAXDIFF", float(np.max(np.abs(a - b))), float(np.max(np.abs(a))))
        """
    )
    diff, scale = run_on_four_cpu_devices(script)
    assert scale > 0.05
    assert diff <= 1e-5 * max(scale, 1.0)


# --------------------------------------------------------------------------
# Bad input.


def _conv(**changes):
    return Conv(None, **({"filter_shape": (3, 3), "W_std": 1.0, "b_std": 0.1} | changes))


@pytest.mark.parametrize(
    "layers, message",
    [
        ((_conv(), Activation("relu"), AvgPool(), _conv(), Activation("relu"), GlobalAvgPool(), Dense(2)),
         r"layer 2 \(AvgPool\) is not supported between conv layers"),
        ((_conv(strides=(2, 2)), Activation("relu"), GlobalAvgPool(), Dense(2)), r"layer 0 \(Conv\) has strides"),
        ((_conv(padding="VALID"), Activation("relu"), GlobalAvgPool(), Dense(2)), r"layer 0 \(Conv\) has padding"),
        ((_conv(filter_shape=(2, 3)), Activation("relu"), GlobalAvgPool(), Dense(2)), "even filter"),
        ((_conv(), _conv(), Activation("relu"), GlobalAvgPool(), Dense(2)), r"layer 1 \(Conv\) does not follow"),
        ((_conv(), Activation("tanh"), GlobalAvgPool(), Dense(2)), "no closed-form kernel"),
        ((_conv(), Activation("relu"), Flatten(), Dense(2)), r"layer 2 \(Flatten\) is not the GlobalAvgPool"),
        ((_conv(), Activation("relu"), GlobalAvgPool(), Dense(None), Activation("relu"), Dense(2)),
         r"layer 3 \(Dense\) is not the Dense readout"),
    ],
)
def test_an_unsupported_layer_is_named(layers, message):
    arch = Architecture(layers, input_kind="image")
    x_train, y, x_test = _data()
    with pytest.raises(ValueError, match=message):
        adam_limit.simulate(arch, x_train, y, x_test, optim.adam(0.05), 2, key=0, samples=64, replicas=2)
    with pytest.raises(ValueError, match=message):
        iw.AdamLimit().check(arch, optim.adam(0.05), False, None)


def test_memory_refusal_names_the_largest_sample_count_that_fits():
    x_train, y, x_test = _data()
    arguments = dict(arch=_conv_arch(2), x_train=x_train, y_train=y, x_test=x_test, optimizer=optim.adam(0.05),
                     steps=0, key=0, replicas=8, block_rows=15, record=[0])
    # A little more than a run of 1024 samples needs (fixed buffers dominate it): a few thousand samples fit.
    budget = int(1.01 * adam_limit.simulate(**arguments, samples=1024).memory.peak_bytes)
    with pytest.raises(MemoryError, match=r"needs about .* GiB.*samples=\d+ would fit") as refusal:
        adam_limit.simulate(**arguments, samples=2**22, max_memory_bytes=budget)
    fitting = int(refusal.value.args[0].split("samples=")[1].split()[0])
    assert fitting % 8 == 0 and 1024 < fitting < 2**16
    assert adam_limit.simulate(**arguments, samples=fitting, max_memory_bytes=budget).memory.peak_bytes <= budget
    with pytest.raises(MemoryError):
        adam_limit.simulate(**arguments, samples=fitting + 8, max_memory_bytes=budget)
    with pytest.raises(MemoryError, match="no sample count fits"):
        adam_limit.simulate(**arguments, samples=1024, max_memory_bytes=2**20)


@pytest.mark.parametrize("scale", [1e10, 1e30])
def test_inputs_too_large_for_float32_are_refused_not_returned_as_plausible_numbers(scale):
    """issue 24: inputs at scale 1e30 gave O(0.04) predictions from overflowed kernels and stalled Adam."""
    x_train, y, x_test = _data()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N_TRAIN + N_TEST, 6)).astype(np.float32)
    for arch, x in ((_conv_arch(1), np.concatenate([x_train, x_test])), (iw.mlp(1, "relu", 1.3, 0.2, 2), vectors)):
        with pytest.raises(ValueError, match="too large for the engine's float32 arithmetic"):
            adam_limit.simulate(arch, scale * x[:N_TRAIN], y, scale * x[N_TRAIN:], optim.adam(0.05), 5, key=0,
                                samples=256, replicas=2)


def test_an_overflowing_squared_gradient_is_a_divergence_not_a_silent_stall():
    """Targets of 1e30 make Adam's second moment Inf and its direction 0: flagged, with the step."""
    x_train, y, x_test = _data()
    for arch, x_tr, x_te in ((_conv_arch(1), x_train, x_test),
                             (iw.mlp(1, "relu", 1.3, 0.2, 2), x_train.reshape(N_TRAIN, -1), x_test.reshape(N_TEST, -1))):
        with pytest.raises(FloatingPointError, match=r"at step 0"):
            adam_limit.simulate(arch, x_tr, 1e30 * y, x_te, optim.adam(0.05), 5, key=0, samples=256, replicas=2)


def test_the_stages_before_the_steps_are_logged_as_they_end(caplog):
    """A long setup reports as it goes (logger ``infinite_width.limits.adam_limit``, INFO), also to a file."""
    x_train, y, x_test = _data(seed=2)
    with caplog.at_level("INFO", logger="infinite_width.limits.adam_limit"):
        adam_limit.simulate(_conv_arch(2), x_train, y, x_test, optim.adam(0.05), 2, key=0, samples=128, replicas=2)
    messages = [record.getMessage() for record in caplog.records]
    stages = [m.split(":")[0] for m in messages]
    assert stages[:3] == ["roots", "features", "fields"]
    assert "fields: replica 2 of 2 drawn" in messages
    assert stages.index("setup") < stages.index("steps")
    assert all(record.name.startswith("infinite_width.limits.adam_limit.") for record in caplog.records)
