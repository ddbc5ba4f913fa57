"""The fused rational (GR-KAN) path against float64 finite differences and the plain-autograd formula."""

import pytest
import torch

import kanzoo.layers as kl
from kanzoo.layers import KANLinear
from kanzoo.layers.bases import RationalBasis
from kanzoo.layers.bases.rational import RationalFunction, fused_rational, rational


def _group_index(in_features: int, groups: int) -> torch.Tensor:
    return torch.arange(in_features) * groups // in_features


def _coefficients(groups, m, n, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(groups, m + 1, generator=gen, dtype=dtype)
    b = torch.randn(groups, n, generator=gen, dtype=dtype)  # negative entries included
    return a, b


def _both_paths(x, a, b, gi, grad):
    """Outputs and (dx, da, db) of the fused Function and of autograd through ``rational``."""
    results = []
    for fused in (True, False):
        xs, as_, bs = (t.detach().clone().requires_grad_() for t in (x, a, b))
        out = fused_rational(xs, as_, bs, gi) if fused else rational(xs, as_[gi], bs[gi])
        grads = torch.autograd.grad(out, (xs, as_, bs), grad, allow_unused=True, materialize_grads=True)
        results.append((out.detach(), *grads))
    return results


def test_gradcheck_with_zero_inputs_and_zero_negative_coefficients():
    in_f, groups, m, n = 5, 2, 5, 4
    gi = _group_index(in_f, groups)
    a, b = _coefficients(groups, m, n, torch.float64)
    b[0, 1] = 0.0  # a zero denominator coefficient: subgradient sign(0) = 0
    b[1, 0] = -0.7
    a[1, 2] = 0.0
    x = torch.randn(6, in_f, dtype=torch.float64)
    x[0, :] = 0.0  # exact zeros in every channel (the |x| kink)
    x[3, 1] = 0.0
    inputs = tuple(t.clone().requires_grad_() for t in (x, a, b))
    assert torch.autograd.gradcheck(lambda x, a, b: RationalFunction.apply(x, a, b, gi), inputs)


def test_gradgradcheck_double_backward():
    in_f, groups = 4, 3
    gi = _group_index(in_f, groups)
    a, b = _coefficients(groups, 3, 2, torch.float64, seed=1)
    x = torch.randn(5, in_f, dtype=torch.float64)
    inputs = tuple(t.clone().requires_grad_() for t in (x, a, b))
    assert torch.autograd.gradgradcheck(lambda x, a, b: fused_rational(x, a, b, gi), inputs)


def test_subgradient_at_zero_is_sign_zero_convention():
    """At x = 0 the |x| terms contribute nothing: dR/dx = a_1 / 1; and dL/db_j = 0 where b_j = 0."""
    a = torch.tensor([[0.3, -1.7, 0.4]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[2.5, 0.0]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[0.0], [1.5]], dtype=torch.float64, requires_grad=True)
    out = fused_rational(x, a, b)
    dx, _, db = torch.autograd.grad(out.sum(), (x, a, b))
    assert dx[0, 0].item() == -1.7
    assert db[0, 1].item() == 0.0
    # Closed form at x = 1.5: R = P / Q, dR/db_1 = -P t / Q^2 (b_1 > 0).
    p, q = 0.3 - 1.7 * 1.5 + 0.4 * 1.5**2, 1 + 2.5 * 1.5
    assert db[0, 0].item() == pytest.approx(-p * 1.5 / q**2, rel=1e-14)


SHAPES = [(12, 4, 5, 4), (7, 3, 5, 4), (5, 5, 3, 0), (6, 1, 1, 1)]  # (in, groups, m, n)


@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"]
)
@pytest.mark.parametrize(("in_f", "groups", "m", "n"), SHAPES)
def test_matches_plain_autograd_formula(dtype, tol, in_f, groups, m, n):
    gi = _group_index(in_f, groups)
    a, b = _coefficients(groups, m, n, dtype, seed=in_f)
    if n:
        b[0, 0] = 0.0
    x = torch.randn(3, 9, in_f, dtype=dtype) * 2
    x[0, 0] = 0.0
    grad = torch.randn(3, 9, in_f, dtype=dtype)
    (fo, fdx, fda, fdb), (ro, rdx, rda, rdb) = _both_paths(x, a, b, gi, grad)
    assert fo.shape == x.shape and fo.dtype == dtype
    for ours, ref in [(fo, ro), (fdx, rdx), (fda, rda), (fdb, rdb)]:
        assert ours.shape == ref.shape
        scale = ref.abs().amax().clamp_min(1.0) if ref.numel() else 1.0  # grads: sums over 27 rows
        torch.testing.assert_close(ours, ref, rtol=tol, atol=tol * scale)


