"""Side-by-side comparison of trajectories: final metrics and function-space distances.

[`compare`][infinite_width.compare] builds a [`Comparison`][infinite_width.workflow.Comparison] of several
[`Trajectory`][infinite_width.Trajectory] objects: one row per
trajectory (final train/test loss and accuracy, mean and spread over the
seeds that did not diverge, ``diverged`` as ``"k/S"`` seeds, Monte Carlo
error, wall time) and one row per pair (the distance between
their mean predictions at the last step they share). It prints as a table,
converts to a list of dicts ([`Comparison.rows`][infinite_width.workflow.comparison.Comparison.rows],
[`Comparison.distance_rows`][infinite_width.workflow.comparison.Comparison.distance_rows]) and to CSV
([`Comparison.to_csv`][infinite_width.workflow.comparison.Comparison.to_csv]).

A baseline recorded at ``t = infinity`` (step ``-1``) is constant in time, so
it "shares" every step of any other trajectory.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from infinite_width.workflow.trajectory import Trajectory

__all__ = ["compare", "Comparison", "distance", "fit_slope"]


def _shared_steps(a: Trajectory, b: Trajectory) -> np.ndarray:
    if a.is_static:
        return b.steps
    if b.is_static:
        return a.steps
    return np.intersect1d(a.steps, b.steps)


def _at_steps(trajectory: Trajectory, split: str, steps: np.ndarray) -> np.ndarray:
    mean = trajectory.mean_predictions(split)
    if trajectory.is_static:
        return np.broadcast_to(mean[0], (len(steps),) + mean.shape[1:])
    return mean[[trajectory.at(int(s)) for s in steps]]


def distance(a: Trajectory, b: Trajectory, split: str = "test", relative: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Function-space distance between the mean predictions of ``a`` and ``b`` at their shared steps.

    ``||f_a - f_b|| / sqrt(N k)`` (root mean square over the N x k outputs of
    ``split``), divided by the RMS of ``f_b`` when ``relative`` (step 0 of
    centered runs, where ``f_b = 0``, is then NaN). ``b`` is the reference,
    e.g. a limit. Returns ``(steps (R,), distances (R,))``.
    """
    if not isinstance(a, Trajectory) or not isinstance(b, Trajectory):
        raise TypeError("distance compares two Trajectory objects")
    if a.predictions(split).shape[2:] != b.predictions(split).shape[2:]:
        raise ValueError(
            f"{a.label!r} and {b.label!r} have different {split} prediction shapes: "
            f"{a.predictions(split).shape[2:]} vs {b.predictions(split).shape[2:]}"
        )
    steps = _shared_steps(a, b)
    if steps.size == 0:
        raise ValueError(f"{a.label!r} and {b.label!r} share no recorded step")
    fa, fb = _at_steps(a, split, steps).astype(np.float64), _at_steps(b, split, steps).astype(np.float64)
    rms = np.sqrt(np.mean((fa - fb) ** 2, axis=(1, 2)))
    if relative:
        scale = np.sqrt(np.mean(fb**2, axis=(1, 2)))
        with np.errstate(divide="ignore", invalid="ignore"):
            rms = np.where(scale > 0, rms / np.where(scale > 0, scale, 1.0), np.nan)
    return steps, rms


