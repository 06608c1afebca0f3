"""Command line: ``python -m infinite_width demo``.

The demo puts every regime side by side on one data set (scikit-learn's
digits by default, no download): NTK and NNGP gradient descent, the Adam-like
limit, finite networks trained with SGD and Adam at a few widths (each with
all layers and with the readout only), and the NNGP posterior and NTK ridge
baselines. It prints the comparison table and writes to ``--out``:

* ``results/<job>.npz``: one trajectory per solve (a resumable sweep: run
  the same command again after an interruption and finished solves are
  loaded, not recomputed);
* ``comparison.csv`` and ``distances.csv``: the table as CSV;
* ``demo.png``: learning curves and test accuracy against width.

``--quick`` shrinks everything for a smoke test (a few seconds of compute).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Optional, Sequence

__all__ = ["main", "demo_jobs", "limit_pairs"]

_QUICK = dict(n_train=40, n_test=40, steps=12, widths=[16, 64], samples=512, replicas=2, seeds=2, depth=1)


def demo_jobs(problem, arch, *, steps, widths, samples, replicas, seeds, sgd_lr, adam_lr, key=0):
    """The demo's solves as sweep jobs: ``{name: solve arguments}`` (see the module docstring)."""
    from infinite_width import optim

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infinite_width", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="compare every regime on one data set", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--dataset", default="digits", help="digits (default, embedded), mnist, fashion_mnist, cifar10")
    demo.add_argument("--data-dir", default=None, help="folder of the data files (default: $INFINITE_WIDTH_DATA)")
    demo.add_argument("--n-train", type=int, default=300, help="class-balanced training subset (default 300)")
    demo.add_argument("--n-test", type=int, default=300, help="class-balanced test subset (default 300)")
    demo.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    demo.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024], help="finite widths")
    demo.add_argument("--depth", type=int, default=2, help="hidden layers of the MLP (default 2)")
    demo.add_argument("--samples", type=int, default=16384, help="Monte Carlo samples of the Adam-like limit")
    demo.add_argument("--replicas", type=int, default=4, help="independent replicas (error bars) of the limit")
    demo.add_argument("--seeds", type=int, default=2, help="finite networks per width (spread)")
    demo.add_argument("--sgd-lr", type=float, default=2.0, help="SGD learning rate (default 2.0)")
    demo.add_argument("--adam-lr", type=float, default=0.02, help="Adam learning rate (default 0.02)")
    demo.add_argument("--seed", type=int, default=0, help="the key of every solve and the data subset")
    demo.add_argument("--out", default=os.path.join("outputs", "demo"), help="output folder (default outputs/demo)")
    demo.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _demo(args) -> int:
    from infinite_width import datasets, mlp
    from infinite_width.compare import compare
    from infinite_width.plotting import demo_figure
    from infinite_width.problem import Problem
    from infinite_width.sweep import sweep

    if args.quick:
        for name, value in _QUICK.items():
            setattr(args, name, value)
    start = time.perf_counter()
    data = datasets.load(args.dataset, args.data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    problem = Problem.from_dataset(data, loss="mse")
    arch = mlp(depth=args.depth, activation="relu", W_std=math.sqrt(2.0), b_std=0.1, out_dim=problem.out_dim)
    jobs = demo_jobs(
        problem, arch, steps=args.steps, widths=args.widths, samples=args.samples, replicas=args.replicas,
        seeds=args.seeds, sgd_lr=args.sgd_lr, adam_lr=args.adam_lr, key=args.seed,
    )
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m infinite_width`` and the ``infinite-width`` script."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # argparse rejects unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
