"""Group-rational basis (GR-KAN, as in the Kolmogorov-Arnold Transformer).

Every input channel ``i`` belongs to one of ``num_groups`` contiguous groups; all channels of a
group share one rational function::

    R(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1| |x| + ... + |b_n| |x|^n)

The denominator is ``>= 1`` everywhere, so ``R`` has no poles. The basis returns ``R(x_i)`` as a
single feature per input (``num_features = 1``); followed by the layer's matmul and used with
``base_activation=None`` this is exactly a GR-KAN layer ``y = W R(x) + b``.

The coefficients are trainable (``basis.numerator``, ``basis.denominator``), so the basis has no
:meth:`~kanzoo.layers.bases.Basis.functional` form. Instead :class:`RationalFunction` is a custom
autograd Function that saves only ``x`` and the coefficients and computes ``dL/dx``,
``dL/dnumerator`` and ``dL/ddenominator`` analytically in backward (sums over the batch and over
the channels of each group). Its forward and backward kernels run through
:func:`kanzoo.layers._fused.run_kernel` (``torch.compile`` when enabled, eager otherwise).

Huge inputs: where ``|x|`` exceeds :func:`far_threshold` (``2**19`` in float32 at the default
degrees, ``1`` in float16) numerator and denominator are evaluated divided by ``|x|^D`` (``D`` the
channel's denominator degree), in the forward, the fused backward and the plain formula alike,
so values and gradients stay finite and accurate wherever the true value is representable (e.g.
``|x| = 1e30`` in float32/bfloat16 with a degree-(5, 4) rational), instead of overflowing through
``x^5``.

Gradients at the kinks of ``|x|`` and ``|b_j|`` use the subgradient ``sign(0) = 0``, as torch's
``abs`` does: at ``x = 0`` the ``|b_1| |x|`` term contributes nothing to ``dL/dx`` (the higher
powers have derivative 0 there anyway), and ``dL/db_j = 0`` when ``b_j = 0``. The backward is
written with differentiable torch ops, so double backward (``create_graph=True``) works.
:func:`rational` is the plain-autograd formula (the reference the fused path is tested against).
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from torch import nn

from .._fused import run_kernel
from .base import Basis, register_basis

__all__ = ["RationalBasis", "RationalFunction", "fit_rational", "fused_rational", "rational"]

_TARGETS = {
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * torch.sigmoid(x),
    "identity": lambda x: x,
}


def rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Evaluate ``P(x) / (1 + sum_j |b_j| |x|^j)`` elementwise (plain autograd).

    Evaluated as :func:`_rational_value`: beyond :func:`far_threshold` numerator and denominator are both
    divided by ``|x|^D`` (``D`` the channel's denominator degree), so no power of ``x`` overflows
    before the division and huge inputs give the finite, accurate values (and autograd gradients)
    that the float32 range allows.

    Args:
        x: Inputs, ``(..., in)``.
        numerator: ``(in, m + 1)`` coefficients ``a_0 .. a_m`` per channel (or ``(m + 1,)``).
        denominator: ``(in, n)`` coefficients ``b_1 .. b_n`` per channel (or ``(n,)``).
    """
    num_t = numerator.t() if numerator.dim() == 2 else numerator.unsqueeze(-1)
    den_t = denominator.t() if denominator.dim() == 2 else denominator.unsqueeze(-1)
    return _rational_value(x, num_t, den_t)


# ---------------------------------------------------------------------------------------------
# Fused path: pure kernels (compile targets) and the autograd Function.


