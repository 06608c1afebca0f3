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
* ``demo.png``: learning curves and test accuracy against width.

``--quick`` shrinks everything for a smoke test (a few seconds of compute).
``paper_figures/adam_closes_the_gap.py`` runs the same solves with its own
defaults (through :func:`add_arguments` and :func:`setup`).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Dict, NamedTuple, Optional

from infinite_width import datasets, optim
from infinite_width.architectures import Architecture, mlp
from infinite_width.problem import Problem
from infinite_width.workflow import compare, sweep
from infinite_width.workflow.plotting import demo_figure

__all__ = ["DEFAULTS", "QUICK", "demo_jobs", "limit_pairs", "add_arguments", "apply_quick", "setup", "run"]

#: Default options of the demo (``add_arguments`` takes overrides).
DEFAULTS = dict(
    dataset="digits", data_dir=None, n_train=300, n_test=300, steps=200, widths=[64, 256, 1024], depth=2,
    samples=16384, replicas=4, seeds=2, sgd_lr=2.0, adam_lr=0.02, seed=0, out=os.path.join("outputs", "demo"),
)
#: The sizes ``--quick`` sets (a few seconds of compute).
QUICK = dict(n_train=40, n_test=40, steps=12, widths=[16, 64], samples=512, replicas=2, seeds=2, depth=1)


def demo_jobs(problem, arch, *, steps, widths, samples, replicas, seeds, sgd_lr, adam_lr, key=0):
    """The demo's solves as sweep jobs: ``{name: solve arguments}`` (see the module docstring)."""
    common = dict(problem=problem, arch=arch, steps=steps, key=key)
    sgd, adam = optim.sgd(sgd_lr), optim.adam(adam_lr, b1=0.9, b2=0.99)
    jobs = {
        "nngp_posterior": dict(problem=problem, arch=arch, regime="nngp_posterior", ridge=1e-4),
        "ntk_ridge": dict(problem=problem, arch=arch, regime="ntk_ridge", ridge=1e-4),
    }
    for train in ("all", "readout"):
        jobs[f"sgd-{train}-inf"] = dict(common, optimizer=sgd, train=train)
        jobs[f"adam-{train}-inf"] = dict(common, optimizer=adam, train=train, samples=samples, replicas=replicas)
        for width in widths:
            for name, optimizer in (("sgd", sgd), ("adam", adam)):
                jobs[f"{name}-{train}-w{width}"] = dict(common, optimizer=optimizer, train=train, width=width,
                                                         seeds=seeds)
    return jobs


def limit_pairs(names):
    """``(finite job, its limit)`` name pairs of :func:`demo_jobs`: same optimizer and trained layers, width inf."""
    return [(name, name.rsplit("-", 1)[0] + "-inf") for name in names if "-w" in name]


def add_arguments(parser: argparse.ArgumentParser, defaults: Optional[Dict] = None) -> argparse.ArgumentParser:
    """Add the demo's options to ``parser``; ``defaults`` override :data:`DEFAULTS`. Returns ``parser``."""
    values = {**DEFAULTS, **(defaults or {})}
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown demo options {sorted(unknown)}; expected some of {sorted(DEFAULTS)}")
    option = parser.add_argument
    option("--dataset", default=values["dataset"],
           help="digits (embedded), mnist, fashion_mnist or cifar10 (default %(default)s)")
    option("--data-dir", default=values["data_dir"], help="folder of the data files (default: $INFINITE_WIDTH_DATA)")
    option("--n-train", type=int, default=values["n_train"], help="class-balanced training subset (default %(default)s)")
    option("--n-test", type=int, default=values["n_test"], help="class-balanced test subset (default %(default)s)")
    option("--steps", type=int, default=values["steps"], help="optimizer steps (default %(default)s)")
    option("--widths", type=int, nargs="+", default=values["widths"], help="finite widths (default %(default)s)")
    option("--depth", type=int, default=values["depth"], help="hidden layers of the MLP (default %(default)s)")
    option("--samples", type=int, default=values["samples"], help="Monte Carlo samples of the Adam-like limit")
    option("--replicas", type=int, default=values["replicas"], help="independent replicas (error bars) of the limit")
    option("--seeds", type=int, default=values["seeds"], help="finite networks per width (spread)")
    option("--sgd-lr", type=float, default=values["sgd_lr"], help="SGD learning rate (default %(default)s)")
    option("--adam-lr", type=float, default=values["adam_lr"], help="Adam learning rate (default %(default)s)")
    option("--seed", type=int, default=values["seed"], help="the key of every solve and the data subset")
    option("--out", default=values["out"], help="output folder (default %(default)s)")
    option("--quick", action="store_true", help="tiny sizes, for a smoke test")
    option("--no-progress", action="store_true", help="no progress bars")
    return parser


def apply_quick(args: argparse.Namespace, quick: Optional[Dict] = None) -> argparse.Namespace:
    """With ``--quick``, set the sizes of ``quick`` (default :data:`QUICK`) in ``args``; returns ``args``."""
    if args.quick:
        for name, value in (QUICK if quick is None else quick).items():
            setattr(args, name, value)
    return args


class DemoSetup(NamedTuple):
    """What the options describe: the data set, the problem, the MLP and the sweep jobs."""

    data: datasets.Dataset
    problem: Problem
    arch: Architecture
    jobs: Dict[str, dict]


def setup(args: argparse.Namespace) -> DemoSetup:
    """Load the data and build the problem, the MLP and :func:`demo_jobs` from options of :func:`add_arguments`."""
    data = datasets.load(args.dataset, args.data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    problem = Problem.from_dataset(data, loss="mse")
    arch = mlp(depth=args.depth, activation="relu", W_std=math.sqrt(2.0), b_std=0.1, out_dim=problem.out_dim)
    jobs = demo_jobs(
        problem, arch, steps=args.steps, widths=args.widths, samples=args.samples, replicas=args.replicas,
        seeds=args.seeds, sgd_lr=args.sgd_lr, adam_lr=args.adam_lr, key=args.seed,
    )
    return DemoSetup(data, problem, arch, jobs)


def run(args: argparse.Namespace) -> int:
    """The demo with options of :func:`add_arguments` (``--quick`` applied here); returns the exit status 0."""
    apply_quick(args)
    start = time.perf_counter()
    _, problem, arch, jobs = setup(args)
    print(f"{problem.describe()}; {arch.name}; {len(jobs)} solves -> {args.out}", flush=True)
    results = sweep(jobs, os.path.join(args.out, "results"), progress=not args.no_progress)
    table = compare(results, pairs=limit_pairs(results))
    table.to_csv(os.path.join(args.out, "comparison.csv"))
    table.to_csv(os.path.join(args.out, "distances.csv"), distances=True)
    figure_path = os.path.join(args.out, "demo.png")
    demo_figure(results, path=figure_path)
    print(table)
    print(f"\nwrote {figure_path} and comparison.csv ({time.perf_counter() - start:.1f} s)")
    return 0
