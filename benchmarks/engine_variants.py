"""Prototype variants of the Adam-like limit's Monte Carlo engine, for the measurements of issue 22.

**Prototype, not API.** It builds on module-level functions of
``infinite_width.limits.adam_limit`` that are not in the package's ``__all__``
(``sampling.mlp_field_roots``, ``planning.default_block_rows``, ``features.ReplicaRoots``,
``fields.draw_fields``, ``fields.field_layout``, ``fields.first_layer_root``,
``step.StepSpec``, ``step.initial_state``, ``step.compiled_advance``,
``step.compiled_predict``, ``terms.limit_terms``, ``terms.layer_scales``), so that
the variants draw and step exactly as the engine does and differ only where
they are meant to. The variants that pay are to be implemented in the library
(the design note of issue 22); then this module goes.

What it varies (docs/theory.md, section 7):

* the roots: exact (``rank=None``), the leading ``rank`` pivoted Cholesky
  columns alone (``features=0``), or with ``features`` random features of the
  residual, drawn per replica (the engine today), per chunk of
  ``feature_chunk`` samples inside a replica, or once for every replica
  (``shared_features``: a diagnostic; its error bars miss the features'
  variance);
* antithetic pairs (``antithetic="h1"``: input weights ``(w, -w)``; ``"h"``:
  every pre-activation field negated, the other fields shared by the pair; the
  backward fields need no pairing, every term is even in them);
* orthogonal input weights (``orthogonal_input=True``: the input weights of each
  block of ``d + 1`` samples are orthogonal, with chi-distributed norms);

and [`simulate_with_control_variates`] runs the engine's own steps one at a time
and keeps what the first-moment control variate needs (docs/theory.md,
section 7, "Variance reduction"): per sample the accumulated first moment
``L = sum_s lr_s m_hat_s`` (raw) and ``sum_s lr_s m_hat_s / sigma_s`` (normalized
by the replica's RMS second moment at step s, ``sigma_s = sqrt(mean_m v_hat_s) +
eps``), and their closed-form means ``coef Theta_term (sum_s w_s mu_s)``, with
``mu_s`` the exponential average of the replica's own ``chi`` and
``Theta_term`` the term's kernel (``B^l S^{l-1}``, ``B^l S^0``, ``B^l``, ``S^L``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

import infinite_width as iw
from infinite_width import losses
from infinite_width.limits.adam_limit.planning import default_block_rows
from infinite_width.limits.adam_limit.sampling import mlp_field_roots
from infinite_width.limits.adam_limit.features import ReplicaRoots
from infinite_width.limits.adam_limit.fields import draw_fields, field_layout, first_layer_root
from infinite_width.limits.adam_limit.step import FieldModel, StepSpec, compiled_advance, compiled_predict, initial_state
from infinite_width.limits.adam_limit.terms import layer_scales, limit_terms

__all__ = ["Variant", "parse_variant", "Drawn", "replica_roots", "draw", "simulate", "step_spec", "term_kernels",
           "ControlVariateRun", "simulate_with_control_variates", "relative_variance", "key_for"]

#: Key offsets of this module's own draws (chunk features, orthogonal weights), away from the engine's.
_CHUNK_FEATURES, _ORTHOGONAL = 7001, 7002


@dataclasses.dataclass(frozen=True)
class Variant:
    """How the fields are drawn (see the module docstring).

    Attributes:
      rank: leading pivoted Cholesky columns kept of a root whose numerical rank exceeds
        ``rank + features``; None: exact roots.
      features: random features of the residual per feature set (0: plain truncation).
      feature_chunk: samples that share one feature set; None: the whole replica (the engine today).
      shared_features: one feature set for every replica (diagnostic).
      antithetic: None, ``"h1"`` or ``"h"``: samples come in pairs with negated input weights / every
        pre-activation field.
      orthogonal_input: orthogonal input weights in blocks of ``d + 1`` samples.
    """

    rank: Optional[int] = 512
    features: int = 512
    feature_chunk: Optional[int] = None
    shared_features: bool = False
    antithetic: Optional[str] = None
    orthogonal_input: bool = False

    def describe(self) -> str:
        roots = "exact" if self.rank is None else f"rank {self.rank} + {self.features} features"
        if self.rank is not None and self.features:
            roots += (" shared by every replica" if self.shared_features else
                      f" per {self.feature_chunk} samples" if self.feature_chunk else " per replica")
        extras = [f"antithetic {self.antithetic}"] * bool(self.antithetic) + ["orthogonal w"] * self.orthogonal_input
        return ", ".join([roots] + extras)


def parse_variant(name: str) -> Variant:
    """A [`Variant`] from its name: ``exact`` or ``RANK:FEATURES``, then modifiers ``/chunk=C`` (features per
    C samples), ``/shared`` (one feature set for all replicas), ``/anti=h1`` or ``/anti=h`` (antithetic
    pairs), ``/orth`` (orthogonal input weights); e.g. ``512:512/chunk=1024``."""
    roots, *modifiers = name.split("/")
    if roots == "exact":
        options = dict(rank=None, features=0)
    else:
        rank, features = (int(part) for part in roots.split(":"))
        options = dict(rank=rank, features=features)
    for modifier in modifiers:
        option, _, value = modifier.partition("=")
        if option == "chunk":
            options["feature_chunk"] = int(value)
        elif option == "shared":
            options["shared_features"] = True
        elif option == "anti":
            options["antithetic"] = value
        elif option == "orth":
            options["orthogonal_input"] = True
        else:
            raise ValueError(f"unknown variant modifier {modifier!r} in {name!r}")
    return Variant(**options)


@dataclasses.dataclass(frozen=True)
class Drawn:
    """Fields of R replicas of C samples, laid out as the engine stores them, and what the steps need.

    Attributes:
      fields: ``{"h<l>": (P, R, C), "z<l>": (P, R, k, C), "zeta": (R, k, C), "coordinate": (R, C)}``.
      layout: their ``FieldLayout``.
      terms: the limit's terms; output_coefficient: the exact output-bias term's coefficient.
      seconds: wall time of the draw (roots, features and fields).
    """

    fields: Dict[str, jax.Array]
    layout: object
    terms: tuple
    output_coefficient: float
    seconds: float


def _chunks(variant: Variant, per_replica: int):
    """(samples drawn per replica, samples per feature set, feature sets per replica)."""
    drawn = per_replica // (2 if variant.antithetic else 1)
    chunk = min(variant.feature_chunk or drawn, drawn)
    if drawn % chunk:
        raise ValueError(f"feature_chunk ({chunk}) must divide the samples drawn per replica ({drawn})")
    return drawn, chunk, drawn // chunk


def _samples_key(key):
    """The engine's samples key for ``key`` (an int seed or a jax key)."""
    return jax.random.fold_in(jax.random.PRNGKey(key) if isinstance(key, int) else key, 1)


