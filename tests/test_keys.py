"""Keys and minibatch orders: one derivation (RunKeys), seeds of every kind, orders planned before they are built.

Issue 21: the same key means the same run for ``solve(Finite)`` and ``finite.train``; ints and numpy
Generators are seeds. Issue 24: a huge ``steps`` never builds a (steps, N) array for the full batch, and
a minibatch order too large to build is refused before any work, with advice.
"""

import math

import jax
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import finite, optim
from infinite_width._src import rng as run_rng
from infinite_width._src.checks import as_key, as_seed
from infinite_width._src.rng import MAX_ORDER_BYTES, minibatch_indices, run_keys
from infinite_width.workflow import methods

N, NT, D = 12, 4, 3
ARCH = iw.mlp(1, out_dim=1)
_DATA = np.random.default_rng(0).normal(size=(N + NT, D)).astype(np.float32)
PROBLEM = iw.Problem(_DATA[:N], np.tanh(_DATA[:N, :1]), _DATA[N:], np.tanh(_DATA[N:, :1]))


# ------------------------------------------------------------------------------------------------ seeds


def test_int_seeds_cover_numpy_range_and_distinct_seeds_give_distinct_keys():
    # Below 2**32 an int seed is jax's own PRNGKey, so earlier results keep their keys.
    for seed in (0, 1, 2**32 - 1):
        np.testing.assert_array_equal(as_key(seed), jax.random.PRNGKey(seed))
    # jax's PRNGKey drops the upper 32 bits without x64: 2**32 would alias 0. Here it does not.
    keys = {tuple(np.asarray(as_key(seed)).tolist()) for seed in (0, 2**32, 2**33, 2**64 - 1, 2**64 - 2**32)}
    assert len(keys) == 5
    assert as_seed("seed", np.int64(7)) == as_seed("seed", np.array(7)) == 7


@pytest.mark.parametrize("bad, error", [(2**64, ValueError), (-1, ValueError), (1.5, TypeError), ("3", TypeError),
                                        (None, TypeError), (True, TypeError), ([1, 2, 3], TypeError),
                                        (np.array([1, 2]), TypeError), (np.zeros(2, np.float32), TypeError)])
def test_a_bad_key_is_named(bad, error):
    with pytest.raises(error, match="key must be"):
        as_key(bad)
    if bad is None:  # solve reads None as its default, 0
        return
    # every entry point that draws randomness names it the same way, before any work
    with pytest.raises(error, match="key must be"):
        iw.solve(PROBLEM, ARCH, iw.Finite(4), optim.sgd(0.1), steps=1, key=bad, progress=False)


def test_a_numpy_generator_is_a_seed_that_advances():
    first, second = as_key(np.random.default_rng(5)), as_key(np.random.default_rng(5))
    np.testing.assert_array_equal(first, second)  # same generator state, same key
    generator = np.random.default_rng(5)
    assert not np.array_equal(as_key(generator), as_key(generator))  # drawing advances it, as in numpy
    runs = [iw.solve(PROBLEM, ARCH, iw.Finite(4), optim.sgd(0.1), steps=2, key=np.random.default_rng(9),
                     progress=False) for _ in range(2)]
    assert runs[0] == runs[1]
    assert iw.datasets.load("digits", n_train=20, seed=np.random.default_rng(3)).labels_train.tolist() == \
        iw.datasets.load("digits", n_train=20, seed=np.random.default_rng(3)).labels_train.tolist()


# ------------------------------------------------------------------------------------------ one derivation


def test_solve_with_finite_and_finite_train_are_the_same_run_for_the_same_key():
    net = finite.network(ARCH, 8)
    for key, batch_size in ((3, 4), (np.random.default_rng(1), None), (jax.random.PRNGKey(11), 5)):
        other = np.random.default_rng(1) if isinstance(key, np.random.Generator) else key
        solved = iw.solve(PROBLEM, ARCH, iw.Finite(8, seeds=2), optim.sgd(0.3), steps=7, batch_size=batch_size,
                          record=[0, 3, 7], key=key, progress=False)
        trained, state = finite.train(net, PROBLEM.x_train, PROBLEM.y_train, optim.sgd(0.3), 7, record=[0, 3, 7],
                                      batch_size=batch_size, key=other, seeds=2, x_test=PROBLEM.x_test,
                                      centered=True, return_params=True)
        np.testing.assert_array_equal(solved.train_predictions, trained.train)
        np.testing.assert_array_equal(solved.test_predictions, trained.test)
    # ... and the networks are those the documented keys initialise
    keys = run_keys(jax.random.PRNGKey(11))
    for seed in range(2):
        expected = net.init(keys.init_keys(2)[seed], (D,))
        np.testing.assert_array_equal(state.initial_params[0]["W"][seed], np.asarray(expected[0]["W"]))


