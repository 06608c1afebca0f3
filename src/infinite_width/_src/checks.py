"""Argument checks of the whole package.

One place for each check, so the same bad input gets the same error
whichever function or regime it is given to. Numbers follow one rule:
``TypeError`` when the value is not a real number at all (a string, None,
a bool, an array of several values), ``ValueError`` when it is a number
outside what the argument allows (negative, NaN, Inf, non-integral where an
integer is needed). Numpy scalars are numbers like Python's.

This module sits below [`infinite_width.architectures`][] in the import
graph (architectures use its checks), so it never imports it: an
architecture is recognised by its ``input_kind`` and ``layers``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def _real_scalar(name: str, value, what: str):
    """``value`` as a Python int or float, or ``TypeError`` unless it is one real number (bools are not numbers).

    Python ints and floats, numpy integer and floating scalars, and 0-d numpy
    or jax arrays of such a dtype are accepted.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {what}, got the bool {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    dtype = getattr(value, "dtype", None)
    if getattr(value, "shape", None) == () and dtype is not None:
        if np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
            return np.asarray(value).item()
    raise TypeError(f"{name} must be {what}, got {value!r} of type {type(value).__name__}")


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int: ``TypeError`` unless it is a number, ``ValueError`` unless an integer >= ``minimum``.

    Numpy integers and integral 0-d arrays pass; bools and non-integral floats do not.
    """
    what = f"an integer >= {minimum}"
    number = _real_scalar(name, value, what)
    if not isinstance(number, int) or number < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return number


def _check_real(name: str, value, what: str, accept) -> float:
    number = _real_scalar(name, value, what)
    try:
        number = float(number)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not (math.isfinite(number) and accept(number)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return number


def check_nonnegative(name: str, value):
    """``value`` as a float: ``TypeError`` unless it is a real number, ``ValueError`` unless finite and >= 0.

    A traced jax scalar (the argument of a function under ``jax.jit``,
    ``jax.grad`` or ``jax.vmap``) has no value yet: its shape and dtype are
    checked and it is returned as it is, so that hyper-parameters can be
    differentiated.
    """
    if isinstance(value, jax.core.Tracer):
        if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
            raise ValueError(f"{name} must be a real scalar, got a traced array of shape {value.shape} and dtype {value.dtype}")
        return value
    return _check_real(name, value, "a finite number >= 0", lambda number: number >= 0)


def check_positive(name: str, value) -> float:
    """``value`` as a float: ``TypeError`` unless it is a real number, ``ValueError`` unless finite and > 0."""
    return _check_real(name, value, "a finite number > 0", lambda number: number > 0)


def check_decay(name: str, value) -> float:
    """A decay rate (momentum, Adam's b1 and b2) as a float: ``TypeError`` unless a real number, ``ValueError`` unless in [0, 1)."""
    return _check_real(name, value, "a number in [0, 1)", lambda number: 0 <= number < 1)


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``, else ``ValueError`` naming ``name`` and the choices.

    Compared by equality against a tuple, so an unhashable value (a list) is an
    error naming the argument too, not a bare ``TypeError: unhashable type``.
    """
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


SEED_LIMIT = 2**64
"""Int seeds lie in [0, SEED_LIMIT): numpy's range of 64-bit seeds."""

_SEED_KINDS = "an int seed in [0, 2**64), a numpy.random.Generator or a jax PRNG key (e.g. jax.random.PRNGKey(0))"


def as_seed(name: str, seed) -> int:
    """An int seed in [0, 2**64) from ``seed``: an int (numpy integers and 0-d integer arrays too) or a
    ``numpy.random.Generator``, from which one is drawn (advancing it, as numpy's own functions do).

    ``TypeError`` for anything else (bools, floats, strings, None), ``ValueError`` outside [0, 2**64).
    """
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, SEED_LIMIT, dtype=np.uint64))
    if isinstance(seed, (bool, np.bool_)) or not (
        isinstance(seed, (int, np.integer))
        or (isinstance(seed, np.ndarray) and seed.shape == () and np.issubdtype(seed.dtype, np.integer))
    ):
        raise TypeError(f"{name} must be an int seed or a numpy.random.Generator, got {seed!r} of type "
                        f"{type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{name} must be an int seed in [0, 2**64), got {seed}")
    return seed


