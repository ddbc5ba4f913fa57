"""Whole-network importers: efficient-kan ``KAN`` and pykan ``KAN``/``MultKAN`` as stacks of ``KANLinear``.

efficient-kan's ``KAN`` applies its ``layers`` (a ``ModuleList`` of its ``KANLinear``) one after the
other, so its ``state_dict`` holds ``layers.<i>.base_weight``, ``layers.<i>.spline_weight``,
``layers.<i>.grid`` and optionally ``layers.<i>.spline_scaler``; each group converts with
:func:`~kanzoo.convert.from_efficient_kan`.

pykan's ``MultKAN.forward`` computes, per layer ``l`` (sum nodes only, symbolic branch off)::

    h = act_fun[l](x)[0]                               # a KANLayer
    h = subnode_scale[l] * h + subnode_bias[l]
    x = node_scale[l] * h + node_bias[l]

which is ``s * act_fun[l](x) + b`` with ``s = node_scale * subnode_scale`` and
``b = node_scale * subnode_bias + node_bias``. Scaling output row ``j`` of a ``KANLinear``'s base
weight and spline scale by ``s[j]`` scales that output exactly, and ``b`` becomes its bias.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kanzoo.layers.kan_linear import KANLinear

from .efficient_kan import bspline_linear_from_tensors, from_efficient_kan
from .pykan import from_pykan

__all__ = ["SelectInputs", "from_efficient_kan_network", "from_pykan_network"]

_LAYER_KEY = re.compile(r"^(?P<prefix>.*?)layers\.(?P<index>\d+)\.(?P<name>[^.]+)$")


class SelectInputs(nn.Module):
    """Reorder/select input columns: ``x[..., index]`` (pykan's ``input_id`` after pruning inputs).

    Args:
        index: 1-D integer tensor of column indices.
    """

    def __init__(self, *, index: torch.Tensor) -> None:
        super().__init__()
        index = torch.as_tensor(index).long().flatten()
        self.register_buffer("index", index.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(-1, self.index.to(x.device))


def from_efficient_kan_network(
    state_dict: Mapping[str, torch.Tensor] | nn.Module, **layer_kwargs: Any
) -> nn.Sequential:
    """Convert an efficient-kan ``KAN`` (``state_dict`` or module) to ``nn.Sequential`` of ``KANLinear``.

    Args:
        state_dict: The network's ``state_dict()`` (or the module) with keys
            ``[prefix]layers.<i>.base_weight``, ``.spline_weight``, ``.grid`` and optionally
            ``.spline_scaler``, for ``i = 0 .. L-1``; one common ``prefix`` (e.g. ``"kan."``) is allowed.
        **layer_kwargs: ``base_activation`` (default ``"silu"``), applied to every layer.

    Returns:
        ``nn.Sequential`` of ``L`` ``KANLinear`` layers with the same knots and weights.

    Raises:
        ValueError: No ``layers.<i>.`` keys, several prefixes, missing/non-contiguous layer
            indices, widths that do not chain, or unsupported keyword arguments.
    """
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"from_efficient_kan_network expects a state_dict mapping, got {type(state_dict).__name__}"
        )
    unknown = sorted(set(layer_kwargs) - {"base_activation"})
    if unknown:
        raise ValueError(
            f"from_efficient_kan_network: unsupported keyword arguments {unknown} (only base_activation; "
            "the network has no biases and grid size/order/range come from the stored grids)"
        )
    groups: dict[int, dict[str, torch.Tensor]] = {}
    prefixes: set[str] = set()
    for key, value in state_dict.items():
        m = _LAYER_KEY.match(key)
        if m is None:
            continue
        prefixes.add(m["prefix"])
        groups.setdefault(int(m["index"]), {})[m["name"]] = value
    if not groups:
        raise ValueError(
            "from_efficient_kan_network: no 'layers.<i>.<name>' keys found; expected the state_dict of "
            f"an efficient-kan KAN, got keys {sorted(state_dict)[:8]}"
        )
    if len(prefixes) > 1:
        raise ValueError(f"from_efficient_kan_network: several networks in one state_dict {sorted(prefixes)}")
    indices = sorted(groups)
    if indices != list(range(len(indices))):
        raise ValueError(f"from_efficient_kan_network: layer indices must be 0..L-1, got {indices}")
    layers = []
    for i in indices:
        try:
            layer = from_efficient_kan(groups[i], **layer_kwargs)
        except ValueError as err:
            raise ValueError(f"from_efficient_kan_network: layer {i}: {err}") from err
        if layers and layers[-1].out_features != layer.in_features:
            raise ValueError(
                f"from_efficient_kan_network: layer {i - 1} has {layers[-1].out_features} outputs but "
                f"layer {i} has {layer.in_features} inputs"
            )
        layers.append(layer)
    return nn.Sequential(*layers)


def _check_pykan_model(model: nn.Module) -> int:
    needed = ("act_fun", "width", "node_bias", "node_scale", "subnode_bias", "subnode_scale")
    if not isinstance(model, nn.Module) or any(not hasattr(model, a) for a in needed):
        raise ValueError(
            f"from_pykan_network expects a pykan KAN/MultKAN with {needed}, got {type(model).__name__}; "
            "for a single KANLayer use from_pykan"
        )
    depth = len(model.act_fun)
    for l, w in enumerate(model.width):
        n_mult = w[1] if isinstance(w, (list, tuple)) else 0
        if n_mult:
            raise ValueError(
                f"from_pykan_network: layer {l} of width {w} has {n_mult} multiplication node(s); "
                "KANLinear stacks only express sum nodes"
            )
    if getattr(model, "symbolic_enabled", False) and hasattr(model, "symbolic_fun"):
        for l in range(depth):
            sym = model.symbolic_fun[l]
            if torch.count_nonzero(sym.mask.detach()) > 0:
                raise ValueError(
                    f"from_pykan_network: layer {l} has active symbolic edges (symbolic_fun[{l}].mask is "
                    "non-zero); they cannot be mapped to splines. Remove them (e.g. unfix_symbolic) or "
                    "set model.symbolic_enabled = False if they should be ignored"
                )
    return depth


def from_pykan_network(model: nn.Module) -> nn.Module:
    """Convert a pykan ``KAN`` (``MultKAN``) into a stack of kanzoo ``KANLinear`` with the same forward.

    Args:
        model: A ``kan.KAN``/``kan.MultKAN`` with sum nodes only and no active symbolic edges.

    Returns:
        ``nn.Sequential`` of one ``KANLinear`` (with bias) per pykan layer, preceded by a
        :class:`SelectInputs` only when ``model.input_id`` is not ``0..n-1``. Its output equals
        ``model(x)`` for every ``x (N, n)``; dtype/device follow the model's spline coefficients.

    Raises:
        ValueError: Not a pykan network, multiplication nodes, active symbolic edges, or a layer
            :func:`~kanzoo.convert.from_pykan` cannot convert.
    """
    depth = _check_pykan_model(model)
    modules: list[nn.Module] = []
    input_id = getattr(model, "input_id", None)
    if input_id is not None:
        input_id = torch.as_tensor(input_id).long().flatten()
        if not torch.equal(input_id.cpu(), torch.arange(input_id.numel())):
            modules.append(SelectInputs(index=input_id))
    for l in range(depth):
        try:
            base = from_pykan(model.act_fun[l])
        except ValueError as err:
            raise ValueError(f"from_pykan_network: layer {l}: {err}") from err
        dtype, n_out = base.spline_weight.dtype, base.out_features
        vectors = {}
        for name in ("node_scale", "node_bias", "subnode_scale", "subnode_bias"):
            v = getattr(model, name)[l].detach().to(dtype=dtype, device=base.spline_weight.device)
            if tuple(v.shape) != (n_out,):
                raise ValueError(f"from_pykan_network: {name}[{l}] must be ({n_out},), got {tuple(v.shape)}")
            vectors[name] = v
        scale = vectors["node_scale"] * vectors["subnode_scale"]
        bias = vectors["node_scale"] * vectors["subnode_bias"] + vectors["node_bias"]
        with torch.no_grad():
            layer = bspline_linear_from_tensors(
                grid=base.basis.grid.detach(),
                spline_weight=base.spline_weight.detach(),
                base_weight=None if base.base_weight is None else base.base_weight.detach() * scale[:, None],
                spline_scaler=base.spline_scaler.detach() * scale[:, None],
                bias=bias,
                base_activation=base.base_activation,
                source=f"from_pykan_network layer {l}",
            )
        if modules and isinstance(modules[-1], KANLinear) and modules[-1].out_features != layer.in_features:
            raise ValueError(
                f"from_pykan_network: layer {l - 1} has {modules[-1].out_features} outputs but layer {l} "
                f"has {layer.in_features} inputs"
            )
        modules.append(layer)
    return nn.Sequential(*modules)