def fit_slope(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    """Least-squares fit of ``log y = slope * log x + intercept``; returns ``(slope, intercept)``.

    Needs at least two points with positive finite ``x`` and ``y``.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if keep.sum() < 2:
        raise ValueError("a log-log slope needs at least two points with positive finite x and y")
    slope, intercept = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(slope), float(intercept)


def _optimizer_text(optimizer: Optional[dict]) -> Optional[str]:
    """``"adam(lr=0.02, b1=0.9, ...)"`` from the optimizer's metadata (its name and hyper-parameters)."""
    if optimizer is None:
        return None
    return f"{optimizer['name']}(" + ", ".join(f"{k}={v:g}" for k, v in optimizer.items() if k != "name") + ")"


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def _table(rows: List[Dict], columns: Sequence[str]) -> str:
    cells = [[_format(row[c]) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


class Comparison:
    """Final metrics of several trajectories and the distances between them (see [`compare`][infinite_width.compare])."""

    COLUMNS = (
        "label", "regime", "width", "optimizer", "readout_only", "seeds", "step",
        "train_loss", "train_loss_std", "test_loss", "test_loss_std",
        "train_accuracy", "train_accuracy_std", "test_accuracy", "test_accuracy_std",
        "mc_stderr", "diverged", "wall_time",
    )
    DISTANCE_COLUMNS = ("a", "b", "step", "test_distance", "train_distance")

    def __init__(self, trajectories: Sequence[Trajectory], pairs: Sequence[Tuple[Trajectory, Trajectory]]):
        self.trajectories = list(trajectories)
        self.pairs = list(pairs)

    def rows(self) -> List[Dict]:
        """One plain dict per trajectory (keys `COLUMNS`).

        Metrics are the mean and std over the seeds that did not diverge
        (NaN if all did); ``diverged`` says how many did, as the text
        ``"k/S"`` (k of the ``seeds`` S), so a partly diverged ensemble never
        looks healthy.
        """
        rows = []
        for t in self.trajectories:
            row = {
                "label": t.label,
                "regime": t.regime,
                "width": "inf" if t.width == math.inf else t.width,
                "optimizer": _optimizer_text(t.metadata.get("optimizer")),
                "readout_only": t.metadata.get("readout_only"),
                "seeds": t.seeds,
                "step": "inf" if t.is_static else int(t.steps[-1]),
            }
            for name in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
                row[name], row[f"{name}_std"] = t.final(name)
            row["mc_stderr"] = None if t.test_stderr is None else float(np.sqrt(np.mean(t.test_stderr[-1] ** 2)))
            row["diverged"] = f"{int(np.sum(t.diverged))}/{t.seeds}"
            row["wall_time"] = float(t.metadata.get("wall_time", float("nan")))
            rows.append(row)
        return rows

    def distance_rows(self) -> List[Dict]:
        """Relative RMS distances of mean predictions at the last shared step, one dict per pair ``(a, b)``.

        ``b`` is the reference of the relative distance. Pairs without shared
        steps or with different data are left out.
        """
        rows = []
        for a, b in self.pairs:
            try:
                steps, test = distance(a, b, "test")
                _, train = distance(a, b, "train")
            except ValueError:
                continue
            rows.append({
                "a": a.label,
                "b": b.label,
                "step": "inf" if steps[-1] == -1 else int(steps[-1]),
                "test_distance": float(test[-1]),
                "train_distance": float(train[-1]),
            })
        return rows

    def to_csv(self, path=None, distances: bool = False) -> str:
        """The rows (or the distance rows) as CSV text; written to ``path`` if given."""
        rows, columns = (self.distance_rows(), self.DISTANCE_COLUMNS) if distances else (self.rows(), self.COLUMNS)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        text = buffer.getvalue()
        if path is not None:
            with open(path, "w", newline="") as file:
                file.write(text)
        return text

    def __str__(self) -> str:
        shown = ("label", "step", "diverged", "train_loss", "test_loss", "train_accuracy", "test_accuracy",
                 "test_accuracy_std", "mc_stderr", "wall_time")
        rows = self.rows()
        text = _table(rows, shown)
        unhealthy = [row["label"] for row in rows if not row["diverged"].startswith("0/")]
        if unhealthy:
            text += (
                f"\nWARNING: seeds diverged in {', '.join(unhealthy)}: their metrics are means over the other "
                "seeds only (nan if none is left)"
            )
        distances = self.distance_rows()
        if distances:
            text += "\n\nrelative RMS distance of mean predictions at the last shared step\n"
            text += _table(distances, self.DISTANCE_COLUMNS)
        return text

    def __repr__(self) -> str:
        return f"Comparison of {len(self.trajectories)} trajectories\n{self}"


def compare(trajectories, reference: Optional[Trajectory] = None, pairs=None) -> Comparison:
    """Compare trajectories: final metrics (mean and std over seeds) and pairwise function-space distances.

    Args:
      trajectories: a sequence of [`Trajectory`][infinite_width.Trajectory], or a dict of them
        (e.g. the result of [`infinite_width.sweep`][]).
      reference: if given, distances are measured to it only (e.g. a limit).
      pairs: if given, distances of these ``(a, b)`` pairs only: Trajectory
        objects, or keys of ``trajectories`` when it is a dict. Default: every
        pair.

    Returns:
      a [`Comparison`][infinite_width.workflow.Comparison]: ``str()`` prints a table, ``.rows()`` and
      ``.distance_rows()`` give lists of dicts, ``.to_csv()`` CSV text.
    """
    named = dict(trajectories) if isinstance(trajectories, Mapping) else {}
    trajectories = list(named.values()) if named else list(trajectories)
    if not trajectories:
        raise ValueError("compare needs at least one trajectory")
    for t in trajectories + ([reference] if reference is not None else []):
        if not isinstance(t, Trajectory):
            raise TypeError(f"compare takes Trajectory objects, got {type(t).__name__}")
    if reference is not None and pairs is not None:
        raise ValueError("give either reference or pairs, not both")
    if reference is not None:
        pairs = [(t, reference) for t in trajectories if t is not reference]
    elif pairs is None:
        pairs = list(itertools.combinations(trajectories, 2))
    else:
        resolved = []
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"each pair must be (a, b), got {pair!r}")
            try:
                resolved.append(tuple(named[p] if isinstance(p, str) else p for p in pair))
            except KeyError as error:
                raise ValueError(f"unknown trajectory name {error.args[0]!r} in pairs") from error
        pairs = resolved
    return Comparison(trajectories, pairs)
