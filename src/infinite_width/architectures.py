"""One description of a network that yields every view of it.

An :class:`Architecture` is a tuple of plain layer descriptions. From it come

* the neural-tangents triple ``(init_fn, apply_fn, kernel_fn)``
  (:meth:`Architecture.stax`), hence the closed-form NNGP and NTK kernels in
  :mod:`infinite_width.kernels`;
* the finite network at any width, parametrization and initialisation
  (:meth:`Architecture.network`);
* for MLPs, the layer-wise kernels of the Adam-like limit
  (:func:`infinite_width.kernels.layerwise`).

Hidden layers have no fixed size: ``Dense()`` and ``Conv()`` without ``out``
take the width of whichever view is built (infinite for kernels, ``width``
for finite networks). The readout layer has ``out=out_dim``.

Example::

    >>> import infinite_width as iw
    >>> arch = iw.mlp(depth=2, activation="relu", W_std=1.4, b_std=0.1, out_dim=10)
    >>> arch.depth
    2
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence, Tuple, Union

import jax.numpy as jnp
import jax.scipy.special

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
    "activation_fn",
    "mlp",
    "conv",
    "myrtle",
]


# --------------------------------------------------------------------------
# Activations: one name gives the elementwise function (finite networks, Monte
# Carlo) and the neural-tangents closed-form layer (kernels).


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

#: Activation names with a closed-form infinite-width kernel.
ACTIVATIONS: Tuple[str, ...] = tuple(_ACTIVATION_FNS)


def _check_activation(name: str) -> str:
    if not isinstance(name, str) or name not in _ACTIVATION_FNS:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return name


def activation_fn(name: str) -> Callable:
    """The elementwise function ``phi`` of the activation ``name``."""
    return _ACTIVATION_FNS[_check_activation(name)]


def _stax_activation(name: str):
    from infinite_width._neural_tangents import stax

    return {
        "relu": stax.Relu,
        "erf": stax.Erf,
        "gelu": lambda: stax.Gelu(approximate=False),
        "sin": stax.Sin,
        "cos": stax.Cos,
        "identity": stax.Identity,
        "abs": stax.Abs,
        "leaky_relu": lambda: stax.LeakyRelu(0.1),
    }[name]()


# --------------------------------------------------------------------------
# Layer descriptions.


def _positive(name, value):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


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
    """Elementwise nonlinearity, one of :data:`ACTIVATIONS`."""

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
_WEIGHTED = (Dense, Conv)
_NO_CLOSED_FORM = (MaxPool,)


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
        weighted = [layer for layer in self.layers if isinstance(layer, _WEIGHTED)]
        if not weighted:
            raise ValueError("an architecture needs at least one Dense or Conv layer")
        if weighted[-1].out is None:
            raise ValueError("the last Dense/Conv layer is the readout and needs out=out_dim")
        if self.input_kind not in ("vector", "image"):
            raise ValueError(f"input_kind must be 'vector' or 'image', got {self.input_kind!r}")

    # ---- structure -------------------------------------------------------

    @property
    def out_dim(self) -> int:
        """Number of outputs (logits) of the readout layer."""
        return [layer for layer in self.layers if isinstance(layer, _WEIGHTED)][-1].out

    @property
    def readout(self) -> Union[Dense, Conv]:
        """The last weighted layer."""
        return [layer for layer in self.layers if isinstance(layer, _WEIGHTED)][-1]

    @property
    def has_closed_form(self) -> bool:
        """Whether neural-tangents computes its infinite-width kernels exactly."""
        return not any(isinstance(layer, _NO_CLOSED_FORM) for layer in self.layers)

    @property
    def is_mlp(self) -> bool:
        """Alternating Dense/Activation layers ending in a Dense readout.

        These are the networks of ../shared/design/adam-limit.md section 1,
        for which the layer-wise kernels and the Adam-like limit are defined.
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
        """Number of hidden weighted layers (L in the design note)."""
        return sum(isinstance(layer, _WEIGHTED) for layer in self.layers) - 1

    @property
    def activations(self) -> Tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if isinstance(layer, Activation))

    def replace(self, **changes) -> "Architecture":
        return dataclasses.replace(self, **changes)

    # ---- views -----------------------------------------------------------

    def stax(self, width: int = 1, parameterization: str = "ntk"):
        """The neural-tangents ``(init_fn, apply_fn, kernel_fn)`` of this network.

        ``width`` sets the hidden size of the finite network that ``init_fn``
        and ``apply_fn`` describe; ``kernel_fn`` (the infinite-width kernels)
        does not depend on it.
        """
        if not self.has_closed_form:
            names = sorted({type(layer).__name__ for layer in self.layers if isinstance(layer, _NO_CLOSED_FORM)})
            raise NotImplementedError(
                f"architecture {self.name!r} has no closed-form infinite-width kernel "
                f"({', '.join(names)}); use its finite network or infinite_width.kernels.nnpk"
            )
        from infinite_width._neural_tangents import stax

        return stax.serial(*[_stax_layer(layer, width, parameterization) for layer in self.layers])

    @property
    def kernel_fn(self):
        """neural-tangents ``kernel_fn`` (infinite width), built once per architecture."""
        return _cached_kernel_fn(self)

    def network(self, width: int, parametrization: str = "ntk", init: str = "gaussian"):
        """The finite network of this architecture at ``width`` (see :mod:`infinite_width.networks`)."""
        from infinite_width.networks import network

        return network(self, width, parametrization=parametrization, init=init)


