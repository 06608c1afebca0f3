"""The demo: every regime side by side on one data set (``python -m infinite_width demo``).

It solves one data set (scikit-learn's digits by default, no download) with
NTK and NNGP gradient descent, the Adam-like limit, finite networks trained
with SGD and Adam at a few widths (each with all layers and with the readout
only), and the NNGP posterior and NTK ridge baselines. It prints the
comparison table and writes to ``--out``:

* ``results/<job>.npz``: one trajectory per solve (a resumable sweep: run
  the same command again after an interruption and finished solves are
  loaded, not recomputed);
* ``comparison.csv`` and ``distances.csv``: the table as CSV;
* ``demo.png`` and ``demo.pdf``: learning curves and test accuracy against
  width, with one shared legend.

``--quick`` shrinks everything for a smoke test (a few seconds of compute);
options given explicitly win over it. Every option is checked (and the output
folder's write access) before anything is computed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from typing import Dict, Mapping, NamedTuple

from infinite_width import datasets, optim
from infinite_width.architectures import Architecture, mlp
from infinite_width.problem import Problem
from infinite_width.workflow import AdamLimit, Finite, KernelDynamics, KernelRidge, Posterior, compare, sweep
from infinite_width.workflow.plotting import demo_figure
from infinite_width.workflow.trajectory import Trajectory

__all__ = ["DEFAULTS", "QUICK", "demo_jobs", "limit_pairs", "add_arguments", "resolve_arguments", "setup", "run"]

DEFAULTS = dict(
    dataset="digits", data_dir=None, n_train=300, n_test=300, steps=200, widths=[64, 256, 1024], depth=2,
    samples=16384, replicas=4, seeds=2, sgd_lr=2.0, adam_lr=0.02, seed=0, out=os.path.join("outputs", "demo"),
)
"""Default options of the demo."""
QUICK = dict(n_train=40, n_test=40, steps=12, widths=[16, 64], samples=512, replicas=2, seeds=2, depth=1)
"""The sizes ``--quick`` sets (a few seconds of compute)."""


def demo_jobs(problem, arch, *, steps, widths, samples, replicas, seeds, sgd_lr, adam_lr, key=0):
    """The demo's solves as sweep jobs: ``{name: solve arguments}`` (see the module docstring).

    Every method is built (and so checked) here, before any job runs.
    """
    common = dict(problem=problem, arch=arch, steps=steps, key=key)
    sgd, adam = optim.sgd(sgd_lr), optim.adam(adam_lr, b1=0.9, b2=0.99)
    limit = AdamLimit(samples=samples, replicas=replicas)
    finite = {width: Finite(width, seeds=seeds) for width in widths}
    jobs = {
        "nngp_posterior": dict(problem=problem, arch=arch, method=Posterior()),
        "ntk_ridge": dict(problem=problem, arch=arch, method=KernelRidge("ntk")),
    }
    for readout_only in (False, True):
        layers = "readout" if readout_only else "all"
        trained = dict(common, readout_only=readout_only)
        jobs[f"sgd-{layers}-inf"] = dict(trained, method=KernelDynamics(), optimizer=sgd)
        jobs[f"adam-{layers}-inf"] = dict(trained, method=limit, optimizer=adam)
        for width in widths:
            for name, optimizer in (("sgd", sgd), ("adam", adam)):
                jobs[f"{name}-{layers}-w{width}"] = dict(trained, method=finite[width], optimizer=optimizer)
    return jobs


def limit_pairs(results: Mapping[str, Trajectory]):
    """``(finite name, limit name)`` pairs of ``results``: the limit of the same optimizer and trained layers.

    Read from the trajectories' metadata (regime, optimizer and its
    hyper-parameters, ``readout_only``), never from their names.
    """
    def trained_as(t: Trajectory):
        return t.metadata.get("optimizer"), t.metadata.get("readout_only")

    limits = {}
    for name, t in results.items():
        if t.regime != "finite" and t.metadata.get("optimizer") is not None:
            limits.setdefault(str(trained_as(t)), name)
    return [(name, limits[str(trained_as(t))]) for name, t in results.items()
            if t.regime == "finite" and str(trained_as(t)) in limits]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the demo's options to ``parser``. Returns ``parser``.

    Options left out on the command line stay None until
    [`resolve_arguments`][infinite_width.experiments.demo.resolve_arguments] fills them (from ``--quick`` sizes or
    [`DEFAULTS`][infinite_width.experiments.demo.DEFAULTS]), so that explicit options win.
    """

    def option(flag, help, **kwargs):
        default = DEFAULTS[flag[2:].replace("-", "_")]
        parser.add_argument(flag, default=None, help=f"{help} (default {default})", **kwargs)

    option("--dataset", "digits (embedded), mnist, fashion_mnist or cifar10")
    option("--data-dir", "folder of the data files ($INFINITE_WIDTH_DATA when absent)")
    option("--n-train", "class-balanced training subset", type=int)
    option("--n-test", "class-balanced test subset", type=int)
    option("--steps", "optimizer steps", type=int)
    option("--widths", "finite widths", type=int, nargs="+")
    option("--depth", "hidden layers of the MLP", type=int)
    option("--samples", "Monte Carlo samples of the Adam-like limit (a multiple of --replicas)", type=int)
    option("--replicas", "independent replicas (error bars) of the limit", type=int)
    option("--seeds", "finite networks per width (spread)", type=int)
    option("--sgd-lr", "SGD learning rate", type=float)
    option("--adam-lr", "Adam learning rate", type=float)
    option("--seed", "the key of every solve and the data subset", type=int)
    option("--out", "output folder")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a smoke test (options given explicitly still win)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def resolve_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options not given: from [`QUICK`][infinite_width.experiments.demo.QUICK] with ``--quick``, else from [`DEFAULTS`][infinite_width.experiments.demo.DEFAULTS].

    An option given on the command line keeps its value. Returns ``args``.
    """
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick and name in QUICK else default)
    return args


class DemoSetup(NamedTuple):
    """What the options describe: the data set, the problem, the MLP and the sweep jobs."""

    data: datasets.Dataset
    problem: Problem
    arch: Architecture
    jobs: Dict[str, dict]


def setup(args: argparse.Namespace) -> DemoSetup:
    """Load the data and build the problem, the MLP and [`demo_jobs`][infinite_width.experiments.demo.demo_jobs] from resolved options.

    ``ValueError`` naming the option for a bad size (checked before anything is computed).
    """
    for name, minimum in (("n_train", 1), ("n_test", 1), ("steps", 0), ("depth", 1), ("seeds", 1),
                          ("samples", 2), ("replicas", 2)):
        if getattr(args, name) < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    if min(args.widths) < 1:
        raise ValueError(f"--widths must be >= 1, got {args.widths}")
    data = datasets.load(args.dataset, args.data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    problem = Problem.from_dataset(data, loss="mse")
    arch = mlp(depth=args.depth, activation="relu", W_std=math.sqrt(2.0), b_std=0.1, out_dim=problem.out_dim)
    jobs = demo_jobs(
        problem, arch, steps=args.steps, widths=args.widths, samples=args.samples, replicas=args.replicas,
        seeds=args.seeds, sgd_lr=args.sgd_lr, adam_lr=args.adam_lr, key=args.seed,
    )
    return DemoSetup(data, problem, arch, jobs)


def _check_writable(folder: str) -> None:
    """``ValueError`` unless ``folder`` can be created and written (checked before any computation)."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"--out: cannot write in {folder!r}: {error}") from error


