"""Fused feature construction and the memory-lean autograd functions of the KAN layers.

The KAN layer computes ``y = F(x) @ W^T + b`` where ``F(x) = [act(x), B(x)]`` has width
``in * (1 + n)`` and ``W = [W_b, W_s * s]`` (per-input blocks). Storing ``F`` for backward is what
makes naive KAN layers memory hungry, and building ``F`` and ``W`` with many small eager kernels
(plus their autograd graph) is what makes them slow. Here:

* :class:`KANLinearFunction` takes the parameters as they are (``base_weight``, ``spline_weight``,
  ``spline_scaler``, ``bias``) and builds ``W`` itself, once, directly in the matmul dtype
  (bf16 under autocast) without an autograd graph; backward returns the parameter gradients
  split analytically from ``dW = dy^T F`` (``d W_b = dW[:, :, 0]``, ``d W_s = dW_s * s``,
  ``d s = sum_f dW_s * W_s``) in one fused pass. It saves ``x`` and references to the
  parameters; ``W`` itself is kept only when it is no larger than the feature map it multiplies
  (``weight.numel() <= x.numel() * m``), else it is rebuilt in backward (one parameter-sized
  pass, cheaper than holding a wide layer's weight copy for every microbatch). Backward
  recomputes ``F`` (for ``dW``) and the elementwise derivative (for ``dx = sum_f (dy W)_f *
  dF_f/dx``) in one kernel. Nothing is cached across calls, so optimizer steps,
  ``load_state_dict``, in-place edits and ``.to()`` need no invalidation.
* A backward pass with grad mode on (``create_graph=True``: physics-informed losses, gradient
  penalties, ``gradgradcheck``) differentiates the plain formula instead
  (:func:`plain_linear`), so second and third derivatives w.r.t. the input and the parameters
  are exact autograd derivatives.
* The elementwise work (basis values, activation, their derivatives, the reduction over
  features, the weight build and the gradient split) runs through ``torch.compile(dynamic=True)``
  when enabled: one compiled kernel per (kernel, basis function, activation), shared by every
  layer instance and batch size because knots are passed as tensors. Disable with
  ``KANZOO_COMPILE=0`` or :func:`set_compile`; if compilation fails the eager functions are used
  silently. Tensors smaller than :data:`COMPILE_MIN_NUMEL` elements run eagerly: there the
  compiled call's fixed cost (guards, wrappers) exceeds the work.
* :func:`run_kernel` gives the same compile-or-eager dispatch to any pure elementwise kernel
  ``fn(x, *args)``; the rational basis uses it for its fused forward and backward.

Nothing here depends on the CPU's instruction set; the eager/compile threshold was tuned on an
AMD EPYC (Zen 3, AVX2) and is the same for every device.
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
    "COMPILE_MIN_NUMEL",
    "KANLinearFunction",
    "activation",
    "activation_with_derivative",
    "build_features",
    "build_weight",
    "compile_enabled",
    "run_fused",
    "plain_fused_weight",
    "plain_linear",
    "run_kernel",
    "linear_function",
    "set_compile",
    "set_triton",
    "split_weight_grad",
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
#
# Feature layout ("group-block"): the inputs are split into ``groups`` consecutive groups (1 for
# linear layers, a convolution's ``groups``); within a group of ``cg`` inputs the features are
# ``[act(x_0) .. act(x_{cg-1}), B(x_0)_0 .. B(x_0)_{n-1}, B(x_1)_0, ...]``. Keeping the
# activation block contiguous lets the compiler vectorize it (interleaving it with the basis
# values forced a scalar loop with strided stores, the costliest part of the expansion at
# activation-heavy shapes).


def _group_cat(a: torch.Tensor, phi: torch.Tensor, groups: int) -> torch.Tensor:
    """``a (..., C)``, ``phi (..., C, n)`` -> group-block features ``(..., C * (1 + n))``."""
    if groups == 1:
        return torch.cat([a, phi.flatten(-2)], dim=-1)
    a = a.unflatten(-1, (groups, -1))
    phi = phi.unflatten(-2, (groups, -1)).flatten(-2)
    return torch.cat([a, phi], dim=-1).flatten(-2)


def _group_split(grad_f: torch.Tensor, cin: int, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`_group_cat` for gradients: ``(..., C * m) -> ((..., C), (..., C, n))``."""
    if groups == 1:
        return grad_f[..., :cin], grad_f[..., cin:].unflatten(-1, (cin, -1))
    g = grad_f.unflatten(-1, (groups, -1))
    cg = cin // groups
    return g[..., :cg].flatten(-2), g[..., cg:].unflatten(-1, (cg, -1)).flatten(-3, -2)


