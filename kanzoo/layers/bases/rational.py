"""Group-rational basis (GR-KAN, as in the Kolmogorov-Arnold Transformer).

Every input channel ``i`` belongs to one of ``num_groups`` contiguous groups; all channels of a
group share one rational function::

    R(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1| |x| + ... + |b_n| |x|^n)

The denominator is ``>= 1`` everywhere, so ``R`` has no poles. The basis returns ``R(x_i)`` as a
single feature per input (``num_features = 1``); followed by the layer's matmul and used with
``base_activation=None`` this is exactly a GR-KAN layer ``y = W R(x) + b``. The coefficients are
trainable (``basis.numerator``, ``basis.denominator``), so this basis uses plain autograd.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from .base import Basis, register_basis

__all__ = ["RationalBasis", "fit_rational", "rational"]

_TARGETS = {
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * torch.sigmoid(x),
    "identity": lambda x: x,
}


def rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Evaluate ``P(x) / (1 + sum_j |b_j| |x|^j)`` elementwise.

    Args:
        x: Inputs, ``(..., in)``.
        numerator: ``(in, m + 1)`` coefficients ``a_0 .. a_m`` per channel (or ``(m + 1,)``).
        denominator: ``(in, n)`` coefficients ``b_1 .. b_n`` per channel (or ``(n,)``).
    """
    p = numerator[..., -1]
    for d in range(numerator.shape[-1] - 2, -1, -1):
        p = p * x + numerator[..., d]
    ax = x.abs()
    b = denominator.abs()
    s = torch.zeros_like(x) if b.shape[-1] == 0 else b[..., -1]
    for j in range(b.shape[-1] - 2, -1, -1):
        s = s * ax + b[..., j]
    return p / (1 + s * ax)


@functools.cache
def fit_rational(target: str, numerator_degree: int, denominator_degree: int) -> tuple[tuple, tuple]:
    """Least-squares fit of the safe rational form to ``target`` on ``[-4, 4]`` (float64, cached).

    A linearized fit (``P(x) - f(x) (Q(x) - 1) = f(x)``) gives the starting point, then L-BFGS
    refines the true relative-error objective.

    Returns:
        ``(numerator, denominator)`` coefficient tuples.
    """
    if target not in _TARGETS:
        raise ValueError(f"init must be one of {sorted(_TARGETS)}, got {target!r}")
    m, n = numerator_degree, denominator_degree
    if target == "identity":
        num = [0.0] * (m + 1)
        num[1] = 1.0
        return tuple(num), (0.0,) * n
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    f = _TARGETS[target](x)
    powers = torch.stack([x**d for d in range(m + 1)], dim=1)
    apow = torch.stack([-f * x.abs() ** j for j in range(1, n + 1)], dim=1)
    sol = torch.linalg.lstsq(torch.cat([powers, apow], dim=1), f.unsqueeze(1)).solution.squeeze(1)
    a = sol[: m + 1].clone().requires_grad_(True)
    b = sol[m + 1 :].abs().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=400, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((rational(x, a, b) - f) ** 2).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return tuple(a.detach().tolist()), tuple(b.detach().abs().tolist())


@register_basis("rational")
class RationalBasis(Basis):
    """Group-rational basis: one shared rational function per channel group, ``num_features = 1``.

    Args:
        in_features: Number of input channels.
        num_groups: Number of groups (``min(num_groups, in_features)`` are used); channel ``i``
            belongs to group ``i * num_groups // in_features``, so any ``in_features`` works.
        numerator_degree: Degree ``m`` of the numerator.
        denominator_degree: Degree ``n`` of the safe denominator.
        init: ``"identity"``, ``"gelu"`` or ``"silu"``: every group starts as that function
            (the latter two by a least-squares fit).

    Parameters:
        numerator: ``(num_groups, m + 1)``.
        denominator: ``(num_groups, n)``.
    """

    def __init__(
        self,
        in_features: int,
        *,
        num_groups: int = 8,
        numerator_degree: int = 5,
        denominator_degree: int = 4,
        init: str = "identity",
    ) -> None:
        super().__init__(in_features)
        if int(num_groups) < 1:
            raise ValueError(f"num_groups must be >= 1, got {num_groups!r}")
        if int(numerator_degree) < 1 or int(denominator_degree) < 0:
            raise ValueError("numerator_degree must be >= 1 and denominator_degree >= 0")
        self.num_groups = min(int(num_groups), self.in_features)
        self.numerator_degree = int(numerator_degree)
        self.denominator_degree = int(denominator_degree)
        self.init = init
        self.num_features = 1
        num, den = fit_rational(init, self.numerator_degree, self.denominator_degree)
        self.numerator = nn.Parameter(torch.tensor(num, dtype=torch.float32).repeat(self.num_groups, 1))
        self.denominator = nn.Parameter(
            torch.tensor(den, dtype=torch.float32).reshape(1, -1).repeat(self.num_groups, 1)
        )
        group = torch.arange(self.in_features) * self.num_groups // self.in_features
        self.register_buffer("group_index", group, persistent=False)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_groups={self.num_groups}, "
            f"numerator_degree={self.numerator_degree}, denominator_degree={self.denominator_degree}, "
            f"init={self.init!r}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cd = self.compute_dtype(x)
        num = self.numerator.to(cd)[self.group_index]
        den = self.denominator.to(cd)[self.group_index]
        return rational(x.to(cd), num, den).unsqueeze(-1)