def test_solve_derives_the_keys_once_and_hands_them_to_the_method(monkeypatch):
    derived, seen = [], {}
    real = run_rng.run_keys
    monkeypatch.setattr("infinite_width.workflow.solver.run_keys", lambda key: derived.append(key) or real(key))

    def run(self, problem, arch, optimizer, **arguments):
        seen.update(arguments)
        return iw.Predictions.deterministic(arguments["record"], np.zeros((len(arguments["record"]), N, 1)),
                                            np.zeros((len(arguments["record"]), NT, 1)))

    monkeypatch.setattr(methods.KernelDynamics, "run", run)
    iw.solve(PROBLEM, ARCH, iw.KernelDynamics(), optim.sgd(0.1), steps=3, batch_size=4, key=6, progress=False)
    assert len(derived) == 1
    assert isinstance(seen["keys"], run_rng.RunKeys)
    np.testing.assert_array_equal(seen["batch_indices"], iw.workflow.minibatch_order(6, N, 4, 3))
    assert seen["batch_indices"].dtype == np.int32
    # Full batch: no order at all, however many steps (10**9 steps once built a 44.7 GiB index array).
    iw.solve(PROBLEM, ARCH, iw.KernelDynamics(), optim.sgd(0.1), steps=10**9, record=2, progress=False)
    assert seen["batch_indices"] is None


# ---------------------------------------------------------------------------------------- the order itself


def _order_by_its_definition(batch_key, n_train, batch_size, steps):
    """Each epoch a permutation by its own key of jax.random.split(batch_key, epochs), sliced into batches."""
    per_epoch = n_train // batch_size
    epochs = math.ceil(steps / per_epoch)
    rows = [np.asarray(jax.random.permutation(key, n_train))[: per_epoch * batch_size].reshape(per_epoch, -1)
            for key in jax.random.split(batch_key, epochs)]
    return np.concatenate(rows)[:steps]


@pytest.mark.parametrize("n_train, batch_size, steps", [(10, 3, 7), (10, 10, 3), (7, 1, 30), (50, 16, 40)])
def test_the_order_drawn_in_chunks_is_the_documented_one(n_train, batch_size, steps, monkeypatch):
    monkeypatch.setattr(run_rng, "_CHUNK_ENTRIES", 2 * n_train)  # chunks of two epochs
    key = jax.random.PRNGKey(4)
    order = minibatch_indices(key, n_train, batch_size, steps)
    assert order.dtype == np.int32 and order.shape == (steps, batch_size)
    if batch_size == n_train:  # the full batch: every row, in order
        np.testing.assert_array_equal(order, np.tile(np.arange(n_train), (steps, 1)))
    else:
        np.testing.assert_array_equal(order, _order_by_its_definition(key, n_train, batch_size, steps))
    assert minibatch_indices(key, n_train, batch_size, 0).shape == (0, batch_size)


def test_an_order_too_large_is_refused_before_any_work(monkeypatch):
    ran = []
    monkeypatch.setattr(methods.Finite, "run", lambda *args, **kwargs: ran.append(1))
    steps = MAX_ORDER_BYTES // (4 * 4) + 1  # one step more than the bound allows at batch_size 4
    with pytest.raises(MemoryError, match=rf"steps={steps} x batch_size=4 .* at most {steps - 1} steps"):
        iw.solve(PROBLEM, ARCH, iw.Finite(4), optim.sgd(0.1), steps=steps, batch_size=4, record=2, progress=False)
    with pytest.raises(MemoryError, match="steps=100000000 x batch_size=4"):  # issue 24: an XLA OOM before
        iw.solve(PROBLEM, ARCH, iw.Finite(4), optim.sgd(0.1), steps=10**8, batch_size=4, record=2, progress=False)
    with pytest.raises(MemoryError, match="minibatch order"):
        iw.workflow.minibatch_order(0, N, 4, 10**8)
    assert ran == []
