"""Triton kernels for ``KANLinear`` on CUDA: the basis is evaluated inside the matmul.

Three kernels, none of which writes the ``(N, in * m)`` feature map to memory:

* forward: ``y = sum_q feat_q(x) @ Wt[q] + b`` (``q`` = base activation, then the ``n`` basis
  functions), each feature tile computed from the ``x`` tile in registers;
* input gradient: ``dx = sum_q (dy @ Wt[q]^T) * feat_q'(x)``;
* weight gradient: ``dWt[q] = feat_q(x)^T @ dy`` (one program column per feature ``q``).

``Wt`` is the fused weight in a kernel-friendly layout ``(m, in, out)`` (built once per call,
in the matmul dtype); its gradient is split back into ``base_weight``/``spline_weight``/
``spline_scaler`` gradients by torch ops. Supported bases: uniform B-splines of order 1-3 (the
closed form), RBF (with the same subnormal flush as the torch path), Chebyshev (recurrence on
``tanh``) and Fourier; activations silu, gelu, identity or none. Anything else (non-uniform
knots, other orders, bases with trainable parameters) uses the torch path.

Dispatch: :func:`supported` is true only for CUDA tensors outside ``torch.compile`` (an
enclosing compile generates its own kernels) with Triton importable and the path enabled
(``KANZOO_TRITON=0`` or ``kanzoo.layers._fused.set_triton(False)`` turns it off). A backward
with grad mode on (``create_graph``) differentiates the plain formula, as on CPU.

Testing without a GPU: with ``TRITON_INTERPRET=1`` set when this module is *imported* (Triton
reads it when ``triton.jit`` decorates), the kernels run in Triton's interpreter on CPU
tensors; ``tests/layers/test_triton_interpret.py`` loads a private interpreted copy of this
module that way and checks it against the torch path. Nothing here has run on a GPU yet.
Block sizes are plain defaults, not tuned on any GPU.
"""

from __future__ import annotations

import os

import torch

try:  # Triton is optional: CPU-only installs may not have it.
    import triton
    import triton.language as tl

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised on installs without triton
    triton = tl = None
    AVAILABLE = False

__all__ = ["AVAILABLE", "KANLinearTriton", "basis_kind", "enabled", "set_enabled", "supported"]

_FALSE = {"0", "false", "no", "off", ""}
_state = {"enabled": os.environ.get("KANZOO_TRITON", "1").strip().lower() not in _FALSE}

# Basis codes (constexpr in the kernels).
BSPLINE, RBF, CHEBYSHEV, FOURIER = 0, 1, 2, 3
_ACTS = {None: 0, "silu": 1, "gelu": 2, "identity": 3}


def set_enabled(flag: bool) -> None:
    """Turn the Triton path on or off (process-wide)."""
    _state["enabled"] = bool(flag)


def enabled() -> bool:
    return AVAILABLE and _state["enabled"]


def basis_kind(phi_fn, args: tuple) -> tuple[int, tuple] | None:
    """``(code, kernel params)`` for a basis' functional form, or ``None`` when unsupported."""
    from kanzoo.layers.bases import bspline, chebyshev, fourier, rbf

    if phi_fn is bspline.bspline_uniform:
        t0, inv_h, k, n = args
        return (BSPLINE, (t0, inv_h, int(k), int(n))) if int(k) in (1, 2, 3) else None
    if phi_fn is rbf.rbf:
        centers, inv_width = args
        return RBF, (centers, inv_width.reshape(1), 0, centers.shape[-1])
    if phi_fn is chebyshev.chebyshev:
        (degree,) = args
        return CHEBYSHEV, (None, None, 0, int(degree) + 1)
    if phi_fn is fourier.fourier:
        (freqs,) = args
        return FOURIER, (freqs, None, 0, 2 * freqs.shape[0])
    return None


def supported(x: torch.Tensor, phi_fn, args: tuple, act: str | None) -> bool:
    """Whether the Triton path applies to this call (CUDA tensor, supported basis, enabled)."""
    return (
        x.is_cuda
        and enabled()
        and act in _ACTS
        and not torch.compiler.is_compiling()
        and basis_kind(phi_fn, args) is not None
    )


