"""Edge and network pictures: content (order, panels, marks) and files."""

import re

import pytest
import torch

from kanzoo.interpret import KANNetwork, SymbolicFit, edge_importance, symbolify
from kanzoo.layers import KANConv2d, KANLinear
from kanzoo.viz import plot_edges, plot_network


def _visible(fig):
    return [ax for ax in fig.axes if ax.axison]


def _score(ax):
    return float(re.search(r"\|φ\|=([0-9.e+-]+)", ax.get_title()).group(1))


def test_plot_edges_most_important_first_with_marks(tmp_path):
    layer = KANLinear(3, 4, grid_size=5)
    with torch.no_grad():
        layer.spline_weight[2, 1] *= 40  # φ[2,1] dominates
        layer.base_weight[0, 2] = 3.0  # φ[0,2] second
    x = torch.rand(128, 3) * 1.2 - 0.6
    fig = plot_edges(layer, x, max_edges=5, path=tmp_path / "edges.png")
    axes = _visible(fig)
    assert len(axes) == 5
    assert axes[0].get_title().startswith("φ[2,1]") and axes[1].get_title().startswith("φ[0,2]")
    scores = [_score(ax) for ax in axes]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(edge_importance(layer, x)[2, 1]), rel=1e-2)
    # data range shaded, 6 interior knots (G=5) drawn as vertical lines, curve spans the grid
    assert len(axes[0].patches) == 1
    knot_lines = [ln for ln in axes[0].lines if ln.get_linestyle() == ":"]
    assert len(knot_lines) == 6
    curve_x = axes[0].lines[0].get_xdata()
    assert curve_x.min() < -1.0 and curve_x.max() > 1.0
    assert (tmp_path / "edges.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_edges_without_data_and_svg(tmp_path):
    fig = plot_edges(KANLinear(2, 2), path=tmp_path / "e.svg")
    assert all(len(ax.patches) == 0 for ax in _visible(fig))  # no data range without data
    assert "over the grid range" in fig.get_suptitle()
    assert "<svg" in (tmp_path / "e.svg").read_text()[:500]


def test_plot_edges_conv_taps():
    conv = KANConv2d(2, 3, 3, padding=1)
    x = torch.randn(2, 2, 6, 6)
    assert len(_visible(plot_edges(conv, x, max_edges=100))) == 3 * 2
    assert len(_visible(plot_edges(conv, x, max_edges=100, taps="each"))) == 3 * 2 * 9


def test_plot_edges_errors(tmp_path):
    with pytest.raises(ValueError, match="KAN layer"):
        plot_edges(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="image format"):
        plot_edges(KANLinear(2, 2), path=tmp_path / "e.jpg")
    with pytest.raises(ValueError, match="not both"):
        plot_edges(KANLinear(2, 2), torch.zeros(3, 2), samples=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"shape \(M, 2\)"):
        plot_edges(KANLinear(2, 2), samples=torch.zeros(3, 5))


def test_plot_network_insets_opacity_and_symbolic_edges(tmp_path):
    net = KANNetwork(widths=[2, 3, 1])
    with torch.no_grad():
        net[0].spline_weight[1, 0] = 0
        net[0].base_weight[1, 0] = 0  # dead edge 0 -> 1
    net[0] = symbolify(net[0], 1, 2, fit=SymbolicFit("sin", 3.0, 0.0, 1.0, 0.0, 1.0, 3))
    x = torch.rand(64, 2) * 2 - 1
    fig = plot_network(net, x, in_names=["x", "y"], out_names=["f"], path=tmp_path / "net.png")
    insets = fig.axes[1:]
    assert len(insets) == 2 * 3 + 3 * 1
    assert [ax.get_title() for ax in insets].count("sin") == 1
    # layer 0 insets are ordered (i, j): input 0 -> neuron 1 is the second; it is dead, so faint
    assert insets[1].lines[0].get_alpha() == pytest.approx(0.04)
    assert max(ax.lines[0].get_alpha() for ax in insets[:6]) == pytest.approx(1.0)
    assert (tmp_path / "net.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="max_width"):
        plot_network(KANNetwork(widths=[30, 2]))
    with pytest.raises(ValueError, match="small KAN"):
        plot_network(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("basis", ["rbf", "chebyshev", "fourier", "rational"])
def test_plot_edges_every_basis(basis):
    layer = KANLinear(2, 3, basis=basis)
    fig = plot_edges(layer, torch.randn(40, 2), max_edges=4)
    axes = _visible(fig)
    assert len(axes) == 4
    assert all(len(ax.lines[0].get_xdata()) == 200 for ax in axes)
