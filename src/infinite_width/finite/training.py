"""Train finite networks with optax under one optimizer spec.

:func:`train` trains an ensemble of ``seeds`` independent initialisations of a
:class:`~infinite_width.finite.Network` in one vectorised, compiled call
(``jax.vmap`` over the ensemble, ``jax.lax.scan`` over steps) and records the
network outputs on the training and test inputs at chosen steps.

Learning rates (see :mod:`infinite_width.optim` and
docs/theory.md, section 3): every stored parameter ``p`` of
group ``grp`` moves by ``dp = -lr * rate_grp * Q_t(G_p)`` where

* ``sgd`` and ``momentum``: ``rate_grp = 1`` (one global rate ``lr``; the
  limit is NTK gradient descent for the ntk parametrization);
* ``adam`` and ``sign``: ``rate_grp = r_grp`` and Adam's epsilon is
  ``eps * s_grp``, with ``(s_grp, r_grp)`` from
  :meth:`Network.group_scales <infinite_width.finite.Network.group_scales>`
  (for an ntk MLP: ``1/n`` hidden weights, ``1/sqrt(n d)`` input weights,
  ``1/sqrt(n)`` hidden biases and readout weights, ``1`` output bias).

Leaves that do not train get a zero update: all but the readout weight and
output bias with ``train="readout"``, and leaves with ``m r = 0`` (a bias
with ``b_std = 0``) under Adam/sign.

Keys: ``init_key, batch_key = jax.random.split(key)``; the ensemble's
parameters come from ``jax.random.split(init_key, seeds)`` (seed ``i`` is
``net.init(keys[i], x.shape[1:])``), and the minibatch order from
``minibatch_indices(batch_key, N, batch_size, steps)``, shared by all seeds
(the package's one key derivation, so the infinite-width side solved with the
same key sees the same minibatches; or pass ``batch_indices`` explicitly).

Matrix products run at full float32 precision
(``jax.default_matmul_precision("highest")``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

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
from infinite_width._src.numerics import precision_scope
from infinite_width._src.rng import minibatch_indices, split_run_key
from infinite_width.architectures import Architecture
from infinite_width.finite.networks import Network, network
from infinite_width.optim import Optimizer

__all__ = ["TrainResult", "train", "width_sweep", "split_key", "default_record_steps"]

TRAIN_MODES = ("all", "readout")
ON_NONFINITE = ("raise", "record")
_READOUT_GROUPS = ("readout_W", "output_b")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` recorded; numpy arrays, S seeds, R recorded steps, k outputs.

    Attributes:
      steps: (R,) number of updates done at each record (0 = initialisation).
      train_predictions: (S, R, N, k) outputs on the training inputs
        (minus the initial outputs when ``centred``).
      test_predictions: (S, R, Nt, k), or None without ``x_test``.
      train_loss, train_accuracy: (S, R) on the whole training set.
      test_loss, test_accuracy: (S, R), or None without ``y_test``.
      diverged: (S,) True where a loss became NaN/Inf.
      first_nonfinite_step: (S,) the first step with a non-finite loss, -1 if none.
      initial_params, final_params: parameter pytrees with a leading S axis.
      batch_indices: (steps, B) the training rows used at each step.
      wall_time: seconds spent in the call (compilation included).
    """

    steps: np.ndarray
    train_predictions: np.ndarray
    test_predictions: Optional[np.ndarray]
    train_loss: np.ndarray
    test_loss: Optional[np.ndarray]
    train_accuracy: np.ndarray
    test_accuracy: Optional[np.ndarray]
    diverged: np.ndarray
    first_nonfinite_step: np.ndarray
    initial_params: list
    final_params: list
    batch_indices: np.ndarray
    wall_time: float


# --------------------------------------------------------------------------
# Keys, minibatches and record steps.


def split_key(key, seeds: int = 1):
    """``(init_keys (seeds, ...), batch_key)`` derived from ``key`` as :func:`train` does."""
    init_key, batch_key = split_run_key(key)
    return jax.random.split(init_key, seeds), batch_key