if AVAILABLE:

    @triton.jit
    def _act(x, ACT: tl.constexpr):
        """Base activation and its derivative (ACT: 1 silu, 2 gelu, 3 identity)."""
        if ACT == 1:
            s = tl.sigmoid(x)
            return x * s, s * (1.0 + x * (1.0 - s))
        elif ACT == 2:
            cdf = 0.5 * (1.0 + tl.erf(x * 0.7071067811865476))
            return x * cdf, cdf + x * tl.exp(-0.5 * x * x) * 0.3989422804014327
        else:
            return x, x * 0.0 + 1.0

    @triton.jit
    def _basis(x, f, P0, P1, offs_k, mask_k, BASIS: tl.constexpr, ORDER: tl.constexpr, NB: tl.constexpr):
        """Value and x-derivative of basis function ``f`` at ``x`` (a ``(BM, BK)`` tile; inputs
        ``offs_k``). ``f`` may be a runtime index."""
        if BASIS == 0:  # uniform B-spline, closed form of the centred cardinal spline
            t0 = tl.load(P0 + offs_k, mask=mask_k, other=0.0)[None, :]
            inv_h = tl.load(P1 + offs_k, mask=mask_k, other=1.0)[None, :]
            w = (x - t0) * inv_h - f - (ORDER + 1) * 0.5
            v = tl.abs(w)
            sgn = tl.where(w > 0, 1.0, tl.where(w < 0, -1.0, 0.0))
            if ORDER == 3:
                r2 = tl.maximum(2.0 - v, 0.0)
                r1 = tl.maximum(1.0 - v, 0.0)
                val = (r2 * r2 * r2 - 4.0 * r1 * r1 * r1) * (1.0 / 6.0)
                dv = -(r2 * r2 - 4.0 * r1 * r1) * 0.5
            elif ORDER == 2:
                r2 = tl.maximum(1.5 - v, 0.0)
                r1 = tl.maximum(0.5 - v, 0.0)
                val = 0.5 * r2 * r2 - 1.5 * r1 * r1
                dv = -(r2 - 3.0 * r1)
            else:
                r1 = tl.maximum(1.0 - v, 0.0)
                val = r1
                dv = tl.where(r1 > 0, -1.0, 0.0)
            return val, dv * sgn * inv_h
        elif BASIS == 1:  # Gaussian RBF, flushed to 0 below ~1e-30 (as in bases/rbf.py)
            c = tl.load(P0 + offs_k * NB + f, mask=mask_k, other=0.0)[None, :]
            inv_w = tl.load(P1)
            z = (x - c) * inv_w
            z2 = z * z
            phi = tl.where(z2 < 69.0, tl.exp(-tl.minimum(z2, 69.0)), 0.0)
            return phi, phi * z * (-2.0 * inv_w)
        elif BASIS == 2:  # Chebyshev T_f(tanh x), derivative f U_{f-1}(t) (1 - t^2)
            e = tl.exp(-2.0 * tl.abs(x))
            t = tl.where(x >= 0, 1.0, -1.0) * (1.0 - e) / (1.0 + e)
            t_prev = x * 0.0 + 1.0
            t_cur = t
            u_prev = x * 0.0 + 1.0  # U_0
            u_cur = 2.0 * t  # U_1
            val = tl.where(f == 0, t_prev, t_cur)
            du = tl.where(f == 0, x * 0.0, u_prev)  # U_{f-1}
            for j in tl.static_range(2, NB):
                t_next = 2.0 * t * t_cur - t_prev
                du = tl.where(f == j, u_cur, du)
                u_next = 2.0 * t * u_cur - u_prev
                val = tl.where(f == j, t_next, val)
                t_prev = t_cur
                t_cur = t_next
                u_prev = u_cur
                u_cur = u_next
            return val, f * du * (1.0 - t * t)
        else:  # Fourier: cos(w_f x) for f < K, sin(w_{f-K} x) after
            K = NB // 2
            is_cos = f < K
            w = tl.load(P0 + tl.where(is_cos, f, f - K))
            c = tl.cos(w * x)
            s = tl.sin(w * x)
            return tl.where(is_cos, c, s), tl.where(is_cos, -w * s, w * c)

    @triton.jit
    def _feature(x, q, P0, P1, offs_k, mask_k, ACT: tl.constexpr, BASIS: tl.constexpr, ORDER: tl.constexpr,
                 NB: tl.constexpr):  # fmt: skip
        """Feature ``q`` of the layer (``q = 0`` the base activation when ACT, then the basis)."""
        if ACT != 0:
            if q == 0:
                val, dval = _act(x, ACT)
            else:
                val, dval = _basis(x, q - 1, P0, P1, offs_k, mask_k, BASIS, ORDER, NB)
        else:
            val, dval = _basis(x, q, P0, P1, offs_k, mask_k, BASIS, ORDER, NB)
        return val, dval

    @triton.jit
    def _fwd_kernel(X, W, Bias, Y, P0, P1, M, IN, OUT, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                    BASIS: tl.constexpr, ORDER: tl.constexpr, NB: tl.constexpr, NQ: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):  # fmt: skip
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        offs_m = pid_m * BM + tl.arange(0, BM)
        offs_n = pid_n * BN + tl.arange(0, BN)
        mask_m = offs_m < M
        mask_n = offs_n < OUT
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, IN, BK):
            offs_k = k0 + tl.arange(0, BK)
            mask_k = offs_k < IN
            x = tl.load(
                X + offs_m[:, None] * IN + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0
            )
            x = x.to(tl.float32)
            for q in tl.static_range(NQ):
                feat, _ = _feature(x, q, P0, P1, offs_k, mask_k, ACT, BASIS, ORDER, NB)
                feat = tl.where(mask_k[None, :], feat, 0.0)
                w = tl.load(W + (q * IN + offs_k[:, None]) * OUT + offs_n[None, :],
                            mask=mask_k[:, None] & mask_n[None, :], other=0.0)  # fmt: skip
                acc += tl.dot(feat.to(w.dtype), w)
        if HAS_BIAS:
            acc += tl.load(Bias + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        tl.store(Y + offs_m[:, None] * OUT + offs_n[None, :], acc.to(Y.dtype.element_ty),
                 mask=mask_m[:, None] & mask_n[None, :])  # fmt: skip

    @triton.jit
    def _dx_kernel(X, W, GY, GX, P0, P1, M, IN, OUT, ACT: tl.constexpr, BASIS: tl.constexpr,
                   ORDER: tl.constexpr, NB: tl.constexpr, NQ: tl.constexpr,
                   BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):  # fmt: skip
        pid_m = tl.program_id(0)
        pid_k = tl.program_id(1)
        offs_m = pid_m * BM + tl.arange(0, BM)
        offs_k = pid_k * BK + tl.arange(0, BK)
        mask_m = offs_m < M
        mask_k = offs_k < IN
        x = tl.load(
            X + offs_m[:, None] * IN + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0
        )
        x = x.to(tl.float32)
        acc = tl.zeros((BM, BK), dtype=tl.float32)
        for q in tl.static_range(NQ):
            g = tl.zeros((BM, BK), dtype=tl.float32)
            for n0 in range(0, OUT, BN):
                offs_n = n0 + tl.arange(0, BN)
                mask_n = offs_n < OUT
                gy = tl.load(GY + offs_m[:, None] * OUT + offs_n[None, :],
                             mask=mask_m[:, None] & mask_n[None, :], other=0.0)  # fmt: skip
                w = tl.load(W + (q * IN + offs_k[:, None]) * OUT + offs_n[None, :],
                            mask=mask_k[:, None] & mask_n[None, :], other=0.0)  # fmt: skip
                g += tl.dot(gy.to(w.dtype), tl.trans(w))
            _, dfeat = _feature(x, q, P0, P1, offs_k, mask_k, ACT, BASIS, ORDER, NB)
            acc += g * dfeat
        tl.store(GX + offs_m[:, None] * IN + offs_k[None, :], acc.to(GX.dtype.element_ty),
                 mask=mask_m[:, None] & mask_k[None, :])  # fmt: skip

    @triton.jit
    def _dw_kernel(X, GY, GW, P0, P1, M, IN, OUT, ACT: tl.constexpr, BASIS: tl.constexpr,
                   ORDER: tl.constexpr, NB: tl.constexpr, DTYPE: tl.constexpr,
                   BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):  # fmt: skip
        pid_k = tl.program_id(0)
        pid_n = tl.program_id(1)
        q = tl.program_id(2)
        offs_k = pid_k * BK + tl.arange(0, BK)
        offs_n = pid_n * BN + tl.arange(0, BN)
        mask_k = offs_k < IN
        mask_n = offs_n < OUT
        acc = tl.zeros((BK, BN), dtype=tl.float32)
        for m0 in range(0, M, BM):
            offs_m = m0 + tl.arange(0, BM)
            mask_m = offs_m < M
            x = tl.load(X + offs_m[:, None] * IN + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :],
                        other=0.0).to(tl.float32)  # fmt: skip
            feat, _ = _feature(x, q, P0, P1, offs_k, mask_k, ACT, BASIS, ORDER, NB)
            feat = tl.where(mask_m[:, None] & mask_k[None, :], feat, 0.0)
            gy = tl.load(GY + offs_m[:, None] * OUT + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :],
                         other=0.0)  # fmt: skip
            acc += tl.dot(tl.trans(feat.to(DTYPE)), gy.to(DTYPE))
        tl.store(GW + (q * IN + offs_k[:, None]) * OUT + offs_n[None, :], acc,
                 mask=mask_k[:, None] & mask_n[None, :])  # fmt: skip


