"""The Neural Network Prior Kernel (Amid, Anil, Kotlowski & Warmuth, 2022).

For an architecture and a distribution ``p0`` of its initial parameters,

    NNPK(x, x') = E_{theta ~ p0}[ f(x; theta)^T f(x'; theta) ],

the expected inner product of the network's outputs (logits) at
initialisation (docs/theory.md, section 8). [`nnpk`][infinite_width.kernels.nnpk] estimates it with
``m = networks`` independently initialised finite networks of a given width:

    K_hat(x, x') = (1/m) sum_{s=1}^{m} f(x; theta_s)^T f(x'; theta_s),

an unbiased estimator of the finite-width NNPK whose variance falls like
``1/m``. It needs only forward passes, so it works for every architecture
a finite network can be built for, including those without a closed-form
kernel (``MaxPool``; ``LayerNorm`` at finite width).

Normalization: ``normalize="mean"`` (the default) divides by ``out_dim``,
so that ``K_hat -> NNGP`` as the width grows (the library's kernels are per
output channel, [`infinite_width.kernels.nngp`][]): with Gaussian
initialisation in NTK parametrization the outputs become independent,
identically distributed Gaussian processes. ``normalize="sum"``, the paper's
definition, sums over the outputs (``K_hat -> out_dim * NNGP``). Kernel ridge
regression with a relative ridge and kernel alignment give the same results
for both.

Prefixes: [`nnpk_prefixes`][infinite_width.kernels.nnpk_prefixes] streams the same estimate and yields it
after the first ``m`` networks for chosen ``m``, e.g. every power of two up
to 1,024, at the cost of one pass over the largest ``m``.

Randomness: the parameters of network ``s`` are ``net.init(network_keys(key,
networks, prng)[s], x1.shape[1:])`` for ``net =
infinite_width.finite.network(arch, width, parametrization, init)``: the
same ``key`` (an int seed or a jax key) gives the same networks in
[`nnpk`][infinite_width.kernels.nnpk], [`nnpk_prefixes`][infinite_width.kernels.nnpk_prefixes] and
[`nnpk_features`][infinite_width.kernels.nnpk_features], however the work is chunked or batched. The parameters are
drawn with the PRNG implementation ``prng`` (one of [`PRNG_IMPLS`][infinite_width.kernels.PRNG_IMPLS]), by default
[`DEFAULT_PRNG`][infinite_width.kernels.DEFAULT_PRNG]: ``"philox4x32"``, which draws Gaussian parameters two
to three times faster than jax's default ``"threefry2x32"`` on CPU
(docs/BENCHMARKS.md, NNPK section). Both are counter-based, so a vmapped draw
equals the draw of each key alone. jax has philox4x32 since 0.10.2; on older
jax (the library supports jax >= 0.6) it is missing from [`PRNG_IMPLS`][infinite_width.kernels.PRNG_IMPLS]
and the default falls back to ``"threefry2x32"``, so the same seed gives
other networks there: record ``DEFAULT_PRNG`` (or pass ``prng``) with results.

Memory: networks are drawn and run in chunks whose working set (parameters,
activations and outputs of every network in the chunk) stays within about
64 MB and within the free memory, next to the kernel itself;
[`plan_memory`][infinite_width.kernels.plan_memory] gives the plan, and a computation that cannot fit even
one network at a time is refused with a ``MemoryError`` that says what would.

Shapes: inputs ``x1`` of shape (N1, d) for vector architectures or
(N1, H, W, C) for image ones, ``x2`` likewise (``None`` means ``x2 = x1``);
kernels of shape (N1, N2).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width._src.checks import as_key, check_int, check_kernel_matrix as _as_kernel, validate_inputs
from infinite_width._src.memory import available_memory
from infinite_width._src.numerics import pad_rows, precision_scope
from infinite_width.architectures import Architecture
from infinite_width.finite.networks import INITS, Network, network

__all__ = [
    "nnpk",
    "nnpk_prefixes",
    "nnpk_features",
    "network_keys",
    "plan_memory",
    "MemoryPlan",
    "kernel_alignment",
    "NORMALIZATIONS",
    "PRNG_IMPLS",
    "DEFAULT_PRNG",
]

NORMALIZATIONS: Tuple[str, ...] = ("sum", "mean")
"""``"sum"``: sum over outputs (-> out_dim * NNGP); ``"mean"``: mean over outputs (-> NNGP)."""



def _has_prng(name: str) -> bool:
    # Abstract evaluation only: no device is initialised at import.
    try:
        jax.eval_shape(lambda: jax.random.key(0, impl=name))
    except (ValueError, TypeError):
        return False
    return True


PRNG_IMPLS: Tuple[str, ...] = tuple(name for name in ("philox4x32", "threefry2x32") if _has_prng(name))
"""PRNG implementations (jax names) for the parameter draws, those this jax
has of ``("philox4x32", "threefry2x32")``. Both are counter-based with
64-bit keys. Left out: ``"rbg"``/``"unsafe_rbg"``, whose vmapped draws
depend on the first key of the batch only (so results would change with the
chunking), and ``"philox2x32"``, whose 32-bit keys collide among about 2^16
networks."""

DEFAULT_PRNG = PRNG_IMPLS[0]
"""The default PRNG of the parameter draws: ``"philox4x32"``, or
``"threefry2x32"`` on jax < 0.10.2, which lacks philox4x32 (module docstring)."""

# Working set of one chunk of networks. Large enough to run thousands of
# small networks at once; small enough that large ones (width 1024 on 2,000
# rows) run one at a time, which on CPU beat vmapped (batched) matmuls of
# several networks by up to 25% (docs/BENCHMARKS.md, NNPK section).
_CHUNK_BUDGET_BYTES = 64 * 2**20
# The kernel is updated with the outputs of at least this many (network, output)
# columns at once: one (N1, columns) @ (columns, N2) product and one memory-bound
# N1 x N2 merge per group instead of per chunk (per network, for large networks).
_GROUP_COLUMNS = 512
_GIB = 2.0**30


# --------------------------------------------------------------------------
# Argument checks and keys.


def _check_options(init, normalize):
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; expected one of {NORMALIZATIONS}")


def network_keys(key, networks: int, prng: str = DEFAULT_PRNG) -> jax.Array:
    """Keys of the ``networks`` random networks of [`nnpk`][infinite_width.kernels.nnpk], typed keys of ``prng``, shape (networks,).

    ``key`` is an int seed, a raw key (``jax.random.PRNGKey``) or a typed key
    (``jax.random.key``). A key of ``prng`` itself is split directly
    (``jax.random.split(key, networks)``); any other key first gives the
    data of a ``prng`` key through ``jax.random.bits``.
    """
    networks = check_int("networks", networks, 1)
    if prng not in PRNG_IMPLS:
        missing = " (philox4x32 needs jax >= 0.10.2)" if prng == "philox4x32" else ""
        raise ValueError(f"unknown prng {prng!r}; expected one of {PRNG_IMPLS}{missing}")
    key = as_key(key)
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.dtype != jnp.uint32:
            raise TypeError(f"key must be a jax PRNG key (uint32 data) or an int seed, got dtype {key.dtype}")
        key = jax.random.wrap_key_data(key)
    if key.shape != ():
        raise ValueError(f"key must be a single PRNG key, got a key array of shape {key.shape}")
    return _split_as(key, networks, prng)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _split_as(key, networks: int, prng: str):
    if str(jax.random.key_impl(key)) != prng:
        data_shape = jax.random.key_data(jax.random.key(0, impl=prng)).shape
        key = jax.random.wrap_key_data(jax.random.bits(key, data_shape, jnp.uint32), impl=prng)
    return jax.random.split(key, networks)


# --------------------------------------------------------------------------
# Memory plan.


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes of an NNPK computation, and how many networks it runs at once.

    Attributes:
      network_chunk: networks drawn and run at once (vmapped).
      per_network: bytes per network of a chunk: ``weights`` (four copies of
        its parameters; XLA holds about three at the peak: the draws, the
        stored and the effective parameters), ``activations`` (three copies
        of its largest intermediate on the rows of one forward pass: a
        layer's input, output and one temporary) and ``outputs`` (its logits
        on x1 and x2, twice).
      fixed: bytes independent of the chunk: ``inputs`` (x1 and x2, with
        padded copies), ``grouped_outputs`` (the outputs of the chunks
        gathered for one kernel update, and their concatenation), ``kernel``
        (the N1 x N2 accumulators; more with ``return_stderr``) or
        ``features`` (the (N, m * out_dim) result of [`nnpk_features`][infinite_width.kernels.nnpk_features],
        with its copies), and with orthogonal init the ``orthogonalization``
        temporaries (networks are orthogonalized one at a time).
      available_bytes: the memory the plan had to fit in.
    """

    network_chunk: int
    per_network: Dict[str, int]
    fixed: Dict[str, int]
    available_bytes: int

    @property
    def network_bytes(self) -> int:
        return int(sum(self.per_network.values()))

    @property
    def fixed_bytes(self) -> int:
        return int(sum(self.fixed.values()))

    @property
    def total_bytes(self) -> int:
        """Estimated peak of the computation: the fixed part plus one chunk of networks."""
        return self.fixed_bytes + self.network_chunk * self.network_bytes

    def describe(self) -> str:
        detail = lambda parts: ", ".join(f"{name} {value / _GIB:.3g}" for name, value in parts.items())
        return (
            f"{self.total_bytes / _GIB:.3g} GiB with {self.network_chunk} network(s) at once (GiB per network: "
            f"{detail(self.per_network)}; GiB once: {detail(self.fixed)})"
        )


