"""Grid tools against independent references: numpy quantiles, scipy B-splines and least squares,
polynomial reproduction, knot-insertion identities and the layer's own forward pass."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline, make_lsq_spline

import kanzoo.layers.grid as grid_mod
from kanzoo.layers import KANConv2d, KANLinear
from kanzoo.layers.grid import edge_functions, refine_grid, regularization_loss, update_grid


def _exact_uniform_grid(layer, lo=-1.0, hi=1.0):
    """Overwrite the knots with uniform float64 knots computed in float64 (not float32-rounded)."""
    b = layer.basis
    g, k = b.grid_size, b.spline_order
    knots = lo + (hi - lo) / g * torch.arange(-k, g + k + 1, dtype=torch.float64)
    b.grid = knots.expand(b.in_features, -1).clone().to(b.grid.dtype)
    return layer


def _random_layer(in_f=3, out_f=2, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    layer = KANLinear(in_f, out_f, **kw).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return layer


def _scipy_spline(t, c, k, x):
    """Sum_j c_j B_j(x) on the full knot vector t, zero outside [t_0, t_last] (scipy's own domain
    is [t_k, t_{n}], so pad k knots with zero coefficients on each side)."""
    t_pad = np.concatenate([t[0] - np.arange(k, 0, -1), t, t[-1] + np.arange(1, k + 1)])
    c_pad = np.concatenate([np.zeros(k), c, np.zeros(k)])
    return np.nan_to_num(BSpline(t_pad, c_pad, k, extrapolate=False)(x))


def _edge_values_scipy(layer, x):
    """phi_ij(x_i) with scipy B-splines on the stored knots and numpy SiLU: (N, out, in)."""
    t_all = layer.basis.grid.detach().double().numpy()
    k = layer.basis.spline_order
    w = layer.effective_spline_weight().detach().double().numpy()
    bw = layer.base_weight.detach().double().numpy()
    out_f, in_f = bw.shape
    vals = np.zeros((x.shape[0], out_f, in_f))
    for i in range(in_f):
        silu = x[:, i] / (1 + np.exp(-x[:, i]))
        for j in range(out_f):
            vals[:, j, i] = bw[j, i] * silu + _scipy_spline(t_all[i], w[j, i], k, x[:, i])
    return vals


def _set_polynomial_splines(layer, rng, lo=-1.0, hi=1.0):
    """Make every edge's spline part a random cubic polynomial on [lo, hi] (scipy LSQ spline)."""
    t_all = layer.basis.grid.detach().double().numpy()
    k = layer.basis.spline_order
    xs = np.linspace(lo, hi, 400)
    out_f, in_f = layer.spline_weight.shape[:2]
    coefs = np.zeros(tuple(layer.spline_weight.shape))
    for j in range(out_f):
        for i in range(in_f):
            poly = np.polynomial.Polynomial(rng.normal(size=4))
            # Fit on the whole base interval: the cubic lies in the spline space, so this is exact there.
            coefs[j, i] = make_lsq_spline(xs, poly(xs), t_all[i], k).c
    with torch.no_grad():
        layer.spline_weight.copy_(torch.from_numpy(coefs))
        if layer.spline_scaler is not None:
            layer.spline_scaler.fill_(1.0)
    return layer


# ---------------------------------------------------------------------------------------------
# update_grid


@pytest.mark.parametrize("grid_eps", [1.0, 0.0, 0.3])
def test_update_grid_places_knots_like_numpy(grid_eps):
    layer = _random_layer(in_f=4, grid_size=5)
    x = torch.randn(300, 4, dtype=torch.float64) * torch.tensor([0.3, 1.0, 2.0, 0.5], dtype=torch.float64)
    margin = 0.1
    update_grid(layer, x, grid_eps=grid_eps, margin=margin)
    xn = x.numpy()
    lo, hi = xn.min(0) - margin, xn.max(0) + margin
    frac = np.linspace(0, 1, 6)
    uniform = lo[:, None] + (hi - lo)[:, None] * frac
    adaptive = np.quantile(xn, frac, axis=0).T
    adaptive[:, 0], adaptive[:, -1] = lo, hi
    interior = grid_eps * uniform + (1 - grid_eps) * adaptive
    h = ((hi - lo) / 5)[:, None]
    expected = np.concatenate([interior[:, :1] - h * np.arange(3, 0, -1), interior,
                               interior[:, -1:] + h * np.arange(1, 4)], axis=1)  # fmt: skip
    np.testing.assert_allclose(layer.basis.grid.numpy(), expected, rtol=0, atol=1e-12)
    assert layer.basis.is_uniform() == (grid_eps == 1.0)


