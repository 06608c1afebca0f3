"""NNPK throughput: the Monte Carlo kernel against a plain matrix product of similar size.

The target configuration (Amid et al. 2022 scale) is the NNPK of 1,000
random 3-hidden-layer ReLU MLPs of width 1024 (ntk parametrization, Gaussian
init) on 10,000 MNIST points: the 10k x 10k kernel. Its useful work is the
forward passes, ``2 N m (d w + (L-1) w^2 + w k)`` FLOPs, plus the kernel
accumulation ``2 N^2 m k``. We report the wall time of
:func:`infinite_width.kernels.nnpk` (compilation excluded by a warm-up call on
the same shapes), the FLOP/s it achieves, and that as a fraction of the
FLOP/s of a plain jitted float32 matmul ``(N, w) @ (w, w)`` measured in the
same run (full precision, as the NNPK uses). Random parameter generation is
not counted as useful FLOPs, so it shows up as lost throughput.

Usage (from the repository root)::

    python benchmarks/bench_nnpk.py                                   # full size (needs a GPU)
    python benchmarks/bench_nnpk.py --n-points 2000 --n-networks 50  # reduced CPU run

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

import infinite_width as iw
from infinite_width import datasets
from infinite_width.kernels import nnpk


def matmul_flops_per_second(n: int, width: int, repeats: int) -> float:
    """Best FLOP/s of a jitted full-precision float32 (n, width) @ (width, width)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, width), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (width, width), jnp.float32)
    with jax.default_matmul_precision("highest"):  # the precision of nnpk
        product = jax.jit(lambda a, b: a @ b)
        jax.block_until_ready(product(a, b))
        best = min(_timed(lambda: product(a, b)) for _ in range(repeats))
    return 2.0 * n * width * width / best


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-points", type=int, default=10_000)
    parser.add_argument("--n-networks", type=int, default=1_000)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--sample-chunk", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get(datasets.DATA_ENV_VAR, "../shared/datasets"))
    args = parser.parse_args()

    data = datasets.load("mnist", args.data_dir, n_train=args.n_points, n_test=10)
    x = data.x_train
    n, d = x.shape
    arch = iw.mlp(args.depth, "relu", W_std=np.sqrt(2.0), b_std=0.1, out_dim=10)
    k = arch.out_dim
    w, m = args.width, args.n_networks

    def run():
        return nnpk(
            arch, x, width=w, n_samples=m, key=jax.random.PRNGKey(0),
            sample_chunk=args.sample_chunk, batch_size=args.batch_size,
        )

    # Warm-up: compiles every chunk shape of the timed calls.
    warmup = _timed(run)
    seconds = min(_timed(run) for _ in range(args.repeats))
    forward_flops = 2.0 * n * m * (d * w + (args.depth - 1) * w * w + w * k)
    kernel_flops = 2.0 * n * n * m * k
    achieved = (forward_flops + kernel_flops) / seconds
    reference = matmul_flops_per_second(n, w, repeats=3)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, devices {jax.devices()}")
    print(f"jax {jax.__version__}; date {time.strftime('%Y-%m-%d')}")
    print(f"NNPK of {m} ReLU MLPs (depth {args.depth}, width {w}) on {n} MNIST points ({n}x{n} kernel)")
    print(f"first call (with compilation): {warmup:.2f} s; best of {args.repeats}: {seconds:.2f} s")
    print(f"useful FLOPs: forward {forward_flops:.3g}, kernel {kernel_flops:.3g}")
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s; plain matmul ({n}x{w})@({w}x{w}): {reference / 1e9:.1f} GFLOP/s")
    print(f"fraction of matmul throughput: {achieved / reference:.2f}")


if __name__ == "__main__":
    main()
