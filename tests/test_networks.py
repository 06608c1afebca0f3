"""Finite networks: forward pass, parametrizations, inits, groups, empirical kernels."""

import math

import jax
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import finite, kernels
from infinite_width.architectures import (
    Activation,
    Architecture,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    LayerNorm,
    MaxPool,
)

RNG = np.random.default_rng(0)
X_VEC = RNG.normal(size=(6, 5)).astype(np.float32)
X_IMG = RNG.normal(size=(3, 8, 8, 3)).astype(np.float32)

CONV_ARCH = Architecture(
    (
        Conv(None, (3, 3), (2, 2), "VALID", 1.2, 0.3),
        Activation("gelu"),
        LayerNorm(),
        AvgPool((2, 2), (1, 1), "SAME"),
        Flatten(),
        Dense(None, 1.1, 0.2),
        Activation("erf"),
        Dense(2, 1.0, 0.1),
    ),
    name="strided-conv",
    input_kind="image",
)


def fitted_slope(widths, values):
    return np.polyfit(np.log(widths), np.log(values), 1)[0]


def to_stax_params(arch, params):
    """Our params in neural-tangents' serial layout: (W, b) per weighted layer, () otherwise."""
    it = iter(params)
    return [(lambda p: (p["W"], p["b"]))(next(it)) if isinstance(layer, (Dense, Conv)) else () for layer in arch.layers]


@pytest.mark.parametrize(
    "arch, x",
    [
        (iw.mlp(2, "erf", 1.3, 0.2, 3), X_VEC),
        (iw.mlp(0, "relu", 1.3, 0.2, 2), X_VEC),
        (iw.myrtle(5, "relu", 1.4, 0.1, 4), X_IMG),
        (CONV_ARCH, X_IMG),
    ],
    ids=["mlp2", "mlp0", "myrtle5", "conv-layernorm-avgpool-flatten"],
)
def test_ntk_network_equals_neural_tangents_apply(arch, x):
    net = finite.network(arch, 16)
    params = net.init(jax.random.PRNGKey(0), x.shape[1:])
    _, stax_apply, _ = kernels.stax(arch, 16)
    ours = np.asarray(net.apply(params, x))
    theirs = np.asarray(stax_apply(to_stax_params(arch, params), x))
    assert ours.shape == (x.shape[0], arch.out_dim)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_max_pool_matches_numpy():
    arch = Architecture(
        (Conv(None, (1, 1), W_std=1.0, b_std=0.0), MaxPool((2, 2), (2, 2)), Flatten(), Dense(1)), input_kind="image"
    )
    net = finite.network(arch, 2)
    params = net.init(1, (4, 4, 3))
    x = X_IMG[:, :4, :4]
    conv_out = np.einsum("nhwc,co->nhwo", x, np.asarray(params[0]["W"])[0, 0]) / math.sqrt(3)
    pooled = conv_out.reshape(3, 2, 2, 2, 2, 2).max(axis=(2, 4)).reshape(3, -1)
    expected = pooled @ np.asarray(params[1]["W"]) / math.sqrt(8)
    np.testing.assert_allclose(np.asarray(net.apply(params, x)), expected, rtol=1e-5, atol=1e-6)


def test_groups_label_every_leaf():
    for depth, expected in [
        (0, [("readout_W", "output_b")]),
        (1, [("input_W", "hidden_b"), ("readout_W", "output_b")]),
        (3, [("input_W", "hidden_b"), ("hidden_W", "hidden_b"), ("hidden_W", "hidden_b"), ("readout_W", "output_b")]),
    ]:
        net = finite.network(iw.mlp(depth, out_dim=2), 8)
        labels = net.groups(net.init(0, 3))
        assert [(layer["W"], layer["b"]) for layer in labels] == expected
        scales = net.group_scales(3)
        assert [(layer["W"].group, layer["b"].group) for layer in scales] == expected


