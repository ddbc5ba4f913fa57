"""Gaussian radial basis (FastKAN style): ``phi_j(x) = exp(-((x - c_j) / w)^2)``."""

from __future__ import annotations

import torch

from .base import Basis, BasisFunctional, register_basis

__all__ = ["RBFBasis", "rbf", "rbf_with_derivative"]


# exp(-z^2) is flushed to exactly 0 once z^2 exceeds this (per compute dtype): below ~1e-30
# (float32) the value is negligible next to any O(1) basis value, while the subnormal floats
# exp(-z^2) reaches for z^2 > 87 (and their products in the matmul) run 20-40x slower on x86
# (measured on Intel Xeon and AMD EPYC alike). exp's argument is clamped too, so no subnormal
# is ever produced. float64 keeps everything down to ~1e-300.
_FLUSH_Z2 = {torch.float64: 690.0}
_FLUSH_Z2_DEFAULT = 69.0


def _gauss(z: torch.Tensor) -> torch.Tensor:
    z2 = z * z
    limit = _FLUSH_Z2.get(z.dtype, _FLUSH_Z2_DEFAULT)
    return torch.where(z2 < limit, torch.exp(-torch.clamp(z2, max=limit)), 0.0)


def rbf(x: torch.Tensor, centers: torch.Tensor, inv_width: torch.Tensor) -> torch.Tensor:
    """``exp(-((x - c) / w)^2)``, 0 where negligible; ``x (..., in)``, ``centers (in, n)``."""
    return _gauss((x.unsqueeze(-1) - centers) * inv_width)


def rbf_with_derivative(
    x: torch.Tensor, centers: torch.Tensor, inv_width: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """RBF values and derivative ``-2 z / w * phi``."""
    z = (x.unsqueeze(-1) - centers) * inv_width
    phi = _gauss(z)
    return phi, phi * z * (-2.0 * inv_width)


@register_basis("rbf")
class RBFBasis(Basis):
    """Gaussian RBFs on equally spaced centres, ``num_features = grid_size``.

    Args:
        in_features: Number of input features.
        grid_size: Number of centres.
        grid_range: ``(lo, hi)``: the first and last centre.
        width: Gaussian width ``w``; default: the centre spacing ``(hi - lo) / (grid_size - 1)``.

    Buffers:
        grid: ``(in_features, grid_size)`` centres (per input, so they can be re-placed from data).
        inv_width: Scalar ``1 / w``.
    """

    def __init__(
        self,
        in_features: int,
        *,
        grid_size: int = 8,
        grid_range: tuple[float, float] = (-2.0, 2.0),
        width: float | None = None,
    ) -> None:
        super().__init__(in_features)
        if int(grid_size) < 2:
            raise ValueError(f"grid_size must be >= 2 for the rbf basis, got {grid_size!r}")
        lo, hi = (float(v) for v in grid_range)
        if not hi > lo:
            raise ValueError(f"grid_range must satisfy lo < hi, got {grid_range!r}")
        self.grid_size = int(grid_size)
        self.grid_range = (lo, hi)
        self.num_features = self.grid_size
        w = (hi - lo) / (self.grid_size - 1) if width is None else float(width)
        if not w > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        centers = torch.linspace(lo, hi, self.grid_size, dtype=torch.float64)
        self.register_exact_buffer("grid", centers.expand(self.in_features, -1))
        self.register_exact_buffer("inv_width", torch.tensor(1.0 / w, dtype=torch.float64))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, grid_size={self.grid_size}, grid_range={self.grid_range}"

    def functional(self) -> BasisFunctional:
        return rbf, rbf_with_derivative, (self.grid, self.inv_width)
