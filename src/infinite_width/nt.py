"""neural-tangents, working on current jax: ``from infinite_width import nt``.

neural-tangents 0.6.5 (its last release) does not import on jax >= 0.6 and
imports TensorFlow when it does. This module is that package after
`infinite_width._src.nt` has restored the names it needs and kept
TensorFlow out: every public name of ``neural_tangents`` is here
(``nt.stax``, ``nt.predict``, ``nt.batch``, ``nt.empirical_ntk_fn``,
``nt.monte_carlo_kernel_fn``, ``nt.Kernel``, ...):

```python
from infinite_width import nt

init_fn, apply_fn, kernel_fn = nt.stax.serial(nt.stax.Dense(512), nt.stax.Relu(), nt.stax.Dense(1))
K = infinite_width.kernels.nngp(kernel_fn, x)  # any stax kernel_fn works with our kernels
```

Importing it imports neural-tangents (``import infinite_width`` alone does
not). What does not work on current jax, and one trap under jax
transformations (``predict.gradient_descent_mse`` raises
``UnexpectedTracerError`` under ``jit``/``vmap``/``grad``; use
``predict.gradient_descent_mse_ensemble`` or ``predict.gp_inference``), is
listed in `infinite_width._src.nt`.
"""

from infinite_width._src.nt import nt as _neural_tangents

__all__ = sorted(name for name in vars(_neural_tangents) if not name.startswith("_"))


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_neural_tangents, name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
