"""How much Monte Carlo variance a control variate with a closed-form mean would remove from the Adam-like limit.

Each sample m contributes ``coef U_m(x) V_m(x) A_{t,m}`` to the prediction after
t steps (``A_t = sum_s lr Q_s``, the accumulated Adam direction). The part of
Adam's update that is linear in the past gradients is its first moment
``m_hat_s``; its accumulation ``L_t = sum_s lr m_hat_s`` gives a control
variate ``Y = coef U V L_t`` whose expectation is a kernel expression
(``E[U V g_s]`` are the NTK terms, docs/theory.md, section 6), so
``mean(X - a Y) + a E[Y]`` is unbiased for any fixed a. With the best a, the
variance of the estimate falls by the squared correlation of X and Y across
samples. This script measures that fraction per term and recorded step, at
the test points (mean over points and outputs), and for the prediction as a
whole with one coefficient per term, fitted per point and output
(``total``, an upper bound) or once for all points and outputs
(``total_pooled``, what an engine would use); it runs the eager algorithm on
the engine's own draws (``engine.sample_fields``).

Usage (from the repository root)::

    python benchmarks/bench_adam_limit_variance.py                      # MNIST 500 + 100, full batch
    python benchmarks/bench_adam_limit_variance.py --batch-size 100 --n-train 2000 --n-test 500 --steps 500

Writes ``bench_adam_limit_variance_B<batch>.json`` under ``--out`` (default docs/).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp

import adam_limit_common as common
import infinite_width as iw
from infinite_width import losses
from infinite_width.limits.adam_limit import engine
from infinite_width.limits.adam_limit.fields import widen
from infinite_width.architectures import activation_fn

HIGHEST = jax.lax.Precision.HIGHEST


def term_factors(arch, sampled, x_all):
    """Per term: (name, coef, U (P, k, M) or None, V (P, M)) on all points, from the engine's stored fields."""
    f = {name: widen(value) if name != "coordinate" else value for name, value in sampled.fields.items()}
    depth = arch.depth
    phi = {l: activation_fn(arch.activations[l - 1])(f[f"h{l}"][:, 0]) for l in range(1, depth + 1)}
    dphi = {l: jax.vmap(jax.vmap(jax.grad(activation_fn(arch.activations[l - 1]))))(f[f"h{l}"][:, 0])
            for l in range(1, depth + 1)}
    u = {l: dphi[l][:, None] * (f[f"z{l}"][:, 0] if l < depth else f["zeta"][0][None]) for l in range(1, depth + 1)}
    v = {"x": jnp.take(x_all, f["coordinate"][0], axis=1), None: jnp.ones_like(phi[1])} | phi
    return [(t.name, t.coefficient, None if t.per_output else u[t.u_layer], v[t.v]) for t in sampled.terms]


