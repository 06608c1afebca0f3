"""Bias of low-rank roots in the Adam-limit engine, measured against exact roots on the same draws.

A root truncated to r columns keeps the first r pivoted Cholesky columns of
the exact root and the engine draws latent column j from its own key, so a
truncated run and an exact run with the same key share every draw except the
dropped columns (docs/theory.md, section 7). Their per-replica difference
therefore estimates the truncation bias with a much smaller error than
either run's own Monte Carlo error. For each rank this reports, on the test
predictions at the recorded steps:

* ``bias_rms``: RMS over points and outputs of the mean (over replicas)
  truncated-minus-exact difference, with the reference's noise removed
  (``sqrt(max(mean(b^2) - mean(se_b^2), 0))``, se_b the standard error of
  that mean);
* ``stderr_default_rms``: RMS of the standard error of the exact run,
  scaled to the default ``samples`` (65,536) in 8 replicas;
* ``ratio``: bias_rms / stderr_default_rms (the target is below 1/3), and
  ``ratio_upper`` from the estimate plus two jackknife (over replicas)
  standard errors of the squared bias;
* ``stderr_inflation``: the truncated run's standard error over the exact
  run's (random features of the residual add variance).

Usage (from the repository root)::

    python benchmarks/bench_adam_limit_rank.py --n-train 1600 --n-test 400 --configs 250:0 250:500 500:500

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA`` (MNIST idx files).
Writes ``bench_adam_limit_rank_P<points>.json`` under ``--out`` (default docs/).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

import adam_limit_common as common
from infinite_width.limits import adam_limit

DEFAULT_SAMPLES, DEFAULT_REPLICAS = 65536, 8


def squared_bias(difference):
    """Unbiased estimate of the mean squared bias per recorded step: mean(b^2) - mean(se_b^2), (T,).

    ``difference``: (R, T, Nt, k) per-replica differences; b is their mean over replicas.
    """
    mean = difference.mean(axis=0)
    variance_of_mean = difference.var(axis=0, ddof=1) / difference.shape[0]
    return np.mean(mean**2 - variance_of_mean, axis=(1, 2))


def truncation_bias(exact, truncated):
    """RMS bias of ``truncated`` against ``exact`` (same key) on the test predictions, per recorded step.

    Returns (estimate, its jackknife standard error, an upper bound: the estimate of the squared bias plus
    two jackknife standard errors, square-rooted, and the RMS standard error of the mean difference).
    """
    difference = truncated.replica_test_predictions - exact.replica_test_predictions  # (R, T, Nt, k)
    replicas = difference.shape[0]
    squared = squared_bias(difference)
    leave_one_out = np.stack([squared_bias(np.delete(difference, i, axis=0)) for i in range(replicas)])
    jackknife = np.sqrt((replicas - 1) * np.mean((leave_one_out - leave_one_out.mean(axis=0)) ** 2, axis=0))
    stderr = np.sqrt(np.mean(difference.var(axis=0, ddof=1) / replicas, axis=(1, 2)))
    return (np.sqrt(np.maximum(squared, 0.0)), jackknife, np.sqrt(np.maximum(squared + 2 * jackknife, 0.0)),
            stderr)


def main():
    parser = common.parser(__doc__.split("\n")[0], n_train=1600, n_test=400, samples=16384, replicas=8, steps=300,
                           batch_size=128)
    parser.add_argument("--configs", nargs="+", default=["250:0", "250:500", "500:500", "1000:500"],
                        help="rank:features pairs (features: random features of the residual per replica)")
    args = parser.parse_args()
    problem = common.setup(args.n_train, args.n_test, args.data_dir)
    data, arch, adam = problem.data, problem.arch, problem.optimizer
    record = [args.steps // 3, args.steps]

    def run(rank, features):
        start = time.perf_counter()
        result = adam_limit.simulate(arch, data.x_train, data.y_train, data.x_test, adam, args.steps, key=7,
                                  batch_size=args.batch_size, samples=args.samples, replicas=args.replicas,
                                  rank=rank, features=features, record=record)
        print(f"rank {rank}, features {features}: ranks {result.ranks}, dropped {result.residual_fractions}, "
              f"{time.perf_counter() - start:.1f} s (setup {result.timings['setup']:.1f} s)", flush=True)
        return result

    exact = run(None, 0)
    signal = np.sqrt(np.mean(exact.test_predictions**2, axis=(1, 2)))
    # Standard error of a default run: the replica spread scales like 1 / sqrt(samples per replica).
    stderr = np.sqrt(np.mean(exact.test_stderr**2, axis=(1, 2)))
    stderr_default = stderr * math.sqrt((args.samples / args.replicas) / (DEFAULT_SAMPLES / DEFAULT_REPLICAS)
                                        ) * math.sqrt(args.replicas / DEFAULT_REPLICAS)
    rows = []
    for config in args.configs:
        rank, features = (int(part) for part in config.split(":"))
        truncated = run(rank, features)
        bias, jackknife, upper, difference_stderr = truncation_bias(exact, truncated)
        own_stderr = np.sqrt(np.mean(truncated.test_stderr**2, axis=(1, 2)))
        rows.append(dict(rank=rank, features=features, ranks=truncated.ranks,
                         dropped_variance=truncated.residual_fractions, seconds=truncated.timings["total"],
                         setup_seconds=truncated.timings["setup"],
                         bias_rms=bias.tolist(), squared_bias_jackknife_error=jackknife.tolist(),
                         bias_rms_upper=upper.tolist(), difference_stderr_rms=difference_stderr.tolist(),
                         ratio=(bias / stderr_default).tolist(), ratio_upper=(upper / stderr_default).tolist(),
                         relative_bias=(bias / signal).tolist(),
                         stderr_inflation=(own_stderr / stderr).tolist()))
        print(json.dumps(rows[-1]), flush=True)
    summary = common.metadata() | dict(
        config=common.described(args, adam, record=record),
        exact=dict(ranks=exact.ranks, signal_rms=signal.tolist(), stderr_rms=stderr.tolist(),
                   stderr_default_rms=stderr_default.tolist()),
        truncated=rows,
    )
    common.write_json(summary, args.out, f"bench_adam_limit_rank_P{args.n_train + args.n_test}.json")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
