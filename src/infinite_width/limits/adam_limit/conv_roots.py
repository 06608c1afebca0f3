"""Roots of the full-position field kernels of a conv net, without forming them (docs/theory.md, section 10).

A field over the ``N = P |S|`` (point, position) coordinates is drawn as
``A @ eps`` with a root ``A`` (N, r) of its N x N kernel. The roots here are
pivoted Cholesky factors computed *by point blocks*: the pivot is the
coordinate with the largest remaining variance; its point's rows (all
``|S|`` positions at once, [`PositionKernels`][infinite_width.limits.adam_limit.conv_kernels.PositionKernels])
are computed and the greedy factorization goes on inside that block while
the block's best remaining variance is at least ``STAY_FRACTION`` of the
best one elsewhere. Measured on 100 CIFAR-10 images pooled to 8 x 8
(docs/BENCHMARKS.md, 256 columns of the root of ``K^2``): 4.8% of the
variance left against 4.4% for coordinate-wise greedy pivoting, with 10
point blocks of kernel rows computed instead of 242. For ``|S| = 1``
it is the coordinate-wise greedy factorization of the MLP engine.

* A root is **exact** when the factorization reaches the kernel's
  numerical rank (every remaining variance below ``EXACT_TOLERANCE`` of the
  largest): it is computed in full when ``N <= rank + features``, or when
  the rank is reached within ``rank`` columns.
* Otherwise the first ``rank`` columns ``A_r`` are kept, and every replica
  adds ``features`` random features of the residual
  ([`ConvReplicaRoots`][infinite_width.limits.adam_limit.conv_roots.ConvReplicaRoots]): ``[A_r, Psi / sqrt(n)]``, whose
  covariance equals the kernel in expectation over the features when the features' sources are exact (as for the MLP,
  [`features`][infinite_width.limits.adam_limit.features]).
"""

from __future__ import annotations

import functools
import math
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width.architectures import activation_fn
from infinite_width.limits.adam_limit.conv_kernels import PositionKernels
from infinite_width.limits.adam_limit.conv_terms import ConvNet
from infinite_width.limits.adam_limit.features import residual_root
from infinite_width.limits.adam_limit.fields import field_id
from infinite_width.limits.adam_limit.roots import EXACT_TOLERANCE, Root

__all__ = ["block_pivoted_root", "conv_field_roots", "ConvReplicaRoots", "STAY_FRACTION", "shift_positions"]

HIGHEST = jax.lax.Precision.HIGHEST
_FEATURE_OFFSET = 3000

STAY_FRACTION = 0.25
"""Stay in a pivot point's block while its best remaining variance is at least this fraction of the best
elsewhere (docs/BENCHMARKS.md: 0.25 leaves 4.8% of the variance where coordinate-wise greedy pivoting leaves
4.4%, with 24 times fewer point blocks of kernel rows)."""


def block_pivoted_root(variances: np.ndarray, block_rows, positions: int, name: str, columns: int,
                       stay_fraction: float = STAY_FRACTION) -> Root:
    """At most ``columns`` columns of the pivoted Cholesky root of a kernel given by point blocks.

    Args:
      variances: (N,) the kernel's diagonal, coordinates ordered (point, position).
      block_rows: ``block_rows(point) -> (positions, N)`` the kernel's rows of one point's coordinates.
      positions: |S|, coordinates per point.
      name: the kernel's name, for messages.
      columns: the most columns to compute.
      stay_fraction: stay in the pivot point's block while its best remaining variance is at least this
        fraction of the best elsewhere (1: coordinate-wise greedy pivoting, one block computation per
        column at worst; 0: every column of the block before leaving it).

    Returns:
      a [`Root`][infinite_width.limits.adam_limit.Root] (factor (N, q) float64, pivots, complete
      when the numerical rank was reached).
    """
    variances = np.asarray(variances, np.float64)
    n = variances.shape[0]
    remaining = variances.copy()
    tolerance = EXACT_TOLERANCE * float(np.max(variances, initial=0.0))
    factor = np.zeros((min(columns, n), n))  # row j = column j of the root
    pivots = []
    while len(pivots) < factor.shape[0]:
        best = int(np.argmax(remaining))
        if remaining[best] <= tolerance:
            break
        point = best // positions
        local = np.arange(point * positions, (point + 1) * positions)
        elsewhere = remaining.copy()
        elsewhere[local] = 0.0
        stay = stay_fraction * float(np.max(elsewhere, initial=0.0))
        j0 = len(pivots)
        # The block's rows minus their projections on the columns so far (one matrix product).
        residual = np.asarray(block_rows(point), np.float64) - factor[:j0, local].T @ factor[:j0]
        while len(pivots) < factor.shape[0]:
            q = int(local[np.argmax(remaining[local])])
            if remaining[q] <= tolerance or (q != best and remaining[q] < stay):
                break
            j = len(pivots)
            row = residual[q - local[0]] - factor[j0:j, q] @ factor[j0:j]
            factor[j] = row / math.sqrt(remaining[q])
            remaining -= factor[j] ** 2
            remaining[q] = 0.0
            pivots.append(q)
    q = len(pivots)
    complete = bool(np.max(remaining, initial=0.0) <= tolerance)
    return Root(factor[:q].T.copy(), np.array(pivots, np.int64), variances, name, complete)


