"""Position-contracted features of a conv net: drawn once per sample, read by the step loop (docs/theory.md, section 10).

Only the position sums ``A_c(x, tap) = sum_s u_c(x, s) v(x, s + delta)`` of
[`conv_terms`][infinite_width.limits.adam_limit.conv_terms] enter the update, so the
engine stores them instead of the fields over positions. Stored per term,
samples last (R replicas of C samples, P points; ``#S = |S|``):

| term | stored | shape |
|---|---|---|
| ``u^L`` terms (``zeta_scaled``) | ``(1/#S) sum_s phi'(h^L) v`` (times ``zeta_c`` at the step) | (P, R, taps, C) |
| ``u^l`` terms, l < L | ``sum_s phi'(h^l) z^l_c v``, every output | (P, R, taps, k, C) |
| readout | ``mean_s phi(h^L)`` | (P, R, C) |
| ``zeta`` | ``W_std_{L+1} zeta_c`` | (R, k, C) |

Drawing, per replica and block of points (all positions of a point are in
its block): ``h^1`` exactly from the filter's latent normals and the
patches (its root ``[W_std_1 patch / sqrt(C |F_1|), b_std_1]``), ``h^l``
(l >= 2) from their roots ([`conv_roots`][infinite_width.limits.adam_limit.conv_roots]),
and the ``z^l`` (l < L) enter only through position sums: with ``z^l = R eps``,
``sum_s w(x, s) z^l(x, s)`` is either ``(sum_s w(x, s) R(x, s, :)) eps`` or ``z^l`` drawn on the positions
and summed against ``w``, whichever is cheaper ([`z_on_positions`][infinite_width.limits.adam_limit.conv_fields.z_on_positions]). Latent
normals are keyed by (field, replica, column) as in the MLP engine
([`fields`][infinite_width.limits.adam_limit.fields]), so a 1 x 1 image with a
1 x 1 filter draws the MLP engine's samples.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width.architectures import activation_fn
from infinite_width.limits.adam_limit.conv_roots import shift_positions
from infinite_width.limits.adam_limit.conv_terms import ConvNet, ConvTerm
from infinite_width.limits.adam_limit.fields import (
    latent_rows,
    log_replica,
    narrow,
    replica_latents,
    sharded_zeros,
    storage_dtype_of,
    widen,
)
from infinite_width.limits.adam_limit.step import LayoutSizes, contract

__all__ = ["ConvLayout", "conv_layout", "draw_contracted", "ContractedModel", "first_layer_root", "z_on_positions",
           "GEMM_ADVANTAGE"]


@dataclasses.dataclass(frozen=True)
class ConvLayout:
    """The stored features of a run and their sizes (module docstring).

    Attributes:
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet].
      terms: the [`ConvTerm`][infinite_width.limits.adam_limit.conv_terms.ConvTerm]s whose features are stored.
      points: P, the training and test points together.
      replicas: R, the independent replicas.
      per_replica: C, the samples of each replica.
    """

    net: ConvNet
    terms: Tuple[ConvTerm, ...]
    points: int
    replicas: int
    per_replica: int

    @property
    def out_dim(self) -> int:
        return self.net.out_dim

    def stored_shape(self, term: ConvTerm) -> Tuple[int, ...]:
        """The shape of ``term``'s stored features (module docstring).

        Args:
          term: one of the layout's ``terms``.
        """
        P, R, C = self.points, self.replicas, self.per_replica
        if term.per_output:
            return (P, R, C)
        return (P, R, term.taps, C) if term.zeta_scaled else (P, R, term.taps, self.out_dim, C)

    @property
    def numbers_per_point(self) -> int:
        """Stored numbers per sample and point."""
        return sum(int(np.prod(self.stored_shape(t)[2:-1], dtype=np.int64)) for t in self.terms)

    @property
    def h_layers(self) -> Tuple[int, ...]:
        """The layers whose ``h^l`` the features need: all, or the last for the readout alone."""
        if all(t.per_output for t in self.terms):
            return (self.net.depth,)
        return tuple(range(1, self.net.depth + 1))

    @property
    def z_layers(self) -> Tuple[int, ...]:
        """The l < L whose ``z^l`` the features need."""
        return tuple(sorted({t.layer for t in self.terms if t.layer is not None and t.layer < self.net.depth}))

    @property
    def zeta(self) -> bool:
        return any(t.zeta_scaled for t in self.terms)


def conv_layout(net: ConvNet, terms, points: int, replicas: int, per_replica: int) -> ConvLayout:
    """The [`ConvLayout`][infinite_width.limits.adam_limit.conv_fields.ConvLayout] of ``terms`` on ``points`` points.

    Args:
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet].
      terms: its terms ([`conv_terms`][infinite_width.limits.adam_limit.conv_terms.conv_terms]), any iterable.
      points: P, the training and test points together.
      replicas: R, the independent replicas.
      per_replica: C, the samples of each replica.
    """
    return ConvLayout(net, tuple(terms), points, replicas, per_replica)


def first_layer_root(net: ConvNet, patch_array) -> jax.Array:
    """(P, |S|, |F_1| C + 1) the exact root of ``K^1``: ``[W_std_1 patch / sqrt(C |F_1|), b_std_1]``.

    Args:
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet].
      patch_array: (P, |S|, |F_1| C) the input patches
        ([`patches`][infinite_width.limits.adam_limit.conv_kernels.patches]).
    """
    scale = net.W_std[0] / np.sqrt(net.channels * net.tap_count(1))
    bias = jnp.full(patch_array.shape[:2] + (1,), net.b_std[0], jnp.float32)
    return jnp.concatenate([scale * patch_array, bias], axis=-1)


def draw_contracted(key, layout: ConvLayout, roots_for, first_layer, patch_array, dtype, *, sharding=None,
                    block_bytes: int = 1 << 28) -> Dict[str, jax.Array]:
    """Draw every stored feature of ``layout`` (module docstring).

    Args:
      key: the samples key.
      layout: the run's [`ConvLayout`][infinite_width.limits.adam_limit.conv_fields.ConvLayout].
      roots_for: ``roots_for(replica) -> {"h<l>": (P |S|, r), "z<l>": (P |S|, r)}`` (same widths for every
        replica).
      first_layer: (P, |S|, |F_1| C + 1) the root of ``h^1``
        ([`first_layer_root`][infinite_width.limits.adam_limit.conv_fields.first_layer_root]).
      patch_array: (P, |S|, |F_1| C) the input patches.
      dtype: storage dtype of the features.
      sharding: ``sharding(ndim)``, the sharding of the sample axis (last), or None.
      block_bytes: bounds the float32 temporaries of one block of points.

    Returns:
      ``{term name: features, "zeta": (R, k, C)}`` (shapes:
      [`ConvLayout.stored_shape`][infinite_width.limits.adam_limit.conv_fields.ConvLayout.stored_shape]).
    """
    net, P, R, C = layout.net, layout.points, layout.replicas, layout.per_replica
    stores = {t.name: sharded_zeros(layout.stored_shape(t), storage_dtype_of(dtype), sharding) for t in layout.terms}
    zetas = []
    for replica in range(R):
        roots = {name: jnp.asarray(root, jnp.float32).reshape(P, net.positions, -1)
                 for name, root in roots_for(replica).items()}
        ranks = {name: int(root.shape[-1]) for name, root in roots.items()} | {"h1": int(first_layer.shape[-1])}
        plan = latent_rows(layout, ranks)  # the MLP engine's order: h layers, z layers, zeta
        latent, coordinate = replica_latents(key, replica, plan=plan, per_replica=C,
                                             input_dim=int(patch_array.shape[-1]), sharding=sharding)
        offsets = _offsets(plan)
        zeta = (net.W_std[-1] * latent[offsets["zeta"][0]:offsets["zeta"][1]] if layout.zeta
                else jnp.zeros((layout.out_dim, C), jnp.float32))
        zetas.append(zeta)
        on_positions = z_on_positions(layout, ranks)
        block = _block_points(layout, ranks, on_positions, block_bytes)
        for start in range(0, P, block):
            stores = _write_features(stores, min(start, P - block), replica, latent, coordinate, first_layer,
                                     patch_array, roots, layout=layout, block=block,
                                     offsets=tuple(sorted(offsets.items())),
                                     on_positions=tuple(sorted(on_positions.items())))
        del latent, roots
        log_replica(replica, R, stores)
    fields = dict(stores)
    if layout.zeta:
        stacked = jnp.stack(zetas)
        fields["zeta"] = jax.device_put(stacked, sharding(3)) if sharding is not None else stacked
    return fields


def _offsets(plan) -> Dict[str, Tuple[int, int]]:
    offsets, start = {}, 0
    for name, _, rows, _ in plan:
        offsets[name] = (start, start + rows)
        start += rows
    return offsets


GEMM_ADVANTAGE = 5.0
"""How many times faster per multiply-add one large matrix product (``z^l`` on the positions) runs than the
two thin contractions over positions, then columns (measured on the 2-core CPU: about 80 against 15
GMAC/s, docs/BENCHMARKS.md); `z_on_positions` weighs the two orders' counts by it."""


