"""Speed and accuracy-per-cost of the Adam-limit Monte Carlo engine.

1. Throughput: 3 hidden ReLU layers, MNIST (10 classes), full-batch Adam,
   M samples. Reports ms/step (from two runs of different lengths with the
   same shapes after a compiling run, so compilation and sampling cancel) and the fraction of peak
   memory bandwidth: bytes touched per step (the stored samples read twice,
   on all P points: once for the normalized gradients, chi being zero-padded
   off the training rows, once for the update) / time / peak.
2. Accuracy per cost: relative RMS distance of the test outputs after
   ``steps`` to a large-M reference run, against wall time (compilation
   included on both sides), for the engine at growing M and for finite Adam
   networks (:func:`infinite_width.finite.train`, centered) at growing width.
3. ``--cost``: the same comparison in steady state. Every point is run twice
   with the same shapes; the second call is timed (compilation excluded, the
   engine's sampling and the network's initialisation included) and the
   difference reported as compile time. The reference's own Monte Carlo error
   is subtracted in quadrature, ``distance^2 - reference_error^2``, both sides
   are fitted as ``distance ~ time^slope`` and the times needed to reach a
   common distance compared.

Usage (from the repository root)::

    python benchmarks/bench_adam_limit.py                    # the issue's configuration (accelerator)
    python benchmarks/bench_adam_limit.py --cpu-small        # reduced run for a CPU, a few minutes
    python benchmarks/bench_adam_limit.py --cpu-small --cost # steady-state cost comparison on a CPU, ~8 minutes

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA`` (MNIST idx files).
Writes a JSON summary and a PNG plot to ``--out`` (default docs/).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import time

import jax
import numpy as np

import infinite_width as iw
from infinite_width import datasets, finite, optim
from infinite_width.limits import adam_limit


def measure_copy_bandwidth(n_bytes: int = 2**28) -> float:
    """Bytes per second of a large in-memory copy on this machine (read + write counted)."""
    source = np.ones(n_bytes // 4, np.float32)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * n_bytes / best


def relative_distance(outputs, reference):
    return float(np.sqrt(np.mean((outputs - reference) ** 2) / np.mean(reference**2)))


def fit_power_law(seconds, distances):
    """Least-squares fit of log distance = intercept + slope * log seconds; returns (slope, intercept)."""
    slope, intercept = np.polyfit(np.log(seconds), np.log(distances), 1)
    return float(slope), float(intercept)


def time_to_reach(distance, slope, intercept):
    """Seconds at which the fitted power law reaches ``distance``."""
    return float(np.exp((np.log(distance) - intercept) / slope))


def cost_comparison(arch, data, adam, config, replicas):
    """Steady-state accuracy per cost of the engine and of finite networks (mode 3 of the module docstring)."""
    steps = config["steps"]
    solve = functools.partial(adam_limit.solve, arch, data.x_train, data.y_train, data.x_test, adam)
    start = time.perf_counter()
    reference = solve(steps, record=[steps], key=123, samples=replicas * config["reference_samples"], replicas=replicas)
    reference_seconds = time.perf_counter() - start
    target = reference.test_predictions[-1]
    reference_error = float(np.sqrt(np.mean(reference.test_stderr[-1] ** 2) / np.mean(target**2)))
    print(f"reference: {reference_seconds:.1f} s, relative MC error {reference_error:.4f}")

    def corrected(distance):
        # The reference's error is independent of the run's: it adds in quadrature.
        return float(np.sqrt(max(distance**2 - reference_error**2, 0.0)))

    engine_points = []
    for samples in config["engine_samples"]:
        # The step loop takes the step range as arguments: a 1-step call compiles everything for these shapes.
        # The engine needs at least 2 replicas: each point is one replica of M samples (the mean distance of
        # both) and half the call's time.
        warm_up = solve(1, record=[1], key=0, samples=2 * samples, replicas=2)
        run = solve(steps, record=[steps], key=1, samples=2 * samples, replicas=2)
        distance = float(np.mean([relative_distance(r[-1], target) for r in run.replica_test_predictions]))
        engine_points.append(dict(samples=samples, seconds=run.wall_time_s / 2, setup_seconds=run.setup_time_s / 2,
                                  compile_seconds=warm_up.wall_time_s - run.setup_time_s - run.wall_time_s / steps,
                                  distance=distance, corrected_distance=corrected(distance)))
        print("engine", engine_points[-1])
    finite_points = []
    for width in config["widths"]:
        net = finite.network(arch, width)
        calls = []
        for _ in range(2):  # the first call compiles; the second, with the same shapes, is the steady cost
            start = time.perf_counter()
            trained = finite.train(net, data.x_train, data.y_train, adam, steps, centered=True, key=2, seeds=1,
                                   record=[steps], x_test=data.x_test)
            calls.append(time.perf_counter() - start)
        distance = relative_distance(trained.test[0, -1], target)
        finite_points.append(dict(width=width, seconds=calls[1], compile_seconds=calls[0] - calls[1],
                                  distance=distance, corrected_distance=corrected(distance)))
        print("finite", finite_points[-1])

    fits = {}
    for side, points in (("engine", engine_points), ("finite", finite_points)):
        usable = [p for p in points if p["corrected_distance"] > 0]
        fits[side] = fit_power_law([p["seconds"] for p in usable], [p["corrected_distance"] for p in usable])
    # The common distance: the geometric middle of the range both sides reached.
    reached = [[p["corrected_distance"] for p in points if p["corrected_distance"] > 0]
               for points in (engine_points, finite_points)]
    low, high = max(min(r) for r in reached), min(max(r) for r in reached)
    common = float(np.sqrt(low * high)) if low <= high else float(min(max(r) for r in reached))
    seconds_at_common = {side: time_to_reach(common, *fit) for side, fit in fits.items()}
    comparison = dict(
        common_distance=common, overlap=[float(low), float(high)],
        engine_slope=fits["engine"][0], finite_slope=fits["finite"][0],
        engine_seconds=seconds_at_common["engine"], finite_seconds=seconds_at_common["finite"],
        finite_over_engine=seconds_at_common["finite"] / seconds_at_common["engine"],
    )
    print("comparison", comparison)
    return dict(reference=dict(samples_per_replica=config["reference_samples"], replicas=replicas,
                               seconds=reference_seconds, mc_error=reference_error),
                engine=engine_points, finite=finite_points, fits=fits, comparison=comparison)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-small", action="store_true", help="reduced configuration for a CPU")
    parser.add_argument("--cost", action="store_true",
                        help="only the steady-state accuracy-per-cost comparison (compilation excluded)")
    parser.add_argument("--data-dir", default=os.environ.get("INFINITE_WIDTH_DATA", "../shared/datasets"))
    parser.add_argument("--out", default="docs")
    parser.add_argument("--peak-gbps", type=float, default=None,
                        help="peak memory bandwidth in GB/s (default: 3350 on GPU, a measured copy on CPU)")
    args = parser.parse_args()
    if args.cpu_small and args.cost:
        config = dict(n_train=500, n_test=100, depth=2, steps=100, reference_samples=8192,
                      engine_samples=(256, 512, 1024, 2048, 4096), widths=(64, 128, 256, 512, 1024))
    elif args.cost:
        config = dict(n_train=10000, n_test=2000, depth=3, steps=1000, reference_samples=262144,
                      engine_samples=(4096, 16384, 65536, 262144), widths=(256, 1024, 4096, 8192))
    elif args.cpu_small:
        config = dict(n_train=500, n_test=100, steps=10, samples=2048, timing_steps=(2, 22),
                      engine_samples=(512, 1024, 2048, 4096), reference_samples=8192, widths=(64, 128, 256, 512))
    else:
        config = dict(n_train=10000, n_test=2000, steps=1000, samples=65536, timing_steps=(10, 60),
                      engine_samples=(4096, 16384, 65536), reference_samples=262144, widths=(256, 1024, 4096))
    data = datasets.load("mnist", args.data_dir, n_train=config["n_train"], n_test=config["n_test"], seed=0)
    arch = iw.mlp(config.get("depth", 3), "relu", 2**0.5, 0.1, 10)
    adam = optim.adam(0.01, b1=0.9, b2=0.99)
    common = dict(replicas=8 if not args.cpu_small else 4, record=None)
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    if args.cost:
        summary = dict(date=datetime.date.today().isoformat(), machine=machine_summary(device), jax=jax.__version__,
                       config=config, **cost_comparison(arch, data, adam, config, common["replicas"]))
        tag = "cost_cpu" if args.cpu_small else "cost"
        write_summary(summary, args.out, tag, "wall time (s, compilation excluded)",
                      f"MNIST {config['n_train']}+{config['n_test']}, {config['depth']}x ReLU, Adam, "
                      f"{config['steps']} steps", distance_key="corrected_distance",
                      ylabel="relative RMS distance to the limit\n(reference MC error removed)")
        return
    peak = args.peak_gbps * 1e9 if args.peak_gbps else (measure_copy_bandwidth() if on_cpu else 3350e9)

    # 1. Throughput.
    times = []
    # Compile first (the step loop is cached across calls of the same shapes), then time both lengths.
    adam_limit.solve(arch, data.x_train, data.y_train, data.x_test, adam, 1, key=0,
                     samples=config["samples"], replicas=common["replicas"], record=[1])
    for steps in config["timing_steps"]:
        result = adam_limit.solve(arch, data.x_train, data.y_train, data.x_test, adam, steps, key=0,
                                  samples=config["samples"], replicas=common["replicas"], record=[steps])
        times.append(result.wall_time_s - result.setup_time_s)
    short, long = config["timing_steps"]
    seconds_per_step = (times[1] - times[0]) / (long - short)
    storage = result.memory.parts["storage"] * result.devices
    bytes_per_step = 2 * storage
    throughput = dict(ms_per_step=1e3 * seconds_per_step, bytes_per_step=bytes_per_step,
                      bandwidth_fraction=bytes_per_step / seconds_per_step / peak, peak_bytes_per_s=peak)
    print("throughput", throughput)

    # 2. Accuracy per cost.
    reference = adam_limit.solve(arch, data.x_train, data.y_train, data.x_test, adam, config["steps"], key=123,
                                 samples=config["reference_samples"], record=[config["steps"]], replicas=common["replicas"])
    target = reference.test_predictions[-1]
    engine_points = []
    for samples in config["engine_samples"]:
        run = adam_limit.solve(arch, data.x_train, data.y_train, data.x_test, adam, config["steps"], key=1,
                               samples=samples, record=[config["steps"]], replicas=common["replicas"])
        # One replica (samples / R) against the reference, and its time share.
        distance = np.mean([relative_distance(r[-1], target) for r in run.replica_test_predictions])
        engine_points.append(dict(samples=samples // run.replicas, seconds=run.wall_time_s / run.replicas,
                                  distance=float(distance)))
        print("engine", engine_points[-1])
    finite_points = []
    for width in config["widths"]:
        start = time.perf_counter()
        trained = finite.train(finite.network(arch, width), data.x_train, data.y_train, adam, config["steps"],
                               centered=True, key=2, seeds=1, record=[config["steps"]], x_test=data.x_test)
        seconds = time.perf_counter() - start
        distance = relative_distance(trained.test[0, -1], target)
        finite_points.append(dict(width=width, seconds=seconds, distance=distance))
        print("finite", finite_points[-1])

    summary = dict(
        date=datetime.date.today().isoformat(), machine=machine_summary(device), jax=jax.__version__, config=config,
        reference_mc_error=float(np.sqrt(np.mean(reference.test_stderr[-1] ** 2) / np.mean(target**2))),
        throughput=throughput, engine=engine_points, finite=finite_points,
    )
    write_summary(summary, args.out, "cpu_small" if args.cpu_small else "full", "wall time (s, compilation included)",
                  f"MNIST {config['n_train']}+{config['n_test']}, 3x ReLU, Adam, {config['steps']} steps")


def machine_summary(device) -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {device.device_kind}"


def write_summary(summary, out, tag, xlabel, title, distance_key="distance",
                  ylabel="relative RMS distance to the limit"):
    """Write ``bench_adam_limit_{tag}.json`` and a log-log plot of distance against time, ``.png``, under ``out``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"bench_adam_limit_{tag}.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.6))
    for points, size, marker, label in ((summary["engine"], "samples", "o-", "Monte Carlo engine (M samples)"),
                                        (summary["finite"], "width", "s-", "finite Adam network (width n)")):
        points = [p for p in points if p[distance_key] > 0]
        axis.loglog([p["seconds"] for p in points], [p[distance_key] for p in points], marker, label=label)
        for p in points:
            axis.annotate(f"{'M' if size == 'samples' else 'n'}={p[size]}", (p["seconds"], p[distance_key]),
                          fontsize=7)
    if "comparison" in summary:
        axis.axhline(summary["comparison"]["common_distance"], color="grey", lw=0.8, ls=":",
                     label=f"common distance: finite/engine time = {summary['comparison']['finite_over_engine']:.1f}")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(os.path.join(out, f"bench_adam_limit_{tag}.png"), dpi=120)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
