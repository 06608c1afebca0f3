"""Empirical kernels of a finite network at given parameters, for any architecture.

[`empirical_ntk`][infinite_width.kernels.empirical_ntk] is ``J(x1) J(x2)^T`` in the stored parameters;
[`empirical_nngp`][infinite_width.kernels.empirical_nngp] is the exact covariance of the outputs over the
readout layer's initialisation. Both converge to the closed-form kernels of
[`infinite_width.kernels.analytic`][] as the width grows (ntk
parametrization).

Shapes: ``x1`` (N1, ...), ``x2`` (N2, ...) or None (``x2 = x1``); kernels
(N1, N2) averaged over the k output channels, or (N1, N2, k, k) with
``full=True``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width._src.checks import validate_inputs
from infinite_width._src.numerics import precision_scope
from infinite_width.finite.networks import Network, Params

__all__ = ["empirical_ntk", "empirical_nngp"]


@functools.lru_cache(maxsize=None)
def _empirical_ntk_fn(net: Network, full: bool):
    from infinite_width._src.nt import NtkImplementation, nt

    fn = nt.empirical_ntk_fn(
        net.apply,
        trace_axes=() if full else (-1,),
        vmap_axes=0,
        implementation=NtkImplementation.JACOBIAN_CONTRACTION,
    )
    return jax.jit(fn)


@functools.partial(jax.jit, static_argnums=0)
def _readout_covariance(net: Network, params: Params, x1, x2):
    """``E_readout[f(x1)_a f(x2)_b]``, shape (N1, N2, k, k), from Jacobians in the unit readout variables."""
    readout_scales = net.group_scales(x1.shape[1:])[-1]
    *body, readout = params

    def outputs(unit, x):
        # Readout parameters p + sigma * unit: the Jacobian in ``unit`` at 0 is sigma * df/dp.
        shifted = {name: readout[name] + readout_scales[name].init_std * unit[name] for name in readout}
        return net.apply(body + [shifted], x)

    origin = jax.tree_util.tree_map(jnp.zeros_like, readout)
    jac1 = jax.jacrev(outputs)(origin, x1)
    jac2 = jac1 if x2 is None else jax.jacrev(outputs)(origin, x2)
    contract = lambda a, b: jnp.einsum("ia...,jb...->ijab", a, b)
    return sum(contract(jac1[name], jac2[name]) for name in readout)


def _prepare(net, params, x1, x2):
    if not isinstance(net, Network):
        raise TypeError(f"net must be an infinite_width.finite.Network, got {type(net).__name__}")
    net.check_params(params)
    return validate_inputs(net.arch, x1, x2, np.float32)


def _per_channel(full_kernel: np.ndarray) -> np.ndarray:
    return np.trace(full_kernel, axis1=2, axis2=3) / full_kernel.shape[-1]


def empirical_ntk(net: Network, params: Params, x1, x2=None, *, full: bool = False) -> np.ndarray:
    """Empirical NTK ``J(x1) J(x2)^T`` in the stored parameters, for any architecture.

    Shape (N1, N2), averaged over the k output channels like neural-tangents'
    per-channel kernels (for the ntk parametrization it converges to
    [`infinite_width.kernels.ntk`][] as the width grows); ``full=True`` gives
    the whole kernel, shape (N1, N2, k, k). ``x2=None`` means ``x2 = x1``.
    """
    with precision_scope("float32"):
        x1, x2 = _prepare(net, params, x1, x2)
        return np.asarray(_empirical_ntk_fn(net, bool(full))(x1, x2, params))


def empirical_nngp(net: Network, params: Params, x1, x2=None, *, full: bool = False) -> np.ndarray:
    """NNGP of the network's readout features: ``E[f(x1) f(x2)^T]`` over the readout layer's init.

    All other parameters are fixed at ``params``. This is the kernel that
    converges to [`infinite_width.kernels.nngp`][] as the width grows (for
    an MLP, ``W_std^2 phi(h^L).phi(h^L)'/n + b_std^2``), and, in the ntk
    parametrization, the kernel of readout-only training. It is computed
    exactly from Jacobians (the outputs are affine in the readout
    parameters); a single outer product ``f(x1) f(x2)^T`` (neural-tangents'
    ``empirical_nngp_fn``) is one random sample of it and does not converge
    with width.

    Shape (N1, N2), averaged over output channels; ``full=True`` gives
    (N1, N2, k, k) (diagonal in the channels).
    """
    with precision_scope("float32"):
        x1, x2 = _prepare(net, params, x1, x2)
        kernel = np.asarray(_readout_covariance(net, params, x1, x2))
    return kernel if full else _per_channel(kernel)
