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
    """Evaluate ``P(x) / (1 + sum_j |b_j| |x|^j)`` elementwise.

    Args:
        x: Inputs, ``(..., in)``.
        numerator: ``(in, m + 1)`` coefficients ``a_0 .. a_m`` per channel (or ``(m + 1,)``).
        denominator: ``(in, n)`` coefficients ``b_1 .. b_n`` per channel (or ``(n,)``).
    """
    p = numerator[..., -1]
    for d in range(numerator.shape[-1] - 2, -1, -1):
        p = p * x + numerator[..., d]
    ax = x.abs()
    b = denominator.abs()
    s = torch.zeros_like(x) if b.shape[-1] == 0 else b[..., -1]
    for j in range(b.shape[-1] - 2, -1, -1):
        s = s * ax + b[..., j]
    return p / (1 + s * ax)


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
    p = dp = c[-1].expand_as(x)
    for k in range(c.shape[0] - 2, -1, -1):
        if k < c.shape[0] - 2:
            dp = torch.addcmul(p, dp, x)
        p = torch.addcmul(c[k], p, x)
    return p, dp


def _rational_forward_kernel(x: torch.Tensor, num_t: torch.Tensor, den_t: torch.Tensor) -> torch.Tensor:
    """``R(x)`` for ``x (N, in)``, coefficient rows ``num_t (m + 1, in)`` and ``den_t (n, in)``."""
    p = _horner(num_t, x)
    if den_t.shape[0] == 0:
        return p
    t = x.abs()
    # S(t) = t * (|b_1| + |b_2| t + ... + |b_n| t^(n-1)) >= 0, so the denominator is >= 1.
    s = _horner(den_t.abs(), t)
    return p / torch.addcmul(torch.ones_like(t), s, t)


def _rational_backward_kernel(
    x: torch.Tensor, num_t: torch.Tensor, den_t: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``sum(grad * R(x))``: ``(dx (N, in), dnum (m + 1, in), dden (n, in))``.

    With ``P``, ``P'`` (Horner with derivative), ``t = |x|``, ``S(t) = sum_j |b_j| t^j``,
    ``Q = 1 + S``, ``u = grad / Q`` and ``R = P / Q``::

        dx      = u (P' - R sign(x) S'(t))
        da_k    = sum_N u x^k
        db_j    = -sign(b_j) sum_N u R t^j
    """
    m1, n = num_t.shape[0], den_t.shape[0]
    if m1 == 1:
        p, dp = num_t[0].expand_as(x), torch.zeros_like(x)
    else:
        p, dp = _horner_with_derivative(num_t, x)
    if n == 0:
        u, ur = grad, None
        dx = grad * dp
    else:
        t = x.abs()
        b = den_t.abs()
        if n == 1:
            s, ds = b[0].expand_as(x), torch.zeros_like(x)
        else:
            s, ds = _horner_with_derivative(b, t)
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
    dden = torch.stack(grad_den) * -torch.sign(den_t)
    return dx, dnum, dden


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
