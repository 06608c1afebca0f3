"""One spelling per shared option, and a clear error for the others.

The same words mean the same thing everywhere: `parametrization` (not
"parameterization"), `key` for a jax PRNG key or an int seed of one (`seed`
is numpy randomness: data subsets, bootstraps), `samples`, `networks`,
`seeds`, `steps`, `width`, `centered`, `normalize`, and `lr` for a learning
rate (the optimizer constructors of `infinite_width.optim` take optax's
`learning_rate`). A function decorated with
`canonical_keywords`
answers another spelling with a `TypeError` that names the right one,
instead of Python's bare "unexpected keyword argument".
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, Mapping, Optional

__all__ = ["NON_CANONICAL", "canonical_keywords"]

NON_CANONICAL = {
    "parameterization": "parametrization",
    "parameterisation": "parametrization",
    "parametrisation": "parametrization",
    "n_samples": "samples",
    "num_samples": "samples",
    "mc_samples": "samples",
    "n_networks": "networks",
    "num_networks": "networks",
    "n_seeds": "seeds",
    "num_seeds": "seeds",
    "n_steps": "steps",
    "num_steps": "steps",
    "rng": "key",
    "rng_key": "key",
    "prng_key": "key",
    "random_state": "key",
    "seed": "key",
    "centred": "centered",
    "normalise": "normalize",
    "hidden_width": "width",
    "hidden_size": "width",
    "batchsize": "batch_size",
    "minibatch_size": "batch_size",
    "learning_rate": "lr",
}
"""Spellings the package does not use, and the word it uses instead."""


def canonical_keywords(function: Optional[Callable] = None, *, spellings: Mapping[str, str] = NON_CANONICAL):
    """Decorate `function` so that a keyword spelled otherwise than the package does raises a clear `TypeError`.

    A keyword that is one of `function`'s own parameters is never refused,
    so a function whose parameter is `seed` keeps it.

    Args:
      function: the function (or a class's `__init__`).
      spellings: `{other spelling: the package's word}`.

    Returns:
      The decorated function (a decorator when `function` is None).
    """
    if function is None:
        return functools.partial(canonical_keywords, spellings=spellings)
    own = set(inspect.signature(function).parameters)
    name = function.__qualname__.replace(".__init__", "")

    @functools.wraps(function)
    def checked(*args, **kwargs):
        for keyword in kwargs:
            if keyword not in own and keyword in spellings:
                raise TypeError(
                    f"{name}() takes {spellings[keyword]}=, not {keyword}= (the package spells each option one way "
                    "everywhere)"
                )
        return function(*args, **kwargs)

    return checked
