"""Pieces shared by the vision families (Conv-KAN, KAN-UNet, KAN-ViT), torch only.

- :func:`check_image`: the input check of ``forward``. A module calling it registers it as a
  ``torch.fx`` leaf function (``torch.fx.wrap("check_image")`` at its top level), so a
  symbolically traced model keeps the check as one graph node that checks the real input when the
  graph runs, and the traced forward has no Python branch on shapes.
- :class:`DropPath`: stochastic depth.
- :class:`GlobalPool`: timm's ``global_pool`` choices (``"avg"``, ``"max"``, ``"avgmax"``,
  ``"catavgmax"``, ``""``) for NCHW feature maps.
- :func:`take_indices`: timm's reading of ``forward_intermediates(indices=...)``.
- :func:`checkpoint`: gradient checkpointing that leaves BatchNorm running statistics as a plain
  forward leaves them (the recomputation in backward would otherwise update them a second time).
- :func:`factory_context`, :func:`split_factory_kwargs`: timm's ``device=``/``dtype=`` factory
  arguments (build directly on a device, ``"meta"`` included), next to the config overrides.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.fx
import torch.utils.checkpoint
from torch import nn

__all__ = [
    "POOL_TYPES",
    "DropPath",
    "GlobalPool",
    "check_image",
    "checkpoint",
    "factory_context",
    "split_factory_kwargs",
    "take_indices",
]

POOL_TYPES = ("avg", "max", "avgmax", "catavgmax", "")


def check_image(x: torch.Tensor, in_chans: int, stride: int = 1, model: str = "model") -> torch.Tensor:
    """Return ``x`` unchanged if it is ``(B, in_chans, H, W)`` with H, W multiples of ``stride``.

    Raises:
        ValueError: One line naming the expected and the actual shape (and, for a stride, the
            nearest valid size).
    """
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != in_chans:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"expected pixel_values of shape (B, {in_chans}, H, W), got {got}")
    h, w = x.shape[-2:]
    if h % stride or w % stride:

        def nearest(n: int) -> int:
            return max(stride, int(round(n / stride)) * stride)

        raise ValueError(
            f"{model} needs H and W divisible by its network stride {stride}; got {h}x{w}. "
            f"Nearest valid size: {nearest(h)}x{nearest(w)} (resize or pad the input)."
        )
    return x


class DropPath(nn.Module):
    """Stochastic depth: drops whole residual branches per sample while training.

    Args:
        p: Probability of dropping a sample's branch; kept branches are scaled by ``1 / (1 - p)``.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GlobalPool(nn.Module):
    """Global pooling of an NCHW map: ``(B, C, H, W) -> (B, C)`` (``(B, 2C)`` for ``"catavgmax"``).

    Args:
        pool_type: ``"avg"``, ``"max"``, ``"avgmax"`` (mean of both), ``"catavgmax"`` (both
            concatenated), or ``""`` (no pooling: the map passes through unchanged).
    """

    def __init__(self, pool_type: str = "avg") -> None:
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"global_pool must be one of {POOL_TYPES}, got {pool_type!r}")
        self.pool_type = pool_type

    def feature_multiplier(self) -> int:
        """Output channels per input channel (2 for ``"catavgmax"``)."""
        return 2 if self.pool_type == "catavgmax" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "":
            return x
        if self.pool_type == "avg":
            return x.mean((2, 3))
        peak = x.amax((2, 3))
        if self.pool_type == "max":
            return peak
        if self.pool_type == "avgmax":
            return 0.5 * (x.mean((2, 3)) + peak)
        return torch.cat([x.mean((2, 3)), peak], dim=1)

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}"


@contextlib.contextmanager
def _restore_buffers(modules: Sequence[nn.Module]) -> Iterator[None]:
    saved = [(b, b.clone()) for m in modules for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def checkpoint(fn: Callable[..., Any], *args: Any, modules: Sequence[nn.Module]) -> Any:
    """``fn(*args)`` without storing its activations; backward recomputes them.

    Non-reentrant ``torch.utils.checkpoint`` with the RNG state preserved (the recomputation draws
    the same dropout / drop-path masks). The buffers of ``modules`` (those ``fn`` runs) are
    restored after the recomputation, so BatchNorm running statistics are updated once per
    forward, exactly as without checkpointing.
    """
    return torch.utils.checkpoint.checkpoint(
        fn,
        *args,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), _restore_buffers(modules)),
    )


def take_indices(num: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """Absolute feature-level indices as timm's ``feature_take_indices`` reads ``indices``.

    ``None``: all ``num`` levels; an int ``n``: the last ``n``; a sequence: those levels (negative
    ones count from the end). Returns the indices and the largest of them.
    """
    if indices is None:
        indices = num
    if isinstance(indices, int):
        if not 0 < indices <= num:
            raise ValueError(f"the last {indices} of {num} feature levels were requested")
        take = list(range(num - indices, num))
    else:
        take = [i + num if i < 0 else i for i in indices]
        if not take or not all(0 <= i < num for i in take):
            raise ValueError(f"feature indices {list(indices)} out of range for {num} levels")
    return take, max(take)


@contextlib.contextmanager
def factory_context(device: Any = None) -> Iterator[None]:
    """Create tensors on ``device`` (a no-op for ``None``), as timm's ``device=`` factory argument does."""
    if device is None:
        yield
    else:
        with torch.device(device):
            yield


FACTORY_KWARGS = ("device", "dtype")


def split_factory_kwargs(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a registered constructor's keyword arguments into ``(config overrides, {device, dtype})``."""
    factory = {k: overrides[k] for k in FACTORY_KWARGS if k in overrides}
    return {k: v for k, v in overrides.items() if k not in factory}, factory
