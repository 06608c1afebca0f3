"""NNPK throughput: the Monte Carlo kernel against plain matrix products of the same FLOPs.

The target configuration (Amid et al. 2022 scale) is the NNPK of 1,000
random 3-hidden-layer ReLU MLPs of width 1024 (ntk parametrization, Gaussian
init) on 10,000 MNIST points: the 10k x 10k kernel. Its useful work is the
forward passes, ``2 N m (d w + (L-1) w^2 + w k)`` FLOPs, plus the kernel
accumulation ``2 N^2 m k``.

Matmul throughput: the same FLOPs done by plain jitted float32 matmuls of the
same shapes at full precision, measured in the same run: for each of the m
networks the chain ``(N, d) @ (d, w) @ (w, w) ... @ (w, k)`` (no bias, no
activation, no random draws; weights cycled from a pool of distinct
matrices), then ``(N, m k) @ (m k, N)``. The NNPK and the reference are timed
alternately, best of ``--repeats`` each, compilation excluded by a warm-up
call, so that load on a shared machine hits both alike. The fraction is
reference time / NNPK time. Random parameter generation is not useful
work, so it shows up as lost throughput; its own time is reported too (the
draws of all m networks alone, chunked as the NNPK chunks them).

Usage (from the repository root)::

    python benchmarks/bench_nnpk.py                                   # full size (needs a GPU)
    python benchmarks/bench_nnpk.py --n-points 2000 --n-networks 50  # reduced CPU run

``--prng`` lists the PRNG implementations to compare (default: all of
:data:`infinite_width.kernels.PRNG_IMPLS`, the library default first).

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA`` (MNIST idx files).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import infinite_width as iw
from infinite_width import datasets
from infinite_width.finite import network
from infinite_width.kernels import DEFAULT_PRNG, PRNG_IMPLS, network_keys, nnpk, plan_memory


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def matmul_reference(x: np.ndarray, layer_shapes, n_networks: int, out_dim: int, pool: int = 4):
    """A function doing the NNPK's useful FLOPs as plain matmuls (see the module docstring)."""
    rng = np.random.default_rng(0)
    weights = [
        [jnp.asarray(rng.standard_normal(shape, np.float32) / np.sqrt(shape[0])) for shape in layer_shapes]
        for _ in range(min(pool, n_networks))
    ]
    chain = jax.jit(lambda x, ws: functools.reduce(jnp.matmul, ws, x))
    kernel = jax.jit(lambda f: f @ f.T)
    x = jnp.asarray(x)
    outputs = jnp.asarray(rng.standard_normal((x.shape[0], n_networks * out_dim), np.float32))

    def run():
        forwards = [chain(x, weights[s % len(weights)]) for s in range(n_networks)]
        return forwards, kernel(outputs)

    return run


def draws_only(arch, x, width, n_networks, prng, network_chunk):
    """A function drawing the parameters of all networks, chunked as :func:`nnpk` chunks them."""
    net = network(arch, width)
    chunk = plan_memory(arch, x.shape, width=width, networks=n_networks, network_chunk=network_chunk).network_chunk
    keys = network_keys(0, n_networks, prng)
    draw = jax.jit(functools.partial(net.init_many, input_shape=x.shape[1:]))
    return lambda: [draw(keys[start : start + chunk]) for start in range(0, n_networks, chunk)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-points", type=int, default=10_000)
    parser.add_argument("--n-networks", type=int, default=1_000)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--network-chunk", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prng", nargs="+", choices=PRNG_IMPLS, default=list(PRNG_IMPLS))
    parser.add_argument("--data-dir", default=os.environ.get(datasets.DATA_ENV_VAR, "../shared/datasets"))
    args = parser.parse_args()
    for name in ("n_points", "n_networks", "width", "depth", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")

    data = datasets.load("mnist", args.data_dir, n_train=args.n_points, n_test=10)
    x = data.x_train
    n, d = x.shape
    arch = iw.mlp(args.depth, "relu", W_std=np.sqrt(2.0), b_std=0.1, out_dim=10)
    k, w, m = arch.out_dim, args.width, args.n_networks
    plan = plan_memory(
        arch, x.shape, width=w, networks=m, network_chunk=args.network_chunk, batch_size=args.batch_size
    )

    with jax.default_matmul_precision("highest"):  # the precision of nnpk
        layer_shapes = [(d, w)] + [(w, w)] * (args.depth - 1) + [(w, k)]
        candidates = {"matmul": matmul_reference(x, layer_shapes, m, k)}
        for prng in args.prng:
            candidates[f"nnpk {prng}"] = functools.partial(
                nnpk, arch, x, width=w, networks=m, key=0, prng=prng,
                network_chunk=args.network_chunk, batch_size=args.batch_size,
            )
            candidates[f"draws {prng}"] = draws_only(arch, x, w, m, prng, args.network_chunk)
        first = {name: _timed(fn) for name, fn in candidates.items()}  # compiles every shape
        best = dict.fromkeys(candidates, np.inf)
        for _ in range(args.repeats):  # alternate, so that load on a shared machine hits all alike
            for name, fn in candidates.items():
                best[name] = min(best[name], _timed(fn))

    forward_flops = 2.0 * n * m * (d * w + (args.depth - 1) * w * w + w * k)
    kernel_flops = 2.0 * n * n * m * k
    flops = forward_flops + kernel_flops
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, devices {jax.devices()}")
    print(f"jax {jax.__version__}; date {time.strftime('%Y-%m-%d %H:%M')}; load average {os.getloadavg()}")
    print(f"NNPK of {m} ReLU MLPs (depth {args.depth}, width {w}) on {n} MNIST points ({n}x{n} kernel)")
    print(f"memory plan: {plan.describe()}")
    print(f"useful FLOPs: forward {forward_flops:.3g}, kernel {kernel_flops:.3g}; best of {args.repeats}, alternated")
    reference = best["matmul"]
    print(f"plain matmuls, same FLOPs: {reference:.2f} s ({flops / reference / 1e9:.1f} GFLOP/s)")
    for prng in args.prng:
        seconds, draws = best[f"nnpk {prng}"], best[f"draws {prng}"]
        default = " (default)" if prng == DEFAULT_PRNG else ""
        print(
            f"prng {prng}{default}: NNPK {seconds:.2f} s (first call {first[f'nnpk {prng}']:.2f} s), "
            f"{flops / seconds / 1e9:.1f} GFLOP/s, fraction of matmul throughput {reference / seconds:.2f}; "
            f"parameter draws alone {draws:.2f} s ({draws / seconds:.0%} of the NNPK time)"
        )


if __name__ == "__main__":
    main()
