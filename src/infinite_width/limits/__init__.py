"""Infinite-width limits of training, given the kernels.

* [`kernel_dynamics`][infinite_width.limits.kernel_dynamics]: NTK and NNGP gradient
  descent in function space (discrete time, exact; or neural-tangents'
  gradient flow), docs/theory.md, section 4;
* [`baselines`][infinite_width.limits.baselines]: the NNGP posterior and kernel
  ridge regression (``t = infinity``), section 4;
* [`adam_limit`][infinite_width.limits.adam_limit]: the Adam-like limit of MLPs by
  Monte Carlo and its exact special cases, sections 5 to 7.
"""

from infinite_width.limits import adam_limit, baselines, kernel_dynamics

__all__ = ["adam_limit", "baselines", "kernel_dynamics"]
