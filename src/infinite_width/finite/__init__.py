"""Finite networks of an [`Architecture`][infinite_width.Architecture], trained with optax.

* [`networks`][infinite_width.finite.networks]: [`network`][infinite_width.finite.network] builds a
  [`Network`][infinite_width.finite.Network] at any width, in the ntk, standard or muP
  parametrization, with Gaussian, orthogonal or uniform initialisation, and
  its per-group scales ([`LeafScale`][infinite_width.finite.LeafScale], docs/theory.md, sections 1 and 3);
* [`training`][infinite_width.finite.training]: [`train`][infinite_width.finite.train] an ensemble of seeds
  in one compiled call (returns [`Predictions`][infinite_width.Predictions], and
  the parameters as [`FiniteState`][infinite_width.finite.FiniteState] on request),
  [`width_sweep`][infinite_width.finite.width_sweep] over widths.
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