@pytest.mark.parametrize("n, d", [(16, 3), (100, 7)])
def test_group_scales_reproduce_design_table_for_mlp(n, d):
    sw, sb = 1.3, 0.2
    scales = finite.network(iw.mlp(2, "relu", sw, sb, 4), n).group_scales((d,))
    table = {  # docs/theory.md, section 3: group -> (s, r)
        "input_W": (sw / math.sqrt(n * d), 1 / math.sqrt(n * d)),
        "hidden_W": (sw / n, 1 / n),
        "hidden_b": (sb / math.sqrt(n), 1 / math.sqrt(n)),
        "readout_W": (sw / math.sqrt(n), 1 / math.sqrt(n)),
        "output_b": (sb, 1.0),
    }
    seen = set()
    for layer in scales:
        for leaf in layer.values():
            assert (leaf.s, leaf.r) == pytest.approx(table[leaf.group], rel=1e-12)
            seen.add(leaf.group)
    assert seen == set(table)


def test_group_scales_use_conv_fan_in():
    sw, n, c = 1.4, 12, 3
    arch = iw.conv(2, "relu", (3, 3), W_std=sw, b_std=0.1, out_dim=2)
    scales = finite.network(arch, n).group_scales((8, 8, c))
    F1, F2 = 9 * c, 9 * n
    assert scales[0]["W"].s == pytest.approx(sw / math.sqrt(F1 * n))
    assert scales[0]["W"].r == pytest.approx(1 / math.sqrt(F1 * n))
    assert scales[1]["W"].s == pytest.approx(sw / math.sqrt(F2 * n))
    assert scales[2]["W"].s == pytest.approx(sw / math.sqrt(n))  # dense readout after global pooling
    assert scales[2]["W"].r == pytest.approx(1 / math.sqrt(n))


def test_standard_and_ntk_share_the_function_at_init():
    arch = iw.mlp(2, "relu", 1.4, 0.3, 2)
    ntk, std = finite.network(arch, 32, "ntk"), finite.network(arch, 32, "standard")
    p_ntk, p_std = ntk.init(5, 5), std.init(5, 5)
    np.testing.assert_allclose(np.asarray(ntk.apply(p_ntk, X_VEC)), np.asarray(std.apply(p_std, X_VEC)), rtol=1e-5, atol=1e-6)
    # standard stores W_std/sqrt(fan_in) * z where ntk stores z
    np.testing.assert_allclose(np.asarray(p_std[1]["W"]), 1.4 / math.sqrt(32) * np.asarray(p_ntk[1]["W"]), rtol=1e-6)


def test_mup_readout_is_the_ntk_readout_divided_by_sqrt_fan_in():
    sb, n = 0.3, 64
    arch = iw.mlp(2, "relu", 1.4, sb, 2)
    ntk, mup = finite.network(arch, n, "ntk"), finite.network(arch, n, "mup")
    p_ntk, p_mup = ntk.init(7, 5), mup.init(7, 5)
    output_bias = sb * np.asarray(p_ntk[-1]["b"])
    f_ntk = np.asarray(ntk.apply(p_ntk, X_VEC)) - output_bias
    f_mup = np.asarray(mup.apply(p_mup, X_VEC)) - output_bias
    np.testing.assert_allclose(f_mup, f_ntk / math.sqrt(n), rtol=1e-4, atol=1e-6)


def test_orthogonal_init_is_scaled_semi_orthogonal():
    arch = iw.conv(2, "relu", (3, 3), out_dim=2)
    net = finite.network(arch, 40, init="orthogonal")
    params = net.init(3, (6, 6, 2))
    for layer in params:
        z = np.asarray(layer["W"], dtype=np.float64)  # ntk: stored params are the unit variables
        matrix = z.reshape(-1, z.shape[-1])
        F, out = matrix.shape
        gram = matrix.T @ matrix if F >= out else matrix @ matrix.T
        np.testing.assert_allclose(gram, max(F, out) * np.eye(min(F, out)), atol=1e-3 * max(F, out))
        assert np.mean(matrix**2) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("init", ["gaussian", "uniform"])
def test_entry_variance_of_random_inits(init):
    net = finite.network(iw.mlp(1, out_dim=1), 4096, init=init)
    params = net.init(11, 64)
    z = np.asarray(params[0]["W"]).ravel()  # 262144 entries
    assert np.mean(z) == pytest.approx(0.0, abs=0.01)
    assert np.var(z) == pytest.approx(1.0, rel=0.02)
    if init == "uniform":
        assert np.abs(z).max() <= math.sqrt(3.0) + 1e-6
        assert np.abs(z).max() > 0.99 * math.sqrt(3.0)
    else:
        kurtosis = np.mean(z**4) / np.var(z) ** 2
        assert kurtosis == pytest.approx(3.0, rel=0.05)