@pytest.mark.parametrize("grid_eps", [1.0, 0.4])
def test_update_grid_is_the_least_squares_fit_of_every_edge(grid_eps):
    layer = _random_layer(in_f=3, out_f=2, grid_size=5)
    x = torch.rand(500, 3, dtype=torch.float64) * 2.4 - 1.2  # reaches into the extension region
    xn = x.numpy()
    target = _edge_values_scipy(layer, xn)  # old edge values, scipy evaluation
    base_before = layer.base_weight.detach().clone()
    update_grid(layer, x, grid_eps=grid_eps)
    t_new = layer.basis.grid.numpy()
    k = layer.basis.spline_order
    w_new = layer.effective_spline_weight().detach().numpy()
    bw = base_before.numpy()
    for i in range(3):
        design = BSpline.design_matrix(xn[:, i], t_new[i], k).toarray()
        for j in range(2):
            spline_target = target[:, j, i] - bw[j, i] * xn[:, i] / (1 + np.exp(-xn[:, i]))
            ref = np.linalg.lstsq(design, spline_target, rcond=None)[0]
            np.testing.assert_allclose(w_new[j, i], ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(layer.base_weight, base_before, rtol=0, atol=0)


@pytest.mark.parametrize("grid_eps", [1.0, 0.5, 0.0])
def test_update_grid_reproduces_cubic_polynomials_exactly(grid_eps):
    # A cubic on [-1, 1] lies in every cubic spline space, so the refit is exact up to round-off.
    layer = _set_polynomial_splines(
        _exact_uniform_grid(_random_layer(in_f=3, out_f=4)), np.random.default_rng(1)
    )
    x = torch.rand(400, 3, dtype=torch.float64) * 1.7 - 0.9  # [-0.9, 0.8]
    probe = torch.rand(300, 3, dtype=torch.float64) * 1.7 - 0.9
    before, before_probe = layer(x).detach(), layer(probe).detach()
    update_grid(layer, x, grid_eps=grid_eps)
    torch.testing.assert_close(layer(x), before, rtol=0, atol=1e-10)
    inside = ((probe >= x.min(0).values) & (probe <= x.max(0).values)).all(1)
    torch.testing.assert_close(layer(probe)[inside], before_probe[inside], rtol=0, atol=1e-10)


def test_update_grid_preserves_default_layer_outputs_in_range():
    # Measured tolerance: a randomly initialised spline is an arbitrary cubic spline on the OLD knots;
    # the new knots (uniform over the data range [-0.9, 0.9] instead of [-1, 1]) cannot hold its
    # pieces exactly, so the least-squares refit leaves ~2e-3 max error (outputs ~0.8, spline
    # branch ~0.18 in magnitude, i.e. ~1% of the spline branch) in float32 and float64 alike.
    torch.manual_seed(0)
    layer = KANLinear(16, 16, grid_size=5)
    x = torch.rand(4096, 16) * 1.8 - 0.9
    before = layer(x).detach()
    spline_part = torch.einsum("sin,oin->so", layer.basis(x), layer.effective_spline_weight()).abs().max()
    layer.update_grid(x)
    err = (layer(x) - before).abs().max()
    assert err < 5e-3
    assert err < 0.03 * spline_part


def test_update_grid_conv_with_groups_reproduces_polynomials():
    torch.manual_seed(0)
    conv = KANConv2d(4, 6, 3, groups=2, padding=1).double()
    rng = np.random.default_rng(3)
    t = conv.basis.grid.detach().numpy()
    xs = np.linspace(-1, 1, 200)
    coefs = np.zeros(tuple(conv.spline_weight.shape))  # (out, in/g, n, 3, 3)
    for o in range(6):
        for c in range(2):
            channel = (o // 3) * 2 + c
            for a in range(3):
                for b in range(3):
                    poly = np.polynomial.Polynomial(rng.normal(size=4))
                    coefs[o, c, :, a, b] = make_lsq_spline(xs, poly(xs), t[channel], 3).c
    with torch.no_grad():
        conv.spline_weight.copy_(torch.from_numpy(coefs))
    # Different ranges per channel, so a channel mix-up in the refit would show.
    scale = torch.tensor([0.9, 0.5, 0.7, 0.3], dtype=torch.float64)[None, :, None, None]
    x = (torch.rand(2, 4, 7, 7, dtype=torch.float64) * 2 - 1) * scale
    before = conv(x).detach()
    update_grid(conv, x, grid_eps=0.5)
    torch.testing.assert_close(conv(x), before, rtol=0, atol=1e-10)


def test_update_grid_handles_constant_and_repeated_inputs():
    layer = _random_layer(in_f=2)
    x = torch.zeros(100, 2, dtype=torch.float64)
    x[:, 1] = torch.relu(torch.randn(100, dtype=torch.float64))  # many repeated zeros
    update_grid(layer, x, grid_eps=0.0)
    g = layer.basis.grid
    assert torch.isfinite(g).all() and (g.diff(dim=1) > 0).all()
    assert torch.isfinite(layer(x)).all()


def test_update_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="bspline"):
        update_grid(KANLinear(3, 2, basis="rbf"), torch.randn(10, 3))
    layer = KANLinear(3, 2)
    with pytest.raises(ValueError, match="grid_eps"):
        layer.update_grid(torch.randn(10, 3), grid_eps=1.5)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        layer.update_grid(torch.randn(10, 4))
    with pytest.raises(ValueError, match="empty"):
        layer.update_grid(torch.randn(0, 3))


# ---------------------------------------------------------------------------------------------
# refine_grid


@pytest.mark.parametrize(("k", "new_g"), [(3, 10), (3, 15), (2, 20), (1, 10)])
def test_refine_grid_is_exact_knot_insertion(k, new_g):
    layer = _exact_uniform_grid(_random_layer(in_f=3, out_f=4, grid_size=5, spline_order=k))
    torch.manual_seed(1)
    inside = torch.rand(2000, 3, dtype=torch.float64) * 2 - 1
    far = (torch.rand(500, 3, dtype=torch.float64) + 1.0 + 0.4 * k) * torch.sign(torch.randn(500, 3))
    before_in, before_far = layer(inside).detach(), layer(far).detach()
    refine_grid(layer, new_g)
    assert layer.basis.grid_size == new_g and layer.spline_weight.shape == (4, 3, new_g + k)
    expected = -1 + 2 / new_g * np.arange(-k, new_g + k + 1)
    np.testing.assert_allclose(layer.basis.grid.numpy(), np.broadcast_to(expected, (3, new_g + 2 * k + 1)),
                               rtol=0, atol=1e-14)  # fmt: skip
    torch.testing.assert_close(layer(inside), before_in, rtol=0, atol=1e-10)
    # Beyond the old outermost knot both splines are zero: only the (unchanged) base branch acts.
    torch.testing.assert_close(layer(far), before_far, rtol=0, atol=1e-10)


def test_refine_grid_exact_on_non_uniform_grid_and_polynomials_for_any_size():
    layer = _random_layer(in_f=3, out_f=2, grid_size=4)
    update_grid(layer, torch.randn(300, 3, dtype=torch.float64) * 0.6, grid_eps=0.3)
    lo, hi = layer.basis.grid[:, 3], layer.basis.grid[:, 7]
    x = lo + (hi - lo) * torch.rand(1000, 3, dtype=torch.float64)
    before = layer(x).detach()
    layer.refine_grid(8)
    torch.testing.assert_close(layer(x), before, rtol=0, atol=1e-10)
    # 4 -> 7 does not nest the knots; a cubic is still reproduced exactly.
    poly = _set_polynomial_splines(_exact_uniform_grid(_random_layer(grid_size=4)), np.random.default_rng(2))
    x = torch.rand(800, 3, dtype=torch.float64) * 2 - 1
    before = poly(x).detach()
    poly.refine_grid(7)
    torch.testing.assert_close(poly(x), before, rtol=0, atol=1e-10)


def test_refine_grid_float32_layer_trains_afterwards():
    torch.manual_seed(0)
    layer = KANLinear(5, 3)
    x = torch.rand(256, 5) * 2 - 1
    before = layer(x).detach()
    layer.refine_grid(10)
    torch.testing.assert_close(layer(x), before, rtol=0, atol=1e-5)
    layer(x).square().mean().backward()
    assert layer.spline_weight.grad.shape == (3, 5, 13) and layer.spline_weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="positive integer"):
        layer.refine_grid(0)
    with pytest.raises(ValueError, match="bspline"):
        refine_grid(KANLinear(2, 2, basis="chebyshev"), 10)


