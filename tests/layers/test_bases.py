"""Bases against independent references (scipy, numpy, closed forms) and float64 gradcheck."""

import functools
import math

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as npcheb
from scipy.interpolate import BSpline

from kanzoo.layers import KANLinear, get_basis, list_bases, register_basis
from kanzoo.layers.bases import Basis, BSplineBasis, RationalBasis
from kanzoo.layers.bases.bspline import bspline_cox_de_boor, bspline_cox_de_boor_with_derivative


def _bspline(in_features=2, dtype=torch.float64, **kw):
    return BSplineBasis(in_features, **kw).to(dtype)


def _scipy_all_basis(t, k, x):
    """Every basis element of knot vector ``t`` evaluated at ``x`` (0 outside its support)."""
    n = len(t) - k - 1
    cols = []
    for j in range(n):
        v = BSpline.basis_element(t[j : j + k + 2], extrapolate=False)(x)
        cols.append(np.nan_to_num(v, nan=0.0))
    return np.stack(cols, axis=-1)


# ---------------------------------------------------------------------------------------------
# B-spline


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("grid_size", [1, 3, 5, 12])
def test_bspline_matches_scipy_design_matrix(k, grid_size):
    lo, hi = -2.0, 3.0
    basis = _bspline(grid_size=grid_size, spline_order=k, grid_range=(lo, hi))
    t = np.asarray(lo + (hi - lo) / grid_size * np.arange(-k, grid_size + k + 1), dtype=np.float64)
    np.testing.assert_allclose(basis.grid[0].numpy(), t, rtol=0, atol=1e-12)
    x = np.concatenate([np.linspace(lo, hi, 97), t[k : grid_size + k + 1]])  # include every knot
    ours = basis(torch.from_numpy(np.stack([x, x[::-1]], -1)))
    ref = BSpline.design_matrix(x, t, k).toarray()
    assert ours.shape == (len(x), 2, grid_size + k)
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours[:, 1].numpy(), ref[::-1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_bspline_extended_region_and_beyond_matches_scipy_basis_elements(k):
    basis = _bspline(in_features=1, grid_size=4, spline_order=k)
    t = basis.grid[0].numpy()
    x = np.linspace(t[0] - 1.0, t[-1] + 1.0, 301)
    ours = basis(torch.from_numpy(x)[:, None])[:, 0].numpy()
    np.testing.assert_allclose(ours, _scipy_all_basis(t, k, x), rtol=0, atol=1e-12)
    assert np.all(ours[x < t[0]] == 0) and np.all(ours[x > t[-1]] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_bspline_partition_of_unity_inside_grid(dtype, k):
    basis = _bspline(in_features=3, dtype=dtype, grid_size=7, spline_order=k, grid_range=(-1.5, 0.5))
    x = torch.rand(500, 3, dtype=dtype) * 2.0 - 1.5
    total = basis(x).sum(-1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=tol)
    assert (basis(x) >= -tol).all()


def test_uniform_cubic_values_at_knots():
    basis = _bspline(in_features=1, grid_size=5, spline_order=3)
    interior_knots = basis.grid[0, 3:9]  # lo .. hi
    phi = basis(interior_knots[:, None])[:, 0]
    for row in phi:
        nz = row[row.abs() > 1e-14]
        torch.testing.assert_close(nz, torch.tensor([1 / 6, 4 / 6, 1 / 6], dtype=torch.float64))


def test_bspline_float32_closed_form_close_to_float64_scipy():
    basis = _bspline(in_features=1, dtype=torch.float32, grid_size=5, spline_order=3)
    x = np.linspace(-1, 1, 1001)
    ours = basis(torch.from_numpy(x).float()[:, None])[:, 0].double().numpy()
    ref = BSpline.design_matrix(x, basis.grid[0].double().numpy(), 3).toarray()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_bspline_derivative_matches_scipy(k):
    basis = _bspline(in_features=1, grid_size=6, spline_order=k)
    t = basis.grid[0].numpy()
    n = len(t) - k - 1
    x = np.random.default_rng(0).uniform(-1, 1, 200)
    _, dphi = basis.forward_with_derivative(torch.from_numpy(x)[:, None])
    ref = BSpline(t, np.eye(n), k).derivative()(x)
    np.testing.assert_allclose(dphi[:, 0].numpy(), ref, rtol=0, atol=1e-10)


def test_bspline_nonuniform_knots_use_cox_de_boor_and_match_scipy():
    k, g = 3, 5
    basis = _bspline(in_features=2, grid_size=g, spline_order=k)
    assert basis.is_uniform()
    rng = np.random.default_rng(1)
    knots = np.sort(rng.uniform(-2, 2, size=(2, g + 2 * k + 1)), axis=1)
    basis.grid.copy_(torch.from_numpy(knots))  # in-place change must be detected
    assert not basis.is_uniform()
    for i in range(2):
        t = knots[i]
        x = np.linspace(t[k], t[g + k] - 1e-9, 77)
        xi = torch.zeros(len(x), 2, dtype=torch.float64)
        xi[:, i] = torch.from_numpy(x)
        phi, dphi = basis.forward_with_derivative(xi)
        np.testing.assert_allclose(phi[:, i].numpy(), BSpline.design_matrix(x, t, k).toarray(), atol=1e-12)
        ref_d = BSpline(t, np.eye(g + k), k).derivative()(x)
        np.testing.assert_allclose(dphi[:, i].numpy(), ref_d, atol=1e-9)


def test_cox_de_boor_handles_repeated_knots_without_nan():
    grid = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    x = torch.linspace(-0.5, 1.5, 41, dtype=torch.float64)[:, None]
    phi, dphi = bspline_cox_de_boor_with_derivative(x, grid, 3)
    assert torch.isfinite(phi).all() and torch.isfinite(dphi).all()
    ref = BSpline.design_matrix(np.linspace(0, 0.999, 11), grid[0].numpy(), 3).toarray()
    ours = bspline_cox_de_boor(torch.linspace(0, 0.999, 11, dtype=torch.float64)[:, None], grid, 3)
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, atol=1e-12)


def test_bspline_validation():
    with pytest.raises(ValueError, match="grid_size"):
        BSplineBasis(3, grid_size=0)
    with pytest.raises(ValueError, match="spline_order"):
        BSplineBasis(3, spline_order=0)
    with pytest.raises(ValueError, match="grid_range"):
        BSplineBasis(3, grid_range=(1.0, -1.0))


def test_half_precision_cast_keeps_float32_knots():
    basis = BSplineBasis(4).to(torch.bfloat16)
    assert basis.grid.dtype == torch.float32
    assert basis.is_uniform()


# ---------------------------------------------------------------------------------------------
# Other bases against numpy


@pytest.mark.parametrize("degree", [1, 6, 15], ids=["d1", "d6_recurrence", "d15_closed_form"])
def test_chebyshev_matches_numpy(degree):
    basis = get_basis("chebyshev")(3, degree=degree).double()
    x = np.random.default_rng(0).normal(0, 2, size=(50, 3))
    x[0] = [0.0, -40.0, 40.0]
    t = np.tanh(x)
    phi, dphi = basis.forward_with_derivative(torch.from_numpy(x))
    np.testing.assert_allclose(phi.numpy(), npcheb.chebvander(t, degree), atol=1e-12)
    ref_d = np.stack([npcheb.Chebyshev.basis(d).deriv()(t) * (1 - t**2) for d in range(degree + 1)], -1)
    np.testing.assert_allclose(dphi.numpy(), ref_d, atol=1e-10)


@pytest.mark.parametrize("degree", [5, 15])
def test_chebyshev_finite_gradient_at_saturation(degree):
    basis = get_basis("chebyshev")(1, degree=degree).double()
    x = torch.tensor([[-1e6], [-30.0], [0.0], [30.0], [1e6]], dtype=torch.float64, requires_grad=True)
    basis(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_chebyshev_closed_form_gradcheck_and_gradgradcheck():
    """Above the recurrence degree: autograd through atan2/cos, including x = 0 exactly."""
    basis = get_basis("chebyshev")(2, degree=12).double()
    x = torch.tensor([[0.0, 0.3], [-1.7, 4.0], [2.5, -0.01]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(basis, (x,))
    assert torch.autograd.gradgradcheck(basis, (x,))


def test_rbf_matches_numpy():
    basis = get_basis("rbf")(2, grid_size=6, grid_range=(-1.0, 2.0)).double()
    x = np.random.default_rng(0).uniform(-2, 3, size=(40, 2))
    c = np.linspace(-1, 2, 6)
    w = 3.0 / 5
    ref = np.exp(-(((x[..., None] - c) / w) ** 2))
    phi, dphi = basis.forward_with_derivative(torch.from_numpy(x))
    np.testing.assert_allclose(phi.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(dphi.numpy(), -2 * (x[..., None] - c) / w**2 * ref, atol=1e-12)


def test_fourier_matches_numpy():
    basis = get_basis("fourier")(2, num_frequencies=3, period=4.0).double()
    x = np.random.default_rng(0).normal(size=(20, 2))
    f = 2 * np.pi / 4.0 * np.arange(1, 4)
    ref = np.concatenate([np.cos(x[..., None] * f), np.sin(x[..., None] * f)], -1)
    np.testing.assert_allclose(basis(torch.from_numpy(x)).numpy(), ref, atol=1e-12)


def test_rational_matches_direct_numpy_per_group():
    in_f, groups, m, n = 6, 3, 5, 4
    basis = RationalBasis(in_f, num_groups=groups, numerator_degree=m, denominator_degree=n).double()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(groups, m + 1))
    b = rng.normal(size=(groups, n))
    with torch.no_grad():
        basis.numerator.copy_(torch.from_numpy(a))
        basis.denominator.copy_(torch.from_numpy(b))
    x = rng.normal(0, 3, size=(30, in_f))
    out = basis(torch.from_numpy(x)).detach()
    assert out.shape == (30, in_f, 1)
    for i in range(in_f):
        gi = i * groups // in_f
        p = np.polyval(a[gi][::-1], x[:, i])
        q = 1 + sum(abs(b[gi, j]) * np.abs(x[:, i]) ** (j + 1) for j in range(n))
        np.testing.assert_allclose(out[:, i, 0].numpy(), p / q, rtol=1e-12, atol=1e-12)


def test_rational_inits():
    x = torch.linspace(-3, 3, 301, dtype=torch.float64)[:, None]
    ident = RationalBasis(1, num_groups=1, init="identity").double()
    torch.testing.assert_close(ident(x)[..., 0], x)
    gelu = RationalBasis(1, num_groups=1, init="gelu").double().requires_grad_(False)
    torch.testing.assert_close(gelu(x)[..., 0], torch.nn.functional.gelu(x), atol=1e-2, rtol=0)
    silu = RationalBasis(1, num_groups=1, init="silu").double().requires_grad_(False)
    torch.testing.assert_close(silu(x)[..., 0], torch.nn.functional.silu(x), atol=1e-3, rtol=0)
    huge = torch.tensor([[-1e6], [1e6]], dtype=torch.float64)
    assert torch.isfinite(gelu(huge)).all()
    with pytest.raises(ValueError, match="init"):
        RationalBasis(2, init="tanh")


# ---------------------------------------------------------------------------------------------
# Every basis: shapes, finiteness, gradients


BASIS_KWARGS = {
    "bspline": {"grid_size": 4, "spline_order": 3},
    "rbf": {"grid_size": 5},
    "chebyshev": {"degree": 4},
    "fourier": {"num_frequencies": 3},
    "rational": {"num_groups": 2, "init": "gelu"},
}


def test_registry_lists_the_five_bases():
    assert set(BASIS_KWARGS) <= set(list_bases())


@pytest.mark.parametrize("name", sorted(BASIS_KWARGS))
def test_basis_shape_and_huge_inputs_finite(name):
    basis = get_basis(name)(4, **BASIS_KWARGS[name])
    x = torch.tensor([[-1e6, 1e6, 0.3, -0.7]])
    out = basis(x)
    assert out.shape == (1, 4, basis.num_features)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(BASIS_KWARGS))
def test_basis_gradcheck_and_gradgradcheck(name):
    basis = get_basis(name)(3, **BASIS_KWARGS[name]).double()
    x = (torch.rand(5, 3, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    params = [p for p in basis.parameters()]
    if params:  # break the |b|=0 kink of the identity-like init so the check is meaningful
        with torch.no_grad():
            basis.denominator.add_(0.1)
    fn = basis
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
    if params:
        names = [n for n, _ in basis.named_parameters()]

        def with_params(x, *ps):
            return torch.func.functional_call(basis, dict(zip(names, ps)), (x,))

        inputs = (x, *[p.detach().clone().requires_grad_() for p in params])
        assert torch.autograd.gradcheck(with_params, inputs)


@pytest.mark.parametrize("name", ["bspline", "rbf", "chebyshev", "fourier"])
def test_closed_form_derivative_matches_autograd(name):
    basis = get_basis(name)(3, **BASIS_KWARGS[name]).double()
    x = (torch.rand(64, 3, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    phi, dphi = basis.forward_with_derivative(x)
    auto = torch.autograd.grad(basis(x).sum(), x)[0]
    torch.testing.assert_close(dphi.sum(-1), auto)


# ---------------------------------------------------------------------------------------------
# Registry


def test_get_basis_accepts_name_class_partial():
    assert get_basis("bspline") is BSplineBasis
    assert get_basis(BSplineBasis) is BSplineBasis
    b = get_basis(functools.partial(BSplineBasis, grid_size=9))(2)
    assert b.num_features == 12
    with pytest.raises(ValueError, match="bspline"):
        get_basis("nope")
    with pytest.raises(TypeError):
        get_basis(torch.nn.Linear)


def test_register_custom_basis_used_by_layer():
    @register_basis("test_monomial")
    class Monomial(Basis):
        def __init__(self, in_features, *, degree=2):
            super().__init__(in_features)
            self.degree = degree
            self.num_features = degree

        def forward(self, x):
            return torch.stack([x**d for d in range(1, self.degree + 1)], -1)

    assert "test_monomial" in list_bases()
    layer = KANLinear(3, 2, basis="test_monomial", degree=3, base_activation=None, bias=False).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    w = layer.effective_spline_weight()
    ref = sum(w[:, :, d - 1] @ (x**d).T for d in range(1, 4)).T
    torch.testing.assert_close(layer(x), ref)
    with pytest.raises(ValueError, match="already registered"):
        register_basis("bspline")(Monomial)


def test_cardinal_closed_form_is_not_just_cox_de_boor_in_disguise():
    # Cubic closed form at the centre of a basis function: (2^3 - 4 * 1^3) / 6 = 4/6.
    basis = _bspline(in_features=1, grid_size=5, spline_order=3)
    centre = basis.grid[0, 2]  # B_0 is centred on knot t_2
    assert math.isclose(basis(centre.view(1, 1))[0, 0, 0].item(), 4 / 6, rel_tol=0, abs_tol=1e-15)
