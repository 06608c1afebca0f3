"""Infinite-width models that work? Sernau (2024, arXiv:2406.18800): learning curves of every regime on one data set.

Finite networks trained as practitioners train them (cross-entropy, optax
Adam defaults, standard parametrization, minibatches of 128; MSE beside it;
also linearized, readout only, centred, and with SGD) against NTK and NNGP
descent, NTK ridge, the NNGP posterior and the Adam-like infinite-width limit,
at several training-set sizes N, with an MLP (``--arch mlp2``) or a conv net
with global average pooling (``--arch conv2``, ``conv3``, ``myrtle5``; images
average-pooled by ``--conv-pool``). Every trained regime is stopped early on
one validation split with a patience, every grid brackets its optimum, and the
script prints a verdict on each of the paper's three claims at every N. See
`infinite_width.experiments.sernau`.

Writes to ``--out`` (resumable: run the same command again after an
interruption and finished runs are read back, not recomputed): ``runs/``
(one record per training run), ``kernels/`` (conv kernels), ``results.json``,
``results.csv``, ``table.md`` and the figures ``sernau_2024_accuracy``,
``_learning_curves``, ``_claim1``, ``_claim2``, ``_claim3`` (PDF and PNG).

Usage (from the repository root)::

    python paper_figures/sernau_2024.py --dataset mnist --data-dir ../shared/datasets --plan   # jobs and runtime
    python paper_figures/sernau_2024.py --dataset mnist --data-dir ../shared/datasets --out outputs/sernau/mnist-mlp2
    python paper_figures/sernau_2024.py --dataset cifar10 --arch conv2 --out outputs/sernau/cifar10-conv2
    python paper_figures/sernau_2024.py --combine outputs/sernau/mnist-mlp2 outputs/sernau/cifar10-conv2 --out outputs/sernau
    python paper_figures/sernau_2024.py --quick --out /tmp/sernau_quick     # digits, tiny sizes

Data: ``--data-dir``, or the environment variable ``INFINITE_WIDTH_DATA``
(digits needs no files).
"""

from __future__ import annotations

import sys
from pathlib import Path

from infinite_width.experiments import figures, scripts, sernau
from infinite_width.experiments.tuning import Budget, Grid

#: Sizes per data set. MLPs: the learning curve to 10,000 points (CIFAR-10 to 9,000: the largest class-balanced
#: subset of the one training batch this machine has is 9,370). Conv nets: the closed-form kernels cost about a
#: millisecond per pair of 8x8 images here, so one size with the images pooled to 8x8 (CIFAR-10) or 7x7 (MNIST).
SIZES = {
    "mnist": dict(n_train=(1000, 2000, 5000, 10000), n_validation=1000, n_test=2000, conv_n_train=(2000,),
                  conv_n_test=1000, conv_pool=4),
    "fashion_mnist": dict(n_train=(1000, 2000, 5000, 10000), n_validation=1000, n_test=2000, conv_n_train=(2000,),
                          conv_n_test=1000, conv_pool=4),
    "cifar10": dict(n_train=(1000, 2000, 5000, 9000), n_validation=1000, n_test=2000, conv_n_train=(2000,),
                    conv_n_test=1000, conv_pool=4),
    "digits": dict(n_train=(200, 500, 1000), n_validation=100, n_test=260, conv_n_train=(500,), conv_n_test=260,
                   conv_pool=1),
}
QUICK = dict(dataset="digits", n_train=(60, 120), n_validation=40, n_test=60, conv_n_train=(60,), conv_n_test=60,
             conv_pool=2, widths=[16], seeds=2, samples=64, replicas=2, batch_size=20, initial_epochs=3, patience=1,
             max_epochs=3)
#: ``--quick``: one value per trained regime and one budget (a run compiles once per setting and budget, which
#: is most of a quick run's time; tests/test_sernau.py checks the extensions and doublings), two ridges.
QUICK_GRIDS = {"adam": Grid((1e-2,), 3.0, 1e-2, 1e-2), "sgd": Grid((0.3,), 3.0, 0.3, 0.3),
               "fraction": Grid((1.0,), 2.0, 1.0, 1.0), "ridge": Grid((1e-3, 1e-1), 10.0, 1e-4, 1.0)}
_QUICK_BOOTSTRAP = 200


def _quick_grid(regime: sernau.Regime) -> Grid:
    if regime.kind == "kernel_ridge":
        return QUICK_GRIDS["ridge"]
    if regime.kind == "kernel_descent":
        return QUICK_GRIDS["fraction"]
    return QUICK_GRIDS[regime.optimizer]


