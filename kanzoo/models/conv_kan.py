"""Conv-KAN: a small residual image classifier whose convolutions are KAN convolutions.

Every convolution (stem, the two 3x3 convolutions of each residual block, and the 1x1 projection
shortcuts) is built by ``kanzoo.layers.get_conv_layer(config.conv_layer)``. With ``"kan"`` each
kernel tap applies a learnable univariate function to its input pixel (``KANConv2d``); with
``"conv"`` the same network is an ordinary ResNet-style CNN, the twin (registered as ``cnn_*``).
Batch norm, activations, pooling and the linear head are shared by both.

Layout (ResNet basic blocks, no max-pool; the tiny size uses a stride-2 stem to stay fast on CPU)::

    stem: conv3x3(in_chans -> w0, stride stem_stride) - BN - act
    stage i (i = 0..S-1): depths[i] basic blocks of width w_i, the first one strided by 2 when i > 0
    head: global average pool - dropout - Linear(w_{S-1} -> num_classes)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from kanzoo.layers import get_conv_layer
from kanzoo.models._base import (
    KanzooConfig,
    KanzooModel,
    make_activation,
    matched_width,
)
from kanzoo.models._registry import register_family, register_model

__all__ = ["BasicBlock", "ConvKAN", "ConvKANConfig"]


@dataclasses.dataclass
class ConvKANConfig(KanzooConfig):
    """Configuration of :class:`ConvKAN` (and its CNN twin).

    Args:
        in_chans: Input image channels.
        num_classes: Output classes; 0 gives pooled features.
        base_width: Channels of the stem and first stage.
        stage_multipliers: Width of stage ``i`` is ``base_width * stage_multipliers[i]``.
        depths: Residual blocks per stage.
        conv_layer: Convolution spec for ``get_conv_layer``: ``"kan"`` (B-spline KAN conv),
            ``"conv"`` (plain ``nn.Conv2d``: the twin) or another registered spec.
        layer_kwargs: Extra options for the convolution factory, e.g. ``{"grid_size": 8}``.
        act: Activation after each batch norm: ``"relu"``, ``"silu"``, ``"gelu"``, ``"identity"``.
        stem_stride: Stride of the stem convolution (2 quarters the cost of everything after it).
        drop_rate: Dropout before the classifier.
        img_size: Nominal input size (used for FLOP tables and timm's input_size; any size works).
    """

    in_chans: int = 3
    num_classes: int = 10
    base_width: int = 16
    stage_multipliers: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4])
    depths: list[int] = dataclasses.field(default_factory=lambda: [1, 1, 1])
    conv_layer: str = "kan"
    layer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    act: str = "silu"
    stem_stride: int = 1
    drop_rate: float = 0.0
    img_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.stage_multipliers) != len(self.depths) or not self.depths:
            raise ValueError(
                f"stage_multipliers {self.stage_multipliers} and depths {self.depths} must be "
                "non-empty lists of the same length"
            )
        if min(self.depths) < 1 or min(self.stage_multipliers) < 1 or self.base_width < 1:
            raise ValueError("base_width, stage_multipliers and depths must be positive")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if self.in_chans < 1 or self.num_classes < 0:
            raise ValueError(
                f"in_chans must be >= 1 and num_classes >= 0, got {self.in_chans}, {self.num_classes}"
            )


class ConvNormAct(nn.Sequential):
    """Convolution (from the factory) - BatchNorm - activation."""

    def __init__(
        self,
        conv_layer: Any,
        in_ch: int,
        out_ch: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        act: str = "silu",
    ) -> None:
        super().__init__()
        self.conv = conv_layer(
            in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = make_activation(act)


class BasicBlock(nn.Module):
    """Residual block: conv3x3-BN-act-conv3x3-BN plus (projected) shortcut, then act.

    Args:
        conv_layer: Convolution constructor ``(in, out, k, *, stride, padding, bias)``.
        in_ch: Input channels.
        out_ch: Output channels.
        stride: Stride of the first convolution and of the projection shortcut.
        act: Activation name.
    """

    def __init__(
        self, conv_layer: Any, in_ch: int, out_ch: int, *, stride: int = 1, act: str = "silu"
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(conv_layer, in_ch, out_ch, stride=stride, act=act)
        self.conv2 = conv_layer(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                conv_layer(in_ch, out_ch, 1, stride=stride, padding=0, bias=False), nn.BatchNorm2d(out_ch)
            )
        else:
            self.shortcut = nn.Identity()
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn2(self.conv2(self.conv1(x))) + self.shortcut(x))


class ConvKAN(nn.Module, KanzooModel):
    """Residual image classifier with KAN (or, for the twin, plain) convolutions.

    Args:
        config: A :class:`ConvKANConfig` (or dict); defaults when omitted.
        **overrides: Config fields to override (``num_classes=...``, ``in_chans=...``).

    Forward: ``pixel_values`` float ``(B, in_chans, H, W)`` -> logits ``(B, num_classes)``.
    """

    config_class = ConvKANConfig
    kanzoo_model = "conv_kan"

    def __init__(self, config: ConvKANConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = self._make_config(config, overrides)
        conv = get_conv_layer(cfg.conv_layer, dim=2, **cfg.layer_kwargs)
        widths = [cfg.base_width * m for m in cfg.stage_multipliers]
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.num_features = widths[-1]
        self.stem = ConvNormAct(conv, cfg.in_chans, widths[0], stride=cfg.stem_stride, act=cfg.act)
        stages = []
        in_ch = widths[0]
        for i, (width, depth) in enumerate(zip(widths, cfg.depths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(conv, in_ch, width, stride=stride, act=cfg.act))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(widths[-1], cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()

    # timm-style interface -------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head for ``num_classes`` outputs (0 = features)."""
        self.num_classes = num_classes
        self.config = self.config.replace(num_classes=num_classes)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map ``(B, C, H / (stem_stride * 2^(S-1)), W / (stem_stride * 2^(S-1)))``."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected pixel_values of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}"
            )
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pool(x).flatten(1))
        return x if pre_logits else self.head(x)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(pixel_values))


