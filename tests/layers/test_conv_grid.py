"""The shared KAN-layer methods on KANConv{1,2,3}d (update_grid, refine_grid, regularization_loss,
edge_functions), against independent references: scipy B-splines evaluated edge by edge in plain
loops, cubic-polynomial reproduction and the convolution's own outputs on constant inputs."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline, make_lsq_spline

from kanzoo.layers import KANConv1d, KANConv2d, KANConv3d, KANLayer, KANLinear, is_kan_layer

CONVS = {1: KANConv1d, 2: KANConv2d, 3: KANConv3d}


def _conv(dim, seed=0, **kw):
    torch.manual_seed(seed)
    conv = CONVS[dim](4, 4, 3 if dim < 3 else 2, groups=2, grid_size=4, **kw).double()
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return conv


def _channel(conv, o, c):
    """Input channel read by edge ``(o, c)`` of a grouped convolution."""
    cpg = conv.in_channels // conv.groups
    return (o // (conv.out_channels // conv.groups)) * cpg + c


def _taps(conv):
    return list(itertools.product(*[range(k) for k in conv.kernel_size]))


def _scipy_spline(t, c, k, x):
    """``sum_j c_j B_j(x)`` on the full knot vector ``t``, zero outside ``[t_0, t_last]``."""
    t_pad = np.concatenate([t[0] - np.arange(k, 0, -1), t, t[-1] + np.arange(1, k + 1)])
    c_pad = np.concatenate([np.zeros(k), c, np.zeros(k)])
    return np.nan_to_num(BSpline(t_pad, c_pad, k, extrapolate=False)(x))


def _inputs(dim, n=2, size=5, seed=1):
    torch.manual_seed(seed)
    scale = torch.tensor([0.9, 0.5, 0.7, 0.3], dtype=torch.float64).reshape(1, 4, *([1] * dim))
    return (torch.rand(n, 4, *([size] * dim), dtype=torch.float64) * 2 - 1) * scale


def test_conv_layers_share_the_kan_layer_protocol():
    for cls in (KANLinear, KANConv1d, KANConv2d, KANConv3d):
        assert issubclass(cls, KANLayer)
        methods = ("update_grid", "refine_grid", "regularization_loss", "edge_functions", "parameter_roles")
        for method in methods:
            assert getattr(cls, method) is getattr(KANLayer, method), (cls, method)
    assert is_kan_layer(KANConv3d(2, 2, 1)) and not is_kan_layer(torch.nn.Conv2d(2, 2, 1))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_conv_update_grid_reproduces_cubic_polynomial_edges(dim):
    conv = _conv(dim)
    rng = np.random.default_rng(dim)
    t, k = conv.basis.grid.detach().numpy(), conv.basis.spline_order
    xs = np.linspace(-1, 1, 200)
    coefs = np.zeros(tuple(conv.spline_weight.shape))  # (out, in/g, n, *kernel)
    for o, c in itertools.product(range(conv.out_channels), range(conv.in_channels // conv.groups)):
        for tap in _taps(conv):
            poly = np.polynomial.Polynomial(rng.normal(size=4))
            coefs[(o, c, slice(None), *tap)] = make_lsq_spline(xs, poly(xs), t[_channel(conv, o, c)], k).c
    with torch.no_grad():
        conv.spline_weight.copy_(torch.from_numpy(coefs))
    x = _inputs(dim)
    before = conv(x).detach()
    conv.update_grid(x, grid_eps=0.5)
    # The knots now follow each channel's own data range (a channel mix-up would misplace them).
    lo, hi = conv.basis.grid[:, k], conv.basis.grid[:, -k - 1]
    per_channel = x.movedim(1, -1).reshape(-1, 4)
    torch.testing.assert_close(lo, per_channel.min(0).values, rtol=0, atol=1e-12)
    torch.testing.assert_close(hi, per_channel.max(0).values, rtol=0, atol=1e-12)
    torch.testing.assert_close(conv(x), before, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 3])
def test_conv_update_grid_preserves_a_random_layer_on_its_data(dim):
    # A random spline on the old knots is not in the new spline space exactly: the least-squares
    # refit keeps it up to a small fraction of the output (measured 1.0e-2 for 1d, 3e-3 for 3d).
    conv = _conv(dim, seed=3)
    x = _inputs(dim, n=4, size=6) / 0.9 * 0.95
    before = conv(x).detach()
    conv.update_grid(x)
    err = (conv(x) - before).abs().max()
    assert err < 0.05 * before.abs().max()


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_conv_refine_grid_is_exact_inside_the_grid(dim):
    conv = _conv(dim)
    x = _inputs(dim)
    before = conv(x).detach()
    conv.refine_grid(8)
    assert conv.basis.grid_size == 8 and conv.spline_weight.shape[2] == 8 + conv.basis.spline_order
    torch.testing.assert_close(conv(x), before, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 3])
def test_conv_regularization_loss_equals_a_direct_loop_over_edges(dim):
    conv = _conv(dim)
    x = _inputs(dim, n=2, size=3) * 1.4  # some values beyond the grid, where only the base acts
    t, k = conv.basis.grid.detach().numpy(), conv.basis.spline_order
    w = conv.spline_weight.detach().numpy()
    s = conv.spline_scaler.detach().numpy()
    wb = conv.base_weight.detach().numpy()
    mags = []
    for o, c in itertools.product(range(conv.out_channels), range(conv.in_channels // conv.groups)):
        ch = _channel(conv, o, c)
        v = x[:, ch].reshape(-1).numpy()  # every value of the channel is a sample of its edges
        silu = v / (1 + np.exp(-v))
        for tap in _taps(conv):
            idx = (o, c, slice(None), *tap)
            phi = wb[(o, c, *tap)] * silu + s[(o, c, *tap)] * _scipy_spline(t[ch], w[idx], k, v)
            mags.append(np.abs(phi).mean())
    mags = np.array(mags)
    p = mags / mags.sum()
    ref = 0.4 * mags.sum() + 1.7 * -(p * np.log(p)).sum()
    got = conv.regularization_loss(x, l1=0.4, entropy=1.7)
    np.testing.assert_allclose(got.item(), ref, rtol=1e-12)
    (grad,) = torch.autograd.grad(got, conv.spline_weight)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("dim", [1, 3])
def test_conv_edge_functions_sum_to_the_response_to_constant_inputs(dim):
    conv = _conv(dim)
    xs, ys = conv.edge_functions(num=6)
    assert xs.shape == (4, 6) and ys.shape == (4, 2, *conv.kernel_size, 6)
    size = max(conv.kernel_size)
    for j in range(6):
        img = xs[:, j].reshape(1, 4, *([1] * dim)).expand(1, 4, *([size] * dim))  # one full window
        out = conv(img).reshape(4) - conv.bias
        edge_sum = ys[..., j].sum(dim=tuple(range(1, 2 + dim)))
        torch.testing.assert_close(edge_sum, out.detach(), rtol=0, atol=1e-12)
    assert math.isclose(xs[0, 0].item(), -1.0, abs_tol=1e-6)
