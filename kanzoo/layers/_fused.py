"""Fused feature construction and the memory-lean autograd function of the KAN layers.

The KAN layer computes ``y = F(x) @ W^T + b`` where ``F(x) = [act(x), B(x)]`` has width
``in * (1 + n)``. Storing ``F`` for backward is what makes naive KAN layers memory hungry, and
building it with many small eager kernels is what makes them slow. Here:

* :class:`KANLinearFunction` saves only ``x`` and ``W``; backward recomputes ``F`` (for
  ``dW = dy^T F``) and the elementwise derivative (for ``dx = sum_f (dy W)_f * dF_f/dx``).
  Backward is itself written with differentiable ops, so double backward (``create_graph``)
  works too.
* The elementwise work (basis values, activation, their derivatives, the reduction over
  features) runs through ``torch.compile(dynamic=True)`` when enabled: one compiled kernel per
  (basis function, activation, dtype), shared by every layer instance and batch size because
  knots are passed as tensors. Disable with ``KANZOO_COMPILE=0`` or :func:`set_compile`; if
  compilation fails the eager functions are used silently.
* :func:`run_kernel` gives the same compile-or-eager dispatch to any pure elementwise kernel
  ``fn(x, *args)``; the rational basis uses it for its fused forward and backward.
"""

from __future__ import annotations

import logging
import math
import os
import types
from collections.abc import Callable

import torch

__all__ = [
    "ACTIVATIONS",
    "KANLinearFunction",
    "activation",
    "activation_with_derivative",
    "build_features",
    "compile_enabled",
    "run_fused",
    "run_kernel",
    "set_compile",
]

logger = logging.getLogger(__name__)

ACTIVATIONS = ("silu", "gelu", "identity")
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def activation(x: torch.Tensor, act: str) -> torch.Tensor:
    """The base-branch activation (``"silu"``, ``"gelu"`` (erf form) or ``"identity"``)."""
    if act == "silu":
        return x * torch.sigmoid(x)
    if act == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x * _INV_SQRT2))
    return x