def test_groups_not_dividing_in_features_sum_over_their_channels():
    in_f, groups = 7, 3  # groups of 3, 2, 2 channels... as assigned by i * groups // in_f
    gi = _group_index(in_f, groups)
    assert torch.bincount(gi).tolist() == [3, 2, 2]
    a, b = _coefficients(groups, 4, 3, torch.float64, seed=3)
    x = torch.randn(10, in_f, dtype=torch.float64)
    a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
    da, db = torch.autograd.grad(fused_rational(x, a_, b_, gi).sum(), (a_, b_))
    # Per-channel coefficients (no groups), then summed by hand over each group's channels.
    ac, bc = a[gi].clone().requires_grad_(), b[gi].clone().requires_grad_()
    dac, dbc = torch.autograd.grad(fused_rational(x, ac, bc).sum(), (ac, bc))
    for g in range(groups):
        torch.testing.assert_close(da[g], dac[gi == g].sum(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(db[g], dbc[gi == g].sum(0), rtol=1e-12, atol=1e-12)


def test_empty_batch():
    gi = _group_index(6, 2)
    a, b = _coefficients(2, 5, 4, torch.float32)
    x = torch.zeros(0, 6, requires_grad=True)
    a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
    out = fused_rational(x, a_, b_, gi)
    assert out.shape == (0, 6)
    dx, da, db = torch.autograd.grad(out.sum(), (x, a_, b_))
    assert dx.shape == (0, 6)
    assert torch.equal(da, torch.zeros_like(a)) and torch.equal(db, torch.zeros_like(b))


def test_saves_only_inputs_and_coefficients():
    gi = _group_index(16, 4)
    a, b = (t.requires_grad_() for t in _coefficients(4, 5, 4, torch.float32))
    x = torch.randn(64, 16, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        fused_rational(x, a, b, gi)
    assert sorted(tuple(t.shape) for t in saved) == sorted([(64, 16), (4, 6), (4, 4), (16,)])
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        rational(x, a[gi], b[gi])
    assert sum(t.shape == (64, 16) for t in saved) > 5  # the plain formula keeps its intermediates


def test_basis_fused_and_plain_paths_agree_and_double_stays_double():
    basis = RationalBasis(10, num_groups=4, init="gelu").double()
    with torch.no_grad():
        basis.denominator.mul_(torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64).view(4, 1))
    x = torch.randn(8, 10, dtype=torch.float64, requires_grad=True)
    grads = []
    for fused in (True, False):
        basis.fused = fused
        out = basis(x)
        assert out.dtype == torch.float64 and out.shape == (8, 10, 1)
        grads.append((out, *torch.autograd.grad(out.square().sum(), [x, *basis.parameters()])))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_autocast_bfloat16_computes_the_basis_in_float32():
    torch.manual_seed(0)
    layer = KANLinear(12, 5, basis="rational", base_activation=None, num_groups=3, init="gelu")
    x = torch.randn(20, 12)
    ref = layer(x)
    ref_grads = torch.autograd.grad(ref.sum(), [layer.basis.numerator, layer.basis.denominator])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        assert out.dtype == torch.bfloat16
        feats = layer.basis(x.bfloat16())
        assert feats.dtype == torch.float32  # the basis runs in float32 under autocast
        torch.testing.assert_close(feats[..., 0], rational(x.bfloat16().float(), *_expanded(layer.basis)))
    grads = torch.autograd.grad(out.float().sum(), [layer.basis.numerator, layer.basis.denominator])
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=3e-2)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=5e-2, atol=5e-2 * r.abs().max().item())


def _expanded(basis):
    return basis.numerator[basis.group_index], basis.denominator[basis.group_index]


def test_compiled_matches_eager():
    """One compiled run of the fused forward and backward kernels (compile is opt-in in tests)."""
    from kanzoo.layers import _fused
    from kanzoo.layers.bases import rational as rational_module

    layer = KANLinear(16, 8, basis="rational", base_activation=None, num_groups=4, init="silu")
    with torch.no_grad():
        layer.basis.denominator.add_(0.2)
    x = torch.randn(37, 16, requires_grad=True)
    g = torch.randn(37, 8)
    params = [x, layer.basis.numerator, layer.basis.denominator, layer.spline_weight]
    kl.set_compile(False)
    eager_out = layer(x)
    eager = torch.autograd.grad(eager_out, params, g)
    kl.set_compile(True)
    try:
        compiled_out = layer(x)
        compiled = torch.autograd.grad(compiled_out, params, g)
    finally:
        kl.set_compile(False)
    used = {k[0] for k, v in _fused._compiled.items() if v is not None}
    assert {rational_module._rational_forward_kernel, rational_module._rational_backward_kernel} <= used
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, b.abs().max().item()))


def test_bad_inputs_raise_clear_errors():
    gi = _group_index(4, 2)
    a, b = _coefficients(2, 3, 2, torch.float32)
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="group_index"):
        fused_rational(x, a, b, gi[:3])
    with pytest.raises(ValueError, match="same number of rows"):
        fused_rational(x, a, b[:1], gi)
    with pytest.raises(ValueError, match="one per input channel"):
        fused_rational(x, a, b)
    with pytest.raises(ValueError, match="dtype"):
        fused_rational(x.double(), a, b, gi)
    with pytest.raises(ValueError, match="scalar"):
        fused_rational(torch.tensor(1.0), a, b, gi)


def test_meta_device_forward_runs_eagerly_with_compile_on():
    """Shape inference on the meta device works with compile on and leaves the kernel usable."""
    from kanzoo.layers import _fused
    from kanzoo.layers.bases import rational as rational_module

    with torch.device("meta"):
        basis = RationalBasis(6, num_groups=2)
    kl.set_compile(True)
    try:
        out = basis(torch.empty(4, 6, device="meta"))
    finally:
        kl.set_compile(False)
    assert out.is_meta and out.shape == (4, 6, 1)
    prefix = (rational_module._rational_forward_kernel, None, None)
    entries = [v for k, v in _fused._compiled.items() if k[:3] == prefix]
    assert None not in entries  # not marked as failed (for any shape)