def main():
    parser = common.parser(__doc__.split("\n")[0], n_train=500, n_test=100, samples=4096, steps=100,
                           batch_size=None)
    args = parser.parse_args()
    problem = common.setup(args.n_train, args.n_test, args.data_dir)
    data, arch, adam = problem.data, problem.arch, problem.optimizer
    x_all = jnp.asarray(problem.x_all)
    n = args.n_train
    sampled = engine.sample_fields(arch, x_all, key=0, samples=2 * args.samples, replicas=2)
    terms = term_factors(arch, sampled, x_all)
    # The finite trainer's order (every row at every step with the default full batch).
    rows = iw.workflow.minibatch_order(0, n, args.batch_size, args.steps)
    direction = adam.direction(eps_scale=1.0)
    template = {name: jnp.zeros((10, args.samples) if U is None else (args.samples,)) for name, _, U, _ in terms}
    state = direction.init(template | {"output_bias": jnp.zeros(10)})
    accumulated = {name: jnp.zeros_like(value) for name, value in template.items()}
    linear = {name: jnp.zeros_like(value) for name, value in template.items()}
    f = jnp.zeros((x_all.shape[0], 10))
    record = sorted({1, 5, 10, args.steps // 4, args.steps // 2, args.steps})
    results = []
    for t in range(1, args.steps + 1):
        batch = jnp.asarray(rows[t - 1])
        chi = losses.chi("mse", f[batch], jnp.asarray(data.y_train)[batch])
        grads = {}
        for name, coef, U, V in terms:
            if U is None:
                grads[name] = jnp.einsum("bm,bc->cm", V[batch], chi, precision=HIGHEST)
            else:
                grads[name] = jnp.einsum("bcm,bm,bc->m", U[batch], V[batch], chi, precision=HIGHEST)
        grads["output_bias"] = jnp.sum(chi, axis=0)
        directions, state = direction.update(grads, state)
        first_moment = state.mu  # optax ScaleByAdamState(count, mu, nu)
        correction = 1 - adam.b1 ** t
        for name in accumulated:
            accumulated[name] = accumulated[name] + adam.lr * directions[name]
            linear[name] = linear[name] + adam.lr * first_moment[name] / correction
        update = sum(coef * (jnp.einsum("pm,cm->pc", V, directions[name], precision=HIGHEST) if U is None
                             else jnp.einsum("pcm,pm,m->pc", U, V, directions[name], precision=HIGHEST))
                     for name, coef, U, V in terms) / args.samples
        f = f - adam.lr * (update + sampled.output_coefficient * directions["output_bias"])
        if t in record:
            results.append(dict(step=t, **removed_variance(terms, accumulated, linear, n)))
            print(json.dumps(results[-1]), flush=True)
    summary = common.metadata() | dict(config=common.described(args, adam), results=results)
    common.write_json(summary, args.out, f"bench_adam_limit_variance_B{args.batch_size or args.n_train}.json")


def removed_variance(terms, accumulated, linear, n_train):
    """Fraction of the across-sample variance at the test points removed by the best coefficient, per term and
    for the total (one coefficient per term, fitted jointly per point and output)."""
    per_term, xs, ys = {}, [], []
    for name, coef, U, V in terms:
        if U is None:  # readout: (P, k, M)
            X = coef * V[n_train:, None, :] * accumulated[name][None]
            Y = coef * V[n_train:, None, :] * linear[name][None]
        else:
            X = coef * U[n_train:] * (V[n_train:] * accumulated[name])[:, None, :]
            Y = coef * U[n_train:] * (V[n_train:] * linear[name])[:, None, :]
        X, Y = X - X.mean(-1, keepdims=True), Y - Y.mean(-1, keepdims=True)
        correlation = jnp.sum(X * Y, -1) / jnp.sqrt(jnp.sum(X * X, -1) * jnp.sum(Y * Y, -1))
        per_term[name] = float(jnp.mean(correlation**2))
        xs.append(X)
        ys.append(Y)
    total = sum(xs)
    design = jnp.stack(ys, -1)  # (P, k, M, terms): least squares of the total on the terms' variates
    gram = jnp.einsum("pcmi,pcmj->pcij", design, design, precision=HIGHEST)
    rhs = jnp.einsum("pcmi,pcm->pci", design, total, precision=HIGHEST)
    coefficients = jnp.linalg.solve(gram + 1e-12 * jnp.eye(gram.shape[-1]), rhs[..., None])[..., 0]
    residual = total - jnp.einsum("pcmi,pci->pcm", design, coefficients, precision=HIGHEST)
    # One coefficient per term for all points and outputs (what an engine would estimate once per step).
    pooled = jnp.linalg.solve(jnp.sum(gram, (0, 1)), jnp.sum(rhs, (0, 1)))
    pooled_residual = total - jnp.einsum("pcmi,i->pcm", design, pooled, precision=HIGHEST)
    return dict(per_term=per_term, total=float(1 - jnp.sum(residual**2) / jnp.sum(total**2)),
                total_pooled=float(1 - jnp.sum(pooled_residual**2) / jnp.sum(total**2)),
                pooled_coefficients=[float(c) for c in pooled])


if __name__ == "__main__":
    main()
