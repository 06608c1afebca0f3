"""The options of finite-network training, in one record: [`Finite`][infinite_width.finite.Finite].

[`infinite_width.finite.train`][infinite_width.finite.train] takes it whole
(its keyword arguments only build one), and
[`infinite_width.Finite`][infinite_width.Finite], the method that
[`infinite_width.solve`][infinite_width.solve] runs, is this record with the
method interface added, so each option has one default and one check, here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from infinite_width._src.checks import check_choice, check_int
from infinite_width._src.vocabulary import canonical_keywords
from infinite_width.architectures import Architecture
from infinite_width.finite.networks import INITS, PARAMETRIZATIONS, Network, network

__all__ = ["Finite", "RATES"]

RATES = ("per_group", "global")
"""`rates`: the limit-matched per-group rates and epsilons, or one global optax rate and eps."""


def check_bool(name: str, value) -> None:
    """`TypeError` naming `name` unless `value` is True or False (numpy bools included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Finite:
    """`seeds` finite networks of `width`, and how they are trained.

    Attributes:
      width: hidden width (an int >= 1).
      seeds: independent initialisations, trained in one vectorised call.
      parametrization: `"ntk"`, `"standard"` or `"mup"`
        ([`infinite_width.finite.network`][infinite_width.finite.network]).
      init: `"gaussian"`, `"orthogonal"` or `"uniform"`.
      centered: train `f - f_0` (the default everywhere: every limit starts
        from 0, so centered networks are comparable with them); False
        trains the raw network.
      rates: `"per_group"` (default): Adam and sign use the limit-matched
        per-group rates `lr * r_grp` and epsilons `eps * s_grp`, so the
        network converges to the Adam-like limit as the width grows;
        `"global"`: one optax learning rate and the given `eps` for every
        parameter, as in flax or PyTorch (no width-independent limit);
        docs/theory.md, section 3. It applies to
        [`infinite_width.optim`][infinite_width.optim] specs: a raw optax
        transformation is applied as it is to every trained parameter.
      linearized: train the network's linearization at init,
        `f_0 + J(theta_0) (theta - theta_0)`: feature learning disabled in
        every layer, at any width (`readout_only=True` disables it by
        training the readout only). With SGD it is exactly empirical-NTK
        descent; as the width grows it tends to NTK descent (SGD) and to the
        Adam-like limit (Adam, per-group rates).

    [`traditional`][infinite_width.finite.options.Finite.traditional] builds the
    practitioner's network (standard parametrization, global rates, not
    centered).
    """

    width: int
    seeds: int = 1
    parametrization: str = "ntk"
    init: str = "gaussian"
    centered: bool = True
    rates: str = "per_group"
    linearized: bool = False

    def __post_init__(self):
        object.__setattr__(self, "width", check_int("width", self.width, 1))
        object.__setattr__(self, "seeds", check_int("seeds", self.seeds, 1))
        check_choice("parametrization", self.parametrization, PARAMETRIZATIONS)
        check_choice("init", self.init, INITS)
        check_bool("centered", self.centered)
        check_choice("rates", self.rates, RATES)
        check_bool("linearized", self.linearized)
        object.__setattr__(self, "centered", bool(self.centered))
        object.__setattr__(self, "linearized", bool(self.linearized))

    @classmethod
    def traditional(cls, width: int, seeds: int = 3, parametrization: str = "standard", init: str = "gaussian"):
        """The network a practitioner trains in flax or PyTorch: the baseline infinite-width models are compared with.

        Standard parametrization (`"mup"` as a variant), one global optax
        learning rate with the usual `eps` (`rates="global"`: with
        `optim.adam(1e-3)` this is `optax.adam(1e-3)`), not centered.

        Args:
          width: hidden width.
          seeds: independent initialisations.
          parametrization: `"standard"` or `"mup"` (or `"ntk"`).
          init: the initialisation.

        Returns:
          The record (of the class it is called on).
        """
        return cls(width, seeds=seeds, parametrization=parametrization, init=init, centered=False, rates="global")

    def network(self, arch: Architecture) -> Network:
        """The finite network of `arch` these options train.

        Args:
          arch: the [`Architecture`][infinite_width.Architecture].

        Returns:
          The [`Network`][infinite_width.finite.Network] of this width, parametrization and init.
        """
        return network(arch, self.width, parametrization=self.parametrization, init=self.init)


Finite.__init__ = canonical_keywords(Finite.__init__)
