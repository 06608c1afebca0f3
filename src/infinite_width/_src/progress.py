"""Progress bars: the one place that creates them and decides whether they are shown.

A bar is shown when it is asked for (``progress=True``, the library's
option everywhere) and someone watches: stderr is a terminal, or the code
runs in a Jupyter kernel. Written to a log file or a pipe, a tqdm bar is
hundreds of carriage returns and cursor escapes, so there it stays off and
the loop runs unchanged. In a notebook the bar is tqdm's widget when
ipywidgets is installed, and its text bar otherwise (``tqdm.auto`` would
warn "IProgress not found" at import).
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["progress_bar", "shows_progress"]


def _in_notebook() -> bool:
    """Whether stderr is a Jupyter kernel's stream (which renders carriage returns)."""
    return "ipykernel" in sys.modules and type(sys.stderr).__module__.startswith("ipykernel")


def shows_progress(progress: bool = True, stream=None) -> bool:
    """Whether a bar asked for by ``progress`` is shown: stderr (or ``stream``) is a terminal or a notebook.

    Args:
      progress: whether the caller asks for a bar.
      stream: the stream the bar would write to; None is ``sys.stderr``.
    """
    if not progress:
        return False
    if stream is None:
        if _in_notebook():
            return True
        stream = sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def progress_bar(iterable=None, *, progress: bool = True, **options):
    """A tqdm bar over ``iterable`` (or of ``total=`` units), disabled unless `shows_progress`.

    Args:
      iterable: what the bar iterates over, or None for a bar updated by hand (``bar.update(n)``).
      progress: whether the caller asks for a bar.
      **options: tqdm's options (``desc``, ``total``, ``unit``, ``leave``, ``file``, ...).
    """
    shown = shows_progress(progress, options.get("file"))
    if shown and _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(iterable, disable=not shown, **options)
