"""Cases for the Triton KANLinear kernels under Triton's interpreter, run by
``test_triton_interpret.py`` in a subprocess started with ``TRITON_INTERPRET=1``.

Triton chooses the interpreter when ``triton.language`` is first imported and when ``triton.jit``
decorates a function, so the variable must be set before anything imports triton (in the
default test process torch's inductor may already have). References: an einsum over edges of
the basis module's values, and autograd of it.
"""

import os

import pytest
import torch
import torch.nn.functional as F

from kanzoo.layers import KANLinear

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/layers/test_triton_interpret.py"


@pytest.fixture(scope="module")
def interp():
    from kanzoo.layers import _triton

    assert _triton.AVAILABLE
    return _triton


def _randomize(layer, scale=0.4):
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return layer


def _reference(layer, x):
    phi = layer.basis(x)
    y = torch.einsum("nif,jif->nj", phi, layer.effective_spline_weight()) + layer.bias
    if layer.base_activation is not None:
        act = {"silu": F.silu, "gelu": F.gelu, "identity": lambda v: v}[layer.base_activation]
        y = y + act(x) @ layer.base_weight.T
    return y


CASES = [  # small basis sizes keep the interpreter fast; orders 3, 2 and 1 of the B-spline
    ("bspline", "silu", {"grid_size": 3}),
    ("bspline", None, {"grid_size": 2, "spline_order": 2}),
    ("bspline", "identity", {"grid_size": 3, "spline_order": 1}),
    ("rbf", "gelu", {"grid_size": 4}),
    ("chebyshev", "identity", {"degree": 3}),
    ("fourier", "silu", {"num_frequencies": 2}),
]


@pytest.mark.parametrize("basis,act,kwargs", CASES)
def test_interpreted_kernels_match_torch_reference(interp, basis, act, kwargs):
    torch.manual_seed(0)
    layer = _randomize(KANLinear(20, 18, basis=basis, base_activation=act, **kwargs), 0.3)
    x = (torch.rand(35, 20) * 3 - 1.5).requires_grad_()  # 35, 20, 18: partial tiles everywhere
    phi_fn, both_fn, args = layer.basis.functional()
    assert interp.basis_kind(phi_fn, args) is not None
    params = (layer.base_weight, layer.spline_weight, layer.spline_scaler, layer.bias)
    y = interp.KANLinearTriton.apply(x, *params, torch.float32, act, phi_fn, both_fn, *args)
    ref = _reference(layer, x)
    torch.testing.assert_close(y, ref, atol=2e-5, rtol=2e-5)
    g = torch.randn_like(y)
    wrt = [x, *(p for p in layer.parameters())]
    for a, b in zip(torch.autograd.grad(y, wrt, g), torch.autograd.grad(ref, wrt, g)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4)


def test_interpreted_half_precision_matmul_accumulates_in_fp32(interp):
    # float16 stands in for bfloat16 here: the same kernel code (features cast to the weight
    # dtype, float32 accumulation), but Triton 3.8's interpreter computes bf16 tl.dot wrongly
    # (numpy has no bfloat16); bf16 itself is covered by the gpu-marked test on CUDA.
    torch.manual_seed(0)
    layer = _randomize(KANLinear(16, 16, grid_size=4), 0.3)
    x = (torch.rand(20, 16) * 2 - 1).requires_grad_()
    phi_fn, both_fn, args = layer.basis.functional()
    params = (layer.base_weight, layer.spline_weight, layer.spline_scaler, layer.bias)
    y = interp.KANLinearTriton.apply(x, *params, torch.float16, "silu", phi_fn, both_fn, *args)
    assert y.dtype == torch.float16
    ref = _reference(layer, x)
    torch.testing.assert_close(y.float(), ref, atol=1e-2, rtol=1e-2)
    g = torch.randn_like(ref)
    fast = torch.autograd.grad(y.float(), [x, layer.spline_weight], g)
    slow = torch.autograd.grad(ref, [x, layer.spline_weight], g)
    assert fast[1].dtype == torch.float32
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)


def test_dispatch_only_on_cuda_and_off_switch(interp):
    layer = KANLinear(4, 3)
    phi_fn, _, args = layer.basis.functional()
    x = torch.randn(2, 4)
    assert not interp.supported(x, phi_fn, args, "silu")  # CPU tensors take the torch path
    cox = KANLinear(4, 3)
    with torch.no_grad():
        cox.basis.grid.copy_(torch.sort(torch.rand_like(cox.basis.grid) * 2 - 1, dim=1).values)
    phi_c, _, args_c = cox.basis.functional()
    assert interp.basis_kind(phi_c, args_c) is None  # non-uniform knots: unsupported, torch path
    interp.set_enabled(False)
    try:
        assert not interp.enabled()
    finally:
        interp.set_enabled(True)