def _backward_terms(layout: ConvLayout, layer: int):
    return [t for t in layout.terms if t.layer == layer and not t.per_output and not t.zeta_scaled]


def z_on_positions(layout: ConvLayout, ranks: Dict[str, int]) -> Dict[int, bool]:
    """``{l: whether the features of layer l's terms contract z^l on the positions}`` (l < L).

    A term's feature ``sum_s w(x, s) z^l_c(x, s)`` with ``z^l = R eps`` can be computed two ways per
    point and sample (``r`` columns of ``R``, ``t`` weightings of the term, ``k`` outputs): contract the
    weightings with the root over positions, then with the latent normals (``t r (|S| + k)``
    multiply-adds, two thin contractions), or draw ``z^l`` on the positions first, one matrix product
    shared by all of the layer's terms (``|S| k r``, plus ``|S| t k`` per term). The second does more
    arithmetic but runs it as one large product; it is chosen when its count is below
    ``GEMM_ADVANTAGE`` times the first's. Both give the same numbers up to float32 summation order.

    Args:
      layout: the run's [`ConvLayout`][infinite_width.limits.adam_limit.conv_fields.ConvLayout].
      ranks: columns of each field's root (``{"z<l>": r, ...}``).
    """
    S, k, choice = layout.net.positions, layout.out_dim, {}
    for l in layout.z_layers:
        terms, r = _backward_terms(layout, l), ranks[f"z{l}"]
        by_columns = sum(t.taps * r * (S + k) for t in terms)
        on_positions = S * k * r + sum(S * t.taps * k for t in terms)
        choice[l] = on_positions <= GEMM_ADVANTAGE * by_columns
    return choice


