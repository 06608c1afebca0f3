"""Closed-form kernels: one program for every scale, blocked kernels, and the cost of the checks.

Three comparisons, each timed in one run and reported as a ratio:

* scale sweep: ``iw.kernels.ntk`` of the same MLP at several ``W_std``
  (one compiled program, the scales are its arguments) against a fresh
  ``jax.jit`` of the neural-tangents ``kernel_fn`` per architecture (what a
  kernel closed over its scales costs: one compilation per value);
* blocks: ``ntk(arch, x, batch_size=b)`` (with ``x2=None`` only blocks on
  and above the diagonal are computed) against neural-tangents'
  ``nt.batch(kernel_fn, b, store_on_device=False)``, and the whole kernel at once;
* checks: a warm ``ntk(arch, x)`` (input checks, memory plan, finiteness
  flag, float64 policy) against the warm jitted ``kernel_fn`` alone.

Usage (from the repository root)::

    python benchmarks/bench_kernels.py                                  # N = 4096, blocks of 1024
    python benchmarks/bench_kernels.py --n 1024 --block 256 --sweep 4   # small CPU run
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

import infinite_width as iw
from bench_training import best_times  # benchmarks/ is on the path when this script runs
from infinite_width import nt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="inputs (kernel N x N)")
    parser.add_argument("--d", type=int, default=64, help="input dimension")
    parser.add_argument("--depth", type=int, default=3, help="hidden layers of the ReLU MLP")
    parser.add_argument("--block", type=int, default=1024, help="rows per block")
    parser.add_argument("--sweep", type=int, default=8, help="W_std values in the scale sweep")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    x = np.random.default_rng(0).standard_normal((args.n, args.d)).astype(np.float32)
    small = x[: min(args.n, 256)]
    arch = iw.mlp(args.depth, "relu", 1.4, 0.1)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}), "
          f"N={args.n}, d={args.d}, depth={args.depth}")

    # Scale sweep, compilation included: ours compiles once; a closure over the scales compiles per value.
    scales = np.linspace(1.0, 2.0, args.sweep)
    start = time.perf_counter()
    for w in scales:
        jax.block_until_ready(iw.kernels.ntk(iw.mlp(args.depth, "relu", float(w), 0.1), small))
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for w in scales:
        kernel_fn = iw.kernels.stax(iw.mlp(args.depth, "relu", float(w), 0.1))[2]
        jax.block_until_ready(jax.jit(lambda a, k=kernel_fn: k(a, None, "ntk"))(small))
    closures = time.perf_counter() - start
    print(f"scale sweep ({args.sweep} values, N={len(small)}): ours {ours:.2f} s, "
          f"jit per value {closures:.2f} s, ratio {closures / ours:.1f}x")

    # Blocks.
    kernel_fn = iw.kernels.stax(arch)[2]
    batched = nt.batch(kernel_fn, batch_size=args.block, store_on_device=False)
    whole_ntk = jax.jit(lambda a: kernel_fn(a, None, "ntk"))
    blocked_t, nt_batch_t, whole_t = best_times(
        [lambda: iw.kernels.ntk(arch, x, batch_size=args.block), lambda: batched(x, None, "ntk"), lambda: whole_ntk(x)],
        args.repeats,
    )
    print(f"blocks of {args.block}: ours {blocked_t:.3f} s, nt.batch {nt_batch_t:.3f} s "
          f"(ratio {nt_batch_t / blocked_t:.2f}x), whole kernel at once {whole_t:.3f} s")

    # Checks around a warm kernel.
    plain = jax.jit(lambda a: kernel_fn(a, None, "ntk"))
    checked_t, plain_t = best_times([lambda: iw.kernels.ntk(arch, small), lambda: plain(small)], 5 * args.repeats)
    print(f"warm ntk of N={len(small)}: ours {1e3 * checked_t:.2f} ms, jitted kernel_fn alone {1e3 * plain_t:.2f} ms "
          f"(checks and memory plan add {1e3 * (checked_t - plain_t):.2f} ms)")


if __name__ == "__main__":
    main()
