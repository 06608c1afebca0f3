"""The engine against an independent Monte Carlo of the Adam-like limit, written here from its definition.

The reference below follows docs/theory.md, section 5 directly and shares no
code with the engine: fields are drawn from eigendecompositions of the layer
kernels (``K^l`` and ``Sd^l`` from neural-tangents, ``B^l`` recomputed here),
every term draws its own independent fields, the input term averages over all
d coordinates exactly (the engine samples one per sample), and Adam is coded
by hand. The network has a different W_std, b_std and activation in every
layer, k = 2 outputs, and Adam has b1 > 0.

The comparison must be sharp enough to catch a 1% error: its aggregate
statistic (the engine's predictions projected on the reference's, a relative
scale that a global 1% bias moves by 0.01) has a combined standard error
below 1/3 of 1%.
"""

import math

import jax
import numpy as np
import pytest

from infinite_width import kernels, optim
from infinite_width.limits import adam_limit
from infinite_width.architectures import Activation, Architecture, Dense, activation_fn

ARCH = Architecture((Dense(None, 1.4, 0.3), Activation("erf"), Dense(None, 1.1, 0.5), Activation("relu"),
                     Dense(None, 0.8, 0.2), Activation("gelu"), Dense(2, 1.2, 0.4)), name="mixed-mlp3")
ADAM = optim.adam(0.08, b1=0.9, b2=0.99, eps=1e-8)
STEPS, N_TRAIN, N_TEST, DIM = 5, 6, 3, 3


def _data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM))
    y = rng.normal(size=(N_TRAIN, 2))
    return x, y


def _root(kernel):
    """A (P, P) root of a PSD matrix from its eigendecomposition."""
    lam, vec = np.linalg.eigh(0.5 * (kernel + kernel.T))
    return vec * np.sqrt(np.clip(lam, 0.0, None))


class HandAdam:
    """Bias-corrected Adam, ``m_hat / (sqrt(v_hat) + eps)``, elementwise on any array of gradients."""

    def __init__(self, shape, b1, b2, eps):
        self.m, self.v, self.t = np.zeros(shape), np.zeros(shape), 0
        self.b1, self.b2, self.eps = b1, b2, eps

    def __call__(self, g):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        m_hat, v_hat = self.m / (1 - self.b1**self.t), self.v / (1 - self.b2**self.t)
        return m_hat / (np.sqrt(v_hat) + self.eps)


def reference_replica(x, y, rng, samples):
    """One replica of the limit's trajectory: (STEPS + 1, P, k), with ``samples`` draws per term."""
    dense = ARCH.layers[::2]
    W = [float(layer.W_std) for layer in dense]
    b = [float(layer.b_std) for layer in dense]
    phi = [activation_fn(name) for name in ARCH.activations]
    dphi = [jax.vmap(jax.grad(fn)) for fn in phi]
    L, k, P, d = ARCH.depth, 2, x.shape[0], x.shape[1]
    layer = kernels.layerwise(ARCH, x.astype(np.float32), dtype="float64")
    B = [np.ones((P, P))]  # B^{L+1} = 1, B^l = W_{l+1}^2 Sd^l * B^{l+1}
    for l in range(L, 0, -1):
        B.insert(0, W[l] ** 2 * np.asarray(layer.Sd[l - 1]) * B[0])
    h_roots = [_root(np.asarray(K)) for K in layer.K[:L]]
    z_roots = [_root(W[l] ** 2 * B[l]) for l in range(1, L + 1)]  # z^l ~ GP(0, W_{l+1}^2 B^{l+1})

    def h(l):
        return h_roots[l - 1] @ rng.standard_normal((P, samples))  # (P, M)

    def u(l):  # u^l_c = phi'(h^l) z^l_c: (P, M, k)
        z = np.einsum("pq,qmc->pmc", z_roots[l - 1], rng.standard_normal((P, samples, k)))
        return np.asarray(dphi[l - 1](h(l).ravel())).reshape(P, samples)[:, :, None] * z

    # term: (coefficient, U (P, M, k) or None for the readout, V (P, M, [d])); V of the input term has a
    # last axis of d coordinates, each its own parameter with its own gradient and Adam state.
    terms = [(W[0], u(1), np.broadcast_to(x[:, None, :], (P, samples, d)))]
    terms += [(W[l - 1], u(l), np.asarray(phi[l - 2](h(l - 1)))) for l in range(2, L + 1)]
    terms += [(b[l - 1], u(l), np.ones((P, samples))) for l in range(1, L + 1)]
    readout_v = np.asarray(phi[L - 1](h(L)))
    adams = [HandAdam((samples, d) if i == 0 else (samples,), ADAM.b1, ADAM.b2, ADAM.eps) for i in range(len(terms))]
    readout_adam, bias_adam = HandAdam((samples, k), ADAM.b1, ADAM.b2, ADAM.eps), HandAdam((k,), ADAM.b1,
                                                                                             ADAM.b2, ADAM.eps)
    f = np.zeros((P, k))
    history = [f.copy()]
    for _ in range(STEPS):
        chi = (f[:N_TRAIN] - y) / y.size  # d/df of 0.5 mean((f - y)^2)
        update = b[L] * bias_adam(chi.sum(axis=0))
        update = update + W[L] * np.einsum("pm,mc->pc", readout_v,
                                           readout_adam(np.einsum("im,ic->mc", readout_v[:N_TRAIN], chi))) / samples
        for (coef, U, V), adam in zip(terms, adams):
            weighted = np.einsum("imc,ic->im", U[:N_TRAIN], chi)  # sum_c chi_ic u_c(x_i): one g per hidden weight
            if V.ndim == 3:  # the input term: (1/d) sum_b E[u_c x_b Q(g_b)]
                Q = adam(np.einsum("im,imb->mb", weighted, V[:N_TRAIN]))
                update = update + coef * np.einsum("pmc,pmb,mb->pc", U, V, Q) / (samples * d)
            else:
                Q = adam(np.einsum("im,im->m", weighted, V[:N_TRAIN]))
                update = update + coef * np.einsum("pmc,pm,m->pc", U, V, Q) / samples
        f = f - ADAM.lr * update
        history.append(f.copy())
    return np.stack(history)