_BLOCKS = (32, 32, 16)  # BM, BN, BK: untuned defaults (tl.dot needs every dim >= 16)
_TL_DTYPES = {}


def _tl_dtype(dtype: torch.dtype):
    if not _TL_DTYPES:
        _TL_DTYPES.update({torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16,
                           torch.float64: tl.float64})  # fmt: skip
    return _TL_DTYPES[dtype]


def kernel_weight(base_weight, spline_weight, spline_scaler, dtype: torch.dtype) -> torch.Tensor:
    """The fused weight as ``(m, in, out)`` (feature-major, contiguous over outputs) in ``dtype``."""
    with torch.no_grad():
        out, cin, n = spline_weight.shape
        m = n + (base_weight is not None)
        w = spline_weight.new_empty((m, cin, out), dtype=dtype)
        spline = w[m - n :].permute(2, 1, 0)  # (out, in, n) view
        if spline_scaler is None:
            spline.copy_(spline_weight)
        else:
            torch.mul(spline_weight, spline_scaler.unsqueeze(2), out=spline)
        if base_weight is not None:
            w[0].copy_(base_weight.t())
        return w


def _params(kind: tuple, x: torch.Tensor):
    code, (p0, p1, order, nb) = kind
    dummy = x.new_zeros(1, dtype=torch.float32)
    p0 = dummy if p0 is None else p0.to(device=x.device, dtype=torch.float32).contiguous()
    p1 = dummy if p1 is None else p1.to(device=x.device, dtype=torch.float32).contiguous()
    return code, p0, p1, order, nb


