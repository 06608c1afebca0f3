"""One description of a network that yields every view of it.

An [`Architecture`][infinite_width.Architecture] is a tuple of plain layer descriptions. It knows
nothing of the views built from it elsewhere:

* the closed-form NNGP and NTK kernels ([`infinite_width.kernels`][]; the
  neural-tangents triple ``(init_fn, apply_fn, kernel_fn)`` is
  [`infinite_width.kernels.stax`][]);
* the finite network at any width, parametrization and initialisation
  ([`infinite_width.finite.network`][]);
* for MLPs, the layer-wise kernels of the Adam-like limit
  ([`infinite_width.kernels.layerwise`][]).

Hidden layers have no fixed size: ``Dense()`` and ``Conv()`` without ``out``
take the width of whichever view is built (infinite for kernels, ``width``
for finite networks). The readout layer has ``out=out_dim``.

Example:

```pycon
>>> import infinite_width as iw
>>> arch = iw.mlp(depth=2, activation="relu", W_std=1.4, b_std=0.1, out_dim=10)
>>> arch.depth
2
```
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence, Tuple, Union

import jax.numpy as jnp
import jax.scipy.special

from infinite_width._src.checks import check_int, check_nonnegative

__all__ = [
    "Architecture",
    "Dense",
    "Conv",
    "Activation",
    "AvgPool",
    "MaxPool",
    "GlobalAvgPool",
    "Flatten",
    "LayerNorm",
    "ACTIVATIONS",
    "NO_CLOSED_FORM_ACTIVATIONS",
    "WEIGHTED_LAYERS",
    "NO_CLOSED_FORM_LAYERS",
    "activation_fn",
    "mlp",
    "conv",
    "myrtle",
]


# --------------------------------------------------------------------------
# Activations: one name gives the elementwise function (finite networks, Monte
# Carlo) and the neural-tangents closed-form layer (kernels,
# infinite_width._src.nt.stax_activation).


def _erf(x):
    return jax.scipy.special.erf(x)


def _gelu(x):
    # Exact (erf) GELU, as neural-tangents' closed form uses.
    return 0.5 * x * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))


_ACTIVATION_FNS: dict = {
    "relu": lambda x: jnp.maximum(x, 0.0),
    "erf": _erf,
    "gelu": _gelu,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "identity": lambda x: x,
    "abs": jnp.abs,
    "leaky_relu": lambda x: jnp.where(x >= 0, x, 0.1 * x),
}

ACTIVATIONS: Tuple[str, ...] = tuple(_ACTIVATION_FNS)
"""Activation names with a closed-form infinite-width kernel."""

# Activations of finite networks (and so of the NNPK) without a closed-form kernel in neural-tangents.
_NO_CLOSED_FORM_ACTIVATION_FNS: dict = {
    "tanh": jnp.tanh,
}

NO_CLOSED_FORM_ACTIVATIONS: Tuple[str, ...] = tuple(_NO_CLOSED_FORM_ACTIVATION_FNS)
"""Activation names without a closed-form kernel: finite networks and the NNPK only."""


def _check_activation(name: str) -> str:
    if not isinstance(name, str) or (name not in _ACTIVATION_FNS and name not in _NO_CLOSED_FORM_ACTIVATION_FNS):
        raise ValueError(
            f"unknown activation {name!r}; expected one of {ACTIVATIONS} (closed form) "
            f"or {NO_CLOSED_FORM_ACTIVATIONS} (finite networks and the NNPK only)"
        )
    return name


def activation_fn(name: str) -> Callable:
    """The elementwise function ``phi`` of the activation ``name`` ([`ACTIVATIONS`][infinite_width.ACTIVATIONS] or [`NO_CLOSED_FORM_ACTIVATIONS`][infinite_width.NO_CLOSED_FORM_ACTIVATIONS])."""
    name = _check_activation(name)
    return _ACTIVATION_FNS.get(name) or _NO_CLOSED_FORM_ACTIVATION_FNS[name]


# --------------------------------------------------------------------------
# Layer descriptions.


@dataclasses.dataclass(frozen=True)
class Dense:
    """Fully connected layer. ``out=None`` means a hidden layer of the network's width.

    NTK parametrization (neural-tangents ``stax.Dense``):
    ``h = W_std / sqrt(fan_in) * W x + b_std * b`` with ``W, b ~ N(0, 1)``.
    """

    out: Optional[int] = None
    W_std: float = 1.0
    b_std: float = 0.0


@dataclasses.dataclass(frozen=True)
class Conv:
    """2-D convolution over NHWC images, ``out=None`` meaning hidden channels."""

    out: Optional[int] = None
    filter_shape: Tuple[int, int] = (3, 3)
    strides: Tuple[int, int] = (1, 1)
    padding: str = "SAME"
    W_std: float = 1.0
    b_std: float = 0.0


@dataclasses.dataclass(frozen=True)
class Activation:
    """Elementwise nonlinearity, one of [`ACTIVATIONS`][infinite_width.ACTIVATIONS] or [`NO_CLOSED_FORM_ACTIVATIONS`][infinite_width.NO_CLOSED_FORM_ACTIVATIONS]."""

    name: str = "relu"

    def __post_init__(self):
        _check_activation(self.name)


@dataclasses.dataclass(frozen=True)
class AvgPool:
    """Average pooling over the spatial axes of NHWC images."""

    window: Tuple[int, int] = (2, 2)
    strides: Tuple[int, int] = (2, 2)
    padding: str = "VALID"


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Max pooling. Finite networks only: it has no closed-form kernel."""

    window: Tuple[int, int] = (2, 2)
    strides: Tuple[int, int] = (2, 2)
    padding: str = "VALID"


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool:
    """Average over all spatial positions: (N, H, W, C) -> (N, C)."""