def build_features(
    x: torch.Tensor, act: str | None, phi_fn: Callable, out_dtype: torch.dtype, groups: int, *args
) -> torch.Tensor:
    """``x (..., in) -> [act(x) | phi(x)]`` (group-block layout, width ``in * (1 + n)``) in ``out_dtype``."""
    phi = phi_fn(x, *args)
    if act is None:
        return phi.flatten(-2).to(out_dtype)
    return _group_cat(activation(x, act), phi, groups).to(out_dtype)


def input_grad(
    x: torch.Tensor, act: str | None, both_fn: Callable, grad_f: torch.Tensor, groups: int, *args
) -> torch.Tensor:
    """``dx = sum_f grad_f[..., f] * dF_f/dx`` with ``grad_f (..., in * m)`` in the feature layout."""
    _, dphi = both_fn(x, *args)
    if act is None:
        return (grad_f.unflatten(-1, (x.shape[-1], -1)).to(dphi.dtype) * dphi).sum(-1)
    _, da = activation_with_derivative(x, act)
    g_a, g_phi = _group_split(grad_f.to(da.dtype), x.shape[-1], groups)
    return g_a * da + (g_phi * dphi).sum(-1)


def features_and_input_grad(
    x: torch.Tensor,
    act: str | None,
    both_fn: Callable,
    grad_f: torch.Tensor,
    out_dtype: torch.dtype,
    groups: int,
    *args,
):
    """Both :func:`build_features` and :func:`input_grad` from one pass over ``x``."""
    phi, dphi = both_fn(x, *args)
    if act is None:
        g_phi = grad_f.unflatten(-1, (x.shape[-1], -1)).to(dphi.dtype)
        return phi.flatten(-2).to(out_dtype), (g_phi * dphi).sum(-1)
    a, da = activation_with_derivative(x, act)
    g_a, g_phi = _group_split(grad_f.to(da.dtype), x.shape[-1], groups)
    return _group_cat(a, phi, groups).to(out_dtype), g_a * da + (g_phi * dphi).sum(-1)


# ---------------------------------------------------------------------------------------------
# Optional torch.compile of the kernels above.

_FALSE = {"0", "false", "no", "off", ""}
_state = {"enabled": os.environ.get("KANZOO_COMPILE", "1").strip().lower() not in _FALSE}
_MISSING = object()
_compiled: dict[tuple, Callable | None] = {}
#: Inputs with fewer elements run the elementwise kernels eagerly (a compiled call costs ~0.1 ms of
#: guards and wrappers; measured on AMD EPYC Zen 3, see benchmarks/README.md).
COMPILE_MIN_NUMEL = 0


def set_triton(enabled: bool) -> None:
    """Turn the Triton kernels of CUDA ``KANLinear`` calls on or off (``KANZOO_TRITON=0``)."""
    from . import _triton

    _triton.set_enabled(enabled)


def linear_function(x: torch.Tensor, act: str | None, phi_fn: Callable, args: tuple) -> type:
    """The autograd Function for a ``KANLinear`` call: the Triton kernels for supported CUDA
    calls (see ``kanzoo.layers._triton``), else :class:`KANLinearFunction`."""
    if x.is_cuda:
        from . import _triton

        if _triton.supported(x, phi_fn, args, act):
            return _triton.KANLinearTriton
    return KANLinearFunction


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


#: Shape-specialised compiled copies kept per kernel before further shapes share one kernel
#: compiled for dynamic sizes (a model has a handful of layer shapes; a sweep over many should
#: not compile without end).
MAX_SHAPE_SPECIALIZATIONS = 16
_shapes_seen: dict[tuple, int] = {}


