"""The Adam-like limit of a convolutional network on a CPU: scale (time, memory, Monte Carlo error) and accuracy per cost.

Two modes (docs/theory.md, section 10; results in docs/BENCHMARKS.md, section
"Adam-like limit of conv nets"):

* ``scale`` (issue 20's configuration): CIFAR-10 average-pooled to 8 x 8 x 3
  (``--dataset mnist``: MNIST pooled to 7 x 7), 2,000 train + 1,000 test,
  ``conv(2, "relu", (3, 3), sqrt 2, 0.1, out_dim=10)`` (two conv layers, global
  average pooling, a Dense readout), Adam(lr 0.01, b1 0.9, b2 0.99), minibatches
  of 128, 1,000 steps, M = 8,192 samples in 4 replicas, default roots. One cold
  call. Reports the wall time and its stages, ms per step (the step blocks after
  the first, which holds the compilation), the peak resident memory (sampled
  every 20 ms, and ``ru_maxrss``) against the engine's estimate, the Monte Carlo
  error of the test predictions and the test accuracy. Targets: under 15
  minutes and 12 GB on the 2-core machine.
* ``cost``: the accuracy-per-cost comparison of ``benchmarks/bench_adam_limit.py``
  (the same reference, distances, fits and resumable partial results; its
  functions are reused) between the engine and finite conv nets of 32-256 channels
  (centred, per-group rates), on CIFAR-10 pooled to 8 x 8, 500 train + 100 test,
  full batch, 100 steps; the engine at M = 512-8,192, the reference 4 calls of 16,384 samples.

* ``pivoting``: the point-block pivoted Cholesky root of ``h^2``'s full-position
  kernel (CIFAR-10 pooled to 8 x 8, 100 images, 6,400 coordinates, 256
  columns) for several ``stay_fraction`` values, against coordinate-wise
  greedy pivoting (``stay_fraction=1``): the variance the columns leave and the
  number of point blocks of kernel rows computed.

* ``memory``: the engine's memory estimate against the peak resident memory
  above the start (sampled every 20 ms) in a run whose roots dominate: 2,000
  random 4 x 4 x 3 images, k = 10, M = 1,024, rank 512 + 512 features
  (``tests/test_adam_limit_conv_limits.py`` checks a run whose stored features
  dominate).

``--tiny`` shrinks either mode to a few seconds (a check that the script runs,
not a measurement).

Usage (from the repository root)::

    python benchmarks/bench_adam_limit_conv.py --mode scale
    python benchmarks/bench_adam_limit_conv.py --mode cost
    python benchmarks/bench_adam_limit_conv.py --mode scale --tiny --out /tmp/bench

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA``. Writes
``bench_adam_limit_conv_<mode>.json`` (and the cost plot) under ``--out``
(default docs/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import sys
import types

import jax
import numpy as np

import infinite_width as iw
from infinite_width import datasets, optim
from infinite_width.limits import adam_limit
from infinite_width.limits.adam_limit.conv_kernels import PositionKernels
from infinite_width.limits.adam_limit.conv_roots import block_pivoted_root
from infinite_width.limits.adam_limit.conv_terms import conv_network

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_adam_limit import (  # noqa: E402  (the MLP benchmark's comparison, reused)
    Progress,
    compare,
    measure_points,
    reference_of,
    with_distances,
    write_summary,
)
from bench_adam_limit_scale import PeakMemory  # noqa: E402

#: Pooling factor per data set: CIFAR-10 32 -> 8, MNIST 28 -> 7.
POOL = {"cifar10": 4, "mnist": 4}

SCALE = dict(n_train=2000, n_test=1000, samples=8192, replicas=4, steps=1000, batch_size=128)
COST = dict(n_train=500, n_test=100, batch_size=None, steps=100, reference=(4, 2**14, 8),
            engine_samples=(512, 1024, 2048, 4096, 8192), widths=(32, 64, 128, 256))
TINY_SCALE = dict(n_train=40, n_test=20, samples=256, replicas=4, steps=20, batch_size=16)
TINY_COST = dict(n_train=20, n_test=10, batch_size=None, steps=5, reference=(2, 512, 4),
                 engine_samples=(128, 256, 512), widths=(8, 16, 32))


def pooled_images(name, data_dir, n_train, n_test, pool):
    """(x_train, y_train, x_test, y_test): images average-pooled by ``pool`` in each direction, then standardized
    per channel with the training images' statistics (pooling shrinks the pixel variance)."""
    data = datasets.load(name, data_dir, n_train=n_train, n_test=n_test, seed=0, flatten=False)

    def pool_images(x):
        n, H, W, C = x.shape
        return x.reshape(n, H // pool, pool, W // pool, pool, C).mean(axis=(2, 4))

    x_train, x_test = pool_images(data.x_train), pool_images(data.x_test)
    mean, std = x_train.mean(axis=(0, 1, 2)), x_train.std(axis=(0, 1, 2))
    standardize = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return standardize(x_train), data.y_train, standardize(x_test), data.y_test


def architecture():
    return iw.conv(2, "relu", (3, 3), 2**0.5, 0.1, 10)


def machine():
    return dict(date=datetime.date.today().isoformat(), jax=jax.__version__,
                machine=f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].device_kind}")


