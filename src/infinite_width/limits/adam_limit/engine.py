"""Monte Carlo engine of the Adam-like infinite-width limit of MLPs.

Implements docs/theory.md, section 5 for every optimizer of
:mod:`infinite_width.optim` and every loss of :mod:`infinite_width.losses`.
For an MLP with L hidden layers, k outputs and parameter groups as in
section 3, every output c on every point xi moves by

    f_{t+1,c}(xi) = f_{t,c}(xi) - lr * sum_terms coef * E[ U_c(xi) V(xi) Q_t(g) ]

with, per term (each expectation over independent Gaussian processes):

=================  ======================  ===================  ====================
term               U_c                     V                    g (normalized grad)
=================  ======================  ===================  ====================
hidden W^l, l>=2   u^l_c = phi'(h^l) z^l_c  phi(h^{l-1})         sum_i sum_c chi_ic U_c V
input W^1          u^1_c                   x_b, b ~ U{1..d}     sum_i sum_c chi_ic U_c V
hidden bias b^l    u^l_c                   1                    sum_i sum_c chi_ic U_c
readout W^{L+1}    1 (row c)               phi(h^L)             sum_i chi_ic V  (one per c)
output bias        1 (entry c)             1                    sum_i chi_ic    (exact)
=================  ======================  ===================  ====================

``h^l ~ GP(0, K^l)`` and ``z^l_c ~ GP(0, W_std_{l+1}^2 B^{l+1})`` independent
over c. Hidden weights and biases are shared by all outputs, so their ``g``
is ONE scalar per sample (the dot product over c) and ``Q_t`` acts on it;
only the readout row c and output bias c have one ``g`` per output.

``coef`` is the group's ``W_std`` or ``b_std`` for Adam and sign (section 3:
``s_grp * r_grp * entries``), and its square for SGD and momentum (one global
rate: ``s_grp^2 * entries``), whose expectations are then the NTK terms.

The input term draws its coordinate b uniformly per sample instead of
averaging all d of them: ``(1/d) sum_b E[.] = E_b E[.]``, so the estimate is
unbiased at O(P) instead of O(P d) per sample.

Computation (section 7): M samples split into R independent replicas of M/R
samples (each a full run, vectorized), giving mean and standard error of
every prediction. Fields are drawn once from square roots of the P x P layer
kernels (:func:`~infinite_width.limits.adam_limit.sampling.sampling_root`) and stored
(float32 or bfloat16, ``storage_dtype``) points-first as
``(chunks, R, P, chunk_size, ...)``. Each step reads every field twice:
normalized gradients (chi zero-padded to all P points, or the batch rows
gathered for small minibatches), then the function update on all P points;
every ``u^l`` is read once per pass for all terms that use it. Both passes
are dot products batched over (replica, point), which XLA streams from the
stored fields in place on CPUs and GPUs (about 20x faster on a CPU than
reductions over a samples-major layout). Transient memory is bounded by
``chunk_size``; the default is a single chunk (a chunk loop copies each
chunk), split only when memory requires it. The optimizer state lives per sample and term; its update is
the optimizer's own optax ``direction(eps_scale=1)`` applied to the normalized
gradients. The step loop is compiled (``lax.while_loop``), called once per
recorded step (or progress-bar block). Samples are sharded over ``devices``
(a one-axis ``Mesh``); the mean over samples is then a cross-device reduction.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from infinite_width import kernels, losses
from infinite_width._src.checks import (
    as_key,
    check_batch_indices,
    check_int,
    check_record_list,
    check_targets,
    validate_inputs,
)
from infinite_width._src.numerics import precision_scope
from infinite_width._src.rng import batch_indices_for
from infinite_width.architectures import Architecture, activation_fn
from infinite_width.limits.adam_limit.memory import MemoryEstimate, available_memory, check_memory, estimate_memory
from infinite_width.limits.adam_limit.sampling import sampling_root
from infinite_width.optim import Optimizer

__all__ = ["solve", "LimitResult", "estimate_memory", "MemoryEstimate", "TRAIN_MODES", "STORAGE_DTYPES"]

TRAIN_MODES = ("all", "readout")
STORAGE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_SAMPLES_AXIS = "samples"


# --------------------------------------------------------------------------
# Result.


@dataclasses.dataclass(frozen=True)
class LimitResult:
    """Predictions of the Adam-like limit with Monte Carlo error bars.

    Shapes (T recorded steps, R replicas, N train / Nt test points, k outputs):

    Attributes:
      steps: (T,) the recorded step numbers (0 = before training).
      train_predictions, test_predictions: (T, N, k) / (T, Nt, k), mean over replicas.
      train_stderr, test_stderr: same shapes, standard error of that mean
        (replica standard deviation / sqrt(R)).
      replica_train_predictions, replica_test_predictions: (R, T, N, k) /
        (R, T, Nt, k), each replica a full run with samples / R samples.
      samples, replicas, chunk_size: Monte Carlo sizes (chunk_size per replica).
      storage_dtype: dtype of the stored samples.
      devices: number of devices the samples were sharded over.
      memory: the :class:`MemoryEstimate` checked before allocating.
      setup_time_s: kernels, roots and sampling; wall_time_s: the whole call.
      optimizer, loss, train: what was solved.
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
    chunk_size: int
    storage_dtype: str
    devices: int
    memory: MemoryEstimate
    setup_time_s: float
    wall_time_s: float
    optimizer: Optimizer
    loss: str
    train: str


