"""The lazy engine equals an eager evaluation of the limit on the same random draws.

The engine (``adam_limit.simulate``) never updates the function on all points:
it keeps each sample's accumulated update and evaluates ``f_t`` on the batch
rows only (docs/theory.md, section 7). The reference below is the eager
algorithm, written here: every step it computes the normalized gradients and
moves ``f`` on ALL points by ``lr * sum_terms coef * mean_m U V Q_t``. It
reads the engine's stored fields (``engine.sample_fields``, the same draws)
but builds its own terms from the architecture (docs/theory.md, section 5),
its own chi, and its own per-point factors ``U``, ``V``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import optim
from infinite_width.limits import adam_limit
from infinite_width.limits.adam_limit import sample_fields
from infinite_width.limits.adam_limit.fields import widen
from infinite_width.architectures import Activation, Architecture, Dense, activation_fn

N_TRAIN, N_TEST, DIM = 14, 6, 5


def _chi(loss, f, y):
    """d loss / d f for one replica: mse = 0.5 mean over all entries, CE = mean over rows."""
    if loss == "mse":
        return (f - y) / f.size
    shifted = np.exp(f - f.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True) - y) / f.shape[0]


def _derivative(name, h):
    fn = activation_fn(name)
    return np.asarray(jax.vmap(jax.grad(lambda s: fn(s)))(jnp.asarray(h.ravel()))).reshape(h.shape)


def _eager_terms(arch, readout_only, linear):
    """(name, coef, u layer or None, v: "x" | None | layer) from the architecture: docs/theory.md, section 5."""
    W = [float(layer.W_std) ** (2 if linear else 1) for layer in arch.layers[::2]]
    b = [float(layer.b_std) ** (2 if linear else 1) for layer in arch.layers[::2]]
    L = arch.depth
    terms = [("readout", W[L], None, L)]
    if not readout_only:
        terms += [("input", W[0], 1, "x")] + [(f"w{l}", W[l - 1], l, l - 1) for l in range(2, L + 1)]
        terms += [(f"b{l}", b[l - 1], l, None) for l in range(1, L + 1)]
    return terms, b[L]


def eager_reference(arch, sampled, x_all, y, f0, optimizer, loss, readout_only, batches):
    """Predictions (R, steps + 1, P, k) of the eager algorithm on the stored fields of ``sampled``."""
    fields = {name: np.asarray(value) if name == "coordinate" else np.asarray(widen(value), np.float64)
              for name, value in sampled.fields.items()}
    L, R = arch.depth, sampled.model.layout.replicas
    h = {l: fields[f"h{l}"] for l in range(1, L + 1) if f"h{l}" in fields}
    phi = {l: np.asarray(activation_fn(arch.activations[l - 1])(h[l])) for l in h}
    u = {}  # u^l_c on all points: (P, R, k, C)
    for l in h:
        z = fields[f"z{l}"] if l < L else fields.get("zeta", None)
        if z is not None:
            u[l] = _derivative(arch.activations[l - 1], h[l])[:, :, None, :] * (z if l < L else z[None])
    ones = np.ones_like(next(iter(h.values())))

    def v_of(v):
        if v == "x":
            return x_all[:, fields["coordinate"]]  # (P, R, C)
        return ones if v is None else phi[v]

    terms, out_coef = _eager_terms(arch, readout_only, not optimizer.adaptive)
    direction = optimizer.direction(eps_scale=1.0)
    state = direction.init({name: jnp.zeros((R, arch.out_dim) + ones.shape[2:] if u_l is None else ones.shape[1:],
                                            jnp.float32) for name, _, u_l, _ in terms} | {"out": jnp.zeros((R, arch.out_dim))})
    f = np.broadcast_to(f0, (R,) + f0.shape).astype(np.float64)
    history = [f.copy()]
    for rows in batches:
        chi = np.stack([_chi(loss, f[r, rows], y[rows]) for r in range(R)])  # (R, B, k)
        grads = {"out": chi.sum(axis=1)}
        for name, _, u_l, v in terms:
            V = v_of(v)[rows]
            grads[name] = (np.einsum("brc,rbk->rkc", V, chi) if u_l is None
                           else np.einsum("brkc,brc,rbk->rc", u[u_l][rows], V, chi))
        directions, state = direction.update({n: jnp.asarray(g, jnp.float32) for n, g in grads.items()}, state)
        Q = {n: np.asarray(q, np.float64) for n, q in directions.items()}
        update = out_coef * Q["out"][:, None, :]
        for name, coef, u_l, v in terms:
            V = v_of(v)
            mean = (np.einsum("prc,rkc->rpk", V, Q[name]) if u_l is None
                    else np.einsum("prkc,prc,rc->rpk", u[u_l], V, Q[name])) / V.shape[-1]
            update = update + coef * mean
        f = f - optimizer.lr * update
        history.append(f.copy())
    return np.stack(history, axis=1)


def _mixed_mlp(out_dim):
    """Three hidden layers with different scales and activations."""
    return Architecture((Dense(None, 1.4, 0.3), Activation("erf"), Dense(None, 1.1, 0.2), Activation("relu"),
                         Dense(None, 1.3, 0.1), Activation("gelu"), Dense(out_dim, 0.9, 0.25)), name="mixed")


CASES = {
    # name: (arch, optimizer, loss, readout_only, batches ("full" or (B, repeats)), storage, block_rows, f0)
    "adam-full-batch-mse-f0": (iw.mlp(2, "relu", 1.3, 0.2, 2), optim.adam(0.05, 0.9, 0.99), "mse", False, "full",
                               "float32", None, True),
    "sign-readout-minibatch-repeats-ce": (iw.mlp(2, "relu", 1.2, 0.3, 3), optim.sign(0.03), "cross_entropy",
                                          True, 5, "float32", None, False),
    "momentum-minibatch-mixed-depth3-blocks-bf16": (_mixed_mlp(2), optim.momentum(0.3, 0.8), "mse", False, 6,
                                                    "bfloat16", 2, False),
    "sgd-full-batch-ce-depth1": (iw.mlp(1, "erf", 1.5, 0.4, 2), optim.sgd(1.0), "cross_entropy", False, "full",
                                 "float32", 3, False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lazy_engine_equals_eager_evaluation_on_the_same_draws(name):
    arch, optimizer, loss, readout_only, batch, storage, block_rows, with_f0 = CASES[name]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM)).astype(np.float32)
    k = arch.out_dim
    y = (np.eye(k, dtype=np.float32)[rng.integers(0, k, N_TRAIN)] if loss == "cross_entropy"
         else rng.normal(size=(N_TRAIN, k)).astype(np.float32))
    f0 = rng.normal(scale=0.3, size=(N_TRAIN + N_TEST, k)).astype(np.float32) if with_f0 else np.zeros((20, k), np.float32)
    steps, samples, replicas, key = 7, 96, 3, jax.random.PRNGKey(4)
    batches = (np.tile(np.arange(N_TRAIN), (steps, 1)) if batch == "full"
               else rng.integers(0, N_TRAIN, size=(steps, batch)))  # minibatches with repeated rows
    result = adam_limit.simulate(
        arch, x[:N_TRAIN], y, x[N_TRAIN:], optimizer, steps, key=key, loss=loss, readout_only=readout_only,
        batch_indices=None if batch == "full" else batches, samples=samples, replicas=replicas,
        storage_dtype=storage, block_rows=block_rows,
        f0_train=f0[:N_TRAIN] if with_f0 else None, f0_test=f0[N_TRAIN:] if with_f0 else None,
    )
    sampled = sample_fields(arch, x, key=key, samples=samples, replicas=replicas, readout_only=readout_only,
                                   linear=not optimizer.adaptive, storage_dtype=storage)
    reference = eager_reference(arch, sampled, x.astype(np.float64), y, f0, optimizer, loss, readout_only, batches)
    lazy = np.concatenate([result.replica_train_predictions, result.replica_test_predictions], axis=2)
    moved = np.abs(reference[:, -1] - reference[:, 0]).max()
    print(name, "max |lazy - eager|", np.abs(lazy - reference).max(), "moved", moved)
    assert moved > 0.05  # the dynamics moved the outputs
    np.testing.assert_allclose(lazy, reference, rtol=0, atol=2e-5 * max(1.0, np.abs(reference).max()))