def default_record_steps(steps: int, count: int = 20) -> np.ndarray:
    """About ``count`` log-spaced steps from 0 to ``steps`` inclusive."""
    if steps == 0:
        return np.zeros(1, dtype=np.int64)
    spaced = np.round(np.geomspace(1, steps, count)).astype(np.int64)
    return np.unique(np.concatenate([[0], spaced, [steps]]))


# --------------------------------------------------------------------------
# Input checks.


def _check_x(name: str, arch: Architecture, x):
    return validate_inputs(arch, x, None, np.float32, names=(name, None))[0]


# --------------------------------------------------------------------------
# The optax transformation.


def _transformation(optimizer: Optimizer, train_mode: str, scales: List[dict]) -> optax.GradientTransformation:
    """One transformation per leaf: its direction, rate and (for Adam) epsilon."""
    transforms, labels = {}, []
    for i, layer in enumerate(scales):
        layer_labels = {}
        for name, scale in layer.items():
            label = f"{i}/{name}"
            frozen = (train_mode == "readout" and scale.group not in _READOUT_GROUPS) or (
                optimizer.adaptive and scale.frozen_under_adaptive
            )
            if frozen:
                transforms[label] = optax.set_to_zero()
            elif optimizer.adaptive:
                transforms[label] = optax.chain(optimizer.direction(eps_scale=scale.s), optax.scale(-optimizer.lr * scale.r))
            else:
                transforms[label] = optax.chain(optimizer.direction(), optax.scale(-optimizer.lr))
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


@functools.lru_cache(maxsize=64)
def _compiled(net: Network, optimizer: Optimizer, loss_fn: Callable, train_mode: str, centred: bool,
              full_batch: bool, input_shape: tuple):
    tx = _transformation(optimizer, train_mode, net.group_scales(input_shape))

    def outputs(params, x, f0):
        f = net.apply(params, x)
        return f - f0 if centred else f

    def one_step(params, opt_state, xb, yb, f0b):
        value, grads = jax.value_and_grad(lambda p: loss_fn(outputs(p, xb, f0b), yb))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    @jax.jit
    def initialise(keys, x_all):
        n_seeds = keys.shape[0]
        params = net.init_many(keys, input_shape) if n_seeds > 1 else _over_seeds(
            lambda k: net.init(k, input_shape), (0,), 1)(keys)
        if centred:
            f0 = _over_seeds(lambda p: net.apply(p, x_all), (0,), n_seeds)(params)
        else:
            f0 = jnp.zeros((n_seeds, x_all.shape[0], net.out_dim), jnp.float32)
        return params, _over_seeds(tx.init, (0,), n_seeds)(params), f0

    @jax.jit
    def predict(params, x_all, f0_all):
        return _over_seeds(outputs, (0, None, 0), f0_all.shape[0])(params, x_all, f0_all)

    @jax.jit
    def run(carry, schedule, x_train, y_train, x_all, f0_all):
        n_train = x_train.shape[0]
        n_slots = carry[2].shape[0] - 1  # the last row takes writes of non-record steps

        def body(carry, inputs):
            params, opt_state, buffer, bad = carry
            t, rows, slot = inputs
            recorded = jax.lax.cond(
                slot >= 0,
                lambda: predict(params, x_all, f0_all),
                lambda: jnp.zeros(buffer.shape[1:], buffer.dtype),
            )
            buffer = jax.lax.dynamic_update_index_in_dim(buffer, recorded, jnp.where(slot >= 0, slot, n_slots), 0)
            if full_batch:
                xb, yb, f0b = x_train, y_train, f0_all[:, :n_train]
            else:
                xb, yb, f0b = x_train[rows], y_train[rows], f0_all[:, rows]
            step = _over_seeds(one_step, (0, 0, None, None, 0), f0_all.shape[0])
            params, opt_state, value = step(params, opt_state, xb, yb, f0b)
            bad = jnp.where((bad < 0) & ~jnp.isfinite(value), t, bad)
            return (params, opt_state, buffer, bad), None

        carry, _ = jax.lax.scan(body, carry, schedule)
        return carry

    return initialise, predict, run