# --------------------------------------------------------------------------
# Terms of the limit (static description, compiled into the step).


@dataclasses.dataclass(frozen=True)
class _Term:
    """One Monte Carlo term: ``coef * E[U_c V Q(g)]``.

    ``u``/``v`` name stored fields (``None``: the constant 1; ``"x"``: the
    input coordinate ``x_b``); ``per_output`` marks the readout.
    """

    name: str
    coefficient: float
    u: Optional[str]
    v: Optional[str]
    per_output: bool = False


def _terms(arch: Architecture, train: str, linear: bool) -> Tuple[Tuple[_Term, ...], float]:
    """The Monte Carlo terms and the output-bias coefficient of ``arch``."""
    lk = _layer_scales(arch)
    depth = arch.depth
    power = 2 if linear else 1
    W = [s ** power for s in lk[0]]
    b = [s ** power for s in lk[1]]
    terms = []
    if train == "all":
        terms.append(_Term("input_weight", W[0], "u1", "x"))
        terms += [_Term(f"hidden_weight{l}", W[l - 1], f"u{l}", f"a{l - 1}") for l in range(2, depth + 1)]
        terms += [_Term(f"hidden_bias{l}", b[l - 1], f"u{l}", None) for l in range(1, depth + 1)]
    terms.append(_Term("readout_weight", W[depth], None, f"a{depth}", per_output=True))
    # A group with zero scale has zero gradient and zero effect (and 0/0 in Adam with eps = 0).
    return tuple(t for t in terms if t.coefficient != 0.0), b[depth]


def _layer_scales(arch: Architecture):
    dense = arch.layers[::2]
    return [float(layer.W_std) for layer in dense], [float(layer.b_std) for layer in dense]


# --------------------------------------------------------------------------
# Sampling the fields (done once).


def _derivative(phi):
    return lambda h: jax.jvp(phi, (h,), (jnp.ones_like(h),))[1]


def _points_first(field):
    """(nc, R, C, P, ...) -> (nc, R, P, C, ...): the stored layout (see ``_advance_fn``)."""
    return jnp.moveaxis(field, 3, 2)


