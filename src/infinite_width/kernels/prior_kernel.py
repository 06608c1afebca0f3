"""The Neural Network Prior Kernel (Amid, Anil, Kotlowski & Warmuth, 2022).

For an architecture and a distribution ``p0`` of its initial parameters,

    NNPK(x, x') = E_{theta ~ p0}[ f(x; theta)^T f(x'; theta) ],

the expected inner product of the network's outputs (logits) at
initialisation. :func:`nnpk` estimates it with ``m = n_samples``
independently initialised finite networks of a given width:

    K_hat(x, x') = (1/m) sum_{s=1}^{m} f(x; theta_s)^T f(x'; theta_s),

an unbiased estimator of the finite-width NNPK whose variance falls like
``1/m``. It needs only forward passes, so it works for every architecture
a finite network can be built for, including those without a closed-form
kernel (``MaxPool``; ``LayerNorm`` at finite width).

Normalization: ``normalize="sum"`` (the default, the paper's definition)
sums over the ``out_dim`` outputs. With Gaussian initialisation in NTK
parametrization the outputs are independent, identically distributed
Gaussian processes as the width grows, so ``K_hat -> out_dim * NNGP``
(:func:`infinite_width.kernels.nngp` is per output channel).
``normalize="mean"`` divides by ``out_dim``, so that ``K_hat -> NNGP``.

Randomness: sample ``s`` has the parameters ``net.init(jax.random.split(key,
n_samples)[s], x1.shape[1:])`` of ``net = infinite_width.finite.network(arch,
width, parametrization, init)``; the same ``key`` gives the same networks in
:func:`nnpk` and :func:`nnpk_features`, however the work is chunked or batched.

Shapes: inputs ``x1`` of shape (N1, d) for vector architectures or
(N1, H, W, C) for image ones, ``x2`` likewise (``None`` means ``x2 = x1``);
kernels of shape (N1, N2).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width._src.checks import check_kernel_matrix as _as_kernel, validate_inputs
from infinite_width._src.numerics import pad_rows, precision_scope
from infinite_width.architectures import Architecture
from infinite_width.finite.networks import INITS, network

__all__ = ["nnpk", "nnpk_features", "kernel_alignment", "NORMALIZATIONS"]

#: ``"sum"``: sum over outputs (-> out_dim * NNGP); ``"mean"``: mean over outputs (-> NNGP).
NORMALIZATIONS: Tuple[str, ...] = ("sum", "mean")

# Auto chunking keeps one forward pass of a chunk of networks under about
# this many activation entries (256 MB in float32).
_ACTIVATION_BUDGET = 2**26


# --------------------------------------------------------------------------
# Argument checks.


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_options(init, normalize):
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; expected one of {NORMALIZATIONS}")


def _check_key(key):
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a jax PRNG key (jax.random.key or jax.random.PRNGKey), got {type(key).__name__}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key, got a key array of shape {key.shape}")
    elif key.shape != (2,) or key.dtype != jnp.uint32:
        raise TypeError(f"key must be a jax PRNG key, got an array of shape {key.shape} and dtype {key.dtype}")
    return key


def _spatial_size(x: np.ndarray) -> int:
    # Hidden activations of image networks have one entry per pixel and channel.
    return int(np.prod(x.shape[1:-1])) if x.ndim == 4 else 1


def _auto_chunk(n_samples: int, rows: int, width: int, spatial: int) -> int:
    return max(1, min(n_samples, _ACTIVATION_BUDGET // max(1, rows * width * spatial)))


# --------------------------------------------------------------------------
# Outputs of a chunk of networks.


@functools.lru_cache(maxsize=None)
def _chunk_fns(arch: Architecture, width: int, parametrization: str, init: str, input_shape: Tuple[int, ...]):
    """Jitted ``init`` and ``apply`` of the finite network, vectorized over samples."""
    net = network(arch, width, parametrization=parametrization, init=init)
    init_chunk = jax.jit(functools.partial(net.init_many, input_shape=input_shape))
    apply_chunk = jax.jit(jax.vmap(net.apply, in_axes=(0, None)))
    return init_chunk, apply_chunk


def _chunk_outputs(apply_chunk, params, x: np.ndarray, batch_size: Optional[int]):
    """Outputs of every network of the chunk on every row of x, shape (chunk, N, out_dim)."""
    n = x.shape[0]
    if not batch_size or n <= batch_size:
        return apply_chunk(params, x)
    padded = pad_rows(x, batch_size)  # equal batches: one compilation
    blocks = [apply_chunk(params, padded[i : i + batch_size]) for i in range(0, padded.shape[0], batch_size)]
    return jnp.concatenate(blocks, axis=1)[:, :n]


@jax.jit
def _chunk_mean(f1, f2):
    # (1/c) sum_s f1_s f2_s^T as one matrix product over (sample, output).
    return jnp.einsum("snk,smk->nm", f1, f2) / f1.shape[0]


@jax.jit
def _chunk_sum_sq_dev(f1, f2, mean):
    # sum_s (f1_s f2_s^T - mean)^2, one sample at a time: memory O(N1 N2).
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


def _prepare(arch, x1, x2, width, n_samples, init, parametrization, key, batch_size, sample_chunk, normalize, np_dtype):
    _check_options(init, normalize)
    width = _check_positive_int("width", width)
    n_samples = _check_positive_int("n_samples", n_samples)
    _check_key(key)
    if batch_size is not None:
        batch_size = _check_positive_int("batch_size", batch_size)
    x1, x2 = validate_inputs(arch, x1, x2, np_dtype)
    if sample_chunk is None:
        rows = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
        rows = min(rows, batch_size or rows)
        sample_chunk = _auto_chunk(n_samples, rows, width, _spatial_size(x1))
    sample_chunk = min(_check_positive_int("sample_chunk", sample_chunk), n_samples)
    fns = _chunk_fns(arch, width, parametrization, init, tuple(x1.shape[1:]))
    keys = jax.random.split(key, n_samples)
    return x1, x2, width, n_samples, batch_size, sample_chunk, fns, keys


def _scale(arch: Architecture, normalize: str) -> float:
    return 1.0 / arch.out_dim if normalize == "mean" else 1.0


# --------------------------------------------------------------------------
# Public API.


def nnpk(
    arch: Architecture,
    x1,
    x2=None,
    *,
    width: int,
    n_samples: int,
    key,
    init: str = "gaussian",
    parametrization: str = "ntk",
    batch_size: Optional[int] = None,
    sample_chunk: Optional[int] = None,
    return_stderr: bool = False,
    normalize: str = "sum",
    dtype: str = "float32",
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Monte Carlo Neural Network Prior Kernel of ``n_samples`` random networks, shape (N1, N2).

    ``K[i, j] = (1/m) sum_s f(x1_i; theta_s) . f(x2_j; theta_s)`` over
    ``m = n_samples`` networks of ``width`` drawn with ``init`` in
    ``parametrization`` (see :func:`infinite_width.finite.network`); divided by
    ``out_dim`` when ``normalize="mean"`` (module docstring).

    Args:
      arch: any architecture with a finite network, closed-form kernel or not.
      x1: inputs, shape (N1, d) or (N1, H, W, C).
      x2: inputs, shape (N2, ...) with the feature shape of ``x1``; None means x1.
      width: hidden width (channels) of the networks, >= 1.
      n_samples: number of random networks m, >= 1 (>= 2 with ``return_stderr``).
      key: jax PRNG key; sample s uses ``jax.random.split(key, n_samples)[s]``.
      init: ``"gaussian"``, ``"orthogonal"`` or ``"uniform"`` (:mod:`infinite_width.finite.networks`).
      parametrization: ``"ntk"``, ``"standard"`` (the same functions at
        initialisation, hence the same NNPK) or ``"mup"``.
      batch_size: rows of x1/x2 per forward pass (None: all rows at once).
      sample_chunk: networks initialised and run at once (vmapped); None
        picks a chunk whose activations fit in about 256 MB. Memory of the
        kernel itself is O(N1 N2) whatever the number of samples.
      return_stderr: also return the standard error of each entry,
        ``std_s(f_s f_s^T) / sqrt(m)`` with the unbiased sample standard deviation.
      normalize: ``"sum"`` over outputs (-> out_dim * NNGP) or ``"mean"`` (-> NNGP).
      dtype: ``"float32"`` or ``"float64"``; matrix products at full precision
        (``jax.default_matmul_precision("highest")``).

    Returns:
      ``K`` of shape (N1, N2), or ``(K, stderr)`` with ``return_stderr=True``.
    """
    if return_stderr and isinstance(n_samples, (int, np.integer)) and not isinstance(n_samples, bool) and n_samples < 2:
        raise ValueError(f"return_stderr needs n_samples >= 2, got {n_samples}")
    with precision_scope(dtype) as np_dtype:
        x1, x2, width, n_samples, batch_size, chunk, (init_chunk, apply_chunk), keys = _prepare(
            arch, x1, x2, width, n_samples, init, parametrization, key, batch_size, sample_chunk, normalize, np_dtype
        )
        count = mean = m2 = None
        for start in range(0, n_samples, chunk):
            params = init_chunk(keys[start : start + chunk])
            f1 = _chunk_outputs(apply_chunk, params, x1, batch_size)
            f2 = f1 if x2 is None else _chunk_outputs(apply_chunk, params, x2, batch_size)
            chunk_count = f1.shape[0]
            chunk_mean = _chunk_mean(f1, f2)
            chunk_m2 = _chunk_sum_sq_dev(f1, f2, chunk_mean) if return_stderr else jnp.zeros(())
            if count is None:
                count, mean, m2 = chunk_count, chunk_mean, chunk_m2
            else:
                mean, m2 = _merge(float(count), mean, m2, float(chunk_count), chunk_mean, chunk_m2)
                count += chunk_count
        scale = _scale(arch, normalize)
        kernel = np.asarray(mean) * scale
        if not np.all(np.isfinite(kernel)):
            raise FloatingPointError(f"the NNPK of {arch.name!r} has non-finite entries (overflowing network outputs?)")
        if not return_stderr:
            return kernel
        stderr = np.sqrt(np.maximum(np.asarray(m2), 0.0) / (n_samples - 1) / n_samples) * scale
        return kernel, stderr


