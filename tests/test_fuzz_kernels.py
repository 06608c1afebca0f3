"""Fuzz suite of the kernels, optimizers and finite networks (issue 24): each class of hostile input, not each case.

* scales: any architecture at any input scale is either refused (naming the inputs and the scale) or
  within the tolerance of float64, never silently wrong;
* sizes: any size and memory limit gives the result or a ``MemoryError`` planned before allocating, never an
  allocator's error;
* square kernels: every function that reads one triangle refuses a non-symmetric matrix;
* targets: integer labels, complex and boolean targets are refused naming ``y_train``;
* optimizers: what a limit cannot use (an optax transformation, Nesterov, an untraceable schedule) is refused
  saying what to pass.
"""

import math

import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import infinite_width as iw
from infinite_width import finite, kernels, optim, testing
from infinite_width.kernels import scale
from infinite_width.limits import baselines, kernel_dynamics

FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

RNG = np.random.default_rng(5)
ROWS = RNG.standard_normal((5, 3))


def _normalized_error(k32, k64) -> float:
    k32, k64 = np.asarray(k32, np.float64), np.asarray(k64, np.float64)
    diagonal = np.sqrt(np.abs(np.diag(k64)))
    norm = np.outer(diagonal, diagonal)
    return float(np.max(np.abs(k32 - k64) / np.where(norm > 0, norm, 1.0)))


def _all_kernels(kind, arch, x, dtype):
    if kind == "layerwise":
        lw = kernels.layerwise(arch, x, dtype=dtype)
        return [*lw.K, *lw.S, *lw.Sd, *lw.B]
    return list(kernels.nngp_and_ntk(arch, x, dtype=dtype))


@FUZZ
@given(
    arch=testing.architectures(activations=("relu", "erf", "sin"), depths=(1, 2), out_dims=(1,)),
    exponent=st.integers(-24, 24),
    kind=st.sampled_from(["closed_form", "layerwise"]),
)
def test_every_kernel_is_refused_or_accurate_at_any_scale(arch, exponent, kind):
    x = ROWS * 10.0**exponent
    try:
        single = _all_kernels(kind, arch, x, "float32")
    except ValueError as error:
        assert "x1 has rows at scale" in str(error) and "dtype='float64'" in str(error)
        return
    double = _all_kernels(kind, arch, x, "float64")  # a float32 result implies a finite float64 one
    error = max(_normalized_error(a, b) for a, b in zip(single, double))
    assert error <= scale.TOLERANCE, (arch.name, exponent, error)


def _call_with_memory(entry, x, limit):
    arch = iw.mlp(1, "relu", out_dim=2)
    if entry == "nngp":
        return kernels.nngp(arch, x, max_memory_bytes=limit), (len(x), len(x))
    if entry == "layerwise":
        return kernels.layerwise(arch, x, max_memory_bytes=limit).ntk, (len(x), len(x))
    if entry == "nnpk":
        return kernels.nnpk(arch, x, width=8, networks=4, key=0, max_memory_bytes=limit), (len(x), len(x))
    y = np.zeros((len(x), 2))
    fit = kernels.fit_hyperparameters(arch, x, y, init={"noise": 1.0}, steps=1, max_memory_bytes=limit)
    return np.asarray(fit.trace["log_likelihood"]), (2,)


@FUZZ
@given(
    entry=st.sampled_from(["nngp", "layerwise", "nnpk", "fit_hyperparameters"]),
    rows=st.sampled_from([12, 40, 200_000]),
    limit_exponent=st.floats(2.0, 9.0),
)
def test_sizes_beyond_memory_are_refused_before_allocating(entry, rows, limit_exponent):
    x = np.ones((rows, 3), np.float32) + np.arange(rows, dtype=np.float32)[:, None] / rows
    limit = int(10.0**limit_exponent)
    try:
        result, shape = _call_with_memory(entry, x, limit)
    except MemoryError as error:
        assert "available" in str(error)
        return
    assert rows < 200_000 and np.shape(result) == shape and np.all(np.isfinite(result))


def _spd(n=5):
    a = RNG.standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