def run(args: argparse.Namespace) -> int:
    """The demo with options of [`add_arguments`][infinite_width.experiments.demo.add_arguments]; returns the exit status (2 for bad options).

    Options are resolved ([`resolve_arguments`][infinite_width.experiments.demo.resolve_arguments]) and every one is
    checked, with the output folder, before the first solve.
    """
    resolve_arguments(args)
    start = time.perf_counter()
    try:
        _, problem, arch, jobs = setup(args)
        _check_writable(os.path.join(args.out, "results"))
    except (ValueError, TypeError, OSError) as error:
        print(f"python -m infinite_width demo: error: {error}", file=sys.stderr)
        return 2
    print(f"{problem.describe()}; {arch.name}; {len(jobs)} solves -> {args.out}", flush=True)
    results = sweep(jobs, os.path.join(args.out, "results"), progress=not args.no_progress)
    table = compare(results, pairs=limit_pairs(results))
    table.to_csv(os.path.join(args.out, "comparison.csv"))
    table.to_csv(os.path.join(args.out, "distances.csv"), distances=True)
    figure_path = os.path.join(args.out, "demo.png")
    demo_figure(results, path=[figure_path, os.path.join(args.out, "demo.pdf")])
    print(table)
    print(f"\nwrote {figure_path}, demo.pdf and comparison.csv ({time.perf_counter() - start:.1f} s)")
    return 0
