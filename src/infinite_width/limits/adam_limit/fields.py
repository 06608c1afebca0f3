"""The stored random fields of the Monte Carlo engine, and their values on given points.

Every term of the limit ([`terms`][infinite_width.limits.adam_limit.terms]) is built
from a few Gaussian fields per sample (docs/theory.md, sections 5 and 7):

* ``h^l ~ GP(0, K^l)``, l = 1..L: ``phi(h^l)`` and ``phi'(h^l)`` both come
  from it (for piecewise-linear activations ``phi'`` is a sign pattern, so
  nothing else is stored). ``h^1 = W_std_1 x.w / sqrt(d) + b_std_1 beta``
  is drawn exactly from the input weights (``K^1`` has rank d + 1); the
  deeper ``h^l`` from pivoted Cholesky roots of ``K^l``
  ([`roots`][infinite_width.limits.adam_limit.roots]).
* ``z^l_c ~ GP(0, W_std_{l+1}^2 B^{l+1})``, l = 1..L-1, from roots of
  ``W_std_{l+1}^2 B^{l+1}``; ``z^L_c = W_std_{L+1} zeta_c`` is constant over
  points (``B^{L+1} = 1``): k numbers per sample (``"zeta"``).
* the input coordinate ``b`` of each sample (``"coordinate"``).

Stored layout, samples last so that a batch of points is a block of
contiguous rows: ``h<l>`` (P, R, C), ``z<l>`` (P, R, k, C), ``zeta`` (R, k, C)
float32, ``coordinate`` (R, C) int32 (R replicas of C samples). Storage per
sample: ``P (L + (L - 1) k)`` numbers plus ``k + 1``.

Every draw is keyed by (field, replica, latent column j) only: the values do
not depend on the number of devices, on how points are blocked, or on the
rank of the other columns (a root truncated to r columns reuses the first r
latent columns of the exact one).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width.limits.adam_limit.terms import Term

__all__ = ["FieldLayout", "field_layout", "draw_fields", "first_layer_root", "latent_rows", "log_replica",
           "rows_of_fields", "LayerValues", "widen", "narrow", "storage_dtype_of", "field_id", "replica_latents", "sharded_zeros", "ZETA_ID"]

LOGGER = logging.getLogger(__name__)
"""The drawing's progress at INFO (a child of ``infinite_width.limits.adam_limit``; silent by default)."""

HIGHEST = jax.lax.Precision.HIGHEST

# Field ids in the key derivation (never reuse one for another field).
ZETA_ID, _COORDINATE_ID, _Z_OFFSET = 1000, 1001, 100


def field_id(name: str) -> int:
    """The fixed id of field ``h<l>`` (l) or ``z<l>`` (100 + l) in the key derivation.

    Args:
      name: ``h<l>`` or ``z<l>``.
    """
    return int(name[1:]) + (_Z_OFFSET if name[0] == "z" else 0)


@dataclasses.dataclass(frozen=True)
class FieldLayout:
    """Which fields a run stores, and their sizes.

    Attributes:
      points: P, the training and test points together.
      replicas: R, the independent replicas.
      per_replica: C, the samples of each replica.
      out_dim: k, the outputs.
      depth: L, the hidden layers.
      h_layers: the l whose ``h^l`` is stored.
      z_layers: the l < L whose ``z^l`` is stored.
      zeta: whether ``z^L`` is stored.
      coordinate: whether the input term is trained (a random input coordinate per sample).
    """

    points: int
    replicas: int
    per_replica: int
    out_dim: int
    depth: int
    h_layers: Tuple[int, ...]
    z_layers: Tuple[int, ...]
    zeta: bool
    coordinate: bool

    @property
    def numbers_per_point(self) -> int:
        """Stored numbers per sample and point."""
        return len(self.h_layers) + self.out_dim * len(self.z_layers)


def field_layout(terms: Tuple[Term, ...], depth: int, out_dim: int, points: int, replicas: int,
                 per_replica: int) -> FieldLayout:
    """The fields that ``terms`` read (see the module docstring).

    Args:
      terms: the limit's terms ([`limit_terms`][infinite_width.limits.adam_limit.terms.limit_terms]).
      depth: L, the hidden layers.
      out_dim: k, the outputs.
      points: P, the training and test points together.
      replicas: R, the independent replicas.
      per_replica: C, the samples of each replica.
    """
    u_layers = {t.u_layer for t in terms if t.u_layer is not None}
    v_layers = {t.v for t in terms if isinstance(t.v, int)}
    return FieldLayout(
        points=points, replicas=replicas, per_replica=per_replica, out_dim=out_dim, depth=depth,
        h_layers=tuple(sorted(u_layers | v_layers)),
        z_layers=tuple(sorted(l for l in u_layers if l < depth)),
        zeta=depth in u_layers,
        coordinate=any(t.v == "x" for t in terms),
    )


