"""AdamW parameter groups for KAN models and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig

#: Substrings that mark KAN basis coefficients (see the layer contract's parameter naming).
KAN_COEFF_KEYS = ("spline_weight", "spline_scaler", "basis.")

_NORM_TYPES = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._NormBase,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def is_kan_coefficient(name: str) -> bool:
    """Whether parameter ``name`` is a KAN basis coefficient (spline weights/scalers, basis params)."""
    return any(key in name for key in KAN_COEFF_KEYS)


def classify_parameters(model: nn.Module) -> dict[str, list[str]]:
    """Split trainable parameter names into ``decay``, ``no_decay`` and ``kan`` groups.

    - ``kan``: KAN basis coefficients (names containing ``spline_weight``, ``spline_scaler`` or
      ``basis.``), e.g. ``ffn.fc1.spline_weight`` or ``act.basis.numerator``.
    - ``no_decay``: biases, parameters of normalization layers, embeddings (``nn.Embedding`` or
      a name containing ``embed``/``pos_embed``/``cls_token``) and every other tensor with fewer
      than 2 dimensions (gains, scalars).
    - ``decay``: the remaining matrices (linear/conv weights, KAN ``base_weight``).

    Tied parameters appear once, under the first name that reaches them.
    """
    groups: dict[str, list[str]] = {"decay": [], "no_decay": [], "kan": []}
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            lowered = full.lower()
            if is_kan_coefficient(full):
                groups["kan"].append(full)
            elif (
                param.ndim < 2
                or p_name == "bias"
                or isinstance(module, _NORM_TYPES)
                or isinstance(module, nn.Embedding)
                or "embed" in lowered
                or "cls_token" in lowered
                or lowered.endswith(("wte.weight", "wpe.weight"))
            ):
                groups["no_decay"].append(full)
            else:
                groups["decay"].append(full)
    return groups


def param_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """AdamW parameter groups for ``model`` following :func:`classify_parameters`.

    Embeddings get weight decay only when ``config.decay_embeddings``. Every group carries a
    ``name`` key and its ``lr`` (KAN coefficients: ``lr * kan_lr_mult``); empty groups are dropped.
    """
    names = classify_parameters(model)
    params = dict(model.named_parameters())
    # named_parameters() dedups tied weights under the same first name as named_modules().
    embed_names = set()
    if config.decay_embeddings:
        for mod_name, module in model.named_modules():
            if isinstance(module, nn.Embedding):
                embed_names.add(f"{mod_name}.weight" if mod_name else "weight")
        names["decay"] += [n for n in names["no_decay"] if n in embed_names]
        names["no_decay"] = [n for n in names["no_decay"] if n not in embed_names]
    spec = [
        ("decay", config.weight_decay, config.lr),
        ("no_decay", 0.0, config.lr),
        ("kan", config.kan_weight_decay, config.lr * config.kan_lr_mult),
    ]
    groups = []
    for name, wd, lr in spec:
        if names[name]:
            groups.append(
                {"name": name, "params": [params[n] for n in names[name]], "weight_decay": wd, "lr": lr}
            )
    return groups


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups`; raises ValueError if the model has nothing to train."""
    groups = param_groups(model, config)
    if not groups:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    kwargs = {}
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    if config.fused and on_cuda:
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, **kwargs)


def lr_factor(step: int, *, total_steps: int, schedule: ScheduleConfig) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warmup from ``1/(warmup+1)`` to 1 over ``warmup`` steps, then ``constant``, ``linear``
    or half-``cosine`` decay from 1 to ``min_lr_ratio`` at ``total_steps - 1``.
    """
    warmup = schedule.warmup_steps
    if warmup is None:
        warmup = int(round(schedule.warmup_ratio * total_steps))
    warmup = max(0, min(int(warmup), total_steps - 1))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule.name == "constant":
        return 1.0
    span = max(1, total_steps - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = schedule.min_lr_ratio
    if schedule.name == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, schedule: ScheduleConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor` to every group's own base learning rate."""
    # A partial (not a callable object) so LambdaLR.state_dict stores no schedule parameters:
    # resuming with a different max_steps follows the new schedule from the restored step.
    fn: Callable[[int], float] = functools.partial(lr_factor, total_steps=int(total_steps), schedule=schedule)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