def as_key(key):
    """A jax PRNG key from ``key``: a key (typed, or raw as ``jax.random.PRNGKey`` returns it), an int seed
    in [0, 2**64) or a ``numpy.random.Generator`` (a seed is drawn from it, see `as_seed`).

    A seed below 2**32 gives ``jax.random.PRNGKey(seed)``; a larger one folds its upper 32 bits into that
    key, so distinct seeds give distinct keys whether or not jax's x64 mode is on (``PRNGKey`` alone keeps
    only the lower 32 bits of a seed without it). ``TypeError`` for anything else, ``ValueError`` for an
    int outside [0, 2**64).
    """
    if isinstance(key, np.random.Generator) or isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        seed = as_seed("key", key)
        low = jax.random.PRNGKey(seed & 0xFFFFFFFF)
        return low if seed < 2**32 else jax.random.fold_in(low, seed >> 32)
    raw_shape = jax.random.PRNGKey(0).shape
    if isinstance(key, jax.Array):  # tracers too: a key may be an argument of a jitted function
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape != ():
                raise ValueError(f"key must be a single PRNG key, got a key array of shape {key.shape}")
            return key
        if key.shape == raw_shape and key.dtype == jnp.uint32:
            return key
    elif isinstance(key, (np.ndarray, list, tuple)):
        try:
            array = np.asarray(key)
        except (TypeError, ValueError):  # ragged lists and the like
            array = None
        if array is not None and array.shape == raw_shape and array.dtype == np.uint32:
            return jnp.asarray(array)
    raise TypeError(f"key must be {_SEED_KINDS}; a raw key is a uint32 array of shape {raw_shape}; "
                    f"got {key!r} of type {type(key).__name__}")


def check_key(key) -> None:
    """The checks of `as_key` without its side effect: a ``numpy.random.Generator`` is not drawn from."""
    if not isinstance(key, np.random.Generator):
        as_key(key)


def one_hot(name: str, labels, k: int) -> np.ndarray:
    """Integer class labels (N,) in [0, k) as one-hot float32 targets (N, k); an error naming ``name`` else."""
    labels = np.asarray(labels)
    if k < 2:
        raise ValueError(f"{name} holds integer class labels, which need k >= 2 classes, got k = {k}; for one "
                         f"real output pass {name}.reshape(-1, 1)")
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"{name} holds class labels in [{labels.min()}, {labels.max()}], outside [0, {k})")
    return np.eye(k, dtype=np.float32)[labels]


def is_labels(y) -> bool:
    """Whether ``y`` is a 1-D array of integer class labels (what `one_hot` converts)."""
    return isinstance(y, np.ndarray) and y.ndim == 1 and np.issubdtype(y.dtype, np.integer)


def check_not_class_labels(name: str, y: np.ndarray, k) -> None:
    """Refuse 1-D integer targets: class labels, which targets (N, k) are not; say how to convert."""
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        k = k if k is not None else "k"
        raise ValueError(
            f"{name} has shape {y.shape} with integer entries: class labels, but targets have shape (N, k); "
            f"one-hot them, np.eye({k}, dtype=np.float32)[{name}] (or jax.nn.one_hot({name}, {k})), or for one "
            f"regression output pass {name}[:, None].astype(np.float32)"
        )


