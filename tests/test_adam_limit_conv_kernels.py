"""Full-position layer kernels and roots of the conv Adam-like limit (docs/theory.md, section 10).

* the forward kernels ``K^l`` on all (point, position) pairs equal neural-tangents' CNN-GP kernels of the
  network's prefixes (``diagonal_spatial=False``);
* forward and backward kernels together give neural-tangents' CNTK:
  ``Theta = NNGP + sum_l sum_{s,s'} Sd^l Z^l K^l`` (the identity of docs/theory.md, section 10), which
  pins the backward covariances ``Z^l`` and every constant (padding, pooling, fan-in);
* the point-block pivoted Cholesky root is exact at the numerical rank and, truncated, keeps a PSD
  residual that vanishes at its pivots; for one position it is the MLP engine's greedy root;
* per-replica random features of the residual restore each field's covariance in expectation (exactly
  when their sources are exact; to second order in the dropped variance otherwise, below resolution here).
"""

import math

import jax
import numpy as np
import pytest

from infinite_width import kernels, nt
from infinite_width.architectures import Activation, Architecture, Conv, Dense, GlobalAvgPool
from infinite_width.limits.adam_limit.conv_fields import first_layer_root
from infinite_width.limits.adam_limit.conv_kernels import PositionKernels
from infinite_width.limits.adam_limit.conv_roots import ConvReplicaRoots, block_pivoted_root, conv_field_roots
from infinite_width.limits.adam_limit.conv_terms import conv_network
from infinite_width.limits.adam_limit.roots import partial_pivoted_root

LAYERS = [(Conv(None, (3, 3), W_std=1.3, b_std=0.2), "relu"), (Conv(None, (1, 3), W_std=1.1, b_std=0.3), "erf"),
          (Conv(None, (3, 1), W_std=0.9, b_std=0.1), "gelu")]
READOUT = Dense(2, 1.2, 0.4)
P, IMAGE = 5, (3, 4, 2)


def _arch(depth):
    layers = sum([[conv, Activation(name)] for conv, name in LAYERS[:depth]], [])
    return Architecture(tuple(layers) + (GlobalAvgPool(), READOUT), name=f"conv{depth}", input_kind="image")


def _images(seed=0, points=P):
    return np.random.default_rng(seed).normal(size=(points,) + IMAGE).astype(np.float32)


def _nt_positions(kernel):
    """neural-tangents' (N1, N2, H, H, W, W) nngp (or (N1, N2, W, W, H, H) when ``is_reversed``) as
    (N1 |S|, N2 |S|), positions row-major."""
    order = (0, 4, 2, 1, 5, 3) if kernel.is_reversed else (0, 2, 4, 1, 3, 5)
    array = np.asarray(kernel.nngp).transpose(order)
    return array.reshape(array.shape[0] * array.shape[1] * array.shape[2], -1)


def _nt_layer(conv):
    return nt.stax.Conv(1, conv.filter_shape, padding="SAME", W_std=conv.W_std, b_std=conv.b_std)


def test_forward_kernels_are_neural_tangents_cnn_gp_kernels_on_every_position_pair():
    x = _images()
    arch = _arch(3)
    position_kernels = PositionKernels(conv_network(arch, IMAGE), x)
    activations = {"relu": nt.stax.Relu(), "erf": nt.stax.Erf(), "gelu": nt.stax.Gelu(approximate=False)}
    prefix = [_nt_layer(LAYERS[0][0])]
    for l in (2, 3):
        prefix += [activations[LAYERS[l - 2][1]], _nt_layer(LAYERS[l - 1][0])]
        expected = _nt_positions(nt.stax.serial(*prefix)[2](x, x))
        ours = position_kernels.rows(f"h{l}", np.arange(P))
        np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-6 * np.abs(expected).max())
        np.testing.assert_allclose(position_kernels.variances(f"h{l}"), np.diag(expected), rtol=1e-5)
        # Rows of a subset of pivot points are the same rows.
        np.testing.assert_array_equal(position_kernels.rows(f"h{l}", [3, 1]),
                                      np.concatenate([ours[36:48], ours[12:24]]))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_forward_and_backward_kernels_sum_to_neural_tangents_cntk(depth):
    x = _images(seed=depth)
    arch = _arch(depth)
    net = conv_network(arch, IMAGE)
    blocks = PositionKernels(net, x).layers(np.arange(P))
    # Theta = K^{L+1} + sum_l <Cov u^l, K^l> over position pairs, Cov u^l = Sd^l * Z^l.
    theta = READOUT.W_std**2 * blocks[f"S{depth}"].mean(axis=(1, 3)) + READOUT.b_std**2
    np.testing.assert_allclose(theta, np.asarray(kernels.nngp(arch, x)), rtol=1e-5)
    for l in range(1, depth + 1):
        theta = theta + np.sum(blocks[f"Sd{l}"] * blocks[f"Z{l}"] * blocks[f"K{l}"], axis=(1, 3))
    expected = np.asarray(kernels.ntk(arch, x))
    np.testing.assert_allclose(theta, expected, rtol=2e-5, atol=1e-6 * np.abs(expected).max())
    for l in range(1, depth):  # the z fields' variances are the diagonal of their rows
        rows = PositionKernels(net, x).rows(f"z{l}", np.arange(P))
        np.testing.assert_allclose(np.diag(rows), PositionKernels(net, x).variances(f"z{l}"), rtol=1e-5)


