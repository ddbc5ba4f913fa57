"""Grid and interpretability tools of the KAN layers.

All functions take a ``KANLinear`` or a ``KANConv{1,2,3}d`` (the layers' methods of the same
names delegate here). A KAN layer has one edge function per (output, input) pair,
``phi_ij(x) = W_b[j, i] act(x) + sum_f (W_s * s)[j, i, f] B_f(x)``; a convolution has one per
(output channel, input channel of its group, kernel tap). Linear and conv weights are handled by
one code path: a linear layer is viewed as a conv with one group and a kernel of one tap.

* :func:`update_grid` (B-spline only) re-places the knots from data and refits the spline
  coefficients by least squares so that every edge function keeps its values on the data.
* :func:`refine_grid` (B-spline only) changes the number of grid intervals; ``G -> m*G`` nests
  the old knots in the new ones, so the function on ``[lo, hi]`` is unchanged up to round-off.
* :func:`regularization_loss`: the sparsity regulariser of the KAN paper.
* :func:`edge_functions`: sampled edge curves for plots.

Knot placement: for each input feature, ``grid_eps = 1`` spaces the ``G + 1`` knots of
``[min - margin, max + margin]`` uniformly, ``grid_eps = 0`` puts them at data quantiles and
values in between blend the two. The ``k`` extension knots on each side use the mean interval
width ``(hi - lo) / G``. Knots are kept strictly increasing (a tiny minimum spacing separates
repeated quantiles) and a constant feature keeps its previous interval width around its value.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._fused import activation
from .bases.bspline import BSplineBasis, bspline_cox_de_boor

__all__ = ["edge_functions", "refine_grid", "regularization_loss", "update_grid"]

# Relative minimum spacing between consecutive knots (in units of the mean interval width).
_MIN_SPACING = 1e-4
# Rows of basis values handled at once when accumulating normal equations / edge magnitudes.
_CHUNK_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------------------------
# Shared helpers


def _bspline_basis(layer: nn.Module, what: str) -> BSplineBasis:
    basis = getattr(layer, "basis", None)
    if not isinstance(basis, BSplineBasis):
        raise ValueError(
            f"{what} needs the 'bspline' basis (its knots define the grid); "
            f"this {type(layer).__name__} uses {type(basis).__name__}"
        )
    return basis


def _is_conv(layer: nn.Module) -> bool:
    return layer.spline_weight.dim() > 3


def _in_features(layer: nn.Module) -> int:
    return layer.basis.in_features


def _samples(layer: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """Input data as ``(num_samples, in_features)``: one column per input feature / channel."""
    n_in = _in_features(layer)
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError(f"{what}: x must be a floating-point tensor, got {type(x).__name__}")
    if _is_conv(layer):
        spatial = layer.spline_weight.dim() - 3
        if x.dim() == spatial + 1:  # unbatched (C, *spatial), as the conv layers accept
            x = x.unsqueeze(0)
        if x.dim() != spatial + 2 or x.shape[1] != n_in:
            raise ValueError(
                f"{what}: expected x of shape (N, {n_in}, {', '.join(['*'] * spatial)}), got {tuple(x.shape)}"
            )
        return x.detach().movedim(1, -1).reshape(-1, n_in)
    if x.dim() == 0 or x.shape[-1] != n_in:
        raise ValueError(f"{what}: expected x of shape (..., {n_in}), got {tuple(x.shape)}")
    return x.detach().reshape(-1, n_in)


def _grouped(layer: nn.Module, w: torch.Tensor, *, has_basis_dim: bool) -> torch.Tensor:
    """``(out, cpg, [n,] *kernel) -> (groups, out/groups, cpg, [n,] taps)``."""
    groups = getattr(layer, "groups", 1)
    out, cpg = w.shape[:2]
    mid = w.shape[2:3] if has_basis_dim else ()
    return w.reshape(groups, out // groups, cpg, *mid, -1)


def _effective_weight(layer: nn.Module) -> torch.Tensor:
    return layer.effective_spline_weight()


@torch.no_grad()
def _transform_spline(layer: nn.Module, proj: torch.Tensor) -> None:
    """Replace each edge's coefficient vector ``c`` by ``proj[i] @ c`` (``proj (in, n_new, n_old)``)."""
    w = _effective_weight(layer).detach()
    kernel = tuple(w.shape[3:])
    wg = _grouped(layer, w, has_basis_dim=True).to(proj.dtype)  # (g, o, c, n_old, t)
    groups, _, cpg = wg.shape[:3]
    pg = proj.reshape(groups, cpg, proj.shape[1], proj.shape[2])
    new = torch.einsum("gcpq,gocqt->gocpt", pg, wg).reshape(w.shape[0], cpg, proj.shape[1], *kernel)
    scaler = layer.spline_scaler
    if scaler is not None:
        s = scaler.detach().unsqueeze(2).to(new.dtype)
        new = torch.where(s != 0, new / torch.where(s != 0, s, torch.ones_like(s)), torch.zeros_like(new))
    old = layer.spline_weight
    new = new.to(device=old.device, dtype=old.dtype)
    if new.shape == old.shape:
        old.copy_(new)
    else:
        layer.spline_weight = nn.Parameter(new, requires_grad=old.requires_grad)


