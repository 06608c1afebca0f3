"""Every accelerator measurement in one run, written to one JSON file (issue 12).

An accelerator is lent only now and then, for minutes: this script measures
everything in one go, in this order, each part in its own ``try`` (a failing
part is recorded with its traceback and the run goes on), and rewrites the
JSON after every part, so that a run killed at its time limit still leaves
the parts it finished:

1. ``kernels``: 3-hidden-layer ReLU MLP, NNGP and NTK together on N x N MNIST
   inputs, :func:`infinite_width.kernels.nngp_and_ntk` against the jitted
   neural-tangents ``kernel_fn`` alone (overhead target <= 10%); in blocks at
   2N against ``nt.batch``; and the max relative error of the default
   float32 kernels against ``dtype="float64"`` on a subset (no TF32).
2. ``training``: ms per full-batch Adam step at each width, ``iw.solve`` with
   ``iw.Finite(width)`` against a plain optax loop on the same network
   (``bench_training.plain_adam_loop``).
3. ``nnpk``: the Neural Network Prior Kernel of many random networks, and the
   fraction of matmul throughput (``bench_nnpk.matmul_reference``, the same
   FLOPs as plain matrix products).
4. ``adam_limit_cost``: accuracy per cost of the Adam-like limit's engine
   (``iw.solve(problem, arch, iw.AdamLimit(...), adam, ...)``) against finite
   networks (``iw.Finite``): the time each needs to reach a relative distance
   of ``--target`` (0.05) to a reference run of the limit, from power-law fits
   of distance against time (``bench_adam_limit.compare``).
5. ``adam_limit``: the engine on full MNIST (P = 70,000 points), or the
   largest training set whose float64 field kernels fit in the host's memory, with
   minibatches: setup time, ms per step (after the first step, which holds
   the compilation), and the fraction of HBM bandwidth, taking a step's
   traffic as the stored fields of its batch rows read twice (the function
   and the gradient pass). It runs last because its setup is the largest and
   least predictable.

Each part has a time budget; a part stops its loop when its budget is spent
(what was left out is listed in its ``skipped``), and a part whose turn comes
after the total budget is ``skipped``. Everything runs under
``jax.default_matmul_precision("highest")``.

Usage (from the repository root)::

    python benchmarks/accelerator.py --data-dir ../shared/datasets --out accelerator.json
    python benchmarks/accelerator.py --tiny --data-dir ../shared/datasets --out /tmp/tiny.json

``--tiny`` runs every part at toy sizes on the CPU in well under a minute and
checks the JSON against :func:`check_report` (tests/test_accelerator.py runs
it). ``benchmarks/README.md`` gives the one-line command for the device machine
and how to read the JSON.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import sys
import time
import traceback

import jax
import numpy as np

import infinite_width as iw
from bench_adam_limit import FINITE_KEY, compare, relative_distance  # benchmarks/ is on the path when this script runs
from bench_nnpk import matmul_reference
from bench_training import best_times, plain_adam_loop
from infinite_width import datasets, optim

SCHEMA = "infinite_width.accelerator/1"
PARTS = ("kernels", "training", "nnpk", "adam_limit_cost", "adam_limit")
STATUSES = ("ok", "failed", "skipped")
#: Peak HBM bandwidth of an H200 (bytes/s), the denominator of ``hbm_fraction``.
HBM_BYTES_PER_S = 4.8e12

CONFIGS = {
    "full": dict(
        budget_s=450,
        kernels=dict(budget_s=60, n=20_000, n_batched=40_000, block=5_000, n_precision=2_000, depth=3, repeats=3),
        training=dict(budget_s=120, widths=(256, 512, 1024, 2048, 4096, 8192), n_train=10_000, steps=50, repeats=2),
        nnpk=dict(budget_s=60, n_points=10_000, networks=1_000, width=1024, depth=3, repeats=2),
        adam_limit_cost=dict(budget_s=90, n_train=2_000, n_test=500, batch_size=100, steps=200,
                             reference=(2, 32_768, 8), engine_samples=(1_024, 4_096, 16_384),
                             widths=(256, 1_024, 4_096)),
        # Full MNIST if the host can hold the float64 P x P field kernels (about 110 GiB at P = 70,000,
        # beside 128 GiB on the H200 machine), else the largest of these training sets that fits.
        adam_limit=dict(budget_s=120, n_train=(60_000, 50_000, 40_000, 30_000, 20_000), n_test=10_000,
                        batch_size=128, steps=200, samples=16_384, replicas=8),
    ),
    # Budgets far above the sizes' needs: every measurement runs, also on a loaded CI machine.
    "tiny": dict(
        budget_s=600,
        kernels=dict(budget_s=120, n=100, n_batched=200, block=50, n_precision=50, depth=3, repeats=1),
        training=dict(budget_s=120, widths=(16,), n_train=50, steps=5, repeats=1),
        nnpk=dict(budget_s=120, n_points=40, networks=8, width=32, depth=2, repeats=1),
        # The same shapes in both Adam-limit parts (M = 32 and 64 in 2 replicas, the reference like the
        # second point): compiled programs are reused, only finite widths compile anew.
        adam_limit_cost=dict(budget_s=240, n_train=40, n_test=10, batch_size=10, steps=6, reference=(1, 64, 2),
                             engine_samples=(32, 64), widths=(16, 32)),
        adam_limit=dict(budget_s=120, n_train=(40,), n_test=10, batch_size=10, steps=6, samples=32, replicas=2),
    ),
}

#: Keys every ``ok`` part's ``results`` must hold (numbers unless noted), checked by :func:`check_report`.
REQUIRED_RESULTS = {
    "kernels": ("ours_s", "raw_nt_s", "overhead", "batched_ours_s", "nt_batch_s", "batched_ratio",
                "max_rel_error_nngp", "max_rel_error_ntk"),
    "training": ("rows",),  # list of {width, ours_ms_per_step, plain_ms_per_step, ours_over_plain}
    "nnpk": ("nnpk_s", "matmul_s", "fraction_of_matmul", "tflops"),
    "adam_limit_cost": ("engine", "finite", "comparison"),  # lists of points, the fits' dict
    "adam_limit": ("setup_s", "ms_per_step", "hbm_bytes_per_step", "hbm_fraction", "test_accuracy"),
}


def check_report(report: dict) -> None:
    """Raise ``ValueError`` listing every way ``report`` departs from the schema (see benchmarks/README.md)."""
    problems = []
    for key, kind in (("schema", str), ("mode", str), ("date", str), ("command", list), ("machine", dict),
                      ("jax", str), ("devices", list), ("precision", dict), ("budget_s", (int, float)),
                      ("wall_s", (int, float)), ("parts", dict)):
        if not isinstance(report.get(key), kind):
            problems.append(f"{key}: expected {kind}, got {type(report.get(key)).__name__}")
    if report.get("schema") != SCHEMA:
        problems.append(f"schema: expected {SCHEMA!r}, got {report.get('schema')!r}")
    if isinstance(report.get("precision"), dict) and report["precision"].get("default_matmul_precision") != "highest":
        problems.append(f"precision: not 'highest': {report['precision']}")
    parts = report.get("parts") if isinstance(report.get("parts"), dict) else {}
    if sorted(parts) != sorted(PARTS):
        problems.append(f"parts: expected {sorted(PARTS)}, got {sorted(parts)}")
    for name, part in parts.items():
        status = part.get("status")
        if status not in STATUSES:
            problems.append(f"parts.{name}.status: {status!r} is not one of {STATUSES}")
        if status == "failed" and not part.get("error"):
            problems.append(f"parts.{name}: failed without an error")
        if status != "ok":
            continue
        results = part.get("results", {})
        for key in REQUIRED_RESULTS.get(name, ()):
            value = results.get(key)
            if key in ("rows", "engine", "finite", "comparison"):
                if not value:
                    problems.append(f"parts.{name}.results.{key}: missing or empty")
            elif not (isinstance(value, (int, float)) and math.isfinite(value)):
                problems.append(f"parts.{name}.results.{key}: expected a finite number, got {value!r}")
    if problems:
        raise ValueError("accelerator report does not match the schema:\n  " + "\n  ".join(problems))


class Budget:
    """Seconds left of a part's budget (``spent`` is true once they are gone)."""

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds

    @property
    def spent(self) -> bool:
        return time.perf_counter() >= self.deadline