def _block_points(layout: ConvLayout, ranks: Dict[str, int], on_positions: Dict[int, bool], budget_bytes: int) -> int:
    """Points per block of the drawing: its float32 temporaries (fields on positions, weightings, ``z`` on
    the positions or the position sums against the z roots, as ``on_positions`` chose) stay below
    ``budget_bytes``."""
    net, C, k = layout.net, layout.per_replica, layout.out_dim
    taps = max([t.taps for t in layout.terms if not t.per_output] + [1])
    forward = net.positions * C * (4 * net.depth + 2 * taps)
    backward = 0
    for l, positions in on_positions.items():
        if positions:
            backward += net.positions * k * C
        else:
            backward += 2 * sum(t.taps * C * ranks[f"z{l}"] for t in _backward_terms(layout, l))
    per_point = 4 * (forward + backward + layout.numbers_per_point * C)
    return int(max(1, min(layout.points, budget_bytes // max(per_point, 1))))


@functools.partial(jax.jit, donate_argnums=(0,), static_argnames=("layout", "block", "offsets", "on_positions"))
def _write_features(stores, start, replica, latent, coordinate, first_layer, patch_array, roots, *, layout, block,
                    offsets, on_positions):
    """The features of points ``[start, start + block)`` of ``replica`` written into ``stores`` in place
    (``on_positions``: the items of [`z_on_positions`][infinite_width.limits.adam_limit.conv_fields.z_on_positions])."""
    features = _block_features(layout, start, block, latent, coordinate, first_layer, patch_array, roots,
                               dict(offsets), dict(on_positions))
    updated = {}
    for name, store in stores.items():
        values = features[name]
        values = narrow(values, jnp.bfloat16) if store.dtype == jnp.uint16 else values.astype(store.dtype)
        index = (start, replica) + (0,) * (store.ndim - 2)
        updated[name] = jax.lax.dynamic_update_slice(store, values[:, None], index)
    return updated


def _rows(array, start, block):
    return jax.lax.dynamic_slice_in_dim(array, start, block, axis=0)


def _block_features(layout: ConvLayout, start, block, latent, coordinate, first_layer, patch_array, roots, offsets,
                    on_positions):
    """``{term: (b, taps, [k], C) or (b, C)}`` for the points ``[start, start + block)``."""
    net = layout.net

    def latent_of(name, inner=()):
        begin, end = offsets[name]
        return latent[begin:end].reshape((-1,) + inner + latent.shape[1:])

    h = {}
    for l in layout.h_layers:
        root = _rows(first_layer if l == 1 else roots[f"h{l}"], start, block)  # (b, |S|, r)
        h[l] = contract("bsj,jc->bsc", root, latent_of(f"h{l}"))
    phi = {l: activation_fn(net.activations[l - 1])(value) for l, value in h.items()}
    dphi = {l: jax.jvp(activation_fn(net.activations[l - 1]), (value,), (jnp.ones_like(value),))[1]
            for l, value in h.items()}
    z = {l: contract("bsj,jkc->bskc", _rows(roots[f"z{l}"], start, block), latent_of(f"z{l}", (layout.out_dim,)))
         for l, on in on_positions.items() if on}  # z^l on the positions, (b, |S|, k, C)
    features = {}
    for term in layout.terms:
        if term.per_output:
            features[term.name] = jnp.mean(phi[net.depth], axis=1)
            continue
        l = term.layer
        if term.kind == "bias":
            weights = dphi[l][:, :, None]
        elif term.kind == "input":
            # One input entry (b, delta) per sample: its patch value x_b(s + delta).
            weights = (dphi[l] * jnp.take(_rows(patch_array, start, block), coordinate, axis=2))[:, :, None]
        else:
            weights = jnp.stack([dphi[l] * shift_positions(phi[l - 1], net, delta) for delta in net.taps(l)], axis=2)
        if term.zeta_scaled:
            features[term.name] = jnp.sum(weights, axis=1) / net.positions  # (b, taps, C)
        elif l in z:
            features[term.name] = contract("bstc,bskc->btkc", weights, z[l])
        else:
            by_column = contract("bstc,bsj->btcj", weights, _rows(roots[f"z{l}"], start, block))
            features[term.name] = contract("btcj,jkc->btkc", by_column, latent_of(f"z{l}", (layout.out_dim,)))
    return features


@dataclasses.dataclass(frozen=True)
class ContractedModel(LayoutSizes):
    """The conv net's step model (`infinite_width.limits.adam_limit.step.StepModel`): reads the stored
    position-contracted features on the rows.

    Attributes:
      layout: the [`ConvLayout`][infinite_width.limits.adam_limit.conv_fields.ConvLayout] of the stored features.
    """

    layout: ConvLayout

    def accumulator_shapes(self):
        R, C, k = self.replicas, self.per_replica, self.out_dim
        return {t.name: (R, k, C) if t.per_output else (R, t.taps, C) for t in self.layout.terms}

    def values(self, fields, x_all, rows):
        """The stored features on the points ``rows``, as float32 (and ``zeta`` whole).

        Args:
          fields: the stored features
            ([`draw_contracted`][infinite_width.limits.adam_limit.conv_fields.draw_contracted]).
          x_all: (P, H, W, C) all points (unused: the features hold what is needed of them).
          rows: (b,) the points of the block.

        Returns:
          ``{term name: (b, R, taps, [k], C) or (b, R, C), "zeta": (R, k, C)}``.
        """
        values = {t.name: widen(jnp.take(fields[t.name], rows, axis=0)) for t in self.layout.terms}
        if self.layout.zeta:
            values["zeta"] = fields["zeta"]
        return values

    def function_sums(self, values, accumulated):
        """The function's sums on the block's points, (b, R, k): each term's features contracted with its
        accumulated updates over taps and samples (times ``zeta`` for the last layer's terms).

        Args:
          values: the block's features ([`values`][infinite_width.limits.adam_limit.conv_fields.ContractedModel.values]).
          accumulated: ``{term name: A}``, the accumulated updates ((R, k, C) for the readout, (R, taps, C)
            for the others).
        """
        total, scaled = 0.0, 0.0
        for term in self.layout.terms:
            A = accumulated[term.name]
            if term.per_output:
                total = total + term.coefficient * contract("brc,rkc->brk", values[term.name], A)
            elif term.zeta_scaled:
                scaled = scaled + term.coefficient * contract("brtc,rtc->brc", values[term.name], A)
            else:
                total = total + term.coefficient * contract("brtkc,rtc->brk", values[term.name], A)
        if self.layout.zeta:
            total = total + contract("brc,rkc->brk", scaled, values["zeta"])
        return total

    def gradient_sums(self, values, chi):
        """The block's share of every term's normalized gradient (the shapes of ``accumulated``).

        Args:
          values: the block's features ([`values`][infinite_width.limits.adam_limit.conv_fields.ContractedModel.values]).
          chi: (b, R, k) ``dloss/df`` on the block's rows (zero on padding rows).
        """
        grads = {}
        weighted = contract("rkc,brk->brc", values["zeta"], chi) if self.layout.zeta else None  # sum_c chi_c zeta_c
        for term in self.layout.terms:
            features = values[term.name]
            if term.per_output:
                grads[term.name] = contract("brc,brk->rkc", features, chi)
            elif term.zeta_scaled:
                grads[term.name] = contract("brtc,brc->rtc", features, weighted)
            else:
                grads[term.name] = contract("brtkc,brk->rtc", features, chi)
        return grads
