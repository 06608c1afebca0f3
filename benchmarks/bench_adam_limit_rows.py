"""What drawing only the field rows a run visits would save in the Adam-like limit's setup.

The engine draws every sample's fields on all P = N + N_test points at setup
(``fields.draw_fields``): for each replica, the latent normals of every root
column (``M (d + 1 + (L - 1)(1 + k) r')`` numbers in all), then the products
``root rows @ latents``. A draw keyed per (field, replica, column) gives the
same values on any subset of rows, so a run could draw a row's fields only when
a step first visits it (and the test rows at the first recorded step). The
latents are needed for every row, so only the products shrink with the rows.

This times, on one of ``bench_adam_limit.py``'s configurations with the
default roots, ``draw_fields`` restricted to the first n points for several n
(n = 1 is the latents alone), best of ``--repeats``, wall and CPU time; the
engine's own step loop for a few steps (ms per step, compilation excluded); and
from those, for runs of T steps with batches of B, the setup a lazy draw would
spend (the latents plus the products for the ``min(N, T B) + N_test`` rows
visited) against today's (all P rows), and what regenerating each batch's rows
at every step instead of storing them would cost per step.

Usage (from the repository root)::

    python benchmarks/bench_adam_limit_rows.py --config minibatch --samples 16384

Writes ``bench_adam_limit_rows_<config>.json`` under ``--out`` (default docs/).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp

import adam_limit_common as common
import engine_variants
import infinite_width as iw
from bench_adam_limit import CONFIGS, FINITE_KEY
from infinite_width.limits.adam_limit.fields import draw_fields


def timed(call, repeats):
    """(best wall seconds, CPU seconds of that call) of ``call()`` over ``repeats`` calls, after one warm-up."""
    jax.block_until_ready(call())
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        cpu, start = os.times(), time.perf_counter()
        jax.block_until_ready(call())
        wall, end = time.perf_counter() - start, os.times()
        best = min(best, (wall, (end.user + end.system) - (cpu.user + cpu.system)))
    return best


def main():
    parser = common.parser(__doc__.split("\n")[0], samples=16384, replicas=2)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="minibatch")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 100, 250, 500, 1000, 2500])
    parser.add_argument("--run-steps", type=int, nargs="+", default=[1, 5, 10, 20, 50, 100, 500],
                        help="run lengths T at which to model the lazy draw's setup")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    config = CONFIGS[args.config]
    problem = common.setup(config["n_train"], config["n_test"], args.data_dir)
    header = common.metadata()
    x_all = problem.x_all
    points, per_replica = x_all.shape[0], args.samples // args.replicas
    # The default roots and their per-replica features, once; then the draw of the first n rows of each root.
    full = engine_variants.draw(problem.arch, x_all, key=0, replicas=args.replicas, per_replica=per_replica,
                                variant=engine_variants.Variant())
    roots = engine_variants.replica_roots(problem.arch, x_all, engine_variants.Variant(), key=0,
                                          replicas=args.replicas, per_replica=per_replica)
    W_std = problem.arch.layers[-1].W_std
    timings = []
    for n in sorted(set(min(n, points) for n in args.rows)):
        layout = dataclasses.replace(full.layout, points=n)
        rows_of = lambda replica, n=n: {name: root[:n] for name, root in roots(replica).items()}  # noqa: E731
        wall, cpu = timed(lambda: draw_fields(jax.random.fold_in(jax.random.PRNGKey(0), 1), rows_of, layout,
                                              jnp.float32, input_dim=x_all.shape[1], readout_scale=W_std),
                          args.repeats)
        timings.append(dict(rows=n, seconds=wall, cpu_seconds=cpu))
        print(json.dumps(timings[-1]), flush=True)
    # The engine's step: ms per step on the stored fields (a block of steps after a compiled first one).
    rows = iw.workflow.minibatch_order(FINITE_KEY, config["n_train"], config["batch_size"], config["steps"])
    steps = min(50, config["steps"])
    engine_variants.simulate(problem.arch, problem.optimizer, full, x_all, problem.data.y_train, rows, [1])
    start = time.perf_counter()
    engine_variants.simulate(problem.arch, problem.optimizer, full, x_all, problem.data.y_train, rows, [steps])
    ms_per_step = 1e3 * (time.perf_counter() - start) / steps
    del full
    rows_seconds = {t["rows"]: t["seconds"] for t in timings}
    latents, everything = rows_seconds[min(rows_seconds)], rows_seconds[max(rows_seconds)]
    per_row = (everything - latents) / (max(rows_seconds) - min(rows_seconds))  # the products, per row
    batch = config["batch_size"] or config["n_train"]
    model = [dict(steps=t, rows_visited=min(config["n_train"], t * batch) + config["n_test"],
                  lazy_setup_seconds=latents + per_row * (min(config["n_train"], t * batch) + config["n_test"]),
                  stored_setup_seconds=everything) for t in args.run_steps]
    summary = dict(header, load_average_after=os.getloadavg(),
                   config=common.described(args, problem.optimizer, problem=config),
                   points=points, draw=timings, latent_seconds=latents, product_seconds_per_row=per_row,
                   ms_per_step=ms_per_step, regenerate_batch_rows_ms_per_step=1e3 * per_row * batch,
                   lazy_model=model)
    print(json.dumps(summary, indent=1))
    common.write_json(summary, args.out, f"bench_adam_limit_rows_{args.config}.json")


if __name__ == "__main__":
    main()
