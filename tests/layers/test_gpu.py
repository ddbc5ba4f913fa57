"""CUDA checks of the KAN layers (``gpu`` marker: skipped without a CUDA device; run by
``benchmarks/gpu_check.py``). References: the same layer's CPU fast path (float64 where
possible) and an einsum over edges."""

import pytest
import torch

from kanzoo.layers import KANConv2d, KANLinear, _triton

pytestmark = pytest.mark.gpu

BASES = [("bspline", {}), ("rbf", {}), ("chebyshev", {"degree": 5}), ("fourier", {"num_frequencies": 4})]


def _grads(layer, x, g):
    x = x.clone().requires_grad_()
    y = layer(x)
    grads = torch.autograd.grad(y, [x, *layer.parameters()], g)
    return y, grads


@pytest.mark.parametrize("basis,kwargs", BASES)
def test_cuda_linear_matches_cpu_float64(basis, kwargs):
    torch.manual_seed(0)
    cpu = KANLinear(96, 80, basis=basis, **kwargs)
    with torch.no_grad():
        for p in cpu.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    gpu = KANLinear(96, 80, basis=basis, **kwargs)
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda()
    x = torch.rand(300, 96) * 2.4 - 1.2
    g = torch.randn(300, 80)
    phi_fn, _, args = gpu.basis.functional()
    assert _triton.supported(x.cuda(), phi_fn, args, gpu.base_activation) == _triton.enabled()
    y_ref, g_ref = _grads(cpu.double(), x.double(), g.double())
    y, grads = _grads(gpu, x.cuda(), g.cuda())
    torch.testing.assert_close(y.double().cpu(), y_ref, atol=1e-4, rtol=1e-4)
    for a, b in zip(grads, g_ref):
        torch.testing.assert_close(a.double().cpu(), b, atol=2e-3, rtol=2e-3)


def test_cuda_linear_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    layer = KANLinear(128, 64).cuda()
    x = torch.randn(256, 128, device="cuda")
    ref = layer(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, atol=5e-2, rtol=5e-2)
    y.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in layer.parameters())


def test_cuda_conv_matches_cpu():
    torch.manual_seed(0)
    cpu = KANConv2d(6, 8, 3, padding=1)
    gpu = KANConv2d(6, 8, 3, padding=1)
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda()
    x = torch.randn(4, 6, 12, 12)
    g = torch.randn(4, 8, 12, 12)
    y_ref, g_ref = _grads(cpu.double(), x.double(), g.double())
    y, grads = _grads(gpu, x.cuda(), g.cuda())
    torch.testing.assert_close(y.double().cpu(), y_ref, atol=1e-4, rtol=1e-4)
    for a, b in zip(grads, g_ref):
        torch.testing.assert_close(a.double().cpu(), b, atol=2e-3, rtol=2e-3)
