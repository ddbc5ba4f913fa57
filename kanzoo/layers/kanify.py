"""Turn the linear and convolution layers of any model into KAN layers.

:func:`kanify` walks a model, picks the ``nn.Linear``, ``nn.Conv1d/2d/3d`` and Hugging Face
``Conv1D`` modules whose qualified names match glob patterns, and replaces each of them in place
by a :class:`~kanzoo.layers.kan_linear.KANLinear` or ``KANConvNd`` of the same shape, dtype and
device.

With ``preserve=True`` every new layer starts as the layer it replaces: its base branch uses the
identity activation and carries the old weight and bias, and its spline weights are zero, so
``y = W x + b`` exactly and the model's outputs are unchanged. The spline branch still receives
gradients (``dy/dW_s = s * B(x)`` does not depend on ``W_s``), so training moves the model away
from its starting point through the new edge functions.
"""

from __future__ import annotations

import fnmatch
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["KanifySummary", "kanify"]

logger = logging.getLogger(__name__)

_CONV_TYPES: dict[type[nn.Module], int] = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
# Modules that use their children's weight tensors directly (fused attention / encoder fast
# paths) instead of calling them: their linear children cannot be replaced.
_WEIGHT_READERS = (nn.MultiheadAttention, nn.TransformerEncoderLayer)


@dataclass
class KanifySummary:
    """What one :func:`kanify` call did; stored as ``model.kanify_summary``.

    Attributes:
        swapped: Qualified names of the replaced modules, in traversal order.
        skipped: ``name -> reason`` for modules that matched the patterns but were left alone.
        tied: Names of replaced modules whose weight was shared with another module (with
            ``preserve=True`` the shared ``Parameter`` is reused as ``base_weight``).
        new_parameters: Number of parameters of the new layers minus those of the old ones.
    """

    swapped: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    tied: list[str] = field(default_factory=list)
    new_parameters: int = 0

    @property
    def num_swapped(self) -> int:
        return len(self.swapped)

    def __str__(self) -> str:
        text = f"kanify: swapped {self.num_swapped} layer(s), {self.new_parameters:+,d} parameters"
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: " + ", ".join(
                f"{n} ({r})" for n, r in list(self.skipped.items())[:5]
            )
            if len(self.skipped) > 5:
                text += ", ..."
        return text


def _hf_conv1d_type() -> type[nn.Module] | None:
    # A model holding a transformers Conv1D has imported transformers already; never import it here.
    mod = sys.modules.get("transformers.pytorch_utils")
    return getattr(mod, "Conv1D", None) if mod is not None else None


def _kind(module: nn.Module) -> tuple[str | None, str | None]:
    """``(kind, None)`` for a swappable module, ``(None, reason)`` for a near miss, else ``(None, None)``."""
    hf_conv1d = _hf_conv1d_type()
    if isinstance(module, nn.Linear):
        if type(module).forward is not nn.Linear.forward:
            return None, f"{type(module).__name__} overrides nn.Linear.forward"
        if isinstance(module.weight, nn.parameter.UninitializedParameter):
            return None, "lazy module not initialized yet"
        return "linear", None
    if hf_conv1d is not None and isinstance(module, hf_conv1d):
        if type(module).forward is not hf_conv1d.forward:
            return None, f"{type(module).__name__} overrides Conv1D.forward"
        return "hf_conv1d", None
    for conv_type in _CONV_TYPES:
        if isinstance(module, conv_type):
            if type(module).forward is not conv_type.forward:
                return None, f"{type(module).__name__} overrides {conv_type.__name__}.forward"
            if isinstance(module.weight, nn.parameter.UninitializedParameter):
                return None, "lazy module not initialized yet"
            return "conv", None
    return None, None


def _as_patterns(spec: str | Iterable[str] | None, what: str) -> list[str] | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return [spec]
    pats = list(spec)
    if not all(isinstance(p, str) for p in pats):
        raise ValueError(f"kanify: {what} must be a glob string or a list of glob strings, got {spec!r}")
    return pats


