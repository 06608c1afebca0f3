"""Experiments built on the library, shared by the command line and ``paper_figures/``.

The experiments:

* [`demo`][infinite_width.experiments.demo]: every regime side by side on one
  data set (``python -m infinite_width demo``);
* [`sernau`][infinite_width.experiments.sernau]: does an Adam-like limit close
  the gap to finite networks? Learning curves of every regime, each stopped
  early on one validation split with grids that bracket their optimum, with
  verdicts on the paper's three claims (Sernau 2024; ``paper_figures/sernau_2024.py``);
* [`nnpk_ablation`][infinite_width.experiments.nnpk_ablation]: resumable NNPK ablations
  across architectures, initialisations, activations, widths and numbers of
  networks (Amid et al. 2022, claim 1; ``paper_figures/nnpk_ablation.py``);
* [`nnpk_alignment`][infinite_width.experiments.nnpk_alignment]: is the structure of
  trained networks present at initialization? (claim 2;
  ``paper_figures/nnpk_alignment.py``).

Their toolkit, one of each:

* [`validation`][infinite_width.experiments.validation]: the validation split;
* [`bootstrap`][infinite_width.experiments.bootstrap]: the bootstrap (paired, `scipy.stats.bootstrap`);
* [`store`][infinite_width.experiments.store]: the resumable store of results;
* [`tuning`][infinite_width.experiments.tuning]: grids that bracket their optimum, early stopping;
* [`images`][infinite_width.experiments.images]: average pooling of images;
* [`figures`][infinite_width.experiments.figures]: the colours and PDF/PNG output of the figures;
* [`scripts`][infinite_width.experiments.scripts]: the command-line plumbing of ``paper_figures/``.
"""

import importlib

__all__ = ["bootstrap", "demo", "figures", "images", "nnpk_ablation", "nnpk_alignment", "scripts", "sernau", "store",
           "tuning", "validation"]


def __getattr__(name: str):
    # Imported on first access: the command line reads the demo's options without loading jax.
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
