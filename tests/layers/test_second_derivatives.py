"""Second derivatives through the KAN layers, as physics-informed training needs them.

For every basis (B-spline with uniform knots and with non-uniform knots, i.e. the closed form and
Cox-de Boor; rbf; chebyshev; fourier; rational) through ``KANLinear`` and ``KANConv1d``:

* float64 ``gradcheck`` and ``gradgradcheck`` w.r.t. the input and every parameter;
* a PINN-style loss ``mean((d2u/dx2)^2)``, computed with ``create_graph=True``, whose gradient
  w.r.t. the parameters matches central finite differences of the loss;
* ``d2u/dx2`` of a one-edge layer against closed forms / scipy (independent of autograd).
"""

import math

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanzoo.layers import KANConv1d, KANLinear

BASES = {
    "bspline": {"basis": "bspline", "grid_size": 3},
    "bspline_nonuniform": {"basis": "bspline", "grid_size": 3},
    "rbf": {"basis": "rbf", "grid_size": 4},
    "chebyshev": {"basis": "chebyshev", "degree": 3},
    "fourier": {"basis": "fourier", "num_frequencies": 2},
    "rational": {
        "basis": "rational",
        "num_groups": 1,
        "init": "gelu",
        "numerator_degree": 3,
        "denominator_degree": 2,
    },
}


def _make_nonuniform(layer):
    """Knots moved apart unevenly (still increasing): the basis switches to Cox-de Boor."""
    grid = layer.basis.grid.detach().double()
    layer.basis.grid = grid + torch.linspace(0, 0.6, grid.shape[1], dtype=torch.float64) ** 2
    assert not layer.basis.is_uniform()


def _layer(kind, basis, seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = {**BASES[basis], **overrides}
    layer = (KANLinear(2, 2, **kwargs) if kind == "linear" else KANConv1d(2, 2, 2, **kwargs)).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    if basis == "bspline_nonuniform":
        _make_nonuniform(layer)
    return layer


def _input(kind, seed=1):
    gen = torch.Generator().manual_seed(seed)
    shape = (3, 2) if kind == "linear" else (1, 2, 3)
    x = torch.rand(shape, generator=gen, dtype=torch.float64) * 1.6 - 0.8
    return torch.where(x.abs() < 0.1, x + 0.25, x)  # away from the rational's |x| kink at 0


def _functional(layer):
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in layer.named_parameters())

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    return f, params


CASES = [(kind, basis) for kind in ("linear", "conv") for basis in BASES]


@pytest.mark.parametrize("kind,basis", CASES)
def test_gradcheck_and_gradgradcheck_input_and_parameters(kind, basis):
    layer = _layer(kind, basis)
    f, params = _functional(layer)
    inputs = (_input(kind).requires_grad_(), *params)
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


def _pinn_loss(f, x, params):
    """``mean((d2u/dx2)^2)`` with ``u`` the sum of the outputs and derivatives w.r.t. every input."""
    x = x.detach().requires_grad_()
    u = f(x, *params)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x, create_graph=True)
    return d2u.square().mean()


@pytest.mark.parametrize("kind,basis", CASES)
def test_pinn_loss_gradient_matches_central_differences(kind, basis):
    """Directional central differences, one random direction per parameter tensor (so a wrong
    gradient of any tensor shows), against the autograd gradient projected on it."""
    layer = _layer(kind, basis, seed=2)
    f, params = _functional(layer)
    x = _input(kind, seed=3)
    loss = _pinn_loss(f, x, params)
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    assert loss.item() > 0 and max(g.abs().max().item() for g in grads) > 0
    gen = torch.Generator().manual_seed(5)
    eps = 1e-5
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        direction = torch.randn(p.shape, generator=gen, dtype=p.dtype)

        def shifted(step, i=i, direction=direction):
            moved = [q + step * direction if j == i else q for j, q in enumerate(params)]
            return _pinn_loss(f, x, moved).item()

        fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
        exact = (g * direction).sum().item()
        assert fd == pytest.approx(exact, rel=1e-5, abs=1e-8 * max(1.0, loss.item())), (i, fd, exact)


# ---------------------------------------------------------------------------------------------
# d2u/dx2 of a single edge against independent closed forms.


def _second_derivative(layer, xs):
    x = torch.from_numpy(xs).reshape(-1, 1).requires_grad_()
    u = layer(x).sum()
    (du,) = torch.autograd.grad(u, x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x)
    return d2u.reshape(-1).detach().numpy()


def _one_edge(basis, seed=4):
    torch.manual_seed(seed)
    layer = KANLinear(1, 1, base_activation=None, spline_scaler=False, bias=False, **BASES[basis]).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
        for p in layer.basis.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    if basis == "bspline_nonuniform":
        _make_nonuniform(layer)
    return layer


def _reference_second_derivative(basis, layer, xs):
    w = layer.spline_weight.detach().reshape(-1).numpy()
    b = layer.basis
    if basis.startswith("bspline"):
        t, k = b.grid[0].detach().numpy(), b.spline_order
        return BSpline(t, w, k, extrapolate=False).derivative(2)(xs)
    if basis == "rbf":
        c, inv_w = b.grid[0].detach().numpy(), b.inv_width.item()
        z = (xs[:, None] - c) * inv_w
        return (np.exp(-z * z) * (4 * z * z - 2) * inv_w**2) @ w
    if basis == "chebyshev":
        # u(x) = C(tanh x) with C a Chebyshev series: u'' = C''(t) (1 - t^2)^2 - 2 t (1 - t^2) C'(t).
        t = np.tanh(xs)
        series = np.polynomial.Chebyshev(w)
        return series.deriv(2)(t) * (1 - t * t) ** 2 - 2 * t * (1 - t * t) * series.deriv(1)(t)
    if basis == "fourier":
        f = b.freqs.detach().numpy()
        kk = len(f)
        return (-(f**2) * np.cos(xs[:, None] * f)) @ w[:kk] + (-(f**2) * np.sin(xs[:, None] * f)) @ w[kk:]
    # rational: fourth-order central differences of the direct float64 formula (h = 1e-3).
    a = b.numerator.detach()[0].numpy()
    d = np.abs(b.denominator.detach()[0].numpy())

    def r(v):
        return np.polyval(a[::-1], v) / (1 + sum(d[j] * np.abs(v) ** (j + 1) for j in range(len(d))))

    h = 1e-3
    stencil = -r(xs + 2 * h) + 16 * r(xs + h) - 30 * r(xs) + 16 * r(xs - h) - r(xs - 2 * h)
    return w[0] * stencil / (12 * h * h)


@pytest.mark.parametrize("basis", list(BASES))
def test_second_derivative_of_one_edge_matches_closed_form(basis):
    layer = _one_edge(basis)
    xs = np.linspace(-0.9, 0.9, 37) + 1e-3 * math.pi  # no sample on a knot
    tol = 1e-6 if basis == "rational" else 1e-10
    np.testing.assert_allclose(
        _second_derivative(layer, xs), _reference_second_derivative(basis, layer, xs), rtol=tol, atol=tol
    )
