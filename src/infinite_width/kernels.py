"""Closed-form infinite-width kernels of an :class:`~infinite_width.Architecture`.

Shapes: inputs ``x1`` of shape (N1, d) for MLPs or (N1, H, W, C) for
convolutional networks, ``x2`` likewise (``None`` means ``x2 = x1``).
Kernels are returned per output channel, shape (N1, N2), as neural-tangents
returns them: the full kernel of the ``out_dim`` outputs is ``K ⊗ I``.

Precision policy: JAX's default matrix precision on GPUs is TF32 (about 1e-3
relative error). Every kernel here is computed with
``jax.default_matmul_precision("highest")``, i.e. true float32 by default;
``dtype="float64"`` computes in float64 (JAX's x64 mode is switched on for
the call only).

Memory: ``batch_size`` bounds the block of the kernel computed at once
(through ``neural_tangents.batch``); rows are padded to a multiple of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width.architectures import Activation, Architecture, Dense, _stax_layer

__all__ = [
    "nngp",
    "ntk",
    "nngp_and_ntk",
    "layerwise",
    "LayerwiseKernels",
    "max_learning_rate",
    "nnpk",
    "pad_rows",
    "validate_inputs",
    "precision_scope",
]

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _enable_x64():
    # jax >= 0.7 has jax.enable_x64; older versions only the experimental one.
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


@contextlib.contextmanager
def precision_scope(dtype: str = "float32"):
    """Full-precision matrix products, and x64 mode when ``dtype == "float64"``."""
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected 'float32' or 'float64'")
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.default_matmul_precision("highest"))
        if dtype == "float64":
            stack.enter_context(_enable_x64())
        yield _DTYPES[dtype]


def _as_array(name, x, arch: Architecture, dtype):
    try:
        x = np.asarray(x)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"{name} cannot be converted to an array: {error}") from error
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    rank = 2 if arch.input_kind == "vector" else 4
    layout = "(N, d)" if rank == 2 else "(N, H, W, C)"
    if x.ndim != rank:
        raise ValueError(f"{name} must have shape {layout} for architecture {arch.name!r}, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"{name} contains {bad} NaN or Inf entries")
    return x.astype(dtype)


def validate_inputs(arch: Architecture, x1, x2=None, dtype=np.float32, names=("x1", "x2")):
    """Check and convert kernel inputs; raise ``ValueError``/``TypeError`` naming the problem.

    ``names`` are the argument names used in error messages (e.g.
    ``("x_train", "x_test")``). Returns ``(x1, x2)`` as numpy arrays of
    ``dtype`` (``x2`` may be None).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    name1, name2 = names
    x1 = _as_array(name1, x1, arch, dtype)
    if x2 is not None:
        x2 = _as_array(name2, x2, arch, dtype)
        if x1.shape[1:] != x2.shape[1:]:
            raise ValueError(f"{name1} and {name2} have different feature shapes: {x1.shape[1:]} vs {x2.shape[1:]}")
    return x1, x2


@functools.lru_cache(maxsize=None)
def _jitted_kernel_fn(arch: Architecture, get: Tuple[str, ...], batch_size: int):
    from infinite_width._neural_tangents import nt

    kernel_fn = arch.kernel_fn
    if batch_size:
        kernel_fn = nt.batch(kernel_fn, batch_size=batch_size, store_on_device=False)
        return functools.partial(kernel_fn, get=get)
    return jax.jit(functools.partial(kernel_fn, get=get))


def pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    """``x`` with rows appended (copies of its last row) up to a multiple of ``multiple``."""
    # Repeat the last row rather than pad with zeros: a zero input gives a
    # 0/0 in bias-free arc-cosine kernels, and padded rows are cropped anyway.
    remainder = (-x.shape[0]) % multiple
    if remainder == 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], remainder, axis=0)], axis=0)


def _compute(arch, x1, x2, get, batch_size, dtype):
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0):
        raise ValueError(f"batch_size must be a non-negative integer or None, got {batch_size!r}")
    with precision_scope(dtype) as np_dtype:
        x1, x2 = validate_inputs(arch, x1, x2, np_dtype)
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        if batch_size and (n1 > batch_size or n2 > batch_size):
            p1 = pad_rows(x1, batch_size)
            p2 = p1 if x2 is None else pad_rows(x2, batch_size)
            out = _jitted_kernel_fn(arch, get, batch_size)(p1, p2)
        else:
            out = _jitted_kernel_fn(arch, get, 0)(x1, x2)
        results = tuple(np.asarray(k)[:n1, :n2] for k in out)
    for name, k in zip(get, results):
        if not np.all(np.isfinite(k)):
            raise FloatingPointError(f"the {name} kernel of {arch.name!r} has non-finite entries")
    return results


def nngp(arch: Architecture, x1, x2=None, *, batch_size: Optional[int] = None, dtype: str = "float32") -> np.ndarray:
    """Infinite-width NNGP kernel, shape (N1, N2): the output covariance at initialisation."""
    return _compute(arch, x1, x2, ("nngp",), batch_size, dtype)[0]


def ntk(arch: Architecture, x1, x2=None, *, batch_size: Optional[int] = None, dtype: str = "float32") -> np.ndarray:
    """Infinite-width neural tangent kernel in NTK parametrization, shape (N1, N2)."""
    return _compute(arch, x1, x2, ("ntk",), batch_size, dtype)[0]


def nngp_and_ntk(arch: Architecture, x1, x2=None, *, batch_size: Optional[int] = None, dtype: str = "float32"):
    """Both kernels from one pass: ``(nngp, ntk)``, each of shape (N1, N2)."""
    return _compute(arch, x1, x2, ("nngp", "ntk"), batch_size, dtype)


