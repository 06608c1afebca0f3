"""The one module of ours that imports neural-tangents.

neural-tangents 0.6.5 (its last release) was written for jax <= 0.5.3. Three
things stop it from importing on current jax, and one makes it slow:

* jax 0.6 moved ``Jaxpr``, ``JaxprEqn``, ``Literal``, ``Var``, ``Primitive``
  from ``jax.core`` to ``jax.extend.core``;
* jax 0.7 removed ``jax.util.safe_map``/``safe_zip`` (0.8 removed ``jax.util``);
* jax 0.9 removed ``jax.interpreters.ad.zeros_like_p``, which neural-tangents
  only uses as a dictionary key in its structured-derivative rules;
* ``import neural_tangents`` imports TensorFlow (about 5 s, 680 MB) through
  ``neural_tangents.experimental``, which we never use.

Before importing we restore the missing names (only where they are missing,
never replacing anything jax still has) and register an empty placeholder for
``neural_tangents.experimental``. Everything else in ``infinite_width`` gets
neural-tangents from here and never touches jax internals itself.

Not usable on current jax and therefore never used by us:
``empirical_ntk_fn`` implementations 0 (AUTO) and 3 (STRUCTURED_DERIVATIVES)
on jax >= 0.10, and ``predict.max_learning_rate`` on scipy >= 1.14
([`infinite_width.kernels.max_learning_rate`][] replaces it).

Known to break on a future jax: ``empirical_ntk_fn`` implementation 1 calls
``jnp.size`` on ``jax.ShapeDtypeStruct`` (in ``_std_basis``), which jax 0.10
deprecates with a warning and says will become an error.

Not usable under ``jax.jit``, ``jax.vmap`` or ``jax.grad``:
``predict.gradient_descent_mse``. It computes the eigendecomposition of the
training kernel inside ``jax.core.eval_context()`` (``predict.py``, about
line 188, ``get_predict_fn_finite``), which leaks the transformation's tracers
and raises ``UnexpectedTracerError``. This is the one failure of
neural-tangents' own test suite (v0.6.5) run through this shim on jax 0.10.2.
``predict.gradient_descent_mse_ensemble`` and ``predict.gp_inference`` work
under transformations. None of our transformed code paths (the kernels,
[`infinite_width.kernels.likelihood`][]) use ``gradient_descent_mse``; the
kernel dynamics call it on concrete arrays only.

Users get this module's neural-tangents as [`infinite_width.nt`][].

The translation of an [`Architecture`][infinite_width.Architecture] into neural-tangents
layers lives here too (`stax_triple`, `stax_layer`), so that
architectures stay plain descriptions. Scales may be traced jax scalars:
neural-tangents' layers only square and multiply them.
"""

from __future__ import annotations

import sys
import types

import jax
import jax.extend.core
import jax.interpreters.ad

from infinite_width.architectures import (
    NO_CLOSED_FORM_ACTIVATIONS,
    NO_CLOSED_FORM_LAYERS,
    Activation,
    Architecture,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    LayerNorm,
)

__all__ = [
    "nt",
    "stax",
    "predict",
    "Kernel",
    "NtkImplementation",
    "SUPPORTED_IMPLEMENTATIONS",
    "stax_triple",
    "stax_layer",
]


def _restore_moved_names() -> None:
    for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
        if not hasattr(jax.core, name):
            setattr(jax.core, name, getattr(jax.extend.core, name))

    util = sys.modules.get("jax.util")
    if util is None:
        try:
            import jax.util as util  # noqa: F401  (present on jax < 0.8)
        except ImportError:
            util = types.ModuleType("jax.util")
            sys.modules["jax.util"] = util
            jax.util = util
    if not hasattr(util, "safe_map"):
        def safe_map(f, *args):
            args = list(map(list, args))
            if len({len(a) for a in args}) > 1:
                raise ValueError(f"safe_map: length mismatch {[len(a) for a in args]}")
            return list(map(f, *args))

        def safe_zip(*args):
            args = list(map(list, args))
            if len({len(a) for a in args}) > 1:
                raise ValueError(f"safe_zip: length mismatch {[len(a) for a in args]}")
            return list(zip(*args))

        util.safe_map = safe_map
        util.safe_zip = safe_zip

    if not hasattr(jax.interpreters.ad, "zeros_like_p"):
        # Only a dictionary key in neural_tangents/_src/utils/rules.py.
        jax.interpreters.ad.zeros_like_p = jax.extend.core.Primitive("zeros_like")