def _matches(name: str, patterns: list[str] | None) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns) if patterns else False


def _build(kind: str, old: nn.Module, basis: Any, preserve: bool, kan_kwargs: dict[str, Any]) -> nn.Module:
    from .factory import with_basis_rules  # the factory owns the per-basis rules (e.g. no GR-KAN scaler)
    from .kan_conv import KANConv1d, KANConv2d, KANConv3d
    from .kan_linear import KANLinear

    kwargs = with_basis_rules({"basis": basis}, dict(kan_kwargs))
    if preserve:
        kwargs["base_activation"] = "identity"
    has_bias = old.bias is not None
    if kind == "linear":
        new = KANLinear(old.in_features, old.out_features, bias=has_bias, **kwargs)
    elif kind == "hf_conv1d":
        nx, nf = old.weight.shape
        new = KANLinear(nx, nf, bias=has_bias, **kwargs)
    else:
        dim = next(d for t, d in _CONV_TYPES.items() if isinstance(old, t))
        cls = {1: KANConv1d, 2: KANConv2d, 3: KANConv3d}[dim]
        new = cls(
            old.in_channels,
            old.out_channels,
            old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=old.groups,
            bias=has_bias,
            padding_mode=old.padding_mode,
            **kwargs,
        )
    return new.to(device=old.weight.device, dtype=old.weight.dtype)


@torch.no_grad()
def _copy_into(kind: str, old: nn.Module, new: nn.Module, reuse_weight: bool) -> None:
    """Make ``new`` compute exactly ``old``: identity base branch with the old weights, zero spline."""
    if new.base_weight is None:
        raise ValueError("kanify(preserve=True) needs a base branch; got base_activation=None")
    weight = old.weight
    if kind == "hf_conv1d":
        weight = weight.t()  # Conv1D stores (in, out)
    if tuple(weight.shape) != tuple(new.base_weight.shape):
        raise ValueError(
            f"kanify: cannot carry a weight of shape {tuple(weight.shape)} into base_weight of shape "
            f"{tuple(new.base_weight.shape)}"
        )
    if reuse_weight and kind != "hf_conv1d":
        new.base_weight = old.weight  # keep the tie with the other module(s) sharing it
    else:
        new.base_weight.copy_(weight)
    if old.bias is not None:
        new.bias.copy_(old.bias)
    new.spline_weight.zero_()


