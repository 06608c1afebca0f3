"""Experiments built on the library, shared by the command line and ``paper_figures/``.

* :mod:`~infinite_width.experiments.demo`: every regime side by side on one
  data set (``python -m infinite_width demo``,
  ``paper_figures/adam_closes_the_gap.py``);
* :mod:`~infinite_width.experiments.nnpk_ablation`: resumable NNPK ablations
  (``paper_figures/nnpk_ablation.py``).
"""

from infinite_width.experiments import demo, nnpk_ablation

__all__ = ["demo", "nnpk_ablation"]