def _import_neural_tangents():
    if "neural_tangents.experimental" not in sys.modules:
        placeholder = types.ModuleType("neural_tangents.experimental")
        placeholder.__doc__ = "Not loaded by infinite_width (it imports TensorFlow)."
        sys.modules["neural_tangents.experimental"] = placeholder
    _restore_moved_names()
    try:
        import neural_tangents
    except ImportError as error:
        if getattr(error, "name", None) in ("neural_tangents", "frozendict"):
            raise ImportError(
                "infinite_width needs neural-tangents 0.6.5, installed without its "
                "TensorFlow requirements: pip install --no-deps neural-tangents==0.6.5 frozendict"
            ) from error
        raise
    return neural_tangents


nt = _import_neural_tangents()
stax = nt.stax
predict = nt.predict
Kernel = nt.Kernel
NtkImplementation = nt.NtkImplementation

SUPPORTED_IMPLEMENTATIONS = (
    NtkImplementation.JACOBIAN_CONTRACTION,
    NtkImplementation.NTK_VECTOR_PRODUCTS,
)
"""``empirical_ntk_fn`` implementations that work on every jax we support."""


# --------------------------------------------------------------------------
# Architecture -> neural-tangents layers.


def stax_activation(name: str):
    """The neural-tangents layer of the activation ``name`` (one of [`infinite_width.ACTIVATIONS`][])."""
    if name in NO_CLOSED_FORM_ACTIVATIONS:
        raise NotImplementedError(
            f"activation {name!r} has no closed-form infinite-width kernel; use its finite network or "
            "infinite_width.kernels.nnpk"
        )
    return {
        "relu": stax.Relu,
        "erf": stax.Erf,
        "gelu": lambda: stax.Gelu(approximate=False),
        "sin": stax.Sin,
        "cos": stax.Cos,
        "identity": stax.Identity,
        "abs": stax.Abs,
        "leaky_relu": lambda: stax.LeakyRelu(0.1),
    }[name]()


def stax_layer(layer, width: int, parameterization: str):
    """The neural-tangents ``(init_fn, apply_fn, kernel_fn)`` of one layer description; hidden layers get ``width``."""
    if isinstance(layer, Dense):
        out = width if layer.out is None else layer.out
        return stax.Dense(out, W_std=layer.W_std, b_std=layer.b_std, parameterization=parameterization)
    if isinstance(layer, Conv):
        out = width if layer.out is None else layer.out
        return stax.Conv(
            out,
            layer.filter_shape,
            strides=layer.strides,
            padding=layer.padding,
            W_std=layer.W_std,
            b_std=layer.b_std,
            parameterization=parameterization,
        )
    if isinstance(layer, Activation):
        return stax_activation(layer.name)
    if isinstance(layer, AvgPool):
        return stax.AvgPool(layer.window, strides=layer.strides, padding=layer.padding)
    if isinstance(layer, GlobalAvgPool):
        return stax.GlobalAvgPool()
    if isinstance(layer, Flatten):
        return stax.Flatten()
    if isinstance(layer, LayerNorm):
        return stax.LayerNorm(eps=layer.eps)
    raise NotImplementedError(f"no neural-tangents layer for {layer!r}")


def stax_triple(arch: Architecture, width: int = 1, parameterization: str = "ntk"):
    """The neural-tangents ``(init_fn, apply_fn, kernel_fn)`` of ``arch``.

    ``width`` sets the hidden size of the finite network that ``init_fn``
    and ``apply_fn`` describe; ``kernel_fn`` (the infinite-width kernels)
    does not depend on it.
    """
    if not arch.has_closed_form:
        names = sorted(
            {type(layer).__name__ for layer in arch.layers if isinstance(layer, NO_CLOSED_FORM_LAYERS)}
            | {name for name in arch.activations if name in NO_CLOSED_FORM_ACTIVATIONS}
        )
        raise NotImplementedError(
            f"architecture {arch.name!r} has no closed-form infinite-width kernel "
            f"({', '.join(names)}); use its finite network or infinite_width.kernels.nnpk"
        )
    return stax.serial(*[stax_layer(layer, width, parameterization) for layer in arch.layers])