def activation_with_derivative(x: torch.Tensor, act: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation values and derivatives."""
    if act == "silu":
        s = torch.sigmoid(x)
        return x * s, s * (1.0 + x * (1.0 - s))
    if act == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(x * _INV_SQRT2))
        return x * cdf, cdf + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return x, torch.ones_like(x)


# ---------------------------------------------------------------------------------------------
# Pure elementwise kernels (the compile targets).


def build_features(x: torch.Tensor, act: str | None, phi_fn: Callable, out_dtype: torch.dtype, *args):
    """``x (..., in) -> [act(x), phi(x)]`` flattened to ``(..., in * (1 + n))`` in ``out_dtype``."""
    phi = phi_fn(x, *args)
    if act is not None:
        phi = torch.cat([activation(x, act).unsqueeze(-1), phi], dim=-1)
    return phi.flatten(-2).to(out_dtype)


def input_grad(x: torch.Tensor, act: str | None, both_fn: Callable, grad_f: torch.Tensor, *args):
    """``dx = sum_f grad_f[..., f] * dF_f/dx`` with ``grad_f (..., in, 1 + n)`` (or ``n``)."""
    _, dphi = both_fn(x, *args)
    if act is None:
        return (grad_f * dphi).sum(-1)
    _, da = activation_with_derivative(x, act)
    return grad_f[..., 0] * da + (grad_f[..., 1:] * dphi).sum(-1)


def features_and_input_grad(
    x: torch.Tensor, act: str | None, both_fn: Callable, grad_f: torch.Tensor, out_dtype: torch.dtype, *args
):
    """Both :func:`build_features` and :func:`input_grad` from one pass over ``x``."""
    phi, dphi = both_fn(x, *args)
    if act is None:
        return phi.flatten(-2).to(out_dtype), (grad_f * dphi).sum(-1)
    a, da = activation_with_derivative(x, act)
    feats = torch.cat([a.unsqueeze(-1), phi], dim=-1).flatten(-2).to(out_dtype)
    return feats, grad_f[..., 0] * da + (grad_f[..., 1:] * dphi).sum(-1)


# ---------------------------------------------------------------------------------------------
# Optional torch.compile of the kernels above.

_FALSE = {"0", "false", "no", "off", ""}
_state = {"enabled": os.environ.get("KANZOO_COMPILE", "1").strip().lower() not in _FALSE}
_MISSING = object()
_compiled: dict[tuple, Callable | None] = {}


def set_compile(enabled: bool) -> None:
    """Turn ``torch.compile`` fusion of the basis kernels on or off (process-wide)."""
    _state["enabled"] = bool(enabled)


def compile_enabled() -> bool:
    """Whether the fused kernels are compiled (``KANZOO_COMPILE`` env, default on)."""
    return _state["enabled"]


def _fresh_copy(fn: Callable, tag: str) -> Callable:
    """A copy of ``fn`` with its own code object: dynamo caches (and limits recompiles) per code
    object, so every (kernel, activation, basis function) combination gets its own cache."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}__{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def _can_compile(x: torch.Tensor) -> bool:
    return (
        _state["enabled"]
        and x.numel() > 0
        and not x.is_meta
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


def _call_compiled(key: tuple, fn: Callable, tag: str, call_args: tuple) -> tuple[bool, object]:
    """Call the cached compiled copy of ``fn`` on ``call_args``; ``(False, None)`` when unavailable.

    Tensor arguments are detached and their first dimension (the batch) is marked dynamic: one
    kernel serves every batch size. Python ints in ``call_args`` stay static so loops unroll.
    """
    compiled = _compiled.get(key, _MISSING)
    if compiled is _MISSING:
        # A second feature count makes dynamo generalize the feature dimension too.
        compiled = _compiled[key] = torch.compile(_fresh_copy(fn, tag), dynamic=None)
    if compiled is None:
        return False, None
    try:
        targs = [a.detach() if torch.is_tensor(a) else a for a in call_args]
        for t in targs:
            if torch.is_tensor(t) and t.dim() >= 2:
                torch._dynamo.maybe_mark_dynamic(t, 0)
        return True, compiled(*targs)
    except Exception as err:  # compilation problems must never break a forward pass
        logger.info("kanzoo: torch.compile of %s failed, using eager (%s)", fn.__name__, err)
        _compiled[key] = None
        return False, None


def run_fused(fn: Callable, x: torch.Tensor, act: str | None, basis_fn: Callable, *args):
    """Run ``fn(x, act, basis_fn, *args)`` compiled when enabled and possible, else eagerly.

    Empty or meta inputs, an enclosing ``torch.compile`` and ``create_graph`` backward passes (grad
    mode on) always run eagerly: the enclosing compiler fuses by itself, double backward needs autograd.
    """
    if _can_compile(x):
        tag = f"{act}_{getattr(basis_fn, '__name__', 'basis')}"
        ok, out = _call_compiled((fn, act, basis_fn), fn, tag, (x, act, basis_fn, *args))
        if ok:
            return out
    return fn(x, act, basis_fn, *args)


def run_kernel(fn: Callable, x: torch.Tensor, *args):
    """Run the pure elementwise kernel ``fn(x, *args)`` compiled when enabled and possible.

    Same rules as :func:`run_fused` (eager for empty inputs, inside ``torch.compile`` and when
    grad mode is on); used by bases with trainable coefficients and their own autograd Function.
    """
    if _can_compile(x):
        ok, out = _call_compiled((fn, None, None), fn, "kernel", (x, *args))
        if ok:
            return out
    return fn(x, *args)


# ---------------------------------------------------------------------------------------------
# The memory-lean autograd function.


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _cast(args: tuple, dtype: torch.dtype) -> tuple:
    return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


class KANLinearFunction(torch.autograd.Function):
    """``y = [act(x), phi(x)] @ W^T + b`` saving only ``x``, ``W`` and the basis constants.

    ``apply(x (N, in), weight (out, in*m), bias (out,) | None, act, phi_fn, both_fn, *basis_args)``;
    the matmul runs in ``weight.dtype``, the basis in float32 (or float64 for float64 inputs).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, act, phi_fn, both_fn, *basis_args):
        cd = _compute_dtype(x.dtype)
        feats = run_fused(build_features, x.to(cd), act, phi_fn, weight.dtype, *_cast(basis_args, cd))
        y = feats @ weight.t()
        if bias is not None:
            y = y + bias
        tensor_args = [a for a in basis_args if torch.is_tensor(a)]
        ctx.save_for_backward(x, weight, *tensor_args)
        ctx.template = [None if torch.is_tensor(a) else a for a in basis_args]
        ctx.act, ctx.phi_fn, ctx.both_fn = act, phi_fn, both_fn
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, *tensor_args = ctx.saved_tensors
        it = iter(tensor_args)
        cd = _compute_dtype(x.dtype)
        args = _cast(tuple(next(it) if a is None else a for a in ctx.template), cd)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        xc = x.to(cd)
        grad_x = grad_w = grad_b = None
        feats = None
        if need_x:
            grad_f = (grad_y @ weight).to(cd).unflatten(-1, (x.shape[-1], -1))
            if need_w:
                feats, grad_x = run_fused(
                    features_and_input_grad, xc, ctx.act, ctx.both_fn, grad_f, weight.dtype, *args
                )
            else:
                grad_x = run_fused(input_grad, xc, ctx.act, ctx.both_fn, grad_f, *args)
            grad_x = grad_x.to(x.dtype)
        if need_w:
            if feats is None:
                feats = run_fused(build_features, xc, ctx.act, ctx.phi_fn, weight.dtype, *args)
            grad_w = grad_y.t() @ feats
        if need_b and ctx.has_bias:
            grad_b = grad_y.sum(0)
        return (grad_x, grad_w, grad_b, None, None, None) + (None,) * len(ctx.template)
