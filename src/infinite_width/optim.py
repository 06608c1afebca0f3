"""Optimizer specs shared by finite networks and infinite-width limits.

An [`Optimizer`][infinite_width.optim.Optimizer] is a plain description: its
name and hyper-parameters. Both sides read the same spec:

* the finite trainer ([`infinite_width.finite.training`][infinite_width.finite.training])
  turns it into optax transformations, one per parameter group;
* the infinite-width side reads it for its limit: NTK / NNGP kernel dynamics
  for `sgd` and `momentum`, the Adam-like limit
  ([`infinite_width.limits.adam_limit`][infinite_width.limits.adam_limit]) for `adam` and `sign`.

The constructors take optax's names and order (`sgd(learning_rate, momentum,
nesterov)`, `adam(learning_rate, b1, b2, eps)`), so `optim.adam(learning_rate=1e-3)`
reads like `optax.adam(learning_rate=1e-3)`; the spec stores the rate as `lr`.

Every optimizer moves a scalar parameter `p` of group `grp` by
`dp = -lr_t * r_grp * Q_t(G_p(0..t))`, where `Q_t` is the optimizer's
*direction* ([`Optimizer.direction`][infinite_width.optim.Optimizer.direction]):

| name | direction `Q_t` | learning rate per group |
|---|---|---|
| sgd | `G` | `lr_t` (one global rate) |
| momentum | `m_t = beta m_{t-1} + G` | `lr_t` (one global rate) |
| adam | `m_hat / (sqrt(v_hat) + eps_grp)` | `lr_t * r_grp` |
| sign | `sign(G)` | `lr_t * r_grp` |

For `adam` and `sign` the per-group factors of docs/theory.md, section 3
apply (`n` the width, `d` the input dimension):

| group | `s_grp` (`G = s g`) | `r_grp` |
|---|---|---|
| hidden `W^l`, `l >= 2` | `W_std / n` | `1 / n` |
| input `W^1` | `W_std / sqrt(n d)` | `1 / sqrt(n d)` |
| hidden bias `b^l` | `b_std / sqrt(n)` | `1 / sqrt(n)` |
| readout `W^{L+1}` | `W_std / sqrt(n)` | `1 / sqrt(n)` |
| output bias | `b_std` | `1` |

and Adam's epsilon acts on the normalized gradient `g`: group `grp` uses
`eps_grp = eps * s_grp`, so Adam and sign are exactly invariant to the scale
`s_grp` and the same spec means the same function-space dynamics at every
width. (`infinite_width.Finite(rates="global")` instead uses `lr` and `eps`
for every group: the practitioner's optax optimizer.)

Learning-rate schedules (docs/theory.md, section 3): the learning rate may be
any optax schedule, a function `step -> rate` such as
`optax.warmup_cosine_decay_schedule(0.0, 1e-3, 50, 500)`, as in optax. Step
`t` then moves by `lr_t = schedule(t)`, after the direction (Adam's moments
are unchanged), in every regime: the finite trainer, kernel dynamics and the
Adam-like limit, which evaluate it at traced steps. The spec keeps it as
`lr = 1` and a [`Schedule`][infinite_width.optim.Schedule] of factors
(`lr_t = lr * schedule(t)`), the interface the limits read.

Finite networks also train under any `optax.GradientTransformation`
(`iw.solve(..., iw.Finite(256), optax.adam(1e-3))`), applied as it is to
every trained parameter; a limit needs a spec, since it must know the
entrywise rule ([`check_optimizer`][infinite_width.optim.check_optimizer]).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from infinite_width._src.checks import check_decay, check_nonnegative, check_positive
from infinite_width._src.vocabulary import NON_CANONICAL, canonical_keywords

__all__ = ["Optimizer", "Schedule", "sgd", "momentum", "adam", "sign", "OPTIMIZERS", "AnyOptimizer",
           "is_transformation", "check_optimizer", "metadata", "summary"]

OPTIMIZERS = ("sgd", "momentum", "adam", "sign")

AnyOptimizer = Union["Optimizer", optax.GradientTransformation]
"""What the trained methods accept: a spec, or (finite networks only) any optax transformation."""

# The constructors mirror optax: there ``learning_rate`` is the word, and ``lr`` the other spelling.
_OPTAX_SPELLINGS = {**{k: v for k, v in NON_CANONICAL.items() if k != "learning_rate"}, "lr": "learning_rate"}
_optax_keywords = canonical_keywords(spellings=_OPTAX_SPELLINGS)

# Schedules are described by value (their closure and constants, recursively) to this depth.
_DESCRIBE_DEPTH = 8


def _describe_value(value, depth: int):
    """A JSON-able description of a value a schedule holds: numbers, lists, dicts, nested schedules."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = value.item() if isinstance(value, np.generic) else value
        return number if not isinstance(number, float) or math.isfinite(number) else repr(number)
    if isinstance(value, (np.ndarray, jax.Array)) and value.size <= 64:
        return _describe_value(np.asarray(value).tolist(), depth)
    if isinstance(value, (list, tuple)):
        return [_describe_value(item, depth) for item in value]
    if isinstance(value, dict):
        ordered = sorted(value.items(), key=lambda item: str(item[0]))
        return {str(key): _describe_value(item, depth) for key, item in ordered}
    if callable(value) and depth < _DESCRIBE_DEPTH:
        return _describe_function(value, depth + 1)
    return type(value).__qualname__


