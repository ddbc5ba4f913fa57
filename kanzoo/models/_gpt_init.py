"""Initialisation and loading helpers of KAN-GPT (meta-device loading, strict key check, length limit)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers.utils.import_utils import is_tracing

from kanzoo.layers import Basis, KANLinear
from kanzoo.models._base import CheckpointMismatchError

__all__ = [
    "check_forward_inputs",
    "check_generation_length",
    "fresh_copy",
    "is_kan_module",
    "load_pretrained",
    "reset_unloaded",
]


def is_kan_module(module: nn.Module) -> bool:
    """KAN layers and bases (kanzoo's own or user subclasses), whose init the layer code owns."""
    return isinstance(module, (KANLinear, Basis)) or type(module).__module__.startswith("kanzoo.layers")


def fresh_copy(module: nn.Module) -> nn.Module | None:
    """A newly constructed CPU twin of ``module``, rebuilt from the attributes named like its
    constructor arguments (bases store them so: ``in_features``, ``num_groups``, ``grid_size``...)."""
    kwargs: dict[str, Any] = {}
    args: list[Any] = []
    for p in inspect.signature(type(module).__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(module, p.name):
            if p.default is p.empty:
                return None
            continue
        value = getattr(module, p.name)
        if isinstance(value, (torch.Tensor, nn.Module)):
            return None
        if p.kind == p.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[p.name] = value
    try:
        with torch.device("cpu"):
            return type(module)(*args, **kwargs)
    except Exception:
        return None


@torch.no_grad()
def reset_unloaded(module: nn.Module) -> None:
    """Give a KAN module's tensors that were not loaded their freshly initialised values.

    ``from_pretrained`` builds the model on the meta device, so a KAN layer's constructor could not
    fill its spline weights, scalers, rational coefficients or knot grids, and non-persistent
    buffers (such as a rational basis' group index) are never in a checkpoint. Tensors that came
    from the checkpoint carry ``_is_hf_initialized`` and are kept. The fresh values come from the
    module's own ``reset_parameters`` when it has one, else from a newly built copy of the module.
    """
    own = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
    todo = [n for n, t in own.items() if t is not None and not getattr(t, "_is_hf_initialized", False)]
    if not todo:
        return
    if callable(getattr(module, "reset_parameters", None)):
        loaded = {n: t.detach().clone() for n, t in own.items() if n not in todo and t is not None}
        module.reset_parameters()
        for name, value in loaded.items():
            getattr(module, name).copy_(value)
        return
    fresh = fresh_copy(module)
    if fresh is None:
        raise RuntimeError(
            f"cannot initialise {', '.join(todo)} of {type(module).__name__}: it has no reset_parameters() "
            "and cannot be rebuilt from its attributes"
        )
    fresh_tensors = dict(fresh.named_parameters(recurse=False)) | dict(fresh.named_buffers(recurse=False))
    for name in todo:
        getattr(module, name).copy_(fresh_tensors[name].to(own[name].dtype))


def check_forward_inputs(
    position_ids: torch.Tensor,
    longest: int | torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    total: int | torch.Tensor,
    limit: int,
) -> None:
    """One clear error for a 2D mask that does not cover the cache, or positions past ``limit``.

    Eager mode only: compiled, exported and meta-device runs skip these data-dependent checks
    (``generate`` refuses too long requests before it starts).

    Args:
        position_ids: The positions of the new tokens.
        longest: An upper bound of the positions known from the shapes (when the forward derived
            them), or ``None``; only when it exceeds ``limit`` are the values read.
        attention_mask: The mask the forward was given.
        total: Cached plus new tokens, which a 2D mask must cover.
        limit: ``n_positions``.
    """
    if is_tracing(position_ids) or position_ids.device.type == "meta":
        return
    if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] != int(total):
        expected = (attention_mask.shape[0], int(total))
        raise ValueError(
            f"attention_mask must have shape (batch, past + length) = {expected}, "
            f"got {tuple(attention_mask.shape)}"
        )
    if not position_ids.numel() or (longest is not None and int(longest) <= limit):
        return
    top = int(position_ids.max())
    if top >= limit:
        raise ValueError(
            f"position {top} is beyond the {limit} positions this model was built for (n_positions); "
            "shorten the input or the generation length"
        )


def check_generation_length(positions: int, limit: int) -> None:
    """Refuse, before generating, a ``generate`` call that would feed more than ``limit`` positions.

    Args:
        positions: Positions the forward passes will see (``generate``'s ``max_cache_length``: the
            prompt plus all new tokens but the last).
        limit: The model's ``n_positions``.
    """
    if positions > limit:
        raise ValueError(
            f"generate() would feed {positions} positions to a model with n_positions={limit}: ask for "
            f"{positions - limit} fewer new tokens (max_new_tokens) or shorten the prompt"
        )


def load_pretrained(
    load: Callable[..., Any], owner: str, args: tuple, kwargs: dict[str, Any], *, strict: bool | None
) -> Any:
    """Run transformers' ``from_pretrained`` (``load``) and apply kanzoo's strict key check.

    Args:
        load: The bound ``PreTrainedModel.from_pretrained``.
        owner: Class name for the error message.
        args: Positional arguments for ``load``.
        kwargs: Keyword arguments for ``load`` (transformers' options, e.g. ``output_loading_info``,
            ``ignore_mismatched_sizes``, ``state_dict``, ``config``).
        strict: ``None`` is strict for files (a directory or hub id) unless
            ``output_loading_info=True``; see ``KanGPTPreTrainedModel.from_pretrained``.

    Returns:
        The model, or ``(model, loading_info)`` with ``output_loading_info=True``.
    """
    want_info = bool(kwargs.pop("output_loading_info", False))
    source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
    if strict is None:
        strict = source is not None and not want_info
    model, info = load(*args, output_loading_info=True, **kwargs)
    if strict:
        kinds = ["missing_keys", "unexpected_keys"]
        if not kwargs.get("ignore_mismatched_sizes", False):
            kinds.append("mismatched_keys")
        problems = []
        for kind in kinds:
            keys = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(kind) or ())
            if keys:
                problems.append(f"{kind.replace('_', ' ')}: {', '.join(keys)}")
        if problems:
            where = f"checkpoint {source}" if source is not None else "state_dict"
            raise CheckpointMismatchError(f"{where} does not fit {owner}: " + "; ".join(problems))
    return (model, info) if want_info else model
