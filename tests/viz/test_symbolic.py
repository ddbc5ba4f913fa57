"""Symbolic regression of edges: affine fits, trainable symbolic edges, sympy export."""

import math

import numpy as np
import pytest
import sympy as sp
import torch

from kanzoo.interpret import (
    KANNetwork,
    SymbolicFit,
    SymbolicKANLinear,
    auto_symbolic,
    edge_set,
    fit_candidate,
    select_fit,
    stack_inputs,
    suggest_edge,
    suggest_symbolic,
    symbolify,
    to_sympy,
)
from kanzoo.layers import KANLinear

CASES = [
    ("sin", 2.5, 0.3, 1.7, -0.4, (-1.0, 1.0)),
    ("exp", 1.3, -0.2, 0.6, 0.1, (-1.0, 2.0)),
    ("x^2", 1.0, 0.25, -2.0, 0.5, (-1.0, 1.0)),
    ("tanh", 3.0, 0.5, 1.1, 0.2, (-1.0, 1.0)),
    ("log", 2.0, 1.5, 0.7, -1.0, (-0.5, 2.0)),
    ("sqrt", 1.5, 2.0, -0.8, 0.3, (-1.0, 3.0)),
    ("1/x", 1.0, 2.5, 0.9, 0.0, (-1.0, 1.0)),
    ("gaussian", 2.0, -0.5, 1.2, 0.1, (-1.5, 1.5)),
]


@pytest.mark.parametrize(("name", "a", "b", "c", "d", "rng"), CASES)
def test_fit_recovers_a_known_function(name, a, b, c, d, rng):
    x = np.linspace(*rng, 300)
    from kanzoo.interpret.library import get_candidate

    y = c * get_candidate(name).numpy(a * x + b) + d
    fit = fit_candidate(x, y, name)
    assert fit.r2 > 1 - 1e-9
    np.testing.assert_allclose(fit(x), y, atol=1e-5 * max(1.0, np.abs(y).max()))
    best = select_fit(suggest_symbolic(x, y))
    assert best.name == name, suggest_symbolic(x, y)[:3]


def test_ranking_is_by_r2_and_noise_does_not_fool_selection():
    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, 400)
    y = x**2 + 1e-3 * rng.standard_normal(400)  # cos(a·x) with tiny a imitates x² just as well
    fits = suggest_symbolic(x, y)
    assert all(f1.r2 >= f2.r2 for f1, f2 in zip(fits, fits[1:]))
    assert select_fit(fits).name == "x^2"
    with pytest.raises(ValueError, match="unknown symbolic function"):
        fit_candidate(x, y, "cosh")


def _layer_with_edges(funcs):
    """A KANLinear(len(funcs), 1) whose spline edges are least-squares fits of the given functions."""
    layer = KANLinear(len(funcs), 1, grid_size=8)
    t = torch.linspace(-1, 1, 400)
    xs = t[:, None].expand(-1, len(funcs))
    feats = layer.basis(xs)  # (400, in, n)
    with torch.no_grad():
        layer.base_weight.zero_()
        layer.spline_scaler.fill_(1.0)
        layer.bias.zero_()
        for i, f in enumerate(funcs):
            coef = torch.linalg.lstsq(feats[:, i, :], f(t)[:, None]).solution[:, 0]
            layer.spline_weight[0, i] = coef
    return layer


def test_clean_synthetic_edges_are_recovered_and_symbolified():
    layer = _layer_with_edges([lambda t: torch.sin(math.pi * t), lambda t: t**2])
    top_sin = suggest_edge(layer, 0, 0)
    assert top_sin[0].name == "sin" and top_sin[0].r2 > 0.999
    assert abs(abs(top_sin[0].a) - math.pi) < 0.05
    assert select_fit(suggest_edge(layer, 1, 0, top_k=None)).name == "x^2"

    x = torch.rand(256, 2) * 2 - 1
    before = layer(x)
    wrapper = symbolify(layer, 0, 0)  # best by R² (sin)
    wrapper = symbolify(wrapper, 1, 0, "x^2")
    assert isinstance(wrapper, SymbolicKANLinear)
    assert [f.name for _, _, f in wrapper.symbolic_edges()] == ["sin", "x^2"]
    assert wrapper.mask.sum() == 0
    torch.testing.assert_close(wrapper(x), before, rtol=0, atol=5e-3)
    (expr,) = to_sympy([wrapper], input_names=["x", "y"])
    fn = sp.lambdify(sp.symbols("x y", real=True), expr, "numpy")
    np.testing.assert_allclose(fn(x[:, 0].numpy(), x[:, 1].numpy()), wrapper(x)[:, 0].detach(), atol=1e-5)
    assert expr.has(sp.sin) and not expr.has(sp.exp)