SQUARE_KERNEL_CALLS = {
    "k_train_train": lambda k, y: kernels.log_marginal_likelihood(k, y, 0.1),
    "ntk_train_train": lambda k, y: kernels.max_learning_rate(k, 2),
    "K_train_train": lambda k, y: baselines.kernel_regression(k, y, k),
    "k_test_test": lambda k, y: baselines.nngp_posterior(_spd(), y, np.ones((5, 5)), k),
}


@FUZZ
@given(name=st.sampled_from(sorted(SQUARE_KERNEL_CALLS)), size=st.floats(-4.0, 1.0), seed=st.integers(0, 99))
def test_square_kernels_that_are_not_symmetric_are_refused(name, size, seed):
    k = _spd()
    skew = np.random.default_rng(seed).standard_normal((5, 5))
    skew = (skew - skew.T) * 10.0**size * np.abs(k).max()
    y = np.ones((5, 2))
    with pytest.raises(ValueError, match=f"{name} is not symmetric"):
        SQUARE_KERNEL_CALLS[name](k + skew, y)


TARGET_CALLS = {
    "finite.train": lambda y: finite.train(finite.network(iw.mlp(1, out_dim=2), 4), ROWS, y, optim.sgd(0.1), 1,
                                           record=[1]),
    "log_marginal_likelihood": lambda y: kernels.log_marginal_likelihood(_spd(), y, 0.1),
    "kernel_ridge": lambda y: baselines.kernel_ridge(_spd(), np.ones((2, 5)), y),
    "kernel_regression": lambda y: baselines.kernel_regression(_spd(), y, np.ones((2, 5))),
    "nngp_posterior": lambda y: baselines.nngp_posterior(_spd(), y, np.ones((2, 5)), np.eye(2)),
}
BAD_TARGETS = {
    "labels": (np.arange(5) % 2, ValueError, r"integer entries: class labels"),
    "complex": (np.ones((5, 2)) + 1j, TypeError, "real numbers"),
    "bool": (np.ones((5, 2), bool), TypeError, "real numbers"),
}


@FUZZ
@given(call=st.sampled_from(sorted(TARGET_CALLS)), bad=st.sampled_from(sorted(BAD_TARGETS)))
def test_targets_that_are_labels_or_not_real_are_refused_naming_them(call, bad):
    y, error, match = BAD_TARGETS[bad]
    with pytest.raises(error, match=rf"y_train.*{match}|{match}.*y_train|y_train must hold {match}"):
        TARGET_CALLS[call](y)


LIMITS = {
    "KernelDynamics": lambda opt: iw.solve(iw.Problem(ROWS, ROWS[:, :1], ROWS, ROWS[:, :1]), iw.mlp(1),
                                           iw.KernelDynamics(), opt, steps=1, progress=False),
    "AdamLimit": lambda opt: iw.solve(iw.Problem(ROWS, ROWS[:, :1], ROWS, ROWS[:, :1]), iw.mlp(1),
                                      iw.AdamLimit(64, 2), opt, steps=1, progress=False),
    "kernel_dynamics.run": lambda opt: kernel_dynamics.run(_spd(), None, np.ones((5, 1)), opt, [0, 1]),
}
TRANSFORMATIONS = {
    "sgd": optax.sgd(0.1), "adam": optax.adam(1e-3), "chain": optax.chain(optax.clip(1.0), optax.sgd(0.1)),
    "scheduled": optax.sgd(optax.cosine_decay_schedule(0.1, 10)),
}


@FUZZ
@given(limit=st.sampled_from(sorted(LIMITS)), transformation=st.sampled_from(sorted(TRANSFORMATIONS)))
def test_a_limit_given_an_optax_transformation_says_to_pass_a_spec(limit, transformation):
    with pytest.raises(TypeError, match="needs an infinite_width.optim spec.*entrywise update rule"):
        LIMITS[limit](TRANSFORMATIONS[transformation])


@pytest.mark.parametrize("build, error, match", [
    (lambda: optim.sgd(0.1, momentum=0.9, nesterov=True), ValueError, "nesterov"),
    (lambda: optim.adam(lambda t: math.cos(t)), TypeError, "traceable"),
    (lambda: optim.momentum(optax.cosine_decay_schedule(0.1, 10), beta=1.0), ValueError, "beta"),
    (lambda: optim.sgd(0.1, momentum=-0.5), ValueError, "momentum"),
])
def test_optimizer_specs_refuse_what_no_limit_means(build, error, match):
    with pytest.raises(error, match=match):
        build()
