"""Full-batch training speed: our trainer against a plain optax Adam loop on the same network.

Both sides train the same 3-hidden-layer ReLU MLP (ntk parametrization) on
MNIST with full-batch Adam for the same number of steps, compiled as one
``lax.scan``; the first call of each is a warm-up (compilation) and is not
timed. "ours" is :func:`infinite_width.finite.train` (per-group rates and
epsilons through ``optax.multi_transform``, the memory check, divergence
checks, recording of train outputs at steps 0 and ``steps``); "plain" is ``optax.adam`` on the same
``net.apply`` with nothing else. The target is ours within 15% of plain.

Usage (from the repository root)::

    python benchmarks/bench_training.py                       # full: widths 256..8192, 10000 points
    python benchmarks/bench_training.py --widths 256 512 1024 --n-train 1000 --steps 10   # small CPU run

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA`` (MNIST idx files).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import infinite_width as iw
from infinite_width import datasets, finite, losses, optim


def plain_adam_loop(net, lr):
    """A jitted full-batch optax Adam loop over ``steps`` (static) on ``net.apply``."""
    tx = optax.adam(lr)

    def run(params, x, y, steps):
        def step(carry, _):
            params, state = carry
            grads = jax.grad(lambda p: losses.mse(net.apply(p, x), y))(params)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params

    return jax.jit(run, static_argnums=3)


def best_times(fns, repeats):
    """Best wall time of each function, timed in alternation so that load drifts hit all alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            record.append(time.perf_counter() - start)
    return [min(record) for record in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side, alternating (the best is kept)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data-dir", default=os.environ.get(datasets.DATA_ENV_VAR, "../shared/datasets"))
    args = parser.parse_args()

    data = datasets.load("mnist", args.data_dir, n_train=args.n_train, n_test=10, seed=0)
    x, y = data.x_train, data.y_train
    arch = iw.mlp(3, "relu", 2**0.5, 0.1, out_dim=y.shape[1])
    print(f"# {platform.node()} | jax {jax.__version__} on {jax.devices()[0].device_kind} | "
          f"MNIST {x.shape[0]} x {x.shape[1]}, {args.steps} full-batch Adam steps, best of {args.repeats}")
    print(f"{'width':>6} {'ours ms/step':>13} {'plain ms/step':>14} {'ours/plain':>11}")
    opt = optim.adam(args.lr)
    for width in args.widths:
        net = finite.network(arch, width)
        ours = lambda: finite.train(  # noqa: E731
            net, x, y, opt, args.steps, key=0, record=[0, args.steps], centered=False, return_params=True
        )[1].final_params
        plain = plain_adam_loop(net, args.lr)
        params = net.init(jax.random.PRNGKey(0), x.shape[1:])
        xj, yj = jnp.asarray(x), jnp.asarray(y)
        with jax.default_matmul_precision("highest"):  # the precision train() uses
            run_plain = lambda: plain(params, xj, yj, args.steps)  # noqa: E731
            run_plain(), ours()  # warm-up: compilation
            t_ours, t_plain = (t / args.steps for t in best_times([ours, run_plain], args.repeats))
        print(f"{width:>6} {1e3 * t_ours:>13.1f} {1e3 * t_plain:>14.1f} {t_ours / t_plain:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