def _mnist(data_dir, n_train, n_test, seed=0):
    return datasets.load("mnist", data_dir, n_train=n_train, n_test=n_test, seed=seed)


def _mlp(depth, out_dim=10):
    return iw.mlp(depth, "relu", 2**0.5, 0.1, out_dim=out_dim)


def part_kernels(config, data_dir, budget):
    """Closed-form NNGP+NTK: ours against raw neural-tangents, blocks against nt.batch, float32 against float64."""
    from infinite_width import nt

    n, n_batched, block = config["n"], config["n_batched"], config["block"]
    x = _mnist(data_dir, n_batched, 10).x_train
    arch = _mlp(config["depth"], out_dim=1)
    kernel_fn = iw.kernels.stax(arch)[2]
    raw = jax.jit(lambda a: kernel_fn(a, None, ("nngp", "ntk")))
    whole = x[:n]
    ours_s, raw_s = best_times([lambda: iw.kernels.nngp_and_ntk(arch, whole), lambda: raw(whole)],
                               config["repeats"] + 1)  # the first round compiles and is overwritten by later ones
    results = dict(n=n, ours_s=ours_s, raw_nt_s=raw_s, overhead=ours_s / raw_s - 1)
    skipped = []
    if budget.spent:
        skipped.append("batched")
    else:
        batched = nt.batch(kernel_fn, batch_size=block, store_on_device=False)
        batched_ours_s, nt_batch_s = best_times(
            [lambda: iw.kernels.nngp_and_ntk(arch, x, batch_size=block), lambda: batched(x, None, ("nngp", "ntk"))],
            2)
        results.update(n_batched=n_batched, block=block, batched_ours_s=batched_ours_s, nt_batch_s=nt_batch_s,
                       batched_ratio=batched_ours_s / nt_batch_s)
    subset = x[: config["n_precision"]]
    for name, low, high in zip(("nngp", "ntk"), iw.kernels.nngp_and_ntk(arch, subset),
                               iw.kernels.nngp_and_ntk(arch, subset, dtype="float64")):
        high = np.asarray(high)
        results[f"max_rel_error_{name}"] = float(np.max(np.abs(np.asarray(low, np.float64) - high))
                                                 / np.max(np.abs(high)))
    results["n_precision"] = len(subset)
    return results, skipped