def _scale_and_error(engine_replicas, reference_replicas):
    """s = <mean_e, mean_r> / <mean_r, mean_r> and its jackknife standard error (both sides' replicas)."""

    def scale(e, r):
        mean_r = r.mean(axis=0)
        return float(np.sum(e.mean(axis=0) * mean_r) / np.sum(mean_r**2))

    value = scale(engine_replicas, reference_replicas)
    variance = 0.0
    for side in (0, 1):
        groups = (engine_replicas, reference_replicas)[side]
        n = groups.shape[0]
        drops = [scale(np.delete(groups, i, 0), reference_replicas) if side == 0
                 else scale(engine_replicas, np.delete(groups, i, 0)) for i in range(n)]
        variance += (n - 1) / n * np.sum((np.array(drops) - np.mean(drops)) ** 2)
    return value, math.sqrt(variance)


@pytest.mark.slow
def test_engine_matches_an_independent_monte_carlo_of_adam_to_a_third_of_a_percent():
    x, y = _data()
    replicas, reference_samples = 8, 2**13
    rng = np.random.default_rng(11)
    reference = np.stack([reference_replica(x, y, rng, reference_samples) for _ in range(replicas)])[:, -1]
    result = adam_limit.simulate(ARCH, x[:N_TRAIN], y, x[N_TRAIN:], ADAM, STEPS, key=5, samples=2**17,
                              replicas=replicas, record=[STEPS])
    engine = np.concatenate([result.replica_train_predictions, result.replica_test_predictions], axis=2)[:, 0]
    s, s_error = _scale_and_error(engine, reference)
    difference = engine.mean(axis=0) - reference.mean(axis=0)
    combined = np.sqrt(engine.var(axis=0, ddof=1) / replicas + reference.var(axis=0, ddof=1) / replicas)
    z = difference / combined
    signal = np.sqrt(np.mean(reference.mean(axis=0) ** 2))
    print(f"scale {s:.5f} +- {s_error:.5f}; max |z| {np.abs(z).max():.2f}, mean z^2 {np.mean(z**2):.2f}; "
          f"signal {signal:.3f}, combined error / signal {np.sqrt(np.mean(combined**2)) / signal:.4f}")
    assert signal > 0.3  # the outputs moved
    assert 3 * s_error < 0.01  # a 1% bias of the limit would be 3 standard errors away
    assert abs(s - 1) < 3 * s_error
    assert np.all(np.abs(z) < 4) and np.mean(z**2) < 2.5
