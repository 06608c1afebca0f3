"""Infinite-width models that work? Sernau (2024, arXiv:2406.18800), reproduced on one data set.

Finite MLPs trained as a practitioner trains them (Adam with one global rate,
standard parametrization; also linearized, readout only, and with SGD) at
several widths, against NTK/NNGP descent, NTK ridge, the NNGP posterior and
the Adam-like infinite-width limit (all layers and readout only). Every
regime is tuned by the same rule (learning rate or ridge, and the stopping
step, on a validation split of the training set), retrained on the whole
training set and evaluated once on the test set; the script prints a verdict
on each of the paper's three claims. See :mod:`infinite_width.experiments.sernau`.

Writes to ``--out`` (resumable: run the same command again after an
interruption and finished solves are read back, not recomputed):
``tuning/`` and ``final/`` (one trajectory per solve), ``results.json``
(table, configuration, verdicts), ``results.csv``, ``table.md`` and the
figure ``sernau_2024.pdf``/``.png``.

Usage (from the repository root)::

    python paper_figures/sernau_2024.py --dataset mnist --data-dir ../shared/datasets --out outputs/sernau/mnist
    python paper_figures/sernau_2024.py --quick --out /tmp/sernau_quick     # digits, tiny sizes
    python paper_figures/sernau_2024.py --dataset mnist --out outputs/sernau/mnist --finished-only  # report so far

Data: ``--data-dir``, or the environment variable ``INFINITE_WIDTH_DATA``
(digits needs no files).
"""

from __future__ import annotations

import sys

from infinite_width.experiments import scripts, sernau

#: Sizes per data set (docs/REPRODUCTION.md says what bounded them).
SIZES = {
    "mnist": dict(n_train=2000, n_test=2000, validation=400, steps=200, seeds=2, samples=4096, replicas=4),
    "fashion_mnist": dict(n_train=2000, n_test=2000, validation=400, steps=200, seeds=2, samples=4096, replicas=4),
    "cifar10": dict(n_train=2000, n_test=2000, validation=400, steps=200, seeds=2, samples=4096, replicas=4),
    "digits": dict(n_train=1000, n_test=360, validation=200, steps=200, seeds=2, samples=2048, replicas=4),
}
#: The tuning grids a run may replace (a larger grid where the table's "best at" column says "grid max").
GRIDS = dict(adam_lrs="Adam learning rates of finite networks", sgd_lrs="SGD learning rates of finite networks",
             limit_adam_lrs="Adam learning rates of the Adam-like limit (per-group units)")
QUICK = dict(dataset="digits", n_train=60, n_test=40, validation=20, steps=8, seeds=2, samples=64, replicas=2,
             widths=[16, 32], depths=[1])


def parse_args(argv=None):
    parser = scripts.parser(__doc__.split("\n\n")[0], SIZES, "digits, tiny sizes (seconds)")
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 512], help="finite widths")
    parser.add_argument("--depths", type=int, nargs="+", default=[2], help="hidden layers (one panel each)")
    parser.add_argument("--regimes", nargs="+", default=list(sernau.REGIMES), choices=list(sernau.REGIMES))
    for option, what in GRIDS.items():
        parser.add_argument(f"--{option.replace('_', '-')}", type=float, nargs="+",
                            help=f"{what} (default: {' '.join(map(str, getattr(sernau.Config, option)))})")
    parser.add_argument("--finished-only", action="store_true",
                        help="compute nothing: report the regimes whose solves are finished (a run still going)")
    return scripts.finish(parser, parser.parse_args(argv), SIZES, QUICK, "sernau_2024")


def config_of(args) -> sernau.Config:
    """The run's :class:`~infinite_width.experiments.sernau.Config`: sizes from ``args``, grids given on the command
    line, else the quick grids for ``--quick``, else the defaults."""
    grids = dict(sernau.QUICK_GRIDS) if args.quick else {}
    grids.update({option: tuple(getattr(args, option)) for option in GRIDS if getattr(args, option) is not None})
    return sernau.Config(depths=tuple(args.depths), widths=tuple(args.widths), seeds=args.seeds, steps=args.steps,
                         validation=args.validation, samples=args.samples, replicas=args.replicas,
                         regimes=tuple(args.regimes), seed=args.seed, **grids)


def main(argv=None) -> int:
    args = parse_args(argv)
    config = config_of(args)
    problem = sernau.load_problem(args.dataset, args.data_dir, args.n_train, args.n_test, args.seed)
    sernau.report(problem, config, args.out, progress=not args.no_progress, finished_only=args.finished_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
