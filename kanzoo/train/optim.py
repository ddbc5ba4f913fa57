"""AdamW parameter groups by parameter role, and the warmup + cosine learning-rate schedule.

Every parameter's role comes from :func:`kanzoo.layers.roles.parameter_roles` (declared by the
layer that owns it), never from its name. The default recipe treats a KAN model and its MLP/CNN
twin alike:

* ``"weight"`` (``nn.Linear``/``nn.ConvNd`` weights and a KAN layer's ``base_weight`` and
  ``spline_weight`` alike): decayed with ``weight_decay``;
* ``"embedding"``: decayed only with ``decay_embeddings``;
* ``"bias"``, ``"gain"`` (norm weights, a KAN layer's ``spline_scaler``), ``"coefficient"``
  (basis parameters such as GR-KAN's rational coefficients): not decayed.

Two KAN-specific exceptions exist as explicit options, both off by default:
``kan_weight_decay`` (a different decay for the KAN layers' weight tensors) and ``kan_lr_mult``
(a learning-rate multiplier for every parameter of a KAN layer). Only when one of them changes a
KAN parameter's settings does it go into a ``kan_decay``/``kan_no_decay`` group; by default the
KAN model's groups are the twin's ``decay``/``no_decay``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn

from kanzoo.layers.roles import kan_parameter_names, parameter_roles

from .config import OptimConfig, ScheduleConfig

_GROUP_ORDER = ("decay", "no_decay", "kan_decay", "kan_no_decay")


def _assign(model: nn.Module, config: OptimConfig) -> list[tuple[str, nn.Parameter, str, float, float]]:
    """``(name, parameter, group, weight_decay, lr)`` for every trainable parameter (tied ones once)."""
    roles = parameter_roles(model)
    kan = kan_parameter_names(model)
    out = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        role = roles[name]
        decays = role == "weight" or (role == "embedding" and config.decay_embeddings)
        group = "decay" if decays else "no_decay"
        wd = float(config.weight_decay) if decays else 0.0
        lr = float(config.lr)
        if name in kan:
            kan_wd = wd if not decays or config.kan_weight_decay is None else float(config.kan_weight_decay)
            kan_lr = lr * float(config.kan_lr_mult)
            if (kan_wd, kan_lr) != (wd, lr):
                group, wd, lr = f"kan_{group}", kan_wd, kan_lr
        out.append((name, param, group, wd, lr))
    return out


def classify_parameters(model: nn.Module, config: OptimConfig | None = None) -> dict[str, list[str]]:
    """Names of the trainable parameters in each optimiser group of :func:`param_groups`.

    Keys: ``decay`` and ``no_decay`` always, plus ``kan_decay``/``kan_no_decay`` when a KAN option
    of ``config`` (default: ``OptimConfig()``) changes a KAN parameter's settings.
    """
    config = config or OptimConfig()
    groups: dict[str, list[str]] = {"decay": [], "no_decay": []}
    for name, _, group, _, _ in _assign(model, config):
        groups.setdefault(group, []).append(name)
    return groups


def param_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """AdamW parameter groups of ``model`` by parameter role (see the module docstring).

    Every group carries ``name``, ``params``, ``weight_decay`` and ``lr``; empty groups are dropped.
    """
    by_group: dict[str, dict] = {}
    for _, param, group, wd, lr in _assign(model, config):
        entry = by_group.setdefault(group, {"name": group, "params": [], "weight_decay": wd, "lr": lr})
        entry["params"].append(param)
    return [by_group[g] for g in _GROUP_ORDER if g in by_group]


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
