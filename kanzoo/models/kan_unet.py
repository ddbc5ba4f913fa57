"""KAN-UNet: the U-KAN segmentation design with tokenized KAN blocks at the deep stages.

Encoder: ``len(conv_channels)`` convolutional stages (two conv3x3-BN-ReLU, then 2x2 max-pool),
followed by ``len(token_dims)`` tokenized stages. A tokenized stage embeds the map into tokens with
an overlapping stride-2 conv (3x3 kernel, LayerNorm), runs ``depth`` token blocks and normalizes.
A token block is ``x + drop_path(layer(LayerNorm(x)))`` where ``layer`` alternates three token-wise
linear maps (KAN by default, the only part the twin swaps) with depthwise 3x3 conv-BN-ReLU on the
token grid, so every KAN edge function sees local spatial context through the depthwise mixing.

Decoder: starting from the bottleneck, each level applies conv3x3-BN-ReLU twice (the second one
reducing channels to the skip's), upsamples 2x bilinearly and *adds* the matching encoder output;
the deepest ``len(token_dims)`` levels then run a token block again. A last conv pair restores the
input resolution and a 1x1 conv gives the logits: 1 channel (binary, use a sigmoid) or
``num_classes`` channels.

The network stride is ``2 ** (len(conv_channels) + len(token_dims))`` (32 by default); height and
width must be multiples of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kanzoo.layers import get_conv_layer, get_linear_layer
from kanzoo.models._base import KanzooConfig, KanzooModel, matched_width

from ._registry import register_family, register_model

__all__ = ["KANUNet", "KANUNetConfig", "TokenBlock", "TokenKANLayer"]


@dataclasses.dataclass
class KANUNetConfig(KanzooConfig):
    """Configuration of :class:`KANUNet` (and its U-Net/U-MLP twin).

    Args:
        in_chans: Input image channels.
        num_classes: Output channels: 1 for binary segmentation (sigmoid), K for K-class (softmax).
        conv_channels: Channels of the convolutional encoder stages (each halves the resolution).
        token_dims: Token dimensions of the tokenized stages (each halves the resolution again).
        depths: Token blocks per tokenized stage (decoder levels mirror them); defaults to 1 each.
        mlp_ratio: Hidden width of a token layer relative to its token dimension.
        token_layer: Linear spec for the token layers: ``"kan"`` (B-spline), ``"kan_rational"``,
            ``"linear"`` (the twin), ...
        conv_layer: Convolution spec of the encoder/decoder convolutions (``"conv"`` as in U-KAN;
            ``"kan"`` makes them KAN convolutions too).
        layer_kwargs: Extra options for the token layer factory (e.g. ``{"grid_size": 5}``).
        drop_path_rate: Stochastic depth rate, linearly increasing over the token blocks.
        img_size: Nominal input size (FLOP table; any multiple of the stride works).
    """

    in_chans: int = 3
    num_classes: int = 1
    conv_channels: list[int] = dataclasses.field(default_factory=lambda: [8, 16, 32])
    token_dims: list[int] = dataclasses.field(default_factory=lambda: [48, 64])
    depths: list[int] | None = None
    mlp_ratio: float = 1.0
    token_layer: str = "kan"
    conv_layer: str = "conv"
    layer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    drop_path_rate: float = 0.0
    img_size: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.conv_channels or not self.token_dims:
            raise ValueError("conv_channels and token_dims must both be non-empty")
        if self.depths is None:
            self.depths = [1] * len(self.token_dims)
        if len(self.depths) != len(self.token_dims) or min(self.depths) < 1:
            raise ValueError(
                f"depths {self.depths} must give a positive depth per token stage {self.token_dims}"
            )
        if self.num_classes < 1 or self.in_chans < 1:
            raise ValueError(
                f"num_classes and in_chans must be >= 1, got {self.num_classes}, {self.in_chans}"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")

    @property
    def stride(self) -> int:
        """Total downsampling factor; input H and W must be multiples of it."""
        return 2 ** (len(self.conv_channels) + len(self.token_dims))


def _conv_pair(conv: Any, in_ch: int, mid_ch: int, out_ch: int) -> nn.Sequential:
    """conv3x3-BN-ReLU twice."""
    return nn.Sequential(
        conv(in_ch, mid_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(mid_ch),
        nn.ReLU(inplace=True),
        conv(mid_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class DepthwiseMix(nn.Module):
    """Depthwise 3x3 conv - BN - ReLU applied to tokens laid out on their (H, W) grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.ReLU(inplace=True)

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, n, c = tokens.shape
        grid = tokens.transpose(1, 2).reshape(b, c, *hw)
        return self.act(self.bn(self.conv(grid))).flatten(2).transpose(1, 2)


