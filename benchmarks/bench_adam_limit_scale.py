"""The Adam-like limit at dataset scale on a CPU: time, peak memory and Monte Carlo error.

Configuration of issue 10: MNIST 10,000 train + 2,000 test points (P = 12,000),
``mlp(2, "relu", sqrt 2, 0.1, out_dim=10)``, Adam(lr 0.01, b1 0.9, b2 0.99),
minibatches of 128, 1,000 steps, 16,384 samples in 4 replicas, default roots
(rank 512 + 512 random features of the residual). One cold call: setup
(kernels, pivoted Cholesky roots, features, fields) and compilation included.

Reports the wall time, its stages (``LimitResult.timings``), the time per step
(from the step blocks after the first, which holds the compilation), the peak
resident memory of the process (sampled every 20 ms, and ``ru_maxrss``) against
the engine's estimate, and the Monte Carlo error of the test predictions
(relative RMS of the standard error over the RMS prediction) with the test
accuracy. The replica test predictions at the last step are saved beside the
JSON (``.npy``, not for the repository); when the other storage dtype's file
is there (same key, so the same draws), the effect of bfloat16 storage is
reported as the relative RMS difference of the two runs' test predictions and
its ratio to the Monte Carlo standard error. For the choice between storing the fields and regenerating them
every step, it also times the product that regenerating the batch rows of the
``z`` field would cost per step.

Usage (from the repository root; targets: under 10 minutes and 12 GB)::

    python benchmarks/bench_adam_limit_scale.py
    python benchmarks/bench_adam_limit_scale.py --storage-dtype bfloat16   # then compared with float32

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA``. Writes
``bench_adam_limit_scale_<dtype>.json`` under ``--out`` (default docs/).
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time

import jax
import numpy as np

import adam_limit_common as common
from infinite_width.limits import adam_limit


class PeakMemory:
    """Largest resident set size of this process while in the ``with`` block (sampled every 20 ms)."""

    def __enter__(self):
        self.peak, self.stopping = self.rss(), False
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def poll(self):
        while not self.stopping:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)


def regeneration_ms_per_step(batch: int, width: int, out_dim: int, samples: int, repeats: int = 3) -> float:
    """Milliseconds a step would spend regenerating the batch rows of one ``z`` field from its latent normals
    instead of reading them: ``(B, r') @ (r', k M)`` for the function and again for the gradient pass."""
    rows = jax.numpy.ones((batch, width), jax.numpy.float32)
    latent = jax.numpy.ones((width, out_dim * samples), jax.numpy.float32)
    product = jax.jit(lambda a, b: jax.numpy.matmul(a, b, precision=jax.lax.Precision.HIGHEST))
    product(rows, latent).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(rows, latent).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2e3 * best


def compare_storage(replica_test, storage_dtype: str, out: str):
    """Save this run's (R, Nt, k) replica test predictions under ``out``; if the run with the other storage dtype
    saved its own, the relative RMS difference of the two means and its ratio to the RMS standard error (None
    otherwise)."""
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, f"bench_adam_limit_scale_{storage_dtype}_test.npy"), replica_test)
    other = "float32" if storage_dtype == "bfloat16" else "bfloat16"
    other_path = os.path.join(out, f"bench_adam_limit_scale_{other}_test.npy")
    if not os.path.exists(other_path):
        return None
    other_test = np.load(other_path)
    if other_test.shape != replica_test.shape:
        return None
    mean, other_mean = replica_test.mean(0), other_test.mean(0)
    stderr = replica_test.std(0, ddof=1) / np.sqrt(replica_test.shape[0])
    difference = float(np.sqrt(np.mean((mean - other_mean) ** 2)))
    return dict(other=other, relative_rms_difference=difference / float(np.sqrt(np.mean(other_mean**2))),
                difference_over_stderr=difference / float(np.sqrt(np.mean(stderr**2))))


def main():
    parser = common.parser(__doc__.split("\n")[0], n_train=10000, n_test=2000, samples=16384, replicas=4,
                           steps=1000, batch_size=128)
    parser.add_argument("--storage-dtype", default="float32")
    args = parser.parse_args()
    problem = common.setup(args.n_train, args.n_test, args.data_dir)
    data, arch, adam = problem.data, problem.arch, problem.optimizer
    header = common.metadata()
    baseline = PeakMemory.rss()
    cpu_before = os.times()
    with PeakMemory() as memory:
        result = adam_limit.simulate(arch, data.x_train, data.y_train, data.x_test, adam, args.steps, key=0,
                                  batch_size=args.batch_size, samples=args.samples, replicas=args.replicas,
                                  storage_dtype=args.storage_dtype, record=[0, 10, args.steps // 2, args.steps],
                                  progress=True)
    cpu_after = os.times()
    timings = result.timings
    later_steps = args.steps - timings["first_step_block_steps"]
    seconds_per_step = (timings["steps"] - timings["first_step_block"]) / later_steps
    test = result.test_predictions[-1]
    summary = dict(
        date=header["date"], jax=header["jax"], machine=header["machine"],
        load_average_before=header["load_average"], load_average_after=os.getloadavg(),
        config=common.described(args, adam),
        wall_seconds=result.timings["total"], setup_seconds=result.timings["setup"], timings=timings,
        # CPU time of the process (all threads): on a shared machine, wall time grows with the load, this does not
        cpu_seconds=(cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        ms_per_step=1e3 * seconds_per_step,
        compile_seconds_estimate=timings["first_step_block"] - timings["first_step_block_steps"] * seconds_per_step,
        ranks=result.ranks, residual_fractions=result.residual_fractions,
        peak_rss_gib=memory.peak / 2**30, peak_rss_above_start_gib=(memory.peak - baseline) / 2**30,
        ru_maxrss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        estimate_peak_gib=result.memory.peak_bytes / 2**30,
        estimate_parts_gib={name: value / 2**30 for name, value in result.memory.parts.items()},
        test_mc_error=float(np.sqrt(np.mean(result.test_stderr[-1] ** 2) / np.mean(test**2))),
        test_accuracy=float(np.mean(np.argmax(test, 1) == np.argmax(data.y_test, 1))),
        train_accuracy=float(np.mean(np.argmax(result.train_predictions[-1], 1) == np.argmax(data.y_train, 1))),
    )
    summary["storage_comparison"] = compare_storage(result.replica_test_predictions[:, -1], args.storage_dtype,
                                                    args.out)
    width = max(result.ranks.values()) + 512 + 1  # leading columns, features and the bias column
    summary["regenerate_z_ms_per_step"] = regeneration_ms_per_step(args.batch_size, width, 10, args.samples)
    print(json.dumps(summary, indent=2))
    common.write_json(summary, args.out, f"bench_adam_limit_scale_{args.storage_dtype}.json")


if __name__ == "__main__":
    main()
