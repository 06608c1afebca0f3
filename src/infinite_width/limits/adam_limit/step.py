"""The compiled step loop of the lazy Monte Carlo engine (docs/theory.md, sections 7 and 10).

The network is lazy, so the function after t steps is

    f_t(x) = f_0(x) - sum_terms coef * (1/C) sum_m U_m,c(x) V_m(x) A_{t,m}
                    - b_std_{L+1} A^out_t

with ``A_{t,m} = sum_{s<t} lr_s Q_s(g_m)`` each sample's accumulated update
(one per shared term, one per output for the readout) and ``A^out`` the
output bias's. A step therefore needs the fields on its batch rows only:

1. ``f_t`` on the batch rows (from the accumulators),
2. ``chi = dloss/df`` there, and the normalized gradients ``g`` of every
   sample (sums over the batch rows),
3. ``Q_t = direction(g)`` (the optimizer's optax direction, state per sample),
   ``A += lr_t Q_t`` with ``lr_t = lr * factor(t)`` under a learning-rate
   schedule (the optimizer's `Schedule`).

The loop is shared by every architecture through a small *model* interface
(`StepModel`): the model reads the stored fields on a block of rows
(``values``) and turns them into the function's sums ``sum_m U V A_m``
(``function_sums``) and the normalized gradients (``gradient_sums``). The
MLP's model (`FieldModel`) computes ``U`` and ``V`` from the stored
pre-activations; the convolutional model
(`infinite_width.limits.adam_limit.conv_fields.ContractedModel`) reads
stored position-contracted features.

Both passes run over blocks of ``block_rows`` batch rows (a ``lax.scan``),
which bounds the temporaries to ``block_rows * M * (k + a few)`` numbers.
Predictions on all P points are computed only at recorded steps, by the same
function over blocks of all points. Per-step time O(M B (L k + L)), memory
traffic the batch rows of the stored fields.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Protocol, Tuple

import jax
import jax.numpy as jnp

from infinite_width import losses
from infinite_width.limits.adam_limit.fields import FieldLayout, LayerValues, rows_of_fields
from infinite_width.limits.adam_limit.terms import Term
from infinite_width.architectures import activation_fn
from infinite_width.optim import Optimizer

__all__ = ["StepModel", "LayoutSizes", "FieldModel", "StepSpec", "compiled_advance", "compiled_predict", "initial_state",
           "optimizer_state_numbers", "OUTPUT_BIAS"]

HIGHEST = jax.lax.Precision.HIGHEST
OUTPUT_BIAS = "output_bias"


class StepModel(Protocol):
    """What the step loop needs from an architecture's stored fields (hashable: it keys the compilation).

    Shapes: b rows of a block, R replicas of C samples, k outputs. ``values``
    is whatever the model computes from the stored fields on the rows; the
    loop only hands it back to the two sums.
    """

    replicas: int
    per_replica: int
    out_dim: int
    points: int

    def accumulator_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """``{term: shape}`` of every accumulated update ``A`` (and so of its gradient and optimizer state)."""

    def values(self, fields, x_all, rows):
        """The fields on the points ``rows`` (b,).

        Args:
          fields: the stored fields, as drawn
            ([`SampledFields`][infinite_width.limits.adam_limit.sampling.SampledFields]).
          x_all: all P points.
          rows: (b,) the points of the block.
        """

    def function_sums(self, values, accumulated) -> jax.Array:
        """``sum_terms coef sum_m U_c V A_m`` on the block's points, (b, R, k).

        Args:
          values: the block's ``values``.
          accumulated: ``{term: A}`` the accumulated updates (``accumulator_shapes``).
        """

    def gradient_sums(self, values, chi) -> Dict[str, jax.Array]:
        """The block's share of every normalized gradient, for ``chi`` (b, R, k) (zero on padding rows).

        Args:
          values: the block's ``values``.
          chi: (b, R, k) ``dloss/df`` on the block's rows (zero on padding rows).

        Returns:
          ``{term: gradient}``, the shapes of ``accumulator_shapes``.
        """


class LayoutSizes:
    """The sizes of a `StepModel` read from its ``layout`` (replicas, samples per replica, outputs, points)."""

    @property
    def replicas(self) -> int:
        return self.layout.replicas

    @property
    def per_replica(self) -> int:
        return self.layout.per_replica

    @property
    def out_dim(self) -> int:
        return self.layout.out_dim

    @property
    def points(self) -> int:
        return self.layout.points


@dataclasses.dataclass(frozen=True)
class FieldModel(LayoutSizes):
    """The MLP's model: ``U`` and ``V`` computed on the rows from the stored ``h^l``, ``z^l`` (docs/theory.md,
    section 7).

    Attributes:
      terms: the limit's [`Term`][infinite_width.limits.adam_limit.terms.Term]s.
      layout: the [`FieldLayout`][infinite_width.limits.adam_limit.fields.FieldLayout] of the stored fields.
      activations: the activation name of each hidden layer.
    """

    terms: Tuple[Term, ...]
    layout: FieldLayout
    activations: Tuple[str, ...]

    def by_u_layer(self):
        """The shared terms grouped by their ``u`` layer: ((l, (term, ...)), ...)."""
        groups: Dict[int, list] = {}
        for term in self.terms:
            if not term.per_output:
                groups.setdefault(term.u_layer, []).append(term)
        return tuple((layer, tuple(group)) for layer, group in groups.items())

    @property
    def readout_terms(self):
        return tuple(t for t in self.terms if t.per_output)

    def accumulator_shapes(self):
        R, C, k = self.replicas, self.per_replica, self.out_dim
        return {t.name: (R, k, C) if t.per_output else (R, C) for t in self.terms}

    def values(self, fields, x_all, rows) -> LayerValues:
        """The fields on the points ``rows``, as [`LayerValues`][infinite_width.limits.adam_limit.fields.LayerValues].

        Args:
          fields: the stored fields ([`draw_fields`][infinite_width.limits.adam_limit.fields.draw_fields]).
          x_all: (P, d) all points (for the input coordinate).
          rows: (b,) the points of the block.
        """
        activations = tuple(activation_fn(name) for name in self.activations)
        return rows_of_fields(fields, self.layout, activations, x_all, rows)

    def _backward(self, values: LayerValues, layer: int, weights, outputs_last: str):
        """``sum_c u^l_c (.)``-style contraction with ``z^l`` (b, R, k, C) or the constant ``zeta`` (R, k, C)."""
        if layer < self.layout.depth:
            return contract(f"brkc,{outputs_last}", values.z[layer], weights)
        return contract(f"rkc,{outputs_last}", values.zeta, weights)

    def function_sums(self, values: LayerValues, accumulated) -> jax.Array:
        """``sum_terms coef sum_m U_c V A_m`` on the block's points, (b, R, k).

        Args:
          values: the block's [`LayerValues`][infinite_width.limits.adam_limit.fields.LayerValues].
          accumulated: ``{term name: A}`` the accumulated updates, (R, C) or (R, k, C) for the readout.
        """
        total = 0.0
        for layer, group in self.by_u_layer():
            weight = sum(term.coefficient * _v(values, term) * accumulated[term.name][None] for term in group)
            total = total + self._backward(values, layer, values.dphi[layer] * weight, "brc->brk")
        for term in self.readout_terms:
            total = total + term.coefficient * contract("brc,rkc->brk", values.phi[term.v], accumulated[term.name])
        return total

    def gradient_sums(self, values: LayerValues, chi) -> Dict[str, jax.Array]:
        """The block's share of every term's normalized gradient, (R, C) or (R, k, C) for the readout.

        Args:
          values: the block's [`LayerValues`][infinite_width.limits.adam_limit.fields.LayerValues].
          chi: (b, R, k) ``dloss/df`` on the block's rows (zero on padding rows).
        """
        grads = {}
        for layer, group in self.by_u_layer():
            weighted = values.dphi[layer] * self._backward(values, layer, chi, "brk->brc")  # sum_c chi_c u_c
            for term in group:
                v = _v(values, term)
                grads[term.name] = jnp.sum(weighted, axis=0) if term.v is None else contract("brc,brc->rc", weighted, v)
        for term in self.readout_terms:
            grads[term.name] = contract("brc,brk->rkc", values.phi[term.v], chi)
        return grads


def contract(spec, *operands):
    """``jnp.einsum`` at the highest matrix precision (no TF32 on accelerators)."""
    return jnp.einsum(spec, *operands, precision=HIGHEST)


def _v(values: LayerValues, term: Term):
    if term.v == "x":
        return values.x_b
    return 1.0 if term.v is None else values.phi[term.v]


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything static about a run's step (hashable: one compilation per spec and shapes).

    Attributes:
      model: the [`StepModel`][infinite_width.limits.adam_limit.step.StepModel] reading the stored fields.
      output_coefficient: the coefficient of the exact output-bias term (0: no output-bias accumulator).
      optimizer: the optimizer (its direction, learning rate and schedule).
      loss: the loss's name (`infinite_width.losses`).
      n_train: N, the training points (the first N rows).
      full_batch: every step uses all training rows (``batch_indices`` unused).
      block_rows: rows per block of the step's and the predictions' sums.
    """

    model: StepModel
    output_coefficient: float
    optimizer: Optimizer
    loss: str
    n_train: int
    full_batch: bool
    block_rows: int