def scale(args, config):
    x_train, y_train, x_test, y_test = pooled_images(args.dataset, args.data_dir, config["n_train"],
                                                     config["n_test"], POOL[args.dataset] * (2 if args.tiny else 1))
    arch, adam, steps = architecture(), optim.adam(0.01, b1=0.9, b2=0.99), config["steps"]
    load_before = os.getloadavg()
    baseline = PeakMemory.rss()
    cpu_before = os.times()
    with PeakMemory() as memory:
        result = adam_limit.simulate(arch, x_train, y_train, x_test, adam, steps, key=0,
                                     batch_size=config["batch_size"], samples=config["samples"],
                                     replicas=config["replicas"], record=[0, steps // 2, steps], progress=True,
                                     rank=args.rank, features=args.features, storage_dtype=args.storage_dtype)
    cpu_after = os.times()
    timings = result.timings
    later_steps = max(steps - timings["first_step_block_steps"], 1)
    seconds_per_step = (timings["steps"] - timings["first_step_block"]) / later_steps
    test = result.test_predictions[-1]
    summary = machine() | dict(
        load_average_before=load_before, load_average_after=os.getloadavg(),
        config=config | dict(rank=args.rank, features=args.features, storage_dtype=args.storage_dtype,
                             dataset=args.dataset, image=list(x_train.shape[1:]), arch="conv(2, relu, (3, 3), sqrt 2, "
                             "0.1, 10)", optimizer=adam.describe(), tiny=args.tiny),
        wall_seconds=timings["total"], setup_seconds=timings["setup"], timings=timings,
        cpu_seconds=(cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        ms_per_step=1e3 * seconds_per_step, ranks=result.ranks, residual_fractions=result.residual_fractions,
        peak_rss_gib=memory.peak / 2**30, peak_rss_above_start_gib=(memory.peak - baseline) / 2**30,
        ru_maxrss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        estimate_peak_gib=result.memory.peak_bytes / 2**30,
        estimate_parts_gib={name: value / 2**30 for name, value in result.memory.parts.items()},
        mc_error=float(np.sqrt(np.mean(result.test_stderr[-1] ** 2) / np.mean(test**2))),
        test_accuracy=float(np.mean(test.argmax(1) == y_test.argmax(1))),
    )
    return summary


def cost(args, config):
    x_train, y_train, x_test, _ = pooled_images(args.dataset, args.data_dir, config["n_train"], config["n_test"],
                                                POOL[args.dataset] * (2 if args.tiny else 1))
    data = types.SimpleNamespace(x_train=x_train, y_train=y_train, x_test=x_test)  # what the MLP benchmark reads
    arch, adam = architecture(), optim.adam(0.01, b1=0.9, b2=0.99)
    config = json.loads(json.dumps(dict(config, name=f"conv-{args.dataset}" + ("-tiny" if args.tiny else ""), dataset=args.dataset,
                                        batch_order="finite key 2")))
    progress = Progress(os.path.join(args.out, "bench_adam_limit_conv_cost.partial.json"), config)
    load_before = os.getloadavg()
    reference = reference_of(arch, data, adam, config, progress)
    measure_points(arch, data, adam, config, progress)
    engine = with_distances([progress.get(f"engine {m}") for m in config["engine_samples"]], reference)
    networks = with_distances([progress.get(f"finite {n}") for n in config["widths"]], reference)
    summary = machine() | dict(
        load_average_before=load_before, load_average_after=os.getloadavg(), config=config,
        reference={name: value for name, value in reference.items() if name != "target"}, engine=engine,
        finite=networks, comparison=compare(engine, networks, args.target),
        comparison_cpu=compare(engine, networks, args.target, clock="cpu_seconds"))
    write_summary(summary, args.out, "conv_cost")
    os.remove(progress.path)
    return summary


PIVOTING = dict(points=100, columns=256, stay_fractions=(1.0, 0.5, 0.25, 0.1, 0.0))
TINY_PIVOTING = dict(points=10, columns=32, stay_fractions=(1.0, 0.25, 0.0))


def pivoting(args, config):
    x, _, _, _ = pooled_images(args.dataset, args.data_dir, config["points"], 10, POOL[args.dataset])
    net = conv_network(architecture(), x.shape[1:])
    kernels = PositionKernels(net, x)
    variances = np.asarray(kernels.variances("h2"), np.float64)
    rows = []
    for stay in config["stay_fractions"]:
        blocks = []

        def block_rows(point):
            blocks.append(point)
            return kernels.rows("h2", [point])

        start = datetime.datetime.now()
        root = block_pivoted_root(variances, block_rows, net.positions, "h2", config["columns"], stay_fraction=stay)
        rows.append(dict(stay_fraction=stay, columns=int(root.factor.shape[1]), block_computations=len(blocks),
                         distinct_points=len(set(blocks)), residual_fraction=root.residual_fraction(root.factor.shape[1]),
                         seconds=(datetime.datetime.now() - start).total_seconds()))
        print(json.dumps(rows[-1]), flush=True)
    return machine() | dict(load_average=os.getloadavg(), config=config | dict(dataset=args.dataset,
                            coordinates=int(variances.size), field="h2"), results=rows)


MEMORY = dict(points=2000, n_train=1600, samples=1024, replicas=4, rank=512, features=512)
TINY_MEMORY = dict(points=100, n_train=80, samples=256, replicas=4, rank=16, features=16)


def memory(args, config):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(config["points"], 4, 4, 3)).astype(np.float32)
    y = rng.normal(size=(config["n_train"], 10)).astype(np.float32)
    arch, adam = architecture(), optim.adam(0.01, b1=0.9, b2=0.99)
    n = config["n_train"]
    adam_limit.simulate(arch, x[:20], y[:20], x[20:30], adam, 2, key=0, samples=64, replicas=2, rank=8, features=8)
    baseline = PeakMemory.rss()
    with PeakMemory() as peak:
        result = adam_limit.simulate(arch, x[:n], y, x[n:], adam, 3, key=1, samples=config["samples"],
                                     replicas=config["replicas"], rank=config["rank"], features=config["features"],
                                     batch_size=64, record=[3])
    return machine() | dict(load_average=os.getloadavg(), config=config, ranks=result.ranks, timings=result.timings,
                            estimate_gib=result.memory.peak_bytes / 2**30,
                            estimate_parts_gib={k: v / 2**30 for k, v in result.memory.parts.items()},
                            measured_above_start_gib=(peak.peak - baseline) / 2**30,
                            measured_over_estimate=(peak.peak - baseline) / result.memory.peak_bytes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("scale", "cost", "pivoting", "memory"), default="scale")
    parser.add_argument("--dataset", choices=sorted(POOL), default="cifar10")
    parser.add_argument("--tiny", action="store_true", help="a few seconds: checks that the script runs")
    parser.add_argument("--rank", type=int, default=adam_limit.DEFAULT_RANK, help="scale mode: root columns kept")
    parser.add_argument("--features", type=int, default=adam_limit.DEFAULT_FEATURES,
                        help="scale mode: random features of the residual per replica")
    parser.add_argument("--storage-dtype", default="float32", help="scale mode: float32 or bfloat16")
    parser.add_argument("--target", type=float, default=0.08, help="cost mode: distance to compare times at")
    parser.add_argument("--data-dir", default=os.environ.get("INFINITE_WIDTH_DATA", "../shared/datasets"))
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # Each stage of the engine (roots, features, every replica's fields, setup, steps) as it ends, on stderr.
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("infinite_width.limits.adam_limit").setLevel(logging.INFO)
    if args.mode == "scale":
        summary = scale(args, dict(TINY_SCALE if args.tiny else SCALE))
        with open(os.path.join(args.out, "bench_adam_limit_conv_scale.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
    elif args.mode in ("pivoting", "memory"):
        run, full, tiny = (pivoting, PIVOTING, TINY_PIVOTING) if args.mode == "pivoting" else (memory, MEMORY,
                                                                                               TINY_MEMORY)
        summary = run(args, dict(tiny if args.tiny else full))
        with open(os.path.join(args.out, f"bench_adam_limit_conv_{args.mode}.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
    else:
        summary = cost(args, dict(TINY_COST if args.tiny else COST))
    print(json.dumps({name: value for name, value in summary.items() if name not in ("engine", "finite")}, indent=2))


if __name__ == "__main__":
    main()