def conv_field_roots(kernels: PositionKernels, needed, rank: Optional[int], features: int) -> Dict[str, Root]:
    """The roots of the ``needed`` fields (``h<l>``, l >= 2; ``z<l>``, l < L) and, for a truncated root with
    features, of the fields its features are drawn from
    ([`ConvReplicaRoots`][infinite_width.limits.adam_limit.conv_roots.ConvReplicaRoots]): module docstring.

    Args:
      kernels: the [`PositionKernels`][infinite_width.limits.adam_limit.conv_kernels.PositionKernels] of all
        points.
      needed: the names of the fields to draw (any iterable).
      rank: columns kept of a root that is not exact within ``rank + features`` columns (None: exact roots).
      features: random features of the residual per replica (0: plain truncation); with features, the roots
        of their source fields are computed too.

    Returns:
      ``{field: Root}`` ([`Root`][infinite_width.limits.adam_limit.Root]).
    """
    net = kernels.net
    n = kernels.points * net.positions
    columns = n if rank is None or n <= rank + features else rank
    roots: Dict[str, Root] = {}

    def compute(name):
        if name in roots:
            return
        roots[name] = block_pivoted_root(kernels.variances(name), lambda point: kernels.rows(name, [point]),
                                         net.positions, name, columns)
        if features and not roots[name].complete:
            for source in _feature_sources(name, net.depth):
                compute(source)

    for name in _in_source_order(needed):
        compute(name)
    return roots


def _feature_sources(name: str, depth: int):
    """The fields drawn from roots whose draws make the features of ``name`` (``h1`` is exact, ``z<L>``
    constant): ``h^{l-1}`` for ``h^l``; ``h^{l+1}`` and ``z^{l+1}`` for ``z^l``."""
    l = int(name[1:])
    if name[0] == "h":
        return [f"h{l - 1}"] if l - 1 >= 2 else []
    return [f"h{l + 1}"] + ([f"z{l + 1}"] if l + 1 < depth else [])


def _in_source_order(names):
    """``h`` fields by increasing layer, then ``z`` fields by decreasing layer: every source before its field."""
    return (sorted((n for n in names if n[0] == "h"), key=lambda n: int(n[1:]))
            + sorted((n for n in names if n[0] == "z"), key=lambda n: -int(n[1:])))


def shift_positions(values, net: ConvNet, delta, sign: int = 1):
    """``values(x, s + sign * delta)`` (zero outside the image) for values on the positions.

    Args:
      values: (P, |S|, ...) values on every point and position.
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet] (its image shape).
      delta: (2,) the offset ``(di, dj)``.
      sign: 1 or -1, the direction of the shift.

    Returns:
      (P, |S|, ...), the shape of ``values``.
    """
    H, W, _ = net.image_shape
    grid = values.reshape((values.shape[0], H, W) + values.shape[2:])
    di, dj = sign * int(delta[0]), sign * int(delta[1])
    pad = ((0, 0), (abs(di), abs(di)), (abs(dj), abs(dj))) + ((0, 0),) * (values.ndim - 2)
    padded = jnp.pad(grid, pad)
    shifted = padded[:, abs(di) + di:abs(di) + di + H, abs(dj) + dj:abs(dj) + dj + W]
    return shifted.reshape(values.shape)


