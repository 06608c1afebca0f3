"""The demo: every regime side by side on one data set (``python -m infinite_width demo``).

It solves one data set (scikit-learn's digits by default, no download) with
NTK and NNGP gradient descent, the Adam-like limit, finite networks trained
with SGD and Adam at a few widths (each with all layers and with the readout
only), and the NNGP posterior and NTK ridge baselines. It prints the
comparison table and writes to ``--out``:

* ``results/<job>.npz``: one trajectory per solve (a resumable sweep: run
  the same command again after an interruption and finished solves are
  loaded, not recomputed);
* ``comparison.csv`` and ``distances.csv``: the table as CSV;
* ``demo.png`` and ``demo.pdf`` ([`figure`][infinite_width.experiments.demo.figure]): for each
  optimizer and set of trained layers, test accuracy and loss against step
  of the finite networks (a shade per width, named in the panel's legend)
  beside their limit; the final test accuracy against width; titled by the
  data and the architecture.

``--quick`` shrinks everything for a smoke test
([`QUICK`][infinite_width.experiments.demo.QUICK]; under a minute on a 2-core
CPU, most of it compilation); options given explicitly win over it. Every
option is checked (and the output folder's write access) before anything is
computed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Dict, Mapping, NamedTuple

from infinite_width import datasets

# The solvers (and so jax) are imported by the functions that solve: `python -m infinite_width demo
# --help` and argparse's errors answer in a fraction of a second.
if TYPE_CHECKING:
    from infinite_width.architectures import Architecture
    from infinite_width.problem import Problem
    from infinite_width.workflow.trajectory import Trajectory

__all__ = ["DEFAULTS", "QUICK", "demo_jobs", "limit_pairs", "figure", "add_arguments", "resolve_arguments", "setup",
           "run"]

DEFAULTS = dict(
    dataset="digits", data_dir=None, n_train=300, n_test=300, steps=200, widths=[64, 256, 1024], depth=2,
    samples=16384, replicas=4, seeds=2, sgd_lr=2.0, adam_lr=0.02, seed=0, out=os.path.join("outputs", "demo"),
)
"""Default options of the demo."""
QUICK = dict(n_train=40, n_test=40, steps=12, widths=[16, 64], samples=512, replicas=2, seeds=2, depth=1)
"""The sizes ``--quick`` sets (a smoke test: under a minute on a 2-core CPU, most of it compilation)."""


def demo_jobs(problem, arch, *, steps, widths, samples, replicas, seeds, sgd_lr, adam_lr, key=0):
    """The demo's solves as sweep jobs: ``{name: solve arguments}`` (see the module docstring).

    Every method is built (and so checked) here, before any job runs.

    Args:
      problem: the data and the loss.
      arch: the MLP.
      steps: optimizer steps of every trained regime.
      widths: the finite widths.
      samples: Monte Carlo samples of the Adam-like limit.
      replicas: its replicas.
      seeds: finite networks per width.
      sgd_lr: SGD's learning rate.
      adam_lr: Adam's learning rate.
      key: the key of every solve.
    """
    from infinite_width import optim
    from infinite_width.workflow import AdamLimit, Finite, KernelDynamics, KernelRidge, Posterior

    common = dict(problem=problem, arch=arch, steps=steps, key=key)
    sgd, adam = optim.sgd(sgd_lr), optim.adam(adam_lr, b1=0.9, b2=0.99)
    limit = AdamLimit(samples=samples, replicas=replicas)
    finite = {width: Finite(width, seeds=seeds) for width in widths}
    jobs = {
        "nngp_posterior": dict(problem=problem, arch=arch, method=Posterior()),
        "ntk_ridge": dict(problem=problem, arch=arch, method=KernelRidge("ntk")),
    }
    for readout_only in (False, True):
        layers = "readout" if readout_only else "all"
        trained = dict(common, readout_only=readout_only)
        jobs[f"sgd-{layers}-inf"] = dict(trained, method=KernelDynamics(), optimizer=sgd)
        jobs[f"adam-{layers}-inf"] = dict(trained, method=limit, optimizer=adam)
        for width in widths:
            for name, optimizer in (("sgd", sgd), ("adam", adam)):
                jobs[f"{name}-{layers}-w{width}"] = dict(trained, method=finite[width], optimizer=optimizer)
    return jobs


def limit_pairs(results: Mapping[str, Trajectory]):
    """``(finite name, limit name)`` pairs of ``results``: the limit of the same optimizer and trained layers.

    Read from the trajectories' metadata (regime, optimizer and its
    hyper-parameters, ``readout_only``), never from their names.

    Args:
      results: ``{name: Trajectory}``, as [`sweep`][infinite_width.sweep] returns them.
    """
    def trained_as(t: Trajectory):
        return t.metadata.get("optimizer"), t.metadata.get("readout_only")

    limits = {}
    for name, t in results.items():
        if t.regime != "finite" and t.metadata.get("optimizer") is not None:
            limits.setdefault(str(trained_as(t)), name)
    return [(name, limits[str(trained_as(t))]) for name, t in results.items()
            if t.regime == "finite" and str(trained_as(t)) in limits]


def figure(results: Mapping[str, Trajectory]):
    """The demo's figure: finite networks beside their limits, one column per training family.

    For each optimizer and set of trained layers (a colour of
    [`palette`][infinite_width.workflow.palette]), test accuracy (top) and test loss
    (bottom) against step: its finite networks, lighter the narrower, each width
    named in the panel's legend; its limit dashed, with a band of its Monte Carlo
    error; the t = infinity baselines dotted (accuracy only: their far smaller
    losses would flatten the curves). The last column is the final test
    accuracy against width. The title names the data, the architecture and the
    steps; one legend below tells the families and line styles apart.

    Args:
      results: ``{name: Trajectory}``, as [`sweep`][infinite_width.sweep] returns them.

    Returns:
      A matplotlib ``Figure`` (Agg canvas; save it with
      [`infinite_width.experiments.figures.save`][]).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from infinite_width.workflow import palette, plotting

    trajectories = list(results.values())
    baselines = [t for t in trajectories if t.is_static]
    families = {}  # training family -> its trajectories, in the order of results
    for t in trajectories:
        if not t.is_static:
            families.setdefault(palette.family(t.metadata), []).append(t)
    columns = [f"column{i}" for i in range(len(families))]
    canvas = Figure(figsize=(3.3 * len(families) + 4.4, 7.6), layout="constrained")
    FigureCanvasAgg(canvas)
    axes = canvas.subplot_mosaic([[f"accuracy {c}" for c in columns] + ["width"],
                                  [f"loss {c}" for c in columns] + ["width"]])
    for column, members in zip(columns, families.values()):
        for metric, row, shown in (("test_accuracy", "accuracy", members + baselines), ("test_loss", "loss", members)):
            ax = axes[f"{row} {column}"]
            if column != columns[0]:
                ax.sharey(axes[f"{row} {columns[0]}"])  # before drawing: the limits then cover every panel
            plotting.learning_curves(shown, metric, ax=ax, legend=False)
            if column != columns[0]:
                ax.set_ylabel("")
        ax = axes[f"accuracy {column}"]
        ax.set_title(palette.family_name(members[0].metadata))
        ax.set_xlabel("")
        names = {t.label: f"width {t.width}" if t.regime == "finite" else palette.LIMIT_NAMES.get(t.regime, t.label)
                 for t in sorted(members, key=lambda t: t.width)}
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        ax.legend([handles[label] for label in names], list(names.values()), fontsize="x-small", loc="lower right")
    plotting.accuracy_vs_width(trajectories, "test_accuracy", ax=axes["width"], legend=False)
    axes["width"].set_title("final test accuracy against width")
    first = trajectories[0].metadata
    steps = max(int(t.steps[-1]) for t in trajectories if not t.is_static) if families else 0
    canvas.suptitle(f"{first.get('problem', 'data')}; {first.get('architecture', 'network')}; {steps} steps")
    handles = plotting.legend_handles(trajectories)
    canvas.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize="small")
    return canvas


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the demo's options to ``parser``. Returns ``parser``.

    Options left out on the command line stay None until
    [`resolve_arguments`][infinite_width.experiments.demo.resolve_arguments] fills them (from ``--quick`` sizes or
    [`DEFAULTS`][infinite_width.experiments.demo.DEFAULTS]), so that explicit options win.

    Args:
      parser: an ``argparse.ArgumentParser`` (or a subcommand's parser).
    """

    def shown(value) -> str:
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    def option(flag, help, **kwargs):
        default = DEFAULTS[flag[2:].replace("-", "_")]
        text = help if default is None else f"{help} (default {shown(default)})"
        parser.add_argument(flag, default=None, help=text, **kwargs)

    option("--dataset", "digits (embedded), mnist, fashion_mnist or cifar10")
    option("--data-dir", "folder of the data files ($INFINITE_WIDTH_DATA when absent)")
    option("--n-train", "class-balanced training subset", type=int)
    option("--n-test", "class-balanced test subset", type=int)
    option("--steps", "optimizer steps", type=int)
    option("--widths", "finite widths", type=int, nargs="+")
    option("--depth", "hidden layers of the MLP", type=int)
    option("--samples", "Monte Carlo samples of the Adam-like limit (a multiple of --replicas)", type=int)
    option("--replicas", "independent replicas (error bars) of the limit", type=int)
    option("--seeds", "finite networks per width (spread)", type=int)
    option("--sgd-lr", "SGD learning rate", type=float)
    option("--adam-lr", "Adam learning rate", type=float)
    option("--seed", "the key of every solve and the data subset", type=int)
    option("--out", "output folder")
    quick = ", ".join(f"--{name.replace('_', '-')} {shown(value)}" for name, value in QUICK.items())
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke test at tiny sizes, {quick} (under a minute on a 2-core CPU, mostly "
                             "compilation); options given explicitly still win")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are drawn only on a terminal anyway)")
    return parser


def resolve_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options not given: from [`QUICK`][infinite_width.experiments.demo.QUICK] with ``--quick``, else from [`DEFAULTS`][infinite_width.experiments.demo.DEFAULTS].

    An option given on the command line keeps its value. Returns ``args``.

    Args:
      args: options parsed by a parser of [`add_arguments`][infinite_width.experiments.demo.add_arguments].
    """
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick and name in QUICK else default)
    return args


