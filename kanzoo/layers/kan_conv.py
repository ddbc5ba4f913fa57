"""KAN convolutions for 1, 2 and 3 spatial dimensions, one implementation.

A KAN convolution puts a learnable function on every (input channel, output channel, kernel tap)
edge: ``y[o, p] = sum_{c, t} phi_{o,c,t}(x[c, p + t])``. Since every ``phi`` is a linear
combination of the same per-value features ``[act(x), B_1(x), ..., B_n(x)]``, this equals
expanding each input channel into ``1 + n`` channels, ``(N, C, *S) -> (N, C * (1 + n), *S)``, and
applying one ordinary ``F.conv{1,2,3}d`` whose weight is ``[W_b, W_s * s]``.

Padding semantics: with ``padding_mode="zeros"`` the EXPANDED feature map is zero-padded, so a
padded tap contributes ``phi(pad) = 0`` (not ``phi(0)``, which would be ``act(0) W_b + W_s B(0)``).
This is exactly an ordinary convolution's behaviour for its linear taps. With ``"reflect"``,
``"replicate"`` or ``"circular"`` the input is padded first and padded taps see real values.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._fused import (
    KANLinearFunction,
    _cast,
    _compute_dtype,
    _group_cat,
    _split,
    activation,
    build_features,
    build_weight,
    differentiable_grads,
    features_and_input_grad,
    input_grad,
    keep_weight,
    plain_features,
    plain_fused_weight,
    run_fused,
)
from ._protocol import KANLayer
from .bases import Basis
from .kan_linear import _make_basis, check_base_activation, fused_weight, init_kan_parameters

__all__ = ["KANConv1d", "KANConv2d", "KANConv3d", "KANConvNd"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


def _channels_last(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` in the channels-last layout of a ``dim``-d map (1-d maps: unchanged)."""
    fmt = _CHANNELS_LAST.get(dim)
    return t if fmt is None else t.contiguous(memory_format=fmt)


def plain_conv(x, base_weight, spline_weight, spline_scaler, bias, mm_dtype, conf, act, phi_fn, *args):
    """The KAN convolution as plain differentiable ops (reference and ``create_graph`` backward)."""
    dim, stride, padding, dilation, groups = conf
    cd = _compute_dtype(x.dtype)
    feats = plain_features(x.movedim(1, -1).to(cd), act, phi_fn, groups, *_cast(args, cd)).movedim(-1, 1)
    weight = plain_fused_weight(base_weight, spline_weight, spline_scaler).to(mm_dtype)
    bias = None if bias is None else bias.to(mm_dtype)
    return _CONV[dim](feats.to(mm_dtype), weight, bias, stride, padding, dilation, groups)


