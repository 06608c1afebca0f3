"""The plan of a run of the Monte Carlo engine: every argument checked, the memory counted, before anything is drawn.

[`plan_run`][infinite_width.limits.adam_limit.planning.plan_run] checks the
arguments of [`simulate`][infinite_width.limits.adam_limit.engine.simulate]
(errors name the problem), resolves the options, and refuses a run whose
memory estimate (`infinite_width.limits.adam_limit.memory`) does not fit,
naming a sample count that does. Architectures: MLPs
(``arch.is_mlp``, at least one hidden layer) and the convolutional networks
of `infinite_width.limits.adam_limit.conv_terms`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import numpy as np

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
from infinite_width._src.rng import run_keys
from infinite_width.architectures import Architecture
from infinite_width.limits.adam_limit.conv_fields import ConvLayout, conv_layout
from infinite_width.limits.adam_limit.conv_kernels import patches
from infinite_width.limits.adam_limit.conv_terms import ConvNet, conv_network, conv_terms
from infinite_width.limits.adam_limit.memory import (
    MemoryEstimate,
    available_memory,
    check_memory,
    estimate_conv_memory,
    estimate_memory,
    largest_fitting_samples,
)
from infinite_width.limits.adam_limit.options import AdamLimit
from infinite_width.limits.adam_limit.step import optimizer_state_numbers
from infinite_width.optim import Optimizer

__all__ = ["RunProblem", "Plan", "plan_run", "check_architecture", "default_block_rows", "MAX_INPUT_VARIANCE"]

MAX_INPUT_VARIANCE = 1e12
"""The largest first-layer variance ``K^1(x, x)`` (MLP) or ``K^1((x, s), (x, s))`` (conv) the engine accepts.
Beyond it float32 kernels (products of two variances) and the squares of normalized gradients come close to
overflowing (3.4e38), and an overflowed square makes Adam stall silently; inputs that large are refused."""


def check_architecture(arch) -> Optional[str]:
    """``"mlp"`` or ``"conv"``: which engine handles ``arch``; ``ValueError`` naming what is not supported.

    MLPs need at least one hidden layer; convolutional networks are those of
    `infinite_width.limits.adam_limit.conv_terms` (the message names the first layer that does not fit).

    Args:
      arch: the [`Architecture`][infinite_width.architectures.Architecture] to check (``TypeError`` otherwise).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if arch.is_mlp:
        if arch.depth < 1:
            raise ValueError(f"the Adam-like limit needs at least one hidden layer; {arch.name!r} has none")
        return "mlp"
    if arch.input_kind == "vector":
        raise ValueError(
            f"the Adam-like limit handles MLPs (alternating Dense/Activation layers with at least one hidden "
            f"layer) and convolutional networks, not {arch.name!r}"
        )
    conv_network(arch, (1, 1, 1))  # ValueError naming the layer
    return "conv"