def _solve_projection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Least-squares ``argmin_P |a P - b|`` per batch (minimum norm where ``a`` is rank deficient)."""
    if a.device.type == "cpu":
        return torch.linalg.lstsq(a, b, driver="gelsd").solution
    return torch.linalg.pinv(a) @ b


def _extend(interior: torch.Tensor, k: int) -> torch.Tensor:
    """Add ``k`` knots on each side spaced by the mean interval width: ``(in, G+1) -> (in, G+2k+1)``."""
    g = interior.shape[1] - 1
    h = (interior[:, -1:] - interior[:, :1]) / g
    steps = torch.arange(1, k + 1, dtype=interior.dtype, device=interior.device)
    left = interior[:, :1] - h * steps.flip(0)
    right = interior[:, -1:] + h * steps
    return torch.cat([left, interior, right], dim=1)


def _strictly_increasing(knots: torch.Tensor) -> torch.Tensor:
    """Push knots apart so consecutive ones differ by at least ``_MIN_SPACING`` mean widths."""
    g = knots.shape[1] - 1
    delta = _MIN_SPACING * (knots[:, -1:] - knots[:, :1]) / g
    ramp = torch.arange(g + 1, dtype=knots.dtype, device=knots.device) * delta
    return torch.cummax(knots - ramp, dim=1).values + ramp


def _store_grid(basis: BSplineBasis, knots: torch.Tensor) -> torch.Tensor:
    """Write knots into the basis buffer (replacing it when the size changes); return them as stored."""
    old = basis.grid
    new = knots.to(device=old.device, dtype=old.dtype)
    if new.shape == old.shape:
        old.copy_(new)
    else:
        basis.grid = new.contiguous()
    return basis.grid


# --------------------------------------------------------------------------------------------
# update_grid


def _data_knots(xs: torch.Tensor, old_grid: torch.Tensor, g: int, k: int, grid_eps: float, margin: float):
    """Interior knots ``(in, G+1)`` from samples ``xs (N, in)`` (float64)."""
    srt = xs.sort(dim=0).values
    lo, hi = srt[0] - margin, srt[-1] + margin
    # A (nearly) constant feature keeps its previous interval width around its value.
    old_width = old_grid[:, k + g] - old_grid[:, k]
    scale = torch.maximum(lo.abs(), hi.abs()).clamp_min(1.0)
    flat = (hi - lo) <= 1e-9 * scale
    centre = 0.5 * (lo + hi)
    lo = torch.where(flat, centre - 0.5 * old_width, lo)
    hi = torch.where(flat, centre + 0.5 * old_width, hi)
    frac = torch.linspace(0.0, 1.0, g + 1, dtype=xs.dtype, device=xs.device)
    uniform = lo[:, None] + (hi - lo)[:, None] * frac
    if grid_eps >= 1.0:
        return uniform
    # Data quantiles (linear interpolation between order statistics); ends at lo / hi.
    pos = frac * (srt.shape[0] - 1)
    i0 = pos.floor().long()
    i1 = torch.clamp(i0 + 1, max=srt.shape[0] - 1)
    w = (pos - i0.to(pos.dtype))[:, None]
    adaptive = (srt[i0] * (1 - w) + srt[i1] * w).T.contiguous()
    adaptive[:, 0], adaptive[:, -1] = lo, hi
    adaptive = torch.where(flat[:, None], uniform, adaptive)
    return _strictly_increasing(grid_eps * uniform + (1.0 - grid_eps) * adaptive)


@torch.no_grad()
def update_grid(layer: nn.Module, x: torch.Tensor, *, grid_eps: float = 1.0, margin: float = 0.0) -> None:
    """Re-place the B-spline knots from data and refit the spline so every edge is preserved.

    For every input feature the ``G + 1`` interior knots are placed on the data (see the module
    docstring), then each edge's coefficients are refitted by least squares on the samples
    (``min_c sum_s (B_new(x_s) c - phi_old(x_s))^2``, solved once per input feature for all
    edges together since the fit is linear in the old coefficients). The base branch, bias and
    spline scaler are unchanged. The old function is reproduced exactly when it lies in the new
    spline space (e.g. a polynomial of degree <= k); otherwise the result is its best fit.

    Args:
        layer: A ``KANLinear``/``KANConvNd`` with the ``"bspline"`` basis.
        x: Input data: ``(..., in)`` for a linear layer, ``(N, C, *spatial)`` for a conv.
        grid_eps: 1 = uniform knots over the data range, 0 = knots at data quantiles, in between
            a blend (non-uniform knots use the general Cox-de Boor path of the basis).
        margin: Extra room added below the minimum and above the maximum of the data.

    Raises:
        ValueError: Non-B-spline basis, wrong input shape, empty data, or bad ``grid_eps``/``margin``.
    """
    basis = _bspline_basis(layer, "update_grid")
    if not 0.0 <= float(grid_eps) <= 1.0:
        raise ValueError(f"grid_eps must be in [0, 1], got {grid_eps!r}")
    if not float(margin) >= 0.0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    xs = _samples(layer, x, "update_grid").to(torch.float64)
    if xs.shape[0] == 0:
        raise ValueError("update_grid needs at least one sample, got an empty batch")
    if not torch.isfinite(xs).all():
        raise ValueError("update_grid: x contains NaN or infinite values")
    k, g = basis.spline_order, basis.grid_size
    old_grid = basis.grid.detach().to(torch.float64, copy=True)
    interior = _data_knots(xs, old_grid, g, k, float(grid_eps), float(margin))
    new_grid = _store_grid(basis, _extend(interior, k)).detach().to(torch.float64)

    # Normal equations accumulated over sample chunks: A = sum B_new^T B_new, R = sum B_new^T B_old.
    n_in, n = xs.shape[1], basis.num_features
    chunk = max(1, _CHUNK_ELEMENTS // (n_in * n))
    gram = xs.new_zeros(n_in, n, n)
    cross = xs.new_zeros(n_in, n, n)
    for start in range(0, xs.shape[0], chunk):
        part = xs[start : start + chunk]
        b_new = bspline_cox_de_boor(part, new_grid, k)
        b_old = bspline_cox_de_boor(part, old_grid, k)
        gram += torch.einsum("sip,siq->ipq", b_new, b_new)
        cross += torch.einsum("sip,siq->ipq", b_new, b_old)
    # Minimum-norm solution: basis functions without data support get zero coefficients.
    proj = torch.linalg.pinv(gram, hermitian=True, rtol=1e-13) @ cross
    _transform_spline(layer, proj)


# --------------------------------------------------------------------------------------------
# refine_grid


def _interp_knots(interior: torch.Tensor, new_g: int) -> torch.Tensor:
    """Piecewise-linear map of the old interior knots onto ``new_g + 1`` knots.

    For ``new_g = m * G`` this inserts ``m - 1`` equally spaced knots in every old interval, so
    the old knots are kept and the old spline space is a subspace of the new one.
    """
    g = interior.shape[1] - 1
    pos = torch.arange(new_g + 1, dtype=torch.float64, device=interior.device) * (g / new_g)
    i0 = pos.floor().long().clamp(max=g - 1)
    w = pos - i0.to(pos.dtype)
    return interior[:, i0] * (1 - w) + interior[:, i0 + 1] * w


@torch.no_grad()
def refine_grid(layer: nn.Module, new_grid_size: int) -> None:
    """Change the number of grid intervals to ``new_grid_size``, keeping the edge functions.

    The new interior knots are a piecewise-linear resampling of the old ones over the same
    ``[lo, hi]`` per input. When ``new_grid_size`` is a multiple of the current size every old
    knot is kept, the old spline space on ``[lo, hi]`` is contained in the new one (knot
    insertion) and the new coefficients reproduce the function there up to round-off; other
    sizes give the least-squares best fit over ``[lo, hi]``. Outside ``[lo, hi]`` the extension
    knots move closer (they are spaced by the new mean width), so between the new and the old
    outermost knot the spline branch changes; beyond the old outermost knot both are zero.

    ``spline_weight`` is replaced by a new ``Parameter`` when its size changes: rebuild the
    optimizer afterwards.

    Args:
        layer: A ``KANLinear``/``KANConvNd`` with the ``"bspline"`` basis.
        new_grid_size: The new number of intervals ``G'`` (>= 1).

    Raises:
        ValueError: Non-B-spline basis or an invalid ``new_grid_size``.
    """
    basis = _bspline_basis(layer, "refine_grid")
    if isinstance(new_grid_size, bool) or not isinstance(new_grid_size, int) or new_grid_size < 1:
        raise ValueError(f"new_grid_size must be a positive integer, got {new_grid_size!r}")
    k, g = basis.spline_order, basis.grid_size
    if new_grid_size == g:
        return
    old_grid = basis.grid.detach().to(torch.float64, copy=True)
    interior = old_grid[:, k : k + g + 1]
    new_interior = _interp_knots(interior, new_grid_size)
    new_grid = _extend(new_interior, k)

    # k + 1 distinct points inside every new interval determine a degree-k piece: the collocation
    # matrix has full column rank and the fit is exact whenever the old function is in the space.
    frac = (torch.arange(k + 1, dtype=torch.float64, device=old_grid.device) + 0.5) / (k + 1)
    left, width = new_interior[:, :-1], new_interior.diff(dim=1)
    pts = (left[:, :, None] + width[:, :, None] * frac).reshape(old_grid.shape[0], -1).T.contiguous()
    b_new = bspline_cox_de_boor(pts, new_grid, k).transpose(0, 1)  # (in, S, n_new)
    b_old = bspline_cox_de_boor(pts, old_grid, k).transpose(0, 1)  # (in, S, n_old)
    proj = _solve_projection(b_new, b_old)

    _store_grid(basis, new_grid)
    basis.grid_size = int(new_grid_size)
    basis.num_features = basis.grid_size + k
    _transform_spline(layer, proj)


# --------------------------------------------------------------------------------------------
# Edge values: regularization_loss and edge_functions


def _edge_values(layer: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    """``phi`` of every edge at samples ``xs (S, in)``: ``(S, out, cpg, taps)`` (differentiable)."""
    feats = layer.basis(xs)  # (S, in, n)
    w = _effective_weight(layer)
    wg = _grouped(layer, w, has_basis_dim=True)  # (g, o, c, n, t)
    groups, _, cpg, n = wg.shape[:4]
    fg = feats.reshape(xs.shape[0], groups, cpg, n).to(wg.dtype)
    phi = torch.einsum("sgcn,gocnt->sgoct", fg, wg)
    if layer.base_weight is not None:
        act = activation(xs.to(wg.dtype), layer.base_activation).reshape(xs.shape[0], groups, cpg)
        bg = _grouped(layer, layer.base_weight, has_basis_dim=False)  # (g, o, c, t)
        phi = phi + torch.einsum("sgc,goct->sgoct", act, bg)
    return phi.reshape(xs.shape[0], -1, cpg, phi.shape[-1])


def _mean_abs_edges(layer: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    """Mean over samples of ``|phi_e(x)|`` per edge, ``(out, cpg, taps)``; memory bounded by chunks."""
    w = layer.spline_weight
    per_sample = w.shape[0] * w.shape[1] * max(1, math.prod(w.shape[3:])) * (1 + w.shape[2])
    chunk = max(1, _CHUNK_ELEMENTS // per_sample)

    def part_sum(part: torch.Tensor) -> torch.Tensor:
        return _edge_values(layer, part).abs().sum(0)

    total = None
    for start in range(0, xs.shape[0], chunk):
        part = xs[start : start + chunk]
        if torch.is_grad_enabled() and xs.shape[0] > chunk:
            # Recompute each chunk in backward instead of storing every (chunk, edges) tensor.
            s = torch.utils.checkpoint.checkpoint(part_sum, part, use_reentrant=False)
        else:
            s = part_sum(part)
        total = s if total is None else total + s
    return total / xs.shape[0]


def regularization_loss(layer: nn.Module, x: torch.Tensor, *, l1: float = 1.0, entropy: float = 1.0):
    """The sparsity regulariser of the KAN paper, differentiable w.r.t. the layer's parameters.

    With ``|phi_e| = mean_s |phi_e(x_s)|`` per edge ``e`` (batch mean), ``|Phi| = sum_e |phi_e|``
    and ``p_e = |phi_e| / |Phi|``, the loss is ``l1 * |Phi| + entropy * (-sum_e p_e log p_e)``.
    For a convolution the edges are (output, input-of-group, kernel tap) triples and the samples
    of an input channel are all its values over batch and space.

    Args:
        layer: A ``KANLinear``/``KANConvNd`` (any basis).
        x: A batch of layer inputs, ``(..., in)`` or ``(N, C, *spatial)``.
        l1: Weight of the L1 term.
        entropy: Weight of the entropy term.

    Returns:
        A scalar tensor.
    """
    xs = _samples(layer, x, "regularization_loss")
    if xs.shape[0] == 0:
        raise ValueError("regularization_loss needs at least one sample, got an empty batch")
    xs = xs.to(layer.spline_weight.dtype)
    mag = _mean_abs_edges(layer, xs).flatten()
    total = mag.sum()
    p = mag / total.clamp_min(torch.finfo(mag.dtype).tiny)
    ent = -(p * torch.log(p.clamp_min(torch.finfo(mag.dtype).tiny))).sum()
    return l1 * total + entropy * ent


@torch.no_grad()
def edge_functions(layer: nn.Module, x: torch.Tensor | None = None, *, num: int = 200):
    """Sample every edge function ``phi_ij`` on a regular grid of its input, for plots.

    Args:
        layer: A ``KANLinear``/``KANConvNd`` (any basis).
        x: Optional input data; its per-feature ``[min, max]`` sets the sampled range. Without
            it the range is the B-spline grid ``[lo, hi]`` of each input (or the basis'
            ``grid_range`` / ``[-1, 1]`` for other bases).
        num: Number of points per input (>= 2).

    Returns:
        ``(xs, ys)``: ``xs (in, num)`` and ``ys (out, in, num)`` for ``KANLinear``; for a conv
        ``ys`` is ``(out, in / groups, *kernel_size, num)`` and edge ``(o, c)`` reads input
        channel ``(o // (out / groups)) * (in / groups) + c``. Detached tensors.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    dtype = layer.spline_weight.dtype
    device = layer.spline_weight.device
    n_in = _in_features(layer)
    if x is not None:
        xs = _samples(layer, x, "edge_functions")
        if xs.shape[0] == 0:
            raise ValueError("edge_functions: x is an empty batch")
        lo, hi = xs.min(0).values.to(dtype), xs.max(0).values.to(dtype)
    elif isinstance(layer.basis, BSplineBasis):
        k, g = layer.basis.spline_order, layer.basis.grid_size
        lo, hi = layer.basis.grid[:, k].to(dtype), layer.basis.grid[:, k + g].to(dtype)
    else:
        r = getattr(layer.basis, "grid_range", (-1.0, 1.0))
        lo = torch.full((n_in,), float(r[0]), dtype=dtype, device=device)
        hi = torch.full((n_in,), float(r[1]), dtype=dtype, device=device)
    frac = torch.linspace(0.0, 1.0, num, dtype=dtype, device=device)
    grid_x = lo[:, None] + (hi - lo)[:, None] * frac  # (in, num)
    phi = _edge_values(layer, grid_x.T.contiguous())  # (num, out, cpg, taps)
    w = layer.spline_weight
    ys = phi.permute(1, 2, 3, 0).reshape(w.shape[0], w.shape[1], *w.shape[3:], num)
    return grid_x, ys
