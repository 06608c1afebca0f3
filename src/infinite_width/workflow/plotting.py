"""Figures of trajectories (matplotlib, no display needed).

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas
directly, never through ``pyplot``, so they work on headless machines and do
not change the user's backend. Each function returns the figure and, with
``path``, saves it (PNG, or any format matplotlib infers from the suffix).

* :func:`learning_curves`: a metric against steps, mean with a band of one
  standard deviation over seeds; baselines (``t = infinity``) as dotted lines.
* :func:`accuracy_vs_width`: a final metric against the width of finite
  networks (one line per optimizer and trained layers), the infinite-width
  regimes as horizontal lines.
* :func:`distance_vs_width`: the distance of finite networks to a limit
  against width on log-log axes, with the fitted slope.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from infinite_width.workflow.comparison import distance, fit_slope
from infinite_width.workflow.trajectory import METRICS, Trajectory

__all__ = ["learning_curves", "accuracy_vs_width", "distance_vs_width", "demo_figure"]


def _figure(ax, size=(6.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path):
    if path is not None:
        figure.savefig(path, dpi=120)


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


def _group(t: Trajectory) -> str:
    return f"{(t.metadata.get('optimizer') or '').split('(')[0]} {t.metadata.get('train')}"


_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
_BASELINE_STYLES = ((0, (1, 1)), (0, (4, 2, 1, 2)), (0, (6, 2)), (0, (1, 3)))


class _Styles:
    """One colour per (optimizer, trained layers) group; finite widths fade in with width; limits dashed."""

    def __init__(self, trajectories):
        groups = sorted({_group(t) for t in trajectories if not t.is_static})
        self.colors = {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(groups)}
        widths = sorted({t.width for t in trajectories if t.regime == "finite"})
        self.alpha = {w: 0.35 + 0.65 * (i + 1) / len(widths) for i, w in enumerate(widths)}
        self.baselines = {}

    def __call__(self, t: Trajectory) -> dict:
        if t.is_static:
            style = _BASELINE_STYLES[len(self.baselines) % len(_BASELINE_STYLES)]
            self.baselines.setdefault(t.label, style)
            return dict(color="black", linestyle=self.baselines[t.label], linewidth=1.2)
        color = self.colors[_group(t)]
        if t.regime == "finite":
            return dict(color=color, alpha=self.alpha[t.width], linewidth=1.2)
        return dict(color=color, linestyle="--", linewidth=2.2)


def learning_curves(trajectories, metric: str = "test_loss", *, ax=None, path=None, log_y: Optional[bool] = None):
    """``metric`` against step for each trajectory (mean ± std over seeds). Returns the figure.

    Colour: optimizer and trained layers; finite networks are fainter the
    narrower they are; limits are dashed, baselines black horizontal lines.
    """
    trajectories = _check(trajectories)
    _check_metric(metric)
    figure, ax = _figure(ax)
    style = _Styles(trajectories)
    last = max([int(t.steps[-1]) for t in trajectories if not t.is_static] or [1])
    for t in trajectories:
        mean, std = t.metric(metric)
        if t.is_static:
            ax.axhline(mean[0], label=t.label, **style(t))
            continue
        line_style = style(t)
        ax.plot(t.steps, mean, label=t.label, **line_style)
        if t.seeds > 1:
            ax.fill_between(t.steps, mean - std, mean + std, color=line_style["color"], alpha=0.15, linewidth=0)
    if log_y is None:
        log_y = metric.endswith("loss")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlim(0, last)
    ax.set_xlabel("step")
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend(fontsize="x-small", ncol=2)
    _save(figure, path)
    return figure


def accuracy_vs_width(trajectories, metric: str = "test_accuracy", *, ax=None, path=None):
    """Final ``metric`` of finite networks against width (log x axis), limits as horizontal lines."""
    trajectories = _check(trajectories)
    _check_metric(metric)
    figure, ax = _figure(ax)
    finite: Dict[str, list] = {}
    for t in trajectories:
        if t.width != math.inf and t.regime == "finite":
            finite.setdefault(_group(t), []).append(t)
    style = _Styles(trajectories)
    for group, members in sorted(finite.items()):
        members.sort(key=lambda t: t.width)
        widths = [t.width for t in members]
        finals = np.array([t.final(metric) for t in members])
        ax.errorbar(widths, finals[:, 0], yerr=finals[:, 1], marker="o", capsize=3, label=f"finite {group}",
                    color=style.colors[group])
    for t in trajectories:
        if t.regime != "finite":
            ax.axhline(t.final(metric)[0], label=t.label, **style(t))
    if finite:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("width")
    ax.set_ylabel(f"final {metric.replace('_', ' ')}")
    ax.legend(fontsize="x-small", ncol=2)
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
    """Learning curves (test loss, test accuracy) and accuracy against width, in one figure."""
    trajectories = _check(trajectories)
    figure = Figure(figsize=(16.0, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    learning_curves(trajectories, "test_loss", ax=axes[0])
    learning_curves(trajectories, "test_accuracy", ax=axes[1])
    accuracy_vs_width(trajectories, "test_accuracy", ax=axes[2])
    for ax, title in zip(axes, ("test loss", "test accuracy", "final test accuracy against width")):
        ax.set_title(title)
    _save(figure, path)
    return figure
