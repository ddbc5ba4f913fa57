"""Edge-function evaluation and scoring (kanzoo.interpret.edges) against independent references."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanzoo.interpret import (
    capture_inputs,
    channel_knots,
    channel_ranges,
    edge_importance,
    edge_set,
    kan_modules,
)
from kanzoo.layers import KANConv1d, KANConv2d, KANLinear


@pytest.mark.parametrize("basis", ["bspline", "rbf", "chebyshev", "fourier", "rational"])
@pytest.mark.parametrize("base_activation", ["silu", None])
def test_edges_sum_to_layer_output(basis, base_activation):
    """y_j = Σ_i φ_ji(x_i) + b_j: the per-edge evaluation reproduces the layer's fused forward."""
    layer = KANLinear(4, 3, basis=basis, base_activation=base_activation).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
    x = torch.rand(64, 4, dtype=torch.float64) * 1.8 - 0.9
    es = edge_set(layer)
    phi = es.evaluate(x).reshape(64, 3, 4)
    torch.testing.assert_close(phi.sum(-1) + layer.bias, layer(x), rtol=1e-9, atol=1e-9)


def test_bspline_edge_matches_scipy():
    """One edge against scipy's BSpline on the same knots plus W_b·silu(x)."""
    layer = KANLinear(2, 2, grid_size=6, spline_order=3, grid_range=(-2.0, 1.0))
    with torch.no_grad():
        layer.spline_weight.normal_()
        layer.spline_scaler.uniform_(0.5, 1.5)
    j, i = 1, 0
    knots = layer.basis.grid[i].double().numpy()
    coef = (layer.spline_weight[j, i] * layer.spline_scaler[j, i]).detach().double().numpy()
    t = np.linspace(-2.0, 1.0, 301)[:-1]  # scipy's spline is defined on [t_k, t_{n}) of the knots
    wb = float(layer.base_weight[j, i].detach())
    expected = BSpline(knots, coef, 3, extrapolate=False)(t) + wb * t / (1 + np.exp(-t))
    xc = torch.zeros(len(t), 2)
    xc[:, i] = torch.tensor(t, dtype=torch.float32)
    got = edge_set(layer).evaluate(xc, torch.tensor([j * 2 + i]))[:, 0].double().numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_importance_is_mean_abs_phi():
    layer = KANLinear(3, 2)
    x = torch.randn(200, 3)
    es = edge_set(layer)
    manual = torch.stack(
        [
            torch.stack([es.evaluate(x, torch.tensor([j * 3 + i]))[:, 0].abs().mean() for i in range(3)])
            for j in range(2)
        ]
    )
    torch.testing.assert_close(edge_importance(layer, x), manual)
    # An edge with zero weights is unimportant, one with big weights dominates.
    with torch.no_grad():
        layer.spline_weight[0, 1] = 0
        layer.base_weight[0, 1] = 0
        layer.spline_weight[1, 2] *= 50
    s = edge_importance(layer, x)
    assert s[0, 1] == 0
    assert s.argmax() == 1 * 3 + 2


def test_conv_taps_each_reproduce_convolution():
    """Per-tap edges: y[o, p] = Σ_{c,t} φ_oct(x[c, p+t]) + b_o (groups=2, no padding)."""
    conv = KANConv1d(4, 6, 3, groups=2).double()
    with torch.no_grad():
        conv.spline_weight.normal_()
    x = torch.rand(1, 4, 7, dtype=torch.float64) * 2 - 1
    es = edge_set(conv, taps="each")
    assert es.shape == (6, 2, 3)
    y = conv(x)[0]  # (6, 5)
    for p in range(y.shape[1]):
        patch = x[0, :, p : p + 3].T  # (taps, C): row t holds the channel values at tap t
        total = torch.zeros(6, dtype=torch.float64)
        for t in range(3):
            xc = patch[t : t + 1]  # (1, C)
            phi = es.evaluate(xc).reshape(6, 2, 3)[:, :, t]
            total += phi.sum(1)
        torch.testing.assert_close(total + conv.bias, y[:, p], rtol=1e-9, atol=1e-9)


def test_conv_taps_sum_is_response_to_constant_patch():
    conv = KANConv2d(3, 2, 3).double()
    v = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    x = v[None, :, None, None].expand(1, 3, 5, 5).contiguous()
    es = edge_set(conv)  # taps="sum"
    phi = es.evaluate(v[None]).reshape(2, 3)
    expected = conv(x)[0, :, 1, 1]
    torch.testing.assert_close(phi.sum(1) + conv.bias, expected, rtol=1e-9, atol=1e-9)


def test_ranges_and_knots():
    layer = KANLinear(2, 1, grid_size=4, spline_order=2, grid_range=(-2.0, 3.0))
    lo, hi = channel_ranges(layer.basis)
    torch.testing.assert_close(lo, torch.tensor([-2.0, -2.0]))
    torch.testing.assert_close(hi, torch.tensor([3.0, 3.0]))
    torch.testing.assert_close(channel_knots(layer.basis, 0), torch.linspace(-2.0, 3.0, 5))
    rbf = KANLinear(2, 1, basis="rbf", grid_size=6, grid_range=(-1.5, 1.5))
    lo, hi = channel_ranges(rbf.basis)
    torch.testing.assert_close(lo, torch.tensor([-1.5, -1.5]))
    assert len(channel_knots(rbf.basis, 1)) == 6


def test_capture_inputs_records_each_layer_input():
    net = torch.nn.Sequential(KANLinear(3, 4), torch.nn.Tanh(), KANLinear(4, 2))
    x = torch.randn(10, 5, 3)
    mods = kan_modules(net)
    assert list(mods) == ["0", "2"]
    caps = capture_inputs(mods, lambda: net(x))
    torch.testing.assert_close(caps["0"], x.reshape(-1, 3))
    torch.testing.assert_close(caps["2"], torch.tanh(net[0](x)).reshape(-1, 4))
    with pytest.raises(ValueError, match="never called"):
        capture_inputs({"x": KANLinear(2, 2)}, lambda: net(x))


def test_errors():
    with pytest.raises(ValueError, match="not a KAN layer"):
        edge_set(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="taps"):
        edge_set(KANConv1d(2, 2, 3), taps="mean")
