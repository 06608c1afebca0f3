"""Layer-wise infinite-width kernels of an MLP (docs/theory.md, section 2).

``K^l`` (pre-activation NNGP), ``S^l`` (post-activation covariance),
``Sd^l`` (derivative covariance) and the backward kernels ``B^l``, from
which the NTK is ``sum_l B^l (W_std_l^2 S^{l-1} + b_std_l^2)`` and the NNGP
``K^{L+1}``. The Adam-like limit samples its fields from them.

Shapes: ``x1`` (N1, d), ``x2`` (N2, d) or None (``x2 = x1``); every kernel
(N1, N2), per output channel.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width._src.checks import validate_inputs
from infinite_width._src.numerics import precision_scope
from infinite_width.architectures import Activation, Architecture, Dense

__all__ = ["layerwise", "LayerwiseKernels"]


@dataclasses.dataclass(frozen=True)
class LayerwiseKernels:
    """Layer-wise infinite-width kernels of an MLP with ``L`` hidden layers.

    Lists are indexed by layer as in docs/theory.md, section 2; every entry
    has shape (N1, N2).

    Attributes:
      K: ``K[l-1] = K^l``, pre-activation NNGP of layer l, l = 1..L+1
        (``K[L] = K^{L+1}`` is the output NNGP).
      S: ``S[l] = S^l = E[phi(h^l(x)) phi(h^l(x'))]``, l = 0..L
        (``S^0 = x.x'/d``).
      Sd: ``Sd[l-1] = Sd^l = E[phi'(h^l(x)) phi'(h^l(x'))]``, l = 1..L.
      B: ``B[l-1] = B^l``, backward kernel, l = 1..L+1 (``B^{L+1} = 1``).
      W_std, b_std: per weighted layer l = 1..L+1 (``W_std[l-1]``).
    """

    K: List[np.ndarray]
    S: List[np.ndarray]
    Sd: List[np.ndarray]
    B: List[np.ndarray]
    W_std: Tuple[float, ...]
    b_std: Tuple[float, ...]

    @property
    def depth(self) -> int:
        return len(self.Sd)

    @property
    def nngp(self) -> np.ndarray:
        return self.K[-1]

    def ntk_terms(self) -> List[np.ndarray]:
        """``B^l * (W_std_l^2 S^{l-1} + b_std_l^2)`` for l = 1..L+1; their sum is the NTK."""
        return [self.B[l] * (self.W_std[l] ** 2 * self.S[l] + self.b_std[l] ** 2) for l in range(self.depth + 1)]

    @property
    def ntk(self) -> np.ndarray:
        return sum(self.ntk_terms())


def _require_mlp(arch: Architecture) -> None:
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if not arch.is_mlp:
        raise ValueError(
            f"layer-wise kernels are defined for MLPs (alternating Dense/Activation layers), "
            f"not for {arch.name!r}"
        )


def layerwise(arch: Architecture, x1, x2=None, *, dtype: str = "float32") -> LayerwiseKernels:
    """K^l, S^l, Sd^l and B^l of an MLP, from neural-tangents' layer kernels.

    ``K^l`` and ``S^l`` come from running the network's layers one by one;
    ``Sd^l`` from passing a kernel whose ``ntk`` is all ones through the
    activation layer (its output ``ntk`` is then ``Sd^l``).
    """
    _require_mlp(arch)
    with precision_scope(dtype) as np_dtype:
        x1, x2 = validate_inputs(arch, x1, x2, np_dtype)
        out = _layerwise_jit(arch)(x1, x2)
        out = jax.tree_util.tree_map(np.asarray, out)
    K, S, Sd = out
    dense = [layer for layer in arch.layers if isinstance(layer, Dense)]
    W_std = tuple(float(layer.W_std) for layer in dense)
    b_std = tuple(float(layer.b_std) for layer in dense)
    B = [np.ones_like(K[-1])]
    for l in range(len(Sd), 0, -1):  # B^l = W_std_{l+1}^2 Sd^l * B^{l+1}
        B.insert(0, W_std[l] ** 2 * Sd[l - 1] * B[0])
    return LayerwiseKernels(K=list(K), S=list(S), Sd=list(Sd), B=B, W_std=W_std, b_std=b_std)


@functools.lru_cache(maxsize=None)
def _layerwise_jit(arch: Architecture):
    from infinite_width._src.nt import stax_layer

    layer_kernel_fns = [stax_layer(layer, 1, "ntk")[2] for layer in arch.layers]

    def run(x1, x2):
        other = x1 if x2 is None else x2
        S = [x1 @ other.T / x1.shape[1]]
        K, Sd = [], []
        kernel = layer_kernel_fns[0](x1, x2, None)
        for layer, kernel_fn in zip(arch.layers[1:], layer_kernel_fns[1:]):
            if isinstance(layer, Activation):
                K.append(kernel.nngp)
                derivative = kernel_fn(kernel.replace(ntk=jnp.ones_like(kernel.nngp)))
                S.append(derivative.nngp)
                Sd.append(derivative.ntk)
            kernel = kernel_fn(kernel)
        K.append(kernel.nngp)
        return K, S, Sd

    return jax.jit(run)
