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
   networks (:func:`infinite_width.training.train`, centred) at growing width.

Usage (from the repository root)::

    python benchmarks/bench_adam_limit.py                    # the issue's configuration (accelerator)
    python benchmarks/bench_adam_limit.py --cpu-small        # reduced run for a CPU, a few minutes

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA`` (MNIST idx files).
Writes a JSON summary and a PNG plot to ``--out`` (default docs/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import jax
import numpy as np

import infinite_width as iw
from infinite_width import adam_limit, datasets, optim, training


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-small", action="store_true", help="reduced configuration for a CPU")
    parser.add_argument("--data-dir", default=os.environ.get("INFINITE_WIDTH_DATA", "../shared/datasets"))
    parser.add_argument("--out", default="docs")
    parser.add_argument("--peak-gbps", type=float, default=None,
                        help="peak memory bandwidth in GB/s (default: 3350 on GPU, a measured copy on CPU)")
    args = parser.parse_args()
    if args.cpu_small:
        config = dict(n_train=500, n_test=100, steps=10, samples=2048, timing_steps=(2, 22),
                      engine_samples=(512, 1024, 2048, 4096), reference_samples=8192, widths=(64, 128, 256, 512))
    else:
        config = dict(n_train=10000, n_test=2000, steps=1000, samples=65536, timing_steps=(10, 60),
                      engine_samples=(4096, 16384, 65536), reference_samples=262144, widths=(256, 1024, 4096))
    data = datasets.load("mnist", args.data_dir, n_train=config["n_train"], n_test=config["n_test"], seed=0)
    arch = iw.mlp(3, "relu", 2**0.5, 0.1, 10)
    adam = optim.adam(0.01, b1=0.9, b2=0.99)
    common = dict(replicas=8 if not args.cpu_small else 4, record=None)
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
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
        finite = training.train(arch.network(width), data.x_train, data.y_train, adam, config["steps"], centred=True,
                                key=2, seeds=1, record=[config["steps"]], x_test=data.x_test)
        seconds = time.perf_counter() - start
        distance = relative_distance(np.asarray(finite.test_predictions)[0, -1], target)
        finite_points.append(dict(width=width, seconds=seconds, distance=distance))
        print("finite", finite_points[-1])

    summary = dict(
        date=datetime.date.today().isoformat(), machine=f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {device.device_kind}", jax=jax.__version__, config=config,
        reference_mc_error=float(np.sqrt(np.mean(reference.test_stderr[-1] ** 2) / np.mean(target**2))),
        throughput=throughput, engine=engine_points, finite=finite_points,
    )
    os.makedirs(args.out, exist_ok=True)
    tag = "cpu_small" if args.cpu_small else "full"
    with open(os.path.join(args.out, f"bench_adam_limit_{tag}.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.6))
    axis.loglog([p["seconds"] for p in engine_points], [p["distance"] for p in engine_points], "o-",
                label="Monte Carlo engine (M per replica)")
    for p in engine_points:
        axis.annotate(f"M={p['samples']}", (p["seconds"], p["distance"]), fontsize=7)
    axis.loglog([p["seconds"] for p in finite_points], [p["distance"] for p in finite_points], "s-",
                label="finite Adam network (width n)")
    for p in finite_points:
        axis.annotate(f"n={p['width']}", (p["seconds"], p["distance"]), fontsize=7)
    axis.set_xlabel("wall time (s, compilation included)")
    axis.set_ylabel("relative RMS distance to the limit")
    axis.set_title(f"MNIST {config['n_train']}+{config['n_test']}, 3x ReLU, Adam, {config['steps']} steps", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, f"bench_adam_limit_{tag}.png"), dpi=120)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