register_family("conv_kan", ConvKAN)

# ------------------------------------------------------------------------------------------------
# Registered sizes. Tiny trains on 32x32 digits on a 2-core CPU in seconds per epoch.
# ------------------------------------------------------------------------------------------------

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(base_width=12, stage_multipliers=[1, 2, 4], depths=[1, 1, 1], stem_stride=2),
    "small": dict(base_width=16, stage_multipliers=[1, 2, 4], depths=[2, 2, 2]),
}
_META = dict(task="classification", default_data="digits", input_size=(3, 32, 32))


def _build(size: str, conv_layer: str, overrides: dict[str, Any]) -> ConvKAN:
    return ConvKAN(ConvKANConfig.from_dict({**_SIZES[size], "conv_layer": conv_layer, **overrides}))


def _matched(size: str, overrides: dict[str, Any]) -> ConvKAN:
    """The CNN twin with ``base_width`` searched so its parameters are within 5% of the KAN model's.

    ``layer_kwargs`` (KAN options such as ``grid_size``) shape the target but not the twin.
    """
    rest = {k: v for k, v in overrides.items() if k != "base_width"}
    twin_rest = {k: v for k, v in rest.items() if k not in ("layer_kwargs", "conv_layer")}
    width = matched_width(
        f"cnn_{size}_matched",
        rest,
        target=lambda: _build(size, "kan", rest),
        twin=lambda w: _build(size, "conv", {**twin_rest, "base_width": w}),
        low=1,
        high=64 * _SIZES[size]["base_width"],
    )
    return _build(size, "conv", {**twin_rest, "base_width": width})


@register_model(family="conv_kan", aliases=("conv_kan",), **_META)
def conv_kan_tiny(**overrides: Any) -> ConvKAN:
    """Conv-KAN tiny: stride-2 stem, widths 12/24/48, one B-spline KAN basic block per stage."""
    return _build("tiny", "kan", overrides)


@register_model(family="conv_kan", **_META)
def conv_kan_small(**overrides: Any) -> ConvKAN:
    """Conv-KAN small: widths 16/32/64, two B-spline KAN basic blocks per stage."""
    return _build("small", "kan", overrides)


@register_model(family="cnn", twin_of="conv_kan_tiny", aliases=("cnn",), **_META)
def cnn_tiny(**overrides: Any) -> ConvKAN:
    """CNN twin of conv_kan_tiny: identical network with ``nn.Conv2d`` convolutions."""
    return _build("tiny", "conv", overrides)


@register_model(family="cnn", twin_of="conv_kan_small", **_META)
def cnn_small(**overrides: Any) -> ConvKAN:
    """CNN twin of conv_kan_small."""
    return _build("small", "conv", overrides)


@register_model(family="cnn", twin_of="conv_kan_tiny", **_META)
def cnn_tiny_matched(**overrides: Any) -> ConvKAN:
    """CNN twin of conv_kan_tiny widened (base_width searched) to within 5% of its parameters."""
    return _matched("tiny", overrides)


@register_model(family="cnn", twin_of="conv_kan_small", **_META)
def cnn_small_matched(**overrides: Any) -> ConvKAN:
    """CNN twin of conv_kan_small widened to within 5% of its parameters."""
    return _matched("small", overrides)