def replica_roots(arch, x_all, variant: Variant, *, key, replicas: int, per_replica: int, linear: bool = False):
    """``roots_for(drawn replica) -> {field: (P, r') root}`` for the ``replicas * sets`` drawn replicas (one per
    feature set: a replica, a chunk of one, or the same for all), as ``fields.draw_fields`` takes it.

    Args:
      arch: the MLP.
      x_all: (P, d) training rows, then test rows.
      variant: how to draw.
      key: int seed or jax key (the engine's ``key``).
      replicas: R.
      per_replica: C.
      linear: an SGD or momentum optimizer.

    Returns:
      The callable.
    """
    x_all = np.asarray(x_all, np.float32)
    terms, _ = limit_terms(arch, False, linear=linear)
    _, chunk, groups = _chunks(variant, per_replica)
    layout = field_layout(terms, arch.depth, arch.out_dim, x_all.shape[0], replicas * groups, chunk)
    W_std, b_std = layer_scales(arch)
    samples_key = _samples_key(key)
    exact = _roots(arch, x_all, layout, variant.rank, variant.features)
    first_layer = first_layer_root(x_all, W_std[0], b_std[0])

    def roots(feature_key, count):
        return ReplicaRoots(exact, first_layer, variant.rank, variant.features, W_std, b_std, arch.activations,
                            feature_key, count)

    if variant.shared_features:
        shared = roots(samples_key, 1)(0)
        return lambda replica: shared
    if groups == 1:
        return roots(samples_key, replicas)  # the engine's per-replica features
    chunk_key = jax.random.fold_in(samples_key, _CHUNK_FEATURES)
    return lambda replica: roots(jax.random.fold_in(chunk_key, replica), 1)(0)


