"""Full-position layer kernels of a convolutional network, a block of pivot points against all points (docs/theory.md, section 10).

The fields of a conv net live on (point, position) coordinates, ``N = P |S|``
of them; their covariances (N x N) are never formed. The roots
([`conv_roots`][infinite_width.limits.adam_limit.conv_roots]) need only the rows of
a few pivot points, which this module computes: for pivot points ``B`` and
every point, arrays of shape (b, |S|, P, |S|), in float32.

With ``T_l`` the shift-average over the taps of layer l's filter (the same
tap on both sides, zero outside the image; the tap set is symmetric, so
``T_l`` is its own transpose),
``T_l[M]((x,s),(x',s')) = (1/|F_l|) sum_delta M((x,s+delta),(x',s'+delta))``:

    K^1    = W_std_1^2 (patch(x,s) . patch(x',s')) / (C |F_1|) + b_std_1^2
    S^l    = E[phi(h(x,s)) phi(h(x',s'))],    Sd^l = E[phi'(.) phi'(.)],   h ~ GP(0, K^l)
    K^{l+1} = W_std_{l+1}^2 T_{l+1}[S^l] + b_std_{l+1}^2
    Z^L    = (W_std_{L+1} / |S|)^2                          (the constant covariance of z^L)
    Z^l    = W_std_{l+1}^2 T_{l+1}[Sd^{l+1} * Z^{l+1}]      l = L-1..1

``h^l ~ GP(0, K^l)`` and ``z^l_c ~ GP(0, Z^l)``. ``S^l`` and ``Sd^l`` are
neural-tangents' closed forms of the activation (its activation layer applied
to a kernel with the given variances and covariances, whose ``ntk`` is all
ones so that it returns ``Sd^l``). The sum over layers of the backward and
forward covariances, contracted over positions, is neural-tangents' CNTK
(checked in tests/test_adam_limit_conv_kernels.py). For ``|S| = |F| = 1``
these are the MLP's ``K^l`` and ``W_std_{l+1}^2 B^{l+1}``.
"""

from __future__ import annotations

import functools
from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width.limits.adam_limit.conv_terms import ConvNet

__all__ = ["PositionKernels", "patches", "shift_average", "field_kernel_names", "activation_kernels"]

HIGHEST = jax.lax.Precision.HIGHEST


