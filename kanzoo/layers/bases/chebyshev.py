"""Chebyshev polynomials of the first kind on a tanh-squashed input: ``T_d(tanh(x))``.

``tanh`` maps every real input into ``(-1, 1)`` where the polynomials are bounded by 1. Up to
degree :data:`RECURRENCE_MAX_DEGREE` they come from the recurrence ``T_{d+1} = 2 t T_d - T_{d-1}``
(derivative ``dT_d/dt = d U_{d-1}`` by the same recurrence for ``U``): a few multiply-adds per
feature, finite everywhere. Above it they are evaluated in closed form, ``T_d(tanh x) =
cos(d theta)`` with ``theta = atan2(sech x, tanh x)`` (``sech x`` from ``exp(-|x|)``, so nothing
overflows) and ``d/dx T_d(tanh x) = d sin(d theta) sech(x)``: equally finite (the derivative of
``arccos`` is never formed) and exact under autograd, but every feature depends on ``theta``
alone. The recurrence makes each feature depend on the two before it, which ``torch.compile``
inlines into expression trees that grow like the Fibonacci numbers with the degree (degree 22
did not finish compiling in an hour); the closed form costs a cosine (and a sine) per feature,
which measured slower than the recurrence at degree 7.
"""

from __future__ import annotations

import torch

from .base import Basis, BasisFunctional, register_basis

__all__ = ["RECURRENCE_MAX_DEGREE", "ChebyshevBasis", "chebyshev", "chebyshev_with_derivative"]

#: Highest degree evaluated by the three-term recurrence; higher degrees use the closed form.
RECURRENCE_MAX_DEGREE = 8


def _angle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(theta, sech x)`` with ``cos(theta) = tanh(x)``, ``theta`` in ``[0, pi]``.

    ``sech x = 2 e / (1 + e^2)``, ``e = exp(-|x|)``: no overflow at any ``x``, and its autograd
    derivative is right at ``x = 0`` too (the ``|x|`` kink meets the factor ``1 - e^2 = 0``)."""
    e = torch.exp(-x.abs())
    sech = 2 * e / (1 + e * e)
    return torch.atan2(sech, torch.tanh(x)), sech


def _orders(x: torch.Tensor, degree: int) -> torch.Tensor:
    return torch.arange(degree + 1, device=x.device, dtype=x.dtype)


def chebyshev(x: torch.Tensor, degree: int) -> torch.Tensor:
    """``[T_0(t), ..., T_degree(t)]`` with ``t = tanh(x)``: ``(..., in) -> (..., in, degree + 1)``."""
    if degree > RECURRENCE_MAX_DEGREE:
        theta, _ = _angle(x)
        return torch.cos(theta.unsqueeze(-1) * _orders(x, degree))
    t = torch.tanh(x)
    polys = [torch.ones_like(t), t]
    for _ in range(2, degree + 1):
        polys.append(2 * t * polys[-1] - polys[-2])
    return torch.stack(polys[: degree + 1], dim=-1)


def chebyshev_with_derivative(x: torch.Tensor, degree: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and ``d/dx T_d(tanh x) = d U_{d-1}(t) (1 - t^2) = d sin(d theta) sech(x)``."""
    if degree > RECURRENCE_MAX_DEGREE:
        theta, sech = _angle(x)
        d = _orders(x, degree)
        angles = theta.unsqueeze(-1) * d
        return torch.cos(angles), torch.sin(angles) * (d * sech.unsqueeze(-1))
    t = torch.tanh(x)
    dt = 1 - t * t
    polys = [torch.ones_like(t), t]
    cheb_u = [torch.ones_like(t), 2 * t]  # U_0, U_1
    for _ in range(2, degree + 1):
        polys.append(2 * t * polys[-1] - polys[-2])
        cheb_u.append(2 * t * cheb_u[-1] - cheb_u[-2])
    derivs = [torch.zeros_like(t)] + [d * cheb_u[d - 1] * dt for d in range(1, degree + 1)]
    return torch.stack(polys[: degree + 1], dim=-1), torch.stack(derivs, dim=-1)


@register_basis("chebyshev")
class ChebyshevBasis(Basis):
    """Chebyshev basis ``T_0 .. T_degree`` of ``tanh(x)``, ``num_features = degree + 1``.

    Args:
        in_features: Number of input features.
        degree: Highest polynomial degree (``>= 1``).
    """

    def __init__(self, in_features: int, *, degree: int = 4) -> None:
        super().__init__(in_features)
        if int(degree) < 1:
            raise ValueError(f"degree must be >= 1, got {degree!r}")
        self.degree = int(degree)
        self.num_features = self.degree + 1

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, degree={self.degree}"

    def functional(self) -> BasisFunctional:
        return chebyshev, chebyshev_with_derivative, (self.degree,)