def part_training(config, data_dir, budget):
    """ms per full-batch Adam step at each width: iw.solve with iw.Finite against a plain optax loop."""
    data = _mnist(data_dir, config["n_train"], 10)
    problem = iw.Problem.from_dataset(data)
    arch = _mlp(3)
    lr, steps = 1e-3, config["steps"]
    adam = optim.adam(lr)
    x, y = jax.numpy.asarray(data.x_train), jax.numpy.asarray(data.y_train)
    rows, skipped = [], []
    for width in config["widths"]:
        if budget.spent:
            skipped.append(f"width {width}")
            continue
        net = iw.finite.network(arch, width)
        plain = plain_adam_loop(net, lr)
        params = net.init(jax.random.PRNGKey(0), x.shape[1:])
        ours = lambda: iw.solve(problem, arch, iw.Finite(width), adam, steps=steps,  # noqa: E731
                                record=[0, steps], progress=False).test_predictions
        run_plain = lambda: plain(params, x, y, steps)  # noqa: E731
        ours_s, plain_s = best_times([ours, run_plain], config["repeats"] + 1)  # first round compiles
        rows.append(dict(width=width, ours_ms_per_step=1e3 * ours_s / steps, plain_ms_per_step=1e3 * plain_s / steps,
                         ours_over_plain=ours_s / plain_s))
        print(f"  training width {width}: {rows[-1]}", flush=True)
    return dict(n_train=config["n_train"], steps=steps, rows=rows), skipped


