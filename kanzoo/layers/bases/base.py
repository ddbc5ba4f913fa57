"""The :class:`Basis` interface and the basis registry.

A basis maps every input feature to ``num_features`` values: ``x[..., in] -> phi[..., in, n]``.
The layer (``KANLinear``/``KANConv``) owns the contraction with its weights, so a basis never
sees ``out_features``.

Bases without trainable parameters may also implement the *functional* form
(:meth:`Basis.functional`): two pure functions of ``x`` plus a tuple of tensors/numbers. The
layers use it for the memory-lean autograd path (only ``x`` is saved for backward, the basis
and its derivative are recomputed there) and for ``torch.compile`` fusion; passing the knots
as tensor arguments lets one compiled kernel serve every layer instance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["Basis", "BasisFunctional", "cast_args", "get_basis", "list_bases", "register_basis"]

# (phi_fn, phi_and_dphi_fn, args): phi_fn(x, *args) -> phi, phi_and_dphi_fn(x, *args) -> (phi, dphi).
BasisFunctional = tuple[Callable[..., torch.Tensor], Callable[..., tuple[torch.Tensor, torch.Tensor]], tuple]

_REGISTRY: dict[str, type[Basis]] = {}


class Basis(nn.Module):
    """Base class of all bases: ``forward(x[..., in]) -> (..., in, num_features)``.

    Subclasses set ``self.num_features`` in ``__init__`` and implement :meth:`forward`. Those
    without trainable parameters should implement :meth:`functional`; :meth:`forward` and
    :meth:`forward_with_derivative` then come for free.

    Args:
        in_features: Number of input features, each expanded independently.
    """

    num_features: int

    def __init__(self, in_features: int) -> None:
        super().__init__()
        if int(in_features) < 1:
            raise ValueError(f"in_features must be a positive integer, got {in_features!r}")
        self.in_features = int(in_features)

    def _apply(self, fn, recurse=True):
        # Knots and other constants stay in float32 when the module is cast to half precision:
        # the basis is evaluated in float32 anyway, and bf16 knots would not even be uniform.
        # Buffers registered with ``register_exact_buffer`` that still hold their initial value
        # are restored exactly (not from a float32 rounding) when cast to float64.
        before = {name: buf for name, buf in self._buffers.items() if buf is not None}
        out = super()._apply(fn, recurse)
        exact = self.__dict__.get("_exact_buffers", {})
        for name, old in before.items():
            new = self._buffers[name]
            if not old.is_floating_point():
                continue
            if new.dtype in (torch.float16, torch.bfloat16):
                self._buffers[name] = old.to(device=new.device, dtype=torch.float32)
            elif new.dtype == torch.float64 and old.dtype != torch.float64 and name in exact:
                ref = exact[name]
                if old.shape == ref.shape and torch.equal(old.cpu(), ref.to(old.dtype)):
                    self._buffers[name] = ref.to(new.device)
        return out

    def register_exact_buffer(self, name: str, value: torch.Tensor, persistent: bool = True) -> None:
        """Register a float32 buffer from a float64 ``value`` that ``.double()`` restores exactly."""
        if "_exact_buffers" not in self.__dict__:
            self._exact_buffers = {}
        if value.is_meta:
            # Built on the meta device (e.g. by transformers' from_pretrained): there is no value
            # to keep; the buffer is filled from the checkpoint.
            self._exact_buffers.pop(name, None)
        else:
            self._exact_buffers[name] = value.detach().to(torch.float64).cpu().contiguous()
        self.register_buffer(name, value.to(torch.float32).contiguous(), persistent=persistent)

    def parameter_roles(self) -> dict[str, str]:
        """Role of every trainable parameter of the basis: ``"coefficient"`` by default.

        Basis parameters (e.g. the rational numerator/denominator of GR-KAN) shape the
        univariate function itself; they are the learned counterpart of the twin's fixed,
        parameter-free activation, so the default optimiser recipe does not decay them
        (decay would pull the function towards zero, not towards the twin's activation).
        A subclass may override this to give some parameters another role.
        """
        return {name: "coefficient" for name, _ in self.named_parameters()}

    def functional(self) -> BasisFunctional | None:
        """Return ``(phi_fn, phi_and_dphi_fn, args)`` or ``None`` when not available.

        ``None`` means the basis has trainable parameters (or no closed-form derivative) and
        the layer falls back to plain autograd.
        """
        return None

    @staticmethod
    def compute_dtype(x: torch.Tensor) -> torch.dtype:
        """Basis values are computed in float32 for half-precision inputs."""
        return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.functional()
        if spec is None:
            raise NotImplementedError(f"{type(self).__name__} must implement forward()")
        phi_fn, _, args = spec
        cd = self.compute_dtype(x)
        return phi_fn(x.to(cd), *cast_args(args, cd))

    def forward_with_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the basis values and their derivatives w.r.t. ``x``, both ``(..., in, n)``."""
        spec = self.functional()
        if spec is None:
            raise NotImplementedError(f"{type(self).__name__} has no closed-form derivative")
        _, both_fn, args = spec
        cd = self.compute_dtype(x)
        return both_fn(x.to(cd), *cast_args(args, cd))


def cast_args(args: tuple, dtype: torch.dtype) -> tuple:
    """Cast the floating-point tensors of a functional argument tuple to ``dtype``."""
    return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def register_basis(name: str) -> Callable[[type[Basis]], type[Basis]]:
    """Class decorator registering a :class:`Basis` subclass under ``name``."""

    def deco(cls: type[Basis]) -> type[Basis]:
        if not (isinstance(cls, type) and issubclass(cls, Basis)):
            raise TypeError(f"register_basis expects a Basis subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"basis name {name!r} is already registered to {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        cls.registered_name = name
        return cls

    return deco


def list_bases() -> list[str]:
    """Names of all registered bases, sorted."""
    return sorted(_REGISTRY)


def get_basis(spec: str | type[Basis] | functools.partial | Callable[..., Any]) -> Callable[..., Basis]:
    """Resolve a basis spec to a constructor ``(in_features, **kwargs) -> Basis``.

    Args:
        spec: A registered name (``"bspline"``, ``"rbf"``, ``"chebyshev"``, ``"fourier"``,
            ``"rational"``), a :class:`Basis` subclass, or a ``functools.partial`` (or any
            callable) building one.

    Returns:
        The constructor; call it as ``ctor(in_features, **basis_kwargs)``.
    """
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _REGISTRY:
            raise ValueError(f"unknown basis {spec!r}; registered bases: {', '.join(list_bases())}")
        return _REGISTRY[key]
    if isinstance(spec, type):
        if not issubclass(spec, Basis):
            raise TypeError(f"basis class must subclass kanzoo.layers.bases.Basis, got {spec.__name__}")
        return spec
    if callable(spec):
        return spec
    raise TypeError(f"basis spec must be a name, a Basis subclass or a partial, got {type(spec).__name__}")
