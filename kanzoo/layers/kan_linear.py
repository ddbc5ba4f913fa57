"""``KANLinear``: a Kolmogorov-Arnold layer that is a drop-in for ``nn.Linear``.

``y = W_b act(x) + (W_s * s) B(x) + bias``, evaluated as ONE matmul of the concatenated features
``[act(x) | B(x)]`` (width ``in * (1 + n)``: the ``in`` activations, then the ``in * n`` basis
values input-major) with the concatenated weights ``[W_b | W_s * s]``.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._fused import ACTIVATIONS, activation, linear_function, plain_fused_weight
from ._protocol import KANLayer
from .bases import Basis, get_basis

__all__ = ["KANLinear", "check_base_activation", "fused_weight"]


def check_base_activation(base_activation: str | None) -> str | None:
    """Validate and normalise a ``base_activation`` argument."""
    if base_activation is None:
        return None
    if not isinstance(base_activation, str) or base_activation.lower() not in ACTIVATIONS:
        raise ValueError(f"base_activation must be one of {ACTIVATIONS} or None, got {base_activation!r}")
    return base_activation.lower()


def fused_weight(
    base_weight: torch.Tensor | None, spline_weight: torch.Tensor, spline_scaler: torch.Tensor | None
) -> torch.Tensor:
    """Concatenate ``[W_b | W_s * s]``: ``(out, in, [1 +] n, *kernel) -> (out, in * m, *kernel)``.

    Works for linear ``(out, in)``/``(out, in, n)`` and conv ``(out, in, *k)``/``(out, in, n, *k)``
    weight shapes. Differentiable (plain autograd); the layers' fast path builds the same matrix
    without autograd (``kanzoo.layers._fused.build_weight``).
    """
    return plain_fused_weight(base_weight, spline_weight, spline_scaler)


def _make_basis(basis: str | type | functools.partial | Basis, in_features: int, kwargs: dict) -> Basis:
    if isinstance(basis, Basis):
        if kwargs:
            raise ValueError(f"basis kwargs {sorted(kwargs)} given together with a Basis instance")
        if basis.in_features != in_features:
            raise ValueError(f"basis was built for {basis.in_features} inputs, the layer has {in_features}")
        return basis
    try:
        return get_basis(basis)(in_features, **kwargs)
    except TypeError as err:
        raise ValueError(f"invalid arguments for basis {basis!r}: {err}") from err


def init_kan_parameters(layer: nn.Module, *, fan_in: int) -> None:
    """Initialise a KAN layer's parameters the way ``nn.Linear``/``nn.ConvNd`` initialise theirs.

    The base weight gets Kaiming-uniform, the bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, the spline
    weight the same range times ``layer.spline_init_scale``, and the standalone scaler ones.
    """
    bound = 1.0 / math.sqrt(fan_in)
    if layer.base_weight is not None:
        nn.init.kaiming_uniform_(layer.base_weight, a=math.sqrt(5))
    scale = layer.spline_init_scale * bound
    nn.init.uniform_(layer.spline_weight, -scale, scale)
    if layer.spline_scaler is not None:
        nn.init.ones_(layer.spline_scaler)
    if layer.bias is not None:
        nn.init.uniform_(layer.bias, -bound, bound)


class KANLinear(KANLayer):
    """Kolmogorov-Arnold linear layer, a drop-in for ``nn.Linear`` (any leading dimensions).

    Every edge ``i -> j`` carries ``phi_ij(x) = W_b[j, i] act(x) + s[j, i] sum_f W_s[j, i, f] B_f(x)``.
    With the B-spline basis, inputs outside the extended grid get ``B(x) = 0`` (only the base
    branch acts there), so even ±1e6 gives finite outputs.

    Training with a basis that has no trainable parameters (bspline, rbf, chebyshev, fourier)
    saves only ``x`` for backward and recomputes the basis there (see ``kanzoo.layers._fused``).

    Args:
        in_features: Size of each input sample.
        out_features: Size of each output sample.
        bias: Add a learnable bias.
        basis: Basis name (``"bspline"``, ``"rbf"``, ``"chebyshev"``, ``"fourier"``, ``"rational"``),
            a ``Basis`` subclass, a ``functools.partial`` of one, or a ``Basis`` instance.
        base_activation: ``"silu"``, ``"gelu"``, ``"identity"``, or ``None`` for no base branch.
        spline_scaler: Learn a standalone per-edge scale ``s`` of the spline branch.
        spline_init_scale: Spline weights start uniform in ``±spline_init_scale / sqrt(in)``;
            default 0.1 with a base branch and 1.0 without one.
        **basis_kwargs: Forwarded to the basis (e.g. ``grid_size=5, spline_order=3``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        basis: str | type | functools.partial | Basis = "bspline",
        base_activation: str | None = "silu",
        spline_scaler: bool = True,
        spline_init_scale: float | None = None,
        **basis_kwargs,
    ) -> None:
        super().__init__()
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.base_activation = check_base_activation(base_activation)
        self.basis = _make_basis(basis, self.in_features, basis_kwargs)
        n = self.basis.num_features
        self.base_weight = (
            nn.Parameter(torch.empty(out_features, in_features)) if self.base_activation else None
        )
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, n))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features)) if spline_scaler else None
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        if spline_init_scale is None:
            spline_init_scale = 0.1 if self.base_activation else 1.0
        self.spline_init_scale = float(spline_init_scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``-style init of the base weight and bias; small uniform spline weights."""
        init_kan_parameters(self, fan_in=self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, "
            f"base_activation={self.base_activation!r}, spline_scaler={self.spline_scaler is not None}"
        )

    @property
    def num_features(self) -> int:
        """Basis functions per input (``n``)."""
        return self.basis.num_features

    def effective_spline_weight(self) -> torch.Tensor:
        """``spline_weight * spline_scaler[..., None]``, shape ``(out, in, n)``."""
        if self.spline_scaler is None:
            return self.spline_weight
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def fused_weight(self) -> torch.Tensor:
        """The ``(out, in * (1 + n))`` matrix ``[W_b | W_s * s]`` multiplying ``[act(x) | B(x)]``."""
        return fused_weight(self.base_weight, self.spline_weight, self.spline_scaler)

    def _check_input(self, x: torch.Tensor) -> torch.dtype:
        """Raise ``ValueError`` for a bad eager input; return the matmul dtype.

        While ``torch.fx`` traces the layer, ``x`` is a ``Proxy`` with no shape or dtype to check:
        the checks are skipped and the parameters' dtype is returned (read from ``_parameters``,
        which the tracer does not proxy). No branch depends on tensor values, so ``torch.compile``
        (``fullgraph=True``), ``torch.export`` and meta tensors see only shape/dtype guards.
        """
        wdtype = self._parameters["spline_weight"].dtype
        if isinstance(x, torch.fx.Proxy):
            return wdtype
        name = type(self).__name__
        if not torch.is_tensor(x):
            raise ValueError(f"{name} expects a tensor of shape (..., {self.in_features}), got {type(x)}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{name} expected input of shape (..., {self.in_features}), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"{name} expects a floating-point input of shape (..., {self.in_features}), got {x.dtype}"
            )
        device = x.device.type  # the meta device has no autocast state
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
        if x.dtype != wdtype:
            raise ValueError(
                f"{name} expected input of shape (..., {self.in_features}) and dtype {wdtype} (the "
                f"parameters' dtype), got {x.dtype}; cast the input or the layer with .to()"
            )
        return wdtype

    @staticmethod
    def _autocast_off(x: torch.Tensor) -> contextlib.AbstractContextManager:
        """Autocast disabled for ``x``'s device type; a no-op where there is no autocast (meta)."""
        device = x.device.type
        if torch.amp.is_autocast_available(device):
            return torch.autocast(device, enabled=False)
        return contextlib.nullcontext()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mm_dtype = self._check_input(x)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        spec = self.basis.functional()
        params = (self.base_weight, self.spline_weight, self.spline_scaler, self.bias)
        with self._autocast_off(x):
            if spec is not None:
                # The parameters go in as they are: the Function builds the fused weight without
                # an autograd graph and splits its gradient analytically (see _fused.py).
                phi_fn, both_fn, args = spec
                act = self.base_activation
                fn = linear_function(x2, act, phi_fn, args)  # Triton kernels on CUDA, if available
                y = fn.apply(x2, *params, mm_dtype, act, phi_fn, both_fn, *args)
            else:  # bases with trainable parameters (rational): plain autograd
                bias = None if self.bias is None else self.bias.to(mm_dtype)
                y = F.linear(self._features(x2).to(mm_dtype), self.fused_weight().to(mm_dtype), bias)
        return y.reshape(*lead, self.out_features)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Plain-autograd features ``[act(x) | B(x)]`` flattened to ``(..., in * m)``."""
        phi = self.basis(x)
        if self.base_activation is None:
            return phi.flatten(-2)
        a = activation(x.to(phi.dtype), self.base_activation)
        return torch.cat([a, phi.flatten(-2)], dim=-1)
