"""Accuracy per cost of the Adam-like limit's engine against finite networks, in one run.

Both sides model the same limit: the engine estimates it with M samples (its
distance falls like M^-1/2), a finite Adam network (centered, per-group scales,
:func:`infinite_width.finite.train`) approaches it as its width n grows.
For each engine sample count and each width this measures, after ``steps``:

* the relative RMS distance of the test predictions to a reference (the
  engine's mean over many independent replicas), with the reference's own
  Monte Carlo error removed in quadrature, ``sqrt(d^2 - e_ref^2)``;
* every call, the reference's included, trains on the same minibatch order
  (the finite network's, from its key): with minibatches the limit depends on
  the order, so points with orders of their own would differ from the
  reference by more than their Monte Carlo error, a floor no M or width removes;
* the wall time of one call, compilation excluded (every point runs twice with
  the same shapes; the second call is timed), the engine's kernels, roots,
  features and fields and the network's initialisation included. An engine
  point is one call with 2 replicas of M / 2 samples (its estimate is their mean).

Both sides are fitted as ``distance ~ time^slope``; the script reports the time
each fit needs to reach ``--target`` (0.08), their ratio and where the fits
cross, once with wall times and once with CPU times (``comparison_cpu``: the
process's CPU seconds, which other jobs on a shared machine do not inflate).
Configurations (MNIST, ``mlp(2, "relu", sqrt 2, 0.1, 10)``, Adam(lr 0.01, b1
0.9, b2 0.99), MSE):

* ``full-batch``: 500 train + 100 test, full batch, 100 steps;
* ``minibatch``: 2,000 train + 500 test, batches of 100, 500 steps.

Usage (from the repository root)::

    python benchmarks/bench_adam_limit.py --config full-batch
    python benchmarks/bench_adam_limit.py --config minibatch --widths 128 256 512 1024

An interrupted run resumes from ``bench_adam_limit_cost_<config>.partial.json``
under ``--out`` (same configuration and grids).

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA``. Writes
``bench_adam_limit_cost_<config>.json`` and ``.png`` under ``--out`` (default docs/).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

import adam_limit_common as common
import infinite_width as iw
from infinite_width import finite
from infinite_width.limits import adam_limit

#: The finite networks' key; its minibatch order is every call's (see the module docstring).
FINITE_KEY = 2

CONFIGS = {
    "full-batch": dict(n_train=500, n_test=100, batch_size=None, steps=100, reference=(4, 2**16, 8),
                       engine_samples=(512, 1024, 2048, 4096, 8192, 16384, 32768),
                       widths=(128, 256, 512, 1024, 2048, 4096)),
    "minibatch": dict(n_train=2000, n_test=500, batch_size=100, steps=500, reference=(8, 2**15, 8),
                      engine_samples=(512, 1024, 2048, 4096, 8192, 16384, 32768),
                      widths=(128, 256, 512, 1024, 2048, 4096)),
}


def relative_distance(outputs, reference):
    return float(np.sqrt(np.mean((outputs - reference) ** 2) / np.mean(reference**2)))


def fit_power_law(seconds, distances):
    """Least-squares fit of log distance = intercept + slope * log seconds; returns (slope, intercept)."""
    slope, intercept = np.polyfit(np.log(seconds), np.log(distances), 1)
    return float(slope), float(intercept)


def time_to_reach(distance, slope, intercept):
    """Seconds at which the fitted power law reaches ``distance``."""
    return float(np.exp((np.log(distance) - intercept) / slope))


def reference_run(simulate, steps, calls, samples, replicas):
    """The limit's test predictions from ``calls`` independent calls (pooled replicas) and their relative error."""
    start = time.perf_counter()
    pooled = np.concatenate([simulate(steps, key=100 + i, samples=samples, replicas=replicas,
                                   record=[steps]).replica_test_predictions[:, -1] for i in range(calls)])
    mean = pooled.mean(axis=0)
    stderr = pooled.std(axis=0, ddof=1) / np.sqrt(pooled.shape[0])
    error = float(np.sqrt(np.mean(stderr**2) / np.mean(mean**2)))
    print(f"reference: {pooled.shape[0]} replicas, {time.perf_counter() - start:.0f} s, relative MC error {error:.4f}",
          flush=True)
    return mean, dict(replicas=int(pooled.shape[0]), samples=calls * samples, mc_error=error,
                      seconds=time.perf_counter() - start)


def timed_twice(call):
    """(result, seconds of the second call, seconds of the first minus the second: compilation, CPU seconds of
    the second call). The CPU time (all threads of the process) does not grow with other jobs' load as the wall
    time does."""
    seconds = []
    for _ in range(2):
        cpu_start, start = os.times(), time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
        cpu_end = os.times()
    cpu = (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)
    return result, seconds[1], seconds[0] - seconds[1], cpu


