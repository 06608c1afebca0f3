"""Finite networks of an :class:`~infinite_width.Architecture`, trained with optax.

* :mod:`~infinite_width.finite.networks`: :func:`network` builds a
  :class:`Network` at any width, in the ntk, standard or muP
  parametrization, with Gaussian, orthogonal or uniform initialisation, and
  its per-group scales (:class:`LeafScale`, docs/theory.md, sections 1 and 3);
* :mod:`~infinite_width.finite.training`: :func:`train` an ensemble of seeds
  in one compiled call (returns :class:`~infinite_width.Predictions`, and
  the parameters as :class:`FiniteState` on request), :func:`width_sweep`
  over widths.
"""

from infinite_width.finite.networks import GROUPS, INITS, PARAMETRIZATIONS, LeafScale, Network, network
from infinite_width.finite.training import RATES, FiniteState, train, train_checked, width_sweep

__all__ = [
    "network",
    "Network",
    "LeafScale",
    "PARAMETRIZATIONS",
    "INITS",
    "GROUPS",
    "RATES",
    "train",
    "train_checked",
    "FiniteState",
    "width_sweep",
]
