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

Distances compare functions on the same inputs only: trajectories whose
metadata identify different inputs of a split (``metadata["inputs"]``,
checksums that [`solve`][infinite_width.solve] records) have no distance on
that split. [`distance`][infinite_width.workflow.distance] refuses them; a
[`Comparison`][infinite_width.workflow.Comparison] leaves the split (or the pair) out and says so in its table
([`Comparison.left_out`][infinite_width.workflow.comparison.Comparison.left_out]).
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


def _incomparable(a: Trajectory, b: Trajectory, split: str) -> Optional[str]:
    """Why ``a`` and ``b`` have no distance on ``split`` (different inputs), or None when they have one."""
    shape_a, shape_b = a.split_predictions(split).shape[2:], b.split_predictions(split).shape[2:]
    if shape_a != shape_b:
        return f"different {split} prediction shapes {shape_a} and {shape_b}"
    inputs_a, inputs_b = (t.metadata.get("inputs", {}).get(split) for t in (a, b))
    if inputs_a is not None and inputs_b is not None and inputs_a != inputs_b:
        return f"different {split} inputs (checksums {inputs_a} and {inputs_b})"
    return None


def distance(a: Trajectory, b: Trajectory, split: str = "test", relative: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Function-space distance between the mean predictions of ``a`` and ``b`` at their shared steps.

    ``||f_a - f_b|| / sqrt(N k)`` (root mean square over the N x k outputs of
    ``split``), divided by the RMS of ``f_b`` when ``relative`` (step 0 of
    centered runs, where ``f_b = 0``, is then NaN).

    Args:
      a: a trajectory.
      b: the reference, e.g. a limit; solved on the same inputs of ``split`` as ``a``.
      split: ``"train"`` or ``"test"``.
      relative: divide by the RMS of ``f_b``.

    Returns:
      ``(steps, distances)``, each of shape (R,), at the steps both recorded.

    Raises:
      TypeError: ``a`` or ``b`` is not a Trajectory.
      ValueError: different inputs (checksums in the metadata) or shapes of
        ``split``, or no shared recorded step.
    """
    if not isinstance(a, Trajectory) or not isinstance(b, Trajectory):
        raise TypeError("distance compares two Trajectory objects")
    reason = _incomparable(a, b, split)
    if reason is not None:
        raise ValueError(f"{a.label!r} and {b.label!r} are not comparable: {reason}")
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

    Args:
      x: the abscissae, e.g. widths.
      y: the values, e.g. distances; points whose ``x`` or ``y`` is not positive and finite are left out.

    Raises:
      ValueError: fewer than two usable points.
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
    numbers = [f"{k}={v:g}" for k, v in optimizer.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if "schedule" in optimizer:  # a dict (optim.Schedule.describe): named by its function
        numbers.append("schedule=" + optimizer["schedule"].get("function", "").split(".<locals>")[0].rsplit(".", 1)[-1])
    return f"{optimizer['name']}(" + ", ".join(numbers) + ")"


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
    """Final metrics of several trajectories and the distances between them (see [`compare`][infinite_width.compare]).

    Args:
      trajectories: the trajectories, one row each.
      pairs: the ``(a, b)`` pairs whose distances are reported.
    """

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

    def left_out(self) -> List[Tuple[str, str, str]]:
        """``(a, b, reason)`` for each split of a pair that has no distance (different inputs, no shared step)."""
        gaps = []
        for a, b in self.pairs:
            reasons = [_incomparable(a, b, split) for split in ("test", "train")]
            if _shared_steps(a, b).size == 0:
                reasons = ["no shared recorded step"]
            gaps += [(a.label, b.label, reason) for reason in reasons if reason is not None]
        return gaps

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

        ``b`` is the reference of the relative distance. A split on which the
        two saw different inputs has no distance (None); a pair with neither,
        or without a shared step, is left out ([`left_out`][infinite_width.workflow.comparison.Comparison.left_out] says
        why).
        """
        rows = []
        for a, b in self.pairs:
            steps = _shared_steps(a, b)
            if steps.size == 0:
                continue
            row = {"a": a.label, "b": b.label, "step": "inf" if steps[-1] == -1 else int(steps[-1])}
            for split in ("test", "train"):
                row[f"{split}_distance"] = None if _incomparable(a, b, split) else float(distance(a, b, split)[1][-1])
            if row["test_distance"] is not None or row["train_distance"] is not None:
                rows.append(row)
        return rows

    def to_csv(self, path=None, distances: bool = False) -> str:
        """The rows (or the distance rows) as CSV text; written to ``path`` if given.

        Args:
          path: a file to write, or None.
          distances: the distance rows instead of the metric rows.
        """
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
        for a, b, reason in self.left_out():
            text += f"\nnot compared: {a} with {b}: {reason}"
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
        objects, or keys of ``trajectories`` when it is a dict (else their
        labels). Default: every pair.

    Returns:
      a [`Comparison`][infinite_width.workflow.Comparison]: ``str()`` prints a table, ``.rows()`` and
      ``.distance_rows()`` give lists of dicts, ``.to_csv()`` CSV text.
      Pairs solved on different inputs are left out of the distances, and
      the table says so ([`Comparison.left_out`][infinite_width.workflow.comparison.Comparison.left_out]).

    Raises:
      TypeError: an object that is not a Trajectory.
      ValueError: no trajectories, both ``reference`` and ``pairs``, or a
        pair naming an unknown (or ambiguous) trajectory.
    """
    named = dict(trajectories) if isinstance(trajectories, Mapping) else None
    trajectories = list(named.values()) if named is not None else list(trajectories)
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
        pairs = [_resolve_pair(pair, trajectories, named) for pair in pairs]
    return Comparison(trajectories, pairs)


def _resolve_pair(pair, trajectories: List[Trajectory], named: Optional[dict]) -> Tuple[Trajectory, Trajectory]:
    """A pair of ``compare(pairs=...)`` as two trajectories: names are keys of a dict, else unique labels."""
    if isinstance(pair, str) or len(pair) != 2:
        raise ValueError(f"each pair must be (a, b), got {pair!r}")
    if named is not None:
        by_name, what = named, "key"
    else:
        by_name, what = {}, "label"
        for t in trajectories:
            by_name.setdefault(t.label, []).append(t)
    resolved = []
    for item in pair:
        if isinstance(item, Trajectory):
            resolved.append(item)
            continue
        found = by_name.get(item) if isinstance(item, str) else None
        if found is None:
            raise ValueError(f"unknown trajectory {item!r} in pairs; the {what}s are {sorted(by_name)}")
        if isinstance(found, list):
            if len(found) > 1:
                raise ValueError(f"{len(found)} trajectories have the label {item!r}: pass the Trajectory objects, "
                                 "or a dict of them with distinct keys")
            found = found[0]
        resolved.append(found)
    return tuple(resolved)