# --------------------------------------------------------------------------
# Storage dtypes. bfloat16 fields are stored as their raw 16 bits (uint16): XLA's CPU backend widens a
# bfloat16 operand of a gather to float32 as a whole, which a step loop would hoist and keep (twice the
# storage); gathering integers and widening the gathered rows avoids that.


def storage_dtype_of(dtype):
    """The array dtype that stores fields of ``dtype`` (float32, or uint16 bits for bfloat16).

    Args:
      dtype: ``"float32"`` or ``"bfloat16"``.
    """
    return jnp.uint16 if jnp.dtype(dtype) == jnp.bfloat16 else jnp.dtype(dtype)


def narrow(values, dtype):
    """float32 ``values`` as stored fields of ``dtype`` (rounded to nearest for bfloat16).

    Args:
      values: a float32 jax array.
      dtype: the storage dtype, ``"float32"`` or ``"bfloat16"``.
    """
    if jnp.dtype(dtype) == jnp.bfloat16:
        return jax.lax.bitcast_convert_type(values.astype(jnp.bfloat16), jnp.uint16)
    return values.astype(dtype)


def widen(stored):
    """Stored fields as float32 (bfloat16 bits are the upper half of a float32's: exact).

    Args:
      stored: an array of [`storage_dtype_of`][infinite_width.limits.adam_limit.fields.storage_dtype_of] a dtype.
    """
    if stored.dtype == jnp.uint16:
        return jax.lax.bitcast_convert_type(stored.astype(jnp.uint32) << 16, jnp.float32)
    return stored.astype(jnp.float32)


# --------------------------------------------------------------------------
# Drawing (once, at setup).


def latent_rows(layout, ranks: Dict[str, int]):
    """``((name, field id, rows, inner shape), ...)``: the latent rows (C,) each field draws per replica.

    A root of rank r draws r rows (``h``) or r k rows (``z``, row j k + c
    for column j and output c); ``zeta`` draws k rows.

    Args:
      layout: a [`FieldLayout`][infinite_width.limits.adam_limit.fields.FieldLayout] or a conv net's
        [`ConvLayout`][infinite_width.limits.adam_limit.conv_fields.ConvLayout] (both name their ``h_layers``,
        ``z_layers``, ``zeta`` and ``out_dim``).
      ranks: ``{"h<l>": r, "z<l>": r}`` the columns of each field's root.
    """
    k = layout.out_dim
    plan = [(f"h{l}", field_id(f"h{l}"), ranks[f"h{l}"], ()) for l in layout.h_layers]
    plan += [(f"z{l}", field_id(f"z{l}"), ranks[f"z{l}"] * k, (k,)) for l in layout.z_layers]
    if layout.zeta:
        plan.append(("zeta", ZETA_ID, k, ()))
    return tuple(plan)


LATENT_CHUNK_ROWS = 1024
"""Latent rows drawn at once (bounds the random-number temporaries to a few times this many rows;
memory.LATENT_CHUNK_ROWS counts it)."""