def check_targets(name: str, y, n: int, k: int) -> np.ndarray:
    """Targets of shape (n, k) as finite float32, or an error naming what is wrong.

    1-D integer class labels (n,) in [0, k) are converted to one-hot rows (k >= 2).
    """
    if is_labels(np.asarray(y) if isinstance(y, (list, tuple)) else y):
        y = one_hot(name, y, k)
    y = check_real_array(name, y, np.float32)
    if y.ndim != 2:
        raise ValueError(f"{name} must have shape (N, k) = ({n}, {k}), got shape {y.shape} (reshape(-1, 1) for "
                         "k = 1; 1-D integer class labels are converted to one-hot)")
    if y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, {k}): it has {y.shape[0]} rows but the inputs have {n}")
    if y.shape[1] != k:
        raise ValueError(f"{name} must have shape ({n}, {k}): it has {y.shape[1]} columns but out_dim = {k}")
    return y


def check_target_columns(name: str, y, n: int, kernel_name: str):
    """Targets for an (n, n) kernel as an (n, k) float64 array (``(n,)`` is read as k = 1).

    A jax tracer gets the shape check only and stays a jax array.
    """
    traced = isinstance(y, jax.core.Tracer)
    if not traced:
        try:
            y = np.asarray(y)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be a numeric array of shape ({n}, k): {error}") from error
        if not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y) or y.dtype == np.bool_:
            raise TypeError(f"{name} must hold real numbers, got dtype {y.dtype}")
        check_not_class_labels(name, y, None)
        y = y.astype(np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, k) to match {kernel_name}, got {tuple(y.shape)}")
    if not traced and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(y)))} NaN or Inf entries")
    return y


def check_batch_indices(batch_indices, n_train: int, steps: int) -> np.ndarray:
    """Explicit minibatch rows, shape (steps, batch), each in [0, n_train), as int32."""
    rows = np.asarray(batch_indices)
    if rows.ndim != 2 or rows.shape[0] != steps or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"batch_indices must be an integer array of shape (steps={steps}, batch), got {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n_train):
        raise ValueError(f"batch_indices must lie in [0, {n_train}), got values in [{rows.min()}, {rows.max()}]")
    return rows.astype(np.int32)


def check_record_list(record, steps: int) -> np.ndarray:
    """Explicit steps to record: sorted unique integers in [0, steps]."""
    record = np.asarray(record)
    if record.ndim != 1 or record.size == 0 or not np.issubdtype(record.dtype, np.integer):
        raise ValueError(f"record must be a non-empty 1-D list of integer steps, got {record!r}")
    if record.min() < 0 or record.max() > steps:
        raise ValueError(f"record steps must lie in [0, {steps}], got min {record.min()} and max {record.max()}")
    return np.unique(record).astype(np.int64)


def check_real_array(name: str, x, dtype) -> np.ndarray:
    """``x`` as a finite real array of ``dtype``, or an error naming ``name``.

    ``TypeError`` for ragged or non-numeric data (strings, bools, complex);
    ``ValueError`` for NaN or Inf entries. Finiteness is checked after the
    cast, so values beyond the range of ``dtype`` (float64 1e39 in float32)
    are caught as the Inf they become.
    """
    try:
        x = np.asarray(x)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"{name} cannot be converted to an array: {error}") from error
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    with np.errstate(over="ignore"):
        converted = x.astype(dtype)
    finite = np.isfinite(converted)
    if not finite.all():
        message = f"{name} contains {int(np.sum(~finite))} NaN or Inf entries"
        overflowed = int(np.sum(~finite & np.isfinite(x)))
        if overflowed:
            message += f" ({overflowed} of them finite but beyond the range of {np.dtype(dtype).name})"
        raise ValueError(message)
    return converted


def _input_layout(arch) -> tuple:
    """``(rank, layout)`` of the inputs of ``arch``; ``arch=None`` (a neural-tangents ``kernel_fn``): any rank >= 2."""
    if arch is None:
        return None, "(N, ...)"
    if arch.input_kind == "vector":
        return 2, "(N, d)"
    return 4, "(N, H, W, C)"