def test_symbolic_edge_is_trainable_and_forward_matches_formula():
    layer = KANLinear(3, 2)
    x = torch.randn(50, 3)
    fit = SymbolicFit("tanh", 1.5, -0.2, 0.8, 0.1, r2=1.0, complexity=4)
    wrapper = symbolify(layer, 2, 1, fit=fit)
    es = edge_set(layer)
    phi = es.evaluate(x).reshape(50, 2, 3)
    expected = phi.sum(-1) + layer.bias
    expected[:, 1] += -phi[:, 1, 2] + 0.8 * torch.tanh(1.5 * x[:, 2] - 0.2) + 0.1
    out = wrapper(x)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-5)
    out.pow(2).sum().backward()
    assert wrapper.symbolic_params.grad is not None and wrapper.symbolic_params.grad.abs().sum() > 0
    assert float(layer.spline_weight.grad[1, 2].abs().sum()) == 0  # masked spline edge gets no gradient
    assert float(layer.spline_weight.grad[0, 2].abs().sum()) > 0
    # state_dict round trip into a fresh wrapper (different number of symbolic edges)
    fresh = SymbolicKANLinear(layer=KANLinear(3, 2))
    fresh.load_state_dict(wrapper.state_dict())
    assert fresh.symbolic_names == ["tanh"]
    torch.testing.assert_close(fresh(x), wrapper(x))


def test_to_sympy_of_a_two_layer_network():
    net = KANNetwork(widths=[2, 2, 1])
    fits = {
        (0, 0, 0): SymbolicFit("sin", 2.0, 0.1, 1.0, 0.0, 1.0, 3),
        (0, 1, 0): SymbolicFit("x^2", 1.0, 0.0, 0.5, 0.2, 1.0, 2),
        (0, 0, 1): SymbolicFit("x", 1.0, 0.0, -1.0, 0.0, 1.0, 1),
        (0, 1, 1): SymbolicFit("exp", 0.5, 0.0, 1.0, -1.0, 1.0, 3),
        (1, 0, 0): SymbolicFit("tanh", 1.0, 0.0, 2.0, 0.0, 1.0, 4),
    }
    with pytest.raises(ValueError, match="spline edges"):
        to_sympy(net)
    for (k, i, j), fit in fits.items():
        net[k] = symbolify(net[k], i, j, fit=fit)
    with pytest.raises(ValueError, match=r"layer 1 still has spline edges \(j, i\) = \[\(0, 1\)\]"):
        to_sympy(net)
    net[1] = symbolify(net[1], 1, 0, fit=SymbolicFit("x^3", 1.0, 0.0, 0.3, 0.0, 1.0, 3))
    (expr,) = to_sympy(net, input_names=["u", "v"])
    u, v = sp.symbols("u v", real=True)
    b0, b1 = net[0].layer.bias.detach().double(), float(net[1].layer.bias.detach())
    h0 = sp.sin(2 * u + 0.1) + 0.5 * v**2 + 0.2 + float(b0[0])
    h1 = -u + sp.exp(0.5 * v) - 1 + float(b0[1])
    reference = 2 * sp.tanh(h0) + 0.3 * h1**3 + b1
    pts = torch.rand(20, 2) * 2 - 1
    got = sp.lambdify((u, v), expr)(pts[:, 0].double().numpy(), pts[:, 1].double().numpy())
    ref = sp.lambdify((u, v), reference)(pts[:, 0].double().numpy(), pts[:, 1].double().numpy())
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)  # parameters are stored in float32
    np.testing.assert_allclose(got, net(pts)[:, 0].detach().double().numpy(), rtol=1e-4, atol=1e-5)


def _train_formula_kan(widths, steps):
    """Fit exp(sin(pi x) + y^2) as in the KAN paper: LBFGS with data-driven grid updates."""
    torch.manual_seed(0)
    x = torch.rand(1000, 2) * 2 - 1
    y = torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)[:, None]
    net = KANNetwork(widths=widths, grid_size=5)
    for step in range(steps):
        if step % 5 == 0 and step < 15:
            for layer, inputs in zip(net, stack_inputs(list(net), x)):
                layer.update_grid(inputs)
            opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=20, line_search_fn="strong_wolfe")

        def closure(opt=opt):
            opt.zero_grad()
            loss = ((net(x) - y) ** 2).mean()
            loss.backward()
            return loss

        opt.step(closure)
    return net, x, y


def test_trained_kan_recovers_sin_square_exp():
    net, x, y = _train_formula_kan([2, 1, 1], steps=20)
    with torch.no_grad():
        assert float(((net(x) - y) ** 2).mean().sqrt()) < 0.03
    done = auto_symbolic(net, x)
    names = {(k, i, j): fit.name for k, i, j, fit in done}
    assert names == {(0, 0, 0): "sin", (0, 1, 0): "x^2", (1, 0, 0): "exp"}
    assert all(fit.r2 > 0.999 for *_, fit in done)
    (expr,) = to_sympy(net, input_names=["x", "y"])
    fn = sp.lambdify(sp.symbols("x y", real=True), expr, "numpy")
    pred = fn(x[:, 0].double().numpy(), x[:, 1].double().numpy())
    rmse = float(np.sqrt(np.mean((pred - y[:, 0].double().numpy()) ** 2)))
    assert rmse < 0.05