@functools.partial(jax.jit, static_argnames=("plan", "per_replica", "input_dim", "sharding"))
def replica_latents(key, replica, *, plan, per_replica, input_dim, sharding):
    """One replica's latent normals (J', C), J' >= J rows (row j of field f from ``fold_in(key, f, replica, j)``,
    drawn in chunks of ``LATENT_CHUNK_ROWS`` rows; the padding rows are never read), and its input
    coordinates (C,).

    Args:
      key: the samples key.
      replica: the replica's index.
      plan: the fields' latent rows ([`latent_rows`][infinite_width.limits.adam_limit.fields.latent_rows]).
      per_replica: C, the samples of each replica.
      input_dim: d, the range of the random input coordinate.
      sharding: ``sharding(ndim)``, the sharding of the sample axis (last), or None.
    """
    coordinate = jax.random.randint(jax.random.fold_in(jax.random.fold_in(key, _COORDINATE_ID), replica),
                                    (per_replica,), 0, input_dim)
    if not plan:
        return None, coordinate
    keys = jnp.concatenate([
        jax.vmap(lambda j, f=field_id: jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, f), replica), j))(
            jnp.arange(rows))
        for _, field_id, rows, _ in plan
    ])
    chunk = min(LATENT_CHUNK_ROWS, keys.shape[0])
    keys = jnp.concatenate([keys, jnp.broadcast_to(keys[:1], (-keys.shape[0] % chunk,) + keys.shape[1:])])
    draw = jax.vmap(lambda row_key: jax.random.normal(row_key, (per_replica,)))
    latent = jax.lax.map(draw, keys.reshape((-1, chunk) + keys.shape[1:])).reshape(-1, per_replica)
    if sharding is not None:
        latent = jax.lax.with_sharding_constraint(latent, sharding(2))
        coordinate = jax.lax.with_sharding_constraint(coordinate, sharding(1))
    return latent, coordinate


