"""A small NNPK ablation on MNIST (Amid, Anil, Kotlowski & Warmuth 2022, Neural Network Prior Kernel).

Kernel ridge regression with the Monte Carlo NNPK of random 2-hidden-layer
MLPs (width 512) over activations, initialisations and the number m of
networks, with the NNGP and NTK of the same architecture as references.
Results are written (resumably) by :func:`infinite_width.experiments.nnpk_ablation.run`: one
JSON per grid point, ``summary.json``/``summary.csv`` and ``ablation.png``
in ``--out``; the Markdown table is printed.

Usage (from the repository root; about 1.5 minutes on 2 CPU cores, 7 with m = 1024 added)::

    python paper_figures/nnpk_ablation.py --out results/nnpk_ablation

Data: ``../shared/datasets`` or ``$INFINITE_WIDTH_DATA`` (MNIST idx files).
"""

from __future__ import annotations

import argparse
import os

from infinite_width import datasets
from infinite_width.experiments import nnpk_ablation
from infinite_width.problem import Problem


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/nnpk_ablation")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--activations", nargs="+", default=["relu", "erf", "sin"])
    parser.add_argument("--inits", nargs="+", default=["gaussian", "orthogonal", "uniform"])
    parser.add_argument("--networks", nargs="+", type=int, default=[16, 64, 256], help="random networks per NNPK")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--ridge", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get(datasets.DATA_ENV_VAR, "../shared/datasets"))
    args = parser.parse_args()

    data = datasets.load("mnist", args.data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    problem = Problem.from_dataset(data)
    grid = {
        "activation": args.activations,
        "init": args.inits,
        "networks": args.networks,
        "width": [args.width],
        "depth": [args.depth],
    }
    rows = nnpk_ablation.run(problem, grid, args.out, seed=args.seed, ridge=args.ridge, batch_size=500)
    print(nnpk_ablation.markdown_table(rows))


if __name__ == "__main__":
    main()
