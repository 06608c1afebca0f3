"""Sampling the random fields of a run, once, before the steps (docs/theory.md, sections 7 and 10).

[`sample_fields`][infinite_width.limits.adam_limit.sampling.sample_fields]
draws what [`simulate`][infinite_width.limits.adam_limit.engine.simulate]
draws for the same arguments, and returns it with the step model that reads
it (`infinite_width.limits.adam_limit.step.StepModel`):

* MLPs: the pre-activations ``h^l`` and backward fields ``z^l`` on all points
  (`infinite_width.limits.adam_limit.fields`), from pivoted Cholesky roots of
  the P x P layer kernels (`infinite_width.limits.adam_limit.roots`), exact or
  truncated with random features of the residual
  (`infinite_width.limits.adam_limit.features`);
* conv nets: the position-contracted features of every term
  (`infinite_width.limits.adam_limit.conv_fields`), from the exact first layer
  and point-block pivoted Cholesky roots of the full-position kernels
  (`infinite_width.limits.adam_limit.conv_roots`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Dict, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from infinite_width._src.checks import as_key
from infinite_width._src.numerics import precision_scope
from infinite_width.architectures import Architecture
from infinite_width.limits.adam_limit.conv_fields import (
    ContractedModel,
    ConvLayout,
    conv_layout,
    draw_contracted,
    first_layer_root as conv_first_layer_root,
)
from infinite_width.limits.adam_limit.conv_kernels import PositionKernels
from infinite_width.limits.adam_limit.conv_roots import ConvReplicaRoots, conv_field_roots
from infinite_width.limits.adam_limit.conv_terms import conv_network, conv_terms
from infinite_width.limits.adam_limit.features import ReplicaRoots, feature_sources
from infinite_width.limits.adam_limit.fields import draw_fields, field_layout, first_layer_root
from infinite_width.limits.adam_limit.options import STORAGE_DTYPES, AdamLimit
from infinite_width.limits.adam_limit.roots import field_kernels, partial_pivoted_root, pivoted_root
from infinite_width.limits.adam_limit.step import FieldModel, StepModel
from infinite_width.limits.adam_limit.terms import layer_scales, limit_terms

__all__ = ["SampledFields", "sample_fields", "mlp_field_roots", "shardings", "SAMPLES_AXIS"]

LOGGER = logging.getLogger(__name__)

SAMPLES_AXIS = "samples"
"""The name of the mesh axis the samples are sharded over."""


@dataclasses.dataclass(frozen=True)
class SampledFields:
    """The random fields of a run and the step model that reads them (see [`sample_fields`][infinite_width.limits.adam_limit.sample_fields]).

    Attributes:
      fields: the stored arrays, samples last (``{"h<l>": (P, R, C), "z<l>": (P, R, k, C), "zeta": (R, k, C),
        "coordinate": (R, C)}`` for an MLP, `infinite_width.limits.adam_limit.conv_fields` for a conv net).
      model: the `infinite_width.limits.adam_limit.step.StepModel` of the run (its terms and layout).
      output_coefficient: the coefficient of the exact output-bias term.
      ranks: columns of each field's root (``{"h2": r, "z1": r, ...}``).
      residual_fractions: the fraction of each field's variance (trace) its root's leading columns drop
        (0 for exact roots; with features the covariance is right in expectation nonetheless).
      timings: seconds spent on ``roots``, ``features`` and ``fields``.
    """

    fields: Dict[str, jax.Array]
    model: StepModel
    output_coefficient: float
    ranks: Dict[str, int]
    residual_fractions: Dict[str, float]
    timings: Dict[str, float]


def shardings(devices):
    """(field sharding by rank, replicated sharding) for the sample axis (last) over ``devices``, or Nones.

    Args:
      devices: the jax devices (one device: ``(None, None)``).
    """
    if len(devices) == 1:
        return None, None
    mesh = Mesh(np.array(devices), (SAMPLES_AXIS,))
    by_rank = lambda ndim: NamedSharding(mesh, PartitionSpec(*([None] * (ndim - 1)), SAMPLES_AXIS))  # noqa: E731
    return by_rank, NamedSharding(mesh, PartitionSpec())


def _laps():
    """``lap(stage)``: the seconds since its previous call (or since it was made), logged at INFO as the
    time of ``stage``."""
    marks = [time.perf_counter()]

    def lap(stage):
        marks.append(time.perf_counter())
        LOGGER.info("%s: %.1f s", stage, marks[-1] - marks[-2])
        return marks[-1] - marks[-2]

    return lap


def sample_fields(arch: Architecture, x_all, *, key, options: Optional[AdamLimit] = None, readout_only: bool = False,
                  linear: bool = False, devices=None, layout: Optional[ConvLayout] = None,
                  **option_fields) -> SampledFields:
    """The fields [`simulate`][infinite_width.limits.adam_limit.engine.simulate] draws for the same arguments.

    Args:
      arch: an MLP or a supported conv net
        ([`check_architecture`][infinite_width.limits.adam_limit.planning.check_architecture]).
      x_all: (P, d) or (P, H, W, C) inputs, the training rows first, then the test rows.
      key: `simulate`'s key (int seed or jax PRNG key).
      options: the engine's options (default ``AdamLimit()``).
      readout_only: only the readout and the output bias train.
      linear: an SGD or momentum optimizer (squared coefficients).
      devices: jax devices to shard the samples over (default all).
      layout: a conv net's stored layout, if already built (it is built from the other arguments otherwise).
      **option_fields: fields of `AdamLimit` overriding ``options`` (``samples=``, ``replicas=``, ...).

    Returns:
      a [`SampledFields`][infinite_width.limits.adam_limit.SampledFields].
    """
    options = AdamLimit(**option_fields) if options is None else dataclasses.replace(options, **option_fields)
    devices = list(jax.devices() if devices is None else devices)
    samples_key = jax.random.fold_in(as_key(key), 1)
    x_all = np.asarray(x_all, np.float32)
    if arch.is_mlp:
        return _sample_mlp(arch, x_all, samples_key, options, readout_only, linear, devices)
    if layout is None:
        net = conv_network(arch, x_all.shape[1:])
        terms, _ = conv_terms(net, readout_only, linear=linear)
        layout = conv_layout(net, terms, x_all.shape[0], options.replicas, options.samples_per_replica)
    return _sample_conv(layout, x_all, samples_key, options, readout_only, linear, devices)


def mlp_field_roots(arch, x_all, layout, rank: Optional[int], features: int):
    """Pivoted Cholesky roots of the MLP's field kernels (``{"h<l>": Root, "z<l>": Root}``).

    With ``rank=None`` every root is exact (LAPACK). Otherwise only the first
    ``rank + features + 1`` columns are computed (O(P r'^2)): enough to tell
    whether a root is truncated and to draw it; the roots whose exact draws
    make features (`infinite_width.limits.adam_limit.features.feature_sources`)
    are then factorized completely.

    Args:
      arch: the MLP.
      x_all: (P, d) all points, training and test.
      layout: the run's [`FieldLayout`][infinite_width.limits.adam_limit.fields.FieldLayout].
      rank: columns kept of a truncated root (None: exact roots).
      features: random features of the residual per replica (0: plain truncation).
    """
    W_std, _ = layer_scales(arch)
    with precision_scope("float32"):
        matrices = field_kernels(arch, x_all, layout, W_std)
    if rank is None:
        return {name: pivoted_root(matrices.pop(name), name, consume=True) for name in list(matrices)}
    roots = {name: partial_pivoted_root(matrix, name, rank + features + 1) for name, matrix in matrices.items()}
    truncated = {name for name, root in roots.items() if not root.complete}
    for name in feature_sources(truncated, arch.depth) if features else ():
        if not roots[name].complete:
            roots[name] = pivoted_root(matrices.pop(name), name, consume=True)
    return roots


def _sample_mlp(arch, x_all, samples_key, options, readout_only, linear, devices) -> SampledFields:
    terms, out_coefficient = limit_terms(arch, readout_only, linear=linear)
    layout = field_layout(terms, arch.depth, arch.out_dim, x_all.shape[0], options.replicas,
                          options.samples_per_replica)
    W_std, b_std = layer_scales(arch)
    lap = _laps()
    exact = mlp_field_roots(arch, x_all, layout, options.rank, options.features)
    timings = {"roots": lap("roots")}
    roots_for = ReplicaRoots(exact, first_layer_root(x_all, W_std[0], b_std[0]), options.rank, options.features,
                             W_std, b_std, arch.activations, samples_key, options.replicas)
    del exact
    timings["features"] = lap("features")
    with precision_scope("float32"):
        fields = jax.block_until_ready(draw_fields(
            samples_key, roots_for, layout, STORAGE_DTYPES[options.storage_dtype], input_dim=x_all.shape[1],
            readout_scale=W_std[-1], sharding=shardings(devices)[0]))
    timings["fields"] = lap("fields")
    return SampledFields(fields, FieldModel(terms, layout, arch.activations), out_coefficient, roots_for.ranks,
                         roots_for.dropped, timings)


def _sample_conv(layout: ConvLayout, x_all, samples_key, options, readout_only, linear, devices) -> SampledFields:
    net = layout.net
    _, out_coefficient = conv_terms(net, readout_only, linear=linear)
    lap = _laps()
    with precision_scope("float32"):
        kernels = PositionKernels(net, x_all)
        names = {f"h{l}" for l in layout.h_layers if l >= 2} | {f"z{l}" for l in layout.z_layers}
        roots = conv_field_roots(kernels, names, options.rank, options.features)
        first_layer = conv_first_layer_root(net, kernels.patches)
        timings = {"roots": lap("roots")}
        roots_for = ConvReplicaRoots(net, roots, first_layer.reshape(-1, first_layer.shape[-1]), options.rank,
                                     options.features, samples_key)
        timings["features"] = lap("features")
        fields = jax.block_until_ready(draw_contracted(
            samples_key, layout, _replica_fields(roots_for, names), first_layer, kernels.patches,
            STORAGE_DTYPES[options.storage_dtype], sharding=shardings(devices)[0]))
    # Building each replica's features happens while drawing: their time is counted in "fields".
    timings["fields"] = lap("fields")
    ranks = {name: roots_for.ranks[name] for name in sorted(names)}
    dropped = {name: roots_for.dropped[name] for name in sorted(names)}
    return SampledFields(fields, ContractedModel(layout), out_coefficient, ranks, dropped, timings)


def _replica_fields(roots_for, names):
    """``roots_for`` restricted to the fields the features are drawn from."""
    return lambda replica: {name: root for name, root in roots_for(replica).items() if name in names}