def nnpk_features(
    arch: Architecture,
    x,
    *,
    width: int,
    n_samples: int,
    key,
    init: str = "gaussian",
    parametrization: str = "ntk",
    batch_size: Optional[int] = None,
    sample_chunk: Optional[int] = None,
    normalize: str = "sum",
    dtype: str = "float32",
) -> np.ndarray:
    """Random features of the NNPK: the logits of the m networks side by side, shape (N, m * out_dim).

    Columns ``s * out_dim .. (s + 1) * out_dim - 1`` are the outputs of
    network ``s``, scaled by ``1/sqrt(m)`` (``1/sqrt(m * out_dim)`` with
    ``normalize="mean"``), so that ``features(x1) @ features(x2).T`` equals
    ``nnpk(arch, x1, x2, ...)`` for the same key and options. A linear
    readout on these features is kernel regression with the estimated NNPK.
    Arguments as for :func:`nnpk`; ``x`` has shape (N, d) or (N, H, W, C).
    """
    with precision_scope(dtype) as np_dtype:
        x, _, width, n_samples, batch_size, chunk, (init_chunk, apply_chunk), keys = _prepare(
            arch, x, None, width, n_samples, init, parametrization, key, batch_size, sample_chunk, normalize, np_dtype
        )
        blocks = [
            np.asarray(_chunk_outputs(apply_chunk, init_chunk(keys[start : start + chunk]), x, batch_size))
            for start in range(0, n_samples, chunk)
        ]
        outputs = np.concatenate(blocks, axis=0)  # (m, N, out_dim)
        features = np.transpose(outputs, (1, 0, 2)).reshape(x.shape[0], -1)
        return features * math.sqrt(_scale(arch, normalize) / n_samples)


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
