"""Is a trained network's structure present at initialization? (Amid et al. 2022, claim 2) on one data set.

Trains ReLU MLPs (widths 64, 256, 1024) and conv nets (``conv2``, widths 16
and 64) with plain Adam, several seeds each, and compares on held-out test
points the centered kernel alignment (CKA) of their output and
last-hidden-layer feature kernels with the NNPK of the same architecture at
initialization, and with baselines: the closed-form NNGP / CNN-GP, the NNPK of
a mismatched architecture or activation, the input kernel and the network's
own kernel at initialization; plus the kernel-target alignment of every
kernel. See :mod:`infinite_width.experiments.nnpk_alignment`.

Images are average-pooled by ``--pool`` (the conv nets and the CNN-GP are the
cost), and the MLPs see them flattened.

Writes to ``--out`` (resumable per trained model): ``points/``, ``kernels/``,
``summary.json``, ``summary.csv``, ``table.md`` and the figure
``alignment.pdf``/``.png``.

Usage (from the repository root)::

    python paper_figures/nnpk_alignment.py --dataset mnist --data-dir ../shared/datasets --out outputs/nnpk_alignment/mnist
    python paper_figures/nnpk_alignment.py --dataset mnist --models mlp2:64 conv2:16 --networks 256   # less CPU
    python paper_figures/nnpk_alignment.py --quick --out /tmp/alignment_quick   # digits, tiny sizes

Data: ``--data-dir``, or the environment variable ``INFINITE_WIDTH_DATA``
(digits needs no files).
"""

from __future__ import annotations

import argparse
import sys

import infinite_width as iw
from infinite_width.experiments import images, nnpk_alignment, scripts

SIZES = {
    "mnist": dict(n_train=1000, n_test=500, pool=4),
    "fashion_mnist": dict(n_train=1000, n_test=500, pool=4),
    "cifar10": dict(n_train=1000, n_test=500, pool=4),
    "digits": dict(n_train=1000, n_test=360, pool=1),
}
QUICK = dict(dataset="digits", n_train=80, n_test=40, pool=1, seeds=2, steps=20, networks=8,
             models=[("mlp2", 16), ("conv2", 4)])


def _model(text: str):
    """``"mlp2:256"`` -> ``("mlp2", 256)``."""
    arch, _, width = text.partition(":")
    if arch not in nnpk_alignment.ARCHITECTURES or not width.isdigit() or int(width) < 1:
        raise argparse.ArgumentTypeError(
            f"expected ARCH:WIDTH with ARCH one of {nnpk_alignment.ARCHITECTURES} and WIDTH >= 1, got {text!r}")
    return arch, int(width)


def parse_args(argv=None):
    parser = scripts.parser(__doc__.split("\n\n")[0], SIZES,
                            "digits, tiny networks and few steps: about 20 s of CPU time on a 2-core machine")
    parser.add_argument("--seeds", type=int, default=3, help="trained networks per model")
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps (minibatches of 128)")
    parser.add_argument("--networks", type=int, default=1024, help="random networks of each NNPK")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per forward pass of the NNPK")
    parser.add_argument("--models", nargs="+", type=_model, default=list(nnpk_alignment.MODELS),
                        metavar="ARCH:WIDTH", help="trained models, e.g. mlp2:256 conv2:16 (default: "
                        + " ".join(f"{arch}:{width}" for arch, width in nnpk_alignment.MODELS) + ")")
    return scripts.finish(parser, parser.parse_args(argv), SIZES, QUICK, "nnpk_alignment")


def main(argv=None) -> int:
    args = parse_args(argv)
    data = iw.datasets.load(args.dataset, args.data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                            flatten=False)
    records = nnpk_alignment.run(
        images.pooled_problem(data, args.pool), args.out, models=args.models, seeds=args.seeds,
        training=nnpk_alignment.Training(steps=args.steps), held_out=data.n_test, networks=args.networks,
        seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
    )
    tables = "".join(
        f"CKA with the trained {target} kernel (mean ± std over {args.seeds} seeds):\n\n"
        + nnpk_alignment.markdown_table(records, target) + "\n"
        for target in nnpk_alignment.TARGETS
    )
    figure = nnpk_alignment.figure(records, title=f"Structure at initialization, {args.dataset}")
    scripts.write_outputs(args.out, tables, figure, "alignment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