def _kernel_rows(matrix, positions):
    return lambda point: matrix[point * positions:(point + 1) * positions]


def test_point_block_root_is_exact_at_the_rank_and_a_pivoted_cholesky_approximation_when_truncated():
    rng = np.random.default_rng(0)
    positions, points = 4, 6
    a = rng.normal(size=(positions * points, 9))
    kernel = a @ a.T  # rank 9 over 24 coordinates
    root = block_pivoted_root(np.diag(kernel), _kernel_rows(kernel, positions), positions, "K", 24)
    assert root.complete and root.factor.shape[1] == 9
    np.testing.assert_allclose(root.factor @ root.factor.T, kernel, atol=1e-10 * np.abs(kernel).max())
    truncated = block_pivoted_root(np.diag(kernel), _kernel_rows(kernel, positions), positions, "K", 5)
    assert not truncated.complete and truncated.factor.shape[1] == 5
    residual = kernel - truncated.factor @ truncated.factor.T
    assert np.linalg.eigvalsh(residual).min() > -1e-9
    np.testing.assert_allclose(residual[np.ix_(truncated.pivots, truncated.pivots)], 0, atol=1e-9)
    np.testing.assert_allclose(np.diag(residual), truncated.residual(5), atol=1e-9)
    # One position per point: the coordinate-wise greedy root of the MLP engine, column for column.
    mlp = partial_pivoted_root(kernel, "K", 7)
    one = block_pivoted_root(np.diag(kernel), _kernel_rows(kernel, 1), 1, "K", 7)
    np.testing.assert_array_equal(one.pivots, mlp.pivots)
    np.testing.assert_allclose(one.factor, mlp.factor, atol=1e-10 * np.abs(kernel).max())


def test_random_features_of_the_residual_restore_every_field_kernel_in_expectation():
    """Mean over replicas of root root^T equals each field's full-position kernel, within the replicas'
    standard error; the leading columns alone miss it by many standard errors."""
    x = _images(seed=4, points=4)
    net = conv_network(_arch(3), IMAGE)
    position_kernels = PositionKernels(net, x)
    names = {"h2", "h3", "z1", "z2"}
    rank, features, replicas = 6, 24, 100
    roots = conv_field_roots(position_kernels, names, rank, features)
    assert all(not roots[name].complete for name in names)
    first = np.asarray(first_layer_root(net, position_kernels.patches)).reshape(4 * net.positions, -1)
    replica_roots = ConvReplicaRoots(net, roots, first, rank, features, jax.random.PRNGKey(0))
    draws = [replica_roots(r) for r in range(replicas)]
    for name in sorted(names):
        kernel = position_kernels.rows(name, np.arange(4)).astype(np.float64)
        covariances = np.stack([d[name].astype(np.float64) @ d[name].T.astype(np.float64) for d in draws])
        se = covariances.std(0, ddof=1) / math.sqrt(replicas) + 1e-5 * np.abs(kernel).max()
        z = (covariances.mean(0) - kernel) / se
        leading = roots[name].factor
        truncation = np.abs(leading @ leading.T - kernel).max() / se.max()
        print(name, "max |z|", np.abs(z).max(), "mean z^2", np.mean(z**2), "truncation / se", truncation)
        # h2's features come from the exact first layer; the others' from truncated (replica) roots, whose
        # second-order bias is below this test's resolution.
        assert np.abs(z).max() < 5 and np.mean(z**2) < 1.5
        assert truncation > 10