@functools.partial(jax.jit, static_argnames=("activation", "shape", "out_dim", "dtype", "sharding", "with_u"))
def _draw_layer(key, root_h, root_z, *, activation, shape, out_dim, dtype, sharding, with_u):
    """phi(h^l) of shape (nc, R, P, C) and u^l = phi'(h^l) z^l of shape (nc, R, P, C, k), ``shape = (nc, R, C)``."""
    key_h, key_z = jax.random.split(key)
    constrain = (lambda x: jax.lax.with_sharding_constraint(x, sharding)) if sharding is not None else (lambda x: x)
    phi = activation_fn(activation)
    h = jax.random.normal(key_h, shape + (root_h.shape[1],)) @ root_h.T
    a = constrain(_points_first(phi(h)).astype(dtype))
    if not with_u:
        return a, None
    eps = jax.random.normal(key_z, shape + (out_dim, root_z.shape[1]))
    z = jnp.einsum("...kr,pr->...pk", eps, root_z)
    u = constrain(_points_first(_derivative(phi)(h)[..., None] * z).astype(dtype))
    return a, u


@functools.partial(jax.jit, static_argnames=("shape", "dtype", "sharding"))
def _draw_coordinates(key, x_t, *, shape, dtype, sharding):
    """Input columns ``x_b`` of shape (nc, R, P, C), ``b`` uniform per sample (``shape = (nc, R, C)``).

    Stored like the other fields (one more number per sample and point)
    because a per-step gather of ``x[:, b]`` is several times slower than
    reading a stored field.
    """
    b = jax.random.randint(key, shape, 0, x_t.shape[0])
    columns = _points_first(x_t[b]).astype(dtype)
    return jax.lax.with_sharding_constraint(columns, sharding) if sharding is not None else columns


def _draw_samples(arch, layer_kernels, terms, key, shape, dtype, sharding):
    """Stored fields ``{"a<l>": (nc, R, P, C), "u<l>": (nc, R, P, C, k)}`` and a key for the input columns."""
    needed = {name for t in terms for name in (t.u, t.v) if name not in (None, "x")}
    W_std, _ = _layer_scales(arch)
    samples: Dict[str, jax.Array] = {}
    keys = jax.random.split(key, arch.depth + 1)
    for l in range(1, arch.depth + 1):
        if f"a{l}" not in needed and f"u{l}" not in needed:
            continue
        with_u = f"u{l}" in needed
        root_h = sampling_root(layer_kernels.K[l - 1], f"K^{l}")
        root_z = sampling_root(W_std[l] ** 2 * layer_kernels.B[l], f"W_std^2 B^{l + 1}") if with_u else root_h[:, :1]
        a, u = _draw_layer(
            keys[l - 1],
            jnp.asarray(root_h, jnp.float32),
            jnp.asarray(root_z, jnp.float32),
            activation=arch.activations[l - 1],
            shape=shape,
            out_dim=arch.out_dim,
            dtype=dtype,
            sharding=sharding,
            with_u=with_u,
        )
        if f"a{l}" in needed:
            samples[f"a{l}"] = a
        if with_u:
            samples[f"u{l}"] = u
    return samples, keys[-1]


# --------------------------------------------------------------------------
# The compiled step loop.


_HIGHEST = jax.lax.Precision.HIGHEST


def _contract(spec, *operands):
    """``einsum`` in float32 at full precision (no TF32 on GPUs); stored bfloat16 fields are widened."""
    return jnp.einsum(spec, *(x.astype(jnp.float32) for x in operands), precision=_HIGHEST)


def _by_field(terms):
    """The shared terms grouped by their field ``u``: ((u, (term, ...)), ...), in order of first use."""
    groups: Dict[str, list] = {}
    for term in terms:
        if not term.per_output:
            groups.setdefault(term.u, []).append(term)
    return tuple((u, tuple(group)) for u, group in groups.items())