# ---------------------------------------------------------------------------------------------
# regularization_loss and edge_functions


def test_regularization_loss_matches_scipy_reference_and_is_differentiable():
    layer = _random_layer(in_f=4, out_f=3)
    x = torch.rand(64, 4, dtype=torch.float64) * 3 - 1.5
    vals = _edge_values_scipy(layer, x.numpy())
    mag = np.abs(vals).mean(0)
    p = mag / mag.sum()
    ref_l1, ref_ent = mag.sum(), -(p * np.log(p)).sum()
    for l1, ent in [(1.0, 0.0), (0.0, 1.0), (0.3, 2.0)]:
        got = regularization_loss(layer, x, l1=l1, entropy=ent)
        np.testing.assert_allclose(got.item(), l1 * ref_l1 + ent * ref_ent, rtol=1e-12)
    small, xs = _random_layer(in_f=2, out_f=2, grid_size=3), x[:12, :2]
    params = (small.spline_weight, small.base_weight, small.spline_scaler)
    params = tuple(p.detach().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(lambda sw, bw, sc: _reg_with(small, xs, sw, bw, sc), params)


def _reg_with(layer, x, sw, bw, sc):
    params = {"layer.spline_weight": sw, "layer.base_weight": bw, "layer.spline_scaler": sc}
    return torch.func.functional_call(_RegWrapper(layer), params, (x,))


class _RegWrapper(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return regularization_loss(self.layer, x, l1=0.7, entropy=1.3)


def test_regularization_loss_chunked_path_matches_and_conv_1x1_equals_linear(monkeypatch):
    layer = _random_layer(in_f=4, out_f=3)
    x = torch.randn(50, 4, dtype=torch.float64)
    full = regularization_loss(layer, x)
    (g_full,) = torch.autograd.grad(full, layer.spline_weight)
    monkeypatch.setattr(grid_mod, "_CHUNK_ELEMENTS", 100)  # several checkpointed chunks
    chunked = regularization_loss(layer, x)
    (g_chunked,) = torch.autograd.grad(chunked, layer.spline_weight)
    torch.testing.assert_close(chunked, full, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_chunked, g_full, rtol=1e-12, atol=0)
    monkeypatch.undo()
    conv = KANConv2d(4, 3, 1).double()
    with torch.no_grad():
        conv.base_weight.copy_(layer.base_weight[:, :, None, None])
        conv.spline_weight.copy_(layer.spline_weight[..., None, None])
        conv.spline_scaler.copy_(layer.spline_scaler[..., None, None])
    img = x.T.reshape(1, 4, 5, 10)
    torch.testing.assert_close(regularization_loss(conv, img), full, rtol=1e-12, atol=0)


def test_edge_functions_sum_to_layer_output():
    layer = _random_layer(in_f=4, out_f=3)
    xs, ys = edge_functions(layer, num=50)
    assert xs.shape == (4, 50) and ys.shape == (3, 4, 50)
    np.testing.assert_allclose(xs[:, 0].numpy(), -1.0, atol=1e-6)
    np.testing.assert_allclose(xs[:, -1].numpy(), 1.0, atol=1e-6)
    out = layer(xs.T) - layer.bias  # every input takes its column of sample values
    torch.testing.assert_close(ys.sum(1).T, out.detach(), rtol=0, atol=1e-12)
    data = torch.randn(100, 4, dtype=torch.float64)
    xs2, _ = layer.edge_functions(data, num=5)
    torch.testing.assert_close(xs2[:, 0], data.min(0).values)
    torch.testing.assert_close(xs2[:, -1], data.max(0).values)


def test_edge_functions_conv_sum_over_channels_and_taps():
    torch.manual_seed(0)
    conv = KANConv2d(4, 6, 3, groups=2).double()
    with torch.no_grad():
        conv.spline_weight.normal_()
    xs, ys = edge_functions(conv, num=9)
    assert xs.shape == (4, 9) and ys.shape == (6, 2, 3, 3, 9)
    for s in range(9):
        img = xs[:, s][None, :, None, None].expand(1, 4, 5, 5)  # constant image, no padding
        out = conv(img)[0, :, 2, 2] - conv.bias
        torch.testing.assert_close(ys[..., s].sum((1, 2, 3)), out.detach(), rtol=0, atol=1e-12)
