"""Import an efficient-kan ``KANLinear`` (from its ``state_dict``) as a kanzoo ``KANLinear``.

efficient-kan computes, for inputs ``x (N, in)``::

    y = act(x) @ base_weight.T + B(x).view(N, -1) @ (spline_weight * spline_scaler[..., None]).view(out, -1).T

with ``act = SiLU`` by default, ``B`` the order-``k`` B-spline basis (Cox-de Boor with half-open
intervals, hence zero beyond the outermost knots) on the per-input knot vectors ``grid (in, G+2k+1)``
and ``spline_scaler`` present only when the standalone spline scale was enabled. This is exactly
kanzoo's B-spline ``KANLinear`` with the same knots, so the conversion copies the tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kanzoo.layers.kan_linear import KANLinear

__all__ = ["bspline_linear_from_tensors", "from_efficient_kan"]

_DERIVED = ("grid_size", "spline_order", "grid_range", "basis")


def bspline_linear_from_tensors(
    *,
    grid: torch.Tensor,
    spline_weight: torch.Tensor,
    base_weight: torch.Tensor | None,
    spline_scaler: torch.Tensor | None,
    bias: torch.Tensor | None = None,
    base_activation: str | None = "silu",
    source: str = "tensors",
) -> KANLinear:
    """Build a B-spline ``KANLinear`` holding exactly the given knots and weights.

    Args:
        grid: Per-input knot vectors ``(in, G + 2k + 1)``, non-decreasing along each row.
        spline_weight: ``(out, in, G + k)`` spline coefficients.
        base_weight: ``(out, in)`` weight of the base branch, or ``None`` for no base branch.
        spline_scaler: ``(out, in)`` standalone spline scale, or ``None``.
        bias: ``(out,)`` bias or ``None``.
        base_activation: Activation of the base branch (ignored when ``base_weight`` is None).
        source: Name used in error messages.

    Returns:
        The layer, in the dtype of ``spline_weight`` and on its device.
    """
    if spline_weight.dim() != 3:
        raise ValueError(f"{source}: spline_weight must be (out, in, n), got {tuple(spline_weight.shape)}")
    out_f, in_f, n = spline_weight.shape
    if grid.dim() != 2 or grid.shape[0] != in_f:
        raise ValueError(f"{source}: grid must be ({in_f}, G + 2k + 1), got {tuple(grid.shape)}")
    k = grid.shape[1] - n - 1
    g = n - k
    if k < 1 or g < 1:
        raise ValueError(
            f"{source}: grid with {grid.shape[1]} knots and {n} coefficients per input gives spline order "
            f"{k} and {g} intervals; both must be >= 1"
        )
    if not torch.isfinite(grid).all() or (grid.diff(dim=1) < 0).any():
        raise ValueError(f"{source}: grid must hold finite, non-decreasing knots per input")
    if base_weight is not None and tuple(base_weight.shape) != (out_f, in_f):
        raise ValueError(f"{source}: base_weight must be ({out_f}, {in_f}), got {tuple(base_weight.shape)}")
    if spline_scaler is not None and tuple(spline_scaler.shape) != (out_f, in_f):
        raise ValueError(
            f"{source}: spline_scaler must be ({out_f}, {in_f}), got {tuple(spline_scaler.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (out_f,):
        raise ValueError(f"{source}: bias must be ({out_f},), got {tuple(bias.shape)}")
    if base_weight is not None and base_activation is None:
        raise ValueError(f"{source}: a base_weight was given but base_activation is None")
    lo, hi = float(grid[:, k].min()), float(grid[:, k + g].max())
    if not hi > lo:
        hi = lo + 1.0  # only the constructor's placeholder range; the real knots are copied below
    layer = KANLinear(
        in_f,
        out_f,
        bias=bias is not None,
        basis="bspline",
        base_activation=base_activation if base_weight is not None else None,
        spline_scaler=spline_scaler is not None,
        grid_size=g,
        spline_order=k,
        grid_range=(lo, hi),
    ).to(device=spline_weight.device, dtype=spline_weight.dtype)
    with torch.no_grad():
        layer.basis.grid.copy_(grid.to(layer.basis.grid.dtype))
        layer.spline_weight.copy_(spline_weight)
        if base_weight is not None:
            layer.base_weight.copy_(base_weight)
        if spline_scaler is not None:
            layer.spline_scaler.copy_(spline_scaler)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def from_efficient_kan(state_dict: Mapping[str, torch.Tensor] | nn.Module, **layer_kwargs: Any) -> KANLinear:
    """Convert an efficient-kan ``KANLinear`` into a kanzoo :class:`~kanzoo.layers.KANLinear`.

    Args:
        state_dict: The layer's ``state_dict()`` (or the module itself), with keys
            ``base_weight (out, in)``, ``spline_weight (out, in, G + k)``, ``grid (in, G + 2k + 1)``
            and, when the standalone spline scale was enabled, ``spline_scaler (out, in)``. Keys
            may carry a common prefix such as ``"layers.0."`` only if every key has it.
        **layer_kwargs: ``base_activation`` (default ``"silu"``, efficient-kan's default; use the
            one the source layer was built with) and ``bias`` (a ``(out,)`` tensor to add; the
            source has none). Grid size, order and range come from ``grid``.

    Returns:
        A ``KANLinear`` with the same knots and weights, so the same outputs.

    Raises:
        ValueError: Missing keys, inconsistent shapes, or unsupported keyword arguments.
    """
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"from_efficient_kan expects a state_dict mapping, got {type(state_dict).__name__}")
    sd = dict(state_dict)
    prefixes = {key[: -len(name)] for key in sd for name in ("spline_weight",) if key.endswith(name)}
    if len(prefixes) == 1:
        prefix = prefixes.pop()
        sd = {key[len(prefix) :]: v for key, v in sd.items() if key.startswith(prefix)}
    missing = [key for key in ("base_weight", "spline_weight", "grid") if key not in sd]
    if missing:
        raise ValueError(
            f"from_efficient_kan: state_dict lacks {missing}; expected base_weight, spline_weight, grid "
            f"and optionally spline_scaler, got keys {sorted(state_dict)[:8]}"
        )
    derived = [key for key in _DERIVED if key in layer_kwargs]
    if derived:
        raise ValueError(f"from_efficient_kan: {derived} are read from the stored grid, do not pass them")
    unknown = sorted(set(layer_kwargs) - {"base_activation", "bias"})
    if unknown:
        raise ValueError(f"from_efficient_kan: unsupported keyword arguments {unknown}")
    bias = layer_kwargs.get("bias")
    if bias is not None and not torch.is_tensor(bias):
        raise ValueError("from_efficient_kan: bias must be a tensor of shape (out,) or None")
    base_activation = layer_kwargs.get("base_activation", "silu")
    if base_activation is None:
        raise ValueError(
            "from_efficient_kan: the source always has a base branch; base_activation=None would drop it"
        )
    return bspline_linear_from_tensors(
        grid=sd["grid"],
        spline_weight=sd["spline_weight"],
        base_weight=sd["base_weight"],
        spline_scaler=sd.get("spline_scaler"),
        bias=bias,
        base_activation=base_activation,
        source="from_efficient_kan",
    )