class KANConvFunction(torch.autograd.Function):
    """Expansion + convolution saving only ``x`` (and the small fused weight); backward recomputes
    the expansion.

    ``apply(x (N, C, *S), base_weight, spline_weight, spline_scaler, bias, mm_dtype,
    conf=(dim, stride, padding, dilation, groups), act, phi_fn, both_fn, *basis_args)`` with
    integer-tuple ``padding`` (zero padding of the expanded map).

    Layout: the expansion is computed on ``x.movedim(1, -1)`` and written channels-last, so the
    convolution and both its backward products run on channels-last maps whatever the layout of
    ``x`` (the incoming gradient is made channels-last too): mixed layouts make oneDNN reorder
    the 9x-channel maps. Backward is ONE ``aten.convolution_backward`` call for the input and
    weight gradients. Parameter gradients are split from the fused weight's as in
    ``KANLinearFunction``; a backward with grad mode on differentiates :func:`plain_conv`.
    """

    @staticmethod
    def forward(
        ctx, x, base_weight, spline_weight, spline_scaler, bias, mm_dtype, conf, act, phi_fn, both_fn,
        *basis_args,
    ):
        dim, stride, padding, dilation, groups = conf
        cd = _compute_dtype(x.dtype)
        args = _cast(basis_args, cd)
        weight = build_weight(base_weight, spline_weight, spline_scaler, mm_dtype)
        feats = run_fused(build_features, x.movedim(1, -1).to(cd), act, phi_fn, mm_dtype, groups, *args)
        b = None if bias is None else bias.to(mm_dtype)
        y = _CONV[dim](feats.movedim(-1, 1), weight, b, stride, padding, dilation, groups)
        m = weight.shape[1] * groups // x.shape[1]
        kept = weight if torch.compiler.is_compiling() or keep_weight(weight, x, m) else None
        tensor_args = [a for a in basis_args if torch.is_tensor(a)]
        ctx.save_for_backward(x, base_weight, spline_weight, spline_scaler, bias, kept, *tensor_args)
        ctx.template = [None if torch.is_tensor(a) else a for a in basis_args]
        ctx.conf = (mm_dtype, conf, act, phi_fn, both_fn)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, base_weight, spline_weight, spline_scaler, bias, weight, *tensor_args = ctx.saved_tensors
        it = iter(tensor_args)
        basis_args = tuple(next(it) if a is None else a for a in ctx.template)
        mm_dtype, conf, act, phi_fn, both_fn = ctx.conf
        nones = (None,) * (5 + len(basis_args))
        if torch.is_grad_enabled():  # create_graph: exact autograd of the plain formula
            params = (x, base_weight, spline_weight, spline_scaler, bias)
            extra = (mm_dtype, conf, act, phi_fn, *basis_args)
            return (*differentiable_grads(ctx, grad_y, plain_conv, params, extra), *nones)
        dim, stride, padding, dilation, groups = conf
        cd = _compute_dtype(x.dtype)
        args = _cast(basis_args, cd)
        need_x, need_b, need_s, need_c, need_bias = ctx.needs_input_grad[:5]
        need_w = need_b or need_s or need_c
        need_bias = need_bias and bias is not None
        if weight is None:
            weight = build_weight(base_weight, spline_weight, spline_scaler, mm_dtype)
        xl = x.movedim(1, -1).to(cd)
        grad_y = _channels_last(grad_y.to(mm_dtype), dim)
        conv_args = (stride, padding, dilation, False, (0,) * dim, groups)
        feats = grad_x = grad_w = grad_b = None
        if need_x:
            # dx first: its convolution needs only the features' shape, so ONE basis pass then
            # gives both the features (for dW) and dx. One convolution_backward call for both
            # products would need the features before dx, i.e. two basis passes; on AMD EPYC
            # (Zen 3) the single call measured no faster than the two.
            shape = (*xl.shape[:-1], weight.shape[1] * groups)
            placeholder = xl.new_empty(shape, dtype=mm_dtype).movedim(-1, 1)
            grad_f = torch.ops.aten.convolution_backward(
                grad_y, placeholder, weight, None, *conv_args, [True, False, False]
            )[0].movedim(1, -1)
            if need_w:
                fn = features_and_input_grad
                feats, gx = run_fused(fn, xl, act, both_fn, grad_f, mm_dtype, groups, *args)
            else:
                gx = run_fused(input_grad, xl, act, both_fn, grad_f, groups, *args)
            grad_x = gx.movedim(-1, 1).to(x.dtype)
        if need_w or need_bias:
            if feats is None:
                feats = run_fused(build_features, xl, act, phi_fn, mm_dtype, groups, *args)
            bias_sizes = [weight.shape[0]] if need_bias else None
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_y, feats.movedim(-1, 1), weight, bias_sizes, *conv_args, [False, need_w, need_bias]
            )
        g_base = g_spline = g_scaler = None
        if need_w:
            has_base = base_weight is not None
            g_base, g_spline, g_scaler = _split(grad_w, has_base, spline_weight, spline_scaler)
            if g_base is not None:
                g_base = g_base.to(base_weight.dtype)
        if grad_b is not None:
            grad_b = grad_b.to(bias.dtype)
        return (grad_x, g_base, g_spline, g_scaler, grad_b, *nones)


