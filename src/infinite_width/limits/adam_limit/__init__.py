"""The Adam-like infinite-width limit (docs/theory.md, sections 5-7).

* [`simulate`][infinite_width.limits.adam_limit.simulate] — Monte Carlo engine for MLPs, any optimizer of
  [`infinite_width.optim`][], any loss, full batch or minibatches
  ([`infinite_width.limits.adam_limit.engine`][]; lazy steps that read only the
  batch rows, [`step`][infinite_width.limits.adam_limit.step]);
* [`estimate_memory`][infinite_width.limits.adam_limit.estimate_memory] — bytes a configuration needs, checked before
  allocating;
* [`sampling_root`][infinite_width.limits.adam_limit.sampling_root],
  [`pivoted_root`][infinite_width.limits.adam_limit.pivoted_root] — (truncated) pivoted Cholesky roots of layer kernels,
  used to draw the fields;
* exact special cases (docs/theory.md, section 6, [`infinite_width.limits.adam_limit.exact`][]):
  [`sign_kernel`][infinite_width.limits.adam_limit.sign_kernel],
  [`sign_dynamics`][infinite_width.limits.adam_limit.sign_dynamics],
  [`sign_sgd_dynamics`][infinite_width.limits.adam_limit.sign_sgd_dynamics],
  [`normalized_readout_dynamics`][infinite_width.limits.adam_limit.normalized_readout_dynamics] and their Gaussian
  integrals.
"""

from infinite_width.limits.adam_limit.engine import STORAGE_DTYPES, LimitResult, simulate
from infinite_width.limits.adam_limit.features import DEFAULT_FEATURES, DEFAULT_RANK
from infinite_width.limits.adam_limit.exact import (
    activation_sign_expectation,
    derivative_sign_expectation,
    gaussian_expectation_2d,
    linear_sign_expectation,
    normalized_readout_dynamics,
    sign_dynamics,
    sign_kernel,
    sign_sgd_dynamics,
)
from infinite_width.limits.adam_limit.memory import MemoryEstimate, available_memory, estimate_memory
from infinite_width.limits.adam_limit.roots import Root, pivoted_root, sampling_root

__all__ = [
    "simulate",
    "LimitResult",
    "estimate_memory",
    "available_memory",
    "MemoryEstimate",
    "sampling_root",
    "pivoted_root",
    "Root",
    "STORAGE_DTYPES",
    "DEFAULT_RANK",
    "DEFAULT_FEATURES",
    "gaussian_expectation_2d",
    "linear_sign_expectation",
    "derivative_sign_expectation",
    "activation_sign_expectation",
    "sign_kernel",
    "sign_dynamics",
    "sign_sgd_dynamics",
    "normalized_readout_dynamics",
]
