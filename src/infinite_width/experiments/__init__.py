"""Experiments built on the library, shared by the command line and ``paper_figures/``.

* [`demo`][infinite_width.experiments.demo]: every regime side by side on one
  data set (``python -m infinite_width demo``);
* [`sernau`][infinite_width.experiments.sernau]: does an Adam-like limit close
  the gap to finite networks? Every regime tuned by one validation rule,
  with verdicts on the paper's three claims (Sernau 2024;
  ``paper_figures/sernau_2024.py``);
* [`nnpk_ablation`][infinite_width.experiments.nnpk_ablation]: resumable NNPK ablations
  across architectures, initialisations, activations, widths and numbers of
  networks (Amid et al. 2022, claim 1; ``paper_figures/nnpk_ablation.py``);
* [`nnpk_alignment`][infinite_width.experiments.nnpk_alignment]: is the structure of
  trained networks present at initialization? (claim 2;
  ``paper_figures/nnpk_alignment.py``);
* [`figures`][infinite_width.experiments.figures]: the colours and PDF/PNG output
  of these figures.
"""

from infinite_width.experiments import demo, figures, nnpk_ablation, nnpk_alignment, sernau

__all__ = ["demo", "figures", "nnpk_ablation", "nnpk_alignment", "sernau"]
