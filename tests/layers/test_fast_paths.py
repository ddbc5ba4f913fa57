"""The fast autograd Functions of KANLinear / KANConv against independent references.

References here are written from the math in the test itself (explicit einsum over edges, the
basis module's own values, plain autograd), never by calling the layer's fast path twice.
"""

import pytest
import torch
import torch.nn.functional as F

import kanzoo.layers as kl
from kanzoo.layers import KANConv2d, KANLinear, _fused

BASES = ["bspline", "rbf", "chebyshev", "fourier"]
SMALL = {"bspline": {"grid_size": 4}, "rbf": {"grid_size": 5}, "chebyshev": {"degree": 3},
         "fourier": {"num_frequencies": 2}}  # fmt: skip


def _randomize(layer, scale=0.4):
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return layer


def _reference_linear(layer, x):
    """``y_j = sum_i W_b[j,i] act(x_i) + sum_{i,f} s[j,i] W_s[j,i,f] B_f(x_i) + b_j`` by einsum."""
    phi = layer.basis(x)  # (N, in, n): the basis module itself, checked against scipy elsewhere
    y = torch.einsum("nif,jif,ji->nj", phi, layer.spline_weight, layer.spline_scaler)
    return y + F.silu(x) @ layer.base_weight.T + layer.bias