# --------------------------------------------------------------------------
# Layer-wise kernels of an MLP (../shared/design/adam-limit.md section 1).


@dataclasses.dataclass(frozen=True)
class LayerwiseKernels:
    """Layer-wise infinite-width kernels of an MLP with ``L`` hidden layers.

    Lists are indexed by layer as in the design note; every entry has shape
    (N1, N2).

    Attributes:
      K: ``K[l-1] = K^l``, pre-activation NNGP of layer l, l = 1..L+1
        (``K[L] = K^{L+1}`` is the output NNGP).
      S: ``S[l] = S^l = E[phi(h^l(x)) phi(h^l(x'))]``, l = 0..L
        (``S^0 = x.x'/d``).
      Sd: ``Sd[l-1] = Sd^l = E[phi'(h^l(x)) phi'(h^l(x'))]``, l = 1..L.
      B: ``B[l-1] = B^l``, backward kernel, l = 1..L+1 (``B^{L+1} = 1``).
      W_std, b_std: per weighted layer l = 1..L+1 (``W_std[l-1]``).
    """

    K: List[np.ndarray]
    S: List[np.ndarray]
    Sd: List[np.ndarray]
    B: List[np.ndarray]
    W_std: Tuple[float, ...]
    b_std: Tuple[float, ...]

    @property
    def depth(self) -> int:
        return len(self.Sd)

    @property
    def nngp(self) -> np.ndarray:
        return self.K[-1]

    def ntk_terms(self) -> List[np.ndarray]:
        """``B^l * (W_std_l^2 S^{l-1} + b_std_l^2)`` for l = 1..L+1; their sum is the NTK."""
        return [self.B[l] * (self.W_std[l] ** 2 * self.S[l] + self.b_std[l] ** 2) for l in range(self.depth + 1)]

    @property
    def ntk(self) -> np.ndarray:
        return sum(self.ntk_terms())


def _require_mlp(arch: Architecture) -> None:
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an infinite_width.Architecture, got {type(arch).__name__}")
    if not arch.is_mlp:
        raise ValueError(
            f"layer-wise kernels are defined for MLPs (alternating Dense/Activation layers), "
            f"not for {arch.name!r}"
        )


def layerwise(arch: Architecture, x1, x2=None, *, dtype: str = "float32") -> LayerwiseKernels:
    """K^l, S^l, Sd^l and B^l of an MLP, from neural-tangents' layer kernels.

    ``K^l`` and ``S^l`` come from running the network's layers one by one;
    ``Sd^l`` from passing a kernel whose ``ntk`` is all ones through the
    activation layer (its output ``ntk`` is then ``Sd^l``).
    """
    _require_mlp(arch)
    with precision_scope(dtype) as np_dtype:
        x1, x2 = validate_inputs(arch, x1, x2, np_dtype)
        out = _layerwise_jit(arch)(x1, x2)
        out = jax.tree_util.tree_map(np.asarray, out)
    K, S, Sd = out
    dense = [layer for layer in arch.layers if isinstance(layer, Dense)]
    W_std = tuple(float(layer.W_std) for layer in dense)
    b_std = tuple(float(layer.b_std) for layer in dense)
    B = [np.ones_like(K[-1])]
    for l in range(len(Sd), 0, -1):  # B^l = W_std_{l+1}^2 Sd^l * B^{l+1}
        B.insert(0, W_std[l] ** 2 * Sd[l - 1] * B[0])
    return LayerwiseKernels(K=list(K), S=list(S), Sd=list(Sd), B=B, W_std=W_std, b_std=b_std)


@functools.lru_cache(maxsize=None)
def _layerwise_jit(arch: Architecture):
    layer_kernel_fns = [_stax_layer(layer, 1, "ntk")[2] for layer in arch.layers]

    def run(x1, x2):
        other = x1 if x2 is None else x2
        S = [x1 @ other.T / x1.shape[1]]
        K, Sd = [], []
        kernel = layer_kernel_fns[0](x1, x2, None)
        for layer, kernel_fn in zip(arch.layers[1:], layer_kernel_fns[1:]):
            if isinstance(layer, Activation):
                K.append(kernel.nngp)
                derivative = kernel_fn(kernel.replace(ntk=jnp.ones_like(kernel.nngp)))
                S.append(derivative.nngp)
                Sd.append(derivative.ntk)
            kernel = kernel_fn(kernel)
        K.append(kernel.nngp)
        return K, S, Sd

    return jax.jit(run)


def max_learning_rate(ntk_train_train, y_train_size: Optional[int] = None, momentum: float = 0.0) -> float:
    """Largest stable learning rate of gradient descent on ``0.5 * mean((f - y)^2)`` with this NTK.

    The same formula as ``neural_tangents.predict.max_learning_rate``
    (``2 (1 + momentum) N k / lambda_max``), which no longer runs on
    scipy >= 1.14.
    """
    k = np.asarray(ntk_train_train, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"ntk_train_train must be a square matrix, got shape {k.shape}")
    factor = k.shape[0] if y_train_size is None else int(y_train_size)
    lam_max = np.linalg.eigvalsh(k)[-1]
    return float(2.0 * (1.0 + momentum) * factor / lam_max)


def nnpk(arch: Architecture, x1, x2=None, **options) -> np.ndarray:
    """Monte Carlo Neural Network Prior Kernel ``E_theta[f(x) . f(x')]``, shape (N1, N2).

    The kernel of random finite networks (Amid et al. 2022); also for
    architectures without a closed form. Options and normalisation:
    :func:`infinite_width.nnpk.nnpk` (imported on use: it builds on
    :mod:`infinite_width.networks`, which imports this module).
    """
    from infinite_width.nnpk import nnpk as monte_carlo_nnpk

    return monte_carlo_nnpk(arch, x1, x2, **options)