def _call_compiled(key: tuple, fn: Callable, tag: str, call_args: tuple) -> tuple[bool, object]:
    """Call the cached compiled copy of ``fn`` on ``call_args``; ``(False, None)`` when unavailable.

    Tensor arguments are detached and their first dimension (the batch) is marked dynamic: one
    kernel serves every batch size. The other dimensions of the first argument are part of the
    cache key, so each layer shape gets a kernel with static feature sizes: a kernel compiled for
    dynamic feature sizes (what dynamo makes of a second shape) measured 2-3x slower on the CPU
    (AMD EPYC Zen 3; the vectorized loops lose their static trip counts). Past
    :data:`MAX_SHAPE_SPECIALIZATIONS` shapes of one kernel, new shapes share a dynamic one.
    Python ints in ``call_args`` stay static so loops unroll.
    """
    first = call_args[0]
    inner = tuple(first.shape[1:]) if torch.is_tensor(first) else ()
    full_key = (*key, inner)
    compiled = _compiled.get(full_key, _MISSING)
    if compiled is _MISSING:
        count = _shapes_seen.get(key, 0)
        if count >= MAX_SHAPE_SPECIALIZATIONS:
            full_key = (*key, "dynamic")
            compiled = _compiled.get(full_key, _MISSING)
        if compiled is _MISSING:
            _shapes_seen[key] = count + 1
            suffix = "x".join(map(str, inner)) if full_key[-1] != "dynamic" else "dynamic"
            compiled = _compiled[full_key] = torch.compile(_fresh_copy(fn, f"{tag}_{suffix}"), dynamic=None)
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
        _compiled[full_key] = None
        return False, None


def run_fused(fn: Callable, x: torch.Tensor, act: str | None, basis_fn: Callable, *args):
    """Run ``fn(x, act, basis_fn, *args)`` compiled when enabled and possible, else eagerly.

    Empty or meta inputs, an enclosing ``torch.compile`` and ``create_graph`` backward passes (grad
    mode on) always run eagerly: the enclosing compiler fuses by itself, double backward needs autograd.
    """
    if _can_compile(x) and x.numel() >= COMPILE_MIN_NUMEL:
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
# Weights: the fused matrix built without autograd, and its gradient split back.


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _cast(args: tuple, dtype: torch.dtype) -> tuple:
    return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def plain_fused_weight(
    base_weight: torch.Tensor | None, spline_weight: torch.Tensor, spline_scaler: torch.Tensor | None
) -> torch.Tensor:
    """``[W_b | W_s * s]`` as differentiable ops: ``(out, in, n, *k) -> (out, in * m, *k)``.

    Columns follow the feature layout of :func:`build_features` within one group of inputs
    (a convolution weight's input axis is already per group): the ``in`` base columns, then
    the ``in * n`` spline columns (input-major).
    """
    w = spline_weight
    if spline_scaler is not None:
        w = w * spline_scaler.unsqueeze(2)
    w = w.flatten(1, 2)
    if base_weight is not None:
        w = torch.cat([base_weight, w], dim=1)
    return w


