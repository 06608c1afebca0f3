"""Closed-form infinite-width NNGP and NTK kernels, as JAX functions.

Sources: an [`Architecture`][infinite_width.Architecture], or any neural-tangents
stax ``kernel_fn`` (``infinite_width.nt.stax.serial(...)[2]``).

Shapes: inputs ``x1`` of shape (N1, d) for MLPs or (N1, H, W, C) for
convolutional networks, ``x2`` likewise (``None`` means ``x2 = x1``); a
``kernel_fn`` takes any (N, ...) arrays. Kernels are returned per output
channel, shape (N1, N2), as neural-tangents returns them: the full kernel of
the ``out_dim`` outputs is ``K ⊗ I``.

JAX transformations: [`nngp`][infinite_width.kernels.nngp], [`ntk`][infinite_width.kernels.ntk] and
[`nngp_and_ntk`][infinite_width.kernels.nngp_and_ntk] work under ``jax.jit``, ``jax.grad`` and ``jax.vmap``, with
respect to the inputs and to the scales of the architecture:

```python
jax.grad(lambda w: iw.kernels.nngp(iw.mlp(W_std=w), x).sum())(1.4)
```

One compiled program serves every ``W_std``/``b_std`` of an architecture (the
scales are arguments, [`with_scales`][infinite_width.architectures.Architecture.with_scales]), so
changing them does not recompile. Under a transformation the checks that
need values are skipped, the others still run:

* run: argument types, input ranks and feature shapes (static), ``dtype``;
* skipped: NaN/Inf in traced inputs and in the result (they propagate as
  NaN), the memory plan, and ``batch_size`` (refused: batching is a loop
  over concrete blocks).

Results: jax arrays. ``dtype="float64"`` computes in float64 (JAX's x64 mode
is switched on for the call only; under a transformation it must be on
already); with x64 mode off where the result is used, float64 results are
numpy arrays, since a float64 jax array would be truncated to float32 by the
next jax operation (`infinite_width._src.numerics.as_result`).

Precision policy: JAX's default matrix precision on GPUs is TF32 (about 1e-3
relative error); every kernel here is computed with
``jax.default_matmul_precision("highest")``.

Memory (concrete inputs only): before computing, the compiled program's own
account of its memory (XLA's ``memory_analysis``: inputs, outputs and
neural-tangents' intermediates) is compared with the free memory
(``max_memory_bytes`` overrides it). When the whole kernel fits but the
intermediates do not, it is computed in square blocks of rows chosen to fit
(as with an explicit ``batch_size``); when the result itself does not fit, a
``MemoryError`` says how large it is and what to do. Blocked results are
assembled in host memory (returned on the CPU device); with ``x2=None`` only
the blocks on and above the diagonal are computed.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from infinite_width._src.checks import check_int, check_kernel_matrix, validate_inputs
from infinite_width._src.memory import available_memory
from infinite_width._src.numerics import as_result, cast_traced, is_traced, pad_rows, precision_scope
from infinite_width.architectures import Architecture

__all__ = ["nngp", "ntk", "nngp_and_ntk", "max_learning_rate", "stax"]

KernelSource = Union[Architecture, Callable]


def _describe_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


def _split_source(source: KernelSource):
    """``(structure, scales, name, arch)``: the cache key of the compiled program and its dynamic arguments."""
    if isinstance(source, Architecture):
        if not source.has_closed_form:
            from infinite_width._src.nt import stax_triple

            stax_triple(source)  # raises NotImplementedError naming the layers
        scales = source.scales
        return source.with_scales([(None, None)] * len(scales)), scales, repr(source.name), source
    if callable(source):
        return source, (), getattr(source, "__name__", "kernel_fn"), None
    raise TypeError(
        f"arch must be an infinite_width.Architecture or a neural-tangents kernel_fn, got {type(source).__name__}"
    )


@functools.lru_cache(maxsize=128)
def _program(structure, get: Tuple[str, ...]):
    """The jitted ``(scales, x1, x2) -> (kernels, finite flag of each)`` of an architecture's structure or a kernel_fn.

    Keyed on the structure (scales left out), so no tracer is ever hashed; a
    kernel_fn built inside a transformation holds its tracers, and the cache
    keeps at most 128 programs.
    """

    def run(scales, x1, x2):
        if isinstance(structure, Architecture):
            from infinite_width._src.nt import stax_triple

            kernel_fn = stax_triple(structure.with_scales(scales))[2]
        else:
            kernel_fn = structure
        kernels = tuple(kernel_fn(x1, x2, get))
        # One flag per kernel, reduced inside the program: no N1 x N2 boolean array is ever allocated.
        return kernels, jnp.stack([jnp.all(jnp.isfinite(k)) for k in kernels])

    return jax.jit(run)


def _program_bytes(program, scales, x1, x2) -> int:
    """Bytes the compiled program needs (inputs, outputs, temporaries), from XLA; measured once per shape.

    The compilation is the one the call itself then uses (jax shares it).
    """

    def abstract(leaf):  # concrete scales are Python floats: only their type matters
        return 0.0 if isinstance(leaf, float) else jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype)

    return _measured_bytes(program, *jax.tree_util.tree_map(abstract, (scales, x1, x2)))


@functools.lru_cache(maxsize=1024)
def _measured_bytes(program, scales, x1, x2) -> int:
    stats = program.lower(scales, x1, x2).compile().memory_analysis()
    if stats is None:  # backends without the analysis: count inputs and outputs only
        outputs = jax.eval_shape(program, scales, x1, x2)
        return int(sum(a.size * a.dtype.itemsize for a in jax.tree_util.tree_leaves((x1, x2, outputs))))
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               - stats.alias_size_in_bytes)


def _budgets(max_memory_bytes: Optional[int]) -> Tuple[int, int, bool]:
    """``(device bytes, host bytes, shared)``: free memory, or ``max_memory_bytes`` for both."""
    device = jax.devices()[0]
    shared = device.platform == "cpu"
    if max_memory_bytes is not None:
        return max_memory_bytes, max_memory_bytes, shared
    return available_memory(device), available_memory(), shared


def _plan_blocks(program, scales, x1, x2, get, batch_size, max_memory_bytes) -> Optional[int]:
    """Rows per block (None: the whole kernel at once), or ``MemoryError`` when the kernels cannot fit."""
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    result_bytes = len(get) * n1 * n2 * x1.dtype.itemsize
    device_budget, host_budget, shared = _budgets(max_memory_bytes)
    what = f"the {' and '.join(get)} kernel{'s' if len(get) > 1 else ''} of {n1} x {n2} inputs"
    if result_bytes > host_budget:
        raise MemoryError(
            f"{what}: the result alone takes {_describe_bytes(result_bytes)} ({len(get)} x {n1} x {n2} x "
            f"{x1.dtype.itemsize} bytes), but {_describe_bytes(host_budget)} is available; compute it for fewer "
            f"inputs or in row blocks of x1 (kernel(arch, x1[i:j], x2)), or raise max_memory_bytes if the "
            f"estimate of free memory is wrong"
        )
    block_budget = device_budget - result_bytes if shared else device_budget
    rows = max(n1, n2)
    if batch_size is None or batch_size >= rows:
        whole_bytes = _program_bytes(program, scales, x1, x2)
        if whole_bytes <= device_budget:
            return None
        # The intermediates grow like the kernel: start from the size at which they would fit.
        block = min(rows - 1, int(math.sqrt(max(block_budget, 0) * n1 * n2 / whole_bytes)))
        while block >= 1:
            if _block_bytes(program, scales, x1, x2, block) <= block_budget:
                return block
            block = block * 3 // 4
        raise MemoryError(
            f"{what}: computing them takes {_describe_bytes(whole_bytes)} at once and no block of rows fits in the "
            f"{_describe_bytes(max(block_budget, 0))} left beside the result; compute it for fewer inputs"
        )
    needed = _block_bytes(program, scales, x1, x2, batch_size)
    if needed > block_budget:
        fitting = int(batch_size * math.sqrt(max(block_budget, 0) / needed))
        raise MemoryError(
            f"{what}: a block of batch_size={batch_size} rows takes {_describe_bytes(needed)}, but "
            f"{_describe_bytes(max(block_budget, 0))} is available beside the result: use a smaller batch_size "
            f"(about {fitting}), or batch_size=None to choose one"
        )
    return batch_size


def _block_bytes(program, scales, x1, x2, block: int) -> int:
    first = x1[:1].repeat(block, axis=0)
    return _program_bytes(program, scales, first, first if x2 is None else x2[:1].repeat(block, axis=0))


def _blocked(program, scales, x1, x2, block: int, n_kernels: int):
    """The kernels in ``block x block`` pieces, assembled in host memory; ``(kernels, finite flag of each)``."""
    symmetric = x2 is None
    n1 = x1.shape[0]
    n2 = n1 if symmetric else x2.shape[0]
    padded1 = pad_rows(x1, block)  # equal blocks: one compilation
    padded2 = padded1 if symmetric else pad_rows(x2, block)
    out = [np.empty((n1, n2), x1.dtype) for _ in range(n_kernels)]
    pairs = [(i, j) for i in range(0, n1, block) for j in range(i if symmetric else 0, n2, block)]
    finite = np.ones(n_kernels, bool)
    for i, j in tqdm.tqdm(pairs, desc="kernel blocks", leave=False, disable=True if len(pairs) < 2 else None):
        kernels, block_finite = program(scales, padded1[i : i + block], padded2[j : j + block])
        finite &= np.asarray(block_finite)
        rows, cols = min(block, n1 - i), min(block, n2 - j)
        for target, k in zip(out, kernels):
            k = np.asarray(k)[:rows, :cols]
            target[i : i + rows, j : j + cols] = k
            if symmetric and j != i:
                target[j : j + cols, i : i + rows] = k.T
    cpu = jax.devices("cpu")[0]
    return tuple(jax.device_put(k, cpu) for k in out), finite


def _compute(source, x1, x2, get, batch_size, dtype, max_memory_bytes):
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1) if batch_size != 0 else None
    if max_memory_bytes is not None:
        max_memory_bytes = check_int("max_memory_bytes", max_memory_bytes, 1)
    structure, scales, name, arch = _split_source(source)
    traced = is_traced(x1, x2, scales)
    with precision_scope(dtype, traced=traced) as np_dtype:
        x1, x2 = validate_inputs(arch, x1, x2, np_dtype)
        program = _program(structure, get)
        if traced:
            if batch_size is not None:
                raise ValueError("batch_size works on concrete inputs only, not inside jax.jit/grad/vmap")
            return program(cast_traced(scales, np_dtype), x1, x2)[0]
        block = _plan_blocks(program, scales, x1, x2, get, batch_size, max_memory_bytes)
        if block is None:
            kernels, finite = program(scales, x1, x2)
            if is_traced(kernels):  # a kernel_fn built inside a transformation: its layers hold tracers
                return kernels
        else:
            kernels, finite = _blocked(program, scales, x1, x2, block, len(get))
    bad = [kernel_name for kernel_name, ok in zip(get, np.asarray(finite)) if not ok]
    if bad:
        raise FloatingPointError(f"the {' and '.join(bad)} kernel of {name} has non-finite entries")
    return as_result(kernels)


_SIGNATURE_DOC = """
    Args:
      arch: an [`Architecture`][infinite_width.Architecture], or a neural-tangents
        stax ``kernel_fn``.
      x1: (N1, ...) inputs; x2: (N2, ...) inputs, or None for ``x2 = x1``.
      batch_size: compute in blocks of this many rows (concrete inputs only);
        None chooses blocks only when the memory plan needs them.
      dtype: ``"float32"`` or ``"float64"``.
      max_memory_bytes: memory available to the computation, overriding the
        measured free memory.