@functools.lru_cache(maxsize=None)
def _network_sizes(net: Network, input_shape: Tuple[int, ...], dtype) -> Tuple[int, int]:
    """(number of parameters, entries of the largest intermediate per input row) of one network."""
    params = jax.eval_shape(lambda key: net.init(key, input_shape), jax.random.key(0))
    n_params = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))

    def intermediate_sizes(rows):
        jaxpr = jax.make_jaxpr(net.apply)(params, jax.ShapeDtypeStruct((rows, *input_shape), dtype))
        return [math.prod(var.aval.shape) for eqn in jaxpr.eqns for var in eqn.outvars]

    # What grows with the rows is activations: the growth from 2 to 3 rows is one row's worth.
    per_row = max(b - a for a, b in zip(intermediate_sizes(2), intermediate_sizes(3)))
    return n_params, max(per_row, 1)


def _shape(name, shape, arch: Architecture) -> Tuple[int, ...]:
    rank = 2 if arch.input_kind == "vector" else 4
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as error:
        raise TypeError(f"{name} must be a shape (a tuple of ints), got {shape!r}") from error
    if len(shape) != rank or min(shape) < 1:
        layout = "(N, d)" if rank == 2 else "(N, H, W, C)"
        raise ValueError(f"{name} must be a shape {layout} for architecture {arch.name!r}, got {shape}")
    return shape