def _stax_layer(layer: Layer, width: int, parameterization: str):
    from infinite_width._neural_tangents import stax

    if isinstance(layer, Dense):
        out = width if layer.out is None else layer.out
        return stax.Dense(out, W_std=layer.W_std, b_std=layer.b_std, parameterization=parameterization)
    if isinstance(layer, Conv):
        out = width if layer.out is None else layer.out
        return stax.Conv(
            out,
            layer.filter_shape,
            strides=layer.strides,
            padding=layer.padding,
            W_std=layer.W_std,
            b_std=layer.b_std,
            parameterization=parameterization,
        )
    if isinstance(layer, Activation):
        return _stax_activation(layer.name)
    if isinstance(layer, AvgPool):
        return stax.AvgPool(layer.window, strides=layer.strides, padding=layer.padding)
    if isinstance(layer, GlobalAvgPool):
        return stax.GlobalAvgPool()
    if isinstance(layer, Flatten):
        return stax.Flatten()
    if isinstance(layer, LayerNorm):
        return stax.LayerNorm(eps=layer.eps)
    raise NotImplementedError(f"no neural-tangents layer for {layer!r}")


_KERNEL_FN_CACHE: dict = {}


def _cached_kernel_fn(arch: Architecture):
    if arch not in _KERNEL_FN_CACHE:
        _KERNEL_FN_CACHE[arch] = arch.stax()[2]
    return _KERNEL_FN_CACHE[arch]


# --------------------------------------------------------------------------
# Public constructors.


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


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
    every layer (../shared/design/adam-limit.md section 1). Inputs have
    shape (N, d).
    """
    _check_int("depth", depth, 0)
    _check_int("out_dim", out_dim, 1)
    _check_activation(activation)
    W_std = _positive("W_std", W_std)
    b_std = _positive("b_std", b_std)
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
    _check_int("depth", depth, 1)
    _check_int("out_dim", out_dim, 1)
    _check_activation(activation)
    W_std = _positive("W_std", W_std)
    b_std = _positive("b_std", b_std)
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
    if depth not in _MYRTLE_STAGES:
        raise ValueError(f"myrtle depth must be one of {sorted(_MYRTLE_STAGES)}, got {depth!r}")
    _check_int("out_dim", out_dim, 1)
    _check_activation(activation)
    W_std = _positive("W_std", W_std)
    b_std = _positive("b_std", b_std)

    def block():
        return [Conv(None, (3, 3), (1, 1), "SAME", W_std, b_std), Activation(activation)]

    first, second, third = _MYRTLE_STAGES[depth]
    layers = block()
    layers += block() * first + [AvgPool((2, 2), (2, 2))]
    layers += block() * second + [AvgPool((2, 2), (2, 2))]
    layers += block() * third
    layers += [GlobalAvgPool(), Dense(out_dim, W_std, b_std)]
    return Architecture(tuple(layers), name=f"myrtle{depth}-{activation}", input_kind="image")