"""


def nngp(
    arch: KernelSource,
    x1,
    x2=None,
    *,
    batch_size: Optional[int] = None,
    dtype: str = "float32",
    max_memory_bytes: Optional[int] = None,
) -> jax.Array:
    """Infinite-width NNGP kernel, shape (N1, N2): the output covariance at initialisation."""
    return _compute(arch, x1, x2, ("nngp",), batch_size, dtype, max_memory_bytes)[0]


def ntk(
    arch: KernelSource,
    x1,
    x2=None,
    *,
    batch_size: Optional[int] = None,
    dtype: str = "float32",
    max_memory_bytes: Optional[int] = None,
) -> jax.Array:
    """Infinite-width neural tangent kernel in NTK parametrization, shape (N1, N2)."""
    return _compute(arch, x1, x2, ("ntk",), batch_size, dtype, max_memory_bytes)[0]


def nngp_and_ntk(
    arch: KernelSource,
    x1,
    x2=None,
    *,
    batch_size: Optional[int] = None,
    dtype: str = "float32",
    max_memory_bytes: Optional[int] = None,
) -> Tuple[jax.Array, jax.Array]:
    """Both kernels from one pass: ``(nngp, ntk)``, each of shape (N1, N2)."""
    return _compute(arch, x1, x2, ("nngp", "ntk"), batch_size, dtype, max_memory_bytes)


for _function in (nngp, ntk, nngp_and_ntk):
    _function.__doc__ += _SIGNATURE_DOC
del _function


def max_learning_rate(ntk_train_train, out_dim: int, momentum: float = 0.0) -> float:
    """Largest stable learning rate of gradient descent on ``0.5 * mean((f - y)^2)`` with this NTK.

    The loss averages over the ``N * out_dim`` entries of ``f`` (N training
    points, ``out_dim`` outputs), so a step is ``f <- f - lr K (f - y) / (N k)``
    per output and descent (heavy ball with ``momentum``) is stable for
    ``lr < 2 (1 + momentum) N k / lambda_max(K)`` (docs/theory.md, section 4).
    The same formula as ``neural_tangents.predict.max_learning_rate``, which
    no longer runs on scipy >= 1.14.

    Args:
      ntk_train_train: (N, N) NTK on the training points (per output channel).
      out_dim: k, the number of outputs (columns of the targets).
      momentum: heavy-ball ``beta`` in [0, 1).
    """
    k = check_kernel_matrix("ntk_train_train", ntk_train_train, square=True)
    out_dim = check_int("out_dim", out_dim, 1)
    if not (isinstance(momentum, (int, float, np.floating)) and 0.0 <= momentum < 1.0):
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    lam_max = float(np.linalg.eigvalsh(k)[-1])
    if lam_max <= 0.0:  # a zero kernel never moves f: every rate is stable
        return math.inf
    return float(2.0 * (1.0 + momentum) * k.shape[0] * out_dim / lam_max)


def stax(arch: Architecture, width: int = 1, parameterization: str = "ntk"):
    """The neural-tangents ``(init_fn, apply_fn, kernel_fn)`` of ``arch``, for users who want them.

    ``width`` sets the hidden size of the finite network that ``init_fn``
    and ``apply_fn`` describe; ``kernel_fn`` (the infinite-width kernels)
    does not depend on it. ``NotImplementedError`` for an architecture
    without a closed form (``MaxPool``).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    from infinite_width._src.nt import stax_triple

    return stax_triple(arch, width, parameterization)
