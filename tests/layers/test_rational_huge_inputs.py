"""GR-KAN (rational basis) values and gradients at huge inputs, against a float64 reference.

The reference is the textbook formula ``P(x) / (1 + sum_j |b_j| |x|^j)`` evaluated directly in
float64 (where |x| <= 1e30 and degree <= 5 stay far inside the range) and differentiated by
autograd. The float32/bfloat16 computations must be finite and accurate wherever the true value
is representable in float32 (bfloat16 shares its exponent range); before the fix ``x^5`` overflowed
from |x| = 1e8 and the gradients became inf/NaN.
"""

import pytest
import torch

from kanzoo.layers import get_linear_layer
from kanzoo.layers.bases.rational import fit_rational, fused_rational, rational

F32_MAX = torch.finfo(torch.float32).max
MAGNITUDES = [1e4, 1e8, 1e16, 1e30]


def _reference(x, a, b):
    """Direct float64 formula; ``x (N, C)``, per-channel rows ``a (C, m + 1)``, ``b (C, n)``."""
    p = sum(a[:, k] * x**k for k in range(a.shape[1]))
    q = 1 + sum(b[:, j - 1].abs() * x.abs() ** j for j in range(1, b.shape[1] + 1))
    return p / q


def _coefficients(kind):
    if kind == "kat_gelu":  # the KAT initialisation of fc2 (degree 5 / 4 fit of GELU)
        num, den = fit_rational("gelu", 5, 4)
        return torch.tensor([num] * 3, dtype=torch.float64), torch.tensor([den] * 3, dtype=torch.float64)
    if kind == "identity":  # the KAT initialisation of fc1: b = 0, R(x) = x
        a = torch.zeros(3, 6, dtype=torch.float64)
        a[:, 1] = 1.0
        return a, torch.zeros(3, 4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 6, generator=gen, dtype=torch.float64) * 0.3
    b = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    b[1, 3] = 0.0  # channel 1 has denominator degree 3, channel 2 degree 1
    b[2, 1:] = 0.0
    return a, b


def _check(got, ref, value_ok, *, rtol=1e-5):
    """Entries with a representable reference (in channels whose value is representable) are
    finite and within ``rtol`` (plus an absolute floor for float32 underflow)."""
    ref = ref.double()
    ok = (ref.abs() < F32_MAX) & value_ok
    got = got.double()
    assert torch.isfinite(got[ok]).all(), (got[ok], ref[ok])
    torch.testing.assert_close(got[ok], ref[ok], rtol=rtol, atol=1e-35)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("kind", ["kat_gelu", "identity", "mixed_degrees"])
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["pos", "neg"])
def test_values_and_gradients_match_float64_at_huge_inputs(dtype, kind, sign):
    a64, b64 = (t.to(dtype).double() for t in _coefficients(kind))  # the values dtype can hold
    for v in MAGNITUDES:
        x64 = (torch.tensor([[1.0], [0.7], [1.3]], dtype=torch.float64) * sign * v).expand(3, 3)
        x64 = x64.to(dtype).double().requires_grad_()
        a, b = a64.clone().requires_grad_(), b64.clone().requires_grad_()
        ref = _reference(x64, a, b)
        refs = (ref, *torch.autograd.grad(ref.sum(), (x64, a, b)))
        value_ok = ref.abs() < F32_MAX  # (N, C)
        coef_ok = value_ok.all(0).unsqueeze(1)  # channel rows of the coefficient gradients
        every_grad_representable = all(bool((r.abs() < F32_MAX).all()) for r in refs)
        for fused in (True, False):
            # bfloat16 layers compute the basis in float32 (RationalBasis.compute_dtype).
            xs, an, bn = (t.detach().float().requires_grad_() for t in (x64, a, b))
            out = fused_rational(xs, an, bn) if fused else rational(xs, an, bn)
            got = (out, *torch.autograd.grad(out.sum(), (xs, an, bn)))
            if not fused and not every_grad_representable:
                # Plain autograd forms every partial derivative as an intermediate: only the
                # value is guaranteed once one of them overflows.
                _check(got[0], refs[0], value_ok)
                continue
            for g, r, ok in zip(got, refs, (value_ok, value_ok, coef_ok, coef_ok), strict=True):
                _check(g, r, ok)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_gr_kan_layer_parameter_gradients_stay_finite(dtype):
    """The reported failure: a GR-KAN layer's output is finite at |x| >= 1e8, its gradients not."""
    torch.manual_seed(0)
    layer = get_linear_layer("kan_rational", init="gelu", num_groups=2)(4, 3).to(dtype)
    ref_layer = get_linear_layer("kan_rational", init="gelu", num_groups=2)(4, 3).double()
    ref_layer.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    for v in MAGNITUDES:
        x = (torch.tensor([[1.0, -0.5, 2.0, -3.0], [0.3, 1.0, -1.0, 0.8]]) * v).to(dtype)
        cotangent = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])  # (y * c).sum() stays finite
        outs = {}
        for name, lay in (("low", layer), ("ref", ref_layer)):
            lay.zero_grad()
            y = lay(x.to(lay.spline_weight.dtype))
            (y * cotangent.to(y.dtype)).sum().backward()
            outs[name] = (y.detach(), {n: p.grad.detach().clone() for n, p in lay.named_parameters()})
        y_low, g_low = outs["low"]
        y_ref, g_ref = outs["ref"]
        assert torch.isfinite(y_low).all()
        # Weights and matmul run in the layer's dtype: errors relative to the largest entry.
        tol = 3e-2 if dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(y_low.double(), y_ref, rtol=0, atol=tol * y_ref.abs().max())
        for name, grad in g_low.items():
            # At 1e30 dL/db_4 ~ R / |b_4| ~ 1e40 is itself beyond float32: only representable
            # gradients can be asked for.
            ok = g_ref[name].abs() < F32_MAX
            assert ok.float().mean() > 0.7 and torch.isfinite(grad[ok]).all(), (v, name)
            scale = g_ref[name][ok].abs().max()
            torch.testing.assert_close(grad.double()[ok], g_ref[name][ok], rtol=0, atol=tol * scale)


