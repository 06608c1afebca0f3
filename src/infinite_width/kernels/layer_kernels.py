"""Layer-wise infinite-width kernels of an MLP (docs/theory.md, section 2).

``K^l`` (pre-activation NNGP), ``S^l`` (post-activation covariance),
``Sd^l`` (derivative covariance) and the backward kernels ``B^l``, from
which the NTK is ``sum_l B^l (W_std_l^2 S^{l-1} + b_std_l^2)`` and the NNGP
``K^{L+1}``. The Adam-like limit samples its fields from them.

Shapes: ``x1`` (N1, d), ``x2`` (N2, d) or None (``x2 = x1``); every kernel
(N1, N2), per output channel.

Like [`infinite_width.kernels.nngp`][], [`layerwise`][infinite_width.kernels.layerwise] returns jax
arrays (float64 ones as numpy arrays while JAX's x64 mode is off), compiles
once per architecture structure (the scales are arguments) and works under
``jax.jit``/``jax.grad``/``jax.vmap`` (inputs and ``W_std``/``b_std``);
[`LayerwiseKernels`][infinite_width.kernels.LayerwiseKernels] is a pytree. Under a transformation NaN/Inf in
traced inputs are not detected.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import List, Tuple

import jax
import jax.numpy as jnp

from infinite_width._src.checks import validate_inputs
from infinite_width._src.numerics import as_result, cast_traced, is_traced, precision_scope
from infinite_width.architectures import Activation, Architecture

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

    K: List[jax.Array]
    S: List[jax.Array]
    Sd: List[jax.Array]
    B: List[jax.Array]
    W_std: Tuple[float, ...]
    b_std: Tuple[float, ...]

    @property
    def depth(self) -> int:
        return len(self.Sd)

    @property
    def nngp(self) -> jax.Array:
        return self.K[-1]

    def ntk_terms(self) -> List[jax.Array]:
        """``B^l * (W_std_l^2 S^{l-1} + b_std_l^2)`` for l = 1..L+1; their sum is the NTK."""
        return [self.B[l] * (self.W_std[l] ** 2 * self.S[l] + self.b_std[l] ** 2) for l in range(self.depth + 1)]

    @property
    def ntk(self) -> jax.Array:
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
    scales = arch.scales
    traced = is_traced(x1, x2, scales)
    with precision_scope(dtype, traced=traced) as np_dtype:
        x1, x2 = validate_inputs(arch, x1, x2, np_dtype)
        structure = arch.with_scales([(None, None)] * len(scales))
        K, S, Sd, B = _layerwise_program(structure)(cast_traced(scales, np_dtype), x1, x2)
    K, S, Sd, B = as_result((K, S, Sd, B))
    W_std, b_std = (tuple(column) for column in zip(*scales))
    return LayerwiseKernels(K=list(K), S=list(S), Sd=list(Sd), B=list(B), W_std=W_std, b_std=b_std)


jax.tree_util.register_dataclass(
    LayerwiseKernels, data_fields=["K", "S", "Sd", "B", "W_std", "b_std"], meta_fields=[]
)


@functools.lru_cache(maxsize=128)
def _layerwise_program(structure: Architecture):
    """The jitted ``(scales, x1, x2) -> (K, S, Sd, B)`` of an MLP structure (scales left out)."""
    from infinite_width._src.nt import stax_layer

    def run(scales, x1, x2):
        layers = structure.with_scales(scales).layers
        layer_kernel_fns = [stax_layer(layer, 1, "ntk")[2] for layer in layers]
        other = x1 if x2 is None else x2
        S = [x1 @ other.T / x1.shape[1]]
        K, Sd = [], []
        kernel = layer_kernel_fns[0](x1, x2, None)
        for layer, kernel_fn in zip(layers[1:], layer_kernel_fns[1:]):
            if isinstance(layer, Activation):
                K.append(kernel.nngp)
                derivative = kernel_fn(kernel.replace(ntk=jnp.ones_like(kernel.nngp)))
                S.append(derivative.nngp)
                Sd.append(derivative.ntk)
            kernel = kernel_fn(kernel)
        K.append(kernel.nngp)
        B = [jnp.ones_like(K[-1])]
        for l in range(len(Sd), 0, -1):  # B^l = W_std_{l+1}^2 Sd^l * B^{l+1}
            B.insert(0, scales[l][0] ** 2 * Sd[l - 1] * B[0])
        return K, S, Sd, B

    return jax.jit(run)
