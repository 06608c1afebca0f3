"""The terms of the Adam-like limit of an MLP (docs/theory.md, section 5).

For an MLP with L hidden layers and k outputs, every output c on every point
xi moves by ``- lr * sum_terms coef * E[ U_c(xi) V(xi) Q_t(g) ]`` plus the
exact output-bias term, with (expectations over independent Gaussian processes):

| term | U_c | V | g (normalized gradient) |
|---|---|---|---|
| input W^1 | u^1_c | x_b, b ~ U{1..d} | sum_i sum_c chi_ic U_c V |
| hidden W^l, l>=2 | u^l_c | phi(h^{l-1}) | sum_i sum_c chi_ic U_c V |
| hidden bias b^l | u^l_c | 1 | sum_i sum_c chi_ic U_c |
| readout W^{L+1} | 1 (row c) | phi(h^L) | sum_i chi_ic V (one per c) |
| output bias | 1 (entry c) | 1 | sum_i chi_ic (exact) |

with ``u^l_c = phi'(h^l) z^l_c``, ``h^l ~ GP(0, K^l)`` and
``z^l_c ~ GP(0, W_std_{l+1}^2 B^{l+1})`` independent over c. Hidden weights
and biases are shared by all outputs, so their ``g`` is ONE scalar per
sample; only the readout row c and the output bias c have one ``g`` per
output. ``coef`` is the group's ``W_std`` or ``b_std`` for Adam and sign
(``s_grp * r_grp * entries``), its square for SGD and momentum (one global
rate: ``s_grp^2 * entries``, which makes the expectations the NTK terms;
docs/theory.md, section 6).

The input term draws its coordinate b uniformly per sample instead of
averaging over all d of them: ``(1/d) sum_b E[.] = E_b E[.]`` (unbiased, O(1)
instead of O(d) numbers per sample and point).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from infinite_width.architectures import Architecture

__all__ = ["Term", "limit_terms", "layer_scales"]


@dataclasses.dataclass(frozen=True)
class Term:
    """One Monte Carlo term ``coef * E[U_c V Q(g)]``.

    ``u_layer``: l of ``U = u^l`` (None: ``U = 1``, the readout). ``v``:
    ``"x"`` (the input coordinate ``x_b``), None (the constant 1) or the
    hidden layer l whose activation ``phi(h^l)`` it is. ``per_output``: one
    ``g`` per output (the readout).
    """

    name: str
    coefficient: float
    u_layer: Optional[int]
    v: object
    per_output: bool = False


def layer_scales(arch: Architecture) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(W_std, b_std)`` of the weighted layers 1..L+1 (index l-1)."""
    dense = arch.layers[::2]
    return tuple(float(layer.W_std) for layer in dense), tuple(float(layer.b_std) for layer in dense)


def limit_terms(arch: Architecture, readout_only: bool, linear: bool) -> Tuple[Tuple[Term, ...], float]:
    """The Monte Carlo terms of ``arch`` and the coefficient of the exact output-bias term.

    ``readout_only``: only the readout weights and the output bias train.
    ``linear``: SGD or momentum (squared coefficients). Groups with a zero
    scale have zero gradient and no effect (and 0/0 in Adam with eps = 0),
    so they are left out.
    """
    if not isinstance(readout_only, bool):  # a former train="all"|"readout" string would be truthy
        raise TypeError(f"readout_only must be True or False, got {readout_only!r}")
    weight_scales, bias_scales = layer_scales(arch)
    power = 2 if linear else 1
    W = [s**power for s in weight_scales]
    b = [s**power for s in bias_scales]
    depth = arch.depth
    terms = []
    if not readout_only:
        terms.append(Term("input_weight", W[0], 1, "x"))
        terms += [Term(f"hidden_weight{l}", W[l - 1], l, l - 1) for l in range(2, depth + 1)]
        terms += [Term(f"hidden_bias{l}", b[l - 1], l, None) for l in range(1, depth + 1)]
    terms.append(Term("readout_weight", W[depth], None, depth, per_output=True))
    return tuple(t for t in terms if t.coefficient != 0.0), b[depth]
