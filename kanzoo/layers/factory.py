"""Layer factories: one code path builds a model's KAN variant and its MLP/CNN twin.

A block receives ``linear_layer = get_linear_layer(spec, **kwargs)`` and calls
``linear_layer(in_features, out_features, bias=...)``; the spec decides what gets built.

The factory owns every per-basis rule, so no model has to know them:

* the rational basis (GR-KAN) has one feature per input, so a standalone ``spline_scaler``
  ``(out, in)`` would only duplicate the ``(out, in, 1)`` spline weight: KAN layers with
  ``basis="rational"`` (``"kan_rational"``, or any KAN spec given ``basis="rational"``) are
  built without one unless ``spline_scaler=True`` is passed explicitly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from ._protocol import KANLayer
from .kan_conv import KANConv1d, KANConv2d, KANConv3d
from .kan_linear import KANLinear

__all__ = ["get_conv_layer", "get_linear_layer", "list_layer_specs"]

# name -> (KAN?, default kwargs). "kan_<basis>" selects a basis; "kan_rational" is GR-KAN.
_KAN_SPECS: dict[str, dict] = {
    "kan": {"basis": "bspline"},
    "kan_bspline": {"basis": "bspline"},
    "kan_rbf": {"basis": "rbf"},
    "kan_chebyshev": {"basis": "chebyshev"},
    "kan_fourier": {"basis": "fourier"},
    "kan_rational": {"basis": "rational", "base_activation": None},
}
# Per-basis defaults of the KAN layer options, applied under the caller's explicit kwargs.
_BASIS_RULES: dict[str, dict] = {
    "rational": {"spline_scaler": False},
}
_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_KAN_CONVS = {1: KANConv1d, 2: KANConv2d, 3: KANConv3d}


def list_layer_specs() -> list[str]:
    """String specs accepted by :func:`get_linear_layer` (``"conv"`` replaces ``"linear"`` for convs)."""
    return ["linear", *_KAN_SPECS]


def _basis_name(basis) -> str | None:
    """Registered name of a basis spec (string, Basis class or partial of one), else None."""
    if isinstance(basis, str):
        return basis.lower()
    if isinstance(basis, functools.partial):
        return _basis_name(basis.func)
    name = getattr(basis, "registered_name", None)
    return name if isinstance(name, str) else None


def with_basis_rules(defaults: dict, kwargs: dict) -> dict:
    """``defaults``, then the rules of the basis they select, then the caller's ``kwargs`` (which win)."""
    merged = {**defaults, **kwargs}
    rules = _BASIS_RULES.get(_basis_name(merged.get("basis", "bspline")) or "", {})
    return {**defaults, **rules, **kwargs}


def _is_kan_ctor(spec) -> bool:
    """A KAN layer class, or a ``functools.partial`` of one."""
    func = spec.func if isinstance(spec, functools.partial) else spec
    return isinstance(func, type) and issubclass(func, KANLayer)


def _bind_kan(spec, kwargs: dict) -> Callable[..., nn.Module]:
    """Bind a KAN layer class/partial with the per-basis rules under the explicit arguments."""
    if isinstance(spec, functools.partial):
        if spec.args:
            return _bind(spec, kwargs)
        return functools.partial(spec.func, **with_basis_rules({}, {**spec.keywords, **kwargs}))
    return functools.partial(spec, **with_basis_rules({}, kwargs))


def _bind(ctor: Callable, kwargs: dict) -> Callable[..., nn.Module]:
    return functools.partial(ctor, **kwargs) if kwargs else ctor


def get_linear_layer(
    spec: str | type | functools.partial | Callable = "linear", **kwargs
) -> Callable[..., nn.Module]:
    """Return a constructor ``(in_features, out_features, *, bias=True) -> nn.Module``.

    Args:
        spec: ``"linear"`` (``nn.Linear``), ``"kan"`` (B-spline ``KANLinear``), ``"kan_rbf"``,
            ``"kan_chebyshev"``, ``"kan_fourier"``, ``"kan_rational"`` (GR-KAN: rational basis, no
            base branch, no standalone scaler), or a class / ``functools.partial`` / callable with
            that signature (a KAN layer class or partial of one gets the per-basis rules too).
        **kwargs: Forwarded to the constructor, e.g. ``grid_size=8`` or ``basis="rbf"`` for KAN
            specs, ``device``/``dtype`` for ``nn.Linear``.
    """
    if isinstance(spec, str):
        key = spec.lower()
        if key == "linear":
            return _bind(nn.Linear, kwargs)
        if key in _KAN_SPECS:
            return functools.partial(KANLinear, **with_basis_rules(_KAN_SPECS[key], kwargs))
        raise ValueError(
            f"unknown linear layer spec {spec!r}; choose from {list_layer_specs()} or pass a class"
        )
    if _is_kan_ctor(spec):
        return _bind_kan(spec, kwargs)
    if callable(spec):
        return _bind(spec, kwargs)
    raise TypeError(f"linear layer spec must be a string, class or callable, got {type(spec).__name__}")


def get_conv_layer(
    spec: str | type | functools.partial | Callable = "conv", dim: int = 2, **kwargs
) -> Callable[..., nn.Module]:
    """Return a constructor ``(in_ch, out_ch, kernel_size, *, stride=1, padding=0, dilation=1, groups=1,
    bias=True) -> nn.Module``.

    Args:
        spec: ``"conv"`` (``nn.Conv{dim}d``), ``"kan"`` (B-spline ``KANConv{dim}d``), ``"kan_rbf"``,
            ``"kan_chebyshev"``, ``"kan_fourier"``, ``"kan_rational"``, or a class / partial / callable.
        dim: Spatial dimensions (1, 2 or 3) for the string specs.
        **kwargs: Forwarded to the constructor (e.g. ``padding_mode``, ``grid_size``).
    """
    if dim not in _CONVS:
        raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}")
    if isinstance(spec, str):
        key = spec.lower()
        if key in ("conv", "linear"):
            return _bind(_CONVS[dim], kwargs)
        if key in _KAN_SPECS:
            return functools.partial(_KAN_CONVS[dim], **with_basis_rules(_KAN_SPECS[key], kwargs))
        specs = ["conv", *_KAN_SPECS]
        raise ValueError(f"unknown conv layer spec {spec!r}; choose from {specs} or pass a class")
    if _is_kan_ctor(spec):
        return _bind_kan(spec, kwargs)
    if callable(spec):
        return _bind(spec, kwargs)
    raise TypeError(f"conv layer spec must be a string, class or callable, got {type(spec).__name__}")