def patches(net: ConvNet, x) -> jax.Array:
    """(P, |S|, |F_1| C) the input patches: ``patch(x, s)[(delta, b)] = x_b(s + delta)`` (zero outside the image).

    The index is tap-major (``delta * C + b``).

    Args:
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet] (its image shape and first filter).
      x: (P, H, W, C) images.
    """
    H, W, _ = net.image_shape
    x = jnp.asarray(x, jnp.float32)
    fh, fw = net.filters[0]
    padded = jnp.pad(x, ((0, 0), (fh // 2, fh // 2), (fw // 2, fw // 2), (0, 0)))
    shifted = [padded[:, fh // 2 + di:fh // 2 + di + H, fw // 2 + dj:fw // 2 + dj + W] for di, dj in net.taps(1)]
    return jnp.stack(shifted, axis=3).reshape(x.shape[0], H * W, -1)


def shift_average(block, net: ConvNet, layer: int):
    """``T_layer`` (module docstring) of a block over both position axes.

    Args:
      block: (b, |S|, P, |S|) kernel rows of b pivot points.
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet].
      layer: l, whose filter's taps are averaged over.

    Returns:
      (b, |S|, P, |S|), the shape of ``block``.
    """
    H, W, _ = net.image_shape
    fh, fw = net.filters[layer - 1]
    b, _, points, _ = block.shape
    grid = block.reshape(b, H, W, points, H, W)
    pad = ((0, 0), (fh // 2, fh // 2), (fw // 2, fw // 2), (0, 0), (fh // 2, fh // 2), (fw // 2, fw // 2))
    padded = jnp.pad(grid, pad)
    total = 0.0
    for di, dj in net.taps(layer):
        i, j = fh // 2 + di, fw // 2 + dj
        total = total + padded[:, i:i + H, j:j + W, :, i:i + H, j:j + W]
    return (total / net.tap_count(layer)).reshape(block.shape)


def shift_average_diagonal(diagonal, net: ConvNet, layer: int):
    """The diagonal of ``T_layer[M]`` from the diagonal of M, (P, |S|) -> (P, |S|)."""
    H, W, _ = net.image_shape
    fh, fw = net.filters[layer - 1]
    grid = jnp.pad(diagonal.reshape(-1, H, W), ((0, 0), (fh // 2, fh // 2), (fw // 2, fw // 2)))
    total = sum(grid[:, fh // 2 + di:fh // 2 + di + H, fw // 2 + dj:fw // 2 + dj + W] for di, dj in net.taps(layer))
    return (total / net.tap_count(layer)).reshape(diagonal.shape)


def activation_kernels(name: str, var1, var2, cross) -> Tuple[jax.Array, jax.Array]:
    """``(S, Sd)``: neural-tangents' closed forms of ``E[phi(a) phi(b)]`` and ``E[phi'(a) phi'(b)]``.

    ``(a, b)`` is Gaussian with the given variances and covariances; results (n1, n2).

    Args:
      name: the activation's name (one with a closed-form kernel).
      var1: (n1,) the variances of ``a``.
      var2: (n2,) the variances of ``b``.
      cross: (n1, n2) the covariances of ``a`` and ``b``.
    """
    from infinite_width._src.nt import stax, stax_activation

    template = stax.Dense(1)[2](jnp.ones((var1.shape[0], 1), cross.dtype), jnp.ones((var2.shape[0], 1), cross.dtype))
    kernel = template.replace(nngp=cross, cov1=var1, cov2=var2, ntk=jnp.ones_like(cross))
    out = stax_activation(name)[2](kernel)
    return out.nngp, out.ntk


def field_kernel_names(net: ConvNet) -> Dict[str, str]:
    """``{field: kernel}`` of the fields drawn from roots: ``h<l>`` (l >= 2) and ``z<l>`` (l < L).

    Args:
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet].
    """
    names = {f"h{l}": f"K^{l}" for l in range(2, net.depth + 1)}
    names.update({f"z{l}": f"Z^{l}" for l in range(1, net.depth)})
    return names


class PositionKernels:
    """The full-position field kernels of ``net`` on the points ``x_all`` (P, H, W, C), row block by row block.

    ``variances(field)`` is the diagonal (P |S|,) of a field's kernel;
    ``rows(field, points)`` its rows for the pivot points ``points`` (b,), all
    their positions: (b |S|, P |S|) float32, coordinates ordered (point,
    position). Fields: [`field_kernel_names`][infinite_width.limits.adam_limit.conv_kernels.field_kernel_names].
    ``layers(points)`` gives every layer's ``K``, ``S``, ``Sd`` and ``Z`` blocks.

    Args:
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet].
      x_all: (P, H, W, C) all points, training and test.
    """

    def __init__(self, net: ConvNet, x_all):
        self.net = net
        self.patches = patches(net, x_all)
        self.points = int(self.patches.shape[0])
        self._diagonals = _diagonals(net, self.patches)

    def variances(self, field: str) -> np.ndarray:
        """(P |S|,) float64 the diagonal of ``field``'s kernel, coordinates ordered (point, position).

        Args:
          field: ``h<l>`` (l >= 2) or ``z<l>`` (l < L).
        """
        return np.asarray(self._diagonals[field], np.float64).reshape(-1)

    def rows(self, field: str, points) -> np.ndarray:
        """(b |S|, P |S|) float32 the rows of ``field``'s kernel for all positions of the pivot ``points``.

        Args:
          field: ``h<l>`` (l >= 2) or ``z<l>`` (l < L).
          points: (b,) indices of the pivot points.
        """
        points = jnp.asarray(points, jnp.int32)
        block = _block_program(self.net, field)(self.patches, points, self._diagonals)
        return np.asarray(block).reshape(points.shape[0] * self.net.positions, -1)

    def layers(self, points) -> Dict[str, np.ndarray]:
        """Every layer's blocks for the pivot ``points``: ``{"K<l>", "S<l>", "Sd<l>", "Z<l>": (b, |S|, P, |S|)}``,
        l = 1..L (``Z^L`` the constant ``(W_std_{L+1} / |S|)^2``).

        Args:
          points: (b,) indices of the pivot points.
        """
        blocks = _all_layers_program(self.net)(self.patches, jnp.asarray(points, jnp.int32), self._diagonals)
        return {name: np.asarray(block) for name, block in blocks.items()}


def _first_layer_scale(net: ConvNet) -> float:
    return net.W_std[0] ** 2 / (net.channels * net.tap_count(1))


def _diagonals(net: ConvNet, patch_array) -> Dict[str, jax.Array]:
    """Per-layer variances ``K^l((x,s),(x,s))`` (``"K<l>"``), ``Sd^l`` diagonals and the field variances (P, |S|)."""
    L = net.depth
    variance = _first_layer_scale(net) * jnp.sum(patch_array**2, axis=-1) + net.b_std[0] ** 2
    out, sd = {"K1": variance}, {}
    for l in range(1, L + 1):
        flat = out[f"K{l}"].reshape(-1)
        s_diag, sd_diag = _pointwise(net.activations[l - 1], flat)
        sd[l] = sd_diag.reshape(variance.shape)
        if l < L:
            out[f"K{l + 1}"] = net.W_std[l] ** 2 * shift_average_diagonal(s_diag.reshape(variance.shape), net,
                                                                         l + 1) + net.b_std[l] ** 2
    z = jnp.full(variance.shape, (net.W_std[L] / net.positions) ** 2)
    for l in range(L - 1, 0, -1):
        z = net.W_std[l] ** 2 * shift_average_diagonal(sd[l + 1] * z, net, l + 1)
        out[f"z{l}"] = z
    for l in range(2, L + 1):
        out[f"h{l}"] = out[f"K{l}"]
    return out


def _pointwise(activation: str, variance):
    """``(E[phi(h)^2], E[phi'(h)^2])`` for ``h ~ N(0, variance)`` elementwise (n,).

    The closed forms act on (n1, n2) grids; the diagonal of chunks of 64 points against themselves costs 64
    evaluations per point, in one vectorised call.
    """
    chunk = 64
    n = variance.shape[0]
    padded = jnp.concatenate([variance, jnp.ones((-n % chunk,), variance.dtype)]).reshape(-1, chunk)

    def diagonal(part):
        s, sd = activation_kernels(activation, part, part, jnp.diag(part))
        return jnp.diagonal(s), jnp.diagonal(sd)

    s, sd = jax.vmap(diagonal)(padded)
    return s.reshape(-1)[:n], sd.reshape(-1)[:n]


def _layer_blocks(net: ConvNet, patch_array, points, diagonals, top: int, backward_to: int):
    """``{"K<l>", "S<l>", "Sd<l>": l <= top; "Z<l>": backward_to <= l <= L}`` blocks (b, |S|, P, |S|) for the
    pivot ``points``; ``top`` is the last layer whose ``K`` is needed (L when any ``Z`` is)."""
    L = net.depth
    pivot = patch_array[points]  # (b, |S|, F C)
    kernel = _first_layer_scale(net) * jnp.einsum("bsf,xtf->bsxt", pivot, patch_array, precision=HIGHEST)
    out = {"K1": kernel + net.b_std[0] ** 2}
    for l in range(1, top + 1):
        if l < top or backward_to <= L:
            out[f"S{l}"], out[f"Sd{l}"] = _block_activation(net, l, out[f"K{l}"], diagonals, points)
        if l < top:
            out[f"K{l + 1}"] = net.W_std[l] ** 2 * shift_average(out[f"S{l}"], net, l + 1) + net.b_std[l] ** 2
    if backward_to <= L:
        z = jnp.full_like(out["K1"], (net.W_std[L] / net.positions) ** 2)
        out[f"Z{L}"] = z
        for l in range(L - 1, backward_to - 1, -1):
            z = net.W_std[l] ** 2 * shift_average(out[f"Sd{l + 1}"] * z, net, l + 1)
            out[f"Z{l}"] = z
    return out


@functools.lru_cache(maxsize=32)
def _block_program(net: ConvNet, field: str):
    """jitted ``(patches, points, diagonals) -> (b, |S|, P, |S|)`` rows of ``field``'s kernel (``h<l>``:
    ``K^l``; ``z<l>``: ``Z^l``), computing only the layers it needs."""
    l = int(field[1:])
    if field[0] == "h":
        return jax.jit(lambda *args: _layer_blocks(net, *args, top=l, backward_to=net.depth + 1)[f"K{l}"])
    return jax.jit(lambda *args: _layer_blocks(net, *args, top=net.depth, backward_to=l)[f"Z{l}"])


@functools.lru_cache(maxsize=32)
def _all_layers_program(net: ConvNet):
    return jax.jit(lambda *args: _layer_blocks(net, *args, top=net.depth, backward_to=1))


def _block_activation(net, layer, kernel, diagonals, points):
    """``(S^l, Sd^l)`` of a block (b, |S|, P, |S|) from ``K^l`` and the variances."""
    variance = diagonals[f"K{layer}"]
    b, positions, points_all, _ = kernel.shape
    s, sd = activation_kernels(net.activations[layer - 1], variance[points].reshape(-1), variance.reshape(-1),
                               kernel.reshape(b * positions, points_all * positions))
    return s.reshape(kernel.shape), sd.reshape(kernel.shape)

