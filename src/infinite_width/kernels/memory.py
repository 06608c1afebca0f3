"""The kernels' memory plan: what a compiled kernel program needs, against what is free, before it runs.

Every kernel entry point on concrete inputs ([`nngp`][infinite_width.kernels.nngp]
and the other closed forms, [`layerwise`][infinite_width.kernels.layerwise],
[`fit_hyperparameters`][infinite_width.kernels.fit_hyperparameters]; the NNPK
has its own plan, [`plan_memory`][infinite_width.kernels.plan_memory])
compares the bytes of its result, and XLA's account of its compiled program
(`memory_analysis`: inputs, outputs, temporaries), with the free memory
(`max_memory_bytes` overrides it), and refuses with a `MemoryError` that says
how large it is and what to do, before anything is allocated. Compiling for
abstract shapes allocates nothing.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import jax
import numpy as np

from infinite_width._src.memory import available_memory

__all__ = ["describe_bytes", "program_bytes", "budgets", "check_fits"]


def describe_bytes(count: int) -> str:
    """`count` bytes in GiB, MiB or KiB (3 significant digits).

    Args:
      count: a number of bytes, >= 0.
    """
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


def program_bytes(program, *args) -> int:
    """Bytes the jitted `program` needs for `args` (inputs, outputs, temporaries), from XLA, for their shapes.

    Concrete scales (Python floats) count by type only; arrays by shape and
    dtype. Measured once per shape; the compilation is the one the call
    itself then uses (jax shares it).

    Args:
      program: a jitted function.
      *args: its arguments (arrays, or anything with a shape and a dtype, and Python floats).
    """

    def abstract(leaf):
        if isinstance(leaf, float):
            return 0.0
        return jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype)

    leaves, structure = jax.tree_util.tree_flatten(jax.tree_util.tree_map(abstract, args))
    return _measured_bytes(program, structure, tuple(leaves))


@functools.lru_cache(maxsize=1024)
def _measured_bytes(program, structure, leaves) -> int:
    args = jax.tree_util.tree_unflatten(structure, leaves)
    stats = program.lower(*args).compile().memory_analysis()
    if stats is None:  # backends without the analysis: count inputs and outputs only
        outputs = jax.eval_shape(program, *args)
        return int(sum(a.size * a.dtype.itemsize for a in jax.tree_util.tree_leaves((args, outputs))
                       if hasattr(a, "dtype")))
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               - stats.alias_size_in_bytes)


def budgets(max_memory_bytes: Optional[int]) -> Tuple[int, int, bool]:
    """`(device bytes, host bytes, shared)`: free memory, or `max_memory_bytes` for both.

    `shared` is True on the CPU, where the device and the host are the same memory.

    Args:
      max_memory_bytes: memory available, or None for the measured free memory.
    """
    device = jax.devices()[0]
    shared = device.platform == "cpu"
    if max_memory_bytes is not None:
        return max_memory_bytes, max_memory_bytes, shared
    return available_memory(device), available_memory(), shared


def check_fits(what: str, result_bytes: int, program, args, max_memory_bytes: Optional[int], advice: str,
               result_name: str = "the result") -> None:
    """Refuse, before anything is allocated, a computation whose result or program does not fit.

    Args:
      what: the computation, for the message (e.g. "the layer-wise kernels of 200000 x 200000 inputs").
      result_bytes: bytes of the result alone (checked first, without compiling).
      program: the jitted function, or None to check the result only.
      args: its arguments (concrete or abstract; only shapes and dtypes count).
      max_memory_bytes: memory available, or None for the free memory.
      advice: what to do instead, ending the message.
      result_name: what `result_bytes` counts, for the message.

    Raises:
      MemoryError: saying how large it is, what is available, and `advice`.
    """
    device_budget, host_budget, _ = budgets(max_memory_bytes)
    if result_bytes > min(device_budget, host_budget):
        raise MemoryError(
            f"{what} needs at least {describe_bytes(result_bytes)} ({result_name}), but "
            f"{describe_bytes(min(device_budget, host_budget))} is available; {advice}, or raise max_memory_bytes "
            "if the estimate of free memory is wrong"
        )
    if program is None:
        return
    needed = program_bytes(program, *args)
    if needed > device_budget:
        raise MemoryError(
            f"{what}: computing it takes {describe_bytes(needed)} (XLA's account of inputs, result and "
            f"intermediates), but {describe_bytes(device_budget)} is available; {advice}, or raise "
            "max_memory_bytes if the estimate of free memory is wrong"
        )