def part_nnpk(config, data_dir, budget):
    """The NNPK of many random networks and its fraction of the throughput of plain matmuls of the same FLOPs."""
    x = _mnist(data_dir, config["n_points"], 10).x_train
    (n, d), depth = x.shape, config["depth"]
    arch = _mlp(depth)
    k, w, m = arch.out_dim, config["width"], config["networks"]
    reference = matmul_reference(x, [(d, w)] + [(w, w)] * (depth - 1) + [(w, k)], m, k)
    kernel = functools.partial(iw.kernels.nnpk, arch, x, width=w, networks=m, key=0)
    nnpk_s, matmul_s = best_times([kernel, reference], config["repeats"] + 1)  # first round compiles
    flops = 2.0 * n * m * (d * w + (depth - 1) * w * w + w * k) + 2.0 * n * n * m * k
    return dict(n_points=n, networks=m, width=w, depth=depth, nnpk_s=nnpk_s, matmul_s=matmul_s,
                fraction_of_matmul=matmul_s / nnpk_s, flops=flops, tflops=flops / nnpk_s / 1e12), []


def _limit(problem, arch, adam, steps, batch_size, samples, replicas, key, record):
    return iw.solve(problem, arch, iw.AdamLimit(samples=samples, replicas=replicas), adam, steps=steps,
                    batch_size=batch_size, record=record, key=key, progress=False)


def _limit_in_order(problem, arch, adam, steps, batch_size, samples, replicas, key):
    """The limit's (Nt, k) test predictions at ``steps`` and their standard error, trained on the finite networks'
    minibatch order (that of a solve with key ``FINITE_KEY``) while ``key`` draws the samples: with minibatches
    the limit depends on the order, so the reference and every point compared with it must share one."""
    from infinite_width.limits import adam_limit

    rows = iw.workflow.minibatch_order(FINITE_KEY, problem.n_train, batch_size, steps)
    result = adam_limit.simulate(arch, problem.x_train, problem.y_train, problem.x_test, adam, steps, key=key,
                                 samples=samples, replicas=replicas, record=[steps], batch_indices=rows)
    return result.test_predictions[-1], result.test_stderr[-1]


def _timed_second_call(call):
    """(result, seconds of the second of two identical calls: compilation excluded)."""
    call()
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def _limit_setting():
    """The architecture and optimizer of both Adam-limit parts."""
    return _mlp(2), optim.adam(0.01, b1=0.9, b2=0.99)