def test_fixed_key_gives_identical_params_and_different_keys_differ():
    net = finite.network(iw.myrtle(5, out_dim=3), 8)
    a, b, c = net.init(jax.random.PRNGKey(4), (8, 8, 3)), net.init(jax.random.PRNGKey(4), (8, 8, 3)), net.init(5, (8, 8, 3))
    for la, lb, lc in zip(a, b, c):
        np.testing.assert_array_equal(np.asarray(la["W"]), np.asarray(lb["W"]))
        assert not np.allclose(np.asarray(la["W"]), np.asarray(lc["W"]))


def test_empirical_ntk_is_the_jacobian_product():
    net = finite.network(CONV_ARCH, 6)
    params = net.init(2, X_IMG.shape[1:])
    jac = jax.jit(jax.jacrev(net.apply))(params, X_IMG)
    flat = np.concatenate([np.asarray(leaf).reshape(X_IMG.shape[0] * 2, -1) for leaf in jax.tree_util.tree_leaves(jac)], 1)
    full = (flat @ flat.T).reshape(3, 2, 3, 2).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(kernels.empirical_ntk(net, params, X_IMG, full=True), full, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        kernels.empirical_ntk(net, params, X_IMG), np.trace(full, axis1=2, axis2=3) / 2, rtol=1e-4, atol=1e-5
    )


