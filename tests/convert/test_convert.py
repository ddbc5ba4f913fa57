"""Importers against the pykan object's own forward and against a plain-torch evaluation of the
efficient-kan formula (written here from the math: Cox-de Boor on the stored knots)."""

import pytest
import torch
from kan import KANLayer

from kanzoo.convert import from_efficient_kan, from_pykan
from kanzoo.layers import KANLinear


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # pykan may write a ckpt/model directory next to the cwd


def _cox_de_boor(x, knots, k):
    """B-spline basis of order k: x (N, in), knots (in, K) -> (N, in, K - k - 1), half-open intervals."""
    xe = x[..., None]
    b = ((xe >= knots[:, :-1]) & (xe < knots[:, 1:])).to(x.dtype)
    for p in range(1, k + 1):
        t_lo, t_hi = knots[:, : -(p + 1)], knots[:, p:-1]
        u_lo, u_hi = knots[:, 1:-p], knots[:, p + 1 :]
        left = (xe - t_lo) / (t_hi - t_lo) * b[..., :-1]
        right = (u_hi - xe) / (u_hi - u_lo) * b[..., 1:]
        b = left + right
    return b


def _efficient_kan_reference(x, sd, act=torch.nn.functional.silu):
    out_f = sd["base_weight"].shape[0]
    k = sd["grid"].shape[1] - sd["spline_weight"].shape[2] - 1
    scaled = sd["spline_weight"]
    if "spline_scaler" in sd:
        scaled = scaled * sd["spline_scaler"][..., None]
    basis = _cox_de_boor(x, sd["grid"], k)
    return act(x) @ sd["base_weight"].T + basis.reshape(x.shape[0], -1) @ scaled.reshape(out_f, -1).T


def _probe_inputs(lo=-1.0, hi=1.0, n_in=3):
    torch.manual_seed(5)
    inside = lo + (hi - lo) * torch.rand(400, n_in, dtype=torch.float64)
    around = torch.randn(400, n_in, dtype=torch.float64) * 3 * (hi - lo)  # extension region and beyond
    far = torch.tensor([[1e6, -1e6, 50.0]], dtype=torch.float64)[:, :n_in]
    return torch.cat([inside, around, far])


def _state(in_f=3, out_f=4, g=5, k=3, uniform=True, scaler=True):
    torch.manual_seed(0)
    if uniform:
        h = 2.0 / g
        knots = (-1 + h * torch.arange(-k, g + k + 1, dtype=torch.float64)).expand(in_f, -1).clone()
    else:
        interior = torch.sort(torch.rand(in_f, g + 1, dtype=torch.float64) * 3 - 1.5, dim=1).values
        h = (interior[:, -1:] - interior[:, :1]) / g
        steps = torch.arange(1, k + 1, dtype=torch.float64)
        knots = torch.cat([interior[:, :1] - h * steps.flip(0), interior, interior[:, -1:] + h * steps], 1)
    sd = {
        "base_weight": torch.randn(out_f, in_f, dtype=torch.float64),
        "spline_weight": torch.randn(out_f, in_f, g + k, dtype=torch.float64),
        "grid": knots,
    }
    if scaler:
        sd["spline_scaler"] = torch.randn(out_f, in_f, dtype=torch.float64)
    return sd


@pytest.mark.parametrize(("uniform", "scaler", "k"), [(True, True, 3), (False, True, 3), (True, False, 2)])
def test_from_efficient_kan_matches_the_published_formula(uniform, scaler, k):
    sd = _state(uniform=uniform, scaler=scaler, k=k)
    layer = from_efficient_kan(sd)
    assert isinstance(layer, KANLinear) and layer.bias is None
    assert (layer.spline_scaler is None) == (not scaler) and layer.basis.spline_order == k
    x = _probe_inputs()
    torch.testing.assert_close(layer(x), _efficient_kan_reference(x, sd), rtol=1e-13, atol=1e-12)


def test_from_efficient_kan_prefixed_keys_module_and_errors():
    sd = _state()
    prefixed = {f"layers.0.{key}": v for key, v in sd.items()}
    x = _probe_inputs()
    torch.testing.assert_close(
        from_efficient_kan(prefixed)(x), _efficient_kan_reference(x, sd), rtol=1e-13, atol=1e-12
    )
    float_sd = {key: v.float() for key, v in sd.items()}
    layer32 = from_efficient_kan(float_sd)
    assert layer32.spline_weight.dtype == torch.float32
    torch.testing.assert_close(
        layer32(x.float()), _efficient_kan_reference(x.float(), float_sd), rtol=1e-5, atol=1e-4
    )
    identity = from_efficient_kan(sd, base_activation="identity")
    torch.testing.assert_close(
        identity(x), _efficient_kan_reference(x, sd, act=lambda t: t), rtol=1e-13, atol=1e-12
    )
    with pytest.raises(ValueError, match="lacks"):
        from_efficient_kan({k: v for k, v in sd.items() if k != "grid"})
    with pytest.raises(ValueError, match="read from the stored grid"):
        from_efficient_kan(sd, grid_size=5)
    bad = dict(sd, grid=sd["grid"][:, :9])  # 8 coefficients on 9 knots: order 0
    with pytest.raises(ValueError, match="spline order"):
        from_efficient_kan(bad)


def _pykan_layer(base_fun=None, **kw):
    torch.manual_seed(0)
    layer = KANLayer(in_dim=3, out_dim=4, num=5, k=3, **({"base_fun": base_fun} if base_fun else {}), **kw)
    with torch.no_grad():
        layer.coef.normal_()
        layer.scale_base.normal_()
        layer.scale_sp.normal_()
        layer.mask[0, 1] = 0.0
        layer.mask[2, 3] = 0.0
    return layer


def test_from_pykan_matches_pykan_forward_uniform_float32():
    src = _pykan_layer()
    ours = from_pykan(src)
    assert ours.spline_weight.dtype == torch.float32 and ours.base_activation == "silu"
    x = _probe_inputs().float()
    torch.testing.assert_close(ours(x), src(x)[0], rtol=1e-5, atol=1e-5)


def test_from_pykan_matches_after_pykan_grid_update_float64():
    # pykan's update_grid_from_samples gives non-uniform, per-input knots (grid_eps=0.02).
    src = _pykan_layer().double()
    src.update_grid_from_samples(torch.randn(256, 3, dtype=torch.float64) * torch.tensor([0.5, 1.0, 2.0]))
    ours = from_pykan(src)
    torch.testing.assert_close(ours.basis.grid, src.grid.detach(), rtol=0, atol=0)
    assert not ours.basis.is_uniform()
    x = _probe_inputs(-2.0, 2.0)
    torch.testing.assert_close(ours(x), src(x)[0], rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize(
    ("base_fun", "expected"), [(torch.nn.Identity(), "identity"), (lambda t: t * 0.0, None)]
)
def test_from_pykan_other_base_functions(base_fun, expected):
    src = _pykan_layer(base_fun=base_fun).double()
    ours = from_pykan(src)
    assert ours.base_activation == expected and (ours.base_weight is None) == (expected is None)
    x = _probe_inputs()
    torch.testing.assert_close(ours(x), src(x)[0], rtol=1e-13, atol=1e-12)


def test_from_pykan_rejects_unsupported_inputs():
    with pytest.raises(ValueError, match="KANLayer"):
        from_pykan(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="base_fun"):
        from_pykan(_pykan_layer(base_fun=torch.nn.Tanh()))