def part_adam_limit_cost(config, data_dir, budget, target):
    """Engine (samples M) and finite networks (width n) against a reference run of the limit:
    distance to it against wall time, fitted as power laws, and the time each needs to reach ``target``."""
    arch, adam = _limit_setting()
    data = _mnist(data_dir, config["n_train"], config["n_test"])
    problem = iw.Problem.from_dataset(data)
    steps, batch_size = config["steps"], config["batch_size"]
    solves, samples, replicas = config["reference"]
    # Pool independent solves (sample keys 100, 101, ...; one minibatch order): their means and standard errors.
    references = [_limit_in_order(problem, arch, adam, steps, batch_size, samples, replicas, 100 + i)
                  for i in range(solves)]
    target_predictions = np.mean([mean for mean, _ in references], axis=0)
    stderr = np.sqrt(np.sum([err**2 for _, err in references], axis=0)) / solves
    mc_error = float(np.sqrt(np.mean(stderr**2) / np.mean(target_predictions**2)))

    def point(**fields):
        fields["corrected_distance"] = float(np.sqrt(max(fields["distance"] ** 2 - mc_error**2, 0.0)))
        return fields

    engine, finite, skipped = [], [], []
    for m in config["engine_samples"]:
        if budget.spent:
            skipped.append(f"engine samples {m}")
            continue
        (mean, _), seconds = _timed_second_call(
            lambda: _limit_in_order(problem, arch, adam, steps, batch_size, m, 2, 1))
        engine.append(point(samples=m, seconds=seconds, distance=relative_distance(mean, target_predictions)))
    for width in config["widths"]:
        if budget.spent:
            skipped.append(f"finite width {width}")
            continue
        result, seconds = _timed_second_call(lambda: iw.solve(
            problem, arch, iw.Finite(width, centered=True), adam, steps=steps, batch_size=batch_size,
            record=[steps], key=FINITE_KEY, progress=False))
        finite.append(point(width=width, seconds=seconds,
                            distance=relative_distance(result.test_predictions[0, -1], target_predictions)))
    if not all(sum(p["corrected_distance"] > 0 for p in side) >= 2 for side in (engine, finite)):
        raise ValueError(f"a power law needs two points with a positive distance on each side: engine {engine}, "
                         f"finite {finite}")
    return dict(reference_mc_error=mc_error, engine=engine, finite=finite,
                comparison=compare(engine, finite, target)), skipped


def _fitting_train_points(config, input_dim, host_bytes):
    """The first of ``config["n_train"]`` whose host-side root computation (the engine's estimate) fits in
    80% of ``host_bytes``; None if none does."""
    from infinite_width.limits import adam_limit

    for n_train in config["n_train"]:
        estimate = adam_limit.estimate_memory(
            2, 10, n_train, config["n_test"], samples=config["samples"], input_dim=input_dim,
            replicas=config["replicas"], root_width=adam_limit.DEFAULT_RANK + adam_limit.DEFAULT_FEATURES + 1,
            batch_size=config["batch_size"])
        if estimate.parts["root_computation"] + estimate.parts["roots"] <= 0.8 * host_bytes:
            return n_train
    return None


def part_adam_limit(config, data_dir, budget):
    """Setup, ms/step and HBM fraction of the engine on full MNIST (or the largest part that fits) with
    minibatches."""
    from infinite_width.limits import adam_limit

    host_bytes = adam_limit.available_memory()
    n_train = _fitting_train_points(config, 784, host_bytes)
    if n_train is None:
        raise MemoryError(f"the root computation of none of n_train = {config['n_train']} fits in 80% of the "
                          f"host's {host_bytes / 2**30:.1f} GiB")
    data = _mnist(data_dir, n_train, config["n_test"])
    problem = iw.Problem.from_dataset(data)
    arch, adam = _limit_setting()
    steps, batch_size = config["steps"], config["batch_size"]
    start = time.perf_counter()
    # Recording step 1 makes the first step block a single step: it holds the compilation, the rest is steady.
    result = _limit(problem, arch, adam, steps, batch_size, config["samples"], config["replicas"], 0, [0, 1, steps])
    wall_s = time.perf_counter() - start
    info = result.metadata["info"]
    timings = info["timings_s"]
    steady_steps = steps - timings["first_step_block_steps"]
    seconds_per_step = (timings["steps"] - timings["first_step_block"]) / steady_steps
    points = problem.n_train + problem.n_test
    bytes_per_step = 2 * info["memory_bytes"]["storage"] * batch_size / points
    results = dict(
        n_train=problem.n_train, n_test=problem.n_test, host_available_gib=host_bytes / 2**30,
        batch_size=batch_size, steps=steps,
        samples=info["samples"], replicas=info["replicas"], storage_bytes=info["memory_bytes"]["storage"],
        memory_bytes=info["memory_bytes"], ranks=info["ranks"], timings_s=timings, wall_s=wall_s,
        setup_s=info["setup_time_s"], ms_per_step=1e3 * seconds_per_step, hbm_bytes_per_step=bytes_per_step,
        hbm_fraction=bytes_per_step / seconds_per_step / HBM_BYTES_PER_S,
        test_accuracy=float(result.test_accuracy[0, -1]),
        test_mc_error=float(np.sqrt(np.mean(result.test_stderr[-1] ** 2)
                                    / np.mean(result.test_predictions[0, -1] ** 2))),
    )
    return results, []


