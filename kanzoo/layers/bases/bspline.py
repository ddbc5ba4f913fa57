"""B-spline basis of order ``k`` on an extended grid (the standard KAN spline).

Knots per input feature: ``t = lo + h * (-k, ..., G + k)`` with ``h = (hi - lo) / G``, i.e.
``G + 2k + 1`` knots and ``G + k`` basis functions ``B_0 .. B_{G+k-1}``; ``B_j`` is supported on
``[t_j, t_{j+k+1}]``. Inside ``[lo, hi]`` the basis is a partition of unity. Between ``t_0`` and
``lo`` (and between ``hi`` and ``t_last``) only part of the basis functions remain, and beyond
the extended grid every ``B_j`` is exactly 0: there the spline branch of a KAN layer is zero and
only the base branch ``W_b * act(x)`` acts. Inputs like ±1e6 therefore give finite outputs.

Two evaluation paths, both vectorized over the whole grid (no loop over edges):

* uniform knots (the default, and after ``update_grid`` with ``grid_eps=1``): the closed form of
  the centred cardinal B-spline. With ``u = (x - t_0) / h - j`` and ``v = |u - (k+1)/2|``::

      B_j(x) = 1/k! * sum_{0 <= i <= k//2} (-1)^i C(k+1, i) relu((k+1)/2 - i - v)^k

  (cubic: ``(relu(2-v)^3 - 4 relu(1-v)^3) / 6``). Far-away inputs give ``relu(negative) = 0``.
* arbitrary non-decreasing knots: Cox-de Boor as ``k`` rounds of tensor operations.
"""

from __future__ import annotations

import math

import torch

from .base import Basis, BasisFunctional, register_basis

__all__ = ["BSplineBasis", "bspline_cox_de_boor", "bspline_uniform"]

# Above this order the alternating closed-form sum loses too many digits in float32.
_MAX_CLOSED_FORM_ORDER = 7


