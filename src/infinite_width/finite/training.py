"""Train finite networks with optax under one optimizer spec.

[`train`][infinite_width.finite.train] trains an ensemble of ``seeds`` independent initialisations of a
[`Network`][infinite_width.finite.Network] in one vectorised, compiled call
(``jax.vmap`` over the ensemble, ``jax.lax.scan`` over steps) and returns the
network outputs on the training and test inputs at the recorded steps as
[`Predictions`][infinite_width.Predictions] (losses and accuracies are computed from
them by [`infinite_width.solve`][], once, for every method alike).

Learning rates (see [`infinite_width.optim`][] and
docs/theory.md, section 3): every stored parameter ``p`` of
group ``grp`` moves by ``dp = -lr * rate_grp * Q_t(G_p)``. With
``rates="per_group"`` (the default, matched to the infinite-width limit):

* ``sgd`` and ``momentum``: ``rate_grp = 1`` (one global rate ``lr``; the
  limit is NTK gradient descent for the ntk parametrization);
* ``adam`` and ``sign``: ``rate_grp = r_grp`` and Adam's epsilon is
  ``eps * s_grp``, with ``(s_grp, r_grp)`` from
  [`Network.group_scales`][infinite_width.finite.networks.Network.group_scales]
  (for an ntk MLP: ``1/n`` hidden weights, ``1/sqrt(n d)`` input weights,
  ``1/sqrt(n)`` hidden biases and readout weights, ``1`` output bias).

A learning-rate schedule (``optimizer.schedule``) multiplies step ``t``'s
update by its factor, after the direction (``optax.scale_by_schedule``).

With ``rates="global"`` (the practitioner's optax optimizer) every optimizer
uses ``rate_grp = 1`` and Adam's ``eps`` as given, for every leaf: plain
``optax.adam(lr, b1, b2, eps)``. This has no width-independent limit
(docs/theory.md, section 3, "Contrast: the practitioner's Adam").

Leaves that do not train get a zero update: all but the readout weight and
output bias with ``readout_only=True``, and, with per-group rates, leaves
with ``m r = 0`` (a bias with ``b_std = 0``) under Adam/sign.

Keys (the package's one derivation, ``infinite_width._src.rng``): seed ``i``
is ``net.init(init_keys[i], x.shape[1:])`` with ``init_keys, batch_key =
ensemble_keys(key, seeds)``, and the minibatch order is
``minibatch_indices(batch_key, N, batch_size, steps)``, shared by all seeds
(the infinite-width side solved with the same key sees the same minibatches;
or pass ``batch_indices`` explicitly).

Memory is estimated before anything is allocated, from XLA's own analysis of
the compiled initialisation and training loop (parameters, optimizer state,
activations, recorded outputs); an ensemble that does not fit raises
``MemoryError`` saying how many seeds would.

Matrix products run at full float32 precision
(``jax.default_matmul_precision("highest")``); with JAX's x64 mode on, the
networks train in float64.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from infinite_width import losses
from infinite_width._src.checks import (
    check_batch_indices,
    check_int,
    check_record_list,
    check_targets,
    validate_inputs,
)
from infinite_width._src.memory import GIB, available_memory
from infinite_width._src.numerics import precision_scope
from infinite_width._src.rng import ensemble_keys, minibatch_indices
from infinite_width.architectures import Architecture
from infinite_width.finite.networks import Network, network
from infinite_width.optim import Optimizer
from infinite_width.predictions import Predictions

__all__ = ["FiniteState", "RATES", "train", "train_checked", "width_sweep"]

ON_NONFINITE = ("raise", "record")
RATES = ("per_group", "global")
"""``rates``: the limit-matched per-group rates and epsilons, or one global optax rate and eps."""
_READOUT_GROUPS = ("readout_W", "output_b")


@dataclasses.dataclass(frozen=True)
class FiniteState:
    """Parameters of a trained ensemble ([`train`][infinite_width.finite.train] with ``return_params=True``).

    Attributes:
      initial_params, final_params: parameter pytrees (lists of ``{"W", "b"}``)
        whose numpy leaves have a leading seeds axis S.
    """

    initial_params: list
    final_params: list


# --------------------------------------------------------------------------
# The optax transformation.


def _transformation(optimizer: Optimizer, readout_only: bool, scales: List[dict],
                    rates: str) -> optax.GradientTransformation:
    """One transformation per leaf: its direction, rate and (for Adam) epsilon."""
    per_group = optimizer.adaptive and rates == "per_group"
    # A schedule multiplies step t's update by factor(t), after the direction (docs/theory.md, section 3).
    schedule = optimizer.schedule
    scheduled = () if schedule.is_constant else (optax.scale_by_schedule(schedule.optax_schedule()),)
    transforms, labels = {}, []
    for i, layer in enumerate(scales):
        layer_labels = {}
        for name, scale in layer.items():
            label = f"{i}/{name}"
            frozen = (readout_only and scale.group not in _READOUT_GROUPS) or (
                per_group and scale.frozen_under_adaptive
            )
            if frozen:
                transforms[label] = optax.set_to_zero()
            else:
                direction = optimizer.direction(eps_scale=scale.s if per_group else 1.0)
                rate = -optimizer.lr * (scale.r if per_group else 1.0)
                transforms[label] = optax.chain(direction, *scheduled, optax.scale(rate))
            layer_labels[name] = label
        labels.append(layer_labels)
    return optax.multi_transform(transforms, labels)


# --------------------------------------------------------------------------
# Compiled pieces, cached per configuration (jit re-traces per shape itself).


def _over_seeds(fn, in_axes, n_seeds: int):
    """``jax.vmap(fn, in_axes)`` over the ensemble axis; a plain call when there is one seed.

    A singleton vmap turns every matrix product into a batched one, about 20-35%
    slower on CPU.
    """
    if n_seeds > 1:
        return jax.vmap(fn, in_axes=in_axes)

    def single(*args):
        args = [jax.tree_util.tree_map(lambda a: a[0], arg) if axis == 0 else arg for arg, axis in zip(args, in_axes)]
        return jax.tree_util.tree_map(lambda a: a[None], fn(*args))

    return single


def _model(net: Network, centered: bool, linearized: bool):
    """``outputs(params, x, f0, anchor)``: what is trained, for one network (no seeds axis).

    Plain: ``f(params, x)``. Linearized: ``f_0(x) + J(anchor) (params - anchor)``
    by ``jax.jvp`` at the initial parameters ``anchor`` (no Jacobian is
    materialized). Centered: minus ``f0``, the outputs at init (for the
    linearized network exactly the tangent ``J (params - anchor)``).
    """

    def outputs(params, x, f0, anchor):
        if not linearized:
            f = net.apply(params, x)
            return f - f0 if centered else f
        delta = jax.tree_util.tree_map(jnp.subtract, params, anchor)
        initial, tangent = jax.jvp(lambda p: net.apply(p, x), (anchor,), (delta,))
        return tangent if centered else initial + tangent

    return outputs


@functools.lru_cache(maxsize=64)
def _compiled(net: Network, optimizer: Optimizer, loss_fn: Callable, readout_only: bool, centered: bool,
              rates: str, linearized: bool, full_batch: bool, input_shape: tuple):
    """``(initialise, predict, run)``, jitted, for one network, optimizer, loss and batch mode.

    ``anchor``, the argument after ``f0``, is the initial parameters for a
    linearized network and None otherwise.
    """
    tx = _transformation(optimizer, readout_only, net.group_scales(input_shape), rates)
    outputs = _model(net, centered, linearized)

    def one_step(params, opt_state, xb, yb, f0b, anchor):
        value, grads = jax.value_and_grad(lambda p: loss_fn(outputs(p, xb, f0b, anchor), yb))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    @jax.jit
    def initialise(keys, x_all):
        n_seeds = keys.shape[0]
        params = net.init_many(keys, input_shape) if n_seeds > 1 else _over_seeds(
            lambda k: net.init(k, input_shape), (0,), 1)(keys)
        apply_all = _over_seeds(lambda p: net.apply(p, x_all), (0,), n_seeds)
        if centered:
            f0 = apply_all(params)
        else:  # zeros of the outputs' dtype (float64 in x64 mode)
            shape = jax.eval_shape(apply_all, params)
            f0 = jnp.zeros(shape.shape, shape.dtype)
        return params, _over_seeds(tx.init, (0,), n_seeds)(params), f0

    @jax.jit
    def predict(params, x_all, f0_all, anchor):
        return _over_seeds(outputs, (0, None, 0, 0), f0_all.shape[0])(params, x_all, f0_all, anchor)

    @jax.jit
    def run(carry, step_inputs, x_train, y_train, x_all, f0_all, anchor):
        n_train = x_train.shape[0]
        n_slots = carry[2].shape[0] - 1  # the last row takes writes of non-record steps
        step = _over_seeds(one_step, (0, 0, None, None, 0, 0), f0_all.shape[0])

        def body(carry, inputs):
            params, opt_state, buffer, bad = carry
            t, rows, slot = inputs
            recorded = jax.lax.cond(
                slot >= 0,
                lambda: predict(params, x_all, f0_all, anchor),
                lambda: jnp.zeros(buffer.shape[1:], buffer.dtype),
            )
            buffer = jax.lax.dynamic_update_index_in_dim(buffer, recorded, jnp.where(slot >= 0, slot, n_slots), 0)
            if full_batch:
                xb, yb, f0b = x_train, y_train, f0_all[:, :n_train]
            else:
                xb, yb, f0b = x_train[rows], y_train[rows], f0_all[:, rows]
            params, opt_state, value = step(params, opt_state, xb, yb, f0b, anchor)
            bad = jnp.where((bad < 0) & ~jnp.isfinite(value), t, bad)
            return (params, opt_state, buffer, bad), None

        carry, _ = jax.lax.scan(body, carry, step_inputs)
        return carry

    return initialise, predict, run


# --------------------------------------------------------------------------
# The pieces of a run: memory check, the step loop, divergence.


def _abstract(tree):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)


def _compiled_bytes(fn, *args) -> int:
    """Bytes XLA plans for one call of the jitted ``fn``: arguments, outputs and temporaries (0 if unknown)."""
    stats = fn.lower(*args).compile().memory_analysis()
    if stats is None:
        return 0
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
                - stats.alias_size_in_bytes)


def _check_memory(net, initialise, run, init_keys, x_all, x_train, y_train, input_shapes, buffer_rows,
                  linearized, max_memory_bytes, return_params):
    """Refuse with ``MemoryError`` (before allocating) an ensemble whose training does not fit in memory.

    The initialisation and a chunk of the training loop are compiled for
    abstract shapes, and XLA's memory analysis gives their bytes (parameters,
    optimizer state, activations of a step, the buffer of recorded outputs,
    a linearized network's initial parameters). The buffer is counted once
    more for its copy to the host, and the initial parameters once more when
    they are returned.
    """
    params, opt_state, f0 = jax.eval_shape(initialise, init_keys, x_all)
    buffer = jax.ShapeDtypeStruct((buffer_rows,) + f0.shape, f0.dtype)
    carry = (params, opt_state, buffer, jax.ShapeDtypeStruct((f0.shape[0],), jnp.int32))
    step_inputs = tuple(jax.ShapeDtypeStruct(shape, jnp.int32) for shape in input_shapes)
    arrays = _abstract((x_train, y_train, x_all))
    params_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(params))
    parts = {
        "initialisation": _compiled_bytes(initialise, _abstract(init_keys), arrays[2]),
        "training loop": _compiled_bytes(run, carry, step_inputs, *arrays, f0, params if linearized else None),
        "recorded outputs (host copy)": buffer.size * buffer.dtype.itemsize,
        "initial parameters": params_bytes if return_params else 0,
    }
    total = max(parts["initialisation"], parts["training loop"]) + parts["recorded outputs (host copy)"] \
        + parts["initial parameters"]
    available = available_memory(jax.devices()[0]) if max_memory_bytes is None else int(max_memory_bytes)
    if total <= available:
        return
    seeds = f0.shape[0]
    fitting = int(seeds * available / total * 0.9)
    detail = ", ".join(f"{name} {value / GIB:.3g} GiB" for name, value in parts.items() if value)
    advice = (f"about {fitting} seeds would fit; run the ensemble in groups of at most {fitting} seeds with "
              "different keys" if fitting >= 1 else
              "not even one network fits: reduce the width, batch_size or the number of recorded steps")
    raise MemoryError(
        f"training {seeds} networks of width {net.width} needs about {total / GIB:.3g} GiB ({detail}), but only "
        f"{available / GIB:.3g} GiB is available; {advice} (or pass max_memory_bytes if the estimate of free "
        "memory is wrong)"
    )


def _chunk_steps(steps: int, progress: bool) -> int:
    """Steps per compiled call: ~100 chunks behind a progress bar, one call without."""
    return max(1, math.ceil(steps / 100)) if progress else max(steps, 1)


def _step_inputs(record: np.ndarray, batch_indices: np.ndarray):
    """What the scan reads at each step: ``(t, batch rows, buffer slot or -1)``, and the in-loop recorded steps."""
    steps = batch_indices.shape[0]
    slot_of_step = np.full(steps, -1, dtype=np.int32)
    in_loop = record[record < steps]
    slot_of_step[in_loop] = np.arange(in_loop.size, dtype=np.int32)
    return (np.arange(steps, dtype=np.int32), batch_indices, slot_of_step), in_loop


def _run_steps(run, carry, step_inputs, arrays, progress: bool, width: int):
    """The compiled step loop over all steps, in chunks with a progress bar (`_chunk_steps`)."""
    steps = step_inputs[0].shape[0]
    chunk = _chunk_steps(steps, progress)
    with tqdm(total=steps, disable=not progress, desc=f"train width {width}", leave=False) as bar:
        for begin in range(0, steps, chunk):
            inputs = jax.tree_util.tree_map(lambda a: a[begin : begin + chunk], step_inputs)
            carry = run(carry, inputs, *arrays)
            bar.update(len(inputs[0]))
    return carry


def _divergence(records, record, first_bad, on_nonfinite, optimizer, width):
    """First non-finite step per seed (loss during training or a recorded output); NaN records from it on.

    ``records`` (S, R, P, k) is filled with NaN in place from each diverged
    seed's first non-finite step; with ``on_nonfinite="raise"`` a diverged
    seed raises ``FloatingPointError`` instead.
    """
    nonfinite_record = ~np.all(np.isfinite(records), axis=(2, 3))
    for s in range(records.shape[0]):
        bad_records = record[nonfinite_record[s]]
        if bad_records.size and (first_bad[s] < 0 or bad_records[0] < first_bad[s]):
            first_bad[s] = bad_records[0]
    diverged = first_bad >= 0
    if np.any(diverged) and on_nonfinite == "raise":
        s = min(np.flatnonzero(diverged), key=lambda i: first_bad[i])
        raise FloatingPointError(
            f"non-finite loss at step {first_bad[s]} (seed {s}, {optimizer.describe()}, width {width}); "
            "lower the learning rate or pass on_nonfinite='record'"
        )
    for s in np.flatnonzero(diverged):
        records[s, record >= first_bad[s]] = np.nan
    return diverged


# --------------------------------------------------------------------------
# Entry points.


def train_checked(
    net: Network,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    optimizer: Optimizer,
    record: np.ndarray,
    batch_indices: np.ndarray,
    init_keys,
    *,
    loss_fn: Callable,
    readout_only: bool = False,
    centered: bool = False,
    rates: str = "per_group",
    linearized: bool = False,
    on_nonfinite: str = "raise",
    progress: bool = False,
    return_params: bool = False,
    max_memory_bytes: Optional[int] = None,
):
    """[`train`][infinite_width.finite.train] on arguments that are already checked (what [`infinite_width.solve`][] calls).

    ``x_train`` (N, ...) and ``x_test`` (Nt, ...) float32 inputs (``Nt`` may
    be 0), ``y_train`` (N, k) float32, ``record`` (R,) sorted unique steps in
    ``[0, steps]``, ``batch_indices`` (steps, B) int32 rows, ``init_keys``
    (S, ...) one key per seed, ``loss_fn(f, y) -> scalar``. Nothing is
    validated again. Returns what [`train`][infinite_width.finite.train] returns.
    """
    n_train = x_train.shape[0]
    full_batch = batch_indices.shape[1] == n_train and bool(np.all(batch_indices == np.arange(n_train)))
    with precision_scope("float32"):
        compiled = _compiled(net, optimizer, loss_fn, bool(readout_only), bool(centered), rates, bool(linearized),
                             full_batch, tuple(x_train.shape[1:]))
        records, initial_params, final_params, first_bad = _train_compiled(
            net, compiled, x_train, y_train, x_test, record, batch_indices, init_keys, linearized=bool(linearized),
            progress=progress, return_params=return_params, max_memory_bytes=max_memory_bytes,
        )
    diverged = _divergence(records, record, first_bad, on_nonfinite, optimizer, net.width)
    predictions = Predictions(
        steps=record, train=records[:, :, :n_train], test=records[:, :, n_train:], diverged=diverged,
        first_nonfinite_step=first_bad,
    )
    if not return_params:
        return predictions
    return predictions, FiniteState(initial_params, final_params)


def _train_compiled(net, compiled, x_train, y_train, x_test, record, batch_indices, init_keys, *, linearized,
                    progress, return_params, max_memory_bytes):
    """Check memory, initialise, run the steps; outputs (S, R, P, k) at ``record``, parameters, first bad steps."""
    initialise, predict, run = compiled
    steps, seeds = batch_indices.shape[0], init_keys.shape[0]
    x_all = np.concatenate([x_train, x_test])
    step_inputs, in_loop = _step_inputs(record, batch_indices)
    chunk = _chunk_steps(steps, progress)
    _check_memory(net, initialise, run, init_keys, x_all, x_train, y_train,
                  [(chunk,), (chunk, batch_indices.shape[1]), (chunk,)], in_loop.size + 1, linearized,
                  max_memory_bytes, return_params)
    params, opt_state, f0_all = initialise(init_keys, x_all)
    anchor = params if linearized else None
    initial_params = jax.tree_util.tree_map(np.asarray, params) if return_params else None
    buffer = jnp.zeros((in_loop.size + 1, seeds, x_all.shape[0], net.out_dim), f0_all.dtype)
    carry = (params, opt_state, buffer, jnp.full((seeds,), -1, jnp.int32))
    carry = _run_steps(run, carry, step_inputs, (x_train, y_train, x_all, f0_all, anchor), progress, net.width)
    params, _, buffer, bad = carry
    records = np.moveaxis(np.array(buffer[: in_loop.size]), 0, 1)  # (S, R_in_loop, P, k)
    if record[-1] == steps:
        records = np.concatenate([records, np.asarray(predict(params, x_all, f0_all, anchor))[:, None]], axis=1)
    final_params = jax.tree_util.tree_map(np.asarray, params) if return_params else None
    return records, initial_params, final_params, np.asarray(bad).astype(np.int64)


def train(
    net: Network,
    x_train,
    y_train,
    optimizer: Optimizer,
    steps: int,
    *,
    record,
    loss: Union[str, Callable] = "mse",
    readout_only: bool = False,
    centered: bool = False,
    rates: str = "per_group",
    linearized: bool = False,
    batch_size: Optional[int] = None,
    batch_indices=None,
    key=0,
    seeds: int = 1,
    x_test=None,
    on_nonfinite: str = "raise",
    progress: bool = False,
    return_params: bool = False,
    max_memory_bytes: Optional[int] = None,
) -> Union[Predictions, Tuple[Predictions, FiniteState]]:
    """Train ``seeds`` independent initialisations of ``net`` for ``steps`` optimizer steps.

    Args:
      net: a [`Network`][infinite_width.finite.Network].
      x_train: (N, d) or (N, H, W, C) training inputs.
      y_train: (N, k) targets, ``k = net.out_dim``.
      optimizer: an [`Optimizer`][infinite_width.optim.Optimizer]; rates per group
        as in the module docstring.
      steps: number of updates (>= 0).
      record: the steps (in ``[0, steps]``) at which outputs are recorded, e.g.
        ``[0, steps]`` or ``infinite_width.workflow.Record(count=20,
        spacing="log").steps(steps)``.
      loss: ``"mse"`` (``0.5 mean((f - y)^2)``), ``"cross_entropy"``, or a
        function ``(f (B, k), y (B, k)) -> scalar``.
      readout_only: train only the readout weight and output bias (feature
        learning disabled); default: every layer.
      centered: train ``f(x) - f_0(x)`` with ``f_0`` the network at init, so
        every model starts at zero.
      rates: ``"per_group"`` (default): Adam/sign use the limit-matched
        rates ``lr * r_grp`` and epsilons ``eps * s_grp``; ``"global"``: one
        optax rate ``lr`` and the given ``eps`` for every leaf, as a
        practitioner trains (see the module docstring).
      linearized: train the linearization ``f_0 + J(theta_0) (theta - theta_0)``
        of the network at its initial parameters (feature learning disabled
        in every layer; computed with ``jax.jvp``, no Jacobian is stored).
      batch_size: minibatch size (None: full batch).
      batch_indices: explicit (steps, B) training rows per step, overriding
        ``batch_size`` (to share a sequence with the infinite-width side).
      key: jax PRNG key or int seed (see module docstring for how it is split).
      seeds: ensemble size S, trained in one vectorised call.
      x_test: optional test inputs (Nt, ...).
      on_nonfinite: ``"raise"``: a NaN/Inf loss raises ``FloatingPointError``
        naming the first bad step; ``"record"``: mark the seed ``diverged`` and
        fill its records from that step on with NaN.
      progress: show a tqdm progress bar (the run is then compiled in chunks).
      return_params: also return the initial and final parameters.
      max_memory_bytes: memory available, overriding the free memory of the
        device (the estimate is checked before allocating).

    Returns:
      [`Predictions`][infinite_width.Predictions] with ``train`` (S, R, N, k) and
      ``test`` (S, R, Nt, k) (``Nt = 0`` without ``x_test``), ``diverged`` and
      ``first_nonfinite_step``; with ``return_params``, the pair
      ``(predictions, FiniteState)``.

    Raises:
      MemoryError: the ensemble does not fit (says how many seeds would).
      FloatingPointError: a non-finite loss with ``on_nonfinite="raise"``.
      TypeError, ValueError: bad arguments, named.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be an infinite_width.finite.Network, got {type(net).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an infinite_width.optim.Optimizer, got {type(optimizer).__name__}")
    for name, value in (("readout_only", readout_only), ("linearized", linearized)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"unknown on_nonfinite {on_nonfinite!r}; expected one of {ON_NONFINITE}")
    if rates not in RATES:
        raise ValueError(f"unknown rates {rates!r}; expected one of {RATES}")
    if isinstance(loss, str):
        loss_fn = losses.get(loss)
    elif callable(loss):
        loss_fn = loss
    else:
        raise TypeError(f"loss must be a loss name or a function (f, y) -> scalar, got {loss!r}")
    steps = check_int("steps", steps, 0)
    x_train, x_test = validate_inputs(net.arch, x_train, x_test, np.float32, names=("x_train", "x_test"))
    n_train = x_train.shape[0]
    y_train = check_targets("y_train", y_train, n_train, net.out_dim)
    if x_test is None:
        x_test = np.zeros((0,) + x_train.shape[1:], np.float32)
    record = check_record_list(record, steps)
    init_keys, batch_key = ensemble_keys(key, seeds)
    if batch_indices is None:
        batch_indices = minibatch_indices(batch_key, n_train, batch_size, steps).astype(np.int32)
    else:
        batch_indices = check_batch_indices(batch_indices, n_train, steps)
    return train_checked(
        net, x_train, y_train, x_test, optimizer, record, batch_indices, init_keys,
        loss_fn=loss_fn, readout_only=bool(readout_only), centered=centered, rates=rates, linearized=bool(linearized),
        on_nonfinite=on_nonfinite,
        progress=progress, return_params=return_params, max_memory_bytes=max_memory_bytes,
    )


def width_sweep(
    arch: Architecture,
    widths: Iterable[int],
    x_train,
    y_train,
    optimizer: Optimizer,
    steps: int,
    *,
    parametrization: str = "ntk",
    init: str = "gaussian",
    progress: bool = False,
    **train_kwargs,
) -> Dict[int, Predictions]:
    """[`train`][infinite_width.finite.train] the network of ``arch`` at every width; ``{width: Predictions}``.

    The same ``key`` (hence the same minibatch order) is used at every width.
    """
    widths = list(widths)
    if not widths:
        raise ValueError("widths is empty")
    results = {}
    for width in tqdm(widths, disable=not progress, desc="widths"):
        net = network(arch, width, parametrization=parametrization, init=init)
        results[width] = train(net, x_train, y_train, optimizer, steps, progress=progress, **train_kwargs)
    return results
