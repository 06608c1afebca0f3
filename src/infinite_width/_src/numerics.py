"""Numerical policy: full-precision matrix products, optional float64, and row padding.

JAX's default matrix precision on GPUs is TF32 (about 1e-3 relative error).
Kernels, kernel dynamics and training run inside `precision_scope`,
i.e. with ``jax.default_matmul_precision("highest")`` (true float32), and in
JAX's x64 mode for ``dtype="float64"``.

Float64 results and JAX's x64 mode: a float64 jax array used by the next jax
operation while x64 mode is off is truncated to float32 without an error
(``2.0 * k`` is float32). `as_result` therefore hands float64 results
back as numpy arrays unless x64 mode is on where they are used.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

from infinite_width._src.checks import check_choice

DTYPES = {"float32": np.float32, "float64": np.float64}


def enable_x64():
    """A context manager switching JAX's x64 mode on (jax >= 0.7 has ``jax.enable_x64``, older the experimental one)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as experimental_enable_x64

    return experimental_enable_x64()


def x64_enabled() -> bool:
    """Whether JAX's x64 mode is on here (globally or inside an ``enable_x64`` context)."""
    return jax.dtypes.canonicalize_dtype(np.float64) == np.float64


def is_traced(*trees) -> bool:
    """Whether any leaf of ``trees`` is a jax tracer, i.e. we run inside ``jit``/``grad``/``vmap``."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


def cast_traced(tree, dtype):
    """Tracers of ``tree`` cast to ``dtype``; concrete leaves (Python floats stay weakly typed) are left alone."""
    return jax.tree_util.tree_map(lambda leaf: leaf.astype(dtype) if isinstance(leaf, jax.core.Tracer) else leaf, tree)


@contextlib.contextmanager
def precision_scope(dtype: str = "float32", *, traced: bool = False):
    """Full-precision matrix products, and x64 mode when ``dtype == "float64"``; yields the numpy dtype.

    ``traced=True`` (the caller's arrays are jax tracers): x64 mode cannot be
    switched on inside a transformation, so ``dtype="float64"`` then needs it
    on already, and a ``ValueError`` says how.
    """
    check_choice("dtype", dtype, DTYPES)
    if traced and dtype == "float64" and not x64_enabled():
        raise ValueError(
            "dtype='float64' inside jax.jit/grad/vmap needs JAX's x64 mode on around the transformation "
            "(jax.config.update('jax_enable_x64', True), or `with jax.enable_x64(True):`); or pass dtype='float32'"
        )
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.default_matmul_precision("highest"))
        if dtype == "float64":
            stack.enter_context(enable_x64())
        yield DTYPES[dtype]


def as_result(tree):
    """Arrays of ``tree`` as callers can use them: jax arrays, but float64 ones as numpy arrays while x64 mode is off.

    Call it outside `precision_scope`. Tracers are left alone.
    """
    keep_jax = x64_enabled()

    def convert(leaf):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            if leaf.dtype == np.float64 and not keep_jax:
                return np.asarray(leaf)
        return leaf

    return jax.tree_util.tree_map(convert, tree)


def pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    """``x`` with rows appended (copies of its last row) up to a multiple of ``multiple``."""
    # Repeat the last row rather than pad with zeros: a zero input gives a
    # 0/0 in bias-free arc-cosine kernels, and padded rows are cropped anyway.
    remainder = (-x.shape[0]) % multiple
    if remainder == 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], remainder, axis=0)], axis=0)
