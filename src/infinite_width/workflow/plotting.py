"""Figures of trajectories (matplotlib, no display needed).

Figures are built with `matplotlib.figure.Figure` and the Agg canvas
directly, never through ``pyplot``, so they work on headless machines and do
not change the user's backend. Each function returns the figure and, with
``path``, saves it (PNG, PDF or any format matplotlib infers from the suffix;
a list of paths writes each). Colours come from [`palette`][infinite_width.workflow.palette] (one per
regime family, the same in every figure); a figure has one legend, with one
entry per family and per line style ([`legend_handles`][infinite_width.workflow.plotting.legend_handles]).

* [`learning_curves`][infinite_width.workflow.plotting.learning_curves]: a metric against steps, mean with a band of one
  standard deviation over seeds (of the Monte Carlo error for a limit);
  baselines (``t = infinity``) as dotted lines.
* [`accuracy_vs_width`][infinite_width.workflow.plotting.accuracy_vs_width]: a final metric against the width of finite
  networks (one line per family, error bars over seeds), the infinite-width
  regimes as horizontal lines with a band of their Monte Carlo error.
* [`distance_vs_width`][infinite_width.workflow.plotting.distance_vs_width]: the distance of finite networks to a limit
  against width on log-log axes, with the fitted slope.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from infinite_width.workflow import palette
from infinite_width.workflow.comparison import distance, fit_slope
from infinite_width.workflow.trajectory import METRICS, Trajectory

__all__ = ["learning_curves", "accuracy_vs_width", "distance_vs_width", "legend_handles"]


def _figure(ax, size=(6.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path):
    """Write ``figure`` to ``path``, or to each of several paths (e.g. a PNG and a PDF)."""
    for target in ([] if path is None else [path] if isinstance(path, (str, os.PathLike)) else path):
        figure.savefig(target, dpi=120)


def _check(trajectories) -> list:
    if isinstance(trajectories, dict):
        trajectories = list(trajectories.values())
    trajectories = list(trajectories)
    if not trajectories or not all(isinstance(t, Trajectory) for t in trajectories):
        raise TypeError("expected a non-empty sequence (or dict) of Trajectory objects")
    return trajectories


def _check_metric(metric):
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def _mc_error(t: Trajectory, metric: str):
    """(R,) Monte Carlo standard error of ``metric`` from the replicas of a limit, or None."""
    replicas = t.extras.get(f"replica_{metric}")
    if replicas is None or replicas.shape[0] < 2:
        return None
    return replicas.std(axis=0, ddof=1) / np.sqrt(replicas.shape[0])


class _Styles:
    """Colour from the family ([`palette`][infinite_width.workflow.palette]); finite networks solid, in lighter
    shades of it when narrower (opaque, so crossing curves stay apart); limits dashed. Every line is labelled
    with its trajectory's label, so ``ax.get_legend_handles_labels()`` can build a panel's own legend."""

    def __init__(self, trajectories):
        widths = sorted({t.width for t in trajectories if t.regime == "finite"})
        self.strength = {w: 0.3 + 0.7 * (i + 1) / len(widths) for i, w in enumerate(widths)}

    def __call__(self, t: Trajectory) -> dict:
        color = palette.color(t.metadata)
        if t.is_static:
            return dict(color=color, linestyle=":", linewidth=1.6, label=t.label)
        if t.regime == "finite":
            strength = self.strength[t.width]  # blended with white: 1 is the family colour itself
            shade = tuple(1.0 - strength * (1.0 - c) for c in to_rgb(color))
            return dict(color=shade, linewidth=0.9 + 0.6 * strength, label=t.label)
        return dict(color=color, linestyle="--", linewidth=2.2, label=t.label)


def legend_handles(trajectories) -> list:
    """Legend entries for a figure of ``trajectories``: one per family colour, one per line style.

    Used for one shared legend per figure (the demo's, [`infinite_width.experiments.demo.figure`][]) instead
    of one entry per trajectory in every panel.

    Args:
      trajectories: a sequence (or dict) of [`Trajectory`][infinite_width.Trajectory].

    Returns:
      A list of matplotlib artists with labels, for ``legend(handles=...)``.
    """
    trajectories = _check(trajectories)
    handles, seen = [], set()
    for t in trajectories:
        name = palette.family_name(t.metadata)
        if name not in seen:
            seen.add(name)
            handles.append(Patch(color=palette.color(t.metadata), label=name))
    kinds = {("finite" if t.regime == "finite" else "static" if t.is_static else "limit") for t in trajectories}
    styles = (
        ("finite", dict(linestyle="-"), "finite networks (lighter: narrower; bands, bars: std over seeds)"),
        ("limit", dict(linestyle="--", linewidth=2.2), "infinite-width limit (" + ", ".join(
            sorted({palette.LIMIT_NAMES[t.regime] for t in trajectories if t.regime in palette.LIMIT_NAMES})) + ")"),
        ("static", dict(linestyle=":", linewidth=1.6), "t = infinity baseline"),
    )
    handles += [Line2D([], [], color="0.3", label=label, **style) for kind, style, label in styles if kind in kinds]
    if any(_mc_error(t, "test_accuracy") is not None for t in trajectories):
        handles.append(Patch(color="0.3", alpha=0.2, label="Monte Carlo error of a limit (1 s.e.)"))
    return handles


def _legend(ax, trajectories, legend: bool) -> None:
    if legend:
        ax.legend(handles=legend_handles(trajectories), fontsize="x-small")


def learning_curves(trajectories, metric: str = "test_loss", *, ax=None, path=None, log_y: Optional[bool] = None,
                    legend: bool = True):
    """``metric`` against step for each trajectory (mean ± std over seeds). Returns the figure.

    Colour: the family ([`palette`][infinite_width.workflow.palette]); finite networks are fainter the
    narrower they are; limits are dashed with a band of their Monte Carlo
    error; baselines dotted horizontal lines.

    Args:
      trajectories: a sequence (or dict) of [`Trajectory`][infinite_width.Trajectory].
      metric: ``"train_loss"``, ``"test_loss"``, ``"train_accuracy"`` or ``"test_accuracy"``.
      ax: a matplotlib axes to draw into; None makes a new figure.
      path: a file (or a list of files) to save the figure to, or None.
      log_y: a logarithmic y axis; None means yes for losses.
      legend: one legend entry per family and style (False leaves the legend to the caller).
    """
    trajectories = _check(trajectories)
    _check_metric(metric)
    figure, ax = _figure(ax)
    style = _Styles(trajectories)
    last = max([int(t.steps[-1]) for t in trajectories if not t.is_static] or [1])
    for t in trajectories:
        mean, std = t.metric(metric)
        line_style = style(t)
        if t.is_static:
            ax.axhline(mean[0], **line_style)
            continue
        ax.plot(t.steps, mean, **line_style)
        spread = std if t.seeds > 1 else _mc_error(t, metric)
        if spread is not None:
            ax.fill_between(t.steps, mean - spread, mean + spread, color=line_style["color"], alpha=0.15, linewidth=0)
    if log_y is None:
        log_y = metric.endswith("loss")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlim(0, last)
    ax.set_xlabel("step")
    ax.set_ylabel(metric.replace("_", " "))
    _legend(ax, trajectories, legend)
    _save(figure, path)
    return figure


def accuracy_vs_width(trajectories, metric: str = "test_accuracy", *, ax=None, path=None, legend: bool = True):
    """Final ``metric`` of finite networks against width (log x axis, error bars: std over seeds).

    Limits are horizontal lines with a band of their Monte Carlo error where
    they have one; baselines are dotted lines; colours by family.

    Args:
      trajectories: a sequence (or dict) of [`Trajectory`][infinite_width.Trajectory].
      metric: the metric, as for [`learning_curves`][infinite_width.workflow.plotting.learning_curves].
      ax: a matplotlib axes to draw into; None makes a new figure.
      path: a file (or a list of files) to save the figure to, or None.
      legend: one legend entry per family and style.

    Returns:
      The figure.
    """
    trajectories = _check(trajectories)
    _check_metric(metric)
    figure, ax = _figure(ax)
    finite: Dict[tuple, list] = {}
    for t in trajectories:
        if t.regime == "finite":
            finite.setdefault(palette.family(t.metadata), []).append(t)
    for members in finite.values():
        members.sort(key=lambda t: t.width)
        finals = np.array([t.final(metric) for t in members])
        ax.errorbar([t.width for t in members], finals[:, 0], yerr=finals[:, 1], marker="o", capsize=3,
                    color=palette.color(members[0].metadata), label=palette.family_name(members[0].metadata))
    style = _Styles(trajectories)
    for t in trajectories:
        if t.regime == "finite":
            continue
        mean, line_style = t.final(metric)[0], style(t)
        ax.axhline(mean, **line_style)
        error = _mc_error(t, metric)
        if error is not None:
            ax.axhspan(mean - error[-1], mean + error[-1], color=line_style["color"], alpha=0.2, linewidth=0)
    if finite:
        ax.set_xscale("log", base=2)
        widths = sorted({t.width for members in finite.values() for t in members})
        ax.set_xticks(widths, [str(w) for w in widths])  # the widths themselves, not powers of two
        ax.minorticks_off()
    ax.set_xlabel("width")
    ax.set_ylabel(f"final {metric.replace('_', ' ')}")
    _legend(ax, trajectories, legend)
    _save(figure, path)
    return figure


def distance_vs_width(trajectories: Sequence[Trajectory], reference: Trajectory, *, split: str = "test",
                      ax=None, path=None):
    """Relative RMS distance to ``reference`` at the last shared step against width, log-log, with the fitted slope.

    Args:
      trajectories: finite networks of several widths.
      reference: their limit.
      split: ``"train"`` or ``"test"``.
      ax: a matplotlib axes to draw into; None makes a new figure.
      path: a file (or a list of files) to save the figure to, or None.

    Returns:
      ``(figure, slope)``, the slope of ``log distance`` against ``log width``.
    """
    trajectories = sorted(_check(trajectories), key=lambda t: t.width)
    if any(t.width == math.inf for t in trajectories):
        raise ValueError("distance_vs_width plots finite widths; pass the limit as reference")
    widths = np.array([t.width for t in trajectories], dtype=np.float64)
    distances = np.array([distance(t, reference, split)[1][-1] for t in trajectories])
    slope, intercept = fit_slope(widths, distances)
    figure, ax = _figure(ax)
    ax.loglog(widths, distances, "o", label=f"finite vs {reference.label}")
    ax.loglog(widths, np.exp(intercept) * widths**slope, "-", label=f"fit: slope {slope:.2f}")
    ax.loglog(widths, distances[0] * (widths / widths[0]) ** -0.5, ":", color="gray", label="width$^{-1/2}$")
    ax.set_xlabel("width")
    ax.set_ylabel(f"relative distance ({split})")
    ax.legend(fontsize="small")
    _save(figure, path)
    return figure, slope
