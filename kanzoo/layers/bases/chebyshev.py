"""Chebyshev polynomials of the first kind on a tanh-squashed input: ``T_d(tanh(x))``.

``tanh`` maps every real input into ``(-1, 1)`` where the polynomials are bounded by 1. They are
evaluated in closed form, ``T_d(tanh x) = cos(d theta)`` with ``theta = arccos(tanh x)`` computed as
``atan2(sech x, tanh x)`` (``sech x`` from ``exp(-|x|)``, so nothing overflows), and
``d/dx T_d(tanh x) = d sin(d theta) sech(x)``: finite everywhere (the derivative of ``arccos`` is
never formed), exact autograd derivatives of every order, and every feature depends on ``theta``
alone. The three-term recurrence ``T_{d+1} = 2 t T_d - T_{d-1}`` would make each feature depend
on the two before it, which ``torch.compile`` inlines into expression trees that grow like the
Fibonacci numbers with the degree (compiling degree 22 did not finish in an hour).
"""

from __future__ import annotations

import torch

from .base import Basis, BasisFunctional, register_basis

__all__ = ["ChebyshevBasis", "chebyshev", "chebyshev_with_derivative"]


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
    theta, _ = _angle(x)
    return torch.cos(theta.unsqueeze(-1) * _orders(x, degree))


def chebyshev_with_derivative(x: torch.Tensor, degree: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and ``d/dx T_d(tanh x) = d sin(d theta) sech(x)``."""
    theta, sech = _angle(x)
    d = _orders(x, degree)
    angles = theta.unsqueeze(-1) * d
    return torch.cos(angles), torch.sin(angles) * (d * sech.unsqueeze(-1))


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
