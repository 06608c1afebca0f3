"""The Monte Carlo variance of the Adam-like limit's engine against the samples per replica, per way of drawing.

For each variant of the fields (``engine_variants.Variant``: exact roots,
truncated roots with random features of the residual per replica, per chunk of
samples or shared by every replica, plain truncation, antithetic pairs,
orthogonal input weights) and each number m of samples per replica, this runs
independent replicas (every call its own key, the same keys for every variant,
so that variants are compared on common draws) on one of
``bench_adam_limit.py``'s configurations, on the finite networks' minibatch
order, and records their test predictions at the last step. From them:

* ``m_var``: m times the variance of one replica's prediction (averaged over
  test points and outputs, relative to the mean square of the reference), with
  a bootstrap interval over replicas. Flat in m means the error falls like
  m^-1/2; a variance that does not fall with m (one shared by every sample of
  a replica) makes it grow linearly;
* ``bias2``: the squared distance of the pooled mean to the reference (the
  exact-root replicas of the largest m), with both means' noise removed;
* ``M_d2``: M d^2 of the accuracy-per-cost benchmark's engine point (2
  replicas of m, M = 2m): ``M (var / 2 + bias2)``;
* per variant, the exponent of ``d ~ M^slope`` fitted over the m measured,
  with a bootstrap interval (replicas resampled in every m).

Usage (from the repository root)::

    python benchmarks/bench_adam_limit_floor.py --config minibatch --variants exact 512:512 512:0 512:512/chunk=1024
    python benchmarks/bench_adam_limit_floor.py --config full-batch --variants exact 256:256 256:256/chunk=256

Variant names: ``exact`` or ``RANK:FEATURES``, then modifiers ``/chunk=C``
(features per C samples), ``/shared`` (one feature set for all replicas),
``/anti=h1`` or ``/anti=h`` (antithetic pairs), ``/orth`` (orthogonal input
weights). Every call's predictions are kept under ``--work`` (resumable: a
rerun skips the calls it has). Writes ``bench_adam_limit_floor_<config>.json``
and ``.png`` under ``--out`` (default docs/).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

import adam_limit_common as common
import engine_variants
import infinite_width as iw
from bench_adam_limit import CONFIGS, FINITE_KEY

BOOTSTRAPS = 400


def calls_for(per_replica: int, replicas: int, samples_per_call: int):
    """The replicas of each call: at most ``samples_per_call`` samples per call (at least one replica)."""
    per_call = max(1, min(replicas, samples_per_call // per_replica))
    return [min(per_call, replicas - start) for start in range(0, replicas, per_call)]


def run_calls(problem, config, variant_name, per_replica, replicas, samples_per_call, work):
    """Run (or read back) the calls of one variant and m; returns ((R, Nt, k) test predictions, seconds)."""
    variant = engine_variants.parse_variant(variant_name)
    rows = iw.workflow.minibatch_order(FINITE_KEY, config["n_train"], config["batch_size"], config["steps"])
    predictions, seconds = [], []
    for call, count in enumerate(calls_for(per_replica, replicas, samples_per_call)):
        path = os.path.join(work, f"{variant_name.replace('/', '_').replace(':', '-')}_m{per_replica}_c{call}.npz")
        if not os.path.exists(path):
            start = time.perf_counter()
            drawn = engine_variants.draw(problem.arch, problem.x_all, key=engine_variants.key_for(per_replica, call),
                                         replicas=count, per_replica=per_replica, variant=variant)
            replica = engine_variants.simulate(problem.arch, problem.optimizer, drawn, problem.x_all,
                                               problem.data.y_train, rows, [config["steps"]])
            np.savez(path + ".tmp.npz", test=replica[:, -1, config["n_train"]:], draw_seconds=drawn.seconds,
                     seconds=time.perf_counter() - start, load=os.getloadavg())
            os.replace(path + ".tmp.npz", path)
            del drawn
        saved = np.load(path)
        predictions.append(saved["test"])
        seconds.append(float(saved["seconds"]))
    return np.concatenate(predictions), float(np.sum(seconds))


def relative_rows(reps, reference, scale, rng=None):
    """(variance of one replica, bias^2 with the means' noise removed), both relative to ``scale``;
    ``rng``: resample the replicas (bootstrap)."""
    count = reps.shape[0]
    correction = 1.0
    if rng is not None:
        reps = reps[rng.integers(0, count, count)]
        correction = count / (count - 1)  # a resample repeats replicas: E[its variance] = (n - 1) / n variance
    variance = correction * float(np.mean(np.var(reps, axis=0, ddof=1)))
    target, target_variance = reference
    squared = float(np.mean((reps.mean(axis=0) - target) ** 2)) - variance / reps.shape[0] - target_variance
    return variance / scale, squared / scale


def fitted_slope(per_replica, variances, biases):
    """Slope of log d against log M, d^2 = var / 2 + max(bias^2, 0) for M = 2 m."""
    distances = np.sqrt(np.asarray(variances) / 2 + np.maximum(np.asarray(biases), 0.0))
    return float(np.polyfit(np.log(2 * np.asarray(per_replica)), np.log(distances), 1)[0])


def analyse(runs, reference_name):
    """Per variant and m: m_var, bias2, M_d2 with bootstrap intervals, and the fitted exponent."""
    largest = max(m for name, m in runs if name == reference_name)
    pool = runs[(reference_name, largest)]["test"]
    reference = (pool.mean(axis=0), float(np.mean(np.var(pool, axis=0, ddof=1))) / pool.shape[0])
    scale = float(np.mean(reference[0] ** 2))
    rng = np.random.default_rng(0)
    results = {}
    for name in dict.fromkeys(name for name, _ in runs):
        sizes = sorted(m for other, m in runs if other == name)
        rows, draws = [], []  # draws[j]: (BOOTSTRAPS, 2) resampled (variance, bias^2) at sizes[j]
        for m in sizes:
            reps = runs[(name, m)]["test"]
            own = (name, m) == (reference_name, largest)  # its bias against itself is not measurable: taken as 0
            variance, bias2 = relative_rows(reps, reference, scale)
            resampled = np.array([relative_rows(reps, reference, scale, rng) for _ in range(BOOTSTRAPS)])
            if own:
                bias2, resampled[:, 1] = 0.0, 0.0
            draws.append(resampled)
            M_d2 = 2 * m * (resampled[:, 0] / 2 + np.maximum(resampled[:, 1], 0.0))
            rows.append(dict(
                per_replica=m, samples=2 * m, replicas=int(reps.shape[0]), seconds=runs[(name, m)]["seconds"],
                m_var=m * variance, m_var_interval=np.percentile(m * resampled[:, 0], [2.5, 97.5]).tolist(),
                bias2=bias2, M_d2=2 * m * (variance / 2 + max(bias2, 0.0)),
                M_d2_interval=np.percentile(M_d2, [2.5, 97.5]).tolist()))
        slope = fitted_slope(sizes, [r["m_var"] / r["per_replica"] for r in rows], [r["bias2"] for r in rows])
        slopes = [fitted_slope(sizes, [d[i, 0] for d in draws], [d[i, 1] for d in draws]) for i in range(BOOTSTRAPS)]
        M_d2 = [row["M_d2"] for row in rows]
        results[name] = dict(variant=engine_variants.parse_variant(name).describe(), rows=rows, slope=slope,
                             slope_interval=np.percentile(slopes, [2.5, 97.5]).tolist() if len(sizes) > 1 else None,
                             M_d2_max_over_min=max(M_d2) / min(M_d2))
        print(json.dumps({name: results[name]}, indent=1), flush=True)
    return results, dict(variant=reference_name, per_replica=largest, replicas=int(pool.shape[0]),
                         mean_square=scale, relative_error=float(np.sqrt(reference[1] / scale)))


def plot(results, config_name, path):
    """m_var and M_d2 against M, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, result in results.items():
        rows = result["rows"]
        M = [2 * r["per_replica"] for r in rows]
        for axis, key in zip(axes, ("m_var", "M_d2")):
            low, high = zip(*[r[key + "_interval"] for r in rows])
            values = [r[key] for r in rows]
            # a percentile interval of a biased statistic need not contain it: draw the part on each side
            yerr = np.clip([np.subtract(values, low), np.subtract(high, values)], 0, None)
            axis.errorbar(M, values, yerr=yerr, marker="o", ms=3,
                          capsize=2, label=f"{name} (slope {result['slope']:.3f})")
    axes[0].set_ylabel("m Var (one replica, relative)")
    axes[1].set_ylabel("M d^2 (2 replicas of m = M / 2)")
    for axis in axes:
        axis.set_xscale("log", base=2)
        axis.set_xlabel("M = 2 m")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=6)
    figure.suptitle(f"Adam-like limit, {config_name} configuration: variance per sample against samples", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="minibatch")
    parser.add_argument("--variants", nargs="+", default=["exact", "512:512", "512:0", "512:512/chunk=1024"])
    parser.add_argument("--per-replica", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--replicas", type=int, nargs="+", default=[32, 16, 16, 8, 8, 6, 4],
                        help="independent replicas per m (one number per --per-replica)")
    parser.add_argument("--samples-per-call", type=int, default=16384, help="bounds a call's memory")
    parser.add_argument("--reference", default="exact", help="the variant whose largest m is the reference")
    parser.add_argument("--work", default="/tmp/bench_adam_limit_floor", help="folder of the calls' predictions")
    parser.add_argument("--only", nargs="*", help="run only these variants now (no analysis): to split the work")
    args = parser.parse_args()
    if len(args.replicas) != len(args.per_replica):
        parser.error("--replicas needs one number per --per-replica")
    config = CONFIGS[args.config]
    problem = common.setup(config["n_train"], config["n_test"], args.data_dir)
    work = os.path.join(args.work, args.config)
    os.makedirs(work, exist_ok=True)
    header = common.metadata()
    runs = {}
    for name in args.only or args.variants:
        for m, replicas in zip(args.per_replica, args.replicas):
            test, seconds = run_calls(problem, config, name, m, replicas, args.samples_per_call, work)
            runs[(name, m)] = dict(test=test, seconds=seconds)
            print(f"{name} m={m}: {test.shape[0]} replicas, {seconds:.0f} s", flush=True)
    if args.only:
        return
    results, reference = analyse(runs, args.reference)
    summary = dict(header, load_average_after=os.getloadavg(),
                   config=common.described(args, problem.optimizer) | dict(problem=config, batch_order=FINITE_KEY),
                   reference=reference, variants=results)
    common.write_json(summary, args.out, f"bench_adam_limit_floor_{args.config}.json")
    plot(results, args.config, os.path.join(args.out, f"bench_adam_limit_floor_{args.config}.png"))


if __name__ == "__main__":
    main()