class TokenKANLayer(nn.Module):
    """Three token-wise linear maps (KAN or Linear), each followed by depthwise spatial mixing.

    Args:
        dim: Token dimension (input and output).
        hidden: Hidden width.
        linear_layer: Constructor ``(in, out, *, bias) -> nn.Module`` from ``get_linear_layer``.
    """

    def __init__(self, dim: int, hidden: int, linear_layer: Any) -> None:
        super().__init__()
        self.fc1 = linear_layer(dim, hidden, bias=True)
        self.mix1 = DepthwiseMix(hidden)
        self.fc2 = linear_layer(hidden, hidden, bias=True)
        self.mix2 = DepthwiseMix(hidden)
        self.fc3 = linear_layer(hidden, dim, bias=True)
        self.mix3 = DepthwiseMix(dim)

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = self.mix1(self.fc1(tokens), hw)
        x = self.mix2(self.fc2(x), hw)
        return self.mix3(self.fc3(x), hw)


class DropPath(nn.Module):
    """Stochastic depth: drops whole residual branches per sample while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class TokenBlock(nn.Module):
    """Pre-norm residual token block: ``x + drop_path(TokenKANLayer(LayerNorm(x)))``."""

    def __init__(self, dim: int, hidden: int, linear_layer: Any, *, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layer = TokenKANLayer(dim, hidden, linear_layer)
        self.drop_path = DropPath(drop_path)

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return tokens + self.drop_path(self.layer(self.norm(tokens), hw))


class TokenStage(nn.Module):
    """Token blocks on a feature map: ``(B, C, H, W) -> (B, C, H, W)``, LayerNorm at the end."""

    def __init__(self, dim: int, hidden: int, linear_layer: Any, *, drop_paths: list[float]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TokenBlock(dim, hidden, linear_layer, drop_path=p) for p in drop_paths)
        self.norm = nn.LayerNorm(dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        b, c, h, w = fmap.shape
        tokens = fmap.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens, (h, w))
        return self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)


class PatchEmbed(nn.Module):
    """Overlapping stride-2 patch embedding (3x3 conv) followed by LayerNorm over channels."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class KANUNet(nn.Module, KanzooModel):
    """U-KAN style segmentation network (or its plain-token twin).

    Args:
        config: A :class:`KANUNetConfig` (or dict); defaults when omitted.
        **overrides: Config fields to override (``num_classes=...``, ``in_chans=...``).

    Forward: ``pixel_values`` float ``(B, in_chans, H, W)`` with H, W multiples of ``stride`` ->
    logits ``(B, num_classes, H, W)``.
    """

    config_class = KANUNetConfig
    kanzoo_model = "kan_unet"

    def __init__(self, config: KANUNetConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = self._make_config(config, overrides)
        conv = get_conv_layer(cfg.conv_layer, dim=2)
        linear = get_linear_layer(cfg.token_layer, **cfg.layer_kwargs)
        self.stride = cfg.stride
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        depths = list(cfg.depths or [])
        total = 2 * sum(depths)
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]

        def hidden(dim: int) -> int:
            return max(1, int(round(dim * cfg.mlp_ratio)))

        self.encoder = nn.ModuleList()
        in_ch = cfg.in_chans
        for ch in cfg.conv_channels:
            self.encoder.append(_conv_pair(conv, in_ch, ch, ch))
            in_ch = ch
        self.embeds = nn.ModuleList()
        self.token_stages = nn.ModuleList()
        start = 0
        for dim, depth in zip(cfg.token_dims, depths):
            self.embeds.append(PatchEmbed(in_ch, dim))
            self.token_stages.append(
                TokenStage(dim, hidden(dim), linear, drop_paths=rates[start : start + depth])
            )
            start += depth
            in_ch = dim

        # Decoder levels, deepest first: reduce to the skip's channels, upsample, add the skip.
        skips = list(cfg.conv_channels) + list(cfg.token_dims[:-1])
        self.decoder = nn.ModuleList()
        self.decoder_tokens = nn.ModuleList()
        for level, skip_ch in enumerate(reversed(skips)):
            self.decoder.append(_conv_pair(conv, in_ch, in_ch, skip_ch))
            if level < len(cfg.token_dims):
                depth = depths[len(depths) - 1 - level]
                self.decoder_tokens.append(
                    TokenStage(skip_ch, hidden(skip_ch), linear, drop_paths=rates[start : start + depth])
                )
                start += depth
            in_ch = skip_ch
        self.final = _conv_pair(conv, in_ch, in_ch, in_ch)
        self.head = nn.Conv2d(in_ch, cfg.num_classes, 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_chans, H, W)`` with H, W multiples of the stride."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected pixel_values of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        s = self.stride
        if h % s or w % s:

            def nearest(n: int) -> int:
                return max(s, int(round(n / s)) * s)

            raise ValueError(
                f"KAN-UNet needs H and W divisible by its network stride {s} "
                f"({len(self.encoder)} pooling conv stages + {len(self.embeds)} stride-2 token stages); "
                f"got {h}x{w}. Nearest valid size: {nearest(h)}x{nearest(w)} (resize or pad the input)."
            )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.check_input(pixel_values)
        x = pixel_values
        skips = []
        for stage in self.encoder:
            x = F.max_pool2d(stage(x), 2)
            skips.append(x)
        for i, (embed, stage) in enumerate(zip(self.embeds, self.token_stages)):
            x = stage(embed(x))
            if i < len(self.embeds) - 1:
                skips.append(x)
        for level, block in enumerate(self.decoder):
            x = F.interpolate(block(x), scale_factor=2, mode="bilinear", align_corners=False)
            x = x + skips[-1 - level]
            if level < len(self.decoder_tokens):
                x = self.decoder_tokens[level](x)
        x = F.interpolate(self.final(x), scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(x)


register_family("kan_unet", KANUNet)

# ------------------------------------------------------------------------------------------------
# Registered sizes. Tiny trains on 64x64 procedural shapes on a 2-core CPU in seconds per epoch.
# ------------------------------------------------------------------------------------------------

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(conv_channels=[8, 16, 32], token_dims=[48, 64]),
    "small": dict(conv_channels=[16, 32, 64], token_dims=[96, 128]),
}
_META = dict(task="segmentation", default_data="shapes", data=["shapes", "nuclei"], input_size=(3, 64, 64))


