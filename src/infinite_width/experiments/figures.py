"""Colours and file output of the reproduction figures (``paper_figures/nnpk_*.py``).

One place for the colours, so that every figure of the reproductions uses
the same ones: [`PALETTE`][infinite_width.experiments.figures.PALETTE] (a colour per curve, in order) and
[`REFERENCE_COLOR`][infinite_width.experiments.figures.REFERENCE_COLOR] (closed-form infinite-width references). Figures
are `matplotlib.figure.Figure` objects drawn on the Agg canvas (no
display, the user's backend untouched) and saved by [`save`][infinite_width.experiments.figures.save] as PDF and
PNG.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple, Union

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from infinite_width._src.files import atomic_path

__all__ = ["PALETTE", "REFERENCE_COLOR", "FORMATS", "new_figure", "color", "reference_line", "figure_legend", "save"]

PALETTE: Tuple[str, ...] = (
    "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
    "tab:cyan", "tab:gray",
)
"""Curve colours, in order (matplotlib's tab10, colour-blind friendlier than its default cycle)."""
REFERENCE_COLOR = "black"
"""Colour of closed-form (NNGP / CNN-GP) references and other baselines drawn in black."""
FORMATS: Tuple[str, ...] = ("pdf", "png")
"""The formats [`save`][infinite_width.experiments.figures.save] writes."""


def color(index: int) -> str:
    """The ``index``-th colour of [`PALETTE`][infinite_width.experiments.figures.PALETTE] (cycling)."""
    return PALETTE[index % len(PALETTE)]


def new_figure(rows: int, columns: int, *, panel_size=(3.6, 2.9), **subplot_options):
    """A constrained-layout figure with a grid of panels: ``(figure, axes)`` with axes of shape (rows, columns)."""
    figure = Figure(figsize=(panel_size[0] * columns, panel_size[1] * rows + 0.9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False, **subplot_options)
    return figure, axes


def reference_line(label: str, linestyle: str = "--") -> Tuple[Line2D, str]:
    """A legend entry (handle, label) for reference lines of this style (drawn in black or in their curve's colour)."""
    return Line2D([], [], color=REFERENCE_COLOR, linestyle=linestyle, linewidth=1.0), label


def figure_legend(figure: Figure, axes: Iterable, columns: int = 4, extra: Sequence[Tuple] = ()) -> None:
    """One legend for the whole figure, below the panels: every labelled artist once, in order of appearance,
    then the ``(handle, label)`` pairs of ``extra``."""
    handles: List = []
    labels: List[str] = []
    pairs = [pair for ax in axes for pair in zip(*ax.get_legend_handles_labels())] + list(extra)
    for handle, label in pairs:
        if label not in labels:
            handles.append(handle)
            labels.append(label)
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncol=min(columns, len(labels)), fontsize=8,
                      frameon=False)


def save(figure: Figure, stem: Union[str, os.PathLike], formats: Sequence[str] = FORMATS) -> List[Path]:
    """Write ``figure`` as ``<stem>.pdf`` and ``<stem>.png`` (atomically); return the paths."""
    paths = []
    for extension in formats:
        path = Path(f"{os.fspath(stem)}.{extension}")
        with atomic_path(path, suffix=f".{extension}") as temporary:
            figure.savefig(temporary, dpi=150, format=extension)
        paths.append(path)
    return paths