def kanify(
    model: nn.Module,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    basis: Any = "bspline",
    preserve: bool = False,
    **kan_kwargs: Any,
) -> nn.Module:
    """Replace linear/convolution layers of ``model`` by KAN layers, in place.

    Swapped types: ``nn.Linear`` -> ``KANLinear``; ``nn.Conv1d/2d/3d`` -> ``KANConv1d/2d/3d``
    (same kernel size, stride, padding, dilation, groups, padding mode); transformers' ``Conv1D``
    (GPT-2 style, weight stored as ``(in, out)``) -> ``KANLinear``. Subclasses that override
    ``forward`` (weight-standardized convs, quantized or LoRA layers ...) and the linear children
    of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` (whose fused paths read the
    weights directly) are left alone and listed in the summary. Modules inside existing KAN
    layers are never touched.

    Args:
        model: Any ``nn.Module``; modified in place.
        include: Glob pattern(s) (``fnmatch``, matched against qualified module names such as
            ``"transformer.h.0.mlp.c_fc"``), e.g. ``"*.mlp.*"``. ``None`` selects every
            swappable module.
        exclude: Glob pattern(s) of names to leave alone (applied after ``include``).
        basis: Basis of the new layers (name, ``Basis`` subclass or partial).
        preserve: Start every new layer as the layer it replaces (identity base branch with the
            old weight and bias, zero spline weights), so the outputs are unchanged at init.
            Requires ``base_activation`` to be absent or ``"identity"``. A weight shared with
            another module (tied embeddings) is reused as ``base_weight``, keeping the tie.
        **kan_kwargs: Forwarded to the KAN layer constructors (``grid_size``, ``spline_order``,
            ``grid_range``, ``base_activation``, ``spline_scaler`` ...).

    Returns:
        The same ``model`` object (or, when ``model`` itself is a swappable layer, its
        replacement). ``model.kanify_summary`` holds a :class:`KanifySummary`.

    Raises:
        ValueError: No module matched, or ``preserve=True`` with a non-identity base activation.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"kanify expects an nn.Module, got {type(model).__name__}")
    if preserve and kan_kwargs.get("base_activation", "identity") != "identity":
        raise ValueError(
            "kanify(preserve=True) keeps the old layer in an identity base branch; "
            f"base_activation={kan_kwargs['base_activation']!r} is not allowed (use 'identity' or omit it)"
        )
    include_p = _as_patterns(include, "include")
    exclude_p = _as_patterns(exclude, "exclude") or []

    from ._protocol import is_kan_layer

    # Every place a module is referenced from: a module may be registered under several names.
    names: dict[int, list[str]] = {}
    parents: dict[int, list[tuple[nn.Module, str]]] = {}
    modules: dict[int, nn.Module] = {}
    kan_prefixes: list[str] = []
    reader_children: dict[int, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if is_kan_layer(module):
            kan_prefixes.append(name + ".")
        if isinstance(module, _WEIGHT_READERS):
            reader_children.update({id(c): module for c in module.children()})
        names.setdefault(id(module), []).append(name)
        modules[id(module)] = module
        for child_name, child in module._modules.items():
            if child is not None:
                parents.setdefault(id(child), []).append((module, child_name))

    # How often each parameter is referenced, to detect weights tied across modules.
    param_refs: dict[int, int] = {}
    for module in modules.values():
        for p in module._parameters.values():
            if p is not None:
                param_refs[id(p)] = param_refs.get(id(p), 0) + 1

    summary = KanifySummary()
    selected: list[tuple[int, str, str]] = []
    candidates: list[str] = []
    for mid, module_names in names.items():
        name = module_names[0]
        if any(n.startswith(p) for n in module_names for p in kan_prefixes):
            continue
        kind, reason = _kind(module := modules[mid])
        if kind is None and reason is None:
            continue
        candidates.append(name)
        picked = include_p is None or any(_matches(n, include_p) for n in module_names)
        if not picked or any(_matches(n, exclude_p) for n in module_names):
            continue
        if mid in reader_children:
            reason = (
                "its parent (nn.MultiheadAttention / nn.TransformerEncoderLayer) reads its weight directly"
            )
            kind = None
        if kind is None:
            summary.skipped[name] = reason
            continue
        selected.append((mid, name, kind))

    if not selected:
        shown = ", ".join(candidates[:8]) + (", ..." if len(candidates) > 8 else "")
        raise ValueError(
            f"kanify: no nn.Linear/nn.ConvNd/Conv1D module matched include={include!r} exclude={exclude!r}"
            + (f"; skipped: {summary.skipped}" if summary.skipped else "")
            + (f"; candidate names: {shown}" if candidates else "; the model has no such module")
        )

    root = model
    for mid, name, kind in selected:
        old = modules[mid]
        new = _build(kind, old, basis, preserve, kan_kwargs)
        tied = param_refs.get(id(old.weight), 0) > 1
        if tied:
            summary.tied.append(name)
            if not preserve:
                logger.warning("kanify: %s shared its weight with another module; the tie is broken", name)
        if preserve:
            _copy_into(kind, old, new, reuse_weight=tied)
        summary.new_parameters += sum(p.numel() for p in new.parameters()) - sum(
            p.numel() for p in old.parameters()
        )
        if old is model:
            root = new
        for parent, child_name in parents.get(mid, []):
            setattr(parent, child_name, new)
        summary.swapped.append(name)

    root.kanify_summary = summary
    logger.info("%s", summary)
    return root