def _balanced(networks: int, most: int) -> int:
    # Equal chunks (the last one is padded): one compilation, little wasted work.
    n_chunks = -(-networks // most)
    return -(-networks // n_chunks)


def plan_memory(
    arch: Architecture,
    x1_shape,
    x2_shape=None,
    *,
    width: int,
    networks: int,
    init: str = "gaussian",
    parametrization: str = "ntk",
    batch_size: Optional[int] = None,
    network_chunk: Optional[int] = None,
    return_stderr: bool = False,
    features: bool = False,
    dtype: str = "float32",
    max_memory_bytes: Optional[int] = None,
) -> MemoryPlan:
    """How [`nnpk`][infinite_width.kernels.nnpk] (or, with ``features=True``, [`nnpk_features`][infinite_width.kernels.nnpk_features]) fits in memory.

    Counts, per network of a chunk, its parameters, its activations on one
    forward pass of ``batch_size`` rows (all rows when None) and its outputs,
    plus the inputs and the (N1, N2) kernel accumulators. ``network_chunk=None``
    picks the largest chunk whose working set stays within about 64 MB and
    the available memory (chunks of equal size); an explicit ``network_chunk``
    is kept (balanced to equal chunks of at most that size) if it fits.

    ``arch``, ``width``, ``networks``, ``init``, ``parametrization``,
    ``batch_size``, ``network_chunk``, ``return_stderr`` and ``dtype`` are as
    for [`nnpk`][infinite_width.kernels.nnpk].

    Args:
      x1_shape: shape of x1, (N1, d) or (N1, H, W, C).
      x2_shape: shape of x2, or None for x2 = x1.
      features: plan [`nnpk_features`][infinite_width.kernels.nnpk_features] (its (N1, m * out_dim) result) instead of
        the kernel.
      max_memory_bytes: memory available, overriding the free memory of the
        device (``device.memory_stats()``, or free physical memory on the CPU).

    Raises:
      MemoryError: not even one network at a time fits, or the explicit
        ``network_chunk`` does not; the message says what would fit.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    width = check_int("width", width, 1)
    networks = check_int("networks", networks, 1)
    x1_shape = _shape("x1_shape", x1_shape, arch)
    x2_shape = None if x2_shape is None else _shape("x2_shape", x2_shape, arch)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1)
    if network_chunk is not None:
        network_chunk = check_int("network_chunk", network_chunk, 1)
    if max_memory_bytes is not None:
        max_memory_bytes = check_int("max_memory_bytes", max_memory_bytes, 1)
    with precision_scope(dtype) as np_dtype:
        plan_at = functools.partial(
            _plan, arch, x1_shape, x2_shape, networks=networks, init=init, parametrization=parametrization,
            return_stderr=return_stderr, features=features, np_dtype=np_dtype,
            available=available_memory(jax.devices()[0]) if max_memory_bytes is None else max_memory_bytes,
        )
        plan = plan_at(width=width, batch_size=batch_size)
        fitting = (plan.available_bytes - plan.fixed_bytes) // plan.network_bytes
        if fitting < 1:
            rows = max(x1_shape[0], (x2_shape or x1_shape)[0], 1 if batch_size is None else 0)
            raise MemoryError(_advice(plan, arch, width, batch_size, min(rows, batch_size or rows), plan_at))
    if network_chunk is None:
        chunk = _balanced(networks, max(1, min(fitting, _CHUNK_BUDGET_BYTES // plan.network_bytes, networks)))
    else:
        chunk = _balanced(networks, min(network_chunk, networks))
        if chunk > fitting:
            plan = dataclasses.replace(plan, network_chunk=chunk)
            raise MemoryError(
                f"the NNPK of {arch.name!r} with network_chunk={network_chunk} needs about {plan.describe()}, but "
                f"only {plan.available_bytes / _GIB:.3g} GiB is available: network_chunk <= {fitting} fits (None "
                f"chooses one), or raise max_memory_bytes if the estimate of free memory is wrong."
            )
    return dataclasses.replace(plan, network_chunk=chunk)


def _plan(
    arch, x1_shape, x2_shape, *, width, batch_size, networks, init, parametrization, return_stderr, features,
    np_dtype, available,
) -> MemoryPlan:
    """The bytes of [`MemoryPlan`][infinite_width.kernels.MemoryPlan] (with a chunk of one network) for checked arguments."""
    itemsize = np.dtype(np_dtype).itemsize
    n_params, per_row = _network_sizes(network(arch, width, parametrization, init), x1_shape[1:], np_dtype)
    n1 = x1_shape[0]
    n2 = n1 if x2_shape is None else x2_shape[0]
    padded = lambda n: n if not batch_size or n <= batch_size else -(-n // batch_size) * batch_size
    rows = max(n1, n2) if batch_size is None else min(max(n1, n2), batch_size)
    out_rows = padded(n1) + (0 if x2_shape is None else padded(n2))
    per_network = {
        "weights": 4 * n_params * itemsize,
        "activations": 3 * rows * per_row * itemsize,
        "outputs": 2 * out_rows * arch.out_dim * itemsize,
    }
    fixed = {
        "inputs": 2 * out_rows * math.prod(x1_shape[1:]) * itemsize,
        "grouped_outputs": 2 * _GROUP_COLUMNS * out_rows * itemsize,
    }
    if init == "orthogonal":  # QR temporaries of one network at a time (measured: about 6 copies)
        fixed["orthogonalization"] = 7 * n_params * itemsize
    if features:
        fixed["features"] = 3 * n1 * networks * arch.out_dim * itemsize
    else:
        fixed["kernel"] = (10 if return_stderr else 6) * n1 * n2 * itemsize
    return MemoryPlan(1, per_network, fixed, available)


def _largest_fitting(fits, high: int) -> int:
    """The largest n in [1, high) with fits(n) (fits is monotone), or 0 if none."""
    low = 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _advice(plan: MemoryPlan, arch: Architecture, width: int, batch_size: Optional[int], rows: int, plan_at) -> str:
    """The MemoryError message when not even one network fits: what is too big and what would fit."""

    def fits(**change):
        changed = plan_at(**{"width": width, "batch_size": batch_size, **change})
        return changed.fixed_bytes + changed.network_bytes <= changed.available_bytes

    message = (
        f"the NNPK of {arch.name!r} at width {width} needs about {plan.describe()}, but only "
        f"{plan.available_bytes / _GIB:.3g} GiB is available. "
    )
    fitting_rows = _largest_fitting(lambda b: fits(batch_size=b), rows)
    fitting_width = 0 if fitting_rows else _largest_fitting(lambda w: fits(width=w), width)
    if fitting_rows:
        message += f"Run fewer rows per forward pass: batch_size <= {fitting_rows} fits"
    elif fitting_width:
        weights = plan.per_network["weights"]
        message += f"The weights of one network alone need {weights / _GIB:.3g} GiB: width <= {fitting_width} fits"
    else:
        message += (
            f"The inputs and result alone need {plan.fixed_bytes / _GIB:.3g} GiB: pass fewer rows of x1/x2 "
            "(or networks) per call"
        )
    return message + ", or raise max_memory_bytes if the estimate of free memory is wrong."


# --------------------------------------------------------------------------
# Outputs of chunk after chunk of networks.


@functools.lru_cache(maxsize=None)
def _chunk_fns(arch: Architecture, width: int, parametrization: str, init: str, input_shape: Tuple[int, ...]):
    """Jitted ``init`` and ``apply`` of the finite network, vectorized over networks."""
    net = network(arch, width, parametrization=parametrization, init=init)
    init_chunk = jax.jit(functools.partial(net.init_many, input_shape=input_shape))
    apply_chunk = jax.jit(jax.vmap(net.apply, in_axes=(0, None)))
    return init_chunk, apply_chunk


def _on_device(x: np.ndarray, batch_size: Optional[int]) -> jax.Array:
    # Once per call, not per chunk: padded to whole batches (one compilation), then on the device.
    return jnp.asarray(x if not batch_size or x.shape[0] <= batch_size else pad_rows(x, batch_size))


def _apply_rows(apply_chunk, params, x: jax.Array, n: int, batch_size: Optional[int]):
    """Outputs of every network of the chunk on the n rows of x, shape (chunk, n, out_dim)."""
    if not batch_size or n <= batch_size:
        return apply_chunk(params, x)
    blocks = [apply_chunk(params, x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return jnp.concatenate(blocks, axis=1)[:, :n]


def _network_outputs(
    arch, x1, x2, *, width, networks, key, init, parametrization, batch_size, network_chunk, normalize, prng,
    return_stderr, features, dtype, max_memory_bytes, np_dtype, boundaries=(),
) -> Iterator[Tuple[jax.Array, jax.Array]]:
    """Validate everything now; return a generator of ``(f1, f2)``, the outputs of group after group of networks.

    Shapes (g, N1, out_dim) and (g, N2, out_dim) (``f2`` is ``f1`` when x2 is
    None); the groups follow the networks of [`network_keys`][infinite_width.kernels.network_keys] in order.
    A group is one chunk, or several, up to `_GROUP_COLUMNS` outputs,
    and is cut so that no group straddles a count of networks in
    ``boundaries``. Called inside ``precision_scope(dtype)``; the generator
    enters it again for each group.
    """
    _check_options(init, normalize)
    x1, x2 = validate_inputs(arch, x1, x2, np_dtype)
    keys = network_keys(key, networks, prng)
    plan = plan_memory(
        arch, x1.shape, None if x2 is None else x2.shape, width=width, networks=networks, init=init,
        parametrization=parametrization, batch_size=batch_size, network_chunk=network_chunk,
        return_stderr=return_stderr, features=features, dtype=dtype, max_memory_bytes=max_memory_bytes,
    )
    chunk = plan.network_chunk
    init_chunk, apply_chunk = _chunk_fns(arch, int(width), parametrization, init, tuple(x1.shape[1:]))
    inputs = [(_on_device(x, batch_size), x.shape[0]) for x in ((x1,) if x2 is None else (x1, x2))]
    group = chunk * max(1, -(-_GROUP_COLUMNS // (chunk * arch.out_dim)))
    cuts = sorted(set(boundaries) | {networks})

    def generate():
        pending, done = [], 0
        for start in range(0, networks, chunk):
            with precision_scope(dtype):
                chunk_keys = keys[start : start + chunk]
                valid = chunk_keys.shape[0]
                if valid < chunk:  # the last chunk is padded to the common shape, and the extra networks dropped
                    chunk_keys = jnp.concatenate([chunk_keys, jnp.repeat(chunk_keys[:1], chunk - valid)])
                params = init_chunk(chunk_keys)
                outputs = [_apply_rows(apply_chunk, params, x, n, batch_size) for x, n in inputs]
                pending.append(outputs if valid == chunk else [f[:valid] for f in outputs])
                if len(pending) * chunk < group and start + chunk < networks and not _crosses(done, start + valid, cuts):
                    continue
                grouped = [jnp.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*pending)]
                pending = []
                pieces = []
                for cut in (c for c in cuts if done < c <= start + valid):
                    pieces.append([f[: cut - done] for f in grouped])
                    grouped = [f[cut - done :] for f in grouped]
                    done = cut
                if grouped[0].shape[0]:
                    pieces.append(grouped)
                    done = start + valid
            for piece in pieces:
                yield piece[0], piece[-1]

    return generate()


def _crosses(done: int, reached: int, cuts) -> bool:
    """Whether a count in ``cuts`` lies in (done, reached]: the pending group must be cut there."""
    return any(done < cut <= reached for cut in cuts)


@jax.jit
def _chunk_mean(f1, f2):
    # (1/c) sum_s f1_s f2_s^T as one matrix product over (network, output).
    return jnp.einsum("snk,smk->nm", f1, f2) / f1.shape[0]


@jax.jit
def _chunk_sum_sq_dev(f1, f2, mean):
    # sum_s (f1_s f2_s^T - mean)^2, one network at a time: memory O(N1 N2).
    def step(total, f):
        return total + (f[0] @ f[1].T - mean) ** 2, None

    total, _ = jax.lax.scan(step, jnp.zeros_like(mean), (f1, f2))
    return total


@jax.jit
def _merge(count_a, mean_a, m2_a, count_b, mean_b, m2_b):
    # Chan et al.'s pairwise update of (mean, sum of squared deviations):
    # stable in float32, unlike accumulating sums of squares.
    count = count_a + count_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (count_b / count)
    m2 = m2_a + m2_b + delta**2 * (count_a * count_b / count)
    return mean, m2


@jax.jit
def _merge_mean(count_a, mean_a, count_b, mean_b):
    # The mean part of _merge, without the squared deviations nobody asked for.
    return mean_a + (mean_b - mean_a) * (count_b / (count_a + count_b))


def _running_moments(groups, return_stderr: bool, dtype: str):
    """``(count, mean, m2)`` after each group of ``(f1, f2)``: networks so far, their kernel mean, squared deviations.

    ``m2`` is None without ``return_stderr``.
    """
    count = mean = m2 = None
    for f1, f2 in groups:
        with precision_scope(dtype):
            group_count = f1.shape[0]
            group_mean = _chunk_mean(f1, f2)
            group_m2 = _chunk_sum_sq_dev(f1, f2, group_mean) if return_stderr else None
            if count is None:
                count, mean, m2 = group_count, group_mean, group_m2
            else:
                if return_stderr:
                    mean, m2 = _merge(float(count), mean, m2, float(group_count), group_mean, group_m2)
                else:
                    mean = _merge_mean(float(count), mean, float(group_count), group_mean)
                count += group_count
        yield count, mean, m2


def _finished(arch: Architecture, mean, normalize: str) -> np.ndarray:
    """The kernel as a numpy array, scaled for ``normalize``; refuses non-finite entries."""
    kernel = np.asarray(mean) * _scale(arch, normalize)
    if not np.all(np.isfinite(kernel)):
        raise FloatingPointError(f"the NNPK of {arch.name!r} has non-finite entries (overflowing network outputs?)")
    return kernel


def _scale(arch: Architecture, normalize: str) -> float:
    return 1.0 / arch.out_dim if normalize == "mean" else 1.0


def _check_prefixes(prefixes, networks) -> Tuple[int, ...]:
    networks = check_int("networks", networks, 1)
    if prefixes is None:
        powers = [2**i for i in range(networks.bit_length()) if 2**i < networks]
        return tuple(powers + [networks])
    if isinstance(prefixes, (str, bytes)) or not isinstance(prefixes, Iterable):
        raise TypeError(f"prefixes must be a list of network counts, got {prefixes!r}")
    checked = sorted({check_int("prefixes", m, 1) for m in prefixes})
    if not checked:
        raise ValueError("prefixes is empty: give at least one count of networks")
    if checked[-1] > networks:
        raise ValueError(f"prefixes must be at most networks={networks}, got {checked[-1]}")
    return tuple(checked)


# --------------------------------------------------------------------------
# Public API.


def nnpk(
    arch: Architecture,
    x1,
    x2=None,
    *,
    width: int,
    networks: int,
    key,
    init: str = "gaussian",
    parametrization: str = "ntk",
    batch_size: Optional[int] = None,
    network_chunk: Optional[int] = None,
    return_stderr: bool = False,
    normalize: str = "mean",
    prng: str = DEFAULT_PRNG,
    dtype: str = "float32",
    max_memory_bytes: Optional[int] = None,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Monte Carlo Neural Network Prior Kernel of ``networks`` random networks, shape (N1, N2).

    ``K[i, j] = (1/m) sum_s f(x1_i; theta_s) . f(x2_j; theta_s)`` over
    ``m = networks`` networks of ``width`` drawn with ``init`` in
    ``parametrization`` (see [`infinite_width.finite.network`][]); divided by
    ``out_dim`` when ``normalize="mean"`` (module docstring).

    Args:
      arch: any architecture with a finite network, closed-form kernel or not.
      x1: inputs, shape (N1, d) or (N1, H, W, C).
      x2: inputs, shape (N2, ...) with the feature shape of ``x1``; None means x1.
      width: hidden width (channels) of the networks, >= 1.
      networks: number of random networks m, >= 1 (>= 2 with ``return_stderr``).
      key: int seed or jax PRNG key; network s uses ``network_keys(key, networks, prng)[s]``.
      init: ``"gaussian"``, ``"orthogonal"`` or ``"uniform"`` ([`infinite_width.finite.networks`][]).
      parametrization: ``"ntk"``, ``"standard"`` (the same functions at
        initialisation, hence the same NNPK) or ``"mup"``.
      batch_size: rows of x1/x2 per forward pass (None: all rows at once).
      network_chunk: at most this many networks drawn and run at once
        (vmapped); None picks a chunk whose working set stays within about
        64 MB and the free memory ([`plan_memory`][infinite_width.kernels.plan_memory]). Memory of the kernel
        itself is O(N1 N2) whatever the number of networks.
      return_stderr: also return the standard error of each entry,
        ``std_s(f_s f_s^T) / sqrt(m)`` with the unbiased (ddof=1) standard deviation over the networks.
      normalize: ``"mean"`` over outputs (the default, -> NNGP) or ``"sum"`` (-> out_dim * NNGP).
      prng: PRNG implementation of the parameter draws, one of
        [`PRNG_IMPLS`][infinite_width.kernels.PRNG_IMPLS] (default
        [`DEFAULT_PRNG`][infinite_width.kernels.DEFAULT_PRNG]: ``"philox4x32"``, or ``"threefry2x32"`` on jax < 0.10.2).
      dtype: ``"float32"`` or ``"float64"``; matrix products at full precision
        (``jax.default_matmul_precision("highest")``).
      max_memory_bytes: memory available, overriding the free memory of the
        device ([`plan_memory`][infinite_width.kernels.plan_memory]).

    Returns:
      ``K`` of shape (N1, N2), or ``(K, stderr)`` with ``return_stderr=True``.

    Raises:
      MemoryError: before allocating, when not even one network at a time
        fits (or the explicit ``network_chunk`` does not); says what would fit.
    """
    if return_stderr and isinstance(networks, (int, np.integer)) and not isinstance(networks, bool) and networks < 2:
        raise ValueError(f"return_stderr needs networks >= 2, got {networks}")
    with precision_scope(dtype) as np_dtype:
        groups = _network_outputs(
            arch, x1, x2, width=width, networks=networks, key=key, init=init, parametrization=parametrization,
            batch_size=batch_size, network_chunk=network_chunk, normalize=normalize, prng=prng,
            return_stderr=return_stderr, features=False, dtype=dtype, max_memory_bytes=max_memory_bytes,
            np_dtype=np_dtype,
        )
        for count, mean, m2 in _running_moments(groups, return_stderr, dtype):
            pass
        kernel = _finished(arch, mean, normalize)
        if not return_stderr:
            return kernel
        stderr = np.sqrt(np.maximum(np.asarray(m2), 0.0) / (count - 1) / count) * _scale(arch, normalize)
        return kernel, stderr


def nnpk_prefixes(
    arch: Architecture,
    x1,
    x2=None,
    *,
    width: int,
    networks: int,
    key,
    prefixes: Optional[Sequence[int]] = None,
    init: str = "gaussian",
    parametrization: str = "ntk",
    batch_size: Optional[int] = None,
    network_chunk: Optional[int] = None,
    normalize: str = "mean",
    prng: str = DEFAULT_PRNG,
    dtype: str = "float32",
    max_memory_bytes: Optional[int] = None,
) -> Iterator[Tuple[int, np.ndarray]]:
    """The NNPK of the first ``m`` of ``networks`` random networks, for each ``m`` in ``prefixes``, from one pass.

    Yields ``(m, K_m)`` in increasing ``m``, with ``K_m`` of shape (N1, N2)
    the average of ``f_s(x1) f_s(x2)^T`` over networks ``s = 0 .. m-1`` of
    ``network_keys(key, networks, prng)``: the last one equals
    ``nnpk(..., networks=networks)`` with the same arguments. Draws and runs
    each network once, so the whole curve of accuracy (or alignment) against
    ``m`` costs what the largest ``m`` costs. The networks of a prefix are not
    those of ``nnpk(..., networks=m)``: the keys of ``m`` networks are split
    from ``key`` for ``networks`` networks.

    Args:
      prefixes: counts of networks ``1 <= m <= networks`` (any order,
        duplicates ignored); None means every power of two below ``networks``,
        and ``networks``.

    The other arguments are as for [`nnpk`][infinite_width.kernels.nnpk] (no ``return_stderr``). They
    are checked, and the memory planned, when this is called, before the
    first network is drawn.
    """
    prefixes = _check_prefixes(prefixes, networks)
    with precision_scope(dtype) as np_dtype:
        groups = _network_outputs(
            arch, x1, x2, width=width, networks=networks, key=key, init=init, parametrization=parametrization,
            batch_size=batch_size, network_chunk=network_chunk, normalize=normalize, prng=prng,
            return_stderr=False, features=False, dtype=dtype, max_memory_bytes=max_memory_bytes,
            np_dtype=np_dtype, boundaries=prefixes,
        )
    wanted = set(prefixes)
    return (
        (count, _finished(arch, mean, normalize))
        for count, mean, _ in _running_moments(groups, False, dtype)
        if count in wanted
    )


def nnpk_features(
    arch: Architecture,
    x,
    *,
    width: int,
    networks: int,
    key,
    init: str = "gaussian",
    parametrization: str = "ntk",
    batch_size: Optional[int] = None,
    network_chunk: Optional[int] = None,
    normalize: str = "mean",
    prng: str = DEFAULT_PRNG,
    dtype: str = "float32",
    max_memory_bytes: Optional[int] = None,
) -> np.ndarray:
    """Random features of the NNPK: the logits of the m networks side by side, shape (N, m * out_dim).

    Columns ``s * out_dim .. (s + 1) * out_dim - 1`` are the outputs of
    network ``s``, scaled by ``1/sqrt(m * out_dim)`` (``1/sqrt(m)`` with
    ``normalize="sum"``), so that ``features(x1) @ features(x2).T`` equals
    ``nnpk(arch, x1, x2, ...)`` for the same key and options. A linear
    readout on these features is kernel regression with the estimated NNPK.
    Arguments as for [`nnpk`][infinite_width.kernels.nnpk]; ``x`` has shape (N, d) or (N, H, W, C).
    """
    with precision_scope(dtype) as np_dtype:
        chunks = _network_outputs(
            arch, x, None, width=width, networks=networks, key=key, init=init, parametrization=parametrization,
            batch_size=batch_size, network_chunk=network_chunk, normalize=normalize, prng=prng,
            return_stderr=False, features=True, dtype=dtype, max_memory_bytes=max_memory_bytes,
            np_dtype=np_dtype,
        )
        outputs = np.concatenate([np.asarray(f1) for f1, _ in chunks], axis=0)  # (m, N, out_dim)
        features = np.transpose(outputs, (1, 0, 2)).reshape(outputs.shape[1], -1)
        return features * math.sqrt(_scale(arch, normalize) / outputs.shape[0])


def kernel_alignment(K1, K2, *, centered: bool = True) -> float:
    """Kernel alignment ``<K1, K2>_F / (||K1||_F ||K2||_F)`` of two (N, N) kernels, in [-1, 1].

    ``centered=True`` (default) is the centered alignment of Cortes, Mohri &
    Rostamizadeh (2012): both kernels are first centered in feature space,
    ``Kc = H K H`` with ``H = I - 11^T/N``, so that a constant offset (e.g. a
    bias variance) does not inflate the score. ``centered=False`` is the
    uncentered alignment of Cristianini et al. (2002). Both are invariant to
    positive rescaling of either kernel, so ``NNPK`` and ``out_dim * NNGP``
    align as well as ``NNPK/out_dim`` and ``NNGP``.
    """
    K1 = _as_kernel("K1", K1, square=True)
    K2 = _as_kernel("K2", K2, square=True)
    if K1.shape != K2.shape:
        raise ValueError(f"K1 and K2 must have the same shape, got {K1.shape} and {K2.shape}")
    if centered:
        K1 = K1 - K1.mean(axis=0, keepdims=True) - K1.mean(axis=1, keepdims=True) + K1.mean()
        K2 = K2 - K2.mean(axis=0, keepdims=True) - K2.mean(axis=1, keepdims=True) + K2.mean()
    norms = np.linalg.norm(K1) * np.linalg.norm(K2)
    if norms == 0.0:
        raise ValueError("kernel alignment is undefined for a zero (or, centered, constant) kernel")
    return float(np.sum(K1 * K2) / norms)
