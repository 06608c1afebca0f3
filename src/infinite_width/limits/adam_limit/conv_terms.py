"""Convolutional networks in the Adam-like limit: the supported architectures and their terms (docs/theory.md, section 10).

A supported network is ``L >= 1`` blocks of (``Conv`` with stride 1, SAME
padding and an odd filter; an activation with a closed-form kernel), then
``GlobalAvgPool`` and a ``Dense`` readout, on images of shape (H, W, C)
(positions ``s``, ``|S| = H W``; taps ``delta`` of layer l's filter,
``|F_l|`` of them). Its width is the number of channels.

Every term of the limit moves output c on point xi by
``- lr * coef * mean_taps E[ A_c(xi, tap) Q_t(g_tap) ]`` with the
position-contracted products ``A`` of the table below
(``u^l_c(x, s) = phi'(h^l(x, s)) z^l_c(x, s)``; ``z^L_c = W_std_{L+1} zeta_c / |S|``; the table writes
``#S`` for ``|S|`` and ``#F_l`` for ``|F_l|``):

| term | ``A_c(x, tap)`` | taps (own ``g`` each) | coef, adam/sign | coef, sgd/momentum |
|---|---|---|---|---|
| input ``W^1`` | ``sum_s u^1_c(x,s) x_b(s+delta)``, one ``(b, delta)`` per sample | 1 | ``W_std_1`` | ``W_std_1^2`` |
| hidden ``W^l``, ``l >= 2`` | ``sum_s u^l_c(x,s) phi(h^{l-1}(x, s+delta))`` | ``#F_l`` | ``W_std_l / #F_l`` | ``W_std_l^2 / #F_l`` |
| hidden bias ``b^l`` | ``sum_s u^l_c(x,s)`` | 1 | ``b_std_l`` | ``b_std_l^2`` |
| readout row c | ``V(x) = mean_s phi(h^L(x,s))`` (``g`` per output) | 1 | ``W_std_{L+1}`` | ``W_std_{L+1}^2`` |
| output bias c | 1 (exact, no samples) | 1 | ``b_std_{L+1}`` | ``b_std_{L+1}^2`` |

The ``1 / |F_l|`` of a hidden weight is the mean over its taps (each tap an
entry of its own); the input weight's mean over its ``C |F_1|`` entries is
drawn, one entry per sample, as the MLP engine draws one input coordinate.
Terms of the last layer (``u^L``) are an output-independent contraction
times ``zeta_c``; the others have one contraction per output. An MLP is the
case ``|S| = |F| = 1``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from infinite_width.architectures import (
    Activation,
    Architecture,
    AvgPool,
    Conv,
    Dense,
    GlobalAvgPool,
    NO_CLOSED_FORM_ACTIVATIONS,
)

__all__ = ["ConvNet", "ConvTerm", "conv_network", "conv_terms", "is_supported_conv", "SUPPORTED_LAYERS"]

SUPPORTED_LAYERS = ("Conv (stride 1, SAME padding, odd filter) + Activation blocks, then GlobalAvgPool and a Dense "
                    "readout")
"""What the convolutional limit supports, for error messages."""


@dataclasses.dataclass(frozen=True)
class ConvNet:
    """A supported convolutional network on images of ``image_shape`` = (H, W, C).

    Attributes:
      image_shape: (H, W, C) of one input image.
      filters: the (fh, fw) filter of each hidden conv layer l = 1..L.
      W_std: weight scales of the weighted layers 1..L+1 (index l - 1).
      b_std: bias scales of the weighted layers 1..L+1.
      activations: the activation of each hidden layer.
      out_dim: k, the number of outputs.
    """

    image_shape: Tuple[int, int, int]
    filters: Tuple[Tuple[int, int], ...]
    W_std: Tuple[float, ...]
    b_std: Tuple[float, ...]
    activations: Tuple[str, ...]
    out_dim: int

    @property
    def depth(self) -> int:
        """L, the number of hidden conv layers."""
        return len(self.filters)

    @property
    def positions(self) -> int:
        """|S| = H W."""
        return self.image_shape[0] * self.image_shape[1]

    @property
    def channels(self) -> int:
        """C, the input channels."""
        return self.image_shape[2]

    def taps(self, layer: int) -> np.ndarray:
        """(|F_l|, 2) the offsets ``delta = (di, dj)`` of layer ``layer``'s filter (row-major, centred).

        Args:
          layer: l, a hidden conv layer (1..L).
        """
        fh, fw = self.filters[layer - 1]
        return np.array([(di, dj) for di in range(-(fh // 2), fh // 2 + 1) for dj in range(-(fw // 2), fw // 2 + 1)])

    def tap_count(self, layer: int) -> int:
        """|F_l|, the taps of layer ``layer``'s filter.

        Args:
          layer: l, a hidden conv layer (1..L).
        """
        fh, fw = self.filters[layer - 1]
        return fh * fw


def _unsupported(index: int, layer, why: str) -> ValueError:
    return ValueError(
        f"layer {index} ({type(layer).__name__}) {why}: the convolutional Adam-like limit supports "
        f"{SUPPORTED_LAYERS}"
    )


def _blocks_and_readout(arch: Architecture):
    """The (Conv, Activation) blocks of ``arch``; ``ValueError`` naming the first layer that does not fit."""
    layers = arch.layers
    blocks = []
    i = 0
    while i < len(layers) and isinstance(layers[i], Conv):
        conv = layers[i]
        if conv.out is not None:
            raise _unsupported(i, conv, "is a readout convolution (out set)")
        if tuple(conv.strides) != (1, 1):
            raise _unsupported(i, conv, f"has strides {tuple(conv.strides)}")
        if conv.padding != "SAME":
            raise _unsupported(i, conv, f"has padding {conv.padding!r}")
        if any(size % 2 == 0 for size in conv.filter_shape):
            raise _unsupported(i, conv, f"has an even filter {tuple(conv.filter_shape)} (SAME padding is then "
                                        "asymmetric)")
        if i + 1 >= len(layers) or not isinstance(layers[i + 1], Activation):
            where = layers[i + 1] if i + 1 < len(layers) else conv
            raise _unsupported(i + 1 if i + 1 < len(layers) else i, where, "does not follow a Conv as its activation")
        activation = layers[i + 1]
        if activation.name in NO_CLOSED_FORM_ACTIVATIONS:
            raise _unsupported(i + 1, activation, f"{activation.name!r} has no closed-form kernel")
        blocks.append((conv, activation))
        i += 2
    if not blocks:
        raise _unsupported(0, layers[0], "is not a Conv")
    if i < len(layers) and isinstance(layers[i], AvgPool):
        raise _unsupported(i, layers[i], "is not supported between conv layers")
    if i >= len(layers) or not isinstance(layers[i], GlobalAvgPool):
        layer = layers[min(i, len(layers) - 1)]
        raise _unsupported(min(i, len(layers) - 1), layer, "is not the GlobalAvgPool after the last conv block")
    if i + 1 >= len(layers) or not isinstance(layers[i + 1], Dense) or layers[i + 1].out is None:
        layer = layers[min(i + 1, len(layers) - 1)]
        raise _unsupported(min(i + 1, len(layers) - 1), layer, "is not the Dense readout after GlobalAvgPool")
    if i + 2 < len(layers):
        raise _unsupported(i + 2, layers[i + 2], "follows the readout")
    return blocks, layers[i + 1]


def is_supported_conv(arch: Architecture) -> bool:
    """Whether the convolutional limit handles ``arch`` (see the module docstring).

    Args:
      arch: an [`Architecture`][infinite_width.architectures.Architecture].
    """
    if arch.input_kind != "image":
        return False
    try:
        _blocks_and_readout(arch)
    except ValueError:
        return False
    return True


def conv_network(arch: Architecture, image_shape) -> ConvNet:
    """The [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet] of ``arch`` on images of ``image_shape`` (H, W, C).

    Args:
      arch: an image [`Architecture`][infinite_width.architectures.Architecture] (module docstring).
      image_shape: (H, W, C) of one input image.

    Raises:
      ValueError: ``arch`` is not a supported convolutional network (the
        message names the first layer that is not supported).
    """
    if arch.input_kind != "image":
        raise ValueError(f"{arch.name!r} takes vector inputs; the convolutional limit needs an image architecture")
    blocks, readout = _blocks_and_readout(arch)
    convs = [conv for conv, _ in blocks] + [readout]
    return ConvNet(
        image_shape=tuple(int(size) for size in image_shape),
        filters=tuple(tuple(int(size) for size in conv.filter_shape) for conv, _ in blocks),
        W_std=tuple(float(layer.W_std) for layer in convs),
        b_std=tuple(float(layer.b_std) for layer in convs),
        activations=tuple(activation.name for _, activation in blocks),
        out_dim=int(readout.out),
    )


@dataclasses.dataclass(frozen=True)
class ConvTerm:
    """One Monte Carlo term ``coef * sum_taps E[A_c(xi, tap) Q(g_tap)]`` of a conv net (module docstring).

    Attributes:
      name: the term's name (``"input_weight"``, ``"hidden_weight<l>"``, ``"hidden_bias<l>"``,
        ``"readout_weight"``), the key of its features and accumulator.
      coefficient: coef, from the layer's scale (squared for sgd and momentum; module docstring).
      layer: l of ``u^l`` (None for the readout).
      kind: ``"input"``, ``"hidden"``, ``"bias"`` or ``"readout"``.
      taps: entries of the term per sample, each with its own ``g`` and optimizer state.
      per_output: one ``g`` per output (the readout).
      zeta_scaled: the contraction is output-independent and multiplied by ``zeta_c`` (terms of the last
        layer).
    """

    name: str
    coefficient: float
    layer: Optional[int]
    kind: str
    taps: int = 1
    per_output: bool = False
    zeta_scaled: bool = False


def conv_terms(net: ConvNet, readout_only: bool, linear: bool) -> Tuple[Tuple[ConvTerm, ...], float]:
    """The terms of ``net`` and the coefficient of the exact output-bias term.

    Groups with a zero scale have no effect and are left out (0/0 in Adam with eps = 0).

    Args:
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet].
      readout_only: only the readout weights and the output bias train.
      linear: SGD or momentum (squared coefficients).
    """
    power = 2 if linear else 1
    W = [s**power for s in net.W_std]
    b = [s**power for s in net.b_std]
    L = net.depth
    terms = []
    if not readout_only:
        terms.append(ConvTerm("input_weight", W[0], 1, "input", zeta_scaled=L == 1))
        terms += [ConvTerm(f"hidden_weight{l}", W[l - 1] / net.tap_count(l), l, "hidden", taps=net.tap_count(l),
                           zeta_scaled=l == L) for l in range(2, L + 1)]
        terms += [ConvTerm(f"hidden_bias{l}", b[l - 1], l, "bias", zeta_scaled=l == L) for l in range(1, L + 1)]
    terms.append(ConvTerm("readout_weight", W[L], None, "readout", per_output=True))
    return tuple(t for t in terms if t.coefficient != 0.0), b[L]