def build_weight(
    base_weight: torch.Tensor | None,
    spline_weight: torch.Tensor,
    spline_scaler: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """:func:`plain_fused_weight` in ``dtype``, written in one pass and outside autograd.

    Eagerly the product ``W_s * s`` is written straight into its slice of the result (no
    temporary, no separate cast to bf16); under an enclosing ``torch.compile`` the plain
    expression is returned for the compiler to fuse. Convolution weights come out
    channels-last (``(out, *k, in * m)`` in memory), the layout the convolution runs in, so
    oneDNN does not reorder them on every call.
    """
    with torch.no_grad():
        if torch.compiler.is_compiling():
            return plain_fused_weight(base_weight, spline_weight, spline_scaler).to(dtype)
        out, cin, n, *kernel = spline_weight.shape
        nk = len(kernel)
        if nk == 0 and base_weight is None and spline_scaler is None:
            return spline_weight.to(dtype).flatten(1, 2)  # a view when no cast is needed
        nb = cin if base_weight is not None else 0
        # Memory order (out, *k, in * m), viewed as (out, in * m, *k).
        w = spline_weight.new_empty((out, *kernel, nb + cin * n), dtype=dtype)
        w = w.permute(0, nk + 1, *range(1, nk + 1))
        spline_part = w[:, nb:].unflatten(1, (cin, n))
        if spline_scaler is None:
            spline_part.copy_(spline_weight)
        else:
            torch.mul(spline_weight, spline_scaler.unsqueeze(2), out=spline_part)
        if base_weight is not None:
            w[:, :nb].copy_(base_weight)
        return w


def split_weight_grad(
    grad_w: torch.Tensor, has_base: bool, spline_weight: torch.Tensor, spline_scaler: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """``dW (out, in * m, *k)`` -> ``(d base_weight, d spline_weight, d spline_scaler)``.

    ``d W_s = dW_s * s`` and ``d s = sum_f dW_s[..., f, ...] * W_s[..., f, ...]`` (a compile
    target: one pass over ``dW``). Results are in the parameters' dtype.
    """
    out, cin, n, *kernel = spline_weight.shape
    g = grad_w.to(spline_weight.dtype)
    nb = cin if has_base else 0
    g_base = g[:, :cin] if has_base else None
    g_spline = g[:, nb:].unflatten(1, (cin, n))
    if spline_scaler is None:
        return g_base, g_spline, None
    return g_base, g_spline * spline_scaler.unsqueeze(2), (g_spline * spline_weight).sum(2)


def _split(grad_w, has_base, spline_weight, spline_scaler):
    """:func:`split_weight_grad`, compiled when enabled and the weight is large enough."""
    if _state["enabled"] and grad_w.numel() >= COMPILE_MIN_NUMEL:
        ok, out = _call_weight_kernel(split_weight_grad, (grad_w, has_base, spline_weight, spline_scaler))
        if ok:
            return out
    return split_weight_grad(grad_w, has_base, spline_weight, spline_scaler)


def _call_weight_kernel(fn: Callable, call_args: tuple) -> tuple[bool, object]:
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or call_args[0].is_meta:
        return False, None
    return _call_compiled((fn, "weight", None), fn, "weight", call_args)


def keep_weight(weight: torch.Tensor, x: torch.Tensor, m: int) -> bool:
    """Whether backward keeps the built weight (it is no larger than the features ``x`` expands
    to) rather than rebuilding it (a wide layer on a small batch)."""
    return weight.numel() <= x.numel() * m


# ---------------------------------------------------------------------------------------------
# The plain formula (reference, non-functional bases, create_graph backward).


def plain_features(x: torch.Tensor, act: str | None, phi_fn: Callable, groups: int, *args) -> torch.Tensor:
    """:func:`build_features` as plain differentiable ops, ``(..., in) -> (..., in * m)``."""
    phi = phi_fn(x, *args)
    if act is None:
        return phi.flatten(-2)
    return _group_cat(activation(x, act), phi, groups)


def plain_linear(x, base_weight, spline_weight, spline_scaler, bias, mm_dtype, act, phi_fn, *args):
    """The KAN linear map written with differentiable torch ops only (what autograd would store)."""
    cd = _compute_dtype(x.dtype)
    feats = plain_features(x.to(cd), act, phi_fn, 1, *_cast(args, cd)).to(mm_dtype)
    weight = plain_fused_weight(base_weight, spline_weight, spline_scaler).to(mm_dtype)
    return torch.nn.functional.linear(feats, weight, None if bias is None else bias.to(mm_dtype))


def differentiable_grads(ctx, grad_out: torch.Tensor, plain_fn: Callable, inputs: tuple, extra: tuple):
    """Gradients of ``plain_fn(*inputs, *extra)`` w.r.t. the ``inputs`` that need them, with a graph.

    Used by backward passes run with grad mode on (``create_graph=True``): the result is the
    exact autograd derivative of the plain formula, itself differentiable to any order.
    """
    wanted = [i for i, t in enumerate(inputs) if t is not None and ctx.needs_input_grad[i]]
    grads: list = [None] * len(inputs)
    if not wanted:
        return grads
    with torch.enable_grad():
        out = plain_fn(*inputs, *extra)
        wrt = [inputs[i] for i in wanted]
        got = torch.autograd.grad(out, wrt, grad_out, create_graph=True, allow_unused=True)
    for i, g in zip(wanted, got):
        grads[i] = g
    return grads


# ---------------------------------------------------------------------------------------------
# The memory-lean autograd function.


class KANLinearFunction(torch.autograd.Function):
    """``y = [act(x), phi(x)] @ [W_b, W_s * s]^T + b`` saving only ``x`` (and maybe ``W``).

    ``apply(x (N, in), base_weight (out, in) | None, spline_weight (out, in, n),
    spline_scaler (out, in) | None, bias (out,) | None, mm_dtype, act, phi_fn, both_fn,
    *basis_args)``; the matmul runs in ``mm_dtype``, the basis in float32 (float64 for float64
    inputs). Gradients come back in each input's own dtype.
    """

    @staticmethod
    def forward(
        ctx, x, base_weight, spline_weight, spline_scaler, bias, mm_dtype, act, phi_fn, both_fn, *basis_args
    ):
        cd = _compute_dtype(x.dtype)
        m = spline_weight.shape[2] + (base_weight is not None)
        weight = build_weight(base_weight, spline_weight, spline_scaler, mm_dtype)
        feats = run_fused(build_features, x.to(cd), act, phi_fn, mm_dtype, 1, *_cast(basis_args, cd))
        if bias is None:
            y = feats @ weight.t()
        else:
            y = torch.addmm(bias.to(mm_dtype), feats, weight.t())
        # Under an enclosing torch.compile the partitioner decides what to save or recompute.
        kept = weight if torch.compiler.is_compiling() or keep_weight(weight, x, m) else None
        tensor_args = [a for a in basis_args if torch.is_tensor(a)]
        ctx.save_for_backward(x, base_weight, spline_weight, spline_scaler, bias, kept, *tensor_args)
        ctx.template = [None if torch.is_tensor(a) else a for a in basis_args]
        ctx.conf = (mm_dtype, act, phi_fn, both_fn)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, base_weight, spline_weight, spline_scaler, bias, weight, *tensor_args = ctx.saved_tensors
        it = iter(tensor_args)
        basis_args = tuple(next(it) if a is None else a for a in ctx.template)
        mm_dtype, act, phi_fn, both_fn = ctx.conf
        nones = (None,) * (4 + len(basis_args))
        if torch.is_grad_enabled():  # create_graph: exact autograd of the plain formula
            params = (x, base_weight, spline_weight, spline_scaler, bias)
            extra = (mm_dtype, act, phi_fn, *basis_args)
            grads = differentiable_grads(ctx, grad_y, plain_linear, params, extra)
            return (*grads, *nones)
        cd = _compute_dtype(x.dtype)
        args = _cast(basis_args, cd)
        need_x, need_b, need_s, need_c, need_bias = ctx.needs_input_grad[:5]
        need_w = need_b or need_s or need_c
        grad_y = grad_y.to(mm_dtype)
        xc = x.to(cd)
        grad_x = feats = scratch = None
        if need_x:
            if weight is None:
                # Rebuilt here, so after dx its buffer holds dW (one weight-sized allocation less:
                # above glibc's 32 MiB mmap threshold each one is page-faulted in afresh).
                weight = build_weight(base_weight, spline_weight, spline_scaler, mm_dtype)
                fresh = weight.untyped_storage().data_ptr() != spline_weight.untyped_storage().data_ptr()
                scratch = weight if fresh else None  # (never a view of the parameter itself)
            grad_f = grad_y @ weight
            if need_w:
                fn = features_and_input_grad
                feats, grad_x = run_fused(fn, xc, act, both_fn, grad_f, mm_dtype, 1, *args)
            else:
                grad_x = run_fused(input_grad, xc, act, both_fn, grad_f, 1, *args)
            grad_x = grad_x.to(x.dtype)
        g_base = g_spline = g_scaler = None
        if need_w:
            if feats is None:
                feats = run_fused(build_features, xc, act, phi_fn, mm_dtype, 1, *args)
            has_base = base_weight is not None
            reuse = scratch is not None and scratch.is_contiguous() and scratch.dtype == feats.dtype
            grad_w = torch.mm(grad_y.t(), feats, out=scratch) if reuse else grad_y.t() @ feats
            g_base, g_spline, g_scaler = _split(grad_w, has_base, spline_weight, spline_scaler)
            if g_base is not None:
                g_base = g_base.to(base_weight.dtype)
        grad_bias = grad_y.sum(0).to(bias.dtype) if (need_bias and bias is not None) else None
        return (grad_x, g_base, g_spline, g_scaler, grad_bias, *nones)