def _normalized_gradients(terms, chunk, rows_of, chi):
    """g of every term for one chunk: (R, C) for shared terms, (R, C, k) for the readout.

    ``rows_of`` restricts the point axis of a field (R, P, C, ...) to the
    points that ``chi`` (R, P', k) lists. Each ``u`` is read once for all of
    its terms: ``w = sum_c u_c chi_c`` per sample and point, then
    ``g = sum_points w V``.
    """
    grads = {}
    for u, group in _by_field(terms):
        weighted = _contract("rpck,rpk->rpc", rows_of(chunk[u]), chi)
        for term in group:
            grads[term.name] = (
                jnp.sum(weighted, axis=1) if term.v is None
                else _contract("rpc,rpc->rc", weighted, rows_of(chunk[term.v]))
            )
    for term in terms:
        if term.per_output:
            grads[term.name] = _contract("rpc,rpk->rck", rows_of(chunk[term.v]), chi)
    return grads


def _function_update(terms, chunk, directions):
    """sum_terms coef * sum_samples U_c V Q for one chunk, shape (R, P, k).

    Each ``u`` is read once for all of its terms, contracted over samples
    against ``sum_terms coef V Q`` (R, P, C).
    """
    total = 0.0
    for u, group in _by_field(terms):
        weight = sum(
            term.coefficient * (directions[term.name][:, None, :] if term.v is None
                                else chunk[term.v].astype(jnp.float32) * directions[term.name][:, None, :])
            for term in group
        )
        total = total + _contract("rpck,rpc->rpk", chunk[u], weight)
    for term in terms:
        if term.per_output:
            total = total + term.coefficient * _contract("rpc,rck->rpk", chunk[term.v], directions[term.name])
    return total


def _chunks(samples) -> int:
    return jax.tree_util.tree_leaves(samples)[0].shape[0]


def _over_chunks(fn, samples):
    """``lax.map(fn, samples)`` over the chunk axis, without a loop when there is one chunk."""
    if _chunks(samples) == 1:
        return jax.tree_util.tree_map(lambda x: x[None], fn(jax.tree_util.tree_map(lambda x: x[0], samples)))
    return jax.lax.map(fn, samples)


def _gathers_rows(batch: int, points: int) -> bool:
    """Whether a step gathers its batch rows of the fields rather than reading all points.

    A gather copies the batch rows (read, write, read again); zero-padding chi
    to all P points instead reads every field once without a copy. Gathering
    pays off for batches below about a third of the points.
    """
    return 3 * batch < points


@functools.lru_cache(maxsize=64)
def _advance_fn(terms, out_coefficient, optimizer: Optimizer, loss: str, n_train: int, full_batch: bool,
                gather_rows: bool, per_replica: int):
    """Compiled ``advance(...)`` running steps [start, stop) and stopping at the first non-finite output.

    The fields are stored points-first, (nc, R, P, C, ...): both passes of a
    step are then dot products batched over (replica, point) with samples C
    (or outputs k) contracted, which XLA runs as streaming batched
    matrix-vector products on CPUs and GPUs, reading each field in place.
    """
    direction = optimizer.direction(eps_scale=1.0)
    lr = optimizer.lr

    def step(t, f, opt_state, samples, y_train, batch_indices):
        rows = slice(0, n_train) if full_batch else batch_indices[t]
        chi = jax.vmap(lambda f_batch: losses.chi(loss, f_batch, y_train[rows]))(f[:, rows])
        if gather_rows:
            rows_of = lambda field: jnp.take(field, rows, axis=1)  # noqa: E731
        else:
            # chi on every point, zero off the batch (repeated rows add up, as in the sum over the batch).
            chi = jnp.zeros_like(f).at[:, rows].add(chi)
            rows_of = lambda field: field  # noqa: E731
        grads = _over_chunks(lambda chunk: _normalized_gradients(terms, chunk, rows_of, chi), samples)
        if out_coefficient != 0.0:
            grads["output_bias"] = jnp.sum(chi, axis=1)
        directions, opt_state = direction.update(grads, opt_state)

        def accumulate(total, chunk_and_directions):
            chunk, chunk_directions = chunk_and_directions
            return total + _function_update(terms, chunk, chunk_directions), None

        chunk_directions = {term.name: directions[term.name] for term in terms}
        if _chunks(samples) == 1:  # no loop: lets XLA read the stored samples in place
            total, _ = accumulate(jnp.zeros_like(f), jax.tree_util.tree_map(lambda x: x[0], (samples, chunk_directions)))
        else:
            total, _ = jax.lax.scan(accumulate, jnp.zeros_like(f), (samples, chunk_directions))
        update = total / per_replica
        if out_coefficient != 0.0:
            update = update + out_coefficient * directions["output_bias"][:, None, :]
        return f - lr * update, opt_state

    def advance(samples, y_train, batch_indices, f, opt_state, bad_step, start, stop):
        def running(carry):
            t, _, _, bad = carry
            return (t < stop) & (bad < 0)

        def body(carry):
            t, f, opt_state, bad = carry
            f, opt_state = step(t, f, opt_state, samples, y_train, batch_indices)
            bad = jnp.where(jnp.all(jnp.isfinite(f)), bad, t + 1)
            return t + 1, f, opt_state, bad

        _, f, opt_state, bad_step = jax.lax.while_loop(running, body, (start, f, opt_state, bad_step))
        return f, opt_state, bad_step

    return jax.jit(advance, donate_argnums=(3, 4))