@dataclasses.dataclass(frozen=True)
class Flatten:
    """Flatten all non-batch axes."""


@dataclasses.dataclass(frozen=True)
class LayerNorm:
    """Normalise each example's features to zero mean and unit variance (no learned gain)."""

    eps: float = 1e-12


Layer = Union[Dense, Conv, Activation, AvgPool, MaxPool, GlobalAvgPool, Flatten, LayerNorm]
WEIGHTED_LAYERS = (Dense, Conv)
"""Layers with parameters (a weight and a bias)."""
NO_CLOSED_FORM_LAYERS = (MaxPool,)
"""Layers without a closed-form infinite-width kernel (finite networks and the NNPK only)."""
# Linear layers without parameters: a readout followed only by these keeps the output linear in it.
_LINEAR_AFTER_READOUT = (GlobalAvgPool, AvgPool, Flatten)


# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A network described once.

    Attributes:
      layers: the layer descriptions, input to output. The last weighted layer
        is the readout and must have ``out`` set.
      name: a short human-readable name (used in tables and file names).
      input_kind: ``"vector"`` (inputs of shape (N, d)) or ``"image"``
        (inputs of shape (N, H, W, C)).
    """

    layers: Tuple[Layer, ...]
    name: str = "network"
    input_kind: str = "vector"

    def __post_init__(self):
        if not self.layers:
            raise ValueError("an architecture needs at least one layer")
        for layer in self.layers:
            if not isinstance(layer, (Dense, Conv, Activation, AvgPool, MaxPool, GlobalAvgPool, Flatten, LayerNorm)):
                raise TypeError(f"not a layer description: {layer!r}")
        weighted = self.weighted_layers
        if not weighted:
            raise ValueError("an architecture needs at least one Dense or Conv layer")
        if weighted[-1].out is None:
            raise ValueError("the last Dense/Conv layer is the readout and needs out=out_dim")
        if self.input_kind not in ("vector", "image"):
            raise ValueError(f"input_kind must be 'vector' or 'image', got {self.input_kind!r}")

    # ---- structure -------------------------------------------------------

    @property
    def weighted_layers(self) -> Tuple[Union[Dense, Conv], ...]:
        """The Dense and Conv layers, input to output."""
        return tuple(layer for layer in self.layers if isinstance(layer, WEIGHTED_LAYERS))

    @property
    def out_dim(self) -> int:
        """Number of outputs (logits) of the readout layer."""
        return self.readout.out

    @property
    def readout(self) -> Union[Dense, Conv]:
        """The last weighted layer."""
        return self.weighted_layers[-1]

    @property
    def has_linear_readout(self) -> bool:
        """Whether the output is linear in the readout layer: only linear pooling/flattening follows it.

        Readout-only training is defined for these networks.
        """
        last = max(i for i, layer in enumerate(self.layers) if isinstance(layer, WEIGHTED_LAYERS))
        return all(isinstance(layer, _LINEAR_AFTER_READOUT) for layer in self.layers[last + 1 :])

    @property
    def has_closed_form(self) -> bool:
        """Whether neural-tangents computes its infinite-width kernels exactly.

        False with a layer of [`NO_CLOSED_FORM_LAYERS`][infinite_width.architectures.NO_CLOSED_FORM_LAYERS] or an
        activation of [`NO_CLOSED_FORM_ACTIVATIONS`][infinite_width.NO_CLOSED_FORM_ACTIVATIONS].
        """
        return not any(
            isinstance(layer, NO_CLOSED_FORM_LAYERS)
            or (isinstance(layer, Activation) and layer.name in NO_CLOSED_FORM_ACTIVATIONS)
            for layer in self.layers
        )

    @property
    def is_mlp(self) -> bool:
        """Alternating Dense/Activation layers ending in a Dense readout.

        These are the networks of docs/theory.md, section 1, for which the
        layer-wise kernels and the Adam-like limit are defined.
        """
        layers = self.layers
        if self.input_kind != "vector" or len(layers) % 2 != 1:
            return False
        for i, layer in enumerate(layers):
            expected = Dense if i % 2 == 0 else Activation
            if not isinstance(layer, expected):
                return False
        return all(layer.out is None for layer in layers[:-1:2])

    @property
    def depth(self) -> int:
        """Number of hidden weighted layers (L in docs/theory.md)."""
        return len(self.weighted_layers) - 1

    @property
    def activations(self) -> Tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if isinstance(layer, Activation))

    def replace(self, **changes) -> "Architecture":
        return dataclasses.replace(self, **changes)

    # ---- scales ----------------------------------------------------------

    @property
    def scales(self) -> Tuple[Tuple[float, float], ...]:
        """``(W_std, b_std)`` of each weighted layer, input to output.

        Entries may be traced jax scalars when the architecture is built
        inside ``jax.grad``/``jax.jit``/``jax.vmap`` (the kernels are
        differentiable in them).
        """
        return tuple((layer.W_std, layer.b_std) for layer in self.weighted_layers)

    def with_scales(self, scales: Sequence[Tuple[float, float]]) -> "Architecture":
        """The same network with ``(W_std, b_std)`` of each weighted layer replaced, input to output.

        ``arch.with_scales(arch.scales) == arch``. The kernels compile once per
        ``arch.with_scales([(None, None)] * n)`` (the structure) and take the
        scales as arguments.
        """
        scales = tuple(scales)
        weighted = self.weighted_layers
        if len(scales) != len(weighted):
            raise ValueError(f"{self.name!r} has {len(weighted)} weighted layers, got {len(scales)} (W_std, b_std) pairs")
        replacements = iter(scales)
        layers = []
        for layer in self.layers:
            if isinstance(layer, WEIGHTED_LAYERS):
                W_std, b_std = next(replacements)
                layer = dataclasses.replace(layer, W_std=W_std, b_std=b_std)
            layers.append(layer)
        return dataclasses.replace(self, layers=tuple(layers))


# --------------------------------------------------------------------------
# Public constructors.


def mlp(
    depth: int = 2,
    activation: str = "relu",
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.1,
    out_dim: int = 1,
) -> Architecture:
    """A fully connected network with ``depth`` hidden layers.

    ``f(x) = Dense(out_dim)(phi(Dense()(... phi(Dense()(x)))))`` in NTK
    parametrization with weight scale ``W_std`` and bias scale ``b_std`` in
    every layer (docs/theory.md, section 1). Inputs have
    shape (N, d).
    """
    depth = check_int("depth", depth, 0)
    out_dim = check_int("out_dim", out_dim, 1)
    _check_activation(activation)
    W_std = check_nonnegative("W_std", W_std)
    b_std = check_nonnegative("b_std", b_std)
    layers = []
    for _ in range(depth):
        layers += [Dense(None, W_std, b_std), Activation(activation)]
    layers.append(Dense(out_dim, W_std, b_std))
    return Architecture(tuple(layers), name=f"mlp{depth}-{activation}")


def conv(
    depth: int = 2,
    activation: str = "relu",
    filter_shape: Sequence[int] = (3, 3),
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.0,
    out_dim: int = 10,
) -> Architecture:
    """``depth`` convolutions (SAME padding) with activations, global average pooling, dense readout.

    Inputs are NHWC images of shape (N, H, W, C).
    """
    depth = check_int("depth", depth, 1)
    out_dim = check_int("out_dim", out_dim, 1)
    _check_activation(activation)
    W_std = check_nonnegative("W_std", W_std)
    b_std = check_nonnegative("b_std", b_std)
    filter_shape = tuple(int(s) for s in filter_shape)
    layers = []
    for _ in range(depth):
        layers += [Conv(None, filter_shape, (1, 1), "SAME", W_std, b_std), Activation(activation)]
    layers += [GlobalAvgPool(), Dense(out_dim, W_std, b_std)]
    return Architecture(tuple(layers), name=f"conv{depth}-{activation}", input_kind="image")


# Convolutions per stage after the stem: depth = 1 (stem) + stages + 1 (readout).
_MYRTLE_STAGES = {5: (1, 1, 1), 7: (1, 2, 2), 10: (2, 3, 3)}


def myrtle(
    depth: int = 5,
    activation: str = "relu",
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.0,
    out_dim: int = 10,
) -> Architecture:
    """Myrtle network (Shankar et al. 2020), the convolutional kernel baseline.

    A stem convolution, then three stages of ``(3x3 conv, activation)``
    blocks separated by 2x2 average pooling, global average pooling and a
    dense readout. ``depth`` is 5, 7 or 10 as in the paper. The final
    pooling is global, so any image of at least 4x4 pixels works (8x8
    digits as well as 32x32 CIFAR-10).
    """
    depth = check_int("depth", depth, 0)
    if depth not in _MYRTLE_STAGES:
        raise ValueError(f"myrtle depth must be one of {sorted(_MYRTLE_STAGES)}, got {depth!r}")
    out_dim = check_int("out_dim", out_dim, 1)
    _check_activation(activation)
    W_std = check_nonnegative("W_std", W_std)
    b_std = check_nonnegative("b_std", b_std)

    def block():
        return [Conv(None, (3, 3), (1, 1), "SAME", W_std, b_std), Activation(activation)]

    first, second, third = _MYRTLE_STAGES[depth]
    layers = block()
    layers += block() * first + [AvgPool((2, 2), (2, 2))]
    layers += block() * second + [AvgPool((2, 2), (2, 2))]
    layers += block() * third
    layers += [GlobalAvgPool(), Dense(out_dim, W_std, b_std)]
    return Architecture(tuple(layers), name=f"myrtle{depth}-{activation}", input_kind="image")
