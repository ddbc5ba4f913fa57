"""Fourier basis: ``[cos(x), ..., cos(K x), sin(x), ..., sin(K x)]``."""

from __future__ import annotations

import torch

from .base import Basis, BasisFunctional, register_basis

__all__ = ["FourierBasis", "fourier", "fourier_with_derivative"]


def fourier(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """``(..., in) -> (..., in, 2K)`` with ``freqs = (1, ..., K) * 2 pi / period``."""
    z = x.unsqueeze(-1) * freqs
    return torch.cat([torch.cos(z), torch.sin(z)], dim=-1)


def fourier_with_derivative(x: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and derivatives ``[-f sin(f x), f cos(f x)]``."""
    z = x.unsqueeze(-1) * freqs
    c, s = torch.cos(z), torch.sin(z)
    return torch.cat([c, s], dim=-1), torch.cat([-freqs * s, freqs * c], dim=-1)


@register_basis("fourier")
class FourierBasis(Basis):
    """Truncated Fourier series features, ``num_features = 2 * num_frequencies``.

    Args:
        in_features: Number of input features.
        num_frequencies: Number of harmonics ``K``.
        period: Period of the fundamental; the default ``2 pi`` gives ``cos(k x), sin(k x)``.

    Buffers:
        freqs: ``(K,)`` angular frequencies ``2 pi k / period``.
    """

    def __init__(self, in_features: int, *, num_frequencies: int = 5, period: float = 2 * torch.pi) -> None:
        super().__init__(in_features)
        if int(num_frequencies) < 1:
            raise ValueError(f"num_frequencies must be >= 1, got {num_frequencies!r}")
        if not float(period) > 0:
            raise ValueError(f"period must be > 0, got {period!r}")
        self.num_frequencies = int(num_frequencies)
        self.period = float(period)
        self.num_features = 2 * self.num_frequencies
        k = torch.arange(1, self.num_frequencies + 1, dtype=torch.float64)
        self.register_exact_buffer("freqs", k * (2 * torch.pi / self.period))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_frequencies={self.num_frequencies}, period={self.period}"

    def functional(self) -> BasisFunctional:
        return fourier, fourier_with_derivative, (self.freqs,)