_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(value, dim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        out = (value,) * dim
    else:
        out = tuple(int(v) for v in value)
    if len(out) != dim:
        raise ValueError(f"{name} must be an int or a tuple of {dim} ints, got {value!r}")
    return out


class KANConvNd(KANLayer):
    """Kolmogorov-Arnold convolution over ``dim`` spatial dimensions (drop-in for ``nn.ConvNd``).

    Args:
        in_channels: Input channels ``C``.
        out_channels: Output channels.
        kernel_size: Kernel size (int or tuple).
        dim: Number of spatial dimensions (1, 2 or 3).
        stride: As in ``nn.ConvNd``.
        padding: Int, tuple, ``"same"`` or ``"valid"``, as in ``nn.ConvNd``.
        dilation: As in ``nn.ConvNd``.
        groups: As in ``nn.ConvNd``; a group sees the expansions of its own input channels.
        bias: Add a learnable bias.
        padding_mode: ``"zeros"`` (padded taps contribute 0), ``"reflect"``, ``"replicate"``
            or ``"circular"`` (input padded before the expansion).
        basis: Basis spec, as for ``KANLinear``.
        base_activation: ``"silu"``, ``"gelu"``, ``"identity"`` or ``None``.
        spline_scaler: Learn a standalone per-edge (per tap) spline scale.
        spline_init_scale: Spline weights start uniform in ``±scale / sqrt(fan_in)``.
        **basis_kwargs: Forwarded to the basis.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        *,
        dim: int = 2,
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        basis: str | type | functools.partial | Basis = "bspline",
        base_activation: str | None = "silu",
        spline_scaler: bool = True,
        spline_init_scale: float | None = None,
        **basis_kwargs,
    ) -> None:
        super().__init__()
        if dim not in _CONV:
            raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}")
        if in_channels < 1 or out_channels < 1 or groups < 1:
            raise ValueError("in_channels, out_channels and groups must be >= 1")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by "
                f"groups ({groups})"
            )
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.dim = dim
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _tuple(kernel_size, dim, "kernel_size")
        self.stride = _tuple(stride, dim, "stride")
        self.dilation = _tuple(dilation, dim, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding string must be 'same' or 'valid', got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = _tuple(padding, dim, "padding")
        self.padding_mode = padding_mode
        self.base_activation = check_base_activation(base_activation)
        self.basis = _make_basis(basis, self.in_channels, basis_kwargs)
        n = self.basis.num_features
        cin = self.in_channels // self.groups
        k = self.kernel_size
        self.base_weight = nn.Parameter(torch.empty(out_channels, cin, *k)) if self.base_activation else None
        self.spline_weight = nn.Parameter(torch.empty(out_channels, cin, n, *k))
        self.spline_scaler = nn.Parameter(torch.empty(out_channels, cin, *k)) if spline_scaler else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        if spline_init_scale is None:
            spline_init_scale = 0.1 if self.base_activation else 1.0
        self.spline_init_scale = float(spline_init_scale)
        self.reset_parameters()

    @property
    def in_features(self) -> int:
        """Alias of ``in_channels`` (the basis' input count)."""
        return self.in_channels

    @property
    def out_features(self) -> int:
        """Alias of ``out_channels``."""
        return self.out_channels

    def reset_parameters(self) -> None:
        """``nn.ConvNd``-style init of base weight and bias; small uniform spline weights."""
        init_kan_parameters(self, fan_in=(self.in_channels // self.groups) * math.prod(self.kernel_size))

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"bias={self.bias is not None}, padding_mode={self.padding_mode!r}, "
            f"base_activation={self.base_activation!r}"
        )
        return s

    def effective_spline_weight(self) -> torch.Tensor:
        """``spline_weight * spline_scaler`` broadcast over the basis axis: ``(out, in/g, n, *k)``."""
        if self.spline_scaler is None:
            return self.spline_weight
        return self.spline_weight * self.spline_scaler.unsqueeze(2)

    def fused_weight(self) -> torch.Tensor:
        """The ``(out, in/g * (1 + n), *k)`` weight of the expanded convolution."""
        return fused_weight(self.base_weight, self.spline_weight, self.spline_scaler)

    def _explicit_padding(self) -> tuple[int, ...]:
        """``F.pad`` amounts (last dim first) for the non-zero padding modes."""
        if self.padding == "valid":
            return (0,) * (2 * self.dim)
        pads = []
        for i in reversed(range(self.dim)):
            if self.padding == "same":
                total = self.dilation[i] * (self.kernel_size[i] - 1)
                pads += [total // 2, total - total // 2]
            else:
                pads += [self.padding[i], self.padding[i]]
        return tuple(pads)

    def _check_input(self, x: torch.Tensor) -> torch.dtype:
        """Raise ``ValueError`` for a bad eager input; return the convolution dtype.

        Under ``torch.fx`` tracing (``x`` a ``Proxy``) the checks are skipped and the parameters'
        dtype is returned, as in ``KANLinear._check_input``.
        """
        wdtype = self._parameters["spline_weight"].dtype
        if isinstance(x, torch.fx.Proxy):
            return wdtype
        name = type(self).__name__
        expected = f"(N, {self.in_channels}, {_SPATIAL[self.dim]})"
        if not torch.is_tensor(x) or x.dim() not in (self.dim + 1, self.dim + 2):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x)
            raise ValueError(f"{name} expected input of shape {expected}, got {got}")
        channels = x.shape[-self.dim - 1]
        if channels != self.in_channels:
            raise ValueError(f"{name} expected input of shape {expected}, got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} expects a floating-point input of shape {expected}, got {x.dtype}")
        device = x.device.type  # the meta device has no autocast state
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
        if x.dtype != wdtype:
            raise ValueError(
                f"{name} expected input of shape {expected} and dtype {wdtype} (the parameters' dtype), "
                f"got {x.dtype}; cast the input or the layer with .to()"
            )
        return wdtype

    @staticmethod
    def _autocast_off(x: torch.Tensor) -> contextlib.AbstractContextManager:
        """Autocast disabled for ``x``'s device type; a no-op where there is no autocast (meta)."""
        device = x.device.type
        if torch.amp.is_autocast_available(device):
            return torch.autocast(device, enabled=False)
        return contextlib.nullcontext()

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel basis expansion ``(N, C, *S) -> (N, C * (1 + n), *S)`` (plain autograd), in
        the group-block channel order of ``fused_weight()``: per group ``[act(x_c) | B(x_c)]``."""
        xl = x.movedim(1, -1)
        phi = self.basis(xl)
        if self.base_activation is None:
            return phi.flatten(-2).movedim(-1, 1)
        a = activation(xl.to(phi.dtype), self.base_activation)
        return _group_cat(a, phi, self.groups).movedim(-1, 1)

    def _pointwise(self, padding) -> bool:
        """1x1 kernels without padding or groups: a KANLinear over the channels of every pixel."""
        no_pad = padding in ("same", "valid", 0) or all(p == 0 for p in padding)
        return self.groups == 1 and no_pad and all(k == 1 for k in self.kernel_size)

    def _pointwise_forward(self, x: torch.Tensor, mm_dtype: torch.dtype, spec) -> torch.Tensor:
        """A pointwise KAN convolution as ``KANLinearFunction`` on the (strided) pixels, channels-last:
        strided taps are sampled before the expansion (a 1x1 stride-2 shortcut expands a quarter
        of the map) and the convolution becomes one matmul."""
        phi_fn, both_fn, args = spec
        sub = x[(slice(None), slice(None), *[slice(None, None, s) for s in self.stride])].movedim(1, -1)
        o, c = self.out_channels, self.in_channels
        base = None if self.base_weight is None else self.base_weight.view(o, c)
        spline = self.spline_weight.view(o, c, -1)
        scaler = None if self.spline_scaler is None else self.spline_scaler.view(o, c)
        act = self.base_activation
        y = KANLinearFunction.apply(
            sub.reshape(-1, c), base, spline, scaler, self.bias, mm_dtype, act, phi_fn, both_fn, *args
        )
        return y.view(*sub.shape[:-1], o).movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mm_dtype = self._check_input(x)
        unbatched = x.dim() == self.dim + 1
        if unbatched:
            x = x.unsqueeze(0)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._explicit_padding(), mode=self.padding_mode)
            padding: tuple[int, ...] | str = 0
        else:
            padding = self.padding
        spec = self.basis.functional()
        params = (self.base_weight, self.spline_weight, self.spline_scaler, self.bias)
        with self._autocast_off(x):
            if spec is not None and self._pointwise(padding):
                y = self._pointwise_forward(x, mm_dtype, spec)
            elif spec is not None and not isinstance(padding, str):
                phi_fn, both_fn, args = spec
                pad = tuple(padding) if padding else (0,) * self.dim
                conf = (self.dim, self.stride, pad, self.dilation, self.groups)
                act = self.base_activation
                y = KANConvFunction.apply(x, *params, mm_dtype, conf, act, phi_fn, both_fn, *args)
            else:
                weight = self.fused_weight().to(mm_dtype)
                bias = None if self.bias is None else self.bias.to(mm_dtype)
                feats = self.expand(x).to(mm_dtype)
                y = _CONV[self.dim](feats, weight, bias, self.stride, padding, self.dilation, self.groups)
        return y.squeeze(0) if unbatched else y


class KANConv1d(KANConvNd):
    """1-D KAN convolution (see :class:`KANConvNd`; ``dim`` fixed to 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dim=1, **kwargs)


class KANConv2d(KANConvNd):
    """2-D KAN convolution (see :class:`KANConvNd`; ``dim`` fixed to 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dim=2, **kwargs)


class KANConv3d(KANConvNd):
    """3-D KAN convolution (see :class:`KANConvNd`; ``dim`` fixed to 3)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dim=3, **kwargs)