def _describe_function(function: Callable, depth: int = 0) -> dict:
    """The function's name, the numbers in its code, its closure and a digest of its bytecode.

    Two optax schedules with other parameters differ in their closures, two
    lambdas in their constants or code; no memory address enters, so the
    description (and a sweep's fingerprint) is the same in every process.
    A schedule that reads global variables is described without their values.
    """
    if isinstance(function, functools.partial):
        return {"partial": _describe_function(function.func, depth), "args": _describe_value(function.args, depth),
                "keywords": _describe_value(function.keywords, depth)}
    name = getattr(function, "__qualname__", type(function).__qualname__)
    described = {"function": f"{getattr(function, '__module__', '')}.{name}"}
    code = getattr(function, "__code__", None)
    if code is not None:
        described["constants"] = [_describe_value(c, depth) for c in code.co_consts
                                  if isinstance(c, (int, float)) and not isinstance(c, bool)]
        cells = {}
        for variable, cell in zip(code.co_freevars, function.__closure__ or ()):
            try:
                cells[variable] = _describe_value(cell.cell_contents, depth)
            except ValueError:  # an empty cell
                cells[variable] = None
        described["closure"] = cells
        described["code"] = hashlib.sha256(code.co_code).hexdigest()[:16]
    return described


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The learning-rate factor of step `t`: step `t` moves by `lr * schedule(t)`.

    `rate=None` is the constant factor 1 (no schedule); otherwise `rate` is an
    optax schedule (any function `step -> factor` jax can trace), checked
    when the spec is built: a real scalar for a traced int32 step, finite and
    `>= 0` at step 0. Build it through the optimizers
    (`optim.sgd(optax.cosine_decay_schedule(0.1, 100))`) rather than directly.

    Attributes:
      rate: the schedule, or None for the constant factor 1.
    """

    rate: Optional[Callable] = None

    def __post_init__(self):
        if self.rate is None:
            return
        if not callable(self.rate):
            raise TypeError(
                f"a schedule must be a function step -> learning rate (an optax schedule), got {self.rate!r}")
        try:
            traced = jax.eval_shape(self.rate, jax.ShapeDtypeStruct((), jnp.int32))
        except Exception as error:
            raise TypeError(
                "the learning-rate schedule must be a jax-traceable function step -> rate (the limits evaluate it at "
                f"traced steps), as optax schedules are; calling it on a traced step failed: {error}"
            ) from error
        if getattr(traced, "shape", None) != () or not jnp.issubdtype(traced.dtype, jnp.number) \
                or jnp.issubdtype(traced.dtype, jnp.complexfloating):
            raise TypeError(f"the learning-rate schedule must return a real scalar, got {traced}")
        check_nonnegative("the learning-rate schedule at step 0", np.asarray(self.rate(jnp.asarray(0, jnp.int32))))

    @property
    def is_constant(self) -> bool:
        """True without a schedule: every factor is 1 (closed forms of constant-rate dynamics apply)."""
        return self.rate is None

    def __call__(self, t):
        """`factor(t)` for an int or an integer jax array (traceable)."""
        return 1.0 if self.rate is None else self.rate(t)

    def describe(self) -> dict:
        """The schedule as a JSON-able dict: `{"name": "constant"}`, or `{"name": "schedule", ...}` with its
        function, the numbers in its code and its closure (recursively), without memory addresses."""
        if self.rate is None:
            return {"name": "constant"}
        return {"name": "schedule", **_describe_function(self.rate)}

    def __repr__(self) -> str:
        # By value (no memory address): the repr is part of a sweep job's fingerprint.
        return f"Schedule({json.dumps(self.describe(), sort_keys=True)})"


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A description of an entrywise optimizer; build one with [`sgd`][infinite_width.optim.sgd],
    [`momentum`][infinite_width.optim.momentum], [`adam`][infinite_width.optim.adam] or
    [`sign`][infinite_width.optim.sign].

    Hyper-parameters are real numbers (Python or numpy scalars, stored as
    Python floats): `TypeError` naming the field for anything else (a
    string, a bool), `ValueError` for `lr <= 0`, `beta`, `b1` or `b2`
    outside [0, 1), `eps < 0`, NaN or Inf.

    Attributes:
      name: one of `OPTIMIZERS`.
      lr: the learning rate (1 when `schedule` gives the rates).
      beta: heavy-ball momentum (`"momentum"` only).
      b1: Adam's first-moment decay (`"adam"`; 0 for `"sign"`, which is Adam with 0, 0, 0).
      b2: Adam's second-moment decay (`"adam"`; 0 for `"sign"`).
      eps: Adam's epsilon, on the normalized gradient (`"adam"`; 0 for `"sign"`).
      schedule: step `t` moves by `lr * schedule(t)`.
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
            raise TypeError(f"schedule must be an infinite_width.optim.Schedule, got {self.schedule!r}")

    def __repr__(self) -> str:
        # A constant schedule is no schedule: leaving it out keeps the repr, and so the fingerprints of
        # sweeps saved before schedules existed (workflow/sweeps.py), what it was.
        shown = [f for f in dataclasses.fields(self) if not (f.name == "schedule" and self.schedule.is_constant)]
        return f"Optimizer({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    def rate(self, t):
        """The learning rate of step `t`, `lr * schedule(t)` (traceable in `t`).

        Args:
          t: the step, an int or an integer jax array.
        """
        return self.lr if self.schedule.is_constant else self.lr * self.schedule(t)

    @property
    def adaptive(self) -> bool:
        """True for Adam and sign: per-group rates `r_grp` and the Adam-like limit apply."""
        return self.name in ("adam", "sign")

    def direction(self, eps_scale: float = 1.0) -> optax.GradientTransformation:
        """The transformation `G -> Q_t(G)` (no learning rate, no sign flip).

        Args:
          eps_scale: multiplies Adam's epsilon: the finite trainer passes
            `s_grp` so that group `grp` uses `eps * s_grp`; the
            infinite-width limit applies the direction to normalized gradients
            and passes 1.

        Returns:
          The optax transformation of the direction.
        """
        if self.name == "sgd":
            return optax.identity()
        if self.name == "momentum":
            return optax.trace(decay=self.beta)
        if self.name == "adam":
            return optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps * eps_scale)
        return optax.scale_by_sign()

    def fields(self) -> dict:
        """The name and the hyper-parameters it uses as a JSON-able dict (with the schedule unless constant)."""
        used = {"sgd": (), "momentum": ("beta",), "adam": ("b1", "b2", "eps"), "sign": ()}[self.name]
        fields = {"name": self.name, "lr": self.lr, **{field: getattr(self, field) for field in used}}
        if not self.schedule.is_constant:
            fields["schedule"] = self.schedule.describe()
        return fields

    def describe(self) -> str:
        """One line: `"adam(lr=0.001, b1=0.9, b2=0.999, eps=1e-08)"` (a schedule is named by its function)."""
        fields = self.fields()
        schedule = fields.pop("schedule", None)
        text = ", ".join(f"{key}={value:g}" for key, value in fields.items() if key != "name")
        if schedule is not None:
            text += f", schedule={schedule['function'].rsplit('.<locals>', 1)[0].rsplit('.', 1)[-1]}"
        return f"{self.name}({text})"


def _spec(name: str, learning_rate, **hyperparameters) -> Optimizer:
    """The spec of a learning rate given as a number, or as an optax schedule `step -> rate` (then `lr = 1`)."""
    if callable(learning_rate):
        return Optimizer(name, 1.0, schedule=Schedule(learning_rate), **hyperparameters)
    return Optimizer(name, learning_rate, **hyperparameters)


@_optax_keywords
def sgd(learning_rate, momentum: Optional[float] = None, nesterov: bool = False) -> Optimizer:
    """Gradient descent with one global learning rate, as `optax.sgd` (its limit is NTK gradient descent).

    Args:
      learning_rate: a number > 0, or an optax schedule `step -> rate`.
      momentum: None or 0 for plain SGD; a decay in (0, 1) gives heavy-ball
        momentum, the same spec as [`momentum`][infinite_width.optim.momentum].
      nesterov: Nesterov momentum has no spec (the limits implement heavy-ball
        momentum): `True` is refused; train finite networks with
        `optax.sgd(learning_rate, momentum, nesterov=True)` itself.

    Returns:
      The spec.
    """
    if nesterov:
        raise ValueError(
            "nesterov=True has no infinite_width.optim spec (the limits implement heavy-ball momentum); for finite "
            "networks pass optax.sgd(learning_rate, momentum, nesterov=True) itself as the optimizer"
        )
    if momentum is not None and check_decay("momentum", momentum) > 0:
        return _spec("momentum", learning_rate, beta=momentum)
    return _spec("sgd", learning_rate)


@_optax_keywords
def momentum(learning_rate, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum `m_t = beta m_{t-1} + G`, `dp = -lr_t m_t`, one global rate (`optax.sgd` with `momentum`).

    Args:
      learning_rate: a number > 0, or an optax schedule `step -> rate`.
      beta: the momentum decay in [0, 1).

    Returns:
      The spec.
    """
    return _spec("momentum", learning_rate, beta=beta)