def forward(x, weight_t, bias, act, kind) -> torch.Tensor:
    """``y (N, out)`` in ``weight_t.dtype`` for ``x (N, in)`` and ``weight_t (m, in, out)``."""
    code, p0, p1, order, nb = _params(kind, x)
    m_rows, cin = x.shape
    nq, _, out = weight_t.shape
    y = x.new_empty((m_rows, out), dtype=weight_t.dtype)
    bm, bn, bk = _BLOCKS
    grid = (triton.cdiv(m_rows, bm), triton.cdiv(out, bn))
    b = bias if bias is not None else y
    _fwd_kernel[grid](x.contiguous(), weight_t, b, y, p0, p1, m_rows, cin, out, bias is not None, _ACTS[act],
                      code, order, nb, nq, bm, bn, bk)  # fmt: skip
    return y


def input_grad(x, weight_t, grad_y, act, kind) -> torch.Tensor:
    code, p0, p1, order, nb = _params(kind, x)
    m_rows, cin = x.shape
    nq, _, out = weight_t.shape
    gx = torch.empty_like(x, dtype=torch.float32)
    bm, bn, bk = _BLOCKS
    grid = (triton.cdiv(m_rows, bm), triton.cdiv(cin, bk))
    _dx_kernel[grid](x.contiguous(), weight_t, grad_y.contiguous(), gx, p0, p1, m_rows, cin, out, _ACTS[act],
                     code, order, nb, nq, bm, bn, bk)  # fmt: skip
    return gx.to(x.dtype)


