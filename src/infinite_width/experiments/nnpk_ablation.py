"""Ablations of the Neural Network Prior Kernel (Amid et al. 2022), resumable.

:func:`run` evaluates kernel ridge regression with the NNPK of MLPs over a
grid of

* ``activation`` (any of :data:`infinite_width.ACTIVATIONS`),
* ``init`` (``"gaussian"``, ``"orthogonal"``, ``"uniform"``) and the weight
  and bias scales ``W_std``, ``b_std``,
* ``depth`` (hidden layers) and ``width``,
* ``networks`` (the number m of random networks),

and reports the test accuracy and test MSE of each, beside the NNGP and NTK
kernel regressions of the same architecture (the infinite-width references;
they depend only on activation, scales and depth).

Files in ``out_dir``:

* ``points/<name>.json``: one per grid point, written atomically (temporary
  file + rename). Re-running skips the points already there, so an
  interrupted run resumes where it stopped; every point draws its networks
  from a key derived from ``seed`` and the point itself (:func:`point_key`),
  so a point gives the same numbers whenever and in whatever order it is run;
* ``summary.json`` and ``summary.csv``: one row per grid point;
* ``ablation.png``: test accuracy against ``networks``, one panel per
  activation, NNGP (dashed) and NTK (dotted) references.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import time
import zlib
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from tqdm.auto import tqdm

from infinite_width import kernels, losses
from infinite_width._src.files import atomic_path
from infinite_width.architectures import ACTIVATIONS, mlp
from infinite_width.finite.networks import INITS
from infinite_width.kernels import kernel_alignment, nnpk
from infinite_width.limits.baselines import DEFAULT_RIDGE, kernel_regression
from infinite_width.problem import Problem

__all__ = ["AXES", "DEFAULTS", "grid_points", "point_name", "point_key", "run", "markdown_table"]

#: The grid axes, in the order they appear in names and tables.
AXES: Tuple[str, ...] = ("activation", "init", "W_std", "b_std", "depth", "width", "networks")
#: Values of the axes a grid leaves out.
DEFAULTS: Dict[str, object] = {
    "activation": "relu",
    "init": "gaussian",
    "W_std": math.sqrt(2.0),
    "b_std": 0.1,
    "depth": 2,
    "width": 512,
    "networks": 64,
}
_REFERENCES = ("nngp", "ntk")
_FORMAT_VERSION = 2  # 2: the axis of random networks is named "networks" (was "n_samples")


def _check_value(axis: str, value):
    if axis == "activation" and value not in ACTIVATIONS:
        raise ValueError(f"unknown activation {value!r} in the grid; expected one of {ACTIVATIONS}")
    if axis == "init" and value not in INITS:
        raise ValueError(f"unknown init {value!r} in the grid; expected one of {INITS}")
    if axis in ("W_std", "b_std"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"grid {axis} values must be finite numbers >= 0, got {value!r}")
        return float(value)
    if axis in ("depth", "width", "networks"):
        minimum = 0 if axis == "depth" else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"grid {axis} values must be integers >= {minimum}, got {value!r}")
        return int(value)
    return value


def grid_points(grid: Mapping[str, Sequence]) -> List[Dict[str, object]]:
    """The grid points, the Cartesian product of the axes' values, as dicts over :data:`AXES`.

    ``grid`` maps axis names to lists of values; a missing axis takes its
    :data:`DEFAULTS` value. Unknown axes or values raise ``ValueError``.
    """
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a mapping from axis names to lists of values, got {type(grid).__name__}")
    unknown = sorted(set(grid) - set(AXES))
    if unknown:
        raise ValueError(f"unknown grid axes {unknown}; expected some of {AXES}")
    values = []
    for axis in AXES:
        axis_values = grid.get(axis, [DEFAULTS[axis]])
        if isinstance(axis_values, (str, bytes)) or not isinstance(axis_values, Iterable):
            raise TypeError(f"grid[{axis!r}] must be a list of values, got {axis_values!r}")
        axis_values = [_check_value(axis, v) for v in axis_values]
        if not axis_values:
            raise ValueError(f"grid[{axis!r}] is empty")
        values.append(axis_values)
    return [dict(zip(AXES, combination)) for combination in itertools.product(*values)]


def point_name(point: Mapping[str, object]) -> str:
    """File-name stem of a grid point, e.g. ``relu-gaussian-W1.414-b0.1-d2-w512-m64``."""
    return (
        f"{point['activation']}-{point['init']}-W{point['W_std']:.4g}-b{point['b_std']:.4g}"
        f"-d{point['depth']}-w{point['width']}-m{point['networks']}"
    )


def point_key(seed: int, point: Mapping[str, object]):
    """The PRNG key of a grid point's networks: ``seed`` folded with a hash of the point."""
    digest = zlib.crc32(json.dumps({a: point[a] for a in AXES}, sort_keys=True).encode())
    return jax.random.fold_in(jax.random.PRNGKey(seed), digest & 0x7FFFFFFF)


