"""Grid of the learned edge functions φ of one KAN layer, most important edge first.

Uses matplotlib's object API (``matplotlib.figure.Figure``), never ``pyplot``: no GUI backend, no
global state, safe in headless runs and threads. Every panel shows one edge ``φ`` over its input
channel's basis interval (widened to the data when data is given), with the knots (B-spline) or
centres (RBF) as ticks, the data range shaded and the edge's importance (mean |φ| on the samples).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from kanzoo.interpret.edges import (
    channel_knots,
    channel_ranges,
    edge_set,
    flatten_channels,
    grid_samples,
    is_kan_conv,
    is_kan_layer,
)

_FORMATS = (".png", ".svg", ".pdf")


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save ``fig`` to ``path`` (.png, .svg or .pdf, parent folders created) and return the path."""
    path = Path(path)
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(f"unsupported image format {path.suffix!r} for {path}; use one of {_FORMATS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _unwrap(layer: nn.Module) -> nn.Module:
    inner = getattr(layer, "layer", None)
    return inner if inner is not None and is_kan_layer(inner) and not is_kan_layer(layer) else layer


def plot_edges(
    layer: nn.Module,
    x: Tensor | None = None,
    *,
    samples: Tensor | None = None,
    max_edges: int = 16,
    taps: str = "sum",
    num: int = 200,
    ncols: int | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Plot the learned edge functions of a KAN layer, the most important first.

    Importance is the mean |φ| over the samples: the layer's inputs when given, else points spread
    uniformly over each channel's basis interval.

    Args:
        layer: a KANLinear, KANConv{1,2,3}d or SymbolicKANLinear (its spline edges are drawn).
        x: a batch of inputs to the layer (``(..., in)``; ``(N, C, *spatial)`` for convolutions).
        samples: alternatively, per-channel input samples ``(M, C)`` (what
            :func:`kanzoo.interpret.capture_inputs` records).
        max_edges: draw at most this many edges (the most important ones).
        taps: convolutions only: ``"sum"`` draws one function per (out, in) channel pair, the sum
            over kernel taps (the response to a constant patch); ``"each"`` one per tap.
        num: points per curve.
        ncols: panels per row (default: about square).
        title: figure title (default: layer class and shape).
        path: if given, the figure is also saved there (.png/.svg/.pdf).

    Returns:
        The matplotlib Figure.
    """
    layer = _unwrap(layer)
    if not is_kan_layer(layer):
        raise ValueError(f"plot_edges needs a KAN layer (KANLinear/KANConv), got {type(layer).__name__}")
    if max_edges < 1:
        raise ValueError(f"max_edges must be >= 1, got {max_edges}")
    if x is not None and samples is not None:
        raise ValueError("give either x (layer inputs) or samples (per-channel values), not both")
    es = edge_set(layer, taps=taps)
    xc = samples if samples is not None else (flatten_channels(x, layer) if x is not None else None)
    have_data = xc is not None
    if xc is None:
        xc = grid_samples(layer)
    xc = xc.detach().float().cpu()
    c = es.layer.basis.in_features if hasattr(es.layer.basis, "in_features") else xc.shape[1]
    if xc.dim() != 2 or xc.shape[1] != c:
        raise ValueError(f"samples must have shape (M, {c}), got {tuple(xc.shape)}")

    scores = es.mean_abs(xc).reshape(-1)
    order = torch.argsort(scores, descending=True)[:max_edges]
    lo, hi = channel_ranges(layer.basis)
    if have_data:
        dmin, dmax = xc.min(0).values, xc.max(0).values
        span_lo, span_hi = torch.minimum(lo, dmin), torch.maximum(hi, dmax)
    else:
        span_lo, span_hi = lo, hi
    pad = 0.05 * (span_hi - span_lo).clamp_min(1e-6)
    t, phi = es.curves(order.tolist(), num=num, lo=span_lo - pad, hi=span_hi + pad)

    n = len(order)
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(2.3 * ncols, 1.9 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k in range(nrows * ncols):
        ax = axes[k // ncols][k % ncols]
        if k >= n:
            ax.set_axis_off()
            continue
        e = int(order[k])
        ch = int(es.in_index[e])
        ax.plot(t[:, k].numpy(), phi[:, k].numpy(), color="C0", lw=1.5)
        if have_data:
            ax.axvspan(float(dmin[ch]), float(dmax[ch]), color="C1", alpha=0.12, lw=0, label="data range")
        knots = channel_knots(layer.basis, ch)
        if knots is not None:
            for kn in knots.tolist():
                ax.axvline(kn, color="0.6", lw=0.5, ls=":", zorder=0)
        ax.set_title(f"{es.label(e)}  |φ|={float(scores[e]):.3g}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.axhline(0.0, color="0.85", lw=0.5, zorder=0)
    if title is None:
        kind = "conv (taps " + taps + ")" if is_kan_conv(layer) else "linear"
        title = f"{type(layer).__name__} {kind}: top {n} of {es.num_edges} edges by mean |φ|"
        title += " on data" if have_data else " over the grid range"
    fig.suptitle(title, fontsize=9)
    if path is not None:
        save_figure(fig, path)
    return fig