@functools.partial(jax.jit, static_argnums=0)
def _metrics(loss_fn, predictions, y):
    """Loss and accuracy of predictions (S, R, N, k) against y (N, k): two (S, R) arrays."""
    per_record = jax.vmap(jax.vmap(lambda f: (loss_fn(f, y), losses.accuracy(f, y))))
    return per_record(predictions)


# --------------------------------------------------------------------------


def train(
    net: Network,
    x_train,
    y_train,
    optimizer: Optimizer,
    steps: int,
    *,
    loss: Union[str, Callable] = "mse",
    train: str = "all",
    centred: bool = False,
    batch_size: Optional[int] = None,
    batch_indices=None,
    key=0,
    seeds: int = 1,
    record: Optional[Sequence[int]] = None,
    x_test=None,
    y_test=None,
    on_nonfinite: str = "raise",
    progress: bool = False,
) -> TrainResult:
    """Train ``seeds`` independent initialisations of ``net`` for ``steps`` optimizer steps.

    Args:
      net: a :class:`~infinite_width.finite.Network`.
      x_train: (N, d) or (N, H, W, C) training inputs.
      y_train: (N, k) targets, ``k = net.out_dim``.
      optimizer: an :class:`~infinite_width.optim.Optimizer`; rates per group
        as in the module docstring.
      steps: number of updates (>= 0).
      loss: ``"mse"`` (``0.5 mean((f - y)^2)``), ``"cross_entropy"``, or a
        function ``(f (B, k), y (B, k)) -> scalar`` (used for training and for
        the recorded losses).
      train: ``"all"`` or ``"readout"`` (only the readout weight and output
        bias move: feature learning disabled).
      centred: train ``f(x) - f_0(x)`` with ``f_0`` the network at init, so
        every model starts at zero.
      batch_size: minibatch size (None: full batch).
      batch_indices: explicit (steps, B) training rows per step, overriding
        ``batch_size`` (to share a sequence with the infinite-width side).
      key: jax PRNG key or int seed (see module docstring for how it is split).
      seeds: ensemble size S, trained in one vectorised call.
      record: steps (0..steps) at which outputs are recorded; default
        :func:`default_record_steps`.
      x_test, y_test: optional test inputs (Nt, ...) and targets (Nt, k).
      on_nonfinite: ``"raise"``: a NaN/Inf loss raises ``FloatingPointError``
        naming the first bad step; ``"record"``: mark the seed ``diverged`` and
        fill its records from that step on with NaN.
      progress: show a tqdm progress bar (the run is then compiled in chunks).

    Returns:
      A :class:`TrainResult`.
    """
    start = time.perf_counter()
    if not isinstance(net, Network):
        raise TypeError(f"net must be an infinite_width.finite.Network, got {type(net).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an infinite_width.optim.Optimizer, got {type(optimizer).__name__}")
    if train not in TRAIN_MODES:
        raise ValueError(f"unknown train mode {train!r}; expected one of {TRAIN_MODES}")
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"unknown on_nonfinite {on_nonfinite!r}; expected one of {ON_NONFINITE}")
    if isinstance(loss, str):
        loss_fn = losses.get(loss)
    elif callable(loss):
        loss_fn = loss
    else:
        raise TypeError(f"loss must be a loss name or a function (f, y) -> scalar, got {loss!r}")
    steps = check_int("steps", steps, 0)
    seeds = check_int("seeds", seeds, 1)
    k = net.out_dim

    x_train = _check_x("x_train", net.arch, x_train)
    n_train = x_train.shape[0]
    y_train = check_targets("y_train", y_train, n_train, k)
    if x_test is None and y_test is not None:
        raise ValueError("y_test given without x_test")
    if x_test is not None:
        x_test = _check_x("x_test", net.arch, x_test)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise ValueError(f"x_test has per-example shape {x_test.shape[1:]}, x_train {x_train.shape[1:]}")
        if y_test is not None:
            y_test = check_targets("y_test", y_test, x_test.shape[0], k)
    record = default_record_steps(steps) if record is None else check_record_list(record, steps)

    init_keys, batch_key = split_key(key, seeds)
    if batch_indices is None:
        batch_indices = minibatch_indices(batch_key, n_train, batch_size, steps).astype(np.int32)
    else:
        batch_indices = check_batch_indices(batch_indices, n_train, steps)
    full_batch = batch_indices.shape[1] == n_train and bool(np.all(batch_indices == np.arange(n_train)))

    x_all = x_train if x_test is None else np.concatenate([x_train, x_test])
    slot_of_step = np.full(steps, -1, dtype=np.int32)
    in_loop = record[record < steps]
    slot_of_step[in_loop] = np.arange(in_loop.size, dtype=np.int32)
    schedule_all = (np.arange(steps, dtype=np.int32), batch_indices, slot_of_step)

    with precision_scope("float32"):
        initialise, predict, run = _compiled(
            net, optimizer, loss_fn, train, bool(centred), full_batch, tuple(x_train.shape[1:])
        )
        params, opt_state, f0_all = initialise(init_keys, x_all)
        initial_params = params
        buffer = jnp.zeros((in_loop.size + 1, seeds, x_all.shape[0], k), jnp.float32)
        carry = (params, opt_state, buffer, jnp.full((seeds,), -1, jnp.int32))
        chunk = max(1, math.ceil(steps / 100)) if progress else max(steps, 1)
        with tqdm(total=steps, disable=not progress, desc=f"train width {net.width}", leave=False) as bar:
            for begin in range(0, steps, chunk):
                schedule = jax.tree_util.tree_map(lambda a: a[begin : begin + chunk], schedule_all)
                carry = run(carry, schedule, x_train, y_train, x_all, f0_all)
                bar.update(len(schedule[0]))
        params, _, buffer, bad = carry
        records = np.moveaxis(np.array(buffer[: in_loop.size]), 0, 1)  # (S, R_in_loop, P, k)
        if record[-1] == steps:
            records = np.concatenate([records, np.asarray(predict(params, x_all, f0_all))[:, None]], axis=1)
    first_bad = np.asarray(bad).astype(np.int64)

    train_pred = records[:, :, :n_train]
    test_pred = None if x_test is None else records[:, :, n_train:]
    # A record that is already non-finite also counts (e.g. the final parameters).
    nonfinite_record = ~np.all(np.isfinite(records), axis=(2, 3))
    for s in range(seeds):
        bad_records = record[nonfinite_record[s]]
        if bad_records.size and (first_bad[s] < 0 or bad_records[0] < first_bad[s]):
            first_bad[s] = bad_records[0]
    diverged = first_bad >= 0
    if np.any(diverged) and on_nonfinite == "raise":
        s = min(np.flatnonzero(diverged), key=lambda i: first_bad[i])
        raise FloatingPointError(
            f"non-finite loss at step {first_bad[s]} (seed {s}, {optimizer.describe()}, width {net.width}); "
            "lower the learning rate or pass on_nonfinite='record'"
        )
    for s in np.flatnonzero(diverged):
        records[s, record >= first_bad[s]] = np.nan

    def metrics(pred, y):
        loss_values, accuracy = _metrics(loss_fn, jnp.asarray(pred), jnp.asarray(y))
        return np.asarray(loss_values), np.asarray(accuracy)

    train_loss, train_accuracy = metrics(train_pred, y_train)
    test_loss = test_accuracy = None
    if y_test is not None:
        test_loss, test_accuracy = metrics(test_pred, y_test)
    to_numpy = functools.partial(jax.tree_util.tree_map, np.asarray)
    return TrainResult(
        steps=record,
        train_predictions=train_pred,
        test_predictions=test_pred,
        train_loss=train_loss,
        test_loss=test_loss,
        train_accuracy=train_accuracy,
        test_accuracy=test_accuracy,
        diverged=diverged,
        first_nonfinite_step=first_bad,
        initial_params=to_numpy(initial_params),
        final_params=to_numpy(params),
        batch_indices=batch_indices,
        wall_time=time.perf_counter() - start,
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
) -> Dict[int, TrainResult]:
    """:func:`train` the network of ``arch`` at every width; ``{width: TrainResult}``.

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