def _closed_form_terms(k: int) -> list[tuple[float, float]]:
    """``(shift, coefficient)`` pairs of the centred cardinal B-spline of degree ``k``."""
    c = (k + 1) / 2
    return [(c - i, (-1) ** i * math.comb(k + 1, i) / math.factorial(k)) for i in range(k // 2 + 1)]


def _ipow(t: torch.Tensor, p: int) -> torch.Tensor:
    """``t ** p`` for a small positive int ``p`` as repeated products (fuses well, no generic pow)."""
    out = t
    for _ in range(int(p) - 1):
        out = out * t
    return out


def _uniform_offsets(x: torch.Tensor, t0: torch.Tensor, inv_h: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """``w[..., i, j] = (x_i - t0_i) / h_i - j - (k+1)/2`` (signed distance to the centre of B_j)."""
    u = (x - t0) * inv_h
    centres = torch.arange(n, device=x.device, dtype=x.dtype) + (k + 1) / 2
    return u.unsqueeze(-1) - centres


def bspline_uniform(x: torch.Tensor, t0: torch.Tensor, inv_h: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """Uniform-knot B-spline basis, ``x[..., in] -> (..., in, n)``.

    Args:
        x: Inputs, ``(..., in)``.
        t0: First knot of every input, ``(in,)``.
        inv_h: Inverse knot spacing of every input, ``(in,)``.
        k: Spline order (degree), ``k >= 1``.
        n: Number of basis functions (``G + k``).
    """
    v = _uniform_offsets(x, t0, inv_h, k, n).abs()
    out = None
    for shift, coef in _closed_form_terms(k):
        term = _ipow(torch.relu(shift - v), k) * coef
        out = term if out is None else out + term
    return out


def bspline_uniform_with_derivative(
    x: torch.Tensor, t0: torch.Tensor, inv_h: torch.Tensor, k: int, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform-knot basis and its derivative w.r.t. ``x``, both ``(..., in, n)``."""
    w = _uniform_offsets(x, t0, inv_h, k, n)
    v = w.abs()
    phi = dphi_dv = None
    for shift, coef in _closed_form_terms(k):
        r = torch.relu(shift - v)
        term = _ipow(r, k) * coef
        # d/dv relu(s - v)^k = -k relu(s - v)^(k-1); for k = 1 this is the indicator of s - v > 0.
        dterm = (r > 0).to(x.dtype) * (-coef) if k == 1 else _ipow(r, k - 1) * (-k * coef)
        phi = term if phi is None else phi + term
        dphi_dv = dterm if dphi_dv is None else dphi_dv + dterm
    dphi = dphi_dv * torch.sign(w) * inv_h.unsqueeze(-1)
    return phi, dphi


def _safe_inv(d: torch.Tensor) -> torch.Tensor:
    """``1/d`` where ``d > 0``, else 0 (repeated knots give empty intervals, not NaN)."""
    return torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))


def _cox_de_boor_levels(x: torch.Tensor, grid: torch.Tensor, k: int, keep_previous: bool):
    xe = x.unsqueeze(-1)
    g = grid
    basis = ((xe >= g[:, :-1]) & (xe < g[:, 1:])).to(x.dtype)
    previous = basis
    for p in range(1, k + 1):
        previous = basis
        left = (xe - g[:, : -(p + 1)]) * _safe_inv(g[:, p:-1] - g[:, : -(p + 1)])
        right = (g[:, p + 1 :] - xe) * _safe_inv(g[:, p + 1 :] - g[:, 1:-p])
        basis = left * basis[..., :-1] + right * basis[..., 1:]
    return (basis, previous) if keep_previous else (basis, None)


def bspline_cox_de_boor(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """B-spline basis for arbitrary non-decreasing knots ``grid (in, K)``: ``(..., in, K - k - 1)``."""
    return _cox_de_boor_levels(x, grid, k, keep_previous=False)[0]


def bspline_cox_de_boor_with_derivative(
    x: torch.Tensor, grid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cox-de Boor basis and its derivative ``k (B^{k-1}_j / (t_{j+k}-t_j) - B^{k-1}_{j+1} / ...)``."""
    phi, prev = _cox_de_boor_levels(x, grid, k, keep_previous=True)
    g = grid
    a = prev[..., :-1] * _safe_inv(g[:, k:-1] - g[:, : -(k + 1)])
    b = prev[..., 1:] * _safe_inv(g[:, k + 1 :] - g[:, 1:-k])
    return phi, k * (a - b)


@register_basis("bspline")
class BSplineBasis(Basis):
    """B-spline basis (the standard KAN spline), ``num_features = grid_size + spline_order``.

    Args:
        in_features: Number of input features.
        grid_size: Number of grid intervals ``G`` inside ``grid_range``.
        spline_order: Spline order (polynomial degree) ``k >= 1``; 3 is cubic.
        grid_range: ``(lo, hi)`` of the initial uniform grid, shared by all inputs.

    Buffers:
        grid: ``(in_features, G + 2k + 1)`` per-input knot vectors ``lo + h * (-k, ..., G + k)``.
            ``kanzoo.layers.grid.update_grid`` may replace them with data-driven knots; the basis
            detects whether they are still uniform and picks the closed form or Cox-de Boor.
    """

    def __init__(
        self,
        in_features: int,
        *,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(in_features)
        if int(grid_size) < 1:
            raise ValueError(f"grid_size must be >= 1, got {grid_size!r}")
        if int(spline_order) < 1:
            raise ValueError(f"spline_order must be >= 1, got {spline_order!r}")
        lo, hi = (float(v) for v in grid_range)
        if not hi > lo:
            raise ValueError(f"grid_range must satisfy lo < hi, got {grid_range!r}")
        self.grid_size = int(grid_size)
        self.spline_order = int(spline_order)
        self.grid_range = (lo, hi)
        self.num_features = self.grid_size + self.spline_order
        k, g = self.spline_order, self.grid_size
        h = (hi - lo) / g
        knots = lo + h * torch.arange(-k, g + k + 1, dtype=torch.float64)
        self.register_exact_buffer("grid", knots.expand(self.in_features, -1))
        self._uniform_key: tuple | None = None
        self._uniform = True

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, grid_size={self.grid_size}, "
            f"spline_order={self.spline_order}, grid_range={self.grid_range}"
        )

    def is_uniform(self) -> bool:
        """Whether every input's knots are equally spaced (cached per grid version)."""
        if torch.compiler.is_compiling() or self.grid.is_meta:
            return self._uniform  # meta knots have no values: the flag of the last inspected grid
        g = self.grid
        key = (g.data_ptr(), g._version, g.dtype, g.device, tuple(g.shape))
        if key != self._uniform_key:
            d = g.diff(dim=1)
            h = (g[:, -1:] - g[:, :1]) / d.shape[1]
            rtol = 1e-12 if g.dtype == torch.float64 else 1e-5
            self._uniform = bool(((d - h).abs() <= rtol * h.abs()).all() and (h > 0).all())
            self._uniform_key = key
        return self._uniform

    def functional(self) -> BasisFunctional:
        k, g = self.spline_order, self.grid
        if self.is_uniform() and k <= _MAX_CLOSED_FORM_ORDER:
            t0 = g[:, 0]
            inv_h = (g.shape[1] - 1) / (g[:, -1] - g[:, 0])
            return bspline_uniform, bspline_uniform_with_derivative, (t0, inv_h, k, self.num_features)
        return bspline_cox_de_boor, bspline_cox_de_boor_with_derivative, (g, k)
