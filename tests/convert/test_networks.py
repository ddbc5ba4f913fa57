"""Whole-network importers: efficient-kan's KAN against a numpy/scipy evaluation of its formula
(B-spline basis elements from scipy on the stored knots) and pykan's KAN against its own forward."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanzoo.convert import from_efficient_kan_network, from_pykan_network
from kanzoo.layers import KANLinear


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # pykan may write a ckpt/model directory next to the cwd


def _basis_scipy(x, knots, k):
    """(N,) inputs, (K,) knots -> (N, K - k - 1) B-spline values, zero outside each support."""
    cols = []
    for f in range(len(knots) - k - 1):
        element = BSpline.basis_element(knots[f : f + k + 2], extrapolate=False)
        cols.append(np.nan_to_num(element(x), nan=0.0))
    return np.stack(cols, axis=1)


def _efficient_kan_network_reference(x, sd, n_layers, act=lambda t: t / (1.0 + np.exp(-t))):
    h = x.numpy()
    for i in range(n_layers):
        bw = sd[f"layers.{i}.base_weight"].numpy()
        sw = sd[f"layers.{i}.spline_weight"].numpy()
        if f"layers.{i}.spline_scaler" in sd:
            sw = sw * sd[f"layers.{i}.spline_scaler"].numpy()[..., None]
        grid = sd[f"layers.{i}.grid"].numpy()
        k = grid.shape[1] - sw.shape[2] - 1
        out = act(h) @ bw.T
        for j in range(h.shape[1]):
            out = out + _basis_scipy(h[:, j], grid[j], k) @ sw[:, j, :].T
        h = out
    return torch.from_numpy(h)


def _efficient_kan_state(widths=(3, 5, 2), g=5, k=3, scaler=True, prefix=""):
    torch.manual_seed(0)
    sd = {}
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:], strict=False)):
        interior = torch.sort(torch.rand(n_in, g + 1, dtype=torch.float64) * 4 - 2, dim=1).values
        h = (interior[:, -1:] - interior[:, :1]) / g
        steps = torch.arange(1, k + 1, dtype=torch.float64)
        knots = torch.cat([interior[:, :1] - h * steps.flip(0), interior, interior[:, -1:] + h * steps], 1)
        sd[f"{prefix}layers.{i}.base_weight"] = torch.randn(n_out, n_in, dtype=torch.float64)
        sd[f"{prefix}layers.{i}.spline_weight"] = torch.randn(n_out, n_in, g + k, dtype=torch.float64)
        sd[f"{prefix}layers.{i}.grid"] = knots
        if scaler:
            sd[f"{prefix}layers.{i}.spline_scaler"] = torch.randn(n_out, n_in, dtype=torch.float64)
    return sd


@pytest.mark.parametrize(("scaler", "k"), [(True, 3), (False, 2)])
def test_from_efficient_kan_network_matches_the_formula(scaler, k):
    sd = _efficient_kan_state(scaler=scaler, k=k)
    net = from_efficient_kan_network(sd)
    assert isinstance(net, torch.nn.Sequential) and len(net) == 2
    assert all(isinstance(m, KANLinear) and m.bias is None for m in net)
    assert [(m.in_features, m.out_features) for m in net] == [(3, 5), (5, 2)]
    torch.manual_seed(1)
    f64 = torch.float64
    x = torch.cat([torch.randn(300, 3, dtype=f64) * 1.5, torch.randn(50, 3, dtype=f64) * 8])
    expected = _efficient_kan_network_reference(x, sd, 2)
    assert expected.abs().max() > 0.1  # the probe reaches the splines, not only zeros
    torch.testing.assert_close(net(x), expected, rtol=1e-10, atol=1e-10)


def test_from_efficient_kan_network_prefix_activation_and_errors():
    sd = _efficient_kan_state(widths=(2, 3, 4, 1), prefix="kan.")
    plain = {key[len("kan.") :]: v for key, v in sd.items()}
    x = torch.randn(100, 2, dtype=torch.float64)
    net = from_efficient_kan_network(sd, base_activation="identity")
    assert len(net) == 3
    torch.testing.assert_close(
        net(x), _efficient_kan_network_reference(x, plain, 3, act=lambda t: t), rtol=1e-10, atol=1e-10
    )
    with pytest.raises(ValueError, match="no 'layers"):
        from_efficient_kan_network({"weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="0..L-1"):
        from_efficient_kan_network({k: v for k, v in plain.items() if not k.startswith("layers.1.")})
    with pytest.raises(ValueError, match="layer 1: .*lacks"):
        from_efficient_kan_network({k: v for k, v in plain.items() if k != "layers.1.grid"})
    bad = dict(plain)
    bad["layers.1.base_weight"] = torch.randn(4, 5, dtype=torch.float64)
    bad["layers.1.spline_weight"] = torch.randn(4, 5, 8, dtype=torch.float64)
    bad["layers.1.spline_scaler"] = torch.randn(4, 5, dtype=torch.float64)
    bad["layers.1.grid"] = plain["layers.0.grid"][:1].expand(5, -1).clone()
    with pytest.raises(ValueError, match="outputs but"):
        from_efficient_kan_network(bad)
    with pytest.raises(ValueError, match="unsupported"):
        from_efficient_kan_network(plain, bias=torch.zeros(1))


def _pykan_model(width, dtype=torch.float32):
    from kan import KAN

    model = KAN(width=width, grid=5, k=3, seed=0, auto_save=False)
    torch.manual_seed(2)
    with torch.no_grad():
        for layer in model.act_fun:
            layer.coef.normal_()
            layer.scale_base.normal_()
            layer.scale_sp.normal_()
        for name in ("node_scale", "node_bias", "subnode_scale", "subnode_bias"):
            for p in getattr(model, name):
                p.normal_()
    return model if dtype == torch.float32 else model.to(dtype)  # pykan's .to() mis-sets .device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_pykan_network_matches_pykan_forward(dtype):
    model = _pykan_model([2, 3, 1], dtype)
    model.act_fun[0].mask[1, 2] = 0.0
    torch.manual_seed(3)
    # pykan's own grid update: non-uniform per-input knots in every layer
    model.update_grid(torch.randn(200, 2, dtype=dtype) * torch.tensor([0.5, 2.0], dtype=dtype))
    net = from_pykan_network(model)
    assert [type(m) for m in net] == [KANLinear, KANLinear] and net[0].bias is not None
    x = torch.cat([torch.randn(300, 2, dtype=dtype) * 2, torch.tensor([[40.0, -40.0]], dtype=dtype)])
    with torch.no_grad():
        expected = model(x)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    torch.testing.assert_close(net(x), expected, **tol)


def test_from_pykan_network_input_permutation_and_deeper():
    model = _pykan_model([3, 4, 2, 2], torch.float64)
    model.input_id = torch.tensor([2, 0, 1])
    net = from_pykan_network(model)
    assert len(net) == 4 and not isinstance(net[0], KANLinear)
    x = torch.randn(200, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(net(x), expected, rtol=1e-10, atol=1e-10)


def test_from_pykan_network_rejects_what_it_cannot_map():
    from kan import KAN

    with pytest.raises(ValueError, match="multiplication"):
        from_pykan_network(KAN(width=[2, [2, 1], 1], grid=3, k=3, seed=0, auto_save=False))
    model = _pykan_model([2, 3, 1])
    model.fix_symbolic(0, 0, 0, "x", fit_params_bool=False, log_history=False)
    with pytest.raises(ValueError, match="symbolic"):
        from_pykan_network(model)
    with pytest.raises(ValueError, match="pykan KAN"):
        from_pykan_network(torch.nn.Linear(2, 3))
    with pytest.raises(ValueError, match="pykan KAN"):
        from_pykan_network(model.act_fun[0])
