"""Evaluate and score the learned edge functions φ of KAN layers.

A KAN layer computes ``y_j = Σ_i φ_ji(x_i) + bias_j`` with one univariate function per edge,

    φ_ji(t) = base_weight[j, i] · act(t) + Σ_k W_s[j, i, k] · B_k(t)

where ``W_s = layer.effective_spline_weight()`` and ``B`` is the layer's basis evaluated for input
channel ``i``. Everything here reads only the attributes of the layer contract (``basis``,
``base_weight``, ``spline_weight``, ``spline_scaler``, ``base_activation``), so it works for every basis.

Convolutions: a KAN convolution has one function per (output channel, input channel, kernel tap).
:func:`edge_set` either keeps the taps apart (``taps="each"``) or sums them (``taps="sum"``, the
default). The summed function ``Σ_t φ_oct`` is the response of output channel ``o`` to a spatially
constant patch of input channel ``c``: one curve per channel pair, which is what one can read.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kanzoo.layers import is_kan_layer  # the one KAN-layer predicate (re-exported here)

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "identity": lambda t: t,
    "relu": F.relu,
    "tanh": torch.tanh,
}

# Elements (samples x edges x basis functions) evaluated at once; keeps memory ~100 MB in fp32.
_CHUNK_ELEMENTS = 1 << 24


def is_kan_linear(module: nn.Module) -> bool:
    """True for a KANLinear-like layer: ``spline_weight`` of shape (out, in, n)."""
    return is_kan_layer(module) and module.spline_weight.dim() == 3


def is_kan_conv(module: nn.Module) -> bool:
    """True for a KANConv-like layer: ``spline_weight`` of shape (out, in/groups, n, *kernel)."""
    return is_kan_layer(module) and module.spline_weight.dim() > 3


def activation_fn(layer: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The base activation of a KAN layer as a function, or None when it has no base branch."""
    if getattr(layer, "base_weight", None) is None:
        return None
    act = getattr(layer, "base_activation", "silu")
    if act is None:
        return None
    if callable(act):
        return act
    if act not in _ACTIVATIONS:
        raise ValueError(f"unknown base_activation {act!r}; known: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[act]


def effective_spline_weight(layer: nn.Module) -> Tensor:
    """``spline_weight`` times the standalone scaler (broadcast over the basis axis)."""
    if hasattr(layer, "effective_spline_weight"):
        return layer.effective_spline_weight()
    w = layer.spline_weight
    s = getattr(layer, "spline_scaler", None)
    if s is None:
        return w
    return w * s.unsqueeze(2) if s.dim() == w.dim() - 1 else w * s.reshape(*s.shape[:2], 1, *s.shape[2:])


def kan_modules(model: nn.Module, pattern: str | Iterable[str] = "*") -> dict[str, nn.Module]:
    """KAN layers of ``model`` whose qualified name matches an fnmatch glob (or any of several).

    A model that is itself a KAN layer is returned under the name ``""``.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    found = {}
    for name, module in model.named_modules():
        if is_kan_layer(module) and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            found[name] = module
    return found


def channel_ranges(basis: nn.Module) -> tuple[Tensor, Tensor]:
    """The per-input-channel interval on which a basis is defined, as ``(lo, hi)`` of shape (C,).

    B-spline bases expose their knot vectors (``grid`` of shape (C, G+2k+1)); the domain is the
    span of the interior knots. Other bases fall back to ``grid_range`` or to (-1, 1).
    """
    c = _num_channels(basis)
    grid = getattr(basis, "grid", None)
    k = getattr(basis, "spline_order", None)
    if isinstance(grid, Tensor) and grid.dim() == 2 and k is not None:
        return grid[:, k].detach().float(), grid[:, -k - 1].detach().float()
    if isinstance(grid, Tensor) and grid.dim() == 2 and grid.shape[0] == c:  # e.g. RBF centres
        return grid.min(1).values.detach().float(), grid.max(1).values.detach().float()
    period = getattr(basis, "period", None)
    default = (-period / 2, period / 2) if isinstance(period, (int, float)) else (-1.0, 1.0)
    lo, hi = getattr(basis, "grid_range", default)
    return torch.full((c,), float(lo)), torch.full((c,), float(hi))


def channel_knots(basis: nn.Module, channel: int) -> Tensor | None:
    """Knots (B-spline) or centres (RBF-like bases with a ``grid``) of one input channel, if any."""
    grid = getattr(basis, "grid", None)
    if not isinstance(grid, Tensor):
        return None
    row = grid[channel] if grid.dim() == 2 else grid
    k = getattr(basis, "spline_order", None)
    if k:
        row = row[k:-k]
    return row.detach().float().cpu()


def _num_channels(basis: nn.Module) -> int:
    for attr in ("in_features", "in_channels", "num_channels"):
        if isinstance(getattr(basis, attr, None), int):
            return getattr(basis, attr)
    grid = getattr(basis, "grid", None)
    if isinstance(grid, Tensor) and grid.dim() == 2:
        return grid.shape[0]
    raise ValueError(f"cannot tell the number of input channels of basis {type(basis).__name__}")


def _full_precision(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) or not x.is_floating_point() else x


def flatten_channels(x: Tensor, layer: nn.Module) -> Tensor:
    """Layer input -> samples of the per-channel input values, shape (M, C).

    Linear: ``(..., in) -> (M, in)``. Convolution: ``(N, C, *spatial) -> (N·Π spatial, C)``.
    """
    if is_kan_conv(layer):
        return x.detach().movedim(1, -1).reshape(-1, x.shape[1])
    return x.detach().reshape(-1, x.shape[-1])


@dataclass
class EdgeSet:
    """The edge functions of one KAN layer flattened to a list of ``E`` univariate functions.

    ``φ_e(t) = base_coef[e] · act(t) + Σ_k spline_coef[e, k] · B_k(t)`` where ``B`` is the basis of
    input channel ``in_index[e]``. Edges are numbered in C order over ``shape``: ``(out, in)`` for a
    linear layer, ``(out, in/groups)`` for a convolution with summed taps, ``(out, in/groups, taps)``
    with separate taps.
    """

    layer: nn.Module
    in_index: Tensor
    base_coef: Tensor | None
    spline_coef: Tensor
    shape: tuple[int, ...]

    @property
    def num_edges(self) -> int:
        return self.in_index.numel()

    def label(self, e: int) -> str:
        """Human-readable name of edge ``e``: ``φ[out,in]`` (or ``φ[out,in,tap]``)."""
        idx = []
        for size in reversed(self.shape):
            idx.append(e % size)
            e //= size
        return "φ[" + ",".join(str(i) for i in reversed(idx)) + "]"

    def evaluate(self, xc: Tensor, edges: Tensor | None = None) -> Tensor:
        """φ_e on per-channel samples ``xc`` (M, C) -> (M, E') for the selected ``edges`` (default all)."""
        edges = torch.arange(self.num_edges) if edges is None else torch.as_tensor(edges).long()
        basis, act = self.layer.basis, activation_fn(self.layer)
        n = self.spline_coef.shape[1]
        chunk = max(1, _CHUNK_ELEMENTS // max(1, xc.shape[0] * n))
        out = []
        with torch.no_grad():
            feats = basis(xc.to(self.spline_coef))  # (M, C, n)
            base = act(xc.to(self.spline_coef)) if act is not None and self.base_coef is not None else None
            for start in range(0, edges.numel(), chunk):
                ids = edges[start : start + chunk]
                ch = self.in_index[ids]
                phi = torch.einsum("men,en->me", feats[:, ch, :], self.spline_coef[ids])
                if base is not None:
                    phi = phi + base[:, ch] * self.base_coef[ids]
                out.append(phi)
        return torch.cat(out, dim=1) if out else xc.new_zeros(xc.shape[0], 0)

    def mean_abs(self, xc: Tensor) -> Tensor:
        """Importance of every edge: mean |φ_e| over the samples ``xc`` (M, C); shape ``self.shape``."""
        n = self.spline_coef.shape[1]
        chunk = max(1, _CHUNK_ELEMENTS // max(1, xc.shape[0] * n))
        scores = [
            self.evaluate(xc, torch.arange(s, min(s + chunk, self.num_edges))).abs().mean(0)
            for s in range(0, self.num_edges, chunk)
        ]
        return torch.cat(scores).reshape(self.shape)

    def curves(
        self, edges: Iterable[int], *, num: int = 200, lo: Tensor, hi: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Sample edges on ``num`` points of their channel interval [lo_c, hi_c] -> (t, φ), each (num, E')."""
        edges = torch.as_tensor(list(edges), dtype=torch.long)
        c = _num_channels(self.layer.basis)
        steps = torch.linspace(0.0, 1.0, num)[:, None]
        grid = lo[None, :] + steps * (hi - lo)[None, :]  # (num, C): column c spans channel c's interval
        if grid.shape[1] != c:
            raise ValueError(f"expected ranges for {c} channels, got {grid.shape[1]}")
        phi = self.evaluate(grid, edges)
        return grid[:, self.in_index[edges]], phi


def edge_set(layer: nn.Module, *, taps: str = "sum") -> EdgeSet:
    """Flatten the edge functions of a KAN layer (see :class:`EdgeSet`).

    Args:
        layer: a KANLinear or KANConv layer (anything following the layer contract).
        taps: convolutions only: ``"sum"`` (one function per channel pair, summed over kernel taps)
            or ``"each"`` (one function per tap).
    """
    if not is_kan_layer(layer):
        raise ValueError(f"{type(layer).__name__} is not a KAN layer (a kanzoo.layers.KANLayer)")
    if taps not in ("sum", "each"):
        raise ValueError(f"taps must be 'sum' or 'each', got {taps!r}")
    with torch.no_grad():
        ws = effective_spline_weight(layer).detach()
        dtype = torch.float64 if ws.dtype == torch.float64 else torch.float32  # half precision -> fp32
        ws = ws.to(dtype)
        wb = getattr(layer, "base_weight", None)
        wb = None if wb is None or activation_fn(layer) is None else wb.detach().to(dtype)
        out, in_local, n = ws.shape[:3]
        if ws.dim() == 3:
            in_index = torch.arange(in_local).repeat(out)
            return EdgeSet(
                layer, in_index, None if wb is None else wb.reshape(-1), ws.reshape(-1, n), (out, in_local)
            )
        # Convolution: (out, in/groups, n, *kernel). Output channel o reads channels of its group.
        groups = int(getattr(layer, "groups", 1))
        group_of_out = torch.arange(out) // (out // groups)
        chan = group_of_out[:, None] * in_local + torch.arange(in_local)[None, :]  # (out, in_local)
        ws = ws.reshape(out, in_local, n, -1)  # (out, in_local, n, T)
        wb = None if wb is None else wb.reshape(out, in_local, -1)
        if taps == "sum":
            return EdgeSet(
                layer,
                chan.reshape(-1),
                None if wb is None else wb.sum(-1).reshape(-1),
                ws.sum(-1).reshape(-1, n),
                (out, in_local),
            )
        t = ws.shape[-1]
        in_index = chan[:, :, None].expand(out, in_local, t).reshape(-1)
        coef = ws.permute(0, 1, 3, 2).reshape(-1, n)
        return EdgeSet(layer, in_index, None if wb is None else wb.reshape(-1), coef, (out, in_local, t))


def grid_samples(layer: nn.Module, num: int = 256) -> Tensor:
    """Per-channel samples spread uniformly over each channel's basis interval, shape (num, C)."""
    lo, hi = channel_ranges(layer.basis)
    return lo[None, :] + torch.linspace(0.0, 1.0, num)[:, None] * (hi - lo)[None, :]


def edge_importance(layer: nn.Module, x: Tensor | None = None, *, taps: str = "sum") -> Tensor:
    """Mean |φ| of every edge of ``layer`` on its inputs ``x`` (layer-shaped), or over the grid range.

    Returns a tensor of shape (out, in) for linear layers (and (out, in/groups[, taps]) for convs).
    """
    es = edge_set(layer, taps=taps)
    xc = grid_samples(layer) if x is None else _full_precision(flatten_channels(x, layer))
    return es.mean_abs(xc)


def subsample(xc: Tensor, max_samples: int, *, seed: int = 0) -> Tensor:
    """At most ``max_samples`` rows of ``xc``, chosen uniformly at random without replacement."""
    if xc.shape[0] <= max_samples:
        return xc
    gen = torch.Generator().manual_seed(seed)
    return xc[torch.randperm(xc.shape[0], generator=gen)[:max_samples]]


def capture_inputs(
    modules: dict[str, nn.Module], run: Callable[[], object], *, max_samples: int = 4096
) -> dict[str, Tensor]:
    """Run ``run()`` once and record, per named module, samples of its per-channel inputs (M, C).

    Forward pre-hooks grab the first positional input of each module; modules called several times
    (weight sharing, several layers through one block) accumulate all calls.
    """
    store: dict[str, list[Tensor]] = {name: [] for name in modules}
    handles = []
    for name, mod in modules.items():

        def hook(m, args, _name=name):
            if args and isinstance(args[0], Tensor):
                store[_name].append(
                    subsample(_full_precision(flatten_channels(args[0], m)).cpu(), max_samples)
                )

        handles.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    missing = [n for n, v in store.items() if not v]
    if missing:
        raise ValueError(f"modules never called during the forward pass: {missing}")
    return {n: subsample(torch.cat(v), max_samples) for n, v in store.items()}