def _build(size: str, token_layer: str, overrides: dict[str, Any]) -> KANUNet:
    return KANUNet(KANUNetConfig.from_dict({**_SIZES[size], "token_layer": token_layer, **overrides}))


def _matched(size: str, overrides: dict[str, Any]) -> KANUNet:
    """The twin with its token hidden width searched to within 5% of the KAN model's parameters."""
    rest = {k: v for k, v in overrides.items() if k != "mlp_ratio"}
    twin_rest = {k: v for k, v in rest.items() if k not in ("layer_kwargs", "token_layer")}
    dim0 = (rest.get("token_dims") or _SIZES[size]["token_dims"])[0]

    def twin(width: int) -> KANUNet:
        return _build(size, "linear", {**twin_rest, "mlp_ratio": width / dim0})

    width = matched_width(
        f"unet_{size}_matched",
        rest,
        target=lambda: _build(size, "kan", rest),
        twin=twin,
        low=1,
        high=64 * dim0,
    )
    return twin(width)


@register_model(family="kan_unet", aliases=("kan_unet",), **_META)
def kan_unet_tiny(**overrides: Any) -> KANUNet:
    """KAN-UNet tiny: conv stages 8/16/32, B-spline KAN token stages 48/64 (stride 32)."""
    return _build("tiny", "kan", overrides)


@register_model(family="kan_unet", **_META)
def kan_unet_small(**overrides: Any) -> KANUNet:
    """KAN-UNet small: conv stages 16/32/64, B-spline KAN token stages 96/128 (stride 32)."""
    return _build("small", "kan", overrides)


@register_model(family="unet", twin_of="kan_unet_tiny", aliases=("unet",), **_META)
def unet_tiny(**overrides: Any) -> KANUNet:
    """Twin of kan_unet_tiny with Linear token layers (U-KAN's MLP ablation)."""
    return _build("tiny", "linear", overrides)


@register_model(family="unet", twin_of="kan_unet_small", **_META)
def unet_small(**overrides: Any) -> KANUNet:
    """Twin of kan_unet_small with Linear token layers."""
    return _build("small", "linear", overrides)


@register_model(family="unet", twin_of="kan_unet_tiny", **_META)
def unet_tiny_matched(**overrides: Any) -> KANUNet:
    """Twin of kan_unet_tiny with token hidden width matched to within 5% of its parameters."""
    return _matched("tiny", overrides)


@register_model(family="unet", twin_of="kan_unet_small", **_META)
def unet_small_matched(**overrides: Any) -> KANUNet:
    """Twin of kan_unet_small with token hidden width matched to within 5% of its parameters."""
    return _matched("small", overrides)
