"""Does an Adam-like limit close the gap between infinite and finite networks? (Sernau 2024)

Sernau (2024, arXiv:2406.18800) argues that infinite-width models lag finite
networks because of their optimizer (SGD), not because feature learning is
missing. This script puts the regimes side by side on one data set and one
MLP, each with all layers trained and with the readout only ("feature
learning disabled"):

* finite networks trained with SGD and with Adam at growing widths;
* their infinite-width limits: NTK / NNGP gradient descent for SGD, the
  Adam-like limit for Adam (horizontal lines);
* the NNGP posterior and NTK ridge baselines.

It writes ``adam_closes_the_gap.png`` (test accuracy against width, one panel
for ``train="all"`` and one for ``train="readout"``), ``comparison.csv`` and
every solve under ``results/`` (a resumable sweep: run the same command again
after an interruption and finished solves are loaded, not recomputed).

Usage (from the repository root)::

    python paper_figures/adam_closes_the_gap.py --data-dir ../shared/datasets --out outputs/adam_gap
    python paper_figures/adam_closes_the_gap.py --quick          # digits, tiny sizes (seconds)
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from matplotlib.figure import Figure

import infinite_width as iw
from infinite_width.__main__ import demo_jobs, limit_pairs
from infinite_width.plotting import accuracy_vs_width

QUICK = dict(dataset="digits", n_train=50, n_test=50, steps=10, widths=[16, 64], samples=512, replicas=2, seeds=2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", help="mnist (default), fashion_mnist, cifar10 or digits")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $INFINITE_WIDTH_DATA)")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=2, help="hidden layers of the MLP")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--samples", type=int, default=16384, help="Monte Carlo samples of the Adam-like limit")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3, help="finite networks per width")
    parser.add_argument("--sgd-lr", type=float, default=2.0)
    parser.add_argument("--adam-lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("outputs", "adam_closes_the_gap"))
    parser.add_argument("--quick", action="store_true", help="digits and tiny sizes, for a smoke test")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data = iw.datasets.load(args.dataset, args.data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    problem = iw.Problem.from_dataset(data, loss="mse")
    arch = iw.mlp(depth=args.depth, activation="relu", W_std=math.sqrt(2.0), b_std=0.1, out_dim=problem.out_dim)
    jobs = demo_jobs(
        problem, arch, steps=args.steps, widths=args.widths, samples=args.samples, replicas=args.replicas,
        seeds=args.seeds, sgd_lr=args.sgd_lr, adam_lr=args.adam_lr, key=args.seed,
    )
    results = iw.sweep(jobs, os.path.join(args.out, "results"), progress=not args.no_progress)

    figure = Figure(figsize=(12.0, 4.5), layout="constrained")
    baselines = [results["nngp_posterior"], results["ntk_ridge"]]
    for ax, train in zip(figure.subplots(1, 2), ("all", "readout")):
        members = [t for name, t in results.items() if f"-{train}-" in name] + baselines
        accuracy_vs_width(members, ax=ax)
        ax.set_title(f"{data.name}, {arch.name}: train={train!r}")
    figure_path = os.path.join(args.out, "adam_closes_the_gap.png")
    figure.savefig(figure_path, dpi=120)

    table = iw.compare(results, pairs=limit_pairs(results))
    table.to_csv(os.path.join(args.out, "comparison.csv"))
    print(table)
    print(f"\nwrote {figure_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