@dataclasses.dataclass(frozen=True)
class RunProblem:
    """Checked inputs: ``x_all`` (P, ...) train rows first, targets, ``f0`` (P, k), batch rows, record steps.

    Attributes:
      x_all: (P, d) or (P, H, W, C) float32 inputs, the training rows first, then the test rows.
      y_train: (N, k) the training targets.
      f0: (P, k) the initial outputs on all points (zero by default).
      n_train: N, the training points.
      rows: (steps, B) int32 the training rows of every step.
      full_batch: whether every step's rows are all training points in order.
      record_steps: the step numbers to record.
    """

    x_all: np.ndarray
    y_train: np.ndarray
    f0: np.ndarray
    n_train: int
    rows: np.ndarray
    full_batch: bool
    record_steps: np.ndarray

    @property
    def points(self) -> int:
        return self.x_all.shape[0]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A run's checked arguments, resolved options and memory estimate.

    Attributes:
      arch: the architecture.
      net: the [`ConvNet`][infinite_width.limits.adam_limit.conv_terms.ConvNet] of a conv architecture (None for
        an MLP).
      layout: the [`ConvLayout`][infinite_width.limits.adam_limit.conv_fields.ConvLayout] of a conv net's stored
        features (None for an MLP).
      optimizer: the optimizer.
      loss: the loss's name.
      readout_only: whether only the readout and the output bias train.
      steps: the number of steps.
      problem: the checked inputs ([`RunProblem`][infinite_width.limits.adam_limit.planning.RunProblem]).
      key: the run's jax PRNG key.
      options: the [`AdamLimit`][infinite_width.limits.adam_limit.options.AdamLimit] options, ``block_rows``
        resolved.
      devices: the jax devices the samples are sharded over.
      memory: the run's [`MemoryEstimate`][infinite_width.limits.adam_limit.memory.MemoryEstimate].
    """

    arch: Architecture
    net: Optional[ConvNet]
    layout: Optional[ConvLayout]
    optimizer: Optimizer
    loss: str
    readout_only: bool
    steps: int
    problem: RunProblem
    key: jax.Array
    options: AdamLimit
    devices: list
    memory: MemoryEstimate


def _check_choices(optimizer, loss, readout_only):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"unknown optimizer {optimizer!r}; build one with infinite_width.optim (sgd, momentum, adam, sign)")
    losses.get(loss)
    if not isinstance(readout_only, (bool, np.bool_)):
        raise TypeError(f"readout_only must be True or False, got {readout_only!r}")


def _problem(arch, x_train, y_train, x_test, f0_train, f0_test, key, steps, batch_size, batch_indices,
             record) -> RunProblem:
    with precision_scope("float32"):
        x_train, x_test = validate_inputs(arch, x_train, x_test, names=("x_train", "x_test"))
    n_train, k = x_train.shape[0], arch.out_dim
    x_test = np.zeros((0,) + x_train.shape[1:], np.float32) if x_test is None else x_test
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
    return RunProblem(np.concatenate([x_train, x_test]), y_train, f0, n_train, rows.astype(np.int32), full_batch,
                      record_steps)


def _largest_input_variance(arch, x_all, net) -> float:
    """``max K^1`` on the points: ``W_std_1^2 |x|^2 / d + b_std_1^2`` (MLP), ``|patch|^2 / (C |F_1|)`` for a conv net."""
    W_std, b_std = arch.weighted_layers[0].W_std, arch.weighted_layers[0].b_std
    if net is None:
        x = np.asarray(x_all, np.float64)
        squares = np.sum(x**2, axis=1) / x.shape[1]
    else:
        squares = np.asarray(np.sum(patches(net, x_all) ** 2, axis=-1), np.float64) / (net.channels * net.tap_count(1))
    return float(W_std) ** 2 * float(np.max(squares, initial=0.0)) + float(b_std) ** 2


def _check_input_scale(arch, x_all, net) -> None:
    variance = _largest_input_variance(arch, x_all, net)
    if not variance <= MAX_INPUT_VARIANCE:
        raise ValueError(
            f"the inputs are too large for the engine's float32 arithmetic: the first layer's largest variance is "
            f"{variance:.3g} (inputs of scale about {math.sqrt(variance):.3g}), beyond {MAX_INPUT_VARIANCE:.0e}; "
            "kernels and squared gradients would overflow. Standardize the inputs (e.g. "
            "infinite_width.datasets.load(..., standardize=True)) or divide them by a constant"
        )


def default_block_rows(samples_per_device: int, out_dim: int, budget_bytes: int = 1 << 28) -> int:
    """Points per block in a step: the block's float32 temporaries (about ``2 k + 12`` numbers per sample
    and point) stay below ``budget_bytes``; between 1 and 1024.

    Args:
      samples_per_device: the samples each device holds.
      out_dim: k, the outputs.
      budget_bytes: the bound on the block's temporaries.
    """
    return int(max(1, min(1024, budget_bytes // (4 * samples_per_device * (2 * out_dim + 12)))))


def _root_widths(layout: ConvLayout, rank, features) -> dict:
    """Upper bounds on the columns of each conv field root (conv_roots: all when exact, else rank + features + 1)."""
    coordinates = layout.points * layout.net.positions
    exact = rank is None or coordinates <= rank + features
    width = coordinates if exact else min(coordinates, rank + features + 1)
    names = [f"h{l}" for l in layout.h_layers if l >= 2] + [f"z{l}" for l in layout.z_layers]
    return {name: width for name in names}


def _estimate(arch, layout, problem, options, samples, optimizer, devices, readout_only):
    """The memory estimate of the run with ``samples`` samples."""
    batch_size = problem.rows.shape[1]
    state = optimizer_state_numbers(optimizer)
    if layout is None:
        points, rank, features = problem.points, options.rank, options.features
        root_width = points if rank is None else min(points, rank + features + 1)
        return estimate_memory(
            arch.depth, arch.out_dim, problem.n_train, points - problem.n_train, samples=samples,
            input_dim=problem.x_all.shape[1], replicas=options.replicas, root_width=root_width, batch_size=batch_size,
            block_rows=options.block_rows, storage_dtype=options.storage_dtype, readout_only=readout_only,
            optimizer_state=state, devices=devices,
        )
    return estimate_conv_memory(
        layout, problem.n_train, samples=samples, root_widths=_root_widths(layout, options.rank, options.features),
        features=options.features, batch_size=batch_size, block_rows=options.block_rows,
        storage_dtype=options.storage_dtype, optimizer_state=state, devices=devices,
    )


def plan_run(arch, x_train, y_train, x_test, optimizer, steps, *, key, options: AdamLimit, loss, readout_only,
             batch_size, batch_indices, f0_train, f0_test, record, devices, max_memory_bytes) -> Plan:
    """Check every argument of `simulate` (errors name the problem) and the memory the run needs.

    The arguments are [`simulate`][infinite_width.limits.adam_limit.engine.simulate]'s (``options`` already merged with its ``**option_fields``).

    Args:
      arch: an MLP or a supported conv net.
      x_train: (N, d) or (N, H, W, C) training inputs.
      y_train: (N, k) targets.
      x_test: (Nt, ...) test inputs, or None.
      optimizer: an `infinite_width.optim.Optimizer`.
      steps: number of training steps.
      key: an int seed, a ``numpy.random.Generator`` or a jax PRNG key.
      options: the engine's [`AdamLimit`][infinite_width.limits.adam_limit.options.AdamLimit] options.
      loss: a name of `infinite_width.losses`.
      readout_only: train only the readout weights and the output bias.
      batch_size: minibatch size B, or None for full batch.
      batch_indices: (steps, B) training rows of every step, or None (drawn from ``key``).
      f0_train: (N, k) initial outputs on the training points, or None (zero).
      f0_test: (Nt, k) initial outputs on the test points, or None (zero).
      record: step numbers in [0, steps] to record, or None (every step).
      devices: jax devices to shard the samples over, or None (all).
      max_memory_bytes: memory available per device, or None (from the device).

    Returns:
      a [`Plan`][infinite_width.limits.adam_limit.planning.Plan] whose ``options`` have ``block_rows`` resolved.

    Raises:
      MemoryError: the run does not fit; the message names a sample count that does.
    """
    kind = check_architecture(arch)
    _check_choices(optimizer, loss, readout_only)
    if not isinstance(options, AdamLimit):
        raise TypeError(f"options must be an infinite_width.limits.adam_limit.AdamLimit, got {type(options).__name__}")
    steps = check_int("steps", steps, 0)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty")
    if options.samples_per_replica % len(devices):
        raise ValueError(f"samples per replica ({options.samples_per_replica}) must be divisible by the number of "
                         f"devices ({len(devices)}) to shard the samples")
    key = as_key(key)
    problem = _problem(arch, x_train, y_train, x_test, f0_train, f0_test, key, steps, batch_size, batch_indices, record)
    net = conv_network(arch, problem.x_all.shape[1:]) if kind == "conv" else None
    _check_input_scale(arch, problem.x_all, net)
    readout_only = bool(readout_only)
    layout = None
    if net is not None:
        terms, _ = conv_terms(net, readout_only, linear=not optimizer.adaptive)
        layout = conv_layout(net, terms, problem.points, options.replicas, options.samples_per_replica)
    if options.block_rows is None:
        options = dataclasses.replace(options, block_rows=default_block_rows(options.samples // len(devices),
                                                                             arch.out_dim))
    available = available_memory(devices[0]) if max_memory_bytes is None else int(max_memory_bytes)

    def estimate_for(samples):
        return _estimate(arch, layout, problem, options, samples, optimizer, len(devices), readout_only)

    memory = estimate_for(options.samples)
    if memory.peak_bytes > available:
        fitting = largest_fitting_samples(estimate_for, available, options.replicas, len(devices), options.samples)
        check_memory(memory, available, fitting, options.replicas * len(devices))
    return Plan(arch, net, layout, optimizer, loss, readout_only, steps, problem, key, options, devices, memory)