def weight_grad(x, grad_y, nq: int, act, kind, dtype: torch.dtype) -> torch.Tensor:
    """``dWt (m, in, out)`` in float32 (accumulated in float32 from ``dtype`` operands)."""
    code, p0, p1, order, nb = _params(kind, x)
    m_rows, cin = x.shape
    out = grad_y.shape[1]
    gw = x.new_empty((nq, cin, out), dtype=torch.float32)
    bm, bn, bk = _BLOCKS
    grid = (triton.cdiv(cin, bk), triton.cdiv(out, bn), nq)
    consts = (_ACTS[act], code, order, nb, _tl_dtype(dtype), bm, bn, bk)
    _dw_kernel[grid](x.contiguous(), grad_y.contiguous(), gw, p0, p1, m_rows, cin, out, *consts)
    return gw


class KANLinearTriton(torch.autograd.Function):
    """Same contract as ``kanzoo.layers._fused.KANLinearFunction``, computed by the kernels above."""

    @staticmethod
    def forward(
        ctx, x, base_weight, spline_weight, spline_scaler, bias, mm_dtype, act, phi_fn, both_fn, *args
    ):
        kind = basis_kind(phi_fn, args)
        weight_t = kernel_weight(base_weight, spline_weight, spline_scaler, mm_dtype)
        b = None if bias is None else bias.to(mm_dtype)
        y = forward(x, weight_t, b, act, kind)
        tensor_args = [a for a in args if torch.is_tensor(a)]
        ctx.save_for_backward(x, base_weight, spline_weight, spline_scaler, bias, *tensor_args)
        ctx.template = [None if torch.is_tensor(a) else a for a in args]
        ctx.conf = (mm_dtype, act, phi_fn)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        from kanzoo.layers._fused import differentiable_grads, plain_linear, split_weight_grad

        x, base_weight, spline_weight, spline_scaler, bias, *tensor_args = ctx.saved_tensors
        it = iter(tensor_args)
        args = tuple(next(it) if a is None else a for a in ctx.template)
        mm_dtype, act, phi_fn = ctx.conf
        nones = (None,) * (4 + len(args))
        if torch.is_grad_enabled():
            params = (x, base_weight, spline_weight, spline_scaler, bias)
            return (
                *differentiable_grads(ctx, grad_y, plain_linear, params, (mm_dtype, act, phi_fn, *args)),
                *nones,
            )
        kind = basis_kind(phi_fn, args)
        need_x, need_b, need_s, need_c, need_bias = ctx.needs_input_grad[:5]
        grad_y = grad_y.to(mm_dtype).contiguous()
        weight_t = kernel_weight(base_weight, spline_weight, spline_scaler, mm_dtype)
        grad_x = g_base = g_spline = g_scaler = None
        if need_x:
            grad_x = input_grad(x, weight_t, grad_y, act, kind)
        if need_b or need_s or need_c:
            gw = weight_grad(x, grad_y, weight_t.shape[0], act, kind, mm_dtype)
            # (m, in, out) -> the (out, in * m) layout of build_weight, then the analytic split.
            has_base = base_weight is not None
            flat = torch.cat([gw[0].t(), gw[1:].permute(2, 1, 0).flatten(1)], 1) if has_base else (
                gw.permute(2, 1, 0).flatten(1))  # fmt: skip
            g_base, g_spline, g_scaler = split_weight_grad(flat, has_base, spline_weight, spline_scaler)
            if g_base is not None:
                g_base = g_base.to(base_weight.dtype)
        grad_bias = grad_y.sum(0).to(bias.dtype) if (need_bias and bias is not None) else None
        return (grad_x, g_base, g_spline, g_scaler, grad_bias, *nones)