def test_empirical_nngp_is_the_readout_feature_kernel():
    sw, sb, n = 1.3, 0.2, 24
    net = finite.network(iw.mlp(1, "erf", sw, sb, 3), n)
    params = net.init(9, 5)
    h = X_VEC @ (sw / math.sqrt(5) * np.asarray(params[0]["W"])) + sb * np.asarray(params[0]["b"])
    features = np.asarray(jax.scipy.special.erf(h))
    expected = sw**2 * features @ features.T / n + sb**2
    np.testing.assert_allclose(kernels.empirical_nngp(net, params, X_VEC), expected, rtol=1e-5, atol=1e-6)
    full = kernels.empirical_nngp(net, params, X_VEC, X_VEC[:2], full=True)
    assert full.shape == (6, 2, 3, 3)
    np.testing.assert_allclose(full, expected[:, :2, None, None] * np.eye(3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arch, x",
    [(iw.mlp(2, "tanh", 1.3, 0.2, 3), X_VEC), (iw.conv(2, "relu", out_dim=3), X_IMG)],
    ids=["mlp-tanh", "conv-gap"],
)
def test_features_are_what_the_readout_reads(arch, x):
    # In the standard parametrization the stored readout is the effective one.
    net = finite.network(arch, 7, parametrization="standard")
    params = net.init(3, x.shape[1:])
    phi = np.asarray(net.features(params, x))
    assert phi.shape == (x.shape[0], 7)
    readout = params[-1]
    np.testing.assert_allclose(phi @ readout["W"] + readout["b"], net.apply(params, x), rtol=1e-5, atol=1e-5)
    if arch.input_kind == "image":  # pooled ReLU channels of two SAME 3x3 convolutions

        def conv_relu(z, layer):
            out = jax.lax.conv_general_dilated(z, layer["W"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return np.maximum(np.asarray(out) + layer["b"], 0.0)

        pooled = conv_relu(conv_relu(x, params[0]), params[1]).mean(axis=(1, 2))
        np.testing.assert_allclose(phi, pooled, rtol=1e-5, atol=1e-6)
    else:  # phi(h^2) of an independent numpy forward pass
        h = np.tanh(x @ params[0]["W"] + params[0]["b"])
        np.testing.assert_allclose(phi, np.tanh(h @ params[1]["W"] + params[1]["b"]), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_empirical_kernels_converge_to_closed_form_like_inverse_sqrt_width():
    arch = iw.mlp(2, "relu", 1.4, 0.1, 1)
    x = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    nngp, ntk = kernels.nngp(arch, x), kernels.ntk(arch, x)
    widths = [32, 128, 512, 2048]
    errors = {"nngp": [], "ntk": []}
    for width in widths:
        net = finite.network(arch, width)
        e_nngp, e_ntk = [], []
        for seed in range(6):
            params = net.init(jax.random.PRNGKey(100 * seed + width), (4,))
            e_nngp.append(np.linalg.norm(kernels.empirical_nngp(net, params, x) - nngp) / np.linalg.norm(nngp))
            e_ntk.append(np.linalg.norm(kernels.empirical_ntk(net, params, x) - ntk) / np.linalg.norm(ntk))
        errors["nngp"].append(np.mean(e_nngp))
        errors["ntk"].append(np.mean(e_ntk))
    for name, values in errors.items():
        slope = fitted_slope(widths, values)
        assert -0.7 <= slope <= -0.35, (name, slope, values)
        assert values[-1] < 0.1, (name, values)


@pytest.mark.slow
def test_mup_moves_features_by_order_one_where_ntk_does_not():
    """One SGD step: hidden pre-activation change is O(1) in mup, O(n^-1/2) in ntk (documented)."""
    from infinite_width import optim

    arch = iw.mlp(2, "relu", 1.4, 0.1, 1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.normal(size=(8, 1)).astype(np.float32)
    widths = [64, 256, 1024]
    slopes = {}
    for parametrization in ("ntk", "mup"):
        changes = []
        for width in widths:
            net = finite.network(arch, width, parametrization)
            _, result = finite.train(net, x, y, optim.sgd(0.5), 1, centered=True, key=3, seeds=4, record=[1],
                                     return_params=True)
            scale = net.group_scales(4)[0]

            def first_layer(params):
                return x @ (scale["W"].multiplier * params[0]["W"]) + scale["b"].multiplier * params[0]["b"][:, None, :]

            delta = first_layer(result.final_params) - first_layer(result.initial_params)
            changes.append(np.sqrt(np.mean(delta**2)))
        slopes[parametrization] = fitted_slope(widths, changes)
    assert abs(slopes["mup"]) < 0.15, slopes
    assert -0.65 < slopes["ntk"] < -0.35, slopes


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(width=0), ValueError, "width"),
        (dict(width=2.5), ValueError, "width"),
        (dict(width=8, parametrization="ntk2"), ValueError, "parametrization"),
        (dict(width=8, init="xavier"), ValueError, "init"),
    ],
)
def test_bad_network_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        finite.network(iw.mlp(1), **kwargs)


def test_bad_network_inputs():
    net = finite.network(iw.mlp(1, out_dim=1), 4)
    params = net.init(0, 5)
    with pytest.raises(TypeError, match="Architecture"):
        finite.network("mlp", 4)
    with pytest.raises(ValueError, match="input_shape"):
        net.init(0, (8, 8, 3))
    with pytest.raises(ValueError, match="shape"):
        net.apply(params, X_VEC[:, :3])
    with pytest.raises(ValueError, match="shape"):
        kernels.empirical_ntk(net, params, X_IMG)
    with pytest.raises(ValueError, match="NaN"):
        kernels.empirical_nngp(net, params, np.full((2, 5), np.nan))
    with pytest.raises(ValueError, match="layers"):
        kernels.empirical_ntk(net, params[:1], X_VEC)
    with pytest.raises(TypeError, match="Network"):
        kernels.empirical_ntk(iw.mlp(1), params, X_VEC)
    with pytest.raises(ValueError, match="padding"):
        finite.network(Architecture((Conv(1, padding="CIRCULAR"),), input_kind="image"), 4)
    conv_on_vectors = Architecture((Conv(None), GlobalAvgPool(), Dense(1)))
    with pytest.raises(ValueError, match="H, W, C"):
        finite.network(conv_on_vectors, 4).init(0, 5)


def test_network_records_its_options():
    net = finite.network(iw.mlp(1), 8, parametrization="mup", init="uniform")
    assert isinstance(net, finite.Network)
    assert (net.width, net.parametrization, net.init_kind) == (8, "mup", "uniform")


@pytest.mark.parametrize("init", ["gaussian", "orthogonal", "uniform"])
def test_init_many_stacks_independent_inits(init):
    # Orthogonal networks are drawn one at a time (batched QR can deadlock
    # jaxlib's CPU LAPACK); the result must equal separate init calls.
    net = finite.network(iw.mlp(2, "relu", out_dim=2), 32, init=init)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    stacked = net.init_many(keys, (5,))
    for i, key in enumerate(keys):
        single = net.init(key, (5,))
        for a, b in zip(jax.tree_util.tree_leaves(stacked), jax.tree_util.tree_leaves(single)):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=1e-5, atol=1e-6)
