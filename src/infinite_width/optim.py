"""Optimizer specs shared by finite networks and infinite-width limits.

An [`Optimizer`][infinite_width.optim.Optimizer] is a plain description: its name and hyper-parameters.
Both sides read the same spec:

* the finite trainer ([`infinite_width.finite.training`][]) turns it into optax
  transformations, one per parameter group;
* the infinite-width side reads it for its limit: NTK / NNGP kernel dynamics
  for ``sgd`` and ``momentum``, the Adam-like limit
  ([`infinite_width.limits.adam_limit`][]) for ``adam`` and ``sign``.

Every optimizer moves a scalar parameter ``p`` of group ``grp`` by
``dp = -lr * r_grp * Q_t(G_p(0..t))``, where ``Q_t`` is the optimizer's
*direction* ([`Optimizer.direction`][infinite_width.optim.Optimizer.direction]):

| name | direction ``Q_t`` | learning rate per group |
|---|---|---|
| sgd | ``G`` | ``lr`` (one global rate) |
| momentum | ``m_t = beta m_{t-1} + G`` | ``lr`` (one global rate) |
| adam | ``m_hat / (sqrt(v_hat) + eps_grp)`` | ``lr * r_grp`` |
| sign | ``sign(G)`` | ``lr * r_grp`` |

For ``adam`` and ``sign`` the per-group factors of
docs/theory.md, section 3 apply (``n`` the width, ``d`` the
input dimension):

```text
group                 s_grp (G = s g)     r_grp
hidden W^l, l >= 2    W_std / n           1 / n
input W^1             W_std / sqrt(n d)   1 / sqrt(n d)
hidden bias b^l       b_std / sqrt(n)     1 / sqrt(n)
readout W^{L+1}       W_std / sqrt(n)     1 / sqrt(n)
output bias           b_std               1
```

and Adam's epsilon acts on the normalized gradient ``g``: group ``grp`` uses
``eps_grp = eps * s_grp``, so Adam and sign are exactly invariant to the scale
``s_grp`` and the same spec means the same function-space dynamics at every
width. (``infinite_width.Finite(rates="global")`` instead uses ``lr`` and
``eps`` for every group: the practitioner's optax optimizer.)

Learning-rate schedules (docs/theory.md, section 3): ``schedule=`` multiplies
step ``t``'s update by ``factor(t)``, ``lr_t = lr * factor(t)``, after the
direction (Adam's moments are unchanged), in every regime: the finite
trainer, kernel dynamics and the Adam-like limit. [`constant`][infinite_width.optim.constant] (the
default), [`warmup_cosine`][infinite_width.optim.warmup_cosine] and [`step_decay`][infinite_width.optim.step_decay]
build the [`Schedule`][infinite_width.optim.Schedule] specs (hashable, described as JSON by
[`Schedule.describe`][infinite_width.optim.Schedule.describe]);
[`Optimizer.rate_factors`][infinite_width.optim.Optimizer.rate_factors] gives the factors of a run.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np
import optax

from infinite_width._src.checks import check_decay, check_int, check_nonnegative, check_positive

__all__ = ["Optimizer", "sgd", "momentum", "adam", "sign", "OPTIMIZERS", "Schedule", "SCHEDULES", "constant",
           "warmup_cosine", "step_decay"]

OPTIMIZERS = ("sgd", "momentum", "adam", "sign")
SCHEDULES = ("constant", "warmup_cosine", "step_decay")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: step ``t`` (from 0) moves by ``lr * factor(t)``; build one with
    [`constant`][infinite_width.optim.constant], [`warmup_cosine`][infinite_width.optim.warmup_cosine] or
    [`step_decay`][infinite_width.optim.step_decay].

    Calling it, ``schedule(t)``, gives ``factor(t)`` for an int or an integer
    jax array (traceable, an optax schedule); [`factors`][infinite_width.optim.Schedule.factors] the (steps,)
    factors of a run.
    """

    name: str = "constant"
    warmup: int = 0
    total: int = 0
    final: float = 0.0
    boundaries: Tuple[int, ...] = ()
    factor: float = 1.0

    def __post_init__(self):
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; expected one of {SCHEDULES}")
        if self.name == "warmup_cosine":
            object.__setattr__(self, "warmup", check_int("warmup", self.warmup, 0))
            object.__setattr__(self, "total", check_int("total", self.total, self.warmup + 1))
            object.__setattr__(self, "final", check_nonnegative("final", self.final))
        if self.name == "step_decay":
            boundaries = tuple(check_int("boundaries", b, 1) for b in np.atleast_1d(self.boundaries).tolist())
            if not boundaries or any(b >= c for b, c in zip(boundaries, boundaries[1:])):
                raise ValueError(f"boundaries must be a non-empty increasing sequence of steps >= 1, got {boundaries}")
            object.__setattr__(self, "boundaries", boundaries)
            object.__setattr__(self, "factor", check_positive("factor", self.factor))

    @property
    def is_constant(self) -> bool:
        """True for [`constant`][infinite_width.optim.constant]: every factor is 1 (closed forms of constant-rate dynamics apply)."""
        return self.name == "constant"

    def optax_schedule(self) -> optax.Schedule:
        """The optax schedule ``t -> factor(t)``."""
        if self.name == "warmup_cosine":
            return optax.warmup_cosine_decay_schedule(0.0, 1.0, self.warmup, self.total, end_value=self.final)
        if self.name == "step_decay":
            return optax.piecewise_constant_schedule(1.0, {b: self.factor for b in self.boundaries})
        return optax.constant_schedule(1.0)

    def __call__(self, t):
        return self.optax_schedule()(t)

    def factors(self, steps: int) -> np.ndarray:
        """``factor(t)`` for ``t = 0 .. steps - 1``, shape (steps,), float64."""
        steps = check_int("steps", steps, 0)
        return np.broadcast_to(np.asarray(self(jnp.arange(steps)), dtype=np.float64), (steps,)).copy()

    def describe(self) -> dict:
        """The schedule as a JSON-able dict (only the fields its kind uses)."""
        used = {"constant": (), "warmup_cosine": ("warmup", "total", "final"),
                "step_decay": ("boundaries", "factor")}[self.name]
        fields = {name: getattr(self, name) for name in used}
        if "boundaries" in fields:
            fields["boundaries"] = list(fields["boundaries"])
        return {"name": self.name, **fields}


