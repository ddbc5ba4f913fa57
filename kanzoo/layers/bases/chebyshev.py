"""Chebyshev polynomials of the first kind on a tanh-squashed input: ``T_d(tanh(x))``.

``tanh`` maps every real input into ``(-1, 1)`` where the polynomials are bounded by 1; the
recurrence ``T_{d+1} = 2 t T_d - T_{d-1}`` (and its derivative via ``dT_d/dt = d U_{d-1}``) is
finite everywhere, unlike ``cos(d arccos t)`` whose derivative is infinite at ``t = ±1``.
"""

from __future__ import annotations

import torch

from .base import Basis, BasisFunctional, register_basis

__all__ = ["ChebyshevBasis", "chebyshev", "chebyshev_with_derivative"]


def chebyshev(x: torch.Tensor, degree: int) -> torch.Tensor:
    """``[T_0(t), ..., T_degree(t)]`` with ``t = tanh(x)``: ``(..., in) -> (..., in, degree + 1)``."""
    t = torch.tanh(x)
    polys = [torch.ones_like(t), t]
    for _ in range(2, degree + 1):
        polys.append(2 * t * polys[-1] - polys[-2])
    return torch.stack(polys[: degree + 1], dim=-1)


def chebyshev_with_derivative(x: torch.Tensor, degree: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and ``d/dx T_d(tanh x) = d U_{d-1}(t) (1 - t^2)``."""
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
