"""Bad numbers, overflowing data and non-finite predictions get clear answers, never invented ones."""

import math

import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import infinite_width as iw
from infinite_width import losses, optim
from infinite_width._src.checks import check_decay, check_int, check_nonnegative, check_positive
from infinite_width.problem import Problem

# ---------------------------------------------------------------- numbers (issue 9, item 12)


def test_numpy_scalars_are_numbers_and_bools_and_strings_are_not():
    assert optim.sgd(np.float32(0.1)).lr == float(np.float32(0.1))
    assert type(optim.sgd(np.float32(0.1)).lr) is float  # stored plain: reprs and metadata stay readable
    assert optim.momentum(np.float64(0.1), beta=np.float32(0.5)).beta == 0.5
    assert optim.adam(jnp.float32(0.5), b1=np.float16(0.5), eps=np.int64(0)).eps == 0.0
    with pytest.raises(TypeError, match=r"lr \(the learning rate\) must be a finite number > 0, got the bool True"):
        optim.sgd(True)
    with pytest.raises(TypeError, match="b1 must be a number in \\[0, 1\\), got 'x' of type str"):
        optim.adam(0.1, b1="x")
    with pytest.raises(TypeError, match="lr"):
        optim.sgd(np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="b2 must be a number in \\[0, 1\\), got 1.0"):
        optim.adam(0.1, b2=1.0)
    with pytest.raises(ValueError, match="lr"):
        optim.sign(math.nan)
    with pytest.raises(ValueError, match="eps"):
        optim.adam(0.1, eps=-1e-8)
    with pytest.raises(ValueError, match="lr"):
        optim.sgd(10**400)  # an int beyond float range

    assert iw.mlp(np.int64(2), W_std=np.float32(1.5), out_dim=np.int32(3)).name == "mlp2-relu"
    assert iw.mlp(np.int64(2), W_std=np.float32(1.5), out_dim=np.int32(3)) == iw.mlp(2, W_std=1.5, out_dim=3)
    assert iw.myrtle(np.int64(5)).name == "myrtle5-relu"
    with pytest.raises(ValueError, match="depth must be an integer >= 0, got 2.0"):
        iw.mlp(2.0)
    with pytest.raises(TypeError, match="depth must be an integer >= 0, got the bool True"):
        iw.mlp(True)
    with pytest.raises(TypeError, match="out_dim"):
        iw.conv(out_dim="3")
    with pytest.raises(ValueError, match="myrtle depth must be one of"):
        iw.myrtle(6)


def test_solve_accepts_numpy_scalars_for_ridge_and_batch_size():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    problem = Problem(x[:8], x[:8, :1], x[8:], x[8:, :1])
    arch = iw.mlp(1)
    plain = iw.solve(problem, arch, iw.KernelRidge("ntk", ridge=1e-4), progress=False)
    numpy = iw.solve(problem, arch, iw.KernelRidge("ntk", ridge=np.float32(1e-4)), progress=False)
    np.testing.assert_allclose(numpy.test_predictions, plain.test_predictions, rtol=1e-5)
    assert type(numpy.metadata["method"]["ridge"]) is float
    batched = iw.solve(problem, arch, optimizer=optim.sgd(0.5), width=math.inf, steps=3, batch_size=np.int64(4),
                       progress=False)
    assert batched == iw.solve(problem, arch, optimizer=optim.sgd(0.5), width=math.inf, steps=3, batch_size=4,
                               progress=False)
    with pytest.raises(TypeError, match="ridge must be a finite number >= 0, got '1e-4' of type str"):
        iw.KernelRidge("ntk", ridge="1e-4")
    with pytest.raises(TypeError, match="batch_size"):
        iw.solve(problem, arch, optimizer=optim.sgd(0.5), width=math.inf, batch_size=True)


VALUES = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.integers(-5, 5).map(np.int64),
    st.floats(-2, 2, width=32).map(np.float32),
    st.floats(-2, 2).map(np.array),  # 0-d arrays
    st.lists(st.floats(-2, 2), min_size=2, max_size=3).map(np.array),
)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_every_number_check_returns_a_plain_number_or_names_the_argument(value):
    is_number = not isinstance(value, (bool, str, type(None))) and np.ndim(value) == 0
    real = float(value) if is_number else None
    finite = is_number and math.isfinite(real)
    expected = {  # what each check accepts, written from its contract
        check_positive: finite and real > 0,
        check_nonnegative: finite and real >= 0,
        check_decay: finite and 0 <= real < 1,
        (lambda name, v: check_int(name, v, 1)): finite and real >= 1 and np.asarray(value).dtype.kind in "iu",
    }
    for check, accepted in expected.items():
        if accepted:
            result = check("arg", value)
            assert type(result) in (int, float) and result == real
        else:
            error = TypeError if not is_number else ValueError
            with pytest.raises(error, match="^arg must be "):
                check("arg", value)


# ---------------------------------------------------------------- overflow (item 10)


def test_values_beyond_float32_are_caught_after_the_cast():
    x = np.random.default_rng(0).normal(size=(6, 2))
    y = np.ones((6, 1))
    with pytest.raises(ValueError, match=r"y_train contains 4 NaN or Inf entries \(4 of them finite but beyond the "
                                         r"range of float32\)"):
        Problem(x[:4], np.full((4, 1), 1e39), x[4:], y[4:])
    big = x.copy()
    big[1, 0] = -1e39
    with pytest.raises(ValueError, match=r"x_test contains 1 NaN or Inf entries \(1 of them finite"):
        Problem(x[:4], y[:4], big[1:3], y[4:])
    assert Problem(x[:4], np.full((4, 1), 3e38), x[4:], y[4:]).y_train.max() == np.float32(3e38)  # within range
    infinite = x[:4].copy()
    infinite[0, 0] = np.inf
    with pytest.raises(ValueError, match="x_train contains 1 NaN or Inf entries$"):  # no overflow to mention
        Problem(infinite, y[:4], x[4:], y[4:])


# ---------------------------------------------------------------- accuracy of non-finite predictions (item 7)


def test_accuracy_of_non_finite_predictions_is_nan():
    targets = np.eye(3)[[0, 1, 2, 0]]
    assert np.isnan(losses.accuracy(np.full((4, 3), np.nan), targets))  # was 0.5: argmax(NaN row) = class 0
    predictions = targets.copy()
    predictions[2] = [np.inf, 0.0, 0.0]  # a single bad row poisons the mean
    assert np.isnan(losses.accuracy(predictions, targets))
    predictions[2] = [0.0, 0.0, 1.0]
    predictions[3] = [0.0, 2.0, 1.0]  # a wrong but finite row
    assert float(losses.accuracy(predictions, targets)) == 0.75
    signs = np.array([[1.0], [-1.0], [1.0]])
    assert float(losses.accuracy(np.array([[2.0], [1.0], [3.0]]), signs)) == pytest.approx(2 / 3)
    assert np.isnan(losses.accuracy(np.array([[2.0], [np.nan], [3.0]]), signs))
    with pytest.raises(TypeError, match="loss must be a name"):
        Problem(np.ones((2, 1)), np.ones((2, 1)), np.ones((1, 1)), np.ones((1, 1)), loss=["mse"])
