"""Random networks as feature extractors (Amid et al. 2022, claim 1): the NNPK ablation on one data set.

Kernel ridge regression with the Monte Carlo Neural Network Prior Kernel of
m random networks, m = 1, 2, 4, ..., up to 1,024 from one streaming pass per
configuration, one factor at a time around a base configuration:

* MLPs (flattened images): base ``mlp2``, ReLU, Gaussian init, width 512;
  depth 1-4; inits gaussian/orthogonal/uniform; activations relu, erf, gelu,
  sin and tanh (no closed form); widths 64-1024;
* conv nets (images average-pooled by ``--conv-pool``, on a smaller subset:
  a conv net costs far more per network, and its closed-form CNN-GP grows
  with the square of the pixel count): base ``conv2`` (two 3x3 convolutions,
  global average pooling), ReLU, Gaussian, width 64; ``myrtle5``,
  ``conv2-maxpool`` (no closed form) and ``conv2-layernorm``.

The ridge is chosen on a validation split of the training set; error bars
are bootstrap standard errors over test points; the closed-form NNGP / CNN-GP
is beside every architecture that has one. See
:mod:`infinite_width.experiments.nnpk_ablation` for the details.

Writes to ``--out`` (resumable: run the same command again after an
interruption and finished configurations are read back, not recomputed):
``points/`` and ``references/`` (one JSON each), ``summary.json``,
``summary.csv``, ``table.md`` and the figure ``ablation.pdf``/``.png``.

Usage (from the repository root)::

    python paper_figures/nnpk_ablation.py --dataset mnist --data-dir ../shared/datasets --out outputs/nnpk/mnist
    python paper_figures/nnpk_ablation.py --dataset cifar10 --grid reduced --max-networks 256   # less CPU
    python paper_figures/nnpk_ablation.py --quick --out /tmp/nnpk_quick     # digits, tiny sizes

``--grid reduced`` drops some variants of each factor (:data:`REDUCED_VARIATIONS`) and
``--max-networks`` stops every m-curve earlier: the cost of a configuration grows with its m.

Data: ``--data-dir``, or the environment variable ``INFINITE_WIDTH_DATA``
(digits needs no files).
"""

from __future__ import annotations

import dataclasses
import sys

import infinite_width as iw
from infinite_width.experiments import images, nnpk_ablation, scripts
from infinite_width.experiments.nnpk_ablation import Config, one_factor_grid

#: Sizes per data set, chosen so that each runs in about 30 minutes on an idle 2-core CPU (docs/REPRODUCTION.md).
SIZES = {
    "mnist": dict(n_train=2000, n_test=1000, conv_n_train=400, conv_n_test=200, conv_pool=4),
    "fashion_mnist": dict(n_train=2000, n_test=1000, conv_n_train=400, conv_n_test=200, conv_pool=4),
    "cifar10": dict(n_train=1000, n_test=500, conv_n_train=300, conv_n_test=200, conv_pool=4),
    "digits": dict(n_train=1000, n_test=360, conv_n_train=400, conv_n_test=200, conv_pool=1),
}
QUICK = dict(dataset="digits", n_train=100, n_test=50, conv_n_train=60, conv_n_test=40, conv_pool=1)


#: One factor at a time around each family's base (the full grid): ``{family: (base, variations)}``.
FULL_GRID = {
    "mlp": (
        Config("mlp2", width=512, networks=1024),
        {
            "arch": ["mlp1", "mlp3", "mlp4"],
            "init": ["orthogonal", "uniform"],
            "activation": ["erf", "gelu", "sin", "tanh"],
            "width": [64, 128, 256, 1024],
        },
    ),
    "conv": (Config("conv2", width=64, networks=1024), {"arch": ["myrtle5", "conv2-maxpool", "conv2-layernorm"]}),
}
#: The variations of ``--grid reduced``: the ends of the depth and width ranges, every init, the activations
#: with and without a closed form but gelu, and the conv variants but the costly Myrtle network.
REDUCED_VARIATIONS = {
    "mlp": {"arch": ["mlp1", "mlp4"], "init": ["orthogonal", "uniform"], "activation": ["erf", "sin", "tanh"],
            "width": [64, 1024]},
    "conv": {"arch": ["conv2-maxpool", "conv2-layernorm"]},
}
#: ``--quick``: one variant per family, one of them without a closed form (the reduced grid is the same).
QUICK_GRID = {
    "mlp": (Config("mlp2", width=16, networks=4), {"activation": ["tanh"]}),
    "conv": (Config("conv2", width=4, networks=4), {"arch": ["conv2-maxpool"]}),
}


def grids(quick: bool = False, grid: str = "full", max_networks: int = None):
    """The configurations: one factor at a time around each family's base.

    ``grid="reduced"`` keeps :data:`REDUCED_VARIATIONS` of the full grid;
    ``max_networks`` caps every configuration's largest m (its m-curve stops there).
    """
    if grid not in ("full", "reduced"):
        raise ValueError(f"unknown grid {grid!r}; expected 'full' or 'reduced'")
    if max_networks is not None and (isinstance(max_networks, bool) or not isinstance(max_networks, int)
                                     or max_networks < 1):
        raise ValueError(f"max_networks must be an integer >= 1, got {max_networks!r}")
    configs = []
    for family, (base, variations) in (QUICK_GRID if quick else FULL_GRID).items():
        if grid == "reduced" and not quick:
            variations = REDUCED_VARIATIONS[family]
        if max_networks is not None:
            base = dataclasses.replace(base, networks=min(base.networks, max_networks))
        configs += one_factor_grid(base, variations)
    return configs


def parse_args(argv=None):
    parser = scripts.parser(__doc__.split("\n\n")[0], SIZES,
                            "digits, tiny subsets and networks: about 20 s of CPU time on a 2-core machine")
    parser.add_argument("--families", nargs="+", default=list(nnpk_ablation.FAMILIES),
                        choices=list(nnpk_ablation.FAMILIES))
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per forward pass")
    parser.add_argument("--grid", default="full", choices=["full", "reduced"],
                        help="'reduced': fewer variants per factor (REDUCED_VARIATIONS)")
    parser.add_argument("--max-networks", type=int, default=None,
                        help="cap on every configuration's largest number of networks m (default: 1024)")
    parser.add_argument("--finished-only", action="store_true",
                        help="compute nothing: table and figure of the configurations already in --out")
    args = parser.parse_args(argv)
    if args.max_networks is not None and args.max_networks < 1:
        parser.error(f"--max-networks must be >= 1, got {args.max_networks}")
    return scripts.finish(parser, args, SIZES, QUICK, "nnpk_ablation")


def problems(args):
    """The MLP problem (flattened images) and the conv problem (pooled NHWC images, a smaller subset)."""
    out = {}
    if "mlp" in args.families:
        data = iw.datasets.load(args.dataset, args.data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
        out["mlp"] = iw.Problem.from_dataset(data)
    if "conv" in args.families:
        data = iw.datasets.load(args.dataset, args.data_dir, n_train=args.conv_n_train, n_test=args.conv_n_test,
                                seed=args.seed, flatten=False)
        out["conv"] = images.pooled_problem(data, args.conv_pool)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    configs = [c for c in grids(args.quick, args.grid, args.max_networks) if c.family in args.families]
    records = nnpk_ablation.run(problems(args), configs, args.out, seed=args.seed, batch_size=args.batch_size,
                                progress=not args.no_progress, finished_only=args.finished_only)
    figure = nnpk_ablation.figure(records, title=f"NNPK kernel ridge regression, {args.dataset}")
    scripts.write_outputs(args.out, nnpk_ablation.markdown_table(records), figure, "ablation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
