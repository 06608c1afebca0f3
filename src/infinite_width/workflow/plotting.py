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
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from infinite_width.workflow import palette
from infinite_width.workflow.comparison import distance, fit_slope
from infinite_width.workflow.trajectory import METRICS, Trajectory

__all__ = ["learning_curves", "accuracy_vs_width", "distance_vs_width", "demo_figure", "legend_handles"]


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
    """Colour from the family ([`palette`][infinite_width.workflow.palette]); finite networks solid, fainter when narrower; limits dashed."""

    def __init__(self, trajectories):
        widths = sorted({t.width for t in trajectories if t.regime == "finite"})
        self.alpha = {w: 0.35 + 0.65 * (i + 1) / len(widths) for i, w in enumerate(widths)}

    def __call__(self, t: Trajectory) -> dict:
        color = palette.color(t.metadata)
        if t.is_static:
            return dict(color=color, linestyle=":", linewidth=1.6)
        if t.regime == "finite":
            return dict(color=color, alpha=self.alpha[t.width], linewidth=1.2)
        return dict(color=color, linestyle="--", linewidth=2.2)


def legend_handles(trajectories) -> list:
    """Legend entries for a figure of ``trajectories``: one per family colour, one per line style.

    Used for one shared legend per figure ([`demo_figure`][infinite_width.workflow.plotting.demo_figure]) instead of one
    entry per trajectory in every panel.
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
        ("finite", dict(linestyle="-"), "finite networks (fainter: narrower; bars: std over seeds)"),
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
    error; baselines dotted horizontal lines. ``legend``: one entry per
    family and style (False leaves the legend to the caller).
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
                    color=palette.color(members[0].metadata))
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
    ax.set_xlabel("width")
    ax.set_ylabel(f"final {metric.replace('_', ' ')}")
    _legend(ax, trajectories, legend)
    _save(figure, path)
    return figure


def distance_vs_width(trajectories: Sequence[Trajectory], reference: Trajectory, *, split: str = "test",
                      ax=None, path=None):
    """Relative RMS distance to ``reference`` at the last shared step against width, log-log, with the fitted slope.

    Returns ``(figure, slope)``.
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


def demo_figure(trajectories, path=None):
    """Learning curves (test loss, test accuracy) and final accuracy against width, with one shared legend."""
    trajectories = _check(trajectories)
    figure = Figure(figsize=(15.0, 5.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    learning_curves(trajectories, "test_loss", ax=axes[0], legend=False)
    learning_curves(trajectories, "test_accuracy", ax=axes[1], legend=False)
    accuracy_vs_width(trajectories, "test_accuracy", ax=axes[2], legend=False)
    for ax, title in zip(axes, ("test loss", "test accuracy", "final test accuracy against width")):
        ax.set_title(title)
    handles = legend_handles(trajectories)
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize="small")
    _save(figure, path)
    return figure