def _as_problem(data) -> Problem:
    if isinstance(data, Problem):
        problem = data
    elif isinstance(data, (tuple, list)) and len(data) == 4:
        problem = Problem(*data)
    else:
        raise TypeError(
            "data must be an infinite_width.Problem or a tuple (x_train, y_train, x_test, y_test), "
            f"got {type(data).__name__}"
        )
    if problem.input_kind != "vector":
        raise ValueError(
            f"the NNPK ablation uses MLPs and needs vector inputs (N, d); got inputs of shape "
            f"{problem.x_train.shape[1:]}: flatten the images first"
        )
    return problem


def _atomic_write(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        Path(temporary).write_text(text)


def _evaluate(K, problem: Problem, ridge: float) -> Dict[str, float]:
    n = problem.n_train
    predictions = kernel_regression(K[:n, :n], problem.y_train, K[n:, :n], ridge=ridge)
    return {
        "test_accuracy": float(losses.accuracy(predictions, problem.y_test)),
        "test_mse": float(losses.mse(predictions, problem.y_test)),
    }


def run(
    data,
    grid: Mapping[str, Sequence],
    out_dir: Union[str, os.PathLike],
    *,
    seed: int = 0,
    ridge: float = DEFAULT_RIDGE,
    batch_size: Optional[int] = None,
    plot: bool = True,
    progress: bool = True,
) -> List[Dict[str, object]]:
    """Run (or resume) an NNPK ablation; return one result row per grid point.

    Args:
      data: an :class:`infinite_width.Problem` with vector inputs, or a tuple
        ``(x_train (N, d), y_train (N, k), x_test (Nt, d), y_test (Nt, k))``.
      grid: axis name -> list of values (:func:`grid_points`).
      out_dir: folder for the per-point JSON files, summaries and plot.
      seed: base seed of every point's key (:func:`point_key`).
      ridge: relative ridge of every kernel regression (:func:`infinite_width.limits.baselines.kernel_regression`).
      batch_size: rows per forward pass of the networks (None: all at once).
      plot: write ``ablation.png``.
      progress: show a tqdm progress bar over the grid points.

    Each row holds the point's axes, ``nnpk_test_accuracy``, ``nnpk_test_mse``,
    ``nngp_test_accuracy``/``_mse``, ``ntk_test_accuracy``/``_mse``,
    ``alignment_nngp`` (centered alignment of the NNPK with the NNGP on the
    training inputs, :func:`infinite_width.kernels.kernel_alignment`) and
    ``seconds`` (time to compute the NNPK and its regression).

    Raises ``ValueError`` if ``out_dir`` already holds results computed with
    other data or settings.
    """
    problem = _as_problem(data)
    points = grid_points(grid)
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge < 0:
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    out_dir = Path(out_dir)
    settings = {
        "format": _FORMAT_VERSION,
        "problem": problem.name,
        "n_train": problem.n_train,
        "n_test": problem.n_test,
        "data_crc32": _data_checksum(problem),
        "seed": int(seed),
        "ridge": float(ridge),
    }
    x_all = np.concatenate([problem.x_train, problem.x_test])
    references: Dict[Tuple, Dict[str, float]] = {}
    rows = []
    for point in tqdm(points, desc="NNPK ablation", disable=not progress):
        path = out_dir / "points" / f"{point_name(point)}.json"
        if path.exists():
            record = json.loads(path.read_text())
            if record["settings"] != settings:
                raise ValueError(
                    f"{path} was computed with other settings ({record['settings']}) than this run "
                    f"({settings}); use another out_dir"
                )
            rows.append(record["result"])
            continue
        arch = mlp(point["depth"], point["activation"], point["W_std"], point["b_std"], out_dim=problem.out_dim)
        reference_id = (point["activation"], point["W_std"], point["b_std"], point["depth"])
        if reference_id not in references:
            references[reference_id] = _reference(arch, x_all, problem, ridge, batch_size)
        reference = references[reference_id]
        start = time.perf_counter()
        K = nnpk(
            arch,
            x_all,
            width=point["width"],
            n_samples=point["networks"],
            key=point_key(seed, point),
            init=point["init"],
            batch_size=batch_size,
        )
        scores = _evaluate(K, problem, ridge)
        seconds = time.perf_counter() - start
        n = problem.n_train
        result = dict(point)
        result.update({f"nnpk_{name}": value for name, value in scores.items()})
        result.update({name: value for name, value in reference.items() if name != "nngp_train"})
        result["alignment_nngp"] = kernel_alignment(K[:n, :n], reference["nngp_train"])
        result["seconds"] = seconds
        _atomic_write(path, json.dumps({"settings": settings, "result": result}, indent=1))
        rows.append(result)
    _write_summary(rows, out_dir, plot)
    return rows


def _data_checksum(problem: Problem) -> int:
    checksum = 0
    for array in (problem.x_train, problem.y_train, problem.x_test, problem.y_test):
        checksum = zlib.crc32(np.ascontiguousarray(array).tobytes(), checksum)
    return checksum


def _reference(arch, x_all, problem: Problem, ridge: float, batch_size: Optional[int]):
    nngp, ntk = kernels.nngp_and_ntk(arch, x_all, batch_size=batch_size)
    reference: Dict[str, object] = {}
    for name, K in zip(_REFERENCES, (nngp, ntk)):
        reference.update({f"{name}_{metric}": value for metric, value in _evaluate(K, problem, ridge).items()})
    n = problem.n_train
    reference["nngp_train"] = nngp[:n, :n]
    return reference


def _write_summary(rows: List[Dict[str, object]], out_dir: Path, plot: bool) -> None:
    _atomic_write(out_dir / "summary.json", json.dumps(rows, indent=1))
    fields = list(rows[0])
    lines = [fields] + [[row[field] for field in fields] for row in rows]
    _atomic_write(out_dir / "summary.csv", _csv_text(lines))
    if plot:
        _plot(rows, out_dir / "ablation.png")


def _csv_text(lines) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue()


def _plot(rows: List[Dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    activations = list(dict.fromkeys(row["activation"] for row in rows))
    fig, axes = plt.subplots(1, len(activations), figsize=(4 * len(activations), 3.4), squeeze=False, sharey=True)
    for ax, activation in zip(axes[0], activations):
        subset = [row for row in rows if row["activation"] == activation]
        curves: Dict[Tuple, List[Dict[str, object]]] = {}
        for row in subset:
            curves.setdefault(tuple(row[a] for a in AXES if a not in ("activation", "networks")), []).append(row)
        curve_axes = [a for a in AXES if a not in ("activation", "networks")]
        # Label curves by the axes that differ between them.
        varying = [i for i, _ in enumerate(curve_axes) if len({c[i] for c in curves}) > 1]
        for curve_id, curve in curves.items():
            curve = sorted(curve, key=lambda row: row["networks"])
            label = ", ".join(
                f"{curve_axes[i]}={curve_id[i]:.3g}" if isinstance(curve_id[i], float) else f"{curve_axes[i]}={curve_id[i]}"
                for i in varying
            ) or "NNPK"
            ax.plot([r["networks"] for r in curve], [r["nnpk_test_accuracy"] for r in curve], "o-", label=label)
        for reference_id in dict.fromkeys((row["W_std"], row["b_std"], row["depth"]) for row in subset):
            row = next(r for r in subset if (r["W_std"], r["b_std"], r["depth"]) == reference_id)
            ax.axhline(row["nngp_test_accuracy"], color="k", ls="--", lw=1, label=f"NNGP (depth {row['depth']})")
            ax.axhline(row["ntk_test_accuracy"], color="gray", ls=":", lw=1, label=f"NTK (depth {row['depth']})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("networks m")
        ax.set_title(activation)
    axes[0][0].set_ylabel("test accuracy (kernel regression)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as temporary:
            fig.savefig(temporary, dpi=120)
    finally:
        plt.close(fig)


def markdown_table(rows: Sequence[Mapping[str, object]], axes: Optional[Sequence[str]] = None) -> str:
    """A Markdown table of result rows: the varying axes, NNPK/NNGP/NTK test accuracy, alignment, time."""
    if axes is None:
        axes = [a for a in AXES if len({row[a] for row in rows}) > 1] or list(AXES)
    columns = list(axes) + ["nnpk_test_accuracy", "nngp_test_accuracy", "ntk_test_accuracy", "alignment_nngp", "seconds"]
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"

    def cell(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return header + "\n".join("| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows) + "\n"