def draw(arch, x_all, *, key, replicas: int, per_replica: int, variant: Variant, linear: bool = False) -> Drawn:
    """The fields of ``replicas`` independent replicas of ``per_replica`` samples drawn as ``variant`` says.

    With the default ``Variant()`` the draws are the engine's for the same key and sizes.

    Args:
      arch: the MLP.
      x_all: (P, d) training rows, then test rows.
      key: int seed or jax key (the engine's ``key``).
      replicas: R.
      per_replica: C (even with antithetic pairs).
      variant: how to draw.
      linear: an SGD or momentum optimizer (squared coefficients).

    Returns:
      The [`Drawn`] fields.
    """
    start = time.perf_counter()
    x_all = np.asarray(x_all, np.float32)
    terms, output_coefficient = limit_terms(arch, False, linear=linear)
    _, chunk, groups = _chunks(variant, per_replica)
    # Each feature set's samples are drawn as a replica of their own, then the chunks of a replica are joined.
    roots_for = replica_roots(arch, x_all, variant, key=key, replicas=replicas, per_replica=per_replica,
                              linear=linear)
    layout = field_layout(terms, arch.depth, arch.out_dim, x_all.shape[0], replicas * groups, chunk)
    W_std, b_std = layer_scales(arch)
    samples_key = _samples_key(key)
    fields = draw_fields(samples_key, roots_for, layout, jnp.float32, input_dim=x_all.shape[1],
                         readout_scale=W_std[-1])
    if variant.orthogonal_input:
        fields["h1"] = _orthogonal_first_layer(first_layer_root(x_all, W_std[0], b_std[0]),
                                               jax.random.fold_in(samples_key, _ORTHOGONAL), replicas * groups, chunk)
    fields = _joined(fields, replicas, groups)
    if variant.antithetic:
        fields = _with_antithetic_pairs(fields, variant.antithetic)
    fields = jax.block_until_ready(fields)
    layout = field_layout(terms, arch.depth, arch.out_dim, x_all.shape[0], replicas, per_replica)
    return Drawn(fields, layout, terms, output_coefficient, time.perf_counter() - start)


_ROOTS: dict = {}


def _roots(arch, x_all, layout, rank, features):
    """``sampling.mlp_field_roots``, computed once per data, architecture and root sizes (they do not depend on the
    key: the calls of a measurement share them)."""
    key = (x_all.shape, hash(x_all.tobytes()), arch.name, tuple(arch.scales), rank, features)
    if key not in _ROOTS:
        _ROOTS.clear()  # one problem at a time: the float64 roots are P x P
        _ROOTS[key] = mlp_field_roots(arch, x_all, layout, rank, features)
    return _ROOTS[key]


def _joined(fields, replicas: int, groups: int):
    """Fields of ``replicas * groups`` drawn replicas as ``replicas`` replicas (chunks of one replica joined)."""
    if groups == 1:
        return fields
    joined = {}
    for name, value in fields.items():
        if name == "coordinate":  # (R G, c)
            joined[name] = value.reshape(replicas, -1)
        elif name == "zeta":  # (R G, k, c) -> (R, k, G c)
            k, c = value.shape[1:]
            joined[name] = value.reshape(replicas, groups, k, c).transpose(0, 2, 1, 3).reshape(replicas, k, -1)
        elif name[0] == "z":  # (P, R G, k, c) -> (P, R, k, G c)
            p, _, k, c = value.shape
            joined[name] = value.reshape(p, replicas, groups, k, c).transpose(0, 1, 3, 2, 4).reshape(p, replicas, k, -1)
        else:  # (P, R G, c)
            joined[name] = value.reshape(value.shape[0], replicas, -1)
    return joined


def _with_antithetic_pairs(fields, which: str):
    """Every sample followed by its partner: ``h1`` (or every ``h``) negated, the other fields shared."""
    def negated(name):
        return name == "h1" if which == "h1" else name[0] == "h"

    return {name: jnp.concatenate([value, -value if negated(name) else value], axis=-1)
            for name, value in fields.items()}


