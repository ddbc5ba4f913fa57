"""A small KAN drawn as in the KAN paper: nodes in rows, every edge a tiny plot of its φ.

Inputs are at the bottom, outputs at the top. Each edge ``i -> j`` runs from node ``i`` to a small
panel showing ``φ_ji`` over the data reaching the layer (or the grid range), then on to node ``j``.
Line and panel opacity is the edge's importance (mean |φ| on that data) relative to the most important
edge of the same layer, so dead edges fade out. Symbolic edges of a SymbolicKANLinear are drawn in red
with their function name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from kanzoo.interpret.edges import edge_set
from kanzoo.interpret.network import kan_stack, stack_inputs
from kanzoo.interpret.symbolic import SymbolicKANLinear
from kanzoo.viz.edges import save_figure


def _layers(model: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    mods = list(model) if isinstance(model, (nn.Sequential, nn.ModuleList, list, tuple)) else [model]
    kan_stack([m.layer if isinstance(m, SymbolicKANLinear) else m for m in mods])  # validates
    return mods


def plot_network(
    model: nn.Module | Sequence[nn.Module],
    x: Tensor | None = None,
    *,
    in_names: Sequence[str] | None = None,
    out_names: Sequence[str] | None = None,
    max_width: int = 24,
    num: int = 100,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Draw a small KAN (a KANNetwork / nn.Sequential of KANLinear or SymbolicKANLinear layers).

    Args:
        model: the network (or a list of its layers).
        x: network inputs (N, d0) used for the importance and the plotted ranges; default: points
            spread over the first layer's grid range.
        in_names: labels of the input nodes.
        out_names: labels of the output nodes.
        max_width: refuse layers wider than this (use :func:`kanzoo.viz.plot_edges` for big layers).
        num: points per edge curve.
        path: if given, the figure is also saved there (.png/.svg/.pdf).

    Returns:
        The matplotlib Figure.
    """
    layers = _layers(model)
    inner = [m.layer if isinstance(m, SymbolicKANLinear) else m for m in layers]
    widths = [inner[0].spline_weight.shape[1]] + [m.spline_weight.shape[0] for m in inner]
    if max(widths) > max_width:
        raise ValueError(
            f"network widths {widths} exceed max_width={max_width}; plot single layers with plot_edges"
        )
    inputs = stack_inputs(layers, x)
    n_rows = len(widths)
    max_edges = max(a * b for a, b in zip(widths[:-1], widths[1:]))
    fig_w = max(5.0, 0.55 * max(max_edges, max(widths)))
    fig = Figure(figsize=(fig_w, 2.4 * (n_rows - 1) + 0.8))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()

    def node_x(w: int) -> np.ndarray:
        return (np.arange(w) + 0.5) / w * 0.9 + 0.05

    row_y = np.linspace(0.08, 0.92, n_rows)
    box_h = min(0.12, 0.5 * (row_y[1] - row_y[0]))
    for layer_idx, (wrapper, lay) in enumerate(zip(layers, inner)):
        d_in, d_out = widths[layer_idx], widths[layer_idx + 1]
        xs_in, xs_out = node_x(d_in), node_x(d_out)
        y0, y1 = row_y[layer_idx], row_y[layer_idx + 1]
        ym = (y0 + y1) / 2
        samples = inputs[layer_idx]
        es = edge_set(lay)
        t_lo, t_hi = samples.min(0).values, samples.max(0).values
        phi_data = es.evaluate(samples)  # (M, out*in)
        t, phi = es.curves(range(es.num_edges), num=num, lo=t_lo, hi=t_hi)
        symbolic = {}
        if isinstance(wrapper, SymbolicKANLinear):
            mask = wrapper.mask.reshape(-1).cpu()
            phi_data = phi_data * mask
            phi = phi * mask
            for j, i, fit in wrapper.symbolic_edges():
                e = j * d_in + i
                symbolic[e] = fit.name
                phi_data[:, e] += torch.as_tensor(fit(samples[:, i].double().numpy()), dtype=phi_data.dtype)
                phi[:, e] += torch.as_tensor(fit(t[:, e].double().numpy()), dtype=phi.dtype)
        score = phi_data.abs().mean(0)
        alpha = (score / score.max().clamp_min(1e-12)).clamp(0.04, 1.0)
        n_e = d_in * d_out
        box_w = min(0.14, 0.72 / n_e)
        box_xs = (np.arange(n_e) + 0.5) / n_e * 0.9 + 0.05
        for k, (i, j) in enumerate((i, j) for i in range(d_in) for j in range(d_out)):
            e = j * d_in + i
            a = float(alpha[e])
            color = "C3" if e in symbolic else "k"
            bx = box_xs[k]
            ax.plot([xs_in[i], bx], [y0, ym - box_h / 2], color=color, alpha=a, lw=0.8)
            ax.plot([bx, xs_out[j]], [ym + box_h / 2, y1], color=color, alpha=a, lw=0.8)
            inset = fig.add_axes((bx - box_w / 2, ym - box_h / 2, box_w, box_h))
            inset.plot(t[:, e].numpy(), phi[:, e].numpy(), color=color, alpha=a, lw=1.2)
            inset.set_xticks([])
            inset.set_yticks([])
            for spine in inset.spines.values():
                spine.set_alpha(a)
            if e in symbolic:
                inset.set_title(symbolic[e], fontsize=7, color="C3", pad=2)
        for xs_row, y in ((xs_in, y0), (xs_out, y1)):
            ax.scatter(xs_row, np.full_like(xs_row, y), s=30, color="k", zorder=3)
    for names, xs_row, y, va in (
        (in_names, node_x(widths[0]), row_y[0] - 0.03, "top"),
        (out_names, node_x(widths[-1]), row_y[-1] + 0.03, "bottom"),
    ):
        if names is not None:
            if len(names) != len(xs_row):
                raise ValueError(f"expected {len(xs_row)} names, got {len(names)}")
            for name, nx in zip(names, xs_row):
                ax.text(nx, y, str(name), ha="center", va=va, fontsize=9)
    if path is not None:
        save_figure(fig, path)
    return fig