def _horner(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_k c[k] x^k`` for coefficient rows ``c (k, in)`` and ``x (N, in)``."""
    if c.shape[0] == 1:
        return c[0].expand_as(x).contiguous()
    p = c[-1].expand_as(x)
    for k in range(c.shape[0] - 2, -1, -1):
        p = torch.addcmul(c[k], p, x)
    return p


def _horner_with_derivative(c: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_k c[k] x^k, sum_k k c[k] x^(k-1))`` for ``c (k >= 1, in)``."""
    if c.shape[0] == 1:
        return c[0].expand_as(x).contiguous(), torch.zeros_like(x)
    p = dp = c[-1].expand_as(x)
    for k in range(c.shape[0] - 2, -1, -1):
        if k < c.shape[0] - 2:
            dp = torch.addcmul(p, dp, x)
        p = torch.addcmul(c[k], p, x)
    return p, dp


# Large inputs. The powers x^k, |x|^j can overflow long before R(x) does (at |x| = 1e8 in float32,
# x^5 = 1e40), and both P and Q overflow to inf/inf = NaN for |x| >~ 1e10. Beyond far_threshold the
# numerator and the denominator are divided by t^D (t = |x|, D the largest j with b_j != 0 in the
# channel, the degree that dominates Q for large t):
#
#     Q~ = Q t^-D = sum_{i=0..D} |b_{D-i}| w^i                       (w = 1/t, |b_0| := 1)
#     P~ = P t^-D = s_D (sum_{i>=0} a_{D+i} x^i + sum_{i=1..D} a_{D-i} z^i)   (z = 1/x, s_D = sign(x)^D)
#
# using x^k t^-D = s_D x^(k-D). Q~ >= |b_D| (or = 1 when D = 0), so nothing overflows, underflows
# to 0/0 or loses accuracy; x^(k-D) grows only where R itself does. The gradients use the same
# scaling: x^k / Q = s_D x^(k-D) / Q~, t^j / Q = w^(D-j) / Q~, P' t^-D = dP~/dx + D z P~ and
# Q'(t) t^-D = dQ~/dt + D w Q~. Inputs up to far_threshold use the direct formulas (every power
# stays 2^32 below the dtype's largest value); in trained models that is every entry, so on the CPU
# the fused kernels compute only the direct formulas and patch the rare far entries afterwards.


def _far_rows(num_t: torch.Tensor, b: torch.Tensor):
    """Coefficient rows of the ``|x| > 1`` form, per channel (see the comment above).

    Args:
        num_t: ``(m + 1, C)`` numerator rows ``a_0 .. a_m``.
        b: ``(n >= 1, C)`` absolute denominator rows ``|b_1| .. |b_n|`` (same ``C``, or 1).

    Returns:
        ``(d, h, l, q, odd)``: the degree ``D`` per channel ``(C,)`` (long), the rows of
        ``H(x) = sum_i a_{D+i} x^i`` ``(m + 1, C)``, of ``L(z) = sum_i a_{D-i} z^i`` ``(n + 1, C)``
        (``L(0) = 0``), of ``Q~(w)`` ``(n + 1, C)``, and whether ``D`` is odd ``(C,)``.
    """
    cols = max(num_t.shape[1], b.shape[1])
    num_t, b = num_t.expand(-1, cols), b.expand(-1, cols)
    m1, n = num_t.shape[0], b.shape[0]
    j = torch.arange(1, n + 1, device=b.device).unsqueeze(1)
    d = torch.where(b != 0, j, torch.zeros_like(j)).amax(0)
    bb = torch.cat([torch.ones_like(b[:1]), b])  # |b_0| = 1, |b_1|, ..., |b_n|
    i = torch.arange(n + 1, device=b.device).unsqueeze(1)
    down = d - i  # index D - i
    q = torch.where(down >= 0, bb.gather(0, down.clamp_min(0)), torch.zeros_like(bb))
    ok_low = (i >= 1) & (down >= 0) & (down < m1)
    low_src = num_t.gather(0, down.clamp(0, m1 - 1))
    low = torch.where(ok_low, low_src, torch.zeros_like(low_src))
    up = d + torch.arange(m1, device=b.device).unsqueeze(1)  # index D + i
    high_src = num_t.gather(0, up.clamp_max(m1 - 1))
    high = torch.where(up < m1, high_src, torch.zeros_like(high_src))
    return d, high, low, q, d % 2 == 1


def _high_part(high: torch.Tensor, d: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H(x), H'(x))``, ``H = sum_i high[i] x^i``, by Horner over rows zero-padded per channel
    (``high[i] = 0`` once ``D + i`` passes the numerator degree). When autograd records (the plain
    formula, double backward), the Horner steps above a channel's last real row multiply by 0
    instead of ``x``: same values, but autograd never forms the unused powers ``x^i`` that would
    overflow into ``inf * 0 = NaN``."""
    m1 = high.shape[0]
    if m1 == 1:
        return high[0].expand_as(x).contiguous(), torch.zeros_like(x)
    masked = torch.is_grad_enabled()
    p = dp = high[-1].expand_as(x)
    for k in range(m1 - 2, -1, -1):
        xk = x * (d + k + 1 < m1).to(x.dtype) if masked else x  # step k multiplies rows >= k + 1
        if k < m1 - 2:
            dp = torch.addcmul(p, dp, xk)
        p = torch.addcmul(high[k], p, xk)
    return p, dp


#: Margin (in powers of two) kept below the dtype's largest value by the direct formulas: with
#: ``|x| <= far_threshold`` every power ``|x|^k`` (``k <=`` the larger degree) times a coefficient
#: below ``2**32`` in magnitude stays finite.
_FAR_MARGIN_BITS = 32


def far_threshold(dtype: torch.dtype, m1: int, n: int) -> float:
    """Largest ``|x|`` evaluated by the direct formulas; larger inputs use the ``|x|^-D``-scaled
    ones. A power of two, so the choice is exact: ``2**floor((log2(max) - 32) / degree)`` with
    ``degree = max(m, n)`` (float32/bfloat16, degree 5: ``2**19``; float16: ``1``, as in every dtype
    where that exponent is below 0)."""
    degree = max(m1 - 1, n, 1)
    bits = math.floor((math.log2(torch.finfo(dtype).max) - _FAR_MARGIN_BITS) / degree)
    return float(2.0 ** max(bits, 0))


def _near_far(x: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(far, x_near, x_far)``: the mask ``|x| > threshold`` and inputs safe for each formula (the
    other branch's entries replaced by 0 resp. 1, so neither branch overflows or divides by 0,
    even in double backward)."""
    far = x.abs() > threshold
    return far, torch.where(far, torch.zeros_like(x), x), torch.where(far, x, torch.ones_like(x))


def _near_value(xn: torch.Tensor, num_t: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The direct formula ``P(x) / (1 + S(|x|))`` (``b`` the absolute denominator rows)."""
    tn = xn.abs()
    # S(t) = t * (|b_1| + |b_2| t + ... + |b_n| t^(n-1)) >= 0, so the denominator is >= 1.
    return _horner(num_t, xn) / torch.addcmul(torch.ones_like(tn), _horner(b, tn), tn)


def _far_value(xf: torch.Tensor, num_t: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The ``|x|^-D``-scaled formula (finite for any ``|x| > 1``)."""
    d, high, low, q, odd = _far_rows(num_t, b)
    z = torch.reciprocal(xf)
    s_d = torch.where(odd, torch.sign(xf), torch.ones_like(xf))
    p_far = s_d * (_high_part(high, d, xf)[0] + _horner(low, z))
    return p_far / _horner(q, z.abs())


def _rational_value(x: torch.Tensor, num_t: torch.Tensor, den_t: torch.Tensor) -> torch.Tensor:
    """``R(x)`` for ``x (..., C)``, coefficient rows ``num_t (m + 1, C)`` and ``den_t (n, C)``."""
    if den_t.shape[0] == 0:
        return _horner(num_t, x)
    threshold = far_threshold(x.dtype, num_t.shape[0], den_t.shape[0])
    if torch.is_grad_enabled():  # autograd will differentiate both branches: keep them finite
        far, xn, xf = _near_far(x, threshold)
    else:  # values only: torch.where ignores the other branch's inf/NaN
        far, xn, xf = x.abs() > threshold, x, x
    b = den_t.abs()
    return torch.where(far, _far_value(xf, num_t, b), _near_value(xn, num_t, b))


def _rational_forward_kernel(
    x: torch.Tensor, num_t: torch.Tensor, den_t: torch.Tensor, near_only: bool = False
) -> torch.Tensor:
    """``R(x)`` for ``x (N, in)``, coefficient rows ``num_t (m + 1, in)`` and ``den_t (n, in)``.

    ``near_only``: only the direct formula, returned with the number of entries beyond
    :func:`far_threshold` (they come out as ``R(0)``; the caller evaluates those few itself, see
    :func:`_patch_far`)."""
    if near_only:
        if den_t.shape[0] == 0:
            return _horner(num_t, x), x.new_zeros((), dtype=torch.int64)
        far, xn, _ = _near_far(x, far_threshold(x.dtype, num_t.shape[0], den_t.shape[0]))
        return _near_value(xn, num_t, den_t.abs()), far.sum()
    return _rational_value(x, num_t, den_t)


def _near_backward(x, num_t, den_t, grad):
    """Gradients of ``sum(grad * R(x))`` by the direct formulas (used up to :func:`far_threshold`).

    With ``P``, ``P'`` (Horner with derivative), ``t = |x|``, ``S(t) = sum_j |b_j| t^j``,
    ``Q = 1 + S``, ``u = grad / Q`` and ``R = P / Q``::

        dx      = u (P' - R sign(x) S'(t))
        da_k    = sum_N u x^k
        db_j    = -sign(b_j) sum_N u R t^j
    """
    m1, n = num_t.shape[0], den_t.shape[0]
    p, dp = _horner_with_derivative(num_t, x)
    if n == 0:
        u, ur = grad, None
        dx = grad * dp
    else:
        t = x.abs()
        s, ds = _horner_with_derivative(den_t.abs(), t)
        dsdt = torch.addcmul(s, ds, t)  # d/dt (t * s(t))
        inv_q = torch.reciprocal(torch.addcmul(torch.ones_like(t), s, t))
        u = grad * inv_q
        ur = u * p * inv_q  # grad * R / Q
        dx = u * dp - ur * torch.sign(x) * dsdt
    grad_num = [u.sum(0)]
    w = u
    for _ in range(1, m1):
        w = w * x
        grad_num.append(w.sum(0))
    dnum = torch.stack(grad_num)
    if n == 0:
        return dx, dnum, den_t.new_zeros(den_t.shape)
    grad_den = []
    w = ur
    for _ in range(n):
        w = w * t
        grad_den.append(w.sum(0))
    # b_j = 0 has gradient 0 (sign(0) = 0); its sum may have overflowed (u R t^j grows past the
    # channel's degree), so it is masked rather than multiplied by 0 (inf * 0 = NaN).
    sums = torch.stack(grad_den)
    return dx, dnum, torch.where(den_t != 0, sums * -torch.sign(den_t), torch.zeros_like(sums))


def _far_backward(x, num_t, den_t, grad):
    """The same gradients by the ``|x|^-D``-scaled formulas (finite for any ``|x| > 1``)."""
    m1, n = num_t.shape[0], den_t.shape[0]
    d, high, low, q, odd = _far_rows(num_t, den_t.abs())
    deg = d.to(x.dtype)
    z = torch.reciprocal(x)
    w = z.abs()
    sign = torch.sign(x)
    s_d = torch.where(odd, sign, torch.ones_like(x))
    h, dh = _high_part(high, d, x)
    lo, dlo = _horner_with_derivative(low, z)
    qs, dqs = _horner_with_derivative(q, w)
    ps = s_d * (h + lo)  # P~
    dps = s_d * (dh - z * z * dlo) + deg * z * ps  # P'(x) t^-D
    dss = deg * w * qs - w * w * dqs  # S'(t) t^-D
    inv_q = torch.reciprocal(qs)
    r = ps * inv_q
    u = grad * inv_q
    dx = u * (dps - r * sign * dss)
    # da_k = sum_N u s_D x^(k-D): offsets k - D = 0..m by powers of x, k - D = -1..-n by powers
    # of z; sums of offsets whose k is outside 0..m (possibly overflowed) are dropped.
    v = u * s_d
    offsets, sums = [0], [v.sum(0)]
    cur = v
    masked = torch.is_grad_enabled()  # double backward: never form the unused powers (see _high_part)
    for i in range(1, m1):
        cur = cur * x * (d + i < m1).to(x.dtype) if masked else cur * x
        offsets.append(i)
        sums.append(cur.sum(0))
    cur = v
    for i in range(1, n + 1):
        cur = cur * z
        offsets.append(-i)
        sums.append(cur.sum(0))
    k = d + torch.tensor(offsets, device=d.device).unsqueeze(1)
    vals = torch.stack(sums)
    vals = torch.where((k >= 0) & (k < m1), vals, torch.zeros_like(vals))
    dnum = vals.new_zeros(m1, vals.shape[1]).scatter_add(0, k.clamp(0, m1 - 1), vals)
    # db_j = -sign(b_j) sum_N u R w^(D-j) for 1 <= j <= D (b_j = 0 above D: gradient 0). Every
    # factor is applied in an order whose partial products are true gradients themselves: u R
    # (j = D, which alone may overflow) is not an intermediate of the others, and (u w) R w^(e-1)
    # never underflows where the result does not.
    sums, cur = [(u * r).sum(0)], None
    for _ in range(1, n):
        cur = (u * w) * r if cur is None else cur * w
        sums.append(cur.sum(0))
    j = d - torch.arange(n, device=d.device).unsqueeze(1)
    vals = torch.stack(sums)
    vals = torch.where(j >= 1, vals, torch.zeros_like(vals))
    dden = vals.new_zeros(n, vals.shape[1]).scatter_add(0, (j - 1).clamp_min(0), vals)
    return dx, dnum, dden * -torch.sign(den_t)


def _rational_backward_kernel(
    x: torch.Tensor, num_t: torch.Tensor, den_t: torch.Tensor, grad: torch.Tensor, near_only: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``sum(grad * R(x))``: ``(dx (N, in), dnum (m + 1, in), dden (n, in))``.

    Inputs with ``|x| <=`` :func:`far_threshold` use the direct formulas (:func:`_near_backward`),
    larger ones the ``|x|^-D``-scaled ones (:func:`_far_backward`), so the gradients stay finite
    and accurate wherever their true value is representable. ``near_only``: the far entries
    contribute nothing (and get ``dx = 0``), and their number is returned as a fourth result; the
    caller adds them itself (:func:`_patch_far_backward`).
    """
    if den_t.shape[0] == 0:  # a polynomial: nothing to rescale
        grads = _near_backward(x, num_t, den_t, grad)
        return (*grads, x.new_zeros((), dtype=torch.int64)) if near_only else grads
    far, xn, xf = _near_far(x, far_threshold(x.dtype, num_t.shape[0], den_t.shape[0]))
    zero = torch.zeros_like(grad)
    dx_n, dnum_n, dden_n = _near_backward(xn, num_t, den_t, torch.where(far, zero, grad))
    if near_only:
        return dx_n, dnum_n, dden_n, far.sum()
    dx_f, dnum_f, dden_f = _far_backward(xf, num_t, den_t, torch.where(far, grad, zero))
    return torch.where(far, dx_f, dx_n), dnum_n + dnum_f, dden_n + dden_f


def _compact_far(x: torch.Tensor) -> bool:
    """Whether the fused kernels evaluate only the direct formulas and the (rare) entries beyond
    :func:`far_threshold` separately: on the CPU outside autograd. Finding those entries reads a
    count back to the host, a synchronisation an accelerator should not wait for, so there both
    formulas run on every entry instead."""
    return x.device.type == "cpu" and not torch.is_grad_enabled()


def _far_entries(x: torch.Tensor, num_t: torch.Tensor, den_t: torch.Tensor, count: torch.Tensor):
    """``(rows, channels)`` of the entries of ``x (N, C)`` beyond :func:`far_threshold` (``None``
    when the kernel counted none or the coefficients make it a polynomial). Indexing by row and
    channel works whatever the strides of ``x`` and of the kernels' outputs."""
    if den_t.shape[0] == 0 or int(count) == 0:
        return None
    threshold = far_threshold(x.dtype, num_t.shape[0], den_t.shape[0])
    rows, chan = (x.abs() > threshold).nonzero().unbind(1)
    return (rows, chan) if rows.numel() else None


def _patch_far(out, x, num_t, den_t, entries) -> None:
    """Write ``R(x)`` by the scaled formula into ``out`` at the far ``entries`` (in place): every
    far entry becomes its own column with its channel's coefficients."""
    rows, chan = entries
    xf = x[rows, chan].unsqueeze(0)
    out[rows, chan] = _far_value(xf, num_t[:, chan], den_t[:, chan].abs()).squeeze(0)


def _patch_far_backward(dx, dnum, dden, x, num_t, den_t, grad, entries) -> None:
    """Add the far entries' gradients (scaled formulas) to ``dx``, ``dnum``, ``dden`` in place."""
    rows, chan = entries
    xf, gf = x[rows, chan].unsqueeze(0), grad[rows, chan].unsqueeze(0)
    dx_f, dnum_f, dden_f = _far_backward(xf, num_t[:, chan], den_t[:, chan], gf)
    dx[rows, chan] = dx_f.squeeze(0)
    dnum.index_add_(1, chan, dnum_f)
    dden.index_add_(1, chan, dden_f)


def _group_sum(grad_t: torch.Tensor, group_index: torch.Tensor | None, num_groups: int) -> torch.Tensor:
    """Per-channel coefficient gradient rows ``(k, in)`` summed into their groups ``(groups, k)``."""
    if group_index is None:
        return grad_t.t()
    return grad_t.new_zeros(num_groups, grad_t.shape[0]).index_add(0, group_index, grad_t.t())


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Disable autocast for the kernels (they run in the inputs' dtype); a no-op for device types
    without autocast support (e.g. ``meta``)."""
    try:
        return torch.autocast(device_type, enabled=False)
    except (RuntimeError, ValueError):
        return contextlib.nullcontext()


class RationalFunction(torch.autograd.Function):
    """``R(x)`` with a fused, analytic backward that saves only ``x`` and the coefficients.

    ``apply(x (..., in), numerator, denominator, group_index)``: with ``group_index`` (``(in,)``
    long) the coefficients are per group, ``(groups, m + 1)`` and ``(groups, n)``, channel ``i``
    using row ``group_index[i]``; with ``None`` they are per channel, ``(in, m + 1)``/``(in, n)``.
    All floating-point inputs must share one dtype (the compute dtype). Double backward works
    because the backward is built from differentiable torch ops.
    """

    @staticmethod
    def forward(ctx, x, numerator, denominator, group_index):
        num, den = _per_channel(numerator, denominator, group_index)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        with _autocast_off(x.device.type):
            if _compact_far(x2):
                out, count = run_kernel(_rational_forward_kernel, x2, num, den, True)
                entries = _far_entries(x2, num, den, count)
                if entries is not None:
                    _patch_far(out, x2, num, den, entries)
            else:
                out = run_kernel(_rational_forward_kernel, x2, num, den)
        ctx.save_for_backward(x, numerator, denominator, group_index)
        ctx.has_groups = group_index is not None
        return out.reshape(*lead, x.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x, numerator, denominator, group_index = ctx.saved_tensors
        if not ctx.has_groups:
            group_index = None
        num, den = _per_channel(numerator, denominator, group_index)
        x2 = x.reshape(-1, x.shape[-1])
        g2 = grad_out.reshape(x2.shape).to(x.dtype)
        with _autocast_off(x.device.type):
            if _compact_far(x2):
                dx, dnum, dden, count = run_kernel(_rational_backward_kernel, x2, num, den, g2, True)
                entries = _far_entries(x2, num, den, count)
                if entries is not None:
                    _patch_far_backward(dx, dnum, dden, x2, num, den, g2, entries)
            else:
                dx, dnum, dden = run_kernel(_rational_backward_kernel, x2, num, den, g2)
        need_x, need_num, need_den = ctx.needs_input_grad[:3]
        grad_x = dx.reshape(x.shape) if need_x else None
        groups = numerator.shape[0]
        grad_num = _group_sum(dnum, group_index, groups) if need_num else None
        grad_den = _group_sum(dden, group_index, groups) if need_den else None
        return grad_x, grad_num, grad_den, None


def _per_channel(numerator, denominator, group_index):
    """Coefficient rows ``(m + 1, in)`` and ``(n, in)``: every coefficient contiguous over channels."""
    if group_index is not None:
        numerator, denominator = numerator[group_index], denominator[group_index]
    return numerator.t().contiguous(), denominator.t().contiguous()


def fused_rational(
    x: torch.Tensor,
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    group_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`rational` through :class:`RationalFunction` (same values, fused analytic backward).

    Args:
        x: Inputs, ``(..., in)``.
        numerator: ``(groups, m + 1)`` with ``group_index``, else ``(in, m + 1)``.
        denominator: ``(groups, n)`` with ``group_index``, else ``(in, n)``.
        group_index: ``(in,)`` integer group of every channel, or ``None`` for per-channel
            coefficients.

    Returns:
        ``R(x)`` with the shape and dtype of ``x``.
    """
    if x.dim() == 0:
        raise ValueError("fused_rational expects x of shape (..., in), got a scalar")
    if numerator.dim() != 2 or denominator.dim() != 2 or numerator.shape[0] != denominator.shape[0]:
        raise ValueError(
            f"numerator and denominator must be 2-d with the same number of rows, got "
            f"{tuple(numerator.shape)} and {tuple(denominator.shape)}"
        )
    if numerator.shape[1] < 1:
        raise ValueError("numerator needs at least one coefficient (a_0)")
    rows = x.shape[-1] if group_index is None else group_index.shape[0]
    if group_index is not None and (group_index.dim() != 1 or group_index.shape[0] != x.shape[-1]):
        raise ValueError(f"group_index must have shape ({x.shape[-1]},), got {tuple(group_index.shape)}")
    if group_index is None and numerator.shape[0] != rows:
        raise ValueError(
            f"per-channel coefficients need {rows} rows (one per input channel), got {numerator.shape[0]}"
        )
    if not (x.dtype == numerator.dtype == denominator.dtype):
        raise ValueError(
            f"x, numerator and denominator must share one dtype, got {x.dtype}, {numerator.dtype}, "
            f"{denominator.dtype}"
        )
    return RationalFunction.apply(x, numerator, denominator, group_index)


@functools.cache
def fit_rational(target: str, numerator_degree: int, denominator_degree: int) -> tuple[tuple, tuple]:
    """Least-squares fit of the safe rational form to ``target`` on ``[-4, 4]`` (float64, cached).

    A linearized fit (``P(x) - f(x) (Q(x) - 1) = f(x)``) gives the starting point, then L-BFGS
    refines the true relative-error objective.

    The fit always runs on the CPU with autograd enabled and returns plain Python numbers, so
    building a basis works under any default device (``with torch.device("meta")``, as timm and
    transformers use to build models without allocating them), under ``torch.no_grad()`` and
    under ``torch.inference_mode()``.

    Returns:
        ``(numerator, denominator)`` coefficient tuples.
    """
    if target not in _TARGETS:
        raise ValueError(f"init must be one of {sorted(_TARGETS)}, got {target!r}")
    m, n = numerator_degree, denominator_degree
    if target == "identity":
        num = [0.0] * (m + 1)
        num[1] = 1.0
        return tuple(num), (0.0,) * n
    with torch.device("cpu"), torch.inference_mode(False), torch.enable_grad():
        return _fit(_TARGETS[target], m, n)


def _fit(target, m: int, n: int) -> tuple[tuple, tuple]:
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    f = target(x)
    powers = torch.stack([x**d for d in range(m + 1)], dim=1)
    apow = torch.stack([-f * x.abs() ** j for j in range(1, n + 1)], dim=1)
    sol = torch.linalg.lstsq(torch.cat([powers, apow], dim=1), f.unsqueeze(1)).solution.squeeze(1)
    a = sol[: m + 1].clone().requires_grad_(True)
    b = sol[m + 1 :].abs().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=400, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((rational(x, a, b) - f) ** 2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return tuple(a.detach().tolist()), tuple(b.detach().abs().tolist())


@register_basis("rational")
class RationalBasis(Basis):
    """Group-rational basis: one shared rational function per channel group, ``num_features = 1``.

    Args:
        in_features: Number of input channels.
        num_groups: Number of groups (``min(num_groups, in_features)`` are used); channel ``i``
            belongs to group ``i * num_groups // in_features``, so any ``in_features`` works.
        numerator_degree: Degree ``m`` of the numerator.
        denominator_degree: Degree ``n`` of the safe denominator.
        init: ``"identity"``, ``"gelu"`` or ``"silu"``: every group starts as that function
            (the latter two by a least-squares fit).

    Parameters:
        numerator: ``(num_groups, m + 1)``.
        denominator: ``(num_groups, n)``.

    Attributes:
        fused: Evaluate through :class:`RationalFunction` (default ``True``); ``False`` uses the
            plain-autograd :func:`rational` (kept for benchmarks and as a reference).
    """

    fused: bool = True

    def __init__(
        self,
        in_features: int,
        *,
        num_groups: int = 8,
        numerator_degree: int = 5,
        denominator_degree: int = 4,
        init: str = "identity",
    ) -> None:
        super().__init__(in_features)
        if int(num_groups) < 1:
            raise ValueError(f"num_groups must be >= 1, got {num_groups!r}")
        if int(numerator_degree) < 1 or int(denominator_degree) < 0:
            raise ValueError("numerator_degree must be >= 1 and denominator_degree >= 0")
        self.num_groups = min(int(num_groups), self.in_features)
        self.numerator_degree = int(numerator_degree)
        self.denominator_degree = int(denominator_degree)
        self.init = init
        self.num_features = 1
        if init not in _TARGETS:
            raise ValueError(f"init must be one of {sorted(_TARGETS)}, got {init!r}")
        m1, n = self.numerator_degree + 1, self.denominator_degree
        self.numerator = nn.Parameter(torch.empty(self.num_groups, m1))
        self.denominator = nn.Parameter(torch.empty(self.num_groups, n))
        self.register_buffer("group_index", torch.empty(self.in_features, dtype=torch.long), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Every group starts as the ``init`` function; ``group_index`` maps channels to groups.

        Also the way to initialise a basis built on the meta device after ``to_empty()``: the
        non-persistent ``group_index`` is not in checkpoints, so it is recomputed here.
        """
        num, den = fit_rational(self.init, self.numerator_degree, self.denominator_degree)
        self.numerator.copy_(self.numerator.new_tensor(num).expand_as(self.numerator))
        self.denominator.copy_(self.denominator.new_tensor(den).reshape(1, -1).expand_as(self.denominator))
        channels = torch.arange(self.in_features, device=self.group_index.device)
        self.group_index.copy_(channels * self.num_groups // self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_groups={self.num_groups}, "
            f"numerator_degree={self.numerator_degree}, denominator_degree={self.denominator_degree}, "
            f"init={self.init!r}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cd = self.compute_dtype(x)
        if self.fused:
            num, den = self.numerator.to(cd), self.denominator.to(cd)
            return fused_rational(x.to(cd), num, den, self.group_index).unsqueeze(-1)
        num = self.numerator.to(cd)[self.group_index]
        den = self.denominator.to(cd)[self.group_index]
        return rational(x.to(cd), num, den).unsqueeze(-1)
