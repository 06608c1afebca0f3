"""Optimizer specs shared by finite networks and infinite-width limits.

An :class:`Optimizer` is a plain description: its name and hyper-parameters.
Both sides read the same spec:

* the finite trainer (:mod:`infinite_width.finite.training`) turns it into optax
  transformations, one per parameter group;
* the infinite-width side reads it for its limit: NTK / NNGP kernel dynamics
  for ``sgd`` and ``momentum``, the Adam-like limit
  (:mod:`infinite_width.limits.adam_limit`) for ``adam`` and ``sign``.

Every optimizer moves a scalar parameter ``p`` of group ``grp`` by
``dp = -lr * r_grp * Q_t(G_p(0..t))``, where ``Q_t`` is the optimizer's
*direction* (:meth:`Optimizer.direction`):

=========  ===========================================  =========================
name       direction ``Q_t``                             learning rate per group
=========  ===========================================  =========================
sgd        ``G``                                         ``lr`` (one global rate)
momentum   ``m_t = beta m_{t-1} + G``                    ``lr`` (one global rate)
adam       ``m_hat / (sqrt(v_hat) + eps_grp)``           ``lr * r_grp``
sign       ``sign(G)``                                   ``lr * r_grp``
=========  ===========================================  =========================

For ``adam`` and ``sign`` the per-group factors of
docs/theory.md, section 3 apply (``n`` the width, ``d`` the
input dimension)::

    group                 s_grp (G = s g)     r_grp
    hidden W^l, l >= 2    W_std / n           1 / n
    input W^1             W_std / sqrt(n d)   1 / sqrt(n d)
    hidden bias b^l       b_std / sqrt(n)     1 / sqrt(n)
    readout W^{L+1}       W_std / sqrt(n)     1 / sqrt(n)
    output bias           b_std               1

and Adam's epsilon acts on the normalized gradient ``g``: group ``grp`` uses
``eps_grp = eps * s_grp``, so Adam and sign are exactly invariant to the scale
``s_grp`` and the same spec means the same function-space dynamics at every
width.
"""

from __future__ import annotations

import dataclasses

import optax

from infinite_width._src.checks import check_decay, check_nonnegative, check_positive

__all__ = ["Optimizer", "sgd", "momentum", "adam", "sign", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "momentum", "adam", "sign")


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A description of an entrywise optimizer; build one with :func:`sgd`, :func:`momentum`, :func:`adam` or :func:`sign`.

    Hyper-parameters are real numbers (Python or numpy scalars, stored as
    Python floats): ``TypeError`` naming the field for anything else (a
    string, a bool), ``ValueError`` for ``lr <= 0``, ``beta``, ``b1`` or
    ``b2`` outside [0, 1), ``eps < 0``, NaN or Inf.
    """

    name: str
    lr: float
    beta: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; expected one of {OPTIMIZERS}")
        # Stored as Python floats: numpy scalars are accepted, and reprs and metadata stay plain.
        object.__setattr__(self, "lr", check_positive("lr (the learning rate)", self.lr))
        for field in ("beta", "b1", "b2"):
            object.__setattr__(self, field, check_decay(field, getattr(self, field)))
        object.__setattr__(self, "eps", check_nonnegative("eps", self.eps))

    @property
    def adaptive(self) -> bool:
        """True for Adam and sign: per-group rates ``r_grp`` and the Adam-like limit apply."""
        return self.name in ("adam", "sign")

    def direction(self, eps_scale: float = 1.0) -> optax.GradientTransformation:
        """The transformation ``G -> Q_t(G)`` (no learning rate, no sign flip).

        ``eps_scale`` multiplies Adam's epsilon: the finite trainer passes
        ``s_grp`` so that group ``grp`` uses ``eps * s_grp``; the infinite-width
        limit applies the direction to normalized gradients and passes 1.
        """
        if self.name == "sgd":
            return optax.identity()
        if self.name == "momentum":
            return optax.trace(decay=self.beta)
        if self.name == "adam":
            return optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps * eps_scale)
        return optax.scale_by_sign()

    def describe(self) -> str:
        if self.name == "sgd":
            return f"sgd(lr={self.lr:g})"
        if self.name == "momentum":
            return f"momentum(lr={self.lr:g}, beta={self.beta:g})"
        if self.name == "adam":
            return f"adam(lr={self.lr:g}, b1={self.b1:g}, b2={self.b2:g}, eps={self.eps:g})"
        return f"sign(lr={self.lr:g})"


def sgd(lr: float) -> Optimizer:
    """Plain gradient descent with one global learning rate (its limit is NTK gradient descent)."""
    return Optimizer("sgd", lr)


def momentum(lr: float, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum ``m_t = beta m_{t-1} + G``, ``dp = -lr m_t``, one global rate."""
    return Optimizer("momentum", lr, beta=beta)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam (bias-corrected) with per-group rates ``lr * r_grp`` and epsilons ``eps * s_grp``."""
    return Optimizer("adam", lr, b1=b1, b2=b2, eps=eps)


def sign(lr: float) -> Optimizer:
    """SignSGD, ``dp = -lr * r_grp * sign(G)`` (Adam with b1 = b2 = 0 and eps = 0)."""
    return Optimizer("sign", lr, b1=0.0, b2=0.0, eps=0.0)
