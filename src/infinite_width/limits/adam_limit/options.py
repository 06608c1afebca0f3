"""The options of the Monte Carlo engine, in one record with one default and one check each.

[`AdamLimit`][infinite_width.limits.adam_limit.options.AdamLimit] is what
[`simulate`][infinite_width.limits.adam_limit.engine.simulate] takes whole
(``options=``); `infinite_width.AdamLimit`, the method that
`infinite_width.solve` runs, is this record with the method's behaviour added
(`infinite_width.workflow.methods`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax.numpy as jnp

from infinite_width._src.checks import check_choice, check_int
from infinite_width.limits.adam_limit.features import DEFAULT_FEATURES, DEFAULT_RANK

__all__ = ["AdamLimit", "STORAGE_DTYPES"]

STORAGE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
"""Storage dtypes of the sampled fields (arithmetic is float32 in both)."""


@dataclasses.dataclass(frozen=True)
class AdamLimit:
    """Options of the Adam-like limit's Monte Carlo engine (docs/theory.md, sections 7 and 10).

    The predictions are the mean over ``replicas`` independent runs of
    ``samples / replicas`` samples each, with their standard errors.

    Attributes:
      samples: total Monte Carlo samples M, a multiple of ``replicas``.
      replicas: independent replicas R >= 2 (they give the error bars).
      storage_dtype: ``"float32"`` or ``"bfloat16"`` for the stored fields
        (arithmetic stays float32).
      rank: a root of a layer kernel whose numerical rank exceeds
        ``rank + features`` keeps its leading ``rank`` pivoted Cholesky
        columns (``None``: exact roots).
      features: with ``rank``, random features of the residual per replica:
        the covariance is then right in expectation (``0``: plain truncation,
        biased). The measured bias is in docs/BENCHMARKS.md.
      block_rows: points per block in a step and in the predictions (bounds
        the temporaries; ``None``: from a 256 MiB budget).

    Raises:
      ValueError: an option out of range (named), or ``samples`` not a
        multiple of ``replicas``.
      TypeError: an option that is not a number where one is needed.
    """

    samples: int = 65536
    replicas: int = 8
    storage_dtype: str = "float32"
    rank: Optional[int] = DEFAULT_RANK
    features: int = DEFAULT_FEATURES
    block_rows: Optional[int] = None

    def __post_init__(self):
        replicas = check_int("replicas", self.replicas, 2)
        samples = check_int("samples", self.samples, replicas)
        if samples % replicas:
            raise ValueError(
                f"samples ({samples}) must be a multiple of replicas ({replicas}), e.g. {samples - samples % replicas}"
            )
        check_choice("storage_dtype", self.storage_dtype, STORAGE_DTYPES)
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "replicas", replicas)
        if self.rank is not None:
            object.__setattr__(self, "rank", check_int("rank", self.rank, 1))
        object.__setattr__(self, "features", check_int("features", self.features, 0))
        if self.block_rows is not None:
            object.__setattr__(self, "block_rows", check_int("block_rows", self.block_rows, 1))

    @property
    def samples_per_replica(self) -> int:
        """C = M / R, the samples of one replica."""
        return self.samples // self.replicas