# --------------------------------------------------------------------------
# Input checks.


def _batch_rows(batch_indices, batch_size, key, n_train, steps):
    if batch_indices is None:
        rows = batch_indices_for(key, n_train, batch_size, steps)  # the finite trainer's order
    else:
        rows = check_batch_indices(batch_indices, n_train, steps)
    full = rows.shape[1] == n_train and bool(np.all(rows == np.arange(n_train)))
    return rows.astype(np.int32), full


# --------------------------------------------------------------------------
# Public entry point.


def solve(
    arch: Architecture,
    x_train,
    y_train,
    x_test,
    optimizer: Optimizer,
    steps: int,
    *,
    key,
    loss: str = "mse",
    train: str = "all",
    batch_size: Optional[int] = None,
    batch_indices=None,
    samples: int = 65536,
    replicas: int = 8,
    chunk_size: Optional[int] = None,
    storage_dtype: str = "float32",
    f0_train=None,
    f0_test=None,
    record: Optional[Sequence[int]] = None,
    progress: bool = False,
    devices=None,
    max_memory_bytes: Optional[int] = None,
) -> LimitResult:
    """Train the infinite-width limit of ``arch`` with ``optimizer`` by Monte Carlo.

    Args:
      arch: an MLP (``arch.is_mlp``) with at least one hidden layer.
      x_train: (N, d) training inputs; y_train: (N, k) targets, k = ``arch.out_dim``.
      x_test: (Nt, d) test inputs (or None).
      optimizer: an :class:`infinite_width.optim.Optimizer` (sgd, momentum, adam, sign).
      steps: number of training steps.
      key: jax PRNG key (or int seed). It draws the samples and, with
        ``batch_size``, the minibatch order
        of the package's one key derivation, the order
        :func:`infinite_width.finite.train` uses for the same key.
      loss: a name of :mod:`infinite_width.losses`; only ``chi = dloss/df`` enters.
      train: ``"all"`` (every group) or ``"readout"`` (readout weights and
        output bias only: "feature learning disabled").
      batch_size, batch_indices: minibatches; ``batch_indices`` (steps, B)
        overrides ``batch_size``. Default: full batch.
      samples: total Monte Carlo samples M per term, split into ``replicas``
        independent runs of M / R samples (R >= 2, gives the error bars).
      chunk_size: samples per replica processed at once in a step (bounds the
        step's temporaries; must divide M / R). Default: all of them (fastest:
        the fields are read in place), halved only while the memory estimate
        exceeds the available memory.
      storage_dtype: ``"float32"`` or ``"bfloat16"`` (half the memory and
        bandwidth; arithmetic stays float32).
      f0_train, f0_test: (N, k), (Nt, k) initial outputs (default zero: the
        centred model f - f_0).
      record: step numbers in [0, steps] to record (default every step).
      progress: show a tqdm progress bar.
      devices: jax devices to shard the samples over (default all of
        ``jax.devices()``); samples per chunk must be divisible by their number.
      max_memory_bytes: memory available per device, overriding the estimate
        from the device (or ``os.sysconf`` on the CPU).

    Same key, same sizes (samples, replicas, chunk_size) and inputs give the
    same result on any number of devices, up to float32 summation order.

    Raises:
      MemoryError: the configuration does not fit (checked before allocating).
      FloatingPointError: a prediction became NaN or Inf; names the step.
      ValueError, TypeError: bad inputs, named.
    """
    wall_start = time.perf_counter()
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
    if train not in TRAIN_MODES:
        raise ValueError(f"unknown train mode {train!r}; expected one of {TRAIN_MODES}")
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage_dtype {storage_dtype!r}; expected one of {tuple(STORAGE_DTYPES)}")
    steps = check_int("steps", steps, 0)
    samples = check_int("samples", samples, 2)
    replicas = check_int("replicas", replicas, 2)
    if samples % replicas:
        raise ValueError(f"samples ({samples}) must be a multiple of replicas ({replicas})")
    per_replica = samples // replicas
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty")

    with precision_scope("float32"):
        x_train, x_test_checked = validate_inputs(arch, x_train, x_test)
    n_train, k = x_train.shape[0], arch.out_dim
    x_test = np.zeros((0, x_train.shape[1]), np.float32) if x_test_checked is None else x_test_checked
    n_test = x_test.shape[0]
    y_train = check_targets("y_train", y_train, n_train, k)
    f0 = np.concatenate(
        [
            np.zeros((n_train, k), np.float32) if f0_train is None else check_targets("f0_train", f0_train, n_train, k),
            np.zeros((n_test, k), np.float32) if f0_test is None else check_targets("f0_test", f0_test, n_test, k),
        ]
    )
    key = as_key(key)
    rows, full_batch = _batch_rows(batch_indices, batch_size, key, n_train, steps)
    record_steps = np.arange(steps + 1) if record is None else check_record_list(record, steps)

    def memory_for(chunk):
        return estimate_memory(
            arch.depth, k, n_train, n_test, samples=samples, replicas=replicas, chunk_size=chunk,
            batch_size=rows.shape[1], storage_dtype=storage_dtype, train=train, devices=len(devices),
        )

    available = available_memory(devices[0]) if max_memory_bytes is None else int(max_memory_bytes)
    if chunk_size is None:
        # One chunk streams the stored fields in place; a chunk loop copies each chunk, so split only to fit.
        chunk_size = per_replica
        while chunk_size % (2 * len(devices)) == 0 and memory_for(chunk_size).total_bytes > available:
            chunk_size //= 2
    chunk_size = check_int("chunk_size", chunk_size, 1)
    if per_replica % chunk_size:
        raise ValueError(f"chunk_size ({chunk_size}) must divide the samples per replica ({per_replica})")
    if chunk_size % len(devices):
        raise ValueError(
            f"chunk_size ({chunk_size}) must be divisible by the number of devices ({len(devices)}) to shard samples"
        )
    memory = memory_for(chunk_size)
    check_memory(memory, available, samples)

    linear = not optimizer.adaptive
    terms, out_coefficient = _terms(arch, train, linear)
    shape = (per_replica // chunk_size, replicas, chunk_size)
    mesh = Mesh(np.array(devices), (_SAMPLES_AXIS,)) if len(devices) > 1 else None
    # Stored fields (nc, R, P, C, ...) and the optimizer state (nc, R, C, ...) are sharded over C.
    field_sharding = NamedSharding(mesh, PartitionSpec(None, None, None, _SAMPLES_AXIS)) if mesh is not None else None
    state_sharding = NamedSharding(mesh, PartitionSpec(None, None, _SAMPLES_AXIS)) if mesh is not None else None

    x_all = np.concatenate([x_train, x_test])
    with precision_scope("float32"):
        layer_kernels = kernels.layerwise(arch, x_all)
        samples_key = jax.random.fold_in(key, 1)
        stored, coordinate_key = _draw_samples(
            arch, layer_kernels, terms, samples_key, shape, STORAGE_DTYPES[storage_dtype], field_sharding
        )
        if any(t.v == "x" for t in terms):
            stored["x"] = _draw_coordinates(
                coordinate_key, jnp.asarray(x_all.T), shape=shape, dtype=STORAGE_DTYPES[storage_dtype],
                sharding=field_sharding,
            )
        replicated = (lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec()))) if mesh is not None else jnp.asarray
        y_dev = replicated(y_train)
        rows_dev = replicated(rows if rows.shape[0] else np.zeros((1, rows.shape[1]), np.int32))
        f = replicated(np.broadcast_to(f0, (replicas,) + f0.shape).copy())

        per_sample = (lambda x: jax.device_put(x, state_sharding)) if state_sharding is not None else (lambda x: x)
        grads_template = {
            t.name: per_sample(jnp.zeros(shape + ((k,) if t.per_output else ()), jnp.float32)) for t in terms
        }
        if out_coefficient != 0.0:
            grads_template["output_bias"] = jnp.zeros((replicas, k), jnp.float32)
        # optax's state mirrors the gradients, so the per-sample state is sharded like the samples.
        opt_state = optimizer.direction(eps_scale=1.0).init(grads_template)
        setup_time = time.perf_counter() - wall_start

        advance = _advance_fn(terms, out_coefficient, optimizer, loss, n_train, full_batch,
                              _gathers_rows(rows.shape[1], n_train + n_test), per_replica)
        bad = jnp.asarray(-1, jnp.int32)
        boundaries = _blocks(record_steps, steps, progress)
        records = {}
        bar = tqdm(total=steps, disable=not progress, desc="adam limit", unit="step")
        t = 0
        with bar:
            for stop in boundaries:
                if stop > t:
                    f, opt_state, bad = advance(
                        stored, y_dev, rows_dev, f, opt_state, bad, jnp.int32(t), jnp.int32(stop)
                    )
                    bad_step = int(bad)
                    if bad_step >= 0:
                        raise FloatingPointError(
                            f"the Adam-limit predictions became NaN or Inf at step {bad_step} "
                            f"(optimizer {optimizer.describe()}); lower the learning rate"
                        )
                    bar.update(stop - t)
                    t = stop
                if stop in record_steps:
                    records[stop] = np.asarray(f)
    trajectory = np.stack([records[s] for s in record_steps], axis=1)  # (R, T, P, k)
    mean = trajectory.mean(axis=0)
    stderr = trajectory.std(axis=0, ddof=1) / math.sqrt(replicas)
    return LimitResult(
        steps=record_steps,
        train_predictions=mean[:, :n_train],
        test_predictions=mean[:, n_train:],
        train_stderr=stderr[:, :n_train],
        test_stderr=stderr[:, n_train:],
        replica_train_predictions=trajectory[:, :, :n_train],
        replica_test_predictions=trajectory[:, :, n_train:],
        samples=samples,
        replicas=replicas,
        chunk_size=chunk_size,
        storage_dtype=storage_dtype,
        devices=len(devices),
        memory=memory,
        setup_time_s=setup_time,
        wall_time_s=time.perf_counter() - wall_start,
        optimizer=optimizer,
        loss=loss,
        train=train,
    )


def _blocks(record_steps, steps, progress):
    """Step numbers at which to return to Python: every recorded step, plus ~100 blocks with a progress bar."""
    stops = set(int(s) for s in record_steps) | {steps}
    if progress and steps:
        stops |= set(range(0, steps, max(1, steps // 100)))
    return sorted(stops)