@pytest.mark.parametrize("basis", BASES)
def test_linear_gradients_equal_einsum_reference(basis):
    layer = _randomize(KANLinear(5, 4, basis=basis, **SMALL[basis]).double())
    x = (torch.rand(7, 5, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    g = torch.randn(7, 4, dtype=torch.float64)
    wrt = [x, *layer.parameters()]
    fast = torch.autograd.grad(layer(x), wrt, g)
    ref = torch.autograd.grad(_reference_linear(layer, x), wrt, g)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("basis", ["bspline", "rbf"])
def test_linear_gradgradcheck_input_and_parameters(basis):
    layer = _randomize(KANLinear(2, 2, basis=basis, **SMALL[basis]).double(), 0.3)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = (torch.rand(3, 2, dtype=torch.float64) * 2.2 - 1.1).requires_grad_()

    def fn(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradgradcheck(fn, (x, *params))


def test_third_derivative_wrt_input_matches_finite_differences():
    """Triple backward: d/dx of the second derivative is checked by gradcheck (finite differences)."""
    layer = _randomize(KANLinear(2, 1, basis="rbf", grid_size=4).double(), 0.5)

    def second(x):
        (d1,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x, create_graph=True)
        return d2

    x = torch.rand(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(second, (x,))


@pytest.mark.parametrize("basis", ["bspline", "chebyshev"])
def test_physics_informed_loss_parameter_gradients(basis):
    """A PINN residual (second derivative w.r.t. the input), then gradients w.r.t. the parameters
    through it: equal to the same computation on the einsum reference."""
    torch.manual_seed(1)
    layer = _randomize(KANLinear(2, 1, basis=basis, **SMALL[basis]).double(), 0.5)
    x = (torch.rand(6, 2, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()

    def residual_loss(forward):
        u = forward(x)
        (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        lap = sum(torch.autograd.grad(du[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(2))
        return (lap + u.squeeze(-1)).pow(2).mean()

    params = list(layer.parameters())
    fast = torch.autograd.grad(residual_loss(layer), params)
    ref = torch.autograd.grad(residual_loss(lambda v: _reference_linear(layer, v)), params)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b)


def test_no_stale_weight_after_optimizer_step_load_state_and_inplace_edits():
    layer = _randomize(KANLinear(6, 5).double())
    x = torch.randn(8, 6, dtype=torch.float64)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).pow(2).sum().backward()
    opt.step()
    torch.testing.assert_close(layer(x), _reference_linear(layer, x))
    with torch.no_grad():
        layer.spline_scaler.mul_(3.0)
        layer.base_weight[0, 0] = 7.0
    torch.testing.assert_close(layer(x), _reference_linear(layer, x))
    other = _randomize(KANLinear(6, 5).double())
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(layer(x), _reference_linear(other, x))
    half = layer.float()
    torch.testing.assert_close(half(x.float()), _reference_linear(other, x).float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("out_features,batch", [(3, 50), (40, 4)])  # weight kept / rebuilt in backward
def test_weight_kept_or_rebuilt_gives_the_same_gradients(out_features, batch):
    layer = _randomize(KANLinear(4, out_features).double())
    x = torch.randn(batch, 4, dtype=torch.float64, requires_grad=True)
    m = layer.num_features + 1
    assert _fused.keep_weight(torch.empty(out_features, 4 * m), x, m) == (out_features <= batch)
    wrt = [x, *layer.parameters()]
    g = torch.randn(batch, out_features, dtype=torch.float64)
    for a, b in zip(
        torch.autograd.grad(layer(x), wrt, g), torch.autograd.grad(_reference_linear(layer, x), wrt, g)
    ):
        torch.testing.assert_close(a, b)


def test_saved_for_backward_is_input_only_for_wide_layers():
    layer = KANLinear(64, 256)
    x = torch.randn(32, 64, requires_grad=True)
    params = {p.untyped_storage().data_ptr() for p in [*layer.parameters(), *layer.buffers()]}
    extra = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            extra[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    # x and the per-input knot constants (in floats); no features, no fused weight copy.
    assert x.numel() * 4 <= sum(extra.values()) <= x.numel() * 4 + 2 * 64 * 4


def test_bf16_autocast_builds_the_weight_in_bf16_and_returns_fp32_grads():
    layer = _randomize(KANLinear(16, 8), 0.3)
    x = torch.randn(12, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    for p in layer.parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
    ref = _reference_linear(layer, x)
    torch.testing.assert_close(y.float(), ref, atol=0.1, rtol=0.05)
    gref = torch.autograd.grad(ref.sum(), layer.spline_weight)[0]
    torch.testing.assert_close(layer.spline_weight.grad, gref, atol=0.05, rtol=0.05)


def test_rbf_far_from_centres_flushes_to_zero_without_subnormals():
    basis = KANLinear(1, 1, basis="rbf", grid_size=23).basis
    x = torch.linspace(-40, 40, 20001).unsqueeze(1)
    phi, dphi = basis.forward_with_derivative(x)
    tiny = torch.finfo(torch.float32).tiny
    for t in (phi, dphi):
        nz = t[t != 0].abs()
        assert (nz >= tiny).all()  # no subnormal float32 values
    z = (x.unsqueeze(-1) - basis.grid) * basis.inv_width  # (N, 1, 23)
    exact = torch.exp(-(z.double() ** 2))
    assert exact[phi == 0].max() < 1e-29  # only negligible values were flushed
    torch.testing.assert_close(phi.double(), exact, atol=1e-6, rtol=1e-5)


def _conv_reference(layer, x):
    """KAN conv via unfold: every tap's value expanded by the basis module, einsum over edges."""
    n, c, h, w = x.shape
    k = layer.kernel_size
    cols = F.unfold(x, k, padding=layer.padding, stride=layer.stride, dilation=layer.dilation)
    cols = cols.view(n, c, k[0] * k[1], -1).permute(0, 3, 1, 2)  # (N, L, C, taps)
    mask = F.unfold(torch.ones(1, 1, h, w, dtype=x.dtype), k, padding=layer.padding, stride=layer.stride,
                    dilation=layer.dilation).view(1, 1, k[0] * k[1], -1).permute(0, 3, 1, 2)  # fmt: skip
    phi = layer.basis(cols.transpose(-1, -2)).transpose(-2, -3) * mask.unsqueeze(-1)  # (N, L, C, taps, n)
    base = F.silu(cols) * mask
    ws = layer.spline_weight.flatten(3) * layer.spline_scaler.flatten(2).unsqueeze(2)  # (O, C, n, taps)
    y = torch.einsum("nlctf,ocft->nol", phi, ws) + torch.einsum(
        "nlct,oct->nol", base, layer.base_weight.flatten(2)
    )
    oh = (h + 2 * layer.padding[0] - layer.dilation[0] * (k[0] - 1) - 1) // layer.stride[0] + 1
    return (y + layer.bias[:, None]).view(n, -1, oh, y.shape[-1] // oh)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_matches_unfold_reference_in_both_layouts(kernel, stride, padding, channels_last):
    layer = _randomize(KANConv2d(3, 4, kernel, stride=stride, padding=padding), 0.3).double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = layer(x)
    g = torch.randn_like(y)
    wrt = [x, *layer.parameters()]
    ref = _conv_reference(layer, x)
    torch.testing.assert_close(y, ref)
    for a, b in zip(torch.autograd.grad(y, wrt, g), torch.autograd.grad(ref, wrt, g)):
        torch.testing.assert_close(a, b)


def test_conv_gradgradcheck_and_bias_free():
    layer = _randomize(KANConv2d(1, 1, 2, padding=1, bias=False, grid_size=1, spline_order=1), 0.3).double()
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = (torch.rand(1, 1, 2, 2, dtype=torch.float64) * 2 - 1).requires_grad_()

    def fn(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradgradcheck(fn, (x, *params))


def test_conv_bf16_autocast():
    layer = _randomize(KANConv2d(4, 6, 3, padding=1), 0.3)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.spline_weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    torch.testing.assert_close(y.float(), _conv_reference(layer, x), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("layer_fn", [lambda: KANLinear(5, 3), lambda: KANConv2d(3, 4, 3, padding=1)])
def test_torch_export_and_meta_tensors(layer_fn):
    layer = layer_fn()
    x = torch.randn(2, 5) if isinstance(layer, KANLinear) else torch.randn(2, 3, 6, 6)
    exported = torch.export.export(layer, (x,))
    torch.testing.assert_close(exported.module()(x), layer(x))
    # The autograd Functions themselves run on meta tensors (shape inference, no data).
    with torch.device("meta"):
        meta_layer = layer_fn()
    phi_fn, both_fn, args = meta_layer.basis.functional()
    params = (meta_layer.base_weight, meta_layer.spline_weight, meta_layer.spline_scaler, meta_layer.bias)
    xm = x.to("meta").requires_grad_()
    if isinstance(layer, KANLinear):
        y = _fused.KANLinearFunction.apply(xm, *params, torch.float32, "silu", phi_fn, both_fn, *args)
    else:
        from kanzoo.layers.kan_conv import KANConvFunction

        conf = (2, (1, 1), (1, 1), (1, 1), 1)
        y = KANConvFunction.apply(xm, *params, torch.float32, conf, "silu", phi_fn, both_fn, *args)
    assert y.is_meta and y.shape == layer(x).shape
    y.sum().backward()
    assert xm.grad.is_meta and meta_layer.spline_weight.grad.shape == meta_layer.spline_weight.shape


def _compiled_vs_eager(layer, x):
    results = {}
    for compiled in (False, True):
        kl.set_compile(compiled)
        try:
            xg = x.clone().requires_grad_()
            y = layer(xg)
            results[compiled] = (y, *torch.autograd.grad(y.square().sum(), [xg, *layer.parameters()]))
        finally:
            kl.set_compile(False)
    for a, b in zip(results[False], results[True]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_compiled_weight_split_matches_eager():
    # Same shapes as test_kan_linear's compiled test, so its compiled feature kernels are reused.
    _compiled_vs_eager(_randomize(KANLinear(8, 6), 0.3), torch.randn(33, 8))
    used = {k[0] for k, v in _fused._compiled.items() if v is not None}
    assert {_fused.build_features, _fused.features_and_input_grad, _fused.split_weight_grad} <= used


@pytest.mark.slow
def test_compiled_conv_kernels_match_eager():
    _compiled_vs_eager(_randomize(KANConv2d(3, 4, 3, padding=1, groups=1), 0.3), torch.randn(2, 3, 6, 6))
    _compiled_vs_eager(_randomize(KANConv2d(4, 4, 3, padding=1, groups=2), 0.3), torch.randn(2, 4, 5, 5))


def test_single_process_ddp_reduces_the_fast_path_gradients(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        layer = _randomize(KANLinear(4, 3), 0.3)
        ref = [p.detach().clone() for p in layer.parameters()]
        ddp = torch.nn.parallel.DistributedDataParallel(layer)
        x = torch.randn(5, 4)
        ddp(x).sum().backward()
        plain = KANLinear(4, 3)
        with torch.no_grad():
            for p, r in zip(plain.parameters(), ref):
                p.copy_(r)
        _reference_linear(plain, x).sum().backward()
        for p, q in zip(layer.parameters(), plain.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
    finally:
        dist.destroy_process_group()


def test_compiled_kernels_specialise_per_layer_shape_up_to_a_cap(monkeypatch):
    """One compiled copy per (kernel, feature shape), every batch size sharing it; past the cap
    new shapes share one copy. torch.compile is replaced by a recorder (the dispatch is under test,
    not the compiler)."""
    made = []

    def fake_compile(fn, dynamic=None):
        made.append(fn.__name__)
        return fn

    monkeypatch.setattr(_fused.torch, "compile", fake_compile)
    monkeypatch.setattr(_fused, "_compiled", {})
    monkeypatch.setattr(_fused, "_shapes_seen", {})
    monkeypatch.setattr(_fused, "MAX_SHAPE_SPECIALIZATIONS", 3)

    def kernel(x, scale):
        return x * scale

    def call(*shape):
        with torch.no_grad():
            ok, out = _fused._call_compiled((kernel, None, None), kernel, "k", (torch.ones(shape), 2.0))
        assert ok and torch.equal(out, torch.full(shape, 2.0))

    call(4, 5)
    call(9, 5)  # another batch size: same copy
    assert len(made) == 1 and made[0].endswith("_5")
    call(4, 6)
    call(4, 2, 3)
    assert len(made) == 3
    call(4, 7)  # past the cap: the shared dynamic copy
    call(3, 8)
    assert len(made) == 4 and made[-1].endswith("_dynamic")
    call(8, 5)  # a specialised shape keeps its own copy
    assert len(made) == 4


@pytest.mark.parametrize("scaler,base", [(True, True), (False, False)], ids=["fused", "bare"])
def test_backward_never_writes_into_the_parameters(scaler, base):
    """Backward reuses the rebuilt weight's buffer for dW; with no scaler and no base branch the
    "built" weight is a view of spline_weight itself, which must stay untouched."""
    act = "silu" if base else None
    layer = _randomize(KANLinear(6, 40, spline_scaler=scaler, base_activation=act), 0.3)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    x = torch.randn(2, 6, requires_grad=True)  # small batch: the weight is rebuilt in backward
    layer(x).square().sum().backward()
    for n, p in layer.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
    ref = KANLinear(6, 40, spline_scaler=scaler, base_activation=act)
    ref.load_state_dict(layer.state_dict())
    xr = x.detach().clone().requires_grad_()
    with torch.enable_grad():
        from kanzoo.layers._fused import plain_linear

        spec = ref.basis.functional()
        y = plain_linear(xr, ref.base_weight, ref.spline_weight, ref.spline_scaler, ref.bias, torch.float32,
                         act, spec[0], *spec[2])  # fmt: skip
        y.square().sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-6)
    for (n, p), (_, q) in zip(layer.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=n)
