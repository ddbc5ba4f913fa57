"""Symbolic regression of KAN edges: suggest formulas, swap edges for them, export sympy expressions.

Design: :class:`SymbolicKANLinear` wraps a KANLinear ``layer`` and adds a sparse set of symbolic edges

    y_j = Σ_i mask_ji · φ_ji(x_i)  +  Σ_{(j,i) symbolic} c · f(a·x_i + b) + d  +  bias_j

``mask`` (a buffer) switches the spline edge off once it is replaced; ``(a, b, c, d)`` of every symbolic
edge are one trainable ``(E, 4)`` parameter, so the network keeps training after :func:`symbolify` (create
the optimizer after the last ``symbolify``: each call replaces that parameter). The spline part runs the
wrapped layer itself (with masked weights substituted through ``torch.func.functional_call``), so every
basis and the fused training path keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sympy as sp
import torch
from torch import Tensor, nn
from torch.func import functional_call

from kanzoo.interpret.edges import channel_ranges, edge_set, is_kan_linear
from kanzoo.interpret.library import (
    SymbolicFit,
    fit_candidate,
    get_candidate,
    select_fit,
    suggest_symbolic,
)
from kanzoo.interpret.network import kan_stack, stack_inputs


class SymbolicKANLinear(nn.Module):
    """A KANLinear whose edges can individually be replaced by trainable symbolic functions.

    Args:
        layer: the KANLinear to wrap (kept as ``self.layer``; its parameters stay trainable).
    """

    def __init__(self, *, layer: nn.Module) -> None:
        super().__init__()
        if not is_kan_linear(layer):
            raise ValueError(f"SymbolicKANLinear wraps a KANLinear, got {type(layer).__name__}")
        self.layer = layer
        out_f, in_f = layer.spline_weight.shape[:2]
        self.in_features, self.out_features = in_f, out_f
        self.register_buffer("mask", torch.ones(out_f, in_f, dtype=layer.spline_weight.dtype))
        self.register_buffer("symbolic_index", torch.zeros(0, 2, dtype=torch.long))  # rows (j, i)
        self.symbolic_params = nn.Parameter(torch.zeros(0, 4, dtype=layer.spline_weight.dtype))
        self.symbolic_names: list[str] = []

    def extra_repr(self) -> str:
        return f"symbolic_edges={len(self.symbolic_names)}"

    def get_extra_state(self) -> dict[str, Any]:
        return {"symbolic_names": list(self.symbolic_names)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.symbolic_names = list(state["symbolic_names"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint may hold a different number of symbolic edges: resize before loading.
        params = state_dict.get(prefix + "symbolic_params")
        index = state_dict.get(prefix + "symbolic_index")
        if params is not None and index is not None:
            self.symbolic_params = nn.Parameter(self.symbolic_params.new_zeros(params.shape))
            self.symbolic_index = self.symbolic_index.new_zeros(index.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def symbolic_edges(self) -> list[tuple[int, int, SymbolicFit]]:
        """``(j, i, fit)`` for every symbolic edge (``fit.r2`` is nan: it is not re-measured here)."""
        out = []
        for (j, i), name, p in zip(
            self.symbolic_index.tolist(), self.symbolic_names, self.symbolic_params.tolist()
        ):
            out.append(
                (j, i, SymbolicFit(name, *p, r2=float("nan"), complexity=get_candidate(name).complexity))
            )
        return out

    def active_spline_edges(self) -> list[tuple[int, int]]:
        """Spline edges still in use: mask on and some non-zero weight."""
        lay = self.layer
        live = lay.spline_weight.detach().abs().sum(-1) > 0
        if getattr(lay, "base_weight", None) is not None:
            live |= lay.base_weight.detach() != 0
        live &= self.mask.bool()
        return [tuple(t) for t in live.nonzero().tolist()]

    def add_symbolic(self, i: int, j: int, fit: SymbolicFit) -> None:
        """Replace spline edge ``i -> j`` by ``fit`` (replacing an earlier symbolic edge there)."""
        get_candidate(fit.name)
        if not (0 <= i < self.in_features and 0 <= j < self.out_features):
            raise ValueError(
                f"edge ({i} -> {j}) out of range for a {self.in_features}->{self.out_features} layer"
            )
        rows = self.symbolic_index.tolist()
        names = list(self.symbolic_names)
        params = self.symbolic_params.detach().clone()
        new = torch.tensor([[fit.a, fit.b, fit.c, fit.d]], dtype=params.dtype, device=params.device)
        if [j, i] in rows:
            k = rows.index([j, i])
            params[k] = new[0]
            names[k] = fit.name
        else:
            rows.append([j, i])
            names.append(fit.name)
            params = torch.cat([params, new])
        self.symbolic_index = torch.tensor(rows, dtype=torch.long, device=self.mask.device).reshape(-1, 2)
        self.symbolic_names = names
        self.symbolic_params = nn.Parameter(params)
        self.mask[j, i] = 0.0

    def symbolic_values(self, x: Tensor) -> Tensor:
        """Values ``c·f(a·x_i+b)+d`` of every symbolic edge, shape ``(..., E)``."""
        a, b, c, d = self.symbolic_params.to(x.dtype).unbind(-1)
        z = x[..., self.symbolic_index[:, 1]] * a + b
        f = torch.empty_like(z)
        for name in set(self.symbolic_names):
            ids = torch.tensor([k for k, n in enumerate(self.symbolic_names) if n == name], device=x.device)
            f = f.index_copy(-1, ids, get_candidate(name).torch(z.index_select(-1, ids)))
        return c * f + d

    def forward(self, x: Tensor) -> Tensor:
        lay = self.layer
        if bool((self.mask == 1).all()):
            y = lay(x)
        else:
            m = self.mask
            sub = {"spline_weight": lay.spline_weight * m.unsqueeze(-1)}
            if getattr(lay, "base_weight", None) is not None:
                sub["base_weight"] = lay.base_weight * m
            y = functional_call(lay, sub, (x,))
        if self.symbolic_names:
            y = y.index_add(-1, self.symbolic_index[:, 0], self.symbolic_values(x).to(y.dtype))
        return y


def _unwrap(layer: nn.Module) -> nn.Module:
    return layer.layer if isinstance(layer, SymbolicKANLinear) else layer


def edge_samples(
    layer: nn.Module, i: int, j: int, x: Tensor | None = None, *, num: int = 512
) -> tuple[Tensor, Tensor]:
    """Samples ``(x_i, φ_ji(x_i))`` of spline edge ``i -> j`` on data ``x`` (..., in) or its grid range."""
    lay = _unwrap(layer)
    out_f, in_f = lay.spline_weight.shape[:2]
    if not (0 <= i < in_f and 0 <= j < out_f):
        raise ValueError(f"edge ({i} -> {j}) out of range for a {in_f}->{out_f} layer")
    if x is None:
        lo, hi = channel_ranges(lay.basis)
        xi = torch.linspace(float(lo[i]), float(hi[i]), num)
    else:
        xi = x.detach().reshape(-1, in_f)[:, i].float().cpu()
    xc = torch.zeros(xi.numel(), in_f)
    xc[:, i] = xi
    phi = edge_set(lay).evaluate(xc, torch.tensor([j * in_f + i]))[:, 0]
    return xi, phi


def suggest_edge(
    layer: nn.Module,
    i: int,
    j: int,
    x: Tensor | None = None,
    *,
    candidates: Iterable[str] | None = None,
    top_k: int | None = 5,
    **fit_kwargs: Any,
) -> list[SymbolicFit]:
    """Rank the candidate functions for spline edge ``i -> j`` of ``layer`` by R² (best first).

    Args:
        layer: a KANLinear or SymbolicKANLinear.
        i: input index of the edge.
        j: output index of the edge.
        x: inputs reaching the layer (..., in); default: the basis grid range of input ``i``.
        candidates: names to try (default: the whole ``SYMBOLIC_LIBRARY``).
        top_k: keep the best ``top_k`` (None: all).
        **fit_kwargs: passed to :func:`kanzoo.interpret.fit_candidate` (``a_range``, ``b_range`` ...).
    """
    xi, phi = edge_samples(layer, i, j, x)
    fits = suggest_symbolic(xi, phi, candidates=candidates, **fit_kwargs)
    return fits if top_k is None else fits[:top_k]


def symbolify(
    layer: nn.Module,
    i: int,
    j: int,
    name: str | None = None,
    *,
    x: Tensor | None = None,
    candidates: Iterable[str] | None = None,
    fit: SymbolicFit | None = None,
) -> SymbolicKANLinear:
    """Replace spline edge ``i -> j`` of ``layer`` by a fitted symbolic function, keeping it trainable.

    Args:
        layer: a SymbolicKANLinear (changed in place) or a KANLinear (wrapped in a new
            SymbolicKANLinear that the caller puts back into the model; see :func:`make_symbolic`).
        i: input index of the edge.
        j: output index of the edge.
        name: candidate function (``"sin"``, ``"x^2"``, ...); None picks the best by R² with
            :func:`kanzoo.interpret.select_fit`.
        x: inputs reaching the layer, to fit on the data range (default: the grid range).
        candidates: candidate names considered when ``name`` is None.
        fit: use these parameters as they are (no fitting).

    Returns:
        The SymbolicKANLinear holding the edge.
    """
    wrapper = layer if isinstance(layer, SymbolicKANLinear) else SymbolicKANLinear(layer=layer)
    if fit is None:
        xi, phi = edge_samples(wrapper, i, j, x)
        if name is not None:
            fit = fit_candidate(xi, phi, name)
        else:
            fit = select_fit(suggest_symbolic(xi, phi, candidates=candidates))
    wrapper.add_symbolic(i, j, fit)
    return wrapper


def make_symbolic(model: nn.Module) -> nn.Module:
    """Wrap every KANLinear of ``model`` (in place) in a SymbolicKANLinear; returns ``model``.

    A model that is itself a KANLinear cannot be changed in place: its wrapper is returned.
    """
    if is_kan_linear(model):
        return SymbolicKANLinear(layer=model)
    for mod in list(model.modules()):
        if isinstance(mod, SymbolicKANLinear):
            continue
        for child_name, child in list(mod.named_children()):
            if is_kan_linear(child):
                setattr(mod, child_name, SymbolicKANLinear(layer=child))
    return model


def auto_symbolic(
    model: nn.Module,
    x: Tensor | None = None,
    *,
    candidates: Iterable[str] | None = None,
    min_r2: float = 0.0,
) -> list[tuple[int, int, int, SymbolicFit]]:
    """Symbolify every active edge of a small KAN (a KANNetwork or Sequential of KANLinear layers).

    Layers are processed input to output; each layer's edges are fitted on the inputs it receives from
    the (already symbolic) layers before it. The model is changed in place (layers get wrapped).

    Args:
        model: the small KAN (``nn.Sequential``).
        x: network inputs (N, d0); default: the first layer's grid range.
        candidates: candidate names (default: the whole library).
        min_r2: edges whose best fit has a lower R² are left as splines.

    Returns:
        ``(layer_index, i, j, fit)`` for every edge replaced.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"auto_symbolic needs an nn.Sequential of KAN layers, got {type(model).__name__}")
    for k, layer in enumerate(model):
        if is_kan_linear(layer):
            model[k] = SymbolicKANLinear(layer=layer)
    done = []
    for k in range(len(model)):
        inputs = stack_inputs(list(model), x)[k]
        wrapper = model[k]
        for j, i in wrapper.active_spline_edges():
            xi, phi = edge_samples(wrapper, i, j, inputs)
            fit = select_fit(suggest_symbolic(xi, phi, candidates=candidates))
            if fit.r2 >= min_r2:
                wrapper.add_symbolic(i, j, fit)
                done.append((k, i, j, fit))
    return done