def _environment(mode, argv, budget_s):
    device = jax.devices()[0]
    versions = {}
    for package in ("jaxlib", "optax", "neural-tangents", "numpy", "scipy"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - a missing distribution is recorded, not fatal
            versions[package] = None
    return dict(
        schema=SCHEMA, mode=mode, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=[sys.executable, *argv], jax=jax.__version__, infinite_width=iw.__version__, versions=versions,
        machine=dict(node=platform.node(), processor=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                     python=platform.python_version(), load_average=os.getloadavg()),
        devices=[f"{d.platform}:{d.device_kind}" for d in jax.devices()], device_kind=device.device_kind,
        precision=dict(default_matmul_precision="highest", x64=bool(jax.config.jax_enable_x64)),
        budget_s=budget_s, wall_s=0.0, parts={},
    )


def _write(report, path):
    temporary = f"{path}.partial"
    with open(temporary, "w") as handle:
        json.dump(report, handle, indent=2, default=float)
    os.replace(temporary, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU, then check the JSON's schema")
    parser.add_argument("--data-dir", default=os.environ.get(datasets.DATA_ENV_VAR, "../shared/datasets"))
    parser.add_argument("--out", default="accelerator.json", help="the JSON file written")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (others: skipped)")
    parser.add_argument("--target", type=float, default=0.05, help="distance to the limit of accuracy per cost")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    mode = "tiny" if args.tiny else "full"
    config = CONFIGS[mode]
    report = _environment(mode, [sys.argv[0], *argv], config["budget_s"])
    total = Budget(config["budget_s"])
    started = time.perf_counter()
    runners = dict(kernels=part_kernels, training=part_training, nnpk=part_nnpk,
                   adam_limit_cost=functools.partial(part_adam_limit_cost, target=args.target),
                   adam_limit=part_adam_limit)
    with jax.default_matmul_precision("highest"):
        for name in PARTS:
            part_config = config[name]
            entry = dict(status="skipped", seconds=0.0, config=part_config, results={}, skipped=[], error=None)
            if name not in args.parts:
                entry["error"] = "not requested (--parts)"
            elif total.spent:
                entry["error"] = f"total budget of {config['budget_s']} s spent before this part"
            else:
                print(f"{name} ...", flush=True)
                start = time.perf_counter()
                try:
                    entry["results"], entry["skipped"] = runners[name](part_config, args.data_dir,
                                                                      Budget(part_config["budget_s"]))
                    entry["status"] = "ok"
                except Exception as error:  # noqa: BLE001 - recorded; the next part still runs
                    entry.update(status="failed", error=f"{type(error).__name__}: {error}",
                                 traceback=traceback.format_exc())
                    print(entry["traceback"], file=sys.stderr, flush=True)
                entry["seconds"] = time.perf_counter() - start
                print(f"{name}: {entry['status']} in {entry['seconds']:.1f} s", flush=True)
            report["parts"][name] = entry
            report["wall_s"] = time.perf_counter() - started
            _write(report, args.out)
    check_report(report)
    print(f"wrote {args.out} ({report['wall_s']:.1f} s)")
    return report


if __name__ == "__main__":
    main()
