"""Low-rank roots without truncation bias: the leading pivoted Cholesky columns plus random features
of the residual (docs/theory.md, section 7).

A root truncated to its first r pivoted Cholesky columns ``A_r`` (pivots S)
is the Nystrom approximation ``A_r A_r^T = K_{:S} K_SS^{-1} K_{S:}``; a field
drawn from it lacks the residual ``R = K - A_r A_r^T`` (positive
semi-definite), which biases the limit. Every layer kernel is a second moment
of features the engine can draw exactly, ``K = E[phi phi^T]``:

* ``K^l = E[(W_l phi_{l-1}(h^{l-1}))(...)^T] + b_l^2``, with ``h^{l-1}``
  drawn exactly (from the input weights for l = 2, else from the exact root);
* ``W_std_{l+1}^2 B^{l+1} = E[(W_{l+1} phi'_{l+1}(h^{l+1}) z^{l+1})(...)^T]``
  with ``h^{l+1}`` and ``z^{l+1}`` drawn exactly and independently
  (``z^L = W_std_{L+1} zeta``).

The residual of a feature after its projection on the pivots,
``psi = phi - K_{:S} K_SS^{-1} phi_S = phi - A_r L_S^{-1} phi_S`` (``L_S =
A_r[S]``), has second moment exactly ``R``. So each replica draws n features,
and its fields are drawn from the root ``[A_r, Psi / sqrt(n)]`` (P x (r + n)):
their covariance ``A_r A_r^T + Psi Psi^T / n`` equals K in expectation over
the features. Each replica has its own features, so their randomness is part
of the replica spread and of the error bars; what is left is second order
(``O(|R|^2 / n)``, from nonlinearity in the covariance). The exact draws of
the features cost O(P q n) per replica (q the numerical rank of the source
kernel), the projection O(P r n).
"""

from __future__ import annotations

import math
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from infinite_width.limits.adam_limit.fields import field_id
from infinite_width.limits.adam_limit.roots import Root
from infinite_width.architectures import activation_fn

__all__ = ["ReplicaRoots", "feature_sources", "residual_root", "DEFAULT_RANK", "DEFAULT_FEATURES"]

HIGHEST = jax.lax.Precision.HIGHEST
_FEATURE_OFFSET = 3000


def _derivative(phi):
    return lambda h: jax.jvp(phi, (h,), (jnp.ones_like(h),))[1]


DEFAULT_RANK = 512
"""Default columns kept of a root, and random features of its residual per replica. A root is truncated
only when its numerical rank exceeds their sum (below that, the exact root is cheaper). The bias this
leaves is measured in docs/BENCHMARKS.md (section "Adam-like limit: low-rank roots")."""
DEFAULT_FEATURES = 512
"""Default random features of a truncated root's residual per replica (see `DEFAULT_RANK`)."""


def feature_sources(truncated, depth: int) -> set:
    """The fields whose exact draws make the features of the ``truncated`` fields (``h1``, drawn from the
    input weights, and ``z<L>``, a constant, left out): ``h^{l-1}`` for ``h^l``; ``h^{l+1}`` and ``z^{l+1}``
    for ``z^l``.

    Args:
      truncated: names of the truncated fields (``"h<l>"``, ``"z<l>"``).
      depth: L, the hidden layers.
    """
    needed = set()
    for name in truncated:
        l = int(name[1:])
        needed |= {f"h{l - 1}"} if name[0] == "h" else {f"h{l + 1}", f"z{l + 1}"}
    return needed - {"h1", f"z{depth}"}


