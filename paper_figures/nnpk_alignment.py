"""Is a trained network's structure present at initialization? (Amid et al. 2022, claim 2) on one data set.

Trains ReLU MLPs (widths 64, 256, 1024) and conv nets (``conv2``, widths 16
and 64) with plain Adam, several seeds each, and compares on held-out test
points the centred kernel alignment (CKA) of their output and
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
    python paper_figures/nnpk_alignment.py --quick --out /tmp/alignment_quick   # digits, tiny sizes

Data: ``--data-dir``, or the environment variable ``INFINITE_WIDTH_DATA``
(digits needs no files).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import infinite_width as iw
from infinite_width.experiments import figures, nnpk_alignment, nnpk_ablation

SIZES = {
    "mnist": dict(n_train=1000, n_test=500, pool=4),
    "fashion_mnist": dict(n_train=1000, n_test=500, pool=4),
    "cifar10": dict(n_train=1000, n_test=500, pool=4),
    "digits": dict(n_train=1000, n_test=360, pool=1),
}
QUICK = dict(dataset="digits", n_train=80, n_test=40, pool=1, seeds=2, steps=20, networks=8,
             models=[("mlp2", 16), ("conv2", 4)])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=sorted(SIZES))
    parser.add_argument("--data-dir", default=None, help="data folder (default: $INFINITE_WIDTH_DATA)")
    parser.add_argument("--out", default=None, help="output folder (default: outputs/nnpk_alignment/<dataset>)")
    parser.add_argument("--quick", action="store_true", help="digits, tiny networks and few steps (seconds)")
    for name in ("n_train", "n_test", "pool"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help="default: per data set")
    parser.add_argument("--seeds", type=int, default=3, help="trained networks per model")
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps (minibatches of 128)")
    parser.add_argument("--networks", type=int, default=1024, help="random networks of each NNPK")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per forward pass of the NNPK")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not args.quick and args.dataset not in iw.datasets.available(args.data_dir):
        parser.error(f"no {args.dataset} files: pass --data-dir or set the variable {iw.datasets.DATA_ENV_VAR}")
    args.models = list(nnpk_alignment.MODELS)
    sizes = dict(QUICK) if args.quick else {"dataset": args.dataset, **SIZES[args.dataset]}
    for name, value in sizes.items():
        if args.quick or getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.out is None:
        args.out = os.path.join("outputs", "nnpk_alignment", args.dataset)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data = iw.datasets.load(args.dataset, None if args.dataset == "digits" else args.data_dir,
                            n_train=args.n_train, n_test=args.n_test, seed=args.seed, flatten=False)
    pool = lambda x: nnpk_ablation.pool_images(x, args.pool)
    problem = iw.Problem(pool(data.x_train), data.y_train, pool(data.x_test), data.y_test,
                         name=f"{data.name} pooled x{args.pool}")
    records = nnpk_alignment.run(
        problem, args.out, models=args.models, seeds=args.seeds,
        training=nnpk_alignment.Training(steps=args.steps), held_out=data.n_test, networks=args.networks,
        seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
    )
    tables = "".join(
        f"CKA with the trained {target} kernel (mean ± std over {args.seeds} seeds):\n\n"
        + nnpk_alignment.markdown_table(records, target) + "\n"
        for target in nnpk_alignment.TARGETS
    )
    Path(args.out, "table.md").write_text(tables)
    figure = nnpk_alignment.figure(records, title=f"Structure at initialization, {args.dataset}")
    paths = figures.save(figure, Path(args.out, "alignment"))
    print(tables)
    print("wrote", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
