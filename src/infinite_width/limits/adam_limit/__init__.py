"""The Adam-like infinite-width limit (docs/theory.md, sections 5-7 and 10).

* `simulate` -- the Monte Carlo engine for MLPs and convolutional networks (channels as width), any
  optimizer of `infinite_width.optim`, any loss, full batch or minibatches
  (`infinite_width.limits.adam_limit.engine`; planned by `infinite_width.limits.adam_limit.planning`, sampled
  by `infinite_width.limits.adam_limit.sampling`, stepped lazily by `infinite_width.limits.adam_limit.step`);
* `AdamLimit` -- its options, one record (`infinite_width.limits.adam_limit.options`);
* `estimate_memory`, `estimate_conv_memory` -- bytes a configuration needs, checked before allocating;
* `sampling_root`, `pivoted_root` -- (truncated) pivoted Cholesky roots of layer kernels, used to draw
  the fields;
* exact special cases (docs/theory.md, section 6, `infinite_width.limits.adam_limit.exact`):
  `sign_kernel`, `sign_dynamics`, `sign_sgd_dynamics`, `normalized_readout_dynamics` and their Gaussian
  integrals.
"""

from infinite_width.limits.adam_limit.engine import LimitResult, simulate
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
from infinite_width.limits.adam_limit.features import DEFAULT_FEATURES, DEFAULT_RANK
from infinite_width.limits.adam_limit.memory import (
    MemoryEstimate,
    available_memory,
    estimate_conv_memory,
    estimate_memory,
)
from infinite_width.limits.adam_limit.options import STORAGE_DTYPES, AdamLimit
from infinite_width.limits.adam_limit.planning import check_architecture
from infinite_width.limits.adam_limit.roots import Root, pivoted_root, sampling_root
from infinite_width.limits.adam_limit.sampling import SampledFields, sample_fields

__all__ = [
    "simulate",
    "AdamLimit",
    "LimitResult",
    "check_architecture",
    "sample_fields",
    "SampledFields",
    "estimate_memory",
    "estimate_conv_memory",
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
