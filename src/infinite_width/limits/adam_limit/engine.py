"""Monte Carlo engine of the Adam-like infinite-width limit (docs/theory.md, sections 5, 7 and 10).

`simulate` trains the limit of an MLP or a convolutional network (channels
as width, `infinite_width.limits.adam_limit.conv_terms`) with any optimizer of
`infinite_width.optim` and any loss of `infinite_width.losses`, full batch
or minibatches. A run is planned (`infinite_width.limits.adam_limit.planning`:
checks and memory), sampled once (`infinite_width.limits.adam_limit.sampling`)
and stepped (`infinite_width.limits.adam_limit.step`). What follows describes
the MLP; the conv net stores position-contracted features instead of fields
and has its own cost model (docs/theory.md, section 10). The
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
import logging
import math
import time
from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width._src.numerics import precision_scope
from infinite_width._src.progress import progress_bar
from infinite_width.architectures import Architecture
from infinite_width.limits.adam_limit.memory import MemoryEstimate
from infinite_width.limits.adam_limit.options import AdamLimit
from infinite_width.limits.adam_limit.planning import Plan, plan_run
from infinite_width.limits.adam_limit.sampling import SampledFields, sample_fields, shardings
from infinite_width.limits.adam_limit.step import StepSpec, compiled_advance, compiled_predict, initial_state
from infinite_width.optim import Optimizer

__all__ = ["simulate", "LimitResult"]

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LimitResult:
    """Predictions of the Adam-like limit with Monte Carlo error bars, and how they were computed.

    Shapes (T recorded steps, R replicas, N train / Nt test points, k outputs):

    Attributes:
      steps: (T,) the recorded step numbers (0 = before training).
      train_predictions: (T, N, k), the mean over replicas.
      test_predictions: (T, Nt, k), the mean over replicas.
      train_stderr: (T, N, k), the standard error of that mean (replica standard deviation / sqrt(R)).
      test_stderr: (T, Nt, k), the same on the test points.
      replica_train_predictions: (R, T, N, k), each replica a full run with samples / R samples.
      replica_test_predictions: (R, T, Nt, k).
      options: the [`AdamLimit`][infinite_width.limits.adam_limit.options.AdamLimit] options of the run,
        ``block_rows`` resolved.
      ranks: columns of each field's root (``{"h2": r, "z1": r, ...}``).
      residual_fractions: the fraction of each field's variance (trace) that its root's leading columns
        drop (0 for exact roots).
      devices: number of devices the samples were sharded over.
      memory: the [`MemoryEstimate`][infinite_width.limits.adam_limit.memory.MemoryEstimate] checked
        before allocating.
      timings: seconds of each stage: ``roots`` (layer kernels and their pivoted Cholesky factors),
        ``features`` (per-replica roots), ``fields`` (drawing), ``steps`` (the step loop),
        ``predictions`` (all points at recorded steps), ``setup`` (everything before the first step) and
        ``total`` (the whole call); compilation is in the stage that first runs a shape:
        ``first_step_block`` is the first call of the step loop (``first_step_block_steps`` steps and the
        compilation).
    """

    steps: np.ndarray
    train_predictions: np.ndarray
    test_predictions: np.ndarray
    train_stderr: np.ndarray
    test_stderr: np.ndarray
    replica_train_predictions: np.ndarray
    replica_test_predictions: np.ndarray
    options: AdamLimit
    ranks: Dict[str, int]
    residual_fractions: Dict[str, float]
    devices: int
    memory: MemoryEstimate
    timings: Dict[str, float]


def simulate(
    arch: Architecture,
    x_train,
    y_train,
    x_test,
    optimizer: Optimizer,
    steps: int,
    *,
    key,
    options: Optional[AdamLimit] = None,
    loss: str = "mse",
    readout_only: bool = False,
    batch_size: Optional[int] = None,
    batch_indices=None,
    f0_train=None,
    f0_test=None,
    record: Optional[Sequence[int]] = None,
    progress: bool = False,
    devices=None,
    max_memory_bytes: Optional[int] = None,
    **option_fields,
) -> LimitResult:
    """Train the infinite-width limit of ``arch`` with ``optimizer`` by Monte Carlo.

    Args:
      arch: an MLP (``arch.is_mlp``) with at least one hidden layer, or a convolutional network of
        ``Conv`` (stride 1, SAME padding, odd filter) and activation blocks, ``GlobalAvgPool`` and a
        ``Dense`` readout (its width is the channel count; docs/theory.md, section 10).
      x_train: (N, d) or (N, H, W, C) training inputs.
      y_train: (N, k) targets, k = ``arch.out_dim``.
      x_test: (Nt, ...) test inputs (or None).
      optimizer: an `infinite_width.optim.Optimizer` (sgd, momentum, adam, sign).
      steps: number of training steps.
      key: an int seed, a ``numpy.random.Generator`` or a jax PRNG key. It draws the samples and, with
        ``batch_size``, the minibatch order ``run_keys(key).minibatch_order`` (the order
        `infinite_width.finite.train` uses for the same key).
      options: the engine's [`AdamLimit`][infinite_width.limits.adam_limit.options.AdamLimit] options
        (samples, replicas, roots, storage, blocks); default ``AdamLimit()``.
      loss: a name of `infinite_width.losses`; only ``chi = dloss/df`` enters.
      readout_only: train only the readout weights and the output bias ("feature learning disabled");
        default: every layer.
      batch_size: minibatch size B; default: full batch.
      batch_indices: (steps, B) training rows of every step; overrides ``batch_size`` and the order drawn
        from ``key``.
      f0_train: (N, k) initial outputs on the training points (default zero: the centered model f - f_0).
      f0_test: (Nt, k) initial outputs on the test points (default zero).
      record: step numbers in [0, steps] to record (default every step).
      progress: show a progress bar of the steps (on a terminal or in a notebook). The stages before the
        steps (roots, features, each replica's fields) and their times are logged at INFO by the logger
        ``infinite_width.limits.adam_limit`` (silent unless configured, e.g.
        ``logging.basicConfig(level=logging.INFO)``), which also works when the output goes to a file.
      devices: jax devices to shard the samples over (default all of ``jax.devices()``); samples per
        replica must be divisible by their number.
      max_memory_bytes: memory available per device, overriding the estimate from the device (or the
        available physical memory on the CPU).
      **option_fields: fields of `AdamLimit` (``samples=``, ``replicas=``, ``rank=``, ``features=``,
        ``storage_dtype=``, ``block_rows=``) overriding those of ``options``; each is checked once, by
        the record.

    Returns:
      a [`LimitResult`][infinite_width.limits.adam_limit.LimitResult].

    Same key and options give the same result, bit for bit, on every call and, up to float32 summation
    order, on any number of devices and any ``block_rows``. Time and memory as functions of M, P, B, L,
    k, T and the rank: the module docstring and docs/theory.md, sections 7 and 10.

    Raises:
      MemoryError: the configuration does not fit (checked before allocating); the message names a
        sample count that fits.
      FloatingPointError: a prediction, or the square of a normalized gradient, became NaN or Inf; names
        the step.
      ValueError: bad inputs (named), an unsupported layer (named), inputs too large for float32
        (`infinite_width.limits.adam_limit.planning.MAX_INPUT_VARIANCE`).
      TypeError: an argument of the wrong kind (named).
    """
    wall_start = time.perf_counter()
    options = AdamLimit(**option_fields) if options is None else dataclasses.replace(options, **option_fields)
    plan = plan_run(arch, x_train, y_train, x_test, optimizer, steps, key=key, options=options, loss=loss,
                    readout_only=readout_only, batch_size=batch_size, batch_indices=batch_indices,
                    f0_train=f0_train, f0_test=f0_test, record=record, devices=devices,
                    max_memory_bytes=max_memory_bytes)
    sampled = sample_fields(arch, plan.problem.x_all, key=plan.key, options=plan.options,
                            readout_only=plan.readout_only, linear=not optimizer.adaptive, devices=plan.devices,
                            layout=plan.layout)
    timings = dict(sampled.timings, steps=0.0, predictions=0.0)
    with precision_scope("float32"):
        spec, inputs, accumulated, opt_state = _step_start(plan, sampled)
        timings["setup"] = time.perf_counter() - wall_start
        LOGGER.info("setup: %.1f s; %d steps of %d samples to run", timings["setup"], plan.steps,
                    plan.options.samples)
        trajectory = _run(spec, sampled.fields, inputs, accumulated, opt_state, plan.problem.record_steps,
                          plan.steps, progress, optimizer, timings)
    return _result(trajectory, plan, sampled, timings, wall_start)


def _step_start(plan: Plan, sampled: SampledFields):
    """What the step loop starts from: its static `StepSpec`, the problem's arrays on the devices
    (x_all, f_0, y_train, batch rows; replicated) and the zero accumulators and optimizer state (sharded)."""
    problem = plan.problem
    field_sharding, replicated = shardings(plan.devices)
    put = (lambda x: jax.device_put(x, replicated)) if replicated is not None else jnp.asarray
    spec = StepSpec(sampled.model, sampled.output_coefficient, plan.optimizer, plan.loss, problem.n_train,
                    problem.full_batch, min(plan.options.block_rows, problem.points))
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
                    LOGGER.info("steps: the first %d (with the compilation) took %.1f s", stop - t,
                                timings["first_step_block"])
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
    LOGGER.info("steps: %.1f s; predictions at %d recorded steps: %.1f s", timings["steps"], len(record_steps),
                timings["predictions"])
    return np.stack([records[s] for s in record_steps], axis=1)


def _to_host(array) -> np.ndarray:
    """A replicated array as numpy, also when it spans the devices of several processes (jax.distributed)."""
    if not array.is_fully_addressable and array.sharding.is_fully_replicated:
        return np.asarray(array.addressable_data(0))
    return np.asarray(array)


def _diverged(step, optimizer):
    raise FloatingPointError(
        f"the Adam-limit predictions or the squares of its normalized gradients became NaN or Inf at step {step} "
        f"(optimizer {optimizer.describe()}); lower the learning rate or standardize the inputs"
    )


def _blocks(record_steps, steps, progress):
    """Step numbers at which to return to Python: every recorded step, plus ~100 blocks with a progress bar."""
    stops = set(int(s) for s in record_steps) | {steps}
    if progress and steps:
        stops |= set(range(0, steps, max(1, steps // 100)))
    return sorted(stops)


def _result(trajectory, plan: Plan, sampled: SampledFields, timings, wall_start) -> LimitResult:
    """The [`LimitResult`][infinite_width.limits.adam_limit.LimitResult] of the (R, T, P, k) replica predictions ``trajectory``: mean and standard error
    over replicas, split into train and test rows, with how they were computed."""
    n = plan.problem.n_train
    mean = trajectory.mean(axis=0)
    stderr = trajectory.std(axis=0, ddof=1) / math.sqrt(plan.options.replicas)
    return LimitResult(
        steps=plan.problem.record_steps,
        train_predictions=mean[:, :n],
        test_predictions=mean[:, n:],
        train_stderr=stderr[:, :n],
        test_stderr=stderr[:, n:],
        replica_train_predictions=trajectory[:, :, :n],
        replica_test_predictions=trajectory[:, :, n:],
        options=plan.options,
        ranks=sampled.ranks,
        residual_fractions=sampled.residual_fractions,
        devices=len(plan.devices),
        memory=plan.memory,
        timings=dict(timings, total=time.perf_counter() - wall_start),
    )