@_optax_keywords
def adam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam (bias-corrected, as `optax.adam`) with per-group rates `lr_t * r_grp` and epsilons `eps * s_grp`.

    Args:
      learning_rate: a number > 0, or an optax schedule `step -> rate`.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: epsilon >= 0, added to `sqrt(v_hat)` of the normalized gradient.

    Returns:
      The spec.
    """
    return _spec("adam", learning_rate, b1=b1, b2=b2, eps=eps)


@_optax_keywords
def sign(learning_rate) -> Optimizer:
    """SignSGD, `dp = -lr_t * r_grp * sign(G)` (Adam with b1 = b2 = 0 and eps = 0).

    Args:
      learning_rate: a number > 0, or an optax schedule `step -> rate`.

    Returns:
      The spec.
    """
    return _spec("sign", learning_rate, b1=0.0, b2=0.0, eps=0.0)


def is_transformation(optimizer) -> bool:
    """Whether `optimizer` is a raw optax transformation (not a spec).

    Args:
      optimizer: anything.
    """
    return isinstance(optimizer, optax.GradientTransformation) and not isinstance(optimizer, Optimizer)


def check_optimizer(optimizer, who: str, *, transformation_ok: bool) -> AnyOptimizer:
    """`optimizer` if `who` can train with it, else an error saying what to pass.

    Args:
      optimizer: a spec, or an `optax.GradientTransformation`.
      who: the method or function, for the message.
      transformation_ok: whether `who` accepts a raw optax transformation
        (finite networks do; a limit must know the entrywise rule).

    Returns:
      `optimizer`, unchanged.

    Raises:
      TypeError: anything else, or a transformation where a spec is needed.
    """
    if isinstance(optimizer, Optimizer) or (transformation_ok and is_transformation(optimizer)):
        return optimizer
    if is_transformation(optimizer):
        raise TypeError(
            f"{who} needs an infinite_width.optim spec, not a raw optax GradientTransformation: the limit must know "
            "the entrywise update rule, which a transformation does not expose; build the same optimizer with "
            "infinite_width.optim (optim.sgd(lr), optim.momentum(lr, beta), optim.adam(lr, b1, b2, eps), "
            "optim.sign(lr), learning rates and optax schedules as in optax)"
        )
    accepted = "an infinite_width.optim.Optimizer spec"
    if transformation_ok:
        accepted += " or an optax GradientTransformation"
    raise TypeError(
        f"optimizer must be {accepted} (e.g. infinite_width.optim.adam(1e-3)), got {type(optimizer).__name__}")


def metadata(optimizer) -> Optional[dict]:
    """A JSON-able description for trajectory metadata: the spec's fields, `{"name": "optax"}` for a
    raw transformation, None for no optimizer.

    Args:
      optimizer: a spec, an optax transformation, or None.
    """
    if optimizer is None:
        return None
    return {"name": "optax"} if is_transformation(optimizer) else optimizer.fields()


def summary(optimizer) -> str:
    """One line naming the optimizer, for labels and messages (`"adam(lr=0.001, ...)"` or `"optax"`).

    Args:
      optimizer: a spec or an optax transformation.
    """
    return "optax" if is_transformation(optimizer) else optimizer.describe()
