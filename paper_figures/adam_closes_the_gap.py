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

It writes ``adam_closes_the_gap.png`` and ``.pdf`` (test accuracy against
width, one panel with every layer trained and one with the readout only, one
shared legend and y axis), ``comparison.csv`` and
every solve under ``results/`` (a resumable sweep: run the same command again
after an interruption and finished solves are loaded, not recomputed).

Usage (from the repository root)::

    python paper_figures/adam_closes_the_gap.py --data-dir ../shared/datasets --out outputs/adam_gap
    python paper_figures/adam_closes_the_gap.py --quick          # digits, tiny sizes (seconds)
"""

from __future__ import annotations

import argparse
import os
import sys

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import infinite_width as iw
from infinite_width.experiments import demo
from infinite_width.workflow import plotting

#: The demo's options with this figure's defaults (MNIST, more data, wider networks).
DEFAULTS = dict(dataset="mnist", n_train=1000, n_test=1000, steps=300, widths=[64, 256, 1024, 4096], seeds=3,
                out=os.path.join("outputs", "adam_closes_the_gap"))
QUICK = dict(dataset="digits", n_train=50, n_test=50, steps=10, widths=[16, 64], samples=512, replicas=2, seeds=2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    demo.add_arguments(parser, DEFAULTS)
    return demo.resolve_arguments(parser.parse_args(argv), QUICK)


def main(argv=None) -> int:
    args = parse_args(argv)
    data, _, arch, jobs = demo.setup(args)
    results = iw.sweep(jobs, os.path.join(args.out, "results"), progress=not args.no_progress)

    figure = Figure(figsize=(12.0, 5.2), layout="constrained")
    FigureCanvasAgg(figure)
    baselines = [t for t in results.values() if t.is_static]
    for ax, readout_only in zip(figure.subplots(1, 2, sharey=True), (False, True)):
        members = [t for t in results.values() if t.metadata["readout_only"] == readout_only and not t.is_static]
        plotting.accuracy_vs_width(members + baselines, ax=ax, legend=False)
        ax.set_title(f"{data.name}, {arch.name}: {'readout only' if readout_only else 'all layers'} trained")
    handles = plotting.legend_handles(list(results.values()))
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize="small")
    figure_path = os.path.join(args.out, "adam_closes_the_gap.png")
    for path in (figure_path, os.path.join(args.out, "adam_closes_the_gap.pdf")):
        figure.savefig(path, dpi=120)

    table = iw.compare(results, pairs=demo.limit_pairs(results))
    table.to_csv(os.path.join(args.out, "comparison.csv"))
    print(table)
    print(f"\nwrote {figure_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