def parse_args(argv=None):
    parser = scripts.parser(__doc__.split("\n\n")[0], SIZES, "digits at tiny sizes, every regime: about 75 s of CPU "
                            "time on a 2-core machine (minutes of wall time when it is shared)")
    parser.add_argument("--arch", default="mlp2", choices=sorted(sernau.ARCHITECTURES),
                        help="mlp2, or a conv net with global average pooling (default: mlp2)")
    parser.add_argument("--widths", type=int, nargs="+", help="finite widths (channels for conv nets; default: "
                        + ", ".join(f"{' '.join(map(str, e.widths))} ({e.name})" for e in sernau.ARCHITECTURES.values())
                        + ")")
    parser.add_argument("--seeds", type=int, default=3, help="finite networks per width and setting (default: 3)")
    parser.add_argument("--regimes", nargs="+", default=[r.name for r in sernau.REGIMES],
                        choices=[r.name for r in sernau.REGIMES], help="default: all")
    parser.add_argument("--losses", nargs="+", default=list(sernau.LOSSES), choices=list(sernau.LOSSES),
                        help="training losses of the network regimes (default: both)")
    parser.add_argument("--samples", type=int, default=4096, help="Monte Carlo samples of the limit (default: 4096)")
    parser.add_argument("--replicas", type=int, default=4, help="replicas of the limit (default: 4)")
    defaults = Budget()
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help=f"minibatch of every trained regime (default: {defaults.batch_size})")
    parser.add_argument("--initial-epochs", type=int, default=defaults.initial_epochs,
                        help=f"epochs of a first run (default: {defaults.initial_epochs})")
    parser.add_argument("--patience", type=int, default=defaults.patience,
                        help=f"epochs without a better validation score that end a run (default: {defaults.patience})")
    parser.add_argument("--max-epochs", type=int, default=defaults.max_epochs,
                        help=f"most epochs of a run; doubling stops there (default: {defaults.max_epochs})")
    parser.add_argument("--plan", action="store_true",
                        help="print the jobs and their estimated runtime from short calibration runs, then stop")
    parser.add_argument("--finished-only", action="store_true",
                        help="compute nothing: report the runs already finished (a run still going)")
    parser.add_argument("--combine", nargs="+", metavar="DIR",
                        help="make the figures of several finished runs (their --out folders) into --out, then stop")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--combine" in argv:
        args = parser.parse_args(argv)
        if args.out is None:
            parser.error("--combine needs --out (the folder of the combined figures)")
        return args
    args = scripts.finish(parser, parser.parse_args(argv), SIZES, QUICK, "sernau_2024")
    entry = sernau.ARCHITECTURES[args.arch]
    if args.widths is None:
        args.widths = list(entry.widths)
    if entry.images:
        args.n_train, args.n_test, args.pool = args.conv_n_train, args.conv_n_test, args.conv_pool
    else:
        args.pool = 1
    return args


def config_of(args) -> sernau.Config:
    """The run's [`Config`][infinite_width.experiments.sernau.Config] from the parsed arguments."""
    grids = tuple((r.name, _quick_grid(r)) for r in sernau.REGIMES) if args.quick else ()
    budget = Budget(batch_size=args.batch_size, initial_epochs=args.initial_epochs, patience=args.patience,
                    max_epochs=args.max_epochs)
    return sernau.Config(arch=args.arch, n_train=tuple(args.n_train), widths=tuple(args.widths), seeds=args.seeds,
                         budget=budget, samples=args.samples, replicas=args.replicas, regimes=tuple(args.regimes),
                         losses=tuple(args.losses), grids=grids, seed=args.seed,
                         **({"bootstrap": _QUICK_BOOTSTRAP} if args.quick else {}))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.combine:
        sets = [(results["title"], results) for results in map(sernau.read_results, args.combine)]
        for stem, figure in sernau.figures_of(sets).items():
            print("wrote", ", ".join(str(p) for p in figures.save(figure, Path(args.out, stem))))
        return 0
    try:
        config = config_of(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    entry = sernau.ARCHITECTURES[args.arch]
    splits = sernau.load_splits(args.dataset, args.data_dir, config.n_train, n_validation=args.n_validation,
                                n_test=args.n_test, images=entry.images, pool=args.pool, seed=args.seed)
    if args.plan:
        sernau.plan(splits, config, args.out, progress=not args.no_progress)
        return 0
    title = f"{args.dataset}, {args.arch}" + (f", images pooled x{args.pool}" if args.pool > 1 else "")
    sernau.report(splits, config, args.out, title=title, progress=not args.no_progress,
                  finished_only=args.finished_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
