"""KANConv{1,2,3}d against an explicit per-tap loop and an unfold + KANLinear reference."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from kanzoo.layers import KANConv1d, KANConv2d, KANConv3d, KANLinear

CONVS = {1: KANConv1d, 2: KANConv2d, 3: KANConv3d}


def _randomize(layer, scale=0.4):
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return layer


def _edge_features(layer, v):
    """Per-value features [act(v), B(v)] computed by hand: (..., C) -> (..., C, 1 + n)."""
    phi = layer.basis(v)
    return torch.cat([F.silu(v).unsqueeze(-1), phi], -1)


def _loop_reference(layer, x):
    """y[n, o, p] = sum over in-bounds taps t, group channels c of phi_{o,c,t}(x[n, c, p*s - pad + t*d])."""
    dim = layer.dim
    n_batch, _, *size = x.shape
    k, s, d, p = layer.kernel_size, layer.stride, layer.dilation, layer.padding
    out_size = [(size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(dim)]
    w = torch.cat([layer.base_weight.unsqueeze(2), layer.effective_spline_weight()], 2)  # (O, Cg, m, *k)
    cg, og = layer.in_channels // layer.groups, layer.out_channels // layer.groups
    y = torch.zeros(n_batch, layer.out_channels, *out_size, dtype=x.dtype)
    for pos in itertools.product(*[range(o) for o in out_size]):
        acc = torch.zeros(n_batch, layer.out_channels, dtype=x.dtype)
        for tap in itertools.product(*[range(kk) for kk in k]):
            src = [pos[i] * s[i] - p[i] + tap[i] * d[i] for i in range(dim)]
            if any(c < 0 or c >= size[i] for i, c in enumerate(src)):
                continue  # zero padding of the expanded map: padded taps contribute nothing
            feats = _edge_features(layer, x[(slice(None), slice(None), *src)])  # (N, C, m)
            for g in range(layer.groups):
                wg = w[g * og : (g + 1) * og][(slice(None), slice(None), slice(None), *tap)]  # (og, Cg, m)
                fg = feats[:, g * cg : (g + 1) * cg]
                acc[:, g * og : (g + 1) * og] += torch.einsum("ncm,ocm->no", fg, wg)
        y[(slice(None), slice(None), *pos)] = acc + layer.bias
    return y


CASES = [  # (stride, padding, dilation, groups)
    (1, 0, 1, 1),
    (2, 1, 1, 2),
    (1, 2, 2, 1),
    (3, 1, 2, 4),
]


# Every case in 1-d and 2-d; 3-d (slow explicit loop) on the strided, padded, grouped case.
@pytest.mark.parametrize("dim,case", [(d, c) for d in (1, 2) for c in CASES] + [(3, CASES[1])])
def test_kan_conv_matches_explicit_loop(dim, case):
    stride, padding, dilation, groups = case
    layer = _randomize(
        CONVS[dim](4, 8, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, grid_size=3)
    ).double()
    size = {1: (13,), 2: (7, 6), 3: (6, 5, 5)}[dim]
    x = torch.randn(2, 4, *size, dtype=torch.float64) * 1.3
    y = layer(x)
    ref = _loop_reference(layer, x)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
def test_kan_conv2d_equals_unfold_plus_kan_linear(stride, dilation):
    conv = _randomize(KANConv2d(3, 5, (2, 3), stride=stride, dilation=dilation)).double()
    x = torch.randn(2, 3, 8, 9, dtype=torch.float64)
    # Every (channel, tap) of a patch is one input of a KANLinear with in = C * kh * kw.
    lin = KANLinear(3 * 6, 5).double()
    with torch.no_grad():
        lin.base_weight.copy_(conv.base_weight.reshape(5, -1))
        lin.spline_weight.copy_(conv.spline_weight.permute(0, 1, 3, 4, 2).reshape(5, 18, -1))
        lin.spline_scaler.copy_(conv.spline_scaler.reshape(5, -1))
        lin.bias.copy_(conv.bias)
    cols = F.unfold(x, (2, 3), dilation=dilation, stride=stride)  # (N, C*kh*kw, L)
    ref = lin(cols.transpose(1, 2)).transpose(1, 2)
    y = conv(x)
    torch.testing.assert_close(y.flatten(2), ref)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_non_zero_padding_modes_pad_the_input(mode):
    layer = _randomize(KANConv2d(2, 3, 3, padding=(1, 2), padding_mode=mode)).double()
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    valid = KANConv2d(2, 3, 3).double()
    valid.load_state_dict(layer.state_dict())
    ref = valid(F.pad(x, (2, 2, 1, 1), mode=mode))
    torch.testing.assert_close(layer(x), ref)
    assert layer(x).shape == torch.nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode)(x.float()).shape


def test_same_valid_padding_and_unbatched_shapes():
    for mode in ["zeros", "reflect"]:
        layer = KANConv2d(2, 4, (3, 4), padding="same", dilation=2, padding_mode=mode)
        ref = torch.nn.Conv2d(2, 4, (3, 4), padding="same", dilation=2, padding_mode=mode)
        x = torch.randn(3, 2, 10, 11)
        assert layer(x).shape == ref(x).shape
    assert KANConv1d(2, 4, 3, padding="valid")(torch.randn(2, 9)).shape == (4, 7)
    assert KANConv3d(2, 2, 2)(torch.randn(0, 2, 3, 3, 3)).shape == (0, 2, 2, 2, 2)


@pytest.mark.parametrize("basis", ["bspline", "rbf", "chebyshev", "fourier", "rational"])
def test_kan_conv_gradcheck(basis):
    kw = {"rational": {"num_groups": 2}}.get(basis, {})
    layer = _randomize(KANConv1d(2, 2, 2, padding=1, groups=2, basis=basis, **kw), 0.3).double()
    x = (torch.rand(1, 2, 4, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def fn(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_kan_conv_bad_inputs_and_args():
    layer = KANConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        layer(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        layer(torch.randn(8, 8))
    with pytest.raises(ValueError, match="floating-point"):
        layer(torch.ones(1, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="float32"):
        layer(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="divisible"):
        KANConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        KANConv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="strided"):
        KANConv2d(3, 4, 3, padding="same", stride=2)


def test_kan_conv_dtypes_and_huge_inputs():
    layer64 = KANConv2d(2, 3, 3, padding=1).double()
    x64 = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    ref = layer64(x64)
    for dtype, tol in [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)]:
        layer = KANConv2d(2, 3, 3, padding=1)
        layer.load_state_dict(layer64.state_dict())
        layer = layer.to(dtype)
        y = layer(x64.to(dtype))
        assert y.dtype == dtype
        torch.testing.assert_close(y.double(), ref.detach(), atol=4 * tol, rtol=tol)
    big = torch.full((1, 2, 4, 4), 1e6, dtype=torch.float64, requires_grad=True)
    out = layer64(big)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(big.grad).all()


def test_kan_conv_memory_lean_path_matches_plain_autograd_and_saves_less():
    layer = _randomize(KANConv2d(3, 4, 3, stride=2, padding=1, groups=1), 0.3).double()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 4, 5, 4, dtype=torch.float64)
    params = [x, *layer.parameters()]
    lean = torch.autograd.grad(layer(x), params, g)
    plain_y = F.conv2d(layer.expand(x), layer.fused_weight(), layer.bias, 2, 1)
    for a, b in zip(lean, torch.autograd.grad(plain_y, params, g)):
        torch.testing.assert_close(a, b)
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    big = torch.randn(2, 3, 40, 40, dtype=torch.float64, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(big)
    expanded_bytes = big.numel() * 8 * (1 + layer.basis.num_features)
    assert sum(storages.values()) < expanded_bytes / 2
