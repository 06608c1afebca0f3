"""Monte Carlo engine of the Adam-like infinite-width limit of MLPs (docs/theory.md, sections 5 and 7).

[`simulate`][infinite_width.limits.adam_limit.simulate] trains the limit with any optimizer of
[`infinite_width.optim`][] and any loss of [`infinite_width.losses`][], full batch or minibatches. The
terms it estimates are those of [`terms`][infinite_width.limits.adam_limit.terms]; M
samples are split into R independent replicas of C = M / R samples (each a
full run), giving the mean and standard error of every prediction.

How (docs/theory.md, section 7):

1. *Fields* ([`fields`][infinite_width.limits.adam_limit.fields]): per sample, the
   pre-activations ``h^l`` of every layer and the backward fields ``z^l_c``
   (l < L) on all P = N_train + N_test points, drawn once. ``h^1`` comes
   exactly from input weights (``K^1`` has rank d + 1), ``z^L`` is k numbers
   per sample (``B^{L+1} = 1``), ``phi(h)`` and ``phi'(h)`` both come from
   the stored ``h``. The other fields come from pivoted Cholesky roots of
   their P x P kernels ([`roots`][infinite_width.limits.adam_limit.roots]), exact, or,
   above ``rank + features`` columns, the leading ``rank`` columns plus
   per-replica random features of the residual, which keep the covariance
   right in expectation ([`features`][infinite_width.limits.adam_limit.features]).
2. *Lazy steps* ([`step`][infinite_width.limits.adam_limit.step]): the network is
   lazy, so ``f_t = f_0 - sum_terms coef mean_m U V A_m`` with ``A_m`` each
   sample's accumulated update; a step reads the fields on its batch rows
   only. Predictions on all points are computed at recorded steps. This is
   the eager algorithm (every step moving f on all points) reordered: the
   same draws give the same predictions up to float32 round-off.

Cost model (docs/theory.md, section 7; L hidden layers, k outputs, d inputs,
P = N_train + N_test points, B batch rows, M samples in R replicas, T steps
of which T_rec recorded, r = ``rank``, n = ``features``, r' = min(q, r + n + 1)
columns per root of numerical rank q <= P, s optimizer-state numbers per entry
(Adam 2, momentum 1, SGD and sign 0); numbers are float32, the stored fields
bfloat16 with ``storage_dtype="bfloat16"``):

* setup time: layer kernels O(P^2 (d + L)); roots (float64 LAPACK on the
  host, 2 (L - 1) kernels): exact O(P^3 / 3) each, truncated O(P r'^2) each
  plus one complete O(P^3 / 3) factor per feature source; features
  O(R P (q + r) n) per truncated root; fields O(M P (d + 1 + (L - 1)(1 + k) r'))
  multiply-adds plus O(M (d + 1 + (L - 1)(1 + k) r')) normal draws;
* time of the T steps: O(T M B (L + (L - 1) k + k)), plus
  O(T_rec M P (L + (L - 1) k + k)) for the predictions on all points;
* memory (the largest of three phases, see
  [`memory`][infinite_width.limits.adam_limit.memory]): stored fields
  ``M P (L + (L - 1) k)`` numbers (+ ``M (k + 1)``), accumulators and
  optimizer state O(M (2 L + k)(s + 4)), step temporaries
  O(M block_rows (3 L + 2 (L - 1) k)); float32 roots O(P r' (L - 1))
  (R copies when truncated); while the roots are computed, P^2 float64 per
  field kernel (O(P^2 L)); while the fields are drawn, one replica's latent
  normals O((d + 1 + (L - 1)(1 + k) r') M / R).
  [`estimate_memory`][infinite_width.limits.adam_limit.estimate_memory] counts
  every part and [`simulate`][infinite_width.limits.adam_limit.simulate] refuses a run that does not fit, naming a
  sample count that does.

Measured (docs/BENCHMARKS.md, section "Adam-like limit"; 2-core CPU, MNIST
10,000 + 2,000, L = 2, k = 10, M = 16,384 in 4 replicas, B = 128, T = 1,000,
default roots): 175 s of wall time on the idle machine for the whole call
(setup 118 s, of which drawing the fields 57 s and the roots 49 s; 47 ms per
step), peak memory 10.6 GiB against an estimate of 10.0 GiB, relative Monte
Carlo error of the test predictions 0.081.

Scale-out: the sample axis is sharded over ``devices`` with a one-axis
``jax.sharding.Mesh`` (fields, accumulators and optimizer state split by
sample; sums over samples become cross-device reductions); the same key gives
the same draws on any number of devices. Across several hosts, start every
process with ``jax.distributed.initialize(coordinator_address, num_processes,
process_id)`` and call [`simulate`][infinite_width.limits.adam_limit.simulate] with the same arguments on each, with
``devices=jax.devices()`` (all hosts' devices): every process then draws and
steps its own samples, and the recorded predictions (replicated) are read on
each host. The host-side parts (layer kernels, LAPACK roots) are repeated on
every host.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from infinite_width import losses
from infinite_width._src.checks import (
    as_key,
    check_batch_indices,
    check_int,
    check_record_list,
    check_targets,
    validate_inputs,
)
from infinite_width._src.numerics import precision_scope
from infinite_width._src.progress import progress_bar
from infinite_width._src.rng import run_keys
from infinite_width.architectures import Architecture
from infinite_width.limits.adam_limit.features import DEFAULT_FEATURES, DEFAULT_RANK, ReplicaRoots, feature_sources
from infinite_width.limits.adam_limit.fields import draw_fields, field_layout, first_layer_root
from infinite_width.limits.adam_limit.memory import MemoryEstimate, available_memory, check_memory, estimate_memory
from infinite_width.limits.adam_limit.roots import field_kernels, partial_pivoted_root, pivoted_root
from infinite_width.limits.adam_limit.step import StepSpec, compiled_advance, compiled_predict, initial_state
from infinite_width.limits.adam_limit.terms import layer_scales, limit_terms
from infinite_width.optim import Optimizer

__all__ = ["simulate", "LimitResult", "STORAGE_DTYPES"]

STORAGE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_SAMPLES_AXIS = "samples"


@dataclasses.dataclass(frozen=True)
class LimitResult:
    """Predictions of the Adam-like limit with Monte Carlo error bars.

    Shapes (T recorded steps, R replicas, N train / Nt test points, k outputs):

    Attributes:
      steps: (T,) the recorded step numbers (0 = before training).
      train_predictions: (T, N, k) the mean over replicas on the training points.
      test_predictions: (T, Nt, k) the mean over replicas on the test points.
      train_stderr: (T, N, k) standard error of that mean (replica standard deviation / sqrt(R)).
      test_stderr: (T, Nt, k) standard error of the test mean.
      replica_train_predictions: (R, T, N, k), each replica a full run with samples / R samples.
      replica_test_predictions: (R, T, Nt, k).
      samples: total Monte Carlo samples M.
      replicas: independent replicas R.
      block_rows: points per block in a step.
      ranks: columns of each field's root (``{"h2": r, "z1": r, ...}``).
      residual_fractions: the fraction of each field's variance (trace) that
        a truncated root drops (0 for exact roots).
      storage_dtype: dtype of the stored fields.
      devices: number of devices the samples were sharded over.
      memory: the [`MemoryEstimate`][infinite_width.limits.adam_limit.MemoryEstimate] checked before allocating.
      setup_time_s: seconds of the kernels, roots and sampling.
      wall_time_s: seconds of the whole call.
      timings: seconds of each stage: ``roots`` (layer kernels and their
        pivoted Cholesky factors), ``features`` (per-replica roots),
        ``fields`` (drawing), ``steps`` (the step loop) and ``predictions``
        (all points at recorded steps); compilation is in the stage that
        first runs a shape: ``first_step_block`` is the first call of the
        step loop (``first_step_block_steps`` steps and the compilation).
      optimizer: the [`Optimizer`][infinite_width.optim.Optimizer] simulated.
      loss: the loss simulated.
      readout_only: whether only the readout was trained.
    """

    steps: np.ndarray
    train_predictions: np.ndarray
    test_predictions: np.ndarray
    train_stderr: np.ndarray
    test_stderr: np.ndarray
    replica_train_predictions: np.ndarray
    replica_test_predictions: np.ndarray
    samples: int
    replicas: int
    block_rows: int
    ranks: Dict[str, int]
    residual_fractions: Dict[str, float]
    storage_dtype: str
    devices: int
    memory: MemoryEstimate
    setup_time_s: float
    wall_time_s: float
    timings: Dict[str, float]
    optimizer: Optimizer
    loss: str
    readout_only: bool


# --------------------------------------------------------------------------
# Checks and the plan of a run.


@dataclasses.dataclass(frozen=True)
class _Problem:
    """Checked inputs: x_all (P, d) train rows first, targets, f_0 (P, k), rows (steps, B), record steps."""

    x_all: np.ndarray
    y_train: np.ndarray
    f0: np.ndarray
    n_train: int
    rows: np.ndarray
    full_batch: bool
    record_steps: np.ndarray


def _check_choices(arch, optimizer, loss, readout_only, storage_dtype):
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if not arch.is_mlp or arch.depth < 1:
        raise ValueError(
            f"the Adam-limit engine handles MLPs with at least one hidden layer "
            f"(alternating Dense/Activation layers), not {arch.name!r}"
        )
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"unknown optimizer {optimizer!r}; build one with infinite_width.optim (sgd, momentum, adam, sign)")
    losses.get(loss)
    if not isinstance(readout_only, (bool, np.bool_)):
        raise TypeError(f"readout_only must be True or False, got {readout_only!r}")
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage_dtype {storage_dtype!r}; expected one of {tuple(STORAGE_DTYPES)}")


def _problem(arch, x_train, y_train, x_test, f0_train, f0_test, key, steps, batch_size, batch_indices, record):
    with precision_scope("float32"):
        x_train, x_test = validate_inputs(arch, x_train, x_test, names=("x_train", "x_test"))
    n_train, k = x_train.shape[0], arch.out_dim
    x_test = np.zeros((0, x_train.shape[1]), np.float32) if x_test is None else x_test
    n_test = x_test.shape[0]
    y_train = check_targets("y_train", y_train, n_train, k)
    f0 = np.concatenate([
        np.zeros((n_train, k), np.float32) if f0_train is None else check_targets("f0_train", f0_train, n_train, k),
        np.zeros((n_test, k), np.float32) if f0_test is None else check_targets("f0_test", f0_test, n_test, k),
    ])
    if batch_indices is None:
        rows = run_keys(key).minibatch_order(n_train, batch_size, steps)  # the finite trainer's order
    else:
        rows = check_batch_indices(batch_indices, n_train, steps)
    full_batch = rows.shape[1] == n_train and bool(np.all(rows == np.arange(n_train)))
    record_steps = np.arange(steps + 1) if record is None else check_record_list(record, steps)
    return _Problem(np.concatenate([x_train, x_test]), y_train, f0, n_train, rows.astype(np.int32), full_batch,
                    record_steps)




def default_block_rows(per_device_samples: int, out_dim: int, budget_bytes: int = 1 << 28) -> int:
    """Points per block in a step: the block's float32 temporaries (about ``2 k + 12`` numbers per sample
    and point) stay below ``budget_bytes``."""
    return int(max(1, min(1024, budget_bytes // (4 * per_device_samples * (2 * out_dim + 12)))))


def _plan_memory(arch, problem, samples, replicas, root_width, storage_dtype, readout_only, optimizer, devices,
                 block_rows, available):
    """The memory estimate of the run, checked against ``available`` (``MemoryError`` naming what fits)."""
    from infinite_width.limits.adam_limit.memory import largest_fitting_samples
    from infinite_width.limits.adam_limit.step import optimizer_state_numbers

    def estimate_for(m):
        return estimate_memory(
            arch.depth, arch.out_dim, problem.n_train, problem.x_all.shape[0] - problem.n_train, samples=m,
            input_dim=problem.x_all.shape[1], replicas=replicas, root_width=root_width,
            batch_size=problem.rows.shape[1],
            block_rows=block_rows, storage_dtype=storage_dtype, readout_only=readout_only,
            optimizer_state=optimizer_state_numbers(optimizer), devices=devices,
        )

    memory = estimate_for(samples)
    if memory.peak_bytes > available:
        fitting = largest_fitting_samples(estimate_for, available, replicas, devices, samples)
        check_memory(memory, available, fitting, replicas * devices)
    return memory


# --------------------------------------------------------------------------
# Setup: roots and fields.


@dataclasses.dataclass(frozen=True)
class SampledFields:
    """The random fields of a run and what they are for (see [`sample_fields`][infinite_width.limits.adam_limit.engine.sample_fields]).

    Attributes:
      fields: ``{"h<l>": (P, R, C), "z<l>": (P, R, k, C), "zeta": (R, k, C),
        "coordinate": (R, C)}`` ([`fields`][infinite_width.limits.adam_limit.fields]).
      layout: their [`FieldLayout`][infinite_width.limits.adam_limit.fields.FieldLayout].
      terms, output_coefficient: the limit's terms
        ([`limit_terms`][infinite_width.limits.adam_limit.terms.limit_terms]).
      ranks, residual_fractions: per root field, its rank and the fraction of variance truncation dropped.
      timings: seconds spent on ``roots``, ``features`` and ``fields``.
    """

    fields: Dict[str, jax.Array]
    layout: object
    terms: tuple
    output_coefficient: float
    ranks: Dict[str, int]
    residual_fractions: Dict[str, float]
    timings: Dict[str, float]


def field_roots(arch, x_all, layout, rank: Optional[int], features: int):
    """Pivoted Cholesky roots of the field kernels (``{"h<l>": Root, "z<l>": Root}``).

    With ``rank=None`` every root is exact (LAPACK). Otherwise only the first
    ``rank + features + 1`` columns are computed (O(P r'^2)): enough to tell
    whether a root is truncated and to draw it; the roots whose exact draws
    make features ([`feature_sources`][infinite_width.limits.adam_limit.features.feature_sources])
    are then factorized completely.
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


def sample_fields(arch: Architecture, x_all, *, key, samples: int, replicas: int, readout_only: bool = False,
                  linear: bool = False, rank: Optional[int] = DEFAULT_RANK, features: int = DEFAULT_FEATURES,
                  storage_dtype: str = "float32", devices=None) -> SampledFields:
    """The fields [`simulate`][infinite_width.limits.adam_limit.simulate] draws for the same arguments (``x_all`` (P, d): train rows, then test rows).

    ``key`` is [`simulate`][infinite_width.limits.adam_limit.simulate]'s key; ``linear``: an SGD or momentum optimizer.
    """
    devices = list(jax.devices() if devices is None else devices)
    x_all = np.asarray(x_all, np.float32)
    terms, out_coefficient = limit_terms(arch, readout_only, linear=linear)
    layout = field_layout(terms, arch.depth, arch.out_dim, x_all.shape[0], replicas, samples // replicas)
    W_std, b_std = layer_scales(arch)
    samples_key = jax.random.fold_in(as_key(key), 1)
    clock = [time.perf_counter()]

    def lap():
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]

    exact = field_roots(arch, x_all, layout, rank, features)
    timings = {"roots": lap()}
    roots_for = ReplicaRoots(exact, first_layer_root(x_all, W_std[0], b_std[0]), rank, features, W_std, b_std,
                             arch.activations, samples_key, replicas)
    del exact
    timings["features"] = lap()
    with precision_scope("float32"):
        fields = jax.block_until_ready(draw_fields(
            samples_key, roots_for, layout, STORAGE_DTYPES[storage_dtype], input_dim=x_all.shape[1],
            readout_scale=W_std[-1], sharding=_shardings(devices)[0]))
    timings["fields"] = lap()
    return SampledFields(fields, layout, terms, out_coefficient, roots_for.ranks, roots_for.dropped, timings)


def _shardings(devices):
    """(field sharding by rank, replicated sharding) for the sample axis (last) over ``devices``, or Nones."""
    if len(devices) == 1:
        return None, None
    mesh = Mesh(np.array(devices), (_SAMPLES_AXIS,))
    by_rank = lambda ndim: NamedSharding(mesh, PartitionSpec(*([None] * (ndim - 1)), _SAMPLES_AXIS))  # noqa: E731
    return by_rank, NamedSharding(mesh, PartitionSpec())


# --------------------------------------------------------------------------
# Public entry point.


def simulate(
    arch: Architecture,
    x_train,
    y_train,
    x_test,
    optimizer: Optimizer,
    steps: int,
    *,
    key,
    loss: str = "mse",
    readout_only: bool = False,
    batch_size: Optional[int] = None,
    batch_indices=None,
    samples: int = 65536,
    replicas: int = 8,
    rank: Optional[int] = DEFAULT_RANK,
    features: int = DEFAULT_FEATURES,
    storage_dtype: str = "float32",
    f0_train=None,
    f0_test=None,
    record: Optional[Sequence[int]] = None,
    progress: bool = False,
    devices=None,
    max_memory_bytes: Optional[int] = None,
    block_rows: Optional[int] = None,
) -> LimitResult:
    """Train the infinite-width limit of ``arch`` with ``optimizer`` by Monte Carlo.

    Args:
      arch: an MLP (``arch.is_mlp``) with at least one hidden layer.
      x_train: (N, d) training inputs.
      y_train: (N, k) targets, k = ``arch.out_dim``.
      x_test: (Nt, d) test inputs (or None).
      optimizer: an [`infinite_width.optim.Optimizer`][] (sgd, momentum, adam, sign).
      steps: number of training steps.
      key: an int seed, a ``numpy.random.Generator`` or a jax PRNG key. It draws the samples and, with
        ``batch_size``, the minibatch order
        ``run_keys(key).minibatch_order`` (``infinite_width._src.rng``), the order
        [`infinite_width.finite.train`][] uses for the same key.
      loss: a name of [`infinite_width.losses`][]; only ``chi = dloss/df`` enters.
      readout_only: train only the readout weights and the output bias
        ("feature learning disabled"); default: every layer.
      batch_size: minibatch size B; default: full batch.
      batch_indices: (steps, B) training rows of every step; overrides
        ``batch_size`` and the order drawn from ``key``.
      samples: total Monte Carlo samples M per term, split into ``replicas``
        independent runs of M / R samples.
      replicas: independent runs R >= 2 (they give the error bars); M must be a multiple of R.
      rank: a root of a P x P layer kernel whose numerical rank q
        exceeds ``rank + features`` keeps its leading ``rank`` pivoted
        Cholesky columns (``None``: exact roots, see below).
      features: with ``rank``, every replica adds ``features`` random features
        of the residual ([`features`][infinite_width.limits.adam_limit.features]): the
        covariance is then right in expectation, and the fields cost
        O(M P (rank + features) k) instead of O(M P q k) to draw. Defaults
        512 and 512; measured bias (MNIST, P = 2,000 and 4,000) below a third
        of the Monte Carlo standard error at the default ``samples``
        (docs/BENCHMARKS.md). ``rank=None``: exact roots; ``features=0``:
        plain truncation (biased: it drops ``residual_fractions`` of each
        field's variance).
      storage_dtype: ``"float32"`` or ``"bfloat16"`` (half the memory of
        the stored fields; arithmetic stays float32).
      f0_train: (N, k) initial outputs on the training points (default zero:
        the centered model f - f_0).
      f0_test: (Nt, k) initial outputs on the test points (default zero).
      record: step numbers in [0, steps] to record (default every step).
      progress: show a tqdm progress bar.
      devices: jax devices to shard the samples over (default all of
        ``jax.devices()``); samples per replica must be divisible by their number.
      max_memory_bytes: memory available per device, overriding the estimate
        from the device (or the available physical memory on the CPU).
      block_rows: points per block in a step and in the predictions (bounds
        the temporaries; default from a 256 MiB budget).

    Same key and sizes (samples, replicas, rank) give the same result on any
    number of devices and any ``block_rows``, up to float32 summation order.
    Time and memory as functions of M, P, B, L, k, T and the rank: the module
    docstring (docs/theory.md, section 7).

    Raises:
      MemoryError: the configuration does not fit (checked before
        allocating); the message names a sample count that fits.
      FloatingPointError: a prediction became NaN or Inf; names the step.
      ValueError, TypeError: bad inputs, named.
    """
    wall_start = time.perf_counter()
    plan = _plan(arch, x_train, y_train, x_test, optimizer, steps, key=key, loss=loss, readout_only=readout_only,
                 batch_size=batch_size, batch_indices=batch_indices, samples=samples, replicas=replicas, rank=rank,
                 features=features, storage_dtype=storage_dtype, f0_train=f0_train, f0_test=f0_test, record=record,
                 devices=devices, max_memory_bytes=max_memory_bytes, block_rows=block_rows)
    sampled = sample_fields(arch, plan.problem.x_all, key=plan.key, samples=plan.samples, replicas=plan.replicas,
                            readout_only=plan.readout_only, linear=not optimizer.adaptive, rank=plan.rank,
                            features=plan.features, storage_dtype=plan.storage_dtype, devices=plan.devices)
    timings = dict(sampled.timings, steps=0.0, predictions=0.0)
    with precision_scope("float32"):
        spec, inputs, accumulated, opt_state = _step_start(plan, sampled)
        setup_time = time.perf_counter() - wall_start
        trajectory = _run(spec, sampled.fields, inputs, accumulated, opt_state, plan.problem.record_steps,
                          plan.steps, progress, optimizer, timings)
    return _result(trajectory, plan, sampled, timings, setup_time, wall_start)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A run's checked arguments and its memory estimate."""

    arch: Architecture
    optimizer: Optimizer
    loss: str
    readout_only: bool
    steps: int
    problem: _Problem
    key: jax.Array
    rank: Optional[int]
    features: int
    devices: list
    block_rows: int
    memory: MemoryEstimate
    samples: int
    replicas: int
    storage_dtype: str


def _plan(arch, x_train, y_train, x_test, optimizer, steps, *, key, loss, readout_only, batch_size, batch_indices,
          samples, replicas, rank, features, storage_dtype, f0_train, f0_test, record, devices, max_memory_bytes,
          block_rows) -> _Plan:
    """Check every argument of [`simulate`][infinite_width.limits.adam_limit.simulate] (errors name the problem) and the memory the run needs."""
    _check_choices(arch, optimizer, loss, readout_only, storage_dtype)
    steps = check_int("steps", steps, 0)
    samples = check_int("samples", samples, 2)
    replicas = check_int("replicas", replicas, 2)
    if samples % replicas:
        raise ValueError(f"samples ({samples}) must be a multiple of replicas ({replicas})")
    rank = None if rank is None else check_int("rank", rank, 1)
    features = check_int("features", features, 0)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty")
    if (samples // replicas) % len(devices):
        raise ValueError(f"samples per replica ({samples // replicas}) must be divisible by the number of devices "
                         f"({len(devices)}) to shard the samples")
    key = as_key(key)
    problem = _problem(arch, x_train, y_train, x_test, f0_train, f0_test, key, steps, batch_size, batch_indices,
                       record)
    points = problem.x_all.shape[0]
    block_rows = (default_block_rows(samples // len(devices), arch.out_dim) if block_rows is None
                  else check_int("block_rows", block_rows, 1))
    available = available_memory(devices[0]) if max_memory_bytes is None else int(max_memory_bytes)
    # Roots are at most P wide (exact) or rank + features + 1 (truncated, with features).
    root_width = points if rank is None else min(points, rank + features + 1)
    memory = _plan_memory(arch, problem, samples, replicas, root_width, storage_dtype, bool(readout_only), optimizer,
                          len(devices), block_rows, available)
    return _Plan(arch, optimizer, loss, bool(readout_only), steps, problem, key, rank, features, devices, block_rows,
                 memory, samples, replicas, storage_dtype)


def _step_start(plan: _Plan, sampled: SampledFields):
    """What the step loop starts from: its static [`StepSpec`][infinite_width.limits.adam_limit.step.StepSpec], the problem's arrays on the devices
    (x_all, f_0, y_train, batch rows; replicated) and the zero accumulators and optimizer state (sharded)."""
    problem = plan.problem
    field_sharding, replicated = _shardings(plan.devices)
    put = (lambda x: jax.device_put(x, replicated)) if replicated is not None else jnp.asarray
    spec = StepSpec(sampled.terms, sampled.output_coefficient, sampled.layout, plan.arch.activations, plan.optimizer,
                    plan.loss, problem.n_train, problem.full_batch, min(plan.block_rows, problem.x_all.shape[0]))
    accumulated, opt_state = initial_state(spec, field_sharding)
    # With no steps there are no batch rows; the loop still takes a (1, B) array.
    rows = problem.rows if problem.rows.shape[0] else np.zeros((1, problem.rows.shape[1]), np.int32)
    inputs = (put(problem.x_all), put(problem.f0), put(problem.y_train), put(rows))
    return spec, inputs, accumulated, opt_state


def _run(spec, fields, inputs, accumulated, opt_state, record_steps, steps, progress, optimizer, timings):
    """Run the compiled step loop; (R, T, P, k) predictions at ``record_steps``. Adds the seconds spent in
    steps and predictions to ``timings``."""
    x_all, f0, y_train, batch_indices = inputs
    advance, predict = compiled_advance(spec), compiled_predict(spec)
    bad = jnp.asarray(-1, jnp.int32)
    records = {}
    t = 0
    with progress_bar(total=steps, progress=progress, desc="adam limit", unit="step") as bar:
        for stop in _blocks(record_steps, steps, progress):
            if stop > t:
                start = time.perf_counter()
                accumulated, opt_state, bad = advance(fields, x_all, f0, y_train, batch_indices, accumulated,
                                                      opt_state, bad, jnp.int32(t), jnp.int32(stop))
                bad_step = int(_to_host(bad))  # waits for the steps
                if "first_step_block" not in timings:  # it includes the compilation of the step loop
                    timings["first_step_block"], timings["first_step_block_steps"] = time.perf_counter() - start, stop - t
                timings["steps"] += time.perf_counter() - start
                if bad_step >= 0:
                    _diverged(bad_step, optimizer)
                bar.update(stop - t)
                t = stop
            if stop in record_steps:
                start = time.perf_counter()
                records[stop] = _to_host(predict(fields, x_all, f0, accumulated))
                timings["predictions"] += time.perf_counter() - start
                if not np.all(np.isfinite(records[stop])):
                    _diverged(stop, optimizer)
    return np.stack([records[s] for s in record_steps], axis=1)


def _to_host(array) -> np.ndarray:
    """A replicated array as numpy, also when it spans the devices of several processes (jax.distributed)."""
    if not array.is_fully_addressable and array.sharding.is_fully_replicated:
        return np.asarray(array.addressable_data(0))
    return np.asarray(array)


def _diverged(step, optimizer):
    raise FloatingPointError(
        f"the Adam-limit predictions became NaN or Inf at step {step} "
        f"(optimizer {optimizer.describe()}); lower the learning rate"
    )


def _blocks(record_steps, steps, progress):
    """Step numbers at which to return to Python: every recorded step, plus ~100 blocks with a progress bar."""
    stops = set(int(s) for s in record_steps) | {steps}
    if progress and steps:
        stops |= set(range(0, steps, max(1, steps // 100)))
    return sorted(stops)


def _result(trajectory, plan: _Plan, sampled: SampledFields, timings, setup_time, wall_start) -> LimitResult:
    """The [`LimitResult`][infinite_width.limits.adam_limit.LimitResult] of the (R, T, P, k) replica predictions ``trajectory``: mean and standard error
    over replicas, split into train and test rows, with what the run was."""
    n = plan.problem.n_train
    mean = trajectory.mean(axis=0)
    stderr = trajectory.std(axis=0, ddof=1) / math.sqrt(plan.replicas)
    return LimitResult(
        steps=plan.problem.record_steps,
        train_predictions=mean[:, :n],
        test_predictions=mean[:, n:],
        train_stderr=stderr[:, :n],
        test_stderr=stderr[:, n:],
        replica_train_predictions=trajectory[:, :, :n],
        replica_test_predictions=trajectory[:, :, n:],
        samples=plan.samples,
        replicas=plan.replicas,
        block_rows=plan.block_rows,
        ranks=sampled.ranks,
        residual_fractions=sampled.residual_fractions,
        storage_dtype=plan.storage_dtype,
        devices=len(plan.devices),
        memory=plan.memory,
        setup_time_s=setup_time,
        wall_time_s=time.perf_counter() - wall_start,
        timings=timings,
        optimizer=plan.optimizer,
        loss=plan.loss,
        readout_only=plan.readout_only,
    )
