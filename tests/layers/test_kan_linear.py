"""KANLinear against nn.Linear, an explicit scipy/numpy reference, gradcheck and bad inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.interpolate import BSpline

import kanzoo.layers as kl
from kanzoo.layers import KANLinear

BASES = ["bspline", "rbf", "chebyshev", "fourier", "rational"]
SMALL = {"bspline": {"grid_size": 4}, "rbf": {"grid_size": 5}, "chebyshev": {"degree": 3},
         "fourier": {"num_frequencies": 2}, "rational": {"num_groups": 2, "init": "silu"}}  # fmt: skip


def _randomize(layer, scale=0.5):
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return layer


def test_zero_spline_identity_base_equals_nn_linear():
    lin = torch.nn.Linear(6, 4)
    kan = KANLinear(6, 4, base_activation="identity")
    with torch.no_grad():
        kan.base_weight.copy_(lin.weight)
        kan.bias.copy_(lin.bias)
        kan.spline_weight.zero_()
    x = torch.randn(2, 3, 6) * 3
    torch.testing.assert_close(kan(x), lin(x))


def test_bspline_layer_matches_explicit_scipy_reference():
    layer = _randomize(KANLinear(3, 2, grid_size=5, spline_order=3).double())
    x = np.random.default_rng(0).uniform(-1.3, 1.3, size=(17, 3))
    ours = layer(torch.from_numpy(x)).detach().numpy()
    bw = layer.base_weight.detach().numpy()
    sw = layer.spline_weight.detach().numpy() * layer.spline_scaler.detach().numpy()[..., None]
    ref = np.tile(layer.bias.detach().numpy(), (17, 1))
    for i in range(3):
        t = layer.basis.grid[i].numpy()
        n = len(t) - 4
        # Every basis element on the extended knot vector (also outside [lo, hi], 0 beyond t_0/t_last).
        elems = [BSpline.basis_element(t[f : f + 5], extrapolate=False)(x[:, i]) for f in range(n)]
        design = np.nan_to_num(np.stack(elems, -1), nan=0.0)
        for j in range(2):
            ref[:, j] += bw[j, i] * x[:, i] / (1 + np.exp(-x[:, i])) + design @ sw[j, i]
        assert n == 8
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_gr_kan_layer_is_weight_times_rational():
    layer = _randomize(KANLinear(4, 3, basis="rational", base_activation=None, num_groups=2), 0.3).double()
    assert layer.base_weight is None and layer.basis.num_features == 1
    x = torch.randn(5, 4, dtype=torch.float64)
    r = layer.basis(x)[..., 0]
    ref = r @ layer.effective_spline_weight()[..., 0].T + layer.bias
    torch.testing.assert_close(layer(x), ref)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("act", ["silu", "gelu", "identity", None])
def test_gradcheck_input_and_parameters(basis, act):
    layer = _randomize(KANLinear(2, 2, basis=basis, base_activation=act, **SMALL[basis]).double(), 0.3)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = (torch.rand(3, 2, dtype=torch.float64) * 2.2 - 1.1).requires_grad_()

    def fn(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))
    if act in ("silu", None):  # double backward w.r.t. the input (the create_graph path)
        assert torch.autograd.gradgradcheck(lambda x: layer(x), (x,))


@pytest.mark.parametrize("basis", ["bspline", "rbf", "chebyshev", "fourier"])
def test_memory_lean_path_equals_plain_autograd(basis):
    layer = _randomize(KANLinear(5, 4, basis=basis).double(), 0.3)
    x = (torch.randn(9, 5, dtype=torch.float64) * 1.2).requires_grad_()
    g = torch.randn(9, 4, dtype=torch.float64)
    params = [x, *layer.parameters()]
    lean = torch.autograd.grad(layer(x), params, g)
    plain = torch.autograd.grad(F.linear(layer._features(x), layer.fused_weight(), layer.bias), params, g)
    for a, b in zip(lean, plain):
        torch.testing.assert_close(a, b)


def _saved_bytes(fn):
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


def test_memory_lean_path_saves_input_not_basis():
    layer = KANLinear(32, 16, grid_size=5, spline_order=3)
    x = torch.randn(512, 32, requires_grad=True)
    _, saved = _saved_bytes(lambda: layer(x))
    feature_bytes = 512 * 32 * 9 * 4
    param_bytes = sum(p.numel() * 4 for p in layer.parameters())
    # x + fused weight + the parameters the weight fusion keeps; no (N, in, n) tensor.
    assert saved <= x.numel() * 4 + 3 * param_bytes
    assert saved < feature_bytes / 2


def test_spline_branch_vanishes_far_outside_grid_and_outputs_finite():
    layer = _randomize(KANLinear(3, 2))
    x = torch.tensor([[1e6, -1e6, 1e6], [-1e6, 1e6, -1e6]])
    y = layer(x)
    assert torch.isfinite(y).all()
    base_only = F.silu(x) @ layer.base_weight.T + layer.bias
    torch.testing.assert_close(y, base_only)
    x.requires_grad_()
    layer(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("basis", BASES)
def test_huge_inputs_finite_for_every_basis(basis):
    layer = KANLinear(3, 2, basis=basis)
    x = torch.tensor([[1e6, -1e6, 0.5]], requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_empty_batch_and_leading_dims():
    layer = KANLinear(5, 3)
    x = torch.randn(0, 5, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 5)
    assert layer(torch.randn(2, 0, 5)).shape == (2, 0, 3)
    assert layer(torch.randn(2, 3, 4, 5)).shape == (2, 3, 4, 3)
    assert layer(torch.randn(5)).shape == (3,)


def test_bad_inputs_raise_clear_value_errors():
    layer = KANLinear(8, 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., 8\)"):
        layer(torch.randn(4, 7))
    with pytest.raises(ValueError, match="floating-point"):
        layer(torch.ones(4, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="float32"):
        layer(torch.randn(4, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="base_activation"):
        KANLinear(2, 2, base_activation="relu")
    with pytest.raises(ValueError, match="basis"):
        KANLinear(2, 2, basis="bspline", num_centres=3)
    with pytest.raises(ValueError):
        KANLinear(0, 2)


@pytest.mark.parametrize("basis", BASES)
def test_float32_float64_bfloat16(basis):
    layer64 = KANLinear(6, 4, basis=basis).double()
    x64 = torch.randn(10, 6, dtype=torch.float64)
    ref = layer64(x64)
    for dtype, tol in [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)]:
        layer = KANLinear(6, 4, basis=basis)
        layer.load_state_dict(layer64.state_dict())
        layer = layer.to(dtype)
        x = x64.to(dtype).requires_grad_()
        y = layer(x)
        assert y.dtype == dtype
        y.float().sum().backward()
        assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
        assert layer.spline_weight.grad.dtype == dtype
        torch.testing.assert_close(y.double(), ref.detach(), atol=tol * 4, rtol=tol)


def test_autocast_bfloat16_on_cpu():
    layer = KANLinear(6, 4)
    x = torch.randn(10, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.spline_weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    torch.testing.assert_close(y.float(), layer(x), atol=5e-2, rtol=5e-2)


def test_nonuniform_grid_switches_to_cox_de_boor_and_matches_scipy():
    layer = _randomize(KANLinear(2, 2, base_activation=None, spline_scaler=False).double())
    knots = torch.sort(torch.rand(2, 12, dtype=torch.float64) * 4 - 2, dim=1).values
    layer.basis.grid = knots
    assert not layer.basis.is_uniform()
    x = torch.stack([torch.linspace(knots[i, 3], knots[i, 8], 20, dtype=torch.float64) for i in range(2)], 1)
    y = layer(x).detach().numpy()
    ref = np.tile(layer.bias.detach().numpy(), (20, 1))
    for i in range(2):
        for j in range(2):
            s = BSpline(knots[i].numpy(), layer.spline_weight[j, i].detach().numpy(), 3, extrapolate=False)
            ref[:, j] += np.nan_to_num(s(x[:, i].numpy()))
    np.testing.assert_allclose(y, ref, atol=1e-12)


def test_state_dict_round_trip_and_attributes():
    a = KANLinear(4, 3, grid_size=6, spline_order=2)
    b = KANLinear(4, 3, grid_size=6, spline_order=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 4)
    torch.testing.assert_close(a(x), b(x))
    assert a.spline_weight.shape == (3, 4, 8) and a.base_weight.shape == (3, 4)
    assert a.spline_scaler.shape == (3, 4) and a.basis.grid.shape == (4, 6 + 2 * 2 + 1)
    assert a.effective_spline_weight().shape == (3, 4, 8)
    assert KANLinear(4, 3, spline_scaler=False, bias=False).spline_scaler is None
    for name, _ in a.named_parameters():
        assert any(key in name for key in ("spline_weight", "spline_scaler", "base_weight", "basis.", "bias"))


def test_compiled_path_matches_eager():
    layer = _randomize(KANLinear(8, 6), 0.3)
    x = torch.randn(33, 8, requires_grad=True)
    g = torch.randn(33, 6)
    kl.set_compile(False)
    eager = torch.autograd.grad(layer(x), [x, layer.spline_weight, layer.base_weight], g)
    kl.set_compile(True)
    try:
        compiled = torch.autograd.grad(layer(x), [x, layer.spline_weight, layer.base_weight], g)
    finally:
        kl.set_compile(False)
    from kanzoo.layers import _fused

    used = {k[0] for k, v in _fused._compiled.items() if v is not None}
    assert {_fused.build_features, _fused.features_and_input_grad} <= used
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("basis", ["bspline", "rbf", "fourier", "chebyshev"])
def test_builds_on_meta_device_and_loads_state(basis):
    """transformers' from_pretrained builds modules on the meta device, then loads the weights."""
    ref = KANLinear(5, 3, basis=basis)
    with torch.device("meta"):
        layer = KANLinear(5, 3, basis=basis)
    assert layer.spline_weight.is_meta
    layer = layer.to_empty(device="cpu")
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(7, 5) * 2
    torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=0)