def _blocks(rows, block: int):
    """``rows`` (n,) as (nb, block) blocks, the last padded with row ``rows[0]``."""
    n = rows.shape[0]
    padded = -(-n // block) * block
    return jnp.concatenate([rows, jnp.broadcast_to(rows[:1], (padded - n,))]).reshape(-1, block)


def _predict_rows(spec: StepSpec, fields, x_all, f0, accumulated, rows):
    """``f_t`` on ``rows`` (n,): (R, n, k)."""
    block_rows = _blocks(rows, min(spec.block_rows, rows.shape[0]))
    model = spec.model

    def block_sums(block):
        return model.function_sums(model.values(fields, x_all, block), accumulated)

    sums = jax.lax.map(block_sums, block_rows) if block_rows.shape[0] > 1 else block_sums(block_rows[0])[None]
    sums = sums.reshape((-1,) + sums.shape[2:])[: rows.shape[0]]  # (n, R, k)
    f = f0[rows][None] - jnp.moveaxis(sums, 0, 1) / model.per_replica
    if OUTPUT_BIAS in accumulated:
        f = f - spec.output_coefficient * accumulated[OUTPUT_BIAS][:, None, :]
    return f


def _gradients(spec: StepSpec, fields, x_all, rows, chi):
    """Normalized gradients of every sample for the batch ``rows`` (B,) and ``chi`` (R, B, k)."""
    block = min(spec.block_rows, rows.shape[0])
    block_rows = _blocks(rows, block)
    chi_blocks = _blocks_of(jnp.moveaxis(chi, 1, 0), block)  # zero on the padding rows
    model = spec.model

    def block_grads(block_and_chi):
        block, block_chi = block_and_chi
        return model.gradient_sums(model.values(fields, x_all, block), block_chi)

    if block_rows.shape[0] == 1:
        return block_grads((block_rows[0], chi_blocks[0]))

    def accumulate(total, block_and_chi):
        return jax.tree_util.tree_map(jnp.add, total, block_grads(block_and_chi)), None

    first = block_grads((block_rows[0], chi_blocks[0]))
    return jax.lax.scan(accumulate, first, (block_rows[1:], chi_blocks[1:]))[0]


def _blocks_of(values, block: int):
    """(n, ...) values as (nb, block, ...) with zero padding."""
    n = values.shape[0]
    padded = -(-n // block) * block
    values = jnp.concatenate([values, jnp.zeros((padded - n,) + values.shape[1:], values.dtype)])
    return values.reshape((-1, block) + values.shape[1:])


def initial_state(spec: StepSpec, state_sharding=None):
    """Zero accumulators (the model's shapes, and ``"output_bias"``: (R, k)) and the optimizer state.

    Args:
      spec: the run's [`StepSpec`][infinite_width.limits.adam_limit.step.StepSpec].
      state_sharding: ``state_sharding(ndim)``, the sharding of the model's accumulators, or None.
    """
    place = (lambda x: jax.device_put(x, state_sharding(x.ndim))) if state_sharding is not None else (lambda x: x)
    model = spec.model
    accumulated = {name: place(jnp.zeros(shape, jnp.float32)) for name, shape in model.accumulator_shapes().items()}
    if spec.output_coefficient != 0.0:
        accumulated[OUTPUT_BIAS] = jnp.zeros((model.replicas, model.out_dim), jnp.float32)
    # optax's state mirrors the gradients (shapes and shardings).
    return accumulated, spec.optimizer.direction(eps_scale=1.0).init(accumulated)


def _step(spec: StepSpec, t, accumulated, opt_state, fields, x_all, f0, y_train, batch_indices):
    rows = jnp.arange(spec.n_train) if spec.full_batch else batch_indices[t]
    f_rows = _predict_rows(spec, fields, x_all, f0, accumulated, rows)
    chi = jax.vmap(lambda f: losses.chi(spec.loss, f, y_train[rows]))(f_rows)
    grads = _gradients(spec, fields, x_all, rows, chi)
    if spec.output_coefficient != 0.0:
        grads[OUTPUT_BIAS] = jnp.sum(chi, axis=1)
    directions, opt_state = spec.optimizer.direction(eps_scale=1.0).update(grads, opt_state)
    # A_t = sum_s lr_s Q_s: a schedule scales step t's update by its factor (docs/theory.md, section 3).
    schedule = spec.optimizer.schedule
    rate = spec.optimizer.lr if schedule.is_constant else spec.optimizer.lr * schedule(t)
    accumulated = {name: accumulated[name] + rate * directions[name] for name in accumulated}
    # A gradient whose square overflows float32 would make Adam's second moment Inf and its direction 0:
    # a silent stall, not a result. It counts as a divergence, like non-finite predictions. (Only Adam
    # squares gradients; the other optimizers' huge but finite predictions are flagged by solve's losses.)
    finite = jnp.all(jnp.isfinite(f_rows))
    if spec.optimizer.name == "adam":
        for grad in jax.tree_util.tree_leaves(grads):
            finite = finite & jnp.all(jnp.isfinite(grad * grad))
    return accumulated, opt_state, finite


@functools.lru_cache(maxsize=64)
def compiled_advance(spec: StepSpec):
    """``advance(fields, x_all, f0, y, batch_indices, accumulated, opt_state, bad, start, stop)``.

    Runs steps [start, stop) in a ``lax.while_loop``, stopping at the first
    step whose batch predictions or normalized gradients (squared) are not
    finite (``bad`` is then that step).

    Args:
      spec: the run's [`StepSpec`][infinite_width.limits.adam_limit.step.StepSpec] (cached: one compilation per spec).
    """

    def advance(fields, x_all, f0, y_train, batch_indices, accumulated, opt_state, bad, start, stop):
        def running(carry):
            t, _, _, bad = carry
            return (t < stop) & (bad < 0)

        def body(carry):
            t, accumulated, opt_state, bad = carry
            new_accumulated, new_state, finite = _step(spec, t, accumulated, opt_state, fields, x_all, f0, y_train,
                                                       batch_indices)
            # Keep the carry's dtypes: with x64 enabled, float64 targets or rates would promote it.
            same = functools.partial(jax.tree_util.tree_map, lambda new, old: new.astype(old.dtype))
            return t + 1, same(new_accumulated, accumulated), same(new_state, opt_state), jnp.where(finite, bad, t)

        _, accumulated, opt_state, bad = jax.lax.while_loop(running, body, (start, accumulated, opt_state, bad))
        return accumulated, opt_state, bad

    return jax.jit(advance, donate_argnums=(5, 6))


@functools.lru_cache(maxsize=64)
def compiled_predict(spec: StepSpec):
    """``predict(fields, x_all, f0, accumulated)``: ``f_t`` on all P points, (R, P, k).

    Args:
      spec: the run's [`StepSpec`][infinite_width.limits.adam_limit.step.StepSpec] (cached: one compilation per spec).
    """

    def predict(fields, x_all, f0, accumulated):
        return _predict_rows(spec, fields, x_all, f0, accumulated, jnp.arange(spec.model.points))

    return jax.jit(predict)


def optimizer_state_numbers(optimizer: Optimizer) -> int:
    """Numbers of optimizer state per gradient entry (optax: Adam's mu and nu, momentum's trace).

    Args:
      optimizer: an `infinite_width.optim.Optimizer` (sgd, momentum, adam or sign).
    """
    return {"sgd": 0, "momentum": 1, "adam": 2, "sign": 0}[optimizer.name]

