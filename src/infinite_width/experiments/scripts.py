"""Command-line plumbing shared by the reproduction scripts (``paper_figures/nnpk_*.py``).

Every script takes ``--dataset``, ``--data-dir`` (default: the environment
variable ``INFINITE_WIDTH_DATA``; a missing folder stops the script with a
message naming it), ``--out`` (default ``outputs/<script>/<dataset>``),
``--quick`` (digits at tiny sizes), its per-data-set size options,
``--seed`` and ``--no-progress``; and writes its Markdown table and its
figure (PDF and PNG) next to its numbers.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, List, Mapping

import numpy as np

from infinite_width import datasets
from infinite_width.experiments import figures
from infinite_width.experiments.nnpk_ablation import pool_images
from infinite_width.problem import Problem

__all__ = ["parser", "finish", "pooled_problem", "write_outputs"]


def parser(description: str, sizes: Mapping[str, Mapping[str, int]], quick_help: str) -> argparse.ArgumentParser:
    """A parser with the common options and one integer option per key of the ``sizes`` of a data set.

    Args:
      description: the script's description.
      sizes: ``{data set: {size option: default}}``, the same options for every data set.
      quick_help: the help of ``--quick``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="mnist", choices=sorted(sizes))
    parser.add_argument("--data-dir", default=None, help=f"data folder (default: ${datasets.DATA_ENV_VAR})")
    parser.add_argument("--out", default=None, help="output folder (default: outputs/<script>/<dataset>)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    for name in next(iter(sizes.values())):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help="default: per data set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def finish(parser: argparse.ArgumentParser, args, sizes: Mapping[str, Mapping[str, int]], quick: Dict,
           script: str):
    """Check the data folder, fill the sizes (``quick`` overrides everything with ``--quick``), default ``--out``.

    Args:
      parser: the script's parser (its ``error`` reports a missing data folder).
      args: the parsed arguments; filled in place and returned.
      sizes: the per-data-set sizes, as for [`parser`][infinite_width.experiments.scripts.parser].
      quick: the options ``--quick`` sets.
      script: the script's name, for the default ``--out``.
    """
    if not args.quick and args.dataset not in datasets.available(args.data_dir):
        parser.error(f"no {args.dataset} files: pass --data-dir or set the variable {datasets.DATA_ENV_VAR}")
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    for name, value in sizes[args.dataset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.dataset == "digits":
        args.data_dir = None
    if args.out is None:
        args.out = os.path.join("outputs", script, args.dataset)
    return args


def pooled_problem(data, factor: int) -> Problem:
    """The problem of a data set loaded with ``flatten=False``, its images average-pooled.

    Args:
      data: a [`Dataset`][infinite_width.datasets.Dataset] of images.
      factor: the pooling window and stride.
    """
    pool = lambda x: pool_images(np.asarray(x), factor)
    return Problem(pool(data.x_train), data.y_train, pool(data.x_test), data.y_test,
                   name=f"{data.name} pooled x{factor}")


def write_outputs(out_dir, table: str, figure, stem: str) -> List[Path]:
    """``table.md`` and the figure ``<stem>.pdf``/``.png`` in ``out_dir``; prints the table and the paths.

    Args:
      out_dir: the output folder.
      table: the Markdown table.
      figure: the matplotlib figure.
      stem: the figure's file name without suffix.
    """
    Path(out_dir, "table.md").write_text(table)
    paths = figures.save(figure, Path(out_dir, stem))
    print(table)
    print("wrote", ", ".join(str(p) for p in paths))
    return paths