@pytest.mark.parametrize("threshold", [1.0, 4.0, None], ids=["all_far", "mixed", "default"])
def test_far_branch_gradcheck_and_gradgradcheck_in_float64(monkeypatch, threshold):
    """The scaled formulas (and their double backward) against finite differences. float64's own
    threshold (2**198) is never reached at finite-difference-friendly inputs, so the threshold is
    lowered to put every / some / no entry on the far branch."""
    from kanzoo.layers.bases import rational as rational_module

    if threshold is not None:
        monkeypatch.setattr(rational_module, "far_threshold", lambda *args: threshold)
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(3, 5, generator=gen, dtype=torch.float64) * 0.5
    b = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    b[1, 2] = 0.0  # a channel of lower denominator degree
    x = torch.tensor([[0.4, -2.0, 7.0], [-30.0, 0.9, 1.5], [150.0, -4.0, -0.2]], dtype=torch.float64)
    inputs = tuple(t.clone().requires_grad_() for t in (x, a, b))
    assert torch.autograd.gradcheck(fused_rational, inputs)
    # Second order away from the |b_j| kink at b_j = 0 (where db_j jumps with sign(b_j)).
    b[1, 2] = 0.3
    inputs = tuple(t.clone().requires_grad_() for t in (x, a, b))
    assert torch.autograd.gradgradcheck(fused_rational, inputs)


@pytest.mark.parametrize("kind", ["kat_gelu", "mixed_degrees"])
def test_compacted_far_entries_match_the_both_branch_kernels(monkeypatch, kind):
    """On the CPU the fused kernels run the direct formulas and patch the entries beyond the
    threshold afterwards; elsewhere both formulas run on every entry. Same values, same gradients."""
    from kanzoo.layers.bases import rational as rational_module

    a, b = (t.float() for t in _coefficients(kind))
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 3, generator=gen) * 3
    x[::7] *= 1e6  # some entries beyond float32's threshold (2**19), in every channel
    x[5, 1] = -3e8
    g = torch.randn(64, 3, generator=gen)
    results = []
    for compact in (True, False):
        policy = lambda _x, c=compact: c and not torch.is_grad_enabled()  # noqa: E731
        monkeypatch.setattr(rational_module, "_compact_far", policy)
        xs, an, bn = (t.clone().requires_grad_() for t in (x, a, b))
        out = fused_rational(xs, an, bn)
        results.append((out, *torch.autograd.grad(out, (xs, an, bn), g)))
    assert (x.abs() > rational_module.far_threshold(torch.float32, 6, 4)).sum() >= 10
    for got, ref in zip(*results, strict=True):
        assert torch.isfinite(ref).all()
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)  # summation order differs


def test_far_entries_of_a_non_contiguous_input():
    """A permuted input (as a channels-last map reaches the basis) with entries beyond the
    threshold: same values and gradients as the contiguous copy."""
    a, b = (t.float() for t in _coefficients("kat_gelu"))
    base = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(4)) * 3
    base[1, 0, 0], base[2, 4, 6] = 1e7, -3e6
    results = []
    for x in (base.permute(1, 2, 0), base.permute(1, 2, 0).contiguous()):
        xs, an, bn = (t.clone().requires_grad_() for t in (x, a, b))
        out = fused_rational(xs, an, bn)
        results.append((out, *torch.autograd.grad(out.sum(), (xs, an, bn))))
    assert not base.permute(1, 2, 0).is_contiguous()
    for got, ref in zip(*results, strict=True):
        assert torch.isfinite(ref).all()
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)