def constant() -> Schedule:
    """Factor 1 at every step (the default)."""
    return Schedule()


def warmup_cosine(warmup: int, total: int, final: float = 0.0) -> Schedule:
    """Linear warmup from 0 to 1 over ``warmup`` steps, then cosine decay to ``final`` at step ``total``
    (optax's ``warmup_cosine_decay_schedule(0, 1, warmup, total, final)``; ``total`` counts the warmup).

    Step 0 has factor 0 when ``warmup > 0``; after ``total`` the factor stays ``final``.
    """
    return Schedule("warmup_cosine", warmup=warmup, total=total, final=final)


def step_decay(boundaries: Sequence[int], factor: float = 0.1) -> Schedule:
    """Factor 1, multiplied by ``factor`` at each step of ``boundaries`` (optax's piecewise constant schedule)."""
    return Schedule("step_decay", boundaries=tuple(np.atleast_1d(boundaries).tolist()), factor=factor)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A description of an entrywise optimizer; build one with [`sgd`][infinite_width.optim.sgd], [`momentum`][infinite_width.optim.momentum], [`adam`][infinite_width.optim.adam] or [`sign`][infinite_width.optim.sign].

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
    schedule: Schedule = Schedule()

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; expected one of {OPTIMIZERS}")
        # Stored as Python floats: numpy scalars are accepted, and reprs and metadata stay plain.
        object.__setattr__(self, "lr", check_positive("lr (the learning rate)", self.lr))
        for field in ("beta", "b1", "b2"):
            object.__setattr__(self, field, check_decay(field, getattr(self, field)))
        object.__setattr__(self, "eps", check_nonnegative("eps", self.eps))
        if not isinstance(self.schedule, Schedule):
            raise TypeError(
                "schedule must be an infinite_width.optim.Schedule (constant(), warmup_cosine(...), step_decay(...)), "
                f"got {self.schedule!r}"
            )

    def __repr__(self) -> str:
        # A constant schedule is no schedule: leaving it out keeps the repr, and so the fingerprints of
        # sweeps saved before schedules existed (workflow/sweeps.py), what it was.
        shown = [f for f in dataclasses.fields(self) if not (f.name == "schedule" and self.schedule.is_constant)]
        return f"Optimizer({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    def rate_factors(self, steps: int) -> np.ndarray:
        """The schedule's factors of steps ``0 .. steps - 1``, shape (steps,): step t moves by ``lr * factors[t]``."""
        return self.schedule.factors(steps)

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
            text = f"sgd(lr={self.lr:g}"
        elif self.name == "momentum":
            text = f"momentum(lr={self.lr:g}, beta={self.beta:g}"
        elif self.name == "adam":
            text = f"adam(lr={self.lr:g}, b1={self.b1:g}, b2={self.b2:g}, eps={self.eps:g}"
        else:
            text = f"sign(lr={self.lr:g}"
        if not self.schedule.is_constant:
            options = ", ".join(f"{k}={v}" for k, v in self.schedule.describe().items() if k != "name")
            text += f", schedule={self.schedule.name}({options})"
        return text + ")"


def _schedule(schedule: Optional[Schedule]) -> Schedule:
    return constant() if schedule is None else schedule


def sgd(lr: float, *, schedule: Optional[Schedule] = None) -> Optimizer:
    """Plain gradient descent with one global learning rate (its limit is NTK gradient descent)."""
    return Optimizer("sgd", lr, schedule=_schedule(schedule))


def momentum(lr: float, beta: float = 0.9, *, schedule: Optional[Schedule] = None) -> Optimizer:
    """Heavy-ball momentum ``m_t = beta m_{t-1} + G``, ``dp = -lr m_t``, one global rate."""
    return Optimizer("momentum", lr, beta=beta, schedule=_schedule(schedule))


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *,
         schedule: Optional[Schedule] = None) -> Optimizer:
    """Adam (bias-corrected) with per-group rates ``lr * r_grp`` and epsilons ``eps * s_grp``."""
    return Optimizer("adam", lr, b1=b1, b2=b2, eps=eps, schedule=_schedule(schedule))


def sign(lr: float, *, schedule: Optional[Schedule] = None) -> Optimizer:
    """SignSGD, ``dp = -lr * r_grp * sign(G)`` (Adam with b1 = b2 = 0 and eps = 0)."""
    return Optimizer("sign", lr, b1=0.0, b2=0.0, eps=0.0, schedule=_schedule(schedule))
