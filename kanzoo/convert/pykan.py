"""Import a pykan ``KANLayer`` (package ``pykan``, import name ``kan``) as a kanzoo ``KANLinear``.

pykan's ``KANLayer.forward(x)`` returns ``(y, preacts, postacts, postspline)`` with::

    y[:, j] = sum_i mask[i, j] * (scale_base[i, j] * base_fun(x[:, i])
                                  + scale_sp[i, j] * sum_f coef[i, j, f] * B_f(x[:, i]; grid[i]))

where ``B`` is the order-``k`` Cox-de Boor B-spline basis with half-open intervals on the stored
per-input knots ``grid (in, G + 2k + 1)`` (already extended by ``k`` knots on each side, possibly
non-uniform after ``update_grid_from_samples``), so it is zero beyond the outermost knots. The
same edge ``i -> j`` in kanzoo is ``W_b[j, i] act(x) + s[j, i] sum_f W_s[j, i, f] B_f(x)``; the
conversion transposes ``(in, out)`` to ``(out, in)`` and folds the mask into both scales.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kanzoo.layers.kan_linear import KANLinear

from .efficient_kan import bspline_linear_from_tensors

__all__ = ["from_pykan"]


def _probe_activation(base_fun) -> str | None:
    """Name of pykan's ``base_fun`` among kanzoo's activations; ``None`` for the zero function."""
    if isinstance(base_fun, nn.SiLU):
        return "silu"
    if isinstance(base_fun, nn.Identity):
        return "identity"
    if isinstance(base_fun, nn.GELU) and base_fun.approximate == "none":
        return "gelu"
    # Anything else (a lambda, a custom module): identify it from its values.
    t = torch.linspace(-6.0, 6.0, 241, dtype=torch.float32)
    try:
        with torch.no_grad():
            v = base_fun(t)
    except Exception as err:  # any failure of the foreign callable
        raise ValueError(f"from_pykan: cannot evaluate base_fun {base_fun!r}: {err}") from err
    if not torch.is_tensor(v) or v.shape != t.shape:
        raise ValueError(f"from_pykan: base_fun {base_fun!r} is not elementwise")
    v = v.to(torch.float32)
    candidates = {
        "silu": t * torch.sigmoid(t),
        "gelu": 0.5 * t * (1.0 + torch.erf(t / math.sqrt(2.0))),
        "identity": t,
        None: torch.zeros_like(t),
    }
    for name, ref in candidates.items():
        if torch.allclose(v, ref, rtol=1e-5, atol=1e-6):
            return name
    raise ValueError(
        f"from_pykan: base_fun {base_fun!r} matches none of silu, gelu (erf), identity or zero, "
        "which are the base activations KANLinear supports"
    )


def from_pykan(layer: nn.Module) -> KANLinear:
    """Convert a pykan ``KANLayer`` into a kanzoo :class:`~kanzoo.layers.KANLinear`.

    Args:
        layer: A ``kan.KANLayer`` (for a ``MultKAN`` model convert its ``act_fun[l]`` layers; the
            model's node scales/biases and symbolic branch are not part of a ``KANLayer``).

    Returns:
        A ``KANLinear`` without bias, in the dtype/device of ``layer.coef``, whose outputs equal
        ``layer(x)[0]`` for every ``x (N, in)``, in and out of the grid range.

    Raises:
        ValueError: Not a ``KANLayer``, inconsistent tensors, or an unsupported ``base_fun``.
    """
    needed = ("coef", "grid", "scale_base", "scale_sp", "mask", "k", "base_fun")
    if not isinstance(layer, nn.Module) or any(not hasattr(layer, a) for a in needed):
        if hasattr(layer, "act_fun"):
            raise ValueError("from_pykan expects a KANLayer; for a MultKAN pass model.act_fun[l]")
        raise ValueError(f"from_pykan expects a pykan KANLayer with {needed}, got {type(layer).__name__}")
    coef = layer.coef.detach()  # (in, out, G + k)
    if coef.dim() != 3:
        raise ValueError(f"from_pykan: coef must be (in, out, n), got {tuple(coef.shape)}")
    in_f, out_f, n = coef.shape
    grid = layer.grid.detach()
    if grid.shape[1] - n - 1 != int(layer.k):
        raise ValueError(
            f"from_pykan: grid {tuple(grid.shape)} and coef {tuple(coef.shape)} do not match k={layer.k}"
        )
    mask = layer.mask.detach().to(coef.dtype)
    for name in ("scale_base", "scale_sp", "mask"):
        shape = tuple(getattr(layer, name).shape)
        if shape != (in_f, out_f):
            raise ValueError(f"from_pykan: {name} must be ({in_f}, {out_f}), got {shape}")
    act = _probe_activation(layer.base_fun)
    base_weight = None if act is None else (mask * layer.scale_base.detach().to(coef.dtype)).T
    spline_scaler = (mask * layer.scale_sp.detach().to(coef.dtype)).T
    return bspline_linear_from_tensors(
        grid=grid,
        spline_weight=coef.permute(1, 0, 2),
        base_weight=base_weight,
        spline_scaler=spline_scaler,
        base_activation=act,
        source="from_pykan",
    )