def check_input_array(name: str, x, arch, dtype):
    """Inputs of ``arch`` as a finite real array of ``dtype``: (N, d) for vector, (N, H, W, C) for image inputs.

    ``arch=None`` accepts any (N, ...) array of rank >= 2. A jax tracer
    (inside ``jit``/``grad``/``vmap``) gets the dtype and shape checks only,
    which are static; its values are unknown, so NaN or Inf entries are not
    detected, and it is returned as a jax array of ``dtype``.
    """
    traced = isinstance(x, jax.core.Tracer)
    if traced:
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    else:
        x = check_real_array(name, x, dtype)
    rank, layout = _input_layout(arch)
    if (x.ndim != rank) if rank else (x.ndim < 2):
        described = f"architecture {arch.name!r}" if arch is not None else "a kernel_fn"
        raise ValueError(f"{name} must have shape {layout} for {described}, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x.astype(dtype)


def validate_inputs(arch, x1, x2=None, dtype=np.float32, names=("x1", "x2")):
    """Check and convert kernel inputs; raise ``ValueError``/``TypeError`` naming the problem.

    ``arch`` is an [`Architecture`][infinite_width.Architecture], or None for the
    inputs of a neural-tangents ``kernel_fn`` (any (N, ...) arrays).
    ``names`` are the argument names used in error messages (e.g.
    ``("x_train", "x_test")``). Returns ``(x1, x2)`` as arrays of ``dtype``
    (``x2`` may be None): numpy arrays, or jax arrays for tracers (see
    `check_input_array`).
    """
    if arch is not None and (getattr(arch, "input_kind", None) not in ("vector", "image") or not hasattr(arch, "layers")):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    name1, name2 = names
    x1 = check_input_array(name1, x1, arch, dtype)
    if x2 is not None:
        x2 = check_input_array(name2, x2, arch, dtype)
        if x1.shape[1:] != x2.shape[1:]:
            raise ValueError(f"{name1} and {name2} have different feature shapes: {x1.shape[1:]} vs {x2.shape[1:]}")
    return x1, x2


def check_kernel_matrix(name: str, k, square: bool = False, symmetric: bool = False) -> np.ndarray:
    """A kernel matrix as a finite non-empty float64 (N1, N2) array (square if ``square``).

    ``symmetric=True`` (for a kernel of the training points with themselves,
    of which Cholesky factors and eigensolvers read one triangle) also refuses
    ``max |K - K^T| > 1e-5 max |K|``, far above the rounding of a computed kernel.
    """
    try:
        k = np.asarray(k)
    except (TypeError, ValueError) as error:  # ragged nested lists
        raise TypeError(f"{name} must be a real matrix: {error}") from error
    # Not cast blindly: complex parts would be dropped with a warning, strings parsed, bools taken as 0 and 1.
    # (jax's bfloat16 is no numpy number but is real: it is accepted.)
    real = np.issubdtype(k.dtype, np.number) or k.dtype == jnp.bfloat16
    if not real or np.iscomplexobj(k):
        raise TypeError(f"{name} must be a real matrix, got dtype {k.dtype}")
    k = k.astype(np.float64)
    if k.ndim != 2:
        raise ValueError(f"{name} must be a matrix (2-D), got shape {k.shape}")
    if square and k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be square, got shape {k.shape}")
    if k.size == 0:
        raise ValueError(f"{name} is empty (shape {k.shape})")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(k)))} NaN or Inf entries")
    if symmetric:
        if k.shape[0] != k.shape[1]:
            raise ValueError(f"{name} must be square, got shape {k.shape}")
        asymmetry, largest = float(np.max(np.abs(k - k.T))), float(np.max(np.abs(k)))
        if asymmetry > 1e-5 * largest:
            raise ValueError(
                f"{name} is not symmetric: max |K - K^T| = {asymmetry:.3g} against max |K| = {largest:.3g}; a kernel "
                f"of points with themselves is symmetric (symmetrize it, (K + K.T) / 2, if the asymmetry is rounding)"
            )
    return k