def to_sympy(
    model: nn.Module | Sequence[nn.Module],
    *,
    input_names: Sequence[str] | None = None,
    digits: int | None = None,
    simplify: bool = False,
) -> list[sp.Expr]:
    """Export a fully symbolic small KAN as sympy expressions, one per output.

    Every edge must be symbolic or inactive (zeroed by pruning); otherwise a ValueError names the
    spline edges left.

    Args:
        model: a KANNetwork / nn.Sequential of SymbolicKANLinear (or KANLinear with only zero edges).
        input_names: symbol names of the inputs (default ``x_1 ... x_d``).
        digits: round every coefficient to this many significant digits.
        simplify: run ``sympy.simplify`` on the result.
    """
    layers = list(model) if isinstance(model, (nn.Sequential, list, tuple)) else [model]
    kan_stack([_unwrap(m) for m in layers])  # validates the chain
    d0 = _unwrap(layers[0]).spline_weight.shape[1]
    names = list(input_names) if input_names is not None else [f"x_{k + 1}" for k in range(d0)]
    if len(names) != d0:
        raise ValueError(f"need {d0} input names, got {len(names)}")
    values: list[sp.Expr] = list(sp.symbols(names, real=True)) if d0 > 1 else [sp.Symbol(names[0], real=True)]
    for k, layer in enumerate(layers):
        wrapper = layer if isinstance(layer, SymbolicKANLinear) else SymbolicKANLinear(layer=layer)
        left = wrapper.active_spline_edges()
        if left:
            raise ValueError(
                f"layer {k} still has spline edges (j, i) = {left[:10]}; symbolify them (or prune) first"
            )
        bias = getattr(wrapper.layer, "bias", None)
        bias = None if bias is None else bias.detach()
        outs: list[sp.Expr] = [
            sp.Float(float(f"{float(bias[j]):.{digits}g}") if digits is not None else float(bias[j]))
            if bias is not None
            else sp.Integer(0)
            for j in range(wrapper.out_features)
        ]
        for j, i, fit in wrapper.symbolic_edges():
            outs[j] = outs[j] + fit.expr(values[i], digits=digits)
        values = outs
    return [sp.simplify(v) for v in values] if simplify else values
