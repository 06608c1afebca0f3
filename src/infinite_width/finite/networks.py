"""Finite networks of an [`Architecture`][infinite_width.Architecture] at any width.

``network(arch, width, parametrization, init)`` gives a [`Network`][infinite_width.finite.Network]: pure
functions ``init(key, input_shape) -> params`` and ``apply(params, x) -> f``
over a plain pytree of parameters, plus the per-group information that the
trainer ([`infinite_width.finite.training`][]) and the infinite-width side need.
Its empirical NTK and NNGP are in [`infinite_width.kernels.empirical`][].

Parameters
----------
``params`` is a list with one dict ``{"W": ..., "b": ...}`` per weighted layer
(Dense or Conv), input to output. Dense weights have shape (F, out), Conv
weights (fh, fw, C_in, out) (HWIO, images NHWC); biases (out,). Dense acts on
the last axis, as neural-tangents' ``stax.Dense`` does.

Every stored parameter ``p`` enters the network through a fixed multiplier,
``W_eff = m * p``, and is initialised as ``p = sigma * z`` with ``z`` of unit
entry variance (see *Initialisations*). With ``F`` the fan-in of a weight
(input channels times filter size) and ``n`` the number of output channels of
a hidden layer (the width):

| group | ntk (m, sigma) | standard | mup (m, sigma) |
|---|---|---|---|
| input/hidden W | ``W_std/sqrt(F)``, 1 | 1, ``W_std/sqrt F`` | ``W_std sqrt(n/F)``, ``1/sqrt n`` |
| readout W | ``W_std/sqrt(F)``, 1 | 1, ``W_std/sqrt F`` | ``W_std/sqrt F``, ``1/sqrt F`` |
| hidden bias | ``b_std``, 1 | 1, ``b_std`` | ``b_std sqrt n``, ``1/sqrt n`` |
| output bias | ``b_std``, 1 | 1, ``b_std`` | ``b_std``, 1 |

* ``"ntk"`` is neural-tangents' NTK parametrization, whose infinite-width
  limits [`infinite_width.kernels`][] computes.
* ``"standard"`` has the same ``W_eff`` as ``"ntk"`` for the same key (the
  same network function at init) but trains ``W_eff`` directly.
* ``"mup"`` is the maximal update parametrization (Yang & Hu 2021, abc-form
  with ``a = -1/2, 0, 1/2`` for input, hidden, readout weights, ``b = 1/2``
  and ``c = 0``: one global SGD rate). Hidden layers equal those of ``"ntk"``
  at init; the readout ``W_eff`` has variance ``W_std^2 / F^2``, so outputs
  at init are ``O(F^-1/2)`` (exactly the ntk readout term divided by
  ``sqrt(F)``), and one SGD step moves hidden pre-activations by ``O(1)``
  at every width (feature learning), where ``"ntk"`` moves them by
  ``O(n^-1/2)``.

Groups and per-group scales
---------------------------
[`Network.groups`][infinite_width.finite.networks.Network.groups] labels every leaf with one of `GROUPS`: the first
weighted layer's weight is ``"input_W"`` and its bias ``"hidden_b"``, later
hidden layers ``"hidden_W"``/``"hidden_b"``, the last layer ``"readout_W"``/
``"output_b"`` (a network of depth 0 has only the last two).
[`Network.group_scales`][infinite_width.finite.networks.Network.group_scales] gives for every leaf ``s`` (the gradient
scale, ``G = s g`` with ``g`` of order one) and ``r`` (the Adam/sign rate factor) of
docs/theory.md, section 3, generalised to any fan-in. With
``u = 1/sqrt(n)`` for groups whose output is hidden and ``u = 1`` for the
readout groups:

| param. | s | r (weights; biases) |
|---|---|---|
| ntk | ``m u`` | ``u / sqrt(F)``; ``u`` |
| standard | ``m u`` (= ``u``) | ``W_std u / F``; ``b_std u`` |
| mup | ``m u^2`` (hidden), ``m u`` | as ntk |

For ntk this is exactly the table of docs/theory.md, section 3 (for an MLP: hidden W ``s = W_std/n,
r = 1/n``; input W ``W_std/sqrt(n d), 1/sqrt(n d)``; hidden bias
``b_std/sqrt(n), 1/sqrt(n)``; readout ``W_std/sqrt(n), 1/sqrt(n)``; output
bias ``b_std, 1``). ``standard`` is the exact reparametrization of ntk
(``p_std = sigma p_ntk``), so Adam and sign move ``W_eff`` identically in
both; ``mup`` with these rates is muP for Adam (``W_eff`` of input weights and
biases change by ``O(1)``, hidden and readout weights by ``O(1/F)``). A leaf
with ``m * r = 0`` (``b_std = 0``) cannot move under Adam/sign and is frozen.

Initialisations
---------------
``"gaussian"``: ``z ~ N(0, 1)``. ``"uniform"``: ``z ~ U(-sqrt 3, sqrt 3)``
(unit variance). ``"orthogonal"``: each weight, viewed as an (F, out)
matrix, is semi-orthogonal scaled by ``sqrt(max(F, out))`` (unit mean square
entry; ``z^T z = F I`` when ``F >= out``, ``z z^T = out I`` otherwise);
biases are Gaussian.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

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
    activation_fn,
)

__all__ = [
    "PARAMETRIZATIONS",
    "INITS",
    "GROUPS",
    "Network",
    "LeafScale",
    "network",
]

PARAMETRIZATIONS = ("ntk", "standard", "mup")
INITS = ("gaussian", "orthogonal", "uniform")
GROUPS = ("input_W", "hidden_W", "hidden_b", "readout_W", "output_b")
_PADDINGS = ("SAME", "VALID")

Params = List[dict]


@dataclasses.dataclass(frozen=True)
class LeafScale:
    """Per-leaf constants: its group, multiplier ``m`` (``W_eff = m p``), init std ``sigma``, and ``s``, ``r``."""

    group: str
    multiplier: float
    init_std: float
    s: float
    r: float

    @property
    def frozen_under_adaptive(self) -> bool:
        """True when Adam/sign cannot move ``W_eff`` (``m r = 0``, e.g. ``b_std = 0``)."""
        return self.multiplier * self.r == 0.0


@dataclasses.dataclass(frozen=True)
class _WeightedLayer:
    index: int  # position in arch.layers
    fan_in: int
    out: int
    W_shape: Tuple[int, ...]
    W_std: float
    b_std: float
    W_group: str
    b_group: str


def _check_input_shape(arch: Architecture, input_shape) -> Tuple[int, ...]:
    if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
        input_shape = (int(input_shape),)
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError as error:
        raise TypeError(f"input_shape must be a tuple of ints (one example's shape), got {input_shape!r}") from error
    rank = 1 if arch.input_kind == "vector" else 3
    layout = "(d,)" if rank == 1 else "(H, W, C)"
    if len(shape) != rank or min(shape) < 1:
        raise ValueError(
            f"input_shape must be one example's shape {layout} for architecture {arch.name!r}, got {shape}"
        )
    return shape


def _pool(x, layer, reducer, init):
    window = (1, *layer.window, 1)
    strides = (1, *layer.strides, 1)
    return jax.lax.reduce_window(x, init, reducer, window, strides, layer.padding)


def _unweighted(layer, x):
    """Apply a layer without parameters to x of shape (N, ...)."""
    if isinstance(layer, Activation):
        return activation_fn(layer.name)(x)
    if isinstance(layer, AvgPool):
        # Divide by the full window everywhere, as neural-tangents' AvgPool
        # (normalize_edges=False) does.
        return _pool(x, layer, jax.lax.add, 0.0) / math.prod(layer.window)
    if isinstance(layer, MaxPool):
        return _pool(x, layer, jax.lax.max, -jnp.inf)
    if isinstance(layer, GlobalAvgPool):
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    if isinstance(layer, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(layer, LayerNorm):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.var(x, axis=-1, keepdims=True)
        return (x - mean) / jnp.sqrt(var + layer.eps)
    raise TypeError(f"not a layer without parameters: {layer!r}")


def _orthogonalize(z):
    """Haar semi-orthogonal (F, out) matrix from the Gaussian ``z``, scaled to unit mean square entry."""
    shape = z.shape
    matrix = z.reshape(-1, shape[-1])
    tall = matrix.shape[0] >= matrix.shape[1]
    q, r = jnp.linalg.qr(matrix if tall else matrix.T)
    q = q * jnp.sign(jnp.diagonal(r))  # sign correction makes q Haar-distributed
    q = q if tall else q.T
    return (math.sqrt(max(matrix.shape)) * q).reshape(shape)


def _conv(layer: Conv, x, W):
    return jax.lax.conv_general_dilated(
        x, W, window_strides=tuple(layer.strides), padding=layer.padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _check_layer(layer, shape: Tuple[int, ...]) -> None:
    needs_image = isinstance(layer, (Conv, AvgPool, MaxPool, GlobalAvgPool))
    if needs_image and len(shape) != 3:
        raise ValueError(f"{type(layer).__name__} needs (H, W, C) features, got per-example shape {shape}")
    padding = getattr(layer, "padding", None)
    if padding is not None and padding not in _PADDINGS:
        raise ValueError(f"{type(layer).__name__} padding must be one of {_PADDINGS}, got {padding!r}")


@dataclasses.dataclass(frozen=True)
class Network:
    """A finite network: ``arch`` at hidden ``width``, in ``parametrization``, initialised by ``init_kind``.

    Build it with [`network`][infinite_width.finite.network]. Hashable,
    so it can key compiled-function caches.
    """

    arch: Architecture
    width: int
    parametrization: str = "ntk"
    init_kind: str = "gaussian"

    # ---- structure -------------------------------------------------------

    @property
    def out_dim(self) -> int:
        return self.arch.out_dim

    @functools.lru_cache(maxsize=None)
    def _plan(self, input_shape: Tuple[int, ...]) -> Tuple[_WeightedLayer, ...]:
        """Shapes, fan-ins and groups of the weighted layers for one example's ``input_shape``."""
        weighted_positions = [i for i, layer in enumerate(self.arch.layers) if isinstance(layer, (Dense, Conv))]
        last = weighted_positions[-1]
        plan = []
        shape = input_shape
        for i, layer in enumerate(self.arch.layers):
            _check_layer(layer, shape)
            if isinstance(layer, (Dense, Conv)):
                out = self.width if layer.out is None else layer.out
                if isinstance(layer, Dense):
                    W_shape = (shape[-1], out)
                    new_shape = shape[:-1] + (out,)
                else:
                    W_shape = (*layer.filter_shape, shape[-1], out)
                    new_shape = jax.eval_shape(
                        lambda x, W, layer=layer: _conv(layer, x, W),
                        jax.ShapeDtypeStruct((1, *shape), jnp.float32),
                        jax.ShapeDtypeStruct(W_shape, jnp.float32),
                    ).shape[1:]
                if i == last:
                    groups = ("readout_W", "output_b")
                elif i == weighted_positions[0]:
                    groups = ("input_W", "hidden_b")
                else:
                    groups = ("hidden_W", "hidden_b")
                plan.append(
                    _WeightedLayer(i, math.prod(W_shape[:-1]), out, W_shape, layer.W_std, layer.b_std, *groups)
                )
                shape = tuple(new_shape)
            else:
                shape = jax.eval_shape(
                    lambda x, layer=layer: _unweighted(layer, x), jax.ShapeDtypeStruct((1, *shape), jnp.float32)
                ).shape[1:]
            if min(shape, default=1) < 1:
                raise ValueError(f"layer {i} ({type(layer).__name__}) leaves an empty feature shape {shape}")
        return tuple(plan)

    def _layer_scales(self, spec: _WeightedLayer) -> Tuple[LeafScale, LeafScale]:
        F, n = spec.fan_in, spec.out
        hidden_out = spec.b_group == "hidden_b"
        u = 1.0 / math.sqrt(n) if hidden_out else 1.0
        W_std, b_std = spec.W_std, spec.b_std
        r_ntk_W, r_ntk_b = u / math.sqrt(F), u
        if self.parametrization == "ntk":
            mW, sigW, mb, sigb = W_std / math.sqrt(F), 1.0, b_std, 1.0
            rW, rb = r_ntk_W, r_ntk_b
            sW, sb = mW * u, mb * u
        elif self.parametrization == "standard":
            mW, sigW, mb, sigb = 1.0, W_std / math.sqrt(F), 1.0, b_std
            rW, rb = r_ntk_W * sigW, r_ntk_b * sigb
            sW, sb = u, u
        else:  # mup
            if hidden_out:
                mW, sigW = W_std * math.sqrt(n / F), 1.0 / math.sqrt(n)
                mb, sigb = b_std * math.sqrt(n), 1.0 / math.sqrt(n)
                # The readout is O(1/sqrt n) smaller than in ntk, and so is every backward signal.
                sW, sb = mW * u * u, mb * u * u
            else:
                mW, sigW, mb, sigb = W_std / math.sqrt(F), 1.0 / math.sqrt(F), b_std, 1.0
                sW, sb = mW * u, mb * u
            rW, rb = r_ntk_W, r_ntk_b
        return (
            LeafScale(spec.W_group, mW, sigW, sW, rW),
            LeafScale(spec.b_group, mb, sigb, sb, rb),
        )

    def group_scales(self, input_shape) -> List[dict]:
        """Per-leaf [`LeafScale`][infinite_width.finite.LeafScale] (group, m, sigma, s, r), same structure as params.

        ``input_shape`` is one example's shape: ``d`` or ``(d,)`` for MLPs,
        ``(H, W, C)`` for images.
        """
        plan = self._plan(_check_input_shape(self.arch, input_shape))
        return [dict(zip(("W", "b"), self._layer_scales(spec))) for spec in plan]

    def groups(self, params: Params) -> List[dict]:
        """Same-structure pytree of group labels (strings from `GROUPS`)."""
        self.check_params(params)
        last = len(params) - 1
        labels = []
        for i in range(len(params)):
            if i == last:
                labels.append({"W": "readout_W", "b": "output_b"})
            else:
                labels.append({"W": "input_W" if i == 0 else "hidden_W", "b": "hidden_b"})
        return labels

    def check_params(self, params) -> None:
        """``TypeError``/``ValueError`` unless ``params`` is a list of ``{"W", "b"}`` dicts, one per weighted layer."""
        if not isinstance(params, (list, tuple)) or not all(
            isinstance(layer, dict) and set(layer) == {"W", "b"} for layer in params
        ):
            raise TypeError("params must be a list of {'W', 'b'} dicts, one per weighted layer (from Network.init)")
        n_weighted = self.arch.depth + 1
        if len(params) != n_weighted:
            raise ValueError(f"params has {len(params)} layers, the architecture has {n_weighted} weighted layers")

    # ---- init and apply --------------------------------------------------

    def init_many(self, keys, input_shape) -> Params:
        """Parameters of ``len(keys)`` independent networks, stacked on a leading axis.

        Equal to ``jax.vmap(lambda k: self.init(k, input_shape))(keys)``, but
        orthogonal networks are drawn one at a time (``jax.lax.map``): batched
        QR (a vmapped orthogonal init) can deadlock jaxlib's CPU LAPACK thread
        pool (seen on jax 0.10.2). Prefer this over vmapping [`init`][infinite_width.finite.networks.Network.init].
        """
        init_one = functools.partial(self.init, input_shape=input_shape)
        if self.init_kind == "orthogonal":
            return jax.lax.map(init_one, keys)
        return jax.vmap(init_one)(keys)

    def init(self, key, input_shape) -> Params:
        """Draw parameters for inputs of one example's shape ``input_shape``.

        ``key`` is a jax PRNG key (or an int seed). One call draws the unit
        variables ``z`` of all leaves at once (layer by layer, weight then
        bias; one random kernel to compile instead of one per leaf), so a
        fixed key gives identical ``z`` in every parametrization.
        """
        input_shape = _check_input_shape(self.arch, input_shape)
        plan = self._plan(input_shape)
        if isinstance(key, (int, np.integer)):
            key = jax.random.PRNGKey(int(key))
        shapes = [shape for spec in plan for shape in (spec.W_shape, (spec.out,))]
        sizes = [math.prod(shape) for shape in shapes]
        if self.init_kind == "uniform":
            flat = jax.random.uniform(key, (sum(sizes),), minval=-math.sqrt(3.0), maxval=math.sqrt(3.0))
        else:
            flat = jax.random.normal(key, (sum(sizes),))
        pieces = jnp.split(flat, np.cumsum(sizes)[:-1])
        params = []
        for spec, zW, zb in zip(plan, pieces[0::2], pieces[1::2]):
            zW = zW.reshape(spec.W_shape)
            if self.init_kind == "orthogonal":
                zW = _orthogonalize(zW)
            scale_W, scale_b = self._layer_scales(spec)
            params.append({"W": scale_W.init_std * zW, "b": scale_b.init_std * zb})
        return params

    def apply(self, params: Params, x):
        """Network outputs, shape (N, out_dim), for x of shape (N, d) or (N, H, W, C)."""
        return self._forward(params, x, len(self.arch.layers))

    def features(self, params: Params, x):
        """The last hidden layer: the input of the readout layer, shape (N, F).

        For an MLP, ``phi(h^L)`` of shape (N, width); for a convolutional net
        with global average pooling, the pooled channels (N, width); whatever
        the readout Dense or Conv layer reads, in general (flattened to
        (N, F) if it has spatial axes). The outputs are
        ``features(params, x) @ W_eff + b_eff`` of the readout (for a Dense
        readout that no layer follows), so ``features @ features.T`` is the
        kernel of the trained (or random) network's learned representation.
        """
        readout = max(i for i, layer in enumerate(self.arch.layers) if isinstance(layer, (Dense, Conv)))
        phi = self._forward(params, x, readout)
        return phi.reshape(phi.shape[0], -1)

    def _forward(self, params: Params, x, stop: int):
        """The activations after the first ``stop`` layers of ``arch.layers``."""
        x = jnp.asarray(x)
        input_shape = tuple(x.shape[1:])
        plan = self._plan(input_shape)
        if len(params) != len(plan):
            raise ValueError(f"params has {len(params)} layers, the architecture has {len(plan)} weighted layers")
        scales = {spec.index: (spec, self._layer_scales(spec), p) for spec, p in zip(plan, params)}
        for i, layer in enumerate(self.arch.layers[:stop]):
            if i in scales:
                spec, (sW, sb), p = scales[i]
                if tuple(p["W"].shape) != spec.W_shape:
                    raise ValueError(f"layer {i} weight has shape {tuple(p['W'].shape)}, expected {spec.W_shape}")
                W = sW.multiplier * p["W"]
                x = (x @ W if isinstance(layer, Dense) else _conv(layer, x, W)) + sb.multiplier * p["b"]
            else:
                x = _unweighted(layer, x)
        return x

    def __call__(self, params: Params, x):
        return self.apply(params, x)


def network(arch: Architecture, width: int, parametrization: str = "ntk", init: str = "gaussian") -> Network:
    """The finite network of ``arch`` with hidden width ``width``.

    Args:
      arch: an [`Architecture`][infinite_width.Architecture].
      width: hidden channels of every layer without an explicit ``out`` (>= 1).
      parametrization: ``"ntk"`` (default), ``"standard"`` or ``"mup"`` (see module docstring).
      init: ``"gaussian"`` (default), ``"orthogonal"`` or ``"uniform"``.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"unknown parametrization {parametrization!r}; expected one of {PARAMETRIZATIONS}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    for layer in arch.layers:
        padding = getattr(layer, "padding", None)
        if padding is not None and padding not in _PADDINGS:
            raise ValueError(f"{type(layer).__name__} padding must be one of {_PADDINGS}, got {padding!r}")
    return Network(arch, int(width), parametrization, init)