@functools.partial(jax.jit, donate_argnums=(0,), static_argnames=("block", "offset", "rows", "inner"))
def _write_block(store, root, latent, start, replica, *, block, offset, rows, inner):
    """``store[start:start + block, replica] = root[start:start + block] @ latent rows`` in place."""
    field_latent = latent[offset:offset + rows].reshape((rows // max(int(np.prod(inner)), 1),) + inner
                                                        + latent.shape[1:])
    root_rows = jax.lax.dynamic_slice_in_dim(root, start, block, axis=0)
    values = jnp.tensordot(root_rows, field_latent, axes=1, precision=HIGHEST)  # (block, C) or (block, k, C)
    values = narrow(values, jnp.bfloat16) if store.dtype == jnp.uint16 else values.astype(store.dtype)
    index = (start, replica) + (0,) * (store.ndim - 2)
    return jax.lax.dynamic_update_slice(store, values[:, None], index)


def _block_rows(points: int, numbers_per_row: int, budget_bytes: int) -> int:
    return int(max(1, min(points, budget_bytes // max(4 * numbers_per_row, 1))))


def sharded_zeros(shape, dtype, sharding):
    """Zeros created directly with their sharding (no full copy on one device or host).

    Args:
      shape: the array's shape.
      dtype: its dtype.
      sharding: ``sharding(ndim)``, the sharding of the sample axis (last), or None (unsharded).
    """
    if sharding is None:
        return jnp.zeros(shape, dtype)
    return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding(len(shape)))()


def draw_fields(key, roots_for, layout: FieldLayout, dtype, *, input_dim: int, readout_scale: float,
                sharding=None, block_bytes: int = 1 << 26) -> Dict[str, jax.Array]:
    """Draw every stored field of ``layout``; replica rho's from the roots ``roots_for(rho)``.

    Transient memory: one replica's roots and latent normals (``sum_fields r
    C``, times k for ``z`` fields) and one block.

    Args:
      key: the samples key.
      roots_for: ``roots_for(rho)`` gives ``{"h<l>": (P, r), "z<l>": (P, r)}``, the same widths
        for every replica.
      layout: the [`FieldLayout`][infinite_width.limits.adam_limit.fields.FieldLayout] to draw.
      dtype: storage dtype of the ``h`` and ``z`` fields.
      input_dim: d, the input dimension (the range of the random input coordinate).
      readout_scale: ``W_std_{L+1}`` (``z^L = W_std_{L+1} zeta``).
      sharding: ``sharding(ndim)``: the sharding of the sample axis (last) for arrays of that
        rank, or None.
      block_bytes: bounds the float32 block of rows computed at once.
    """
    R, C, P = layout.replicas, layout.per_replica, layout.points
    place = (lambda x: jax.device_put(x, sharding(x.ndim))) if sharding is not None else (lambda x: x)
    stores, zeta, coordinates = None, [], []
    for replica in range(R):
        roots = {name: jnp.asarray(root, jnp.float32) for name, root in roots_for(replica).items()}
        plan = latent_rows(layout, {name: root.shape[1] for name, root in roots.items()})
        if stores is None:
            stores = {name: sharded_zeros((P, R) + inner + (C,), storage_dtype_of(dtype), sharding) for name, _, _, inner in plan
                      if name != "zeta"}
        latent, coordinate = replica_latents(key, replica, plan=plan, per_replica=C, input_dim=input_dim,
                                              sharding=sharding)
        coordinates.append(coordinate)
        offset = 0
        for name, _, rows, inner in plan:
            if name == "zeta":
                zeta.append(readout_scale * latent[offset:offset + rows])
            else:
                block = _block_rows(P, int(np.prod(inner + (C,))), block_bytes)
                for start in range(0, P, block):
                    stores[name] = _write_block(stores[name], roots[name], latent, min(start, P - block), replica,
                                                block=block, offset=offset, rows=rows, inner=inner)
            offset += rows
        del latent, roots
        log_replica(replica, R, stores)
    fields = dict(stores)
    if layout.zeta:
        fields["zeta"] = place(jnp.stack(zeta))
    if layout.coordinate:
        fields["coordinate"] = place(jnp.stack(coordinates))
    return fields


def log_replica(replica: int, replicas: int, stores) -> None:
    """Log that ``replica`` of ``replicas`` is drawn (logger ``infinite_width.limits.adam_limit``, INFO).

    Only when that level is enabled does it wait for the replica's writes, so that the time between two
    lines is the replica's; otherwise the draws stay asynchronous.

    Args:
      replica: the replica just drawn (0-based).
      replicas: R, all replicas.
      stores: the stored arrays written so far.
    """
    if LOGGER.isEnabledFor(logging.INFO):
        jax.block_until_ready(stores)
        LOGGER.info("fields: replica %d of %d drawn", replica + 1, replicas)


def first_layer_root(x_all: np.ndarray, W_std: float, b_std: float) -> np.ndarray:
    """The exact root (P, d + 1) of ``K^1 = W_std^2 x.x'/d + b_std^2``: ``[W_std x / sqrt(d), b_std]``.

    Args:
      x_all: (P, d) inputs of every point.
      W_std: the first layer's weight standard deviation.
      b_std: the first layer's bias standard deviation.
    """
    d = x_all.shape[1]
    return np.concatenate([W_std * x_all / math.sqrt(d), np.full((x_all.shape[0], 1), b_std)], axis=1)


# --------------------------------------------------------------------------
# Values on given points (every step, on the batch rows).


@dataclasses.dataclass(frozen=True)
class LayerValues:
    """The fields on b points, float32.

    Attributes:
      phi: ``phi[l]``, (b, R, C): ``phi(h^l)``.
      dphi: ``dphi[l]``, (b, R, C): ``phi'(h^l)``.
      z: ``z[l]``, (b, R, k, C), for l < L.
      zeta: (R, k, C), or None.
      x_b: (b, R, C) the random input coordinate of each sample, or None.
    """

    phi: Dict[int, jax.Array]
    dphi: Dict[int, jax.Array]
    z: Dict[int, jax.Array]
    zeta: Optional[jax.Array]
    x_b: Optional[jax.Array]


def _derivative(phi):
    return lambda h: jax.jvp(phi, (h,), (jnp.ones_like(h),))[1]


def _gather(field, rows):
    """``field[rows]`` as float32 (gathering the raw bits of bfloat16 fields, see [`widen`][infinite_width.limits.adam_limit.fields.widen])."""
    return widen(jnp.take(field, rows, axis=0))


def rows_of_fields(fields: Dict[str, jax.Array], layout: FieldLayout, activations, x_all, rows) -> LayerValues:
    """[`LayerValues`][infinite_width.limits.adam_limit.fields.LayerValues] on some points, gathered from the stored fields.

    Args:
      fields: the stored fields ([`draw_fields`][infinite_width.limits.adam_limit.fields.draw_fields]).
      layout: their [`FieldLayout`][infinite_width.limits.adam_limit.fields.FieldLayout].
      activations: the activation function of each hidden layer.
      x_all: (P, d) all points (for the input coordinate).
      rows: (b,) the points.
    """
    phi, dphi, z = {}, {}, {}
    for l in layout.h_layers:
        h = _gather(fields[f"h{l}"], rows)
        phi[l] = activations[l - 1](h)
        dphi[l] = _derivative(activations[l - 1])(h)
    for l in layout.z_layers:
        z[l] = _gather(fields[f"z{l}"], rows)
    x_b = jnp.take(jnp.take(x_all, rows, axis=0), fields["coordinate"], axis=1) if layout.coordinate else None
    return LayerValues(phi, dphi, z, fields.get("zeta"), x_b)