class Progress:
    """Partial results of one configuration in a JSON file, so that an interrupted run resumes where it stopped.

    Points are kept per engine sample count and per width, so a run resumed with another grid keeps the points
    it shares; everything is discarded when the problem or the reference differs."""

    GRIDS = ("engine_samples", "widths")

    def __init__(self, path, config):
        self.path = path
        saved = {}
        if os.path.exists(path):
            with open(path) as handle:
                saved = json.load(handle)
        problem = {name: value for name, value in config.items() if name not in self.GRIDS}
        if {name: value for name, value in saved.get("config", {}).items() if name not in self.GRIDS} != problem:
            saved = {}
        self.saved = dict(saved, config=config)

    def get(self, name):
        return self.saved.get(name)

    def put(self, name, value):
        self.saved[name] = value
        with open(self.path + ".tmp", "w") as handle:
            json.dump(self.saved, handle)
        os.replace(self.path + ".tmp", self.path)


def measure_points(arch, data, adam, config, progress: Progress):
    """Time the engine points and the finite points of one configuration (see the module docstring); each point
    keeps its (Nt, k) test predictions at the last step, so that its distance to the reference can be computed
    later (:func:`with_distances`) and points can be measured in parallel processes."""
    steps = config["steps"]
    rows = batch_order(data, config)
    for samples in config["engine_samples"]:
        if progress.get(f"engine {samples}") is None:
            result, seconds, compile_seconds, cpu_seconds = timed_twice(lambda: adam_limit.simulate(
                arch, data.x_train, data.y_train, data.x_test, adam, steps, batch_indices=rows, key=1,
                samples=samples, replicas=2, record=[steps]))
            progress.put(f"engine {samples}", dict(
                samples=samples, seconds=seconds, compile_seconds=compile_seconds, cpu_seconds=cpu_seconds,
                setup_seconds=result.timings["setup"], timings=result.timings, ranks=result.ranks,
                load_average=os.getloadavg(), test=result.test_predictions[-1].tolist()))
        print("engine", samples, "done", flush=True)
    for width in config["widths"]:
        if progress.get(f"finite {width}") is None:
            net = finite.network(arch, width)
            result, seconds, compile_seconds, cpu_seconds = timed_twice(lambda: finite.train(
                net, data.x_train, data.y_train, adam, steps, centered=True, key=FINITE_KEY, seeds=1, record=[steps],
                x_test=data.x_test, batch_size=config["batch_size"]))
            progress.put(f"finite {width}", dict(
                width=width, seconds=seconds, compile_seconds=compile_seconds, cpu_seconds=cpu_seconds,
                load_average=os.getloadavg(), test=result.test[0, -1].tolist()))
        print("finite", width, "done", flush=True)


def reference_of(arch, data, adam, config, progress: Progress):
    """The reference (its test predictions ``target`` and relative MC error), computed once per configuration."""
    if progress.get("reference") is None:
        simulate = lambda steps, **kw: adam_limit.simulate(  # noqa: E731
            arch, data.x_train, data.y_train, data.x_test, adam, steps, batch_indices=batch_order(data, config), **kw)
        target, reference = reference_run(simulate, config["steps"], *config["reference"])
        progress.put("reference", dict(reference, target=target.tolist()))
    return progress.get("reference")


def batch_order(data, config):
    """(steps, B) training rows of every step: the finite networks' order (full batch: every row)."""
    return iw.workflow.minibatch_order(FINITE_KEY, data.x_train.shape[0], config["batch_size"], config["steps"])


def with_distances(points, reference):
    """The points with their distance to the reference's target and that distance with the reference's own
    error removed (it is independent of the point's, so it adds in quadrature); without the predictions."""
    target = np.asarray(reference["target"])
    measured = []
    for point in points:
        distance = relative_distance(np.asarray(point["test"]), target)
        corrected = float(np.sqrt(max(distance**2 - reference["mc_error"] ** 2, 0.0)))
        measured.append({name: value for name, value in point.items() if name != "test"}
                        | dict(distance=distance, corrected_distance=corrected))
        print(json.dumps(measured[-1]), flush=True)
    return measured


def compare(engine, networks, target, clock="seconds"):
    """Power-law fits of both sides, the time each needs to reach ``target`` and where the fits cross.

    ``clock``: ``"seconds"`` (wall time) or ``"cpu_seconds"`` (CPU time of the process, which other jobs'
    load does not inflate)."""
    fits = {}
    for side, points in (("engine", engine), ("finite", networks)):
        usable = [p for p in points if p["corrected_distance"] > 0]
        fits[side] = fit_power_law([p[clock] for p in usable], [p["corrected_distance"] for p in usable])
    seconds = {side: time_to_reach(target, *fit) for side, fit in fits.items()}
    (se, ie), (sf, i_f) = fits["engine"], fits["finite"]
    crossing = float(np.exp((i_f - ie) / (se - sf))) if se != sf else float("nan")
    return dict(fits=fits, target=target, engine_seconds=seconds["engine"], finite_seconds=seconds["finite"],
                finite_over_engine=seconds["finite"] / seconds["engine"], crossing_seconds=crossing,
                crossing_distance=float(np.exp(ie + se * np.log(crossing))) if np.isfinite(crossing) else None)


