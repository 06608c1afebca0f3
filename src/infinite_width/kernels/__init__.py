"""Kernels of an [`Architecture`][infinite_width.Architecture].

* [`analytic`][infinite_width.kernels.analytic]: the closed-form infinite-width
  [`nngp`][infinite_width.kernels.nngp] and [`ntk`][infinite_width.kernels.ntk] (neural-tangents),
  [`max_learning_rate`][infinite_width.kernels.max_learning_rate], and the neural-tangents triple
  [`stax`][infinite_width.kernels.stax] of an architecture;
* [`layer_kernels`][infinite_width.kernels.layer_kernels]: the layer-wise kernels of an
  MLP ([`layerwise`][infinite_width.kernels.layerwise], docs/theory.md, section 2);
* [`empirical`][infinite_width.kernels.empirical]: the empirical NTK and NNGP of a
  finite network at given parameters;
* [`prior_kernel`][infinite_width.kernels.prior_kernel]: the Monte Carlo Neural Network
  Prior Kernel ([`nnpk`][infinite_width.kernels.nnpk], [`nnpk_prefixes`][infinite_width.kernels.nnpk_prefixes],
  [`nnpk_features`][infinite_width.kernels.nnpk_features]), its random networks
  ([`network_keys`][infinite_width.kernels.network_keys], [`DEFAULT_PRNG`][infinite_width.kernels.DEFAULT_PRNG]) and
  memory plan ([`plan_memory`][infinite_width.kernels.plan_memory]), and
  [`kernel_alignment`][infinite_width.kernels.kernel_alignment] (docs/theory.md, section 8);
* [`likelihood`][infinite_width.kernels.likelihood]: the GP log marginal likelihood of
  a kernel ([`log_marginal_likelihood`][infinite_width.kernels.log_marginal_likelihood]) and the fit of ``W_std``,
  ``b_std`` and the noise by gradient ascent ([`fit_hyperparameters`][infinite_width.kernels.fit_hyperparameters],
  docs/theory.md, section 9).

Kernels are per output channel, shape (N1, N2), computed at full float32
precision (``dtype="float64"`` for float64). The closed-form and layer-wise
kernels and the likelihood are JAX functions: they return jax arrays and work
under ``jax.jit``, ``jax.grad`` and ``jax.vmap``, in the inputs and in the
architecture's ``W_std`` and ``b_std``.
"""

from infinite_width.kernels.analytic import max_learning_rate, nngp, nngp_and_ntk, ntk, stax
from infinite_width.kernels.empirical import empirical_nngp, empirical_ntk
from infinite_width.kernels.layer_kernels import LayerwiseKernels, layerwise
from infinite_width.kernels.likelihood import HyperparameterFit, fit_hyperparameters, log_marginal_likelihood
from infinite_width.kernels.prior_kernel import (
    DEFAULT_PRNG,
    PRNG_IMPLS,
    MemoryPlan,
    kernel_alignment,
    network_keys,
    nnpk,
    nnpk_features,
    nnpk_prefixes,
    plan_memory,
)

__all__ = [
    "nngp",
    "ntk",
    "nngp_and_ntk",
    "max_learning_rate",
    "stax",
    "layerwise",
    "LayerwiseKernels",
    "empirical_ntk",
    "empirical_nngp",
    "nnpk",
    "nnpk_prefixes",
    "nnpk_features",
    "network_keys",
    "plan_memory",
    "MemoryPlan",
    "DEFAULT_PRNG",
    "PRNG_IMPLS",
    "kernel_alignment",
    "log_marginal_likelihood",
    "fit_hyperparameters",
    "HyperparameterFit",
]