class DemoSetup(NamedTuple):
    """What the options describe: the data set, the problem, the MLP and the sweep jobs."""

    data: datasets.Dataset
    problem: Problem
    arch: Architecture
    jobs: Dict[str, dict]


def setup(args: argparse.Namespace) -> DemoSetup:
    """Load the data and build the problem, the MLP and [`demo_jobs`][infinite_width.experiments.demo.demo_jobs] from resolved options.

    Args:
      args: resolved options ([`resolve_arguments`][infinite_width.experiments.demo.resolve_arguments]).

    Raises:
      ValueError: naming the option, for a bad size (checked before anything is computed).
    """
    from infinite_width.architectures import mlp
    from infinite_width.problem import Problem

    for name, minimum in (("n_train", 1), ("n_test", 1), ("steps", 0), ("depth", 1), ("seeds", 1),
                          ("samples", 2), ("replicas", 2)):
        if getattr(args, name) < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    if min(args.widths) < 1:
        raise ValueError(f"--widths must be >= 1, got {args.widths}")
    data = datasets.load(args.dataset, args.data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    problem = Problem.from_dataset(data, loss="mse")
    arch = mlp(depth=args.depth, activation="relu", W_std=math.sqrt(2.0), b_std=0.1, out_dim=problem.out_dim)
    jobs = demo_jobs(
        problem, arch, steps=args.steps, widths=args.widths, samples=args.samples, replicas=args.replicas,
        seeds=args.seeds, sgd_lr=args.sgd_lr, adam_lr=args.adam_lr, key=args.seed,
    )
    return DemoSetup(data, problem, arch, jobs)


def _check_writable(folder: str) -> None:
    """``ValueError`` unless ``folder`` can be created and written (checked before any computation)."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"--out: cannot write in {folder!r}: {error}") from error


def run(args: argparse.Namespace) -> int:
    """The demo with options of [`add_arguments`][infinite_width.experiments.demo.add_arguments]; returns the exit status (2 for bad options).

    Options are resolved ([`resolve_arguments`][infinite_width.experiments.demo.resolve_arguments]) and every one is
    checked, with the output folder, before the first solve.

    Args:
      args: options parsed by a parser of [`add_arguments`][infinite_width.experiments.demo.add_arguments].
    """
    resolve_arguments(args)
    start = time.perf_counter()
    try:
        _, problem, arch, jobs = setup(args)
        _check_writable(os.path.join(args.out, "results"))
    except (ValueError, TypeError, OSError) as error:
        print(f"python -m infinite_width demo: error: {error}", file=sys.stderr)
        return 2
    from infinite_width.experiments import figures
    from infinite_width.workflow import compare, sweep

    print(f"{problem.describe()}; {arch.name}; {len(jobs)} solves -> {args.out}", flush=True)
    results = sweep(jobs, os.path.join(args.out, "results"), progress=not args.no_progress)
    table = compare(results, pairs=limit_pairs(results))
    table.to_csv(os.path.join(args.out, "comparison.csv"))
    table.to_csv(os.path.join(args.out, "distances.csv"), distances=True)
    paths = figures.save(figure(results), os.path.join(args.out, "demo"), formats=("png", "pdf"))
    print(table)
    print(f"\nwrote {paths[0]}, {paths[1].name} and comparison.csv ({time.perf_counter() - start:.1f} s)")
    return 0