def main():
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="full-batch")
    parser.add_argument("--target", type=float, default=0.08, help="distance to the limit to compare times at")
    parser.add_argument("--engine-samples", type=int, nargs="*", help="engine sample counts (default: the config's)")
    parser.add_argument("--widths", type=int, nargs="*", help="finite widths (default: the config's)")
    parser.add_argument("--points-only", action="store_true",
                        help="measure the points into the partial-results file only (no reference, no comparison): "
                             "to measure some points in another process; merge the files' points, then run again")
    parser.add_argument("--reference", type=int, nargs=3, metavar=("CALLS", "SAMPLES", "REPLICAS"),
                        help="reference: independent calls, samples and replicas per call (default: the config's)")
    args = parser.parse_args()
    config = dict(CONFIGS[args.config], name=args.config, batch_order=f"finite key {FINITE_KEY}")
    for option in ("engine_samples", "widths", "reference"):
        if getattr(args, option) is not None:
            config[option] = list(getattr(args, option))
    config = json.loads(json.dumps(config))  # tuples as lists, as the partial-results file stores them
    problem = common.setup(config["n_train"], config["n_test"], args.data_dir)
    data, arch, adam = problem.data, problem.arch, problem.optimizer
    header = common.metadata()
    os.makedirs(args.out, exist_ok=True)
    progress = Progress(os.path.join(args.out, f"bench_adam_limit_cost_{args.config}.partial.json"), config)
    if not args.points_only:
        reference = reference_of(arch, data, adam, config, progress)
    measure_points(arch, data, adam, config, progress)
    if args.points_only:
        return
    engine = with_distances([progress.get(f"engine {m}") for m in config["engine_samples"]], reference)
    networks = with_distances([progress.get(f"finite {n}") for n in config["widths"]], reference)
    summary = dict(date=header["date"], jax=header["jax"], machine=header["machine"],
                   load_average_before=header["load_average"], load_average_after=os.getloadavg(), config=config,
                   reference={name: value for name, value in reference.items() if name != "target"},
                   engine=engine, finite=networks,
                   comparison=compare(engine, networks, args.target),
                   comparison_cpu=compare(engine, networks, args.target, clock="cpu_seconds"))
    print(json.dumps(dict(wall=summary["comparison"], cpu=summary["comparison_cpu"]), indent=2))
    write_summary(summary, args.out, f"cost_{args.config}")
    os.remove(progress.path)


def write_summary(summary, out, tag):
    """Write ``bench_adam_limit_{tag}.json`` and a log-log plot of distance against time, ``.png``, under ``out``."""
    common.write_json(summary, out, f"bench_adam_limit_{tag}.json")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.6))
    comparison = summary["comparison"]
    for side, size, marker, label in (("engine", "samples", "o", "Monte Carlo engine (M samples)"),
                                      ("finite", "width", "s", "finite Adam network (width n)")):
        points = [p for p in summary[side] if p["corrected_distance"] > 0]
        seconds = np.array([p["seconds"] for p in points])
        axis.loglog(seconds, [p["corrected_distance"] for p in points], marker, label=label)
        slope, intercept = comparison["fits"][side]
        grid = np.geomspace(seconds.min() / 2, seconds.max() * 2, 50)
        axis.loglog(grid, np.exp(intercept) * grid**slope, "-", lw=0.8, color=axis.lines[-1].get_color())
        for p in points:
            axis.annotate(f"{'M' if size == 'samples' else 'n'}={p[size]}", (p["seconds"], p["corrected_distance"]),
                          fontsize=6)
    axis.axhline(comparison["target"], color="grey", lw=0.8, ls=":",
                 label=f"distance {comparison['target']}: finite/engine time = {comparison['finite_over_engine']:.2g}")
    config = summary["config"]
    axis.set_xlabel("wall time (s, compilation excluded)")
    axis.set_ylabel("relative RMS distance to the limit\n(reference MC error removed)")
    axis.set_title(f"{config.get('dataset', 'MNIST')} {config['n_train']}+{config['n_test']}, {config['name']}, {config['steps']} steps",
                   fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(os.path.join(out, f"bench_adam_limit_{tag}.png"), dpi=120)


if __name__ == "__main__":
    main()