def _orthogonal_first_layer(first_layer, key, replicas: int, per_replica: int):
    """``h^1`` (P, R, C) from input weights that are orthogonal within each block of ``d + 1`` samples, each
    with the norm of a ``d + 1``-dimensional normal vector (so every sample is still exactly N(0, I))."""
    dim = first_layer.shape[1]
    blocks = -(-per_replica // dim)

    def replica_weights(replica_key):
        gaussian = jax.random.normal(replica_key, (blocks, dim, dim))
        q, r = jnp.linalg.qr(gaussian)
        q = q * jnp.sign(jnp.diagonal(r, axis1=1, axis2=2))[:, None, :]  # Haar-distributed
        norms = jnp.linalg.norm(jax.random.normal(jax.random.fold_in(replica_key, 1), (blocks, dim, dim)), axis=1)
        return (q * norms[:, None, :]).transpose(1, 0, 2).reshape(dim, -1)[:, :per_replica]  # (d + 1, C)

    weights = jnp.stack([replica_weights(jax.random.fold_in(key, replica)) for replica in range(replicas)], axis=1)
    return jnp.einsum("pd,drc->prc", jnp.asarray(first_layer, jnp.float32), weights,
                      precision=jax.lax.Precision.HIGHEST)


# --------------------------------------------------------------------------
# Steps.


def step_spec(arch, optimizer, drawn: Drawn, n_train: int, rows: np.ndarray) -> StepSpec:
    """The engine's ``StepSpec`` for ``drawn`` fields and the (steps, B) training ``rows`` of every step."""
    full_batch = rows.shape[1] == n_train and bool(np.all(rows == np.arange(n_train)))
    block = default_block_rows(drawn.layout.replicas * drawn.layout.per_replica, arch.out_dim)
    return StepSpec(FieldModel(drawn.terms, drawn.layout, arch.activations), drawn.output_coefficient, optimizer,
                    "mse", n_train, full_batch, min(block, drawn.layout.points))


def _start(spec, x_all, y_train, rows):
    accumulated, opt_state = initial_state(spec)
    inputs = (jnp.asarray(x_all, jnp.float32), jnp.zeros((x_all.shape[0], spec.model.out_dim), jnp.float32),
              jnp.asarray(y_train, jnp.float32), jnp.asarray(rows, jnp.int32))
    return inputs, accumulated, opt_state


def simulate(arch, optimizer, drawn: Drawn, x_all, y_train, rows, record) -> np.ndarray:
    """The engine's steps on ``drawn`` fields (centered model, MSE): (R, T, P, k) predictions at ``record``.

    Args:
      arch: the MLP.
      optimizer: an ``infinite_width.optim`` optimizer.
      drawn: the fields ([`draw`]).
      x_all: (P, d) training rows, then test rows.
      y_train: (N, k) targets.
      rows: (steps, B) training rows of every step.
      record: increasing step numbers in [0, steps].

    Returns:
      The replica predictions on all P points.
    """
    spec = step_spec(arch, optimizer, drawn, y_train.shape[0], rows)
    (x, f0, y, batches), accumulated, opt_state = _start(spec, x_all, y_train, rows)
    advance, predict = compiled_advance(spec), compiled_predict(spec)
    bad, t, records = jnp.asarray(-1, jnp.int32), 0, []
    for stop in record:
        if stop > t:
            accumulated, opt_state, bad = advance(drawn.fields, x, f0, y, batches, accumulated, opt_state, bad,
                                                  jnp.int32(t), jnp.int32(stop))
            t = stop
        records.append(np.asarray(predict(drawn.fields, x, f0, accumulated)))
    if int(bad) >= 0:
        raise FloatingPointError(f"predictions became NaN or Inf at step {int(bad)}")
    return np.stack(records, axis=1)


# --------------------------------------------------------------------------
# The first-moment control variate.


def term_kernels(arch, terms, x_all, n_train: int) -> Dict[str, np.ndarray]:
    """``coef * Theta_term`` (P, N) of every term: ``E[U_c(xi) V(xi) U_c(x) V(x)]`` times its coefficient.

    ``U = u^l`` gives ``B^l``; ``V`` gives ``S^{l-1}`` (a hidden activation), ``S^0`` (the input
    coordinate, ``E_b[x_b x'_b] = x.x'/d``) or 1 (a bias); the readout is ``S^L``.
    """
    layers = iw.kernels.layerwise(arch, x_all, x_all[:n_train], dtype="float64")
    kernels = {}
    for term in terms:
        backward = 1.0 if term.u_layer is None else np.asarray(layers.B[term.u_layer - 1])
        forward = (np.asarray(layers.S[0]) if term.v == "x" else 1.0 if term.v is None
                   else np.asarray(layers.S[term.v]))
        kernels[term.name] = term.coefficient * np.broadcast_to(backward * forward, (x_all.shape[0], n_train))
    return kernels


@dataclasses.dataclass(frozen=True)
class ControlVariateRun:
    """What [`simulate_with_control_variates`] records, at each recorded step (T of them).

    Attributes:
      predictions: (R, T, P, k) the plain replica predictions (the engine's).
      differences: ``{"raw" | "normalized": {term: (R, T, P, k)}}``: ``mean_m Y_m - E[Y]`` of each term's
        control variate, so that ``predictions + sum_term a_term differences[term]`` is the controlled
        estimate for any coefficients ``a`` (its mean is the plain one's up to O(1/C)).
      seconds: wall seconds of ``steps`` (the engine's steps alone), ``chi`` (this prototype recomputing
        each step's batch predictions for its chi, which the engine's step has already: free in the
        library), ``bookkeeping`` (per step: the first-moment sums per sample and the chi averages) and
        ``recorded`` (per recorded step: each term's sample mean of Y and its closed-form mean).
    """

    predictions: np.ndarray
    differences: Dict[str, Dict[str, np.ndarray]]
    seconds: Dict[str, float]


def simulate_with_control_variates(arch, optimizer, drawn: Drawn, x_all, y_train, rows, record,
                                   in_step=None) -> ControlVariateRun:
    """[`simulate`], one step at a time, keeping the first-moment control variates of every term.

    Adam only (``optimizer.name == "adam"``, constant schedule or not). Arguments as [`simulate`], and

    Args:
      in_step: None (the steps are the engine's), or ``t -> {term: a}``: the coefficients of the normalized
        control variates with which each step's batch predictions, hence its ``chi``, are corrected (one
        replica only: the correction enters through ``f_0``, which the engine's step shares by replicas).

    Returns:
      The [`ControlVariateRun`].
    """
    if optimizer.name != "adam":
        raise ValueError(f"the first-moment control variate is defined for Adam, not {optimizer.name!r}")
    if in_step is not None and drawn.layout.replicas != 1:
        raise ValueError("in_step corrections need one replica per call")
    spec = step_spec(arch, optimizer, drawn, y_train.shape[0], rows)
    (x, f0, y, batches), accumulated, opt_state = _start(spec, x_all, y_train, rows)
    advance, predict = compiled_advance(spec), compiled_predict(spec)
    batch_predict, gather = _batch_prediction(spec, drawn)
    kernels = {name: jnp.asarray(value, jnp.float32) for name, value in
               term_kernels(arch, drawn.terms, np.asarray(x_all, np.float32), y_train.shape[0]).items()}
    R, k, n = drawn.layout.replicas, drawn.layout.out_dim, y_train.shape[0]
    names = [term.name for term in drawn.terms]
    zero_per_sample = {name: jnp.zeros_like(value) for name, value in accumulated.items()}
    moment = {kind: dict(zero_per_sample) for kind in ("raw", "normalized")}  # L per sample
    chi_average = jnp.zeros((R, n, k))  # mu_s of chi (the EMA Adam applies to g, in chi space)
    chi_sum = {"raw": jnp.zeros((R, n, k)), "normalized": {name: jnp.zeros((R, n, k)) for name in names}}
    differences = {kind: {name: [] for name in names} for kind in moment}
    records, bad = [], jnp.asarray(-1, jnp.int32)
    seconds = dict(steps=0.0, chi=0.0, bookkeeping=0.0, recorded=0.0)
    b1, b2, eps = optimizer.b1, optimizer.b2, optimizer.eps
    t = 0
    for stop in record:
        while t < stop:
            clock = time.perf_counter()
            batch = batches[t] if not spec.full_batch else jnp.arange(n)
            step_f0 = f0
            if in_step is not None:  # f_0 + sum_terms a (mean Y - E[Y]) on the batch rows: the step sees f_cv
                coefficients = in_step(t)
                correction = sum(
                    a * (f0[batch][None] - batch_predict(*gather(batch, x, f0), {
                        other: (moment["normalized"][name] if other == name else zero_per_sample[other])
                        for other in accumulated})
                         - jnp.einsum("bn,rnk->rbk", kernels[name][batch], chi_sum["normalized"][name]))
                    for name, a in coefficients.items())
                step_f0 = f0.at[batch].add(correction[0])
            f_rows = batch_predict(*gather(batch, x, step_f0), accumulated)  # (R, B, k), before step t
            chi = jax.vmap(lambda f: losses.chi("mse", f, y[batch]))(f_rows)
            seconds["chi"] += _block(chi, clock)
            clock = time.perf_counter()
            accumulated, opt_state, bad = advance(drawn.fields, x, step_f0, y, batches, accumulated, opt_state, bad,
                                                  jnp.int32(t), jnp.int32(t + 1))
            seconds["steps"] += _block(bad, clock)
            clock = time.perf_counter()
            rate = optimizer.lr * (1.0 if optimizer.schedule.is_constant else float(optimizer.schedule(t)))
            first, second = 1.0 / (1.0 - b1 ** (t + 1)), 1.0 / (1.0 - b2 ** (t + 1))
            chi_average = b1 * chi_average
            chi_average = chi_average.at[:, batch].add((1.0 - b1) * chi)
            chi_sum["raw"] = chi_sum["raw"] + rate * first * chi_average
            for name in names:
                mu, nu = opt_state.mu[name], opt_state.nu[name]
                sigma = jnp.sqrt(jnp.mean(nu, axis=-1) * second) + eps  # (R,) or (R, k) for the readout
                moment["raw"][name] = moment["raw"][name] + rate * first * mu
                moment["normalized"][name] = moment["normalized"][name] + rate * first * mu / sigma[..., None]
                scale = sigma[:, None, :] if sigma.ndim == 2 else sigma[:, None, None]
                chi_sum["normalized"][name] = chi_sum["normalized"][name] + rate * first * chi_average / scale
            seconds["bookkeeping"] += _block((chi_average, moment, chi_sum), clock)
            t += 1
        records.append(np.asarray(predict(drawn.fields, x, f0, accumulated)))
        clock = time.perf_counter()
        for kind in moment:
            for name in names:
                only = {other: (moment[kind][name] if other == name else zero_per_sample[other])
                        for other in accumulated}
                sample_mean = np.asarray(f0)[None] - np.asarray(predict(drawn.fields, x, f0, only))
                chi_total = chi_sum["raw"] if kind == "raw" else chi_sum["normalized"][name]
                expected = np.asarray(jnp.einsum("pn,rnk->rpk", kernels[name], chi_total,
                                                 precision=jax.lax.Precision.HIGHEST))
                differences[kind][name].append(sample_mean - expected)
        seconds["recorded"] += time.perf_counter() - clock
    if int(bad) >= 0:
        raise FloatingPointError(f"predictions became NaN or Inf at step {int(bad)}")
    return ControlVariateRun(
        np.stack(records, axis=1),
        {kind: {name: np.stack(values, axis=1) for name, values in per_term.items()}
         for kind, per_term in differences.items()},
        seconds)


def _block(value, clock) -> float:
    jax.block_until_ready(value)
    return time.perf_counter() - clock


def _batch_prediction(spec: StepSpec, drawn: Drawn):
    """(predict on B rows, gather): the engine's prediction of f on the rows of one batch, from the stored fields'
    rows of that batch (``gather(rows, x_all, f0) -> (fields, x, f0)``)."""
    rows_count = spec.n_train if spec.full_batch else None

    def gather(rows, x_all, f0):
        fields = {name: (jnp.take(value, rows, axis=0) if name[0] in "hz" and name != "zeta" else value)
                  for name, value in drawn.fields.items()}
        return fields, x_all[rows], f0[rows]

    def predict_for(batch_size):
        layout = dataclasses.replace(drawn.layout, points=batch_size)
        return compiled_predict(dataclasses.replace(spec, model=dataclasses.replace(spec.model, layout=layout),
                                                    block_rows=min(spec.block_rows, batch_size)))

    cache = {}

    def predict(fields, x, f0, accumulated):
        size = rows_count or x.shape[0]
        if size not in cache:
            cache[size] = predict_for(size)
        return cache[size](fields, x, f0, accumulated)

    return predict, gather


def relative_variance(replica_predictions: np.ndarray, scale: float) -> float:
    """Variance across replicas (ddof 1), averaged over points and outputs, over ``scale`` (a mean square)."""
    return float(np.mean(np.var(replica_predictions, axis=0, ddof=1)) / scale)


def key_for(*parts: int) -> int:
    """One int seed for a tuple of small non-negative ints (distinct tuples give distinct seeds)."""
    seed = 0
    for part in parts:
        seed = seed * 1_000_003 + int(part) + 1
    return seed % (2**31 - 1)