class ConvReplicaRoots:
    """The roots each replica draws its fields from: ``roots(replica) -> {field: (N, r') float32}``.

    Exact roots are shared by every replica; a truncated root becomes, per
    replica, its leading ``rank`` columns plus the residual of ``features``
    fresh random features (module docstring), built when the replica is
    drawn (one replica's roots in memory at a time). The features of
    ``h^l`` are ``W_std_l / sqrt(|F_l|) sum_delta omega_delta phi(h^{l-1}(x, s + delta))`` plus the bias
    column ``b_std_l``; those of ``z^l`` are
    ``W_std_{l+1} / sqrt(|F_{l+1}|) sum_delta omega_delta phi'(h^{l+1}) z^{l+1} (x, s - delta)``, with
    ``omega ~ N(0, 1)`` per feature and tap and the sources drawn from their own (replica) roots.

    Args:
      net: the network.
      roots: the [`conv_field_roots`][infinite_width.limits.adam_limit.conv_roots.conv_field_roots].
      first_layer: (N, |F_1| C + 1) float32, the exact root of ``K^1``.
      rank: leading columns kept of a truncated root.
      features: random features of the residual per replica (0: plain truncation).
      key: the samples key.
    """

    def __init__(self, net: ConvNet, roots: Dict[str, Root], first_layer, rank, features: int, key):
        self.net, self.rank, self.features, self.key = net, rank, features, key
        self.first_layer = jnp.asarray(first_layer, jnp.float32)
        self.truncated = {name for name, root in roots.items() if not root.complete}
        self.ranks = {name: root.factor.shape[1] for name, root in roots.items()}
        self.dropped = {name: root.residual_fraction(root.factor.shape[1]) for name, root in roots.items()}
        self._roots = roots
        self.shared = {name: np.asarray(root.factor, np.float32) for name, root in roots.items()
                       if name not in self.truncated}

    def __call__(self, replica: int) -> Dict[str, np.ndarray]:
        roots = dict(self.shared)
        for name in _in_source_order(self.truncated):
            root = self._roots[name]
            if not self.features:
                roots[name] = np.asarray(root.factor, np.float32)
                continue
            key = jax.random.fold_in(jax.random.fold_in(self.key, _FEATURE_OFFSET + field_id(name)), replica)
            phi = self._features(name, key, roots)
            roots[name] = residual_root(root.factor, root.pivots, phi)
        return roots

    def _features(self, name, key, roots) -> np.ndarray:
        """(N, n') float64 features of field ``name``, divided by sqrt(n): ``E[Phi Phi^T]`` is its kernel."""
        l = int(name[1:])
        if name[0] == "h":
            sources = (self._source(f"h{l - 1}", roots),)
        else:
            deeper = (self._source(f"z{l + 1}", roots),) if l + 1 < self.net.depth else ()
            sources = (self._source(f"h{l + 1}", roots),) + deeper
        values = np.asarray(_feature_values(self.net, name, self.features, key, sources), np.float64)
        bias = self.net.b_std[l - 1] if name[0] == "h" else 0.0
        if bias == 0.0:
            return values
        return np.concatenate([values, np.full((values.shape[0], 1), bias)], axis=1)

    def _source(self, name, roots):
        """The root field ``name`` is drawn from (``h1``: the exact first layer), float32 on the device."""
        return self.first_layer if name == "h1" else jnp.asarray(roots[name], jnp.float32)


@functools.partial(jax.jit, static_argnames=("net", "name", "count"))
def _feature_values(net: ConvNet, name: str, count: int, key, sources):
    """(N, count) float32 features of field ``name`` without the bias column (`ConvReplicaRoots`).

    One compiled program per field: drawn eagerly, the tap shifts of (N, count) arrays were each a
    separate pass over memory and took most of the drawing's time (docs/BENCHMARKS.md).
    ``sources``: the roots of ``h^{l-1}`` for ``h^l``; of ``h^{l+1}`` (and ``z^{l+1}``, l + 1 < L) for ``z^l``.
    """
    l = int(name[1:])
    key_h, key_z, key_taps = jax.random.split(key, 3)
    positions = (-1, net.positions, count)

    def draw(root, key):
        return jnp.matmul(root, jax.random.normal(key, (root.shape[1], count)), precision=HIGHEST)

    if name[0] == "h":  # K^l = W_l^2 T_l[S^{l-1}] + b_l^2
        phi = activation_fn(net.activations[l - 2])(draw(sources[0], key_h)).reshape(positions)
        taps, scale, sign = net.taps(l), net.W_std[l - 1], 1
    else:  # Z^l = W_{l+1}^2 T_{l+1}[Sd^{l+1} Z^{l+1}]
        h = draw(sources[0], key_h)
        if l + 1 == net.depth:
            z = net.W_std[net.depth] / net.positions * jax.random.normal(key_z, (1, count))
        else:
            z = draw(sources[1], key_z)
        dphi = jax.jvp(activation_fn(net.activations[l]), (h,), (jnp.ones_like(h),))[1]
        phi = (dphi * z).reshape(positions)
        taps, scale, sign = net.taps(l + 1), net.W_std[l], -1
    omega = jax.random.normal(key_taps, (len(taps), count))
    total = sum(omega[i] * shift_positions(phi, net, delta, sign) for i, delta in enumerate(taps))
    return (scale / math.sqrt(len(taps) * count) * total).reshape(-1, count)