class ReplicaRoots:
    """The roots each replica draws its fields from: ``replica_roots(replica) -> {field: (P, r') float32}``.

    Roots whose numerical rank is at most ``rank + features`` (or all, with
    ``rank=None``) are exact and shared by all replicas; the others are the
    leading ``rank`` pivoted Cholesky columns plus, per replica, ``features``
    random features of the residual (none: plain truncation). Built at once:
    the exact roots are not kept.

    Args:
      exact: roots of the field kernels (``{"h<l>": Root, "z<l>": Root}``), complete for those that are
        truncated or feature sources ([`feature_sources`][infinite_width.limits.adam_limit.features.feature_sources]),
        else at least the leading columns.
      first_layer: (P, d + 1) exact root of ``K^1``.
      rank: leading pivoted Cholesky columns kept (see above).
      features: random features of the residual per replica (see above).
      W_std: the network's weight scales.
      b_std: the network's bias scales.
      activations: the network's activation names.
      key: the samples key (features of field f in replica rho come from their own key).
      replicas: number of replicas.
    """

    def __init__(self, exact: Dict[str, Root], first_layer: np.ndarray, rank, features: int, W_std, b_std,
                 activations, key, replicas: int):
        self.W_std, self.b_std, self.activations = W_std, b_std, activations
        truncated = {name for name, root in exact.items()
                     if rank is not None and root.numerical_rank > rank + features}
        self.ranks = {name: (rank if name in truncated else root.numerical_rank) for name, root in exact.items()}
        self.dropped = {name: root.residual_fraction(rank if name in truncated else None)
                        for name, root in exact.items()}
        self.shared = {"h1": np.asarray(first_layer, np.float32)}
        self.shared.update({name: np.asarray(root.factor, np.float32) for name, root in exact.items()
                            if name not in truncated})
        self._sources = self._feature_sources(exact, truncated, first_layer) if features else {}
        self.per_replica = [
            {name: self._replica_root(exact[name], rank, features, jax.random.fold_in(
                jax.random.fold_in(key, _FEATURE_OFFSET + field_id(name)), replica)) for name in sorted(truncated)}
            for replica in range(replicas)
        ]
        self._sources = {}

    @property
    def depth(self) -> int:
        return len(self.activations)

    def __call__(self, replica: int) -> Dict[str, np.ndarray]:
        return self.shared | self.per_replica[replica]

    def _feature_sources(self, exact, truncated, first_layer):
        """Exact roots (float32, on the device) of the fields whose draws make the features."""
        return {name: jnp.asarray(first_layer if name == "h1" else exact[name].factor, jnp.float32)
                for name in feature_sources(truncated, self.depth) | ({"h1"} if "h2" in truncated else set())}

    def _draw(self, name, key, count):
        """``count`` exact draws (P, count) of field ``name`` (``z<L>``: the constant W_{L+1} zeta, (1, count))."""
        if name == f"z{self.depth}":
            return self.W_std[self.depth] * jax.random.normal(key, (1, count))
        source = self._sources[name]
        return jnp.matmul(source, jax.random.normal(key, (source.shape[1], count)), precision=HIGHEST)

    def _features(self, name, key, n):
        """(P, n') features of field ``name`` with ``E[Phi Phi^T]`` its kernel."""
        l = int(name[1:])
        key_h, key_z = jax.random.split(key)
        if name[0] == "h":  # K^l = E[(W_l phi(h^{l-1}))(W_l phi(h^{l-1}))^T] + b_l^2
            h = self._draw(f"h{l - 1}", key_h, n)
            phi = self.W_std[l - 1] * activation_fn(self.activations[l - 2])(h) / math.sqrt(n)
            return np.concatenate([np.asarray(phi, np.float64), np.full((h.shape[0], 1), self.b_std[l - 1])], axis=1)
        h = self._draw(f"h{l + 1}", key_h, n)  # W_{l+1}^2 B^{l+1} = E[(W_{l+1} phi'(h^{l+1}) z^{l+1})(...)^T]
        dphi = _derivative(activation_fn(self.activations[l]))(h)
        return np.asarray(self.W_std[l] * dphi * self._draw(f"z{l + 1}", key_z, n) / math.sqrt(n), np.float64)

    def _replica_root(self, root: Root, rank: int, features: int, key) -> np.ndarray:
        """``[A_r, Psi / sqrt(n)]`` (P, r + n'): leading columns and the residual of fresh features."""
        leading = root.leading(rank)
        if not features:
            return np.asarray(leading, np.float32)
        return residual_root(leading, root.pivots[:rank], self._features(root.name, key, features))


def residual_root(leading: np.ndarray, pivots: np.ndarray, features: np.ndarray) -> np.ndarray:
    """``[A_r, Psi]`` (N, r + n) float32: the leading pivoted Cholesky columns ``A_r`` (N, r, float64) and
    the residual ``Psi = Phi - A_r L_S^{-1} Phi_S`` of the features ``Phi`` (N, n, float64, already divided
    by sqrt(n)) after their projection on the pivots ``S`` (``L_S = A_r[S]``).

    Args:
      leading: (N, r) float64 the leading pivoted Cholesky columns ``A_r``.
      pivots: (r,) the pivots ``S`` of those columns.
      features: (N, n) float64 the features ``Phi``, already divided by sqrt(n).
    """
    coefficients = scipy.linalg.solve_triangular(leading[pivots], features[pivots], lower=True)
    # Written straight into the float32 root, with one (N, n) float64 temporary: the same numbers as
    # concatenating in float64 and rounding, at a third of the transient memory.
    root = np.empty((leading.shape[0], leading.shape[1] + features.shape[1]), np.float32)
    root[:, :leading.shape[1]] = leading
    residual = leading @ coefficients
    np.subtract(features, residual, out=residual)
    root[:, leading.shape[1]:] = residual
    return root
