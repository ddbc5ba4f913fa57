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

As a backbone: the encoder's outputs (every conv stage after its pooling, every token stage) are
described by ``feature_info`` (timm's format: ``num_chs``, ``reduction``, ``module``) and returned
by ``forward_intermediates`` (timm's API); ``forward_features`` is the bottleneck map and
``prune_intermediate_layers`` drops the decoder, so timm's ``FeatureGetterNet(model,
out_indices=...)`` (what ``features_only=True`` builds for timm's ViTs) turns it into a
multi-scale feature extractor. ``set_grad_checkpointing()`` recomputes every encoder and decoder
level in backward.

``variant="ukan"`` reproduces the details of the reference U-KAN (``UKAN`` in CUHK-AIM-Group/U-KAN,
``Seg_UKAN/archs.py``) so its checkpoints import with identical outputs
(:func:`kanzoo.convert.ukan.from_ukan`): the conv3x3 of every conv pair has a bias, the KAN token
layers have none (U-KAN's ``KANLinear`` is efficient-kan's, bias-free; its ``no_kan`` Linear twin
keeps ``nn.Linear``'s bias), the token hidden width equals the token dimension, drop-path rates follow
U-KAN's schedule and the weights start from U-KAN's initialisation. U-KAN's own layout (its
``embed_dims=[e0, e1, e2]``) is ``conv_channels=[e0 // 8, e0 // 4, e0]``, ``token_dims=[e1, e2]``:
see :func:`ukan_layout` and the registered ``kan_unet_ukan_*`` / ``unet_ukan_*`` models.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from kanzoo.layers import KANLinear, get_conv_layer, get_linear_layer, is_kan_layer
from kanzoo.layers.bases.bspline import BSplineBasis
from kanzoo.models._base import KanzooConfig, KanzooModel, matched_width
from kanzoo.models._vision import (
    DropPath,
    check_image,
    checkpoint,
    factory_context,
    split_factory_kwargs,
    take_indices,
)

from ._registry import register_family, register_model

__all__ = ["DropPath", "KANUNet", "KANUNetConfig", "TokenBlock", "TokenKANLayer", "ukan_layout"]

torch.fx.wrap("check_image")  # a traced KAN-UNet keeps its input check as one graph node

_VARIANTS = ("kanzoo", "ukan")


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
        variant: ``"kanzoo"`` (default) or ``"ukan"``: the reference U-KAN's details (conv biases,
            bias-free KAN token layers, ``mlp_ratio`` 1, its drop-path schedule and initialisation).
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
    variant: str = "kanzoo"

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
        if self.variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {self.variant!r}")
        if self.variant == "ukan" and self.mlp_ratio != 1.0:
            raise ValueError(
                f"variant='ukan' has token hidden width equal to the token dimension (mlp_ratio=1.0), "
                f"got mlp_ratio={self.mlp_ratio}"
            )

    @property
    def stride(self) -> int:
        """Total downsampling factor; input H and W must be multiples of it."""
        return 2 ** (len(self.conv_channels) + len(self.token_dims))


def ukan_layout(embed_dims: list[int] | tuple[int, ...]) -> dict[str, list[int]]:
    """The ``conv_channels``/``token_dims`` of U-KAN's ``UKAN(embed_dims=[e0, e1, e2])``.

    Args:
        embed_dims: U-KAN's three widths (its default is ``[256, 320, 512]``, its trainer's
            ``[128, 160, 256]``); ``e0 >= 8``.

    Returns:
        ``{"conv_channels": [e0 // 8, e0 // 4, e0], "token_dims": [e1, e2]}``.
    """
    dims = [int(d) for d in embed_dims]
    if len(dims) != 3 or dims[0] < 8 or min(dims) < 1:
        raise ValueError(f"U-KAN embed_dims must be three widths with embed_dims[0] >= 8, got {embed_dims!r}")
    return {"conv_channels": [dims[0] // 8, dims[0] // 4, dims[0]], "token_dims": dims[1:]}


def _conv_pair(conv: Any, in_ch: int, mid_ch: int, out_ch: int, *, bias: bool = False) -> nn.Sequential:
    """conv3x3-BN-ReLU twice."""
    return nn.Sequential(
        conv(in_ch, mid_ch, 3, padding=1, bias=bias),
        nn.BatchNorm2d(mid_ch),
        nn.ReLU(inplace=True),
        conv(mid_ch, out_ch, 3, padding=1, bias=bias),
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
        grid = tokens.transpose(1, 2).unflatten(2, hw)
        return self.act(self.bn(self.conv(grid))).flatten(2).transpose(1, 2)


class TokenKANLayer(nn.Module):
    """Three token-wise linear maps (KAN or Linear), each followed by depthwise spatial mixing.

    Args:
        dim: Token dimension (input and output).
        hidden: Hidden width.
        linear_layer: Constructor ``(in, out, *, bias) -> nn.Module`` from ``get_linear_layer``.
        bias: Give the three token-wise maps a bias.
    """

    def __init__(self, dim: int, hidden: int, linear_layer: Any, *, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = linear_layer(dim, hidden, bias=bias)
        self.mix1 = DepthwiseMix(hidden)
        self.fc2 = linear_layer(hidden, hidden, bias=bias)
        self.mix2 = DepthwiseMix(hidden)
        self.fc3 = linear_layer(hidden, dim, bias=bias)
        self.mix3 = DepthwiseMix(dim)

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = self.mix1(self.fc1(tokens), hw)
        x = self.mix2(self.fc2(x), hw)
        return self.mix3(self.fc3(x), hw)


class TokenBlock(nn.Module):
    """Pre-norm residual token block: ``x + drop_path(TokenKANLayer(LayerNorm(x)))``."""

    def __init__(
        self, dim: int, hidden: int, linear_layer: Any, *, drop_path: float = 0.0, bias: bool = True
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layer = TokenKANLayer(dim, hidden, linear_layer, bias=bias)
        self.drop_path = DropPath(drop_path)

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return tokens + self.drop_path(self.layer(self.norm(tokens), hw))


class TokenStage(nn.Module):
    """Token blocks on a feature map: ``(B, C, H, W) -> (B, C, H, W)``, LayerNorm at the end."""

    def __init__(
        self, dim: int, hidden: int, linear_layer: Any, *, drop_paths: list[float], bias: bool = True
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TokenBlock(dim, hidden, linear_layer, drop_path=p, bias=bias) for p in drop_paths
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        hw = (fmap.shape[2], fmap.shape[3])
        tokens = fmap.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens, hw)
        return self.norm(tokens).transpose(1, 2).unflatten(2, hw)


class PatchEmbed(nn.Module):
    """Overlapping stride-2 patch embedding (3x3 conv) followed by LayerNorm over channels."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@torch.no_grad()
def _ukan_init_kan(layer: KANLinear) -> None:
    """U-KAN's KANLinear start: standalone spline scale kaiming-uniform, spline weights fitted to noise.

    The spline coefficients are the least-squares fit of uniform noise in ``±0.05 / G`` sampled at the
    ``G + 1`` knots inside the grid range; the base weight keeps kanzoo's (identical) kaiming init.
    """
    if layer.spline_scaler is not None:
        nn.init.kaiming_uniform_(layer.spline_scaler, a=math.sqrt(5))
    basis = layer.basis
    if not isinstance(basis, BSplineBasis):
        return
    k, g = basis.spline_order, basis.grid_size
    points = basis.grid[:, k : k + g + 1].T.to(layer.spline_weight.dtype)  # (G + 1, in)
    noise = (torch.rand(g + 1, layer.in_features, layer.out_features, dtype=points.dtype) - 0.5) * (0.1 / g)
    values = basis(points).transpose(0, 1)  # (in, G + 1, n)
    coeff = torch.linalg.lstsq(values, noise.transpose(0, 1).to(values.device)).solution  # (in, n, out)
    layer.spline_weight.copy_(coeff.permute(2, 0, 1))


@torch.no_grad()
def _ukan_init(module: nn.Module) -> None:
    """U-KAN's initialisation of its token stages and patch embeddings (the conv pairs keep torch's)."""
    if any(p.is_meta for p in module.parameters(recurse=False)):
        return
    if isinstance(module, KANLinear):
        _ukan_init_kan(module)
    elif isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _builds_kan_layer(linear_layer: Any) -> bool:
    """Whether ``linear_layer`` builds KAN layers: one 1x1 layer is built on the meta device
    (no memory, no draw from the random generator) and asked ``is_kan_layer``."""
    with torch.device("meta"):
        return is_kan_layer(linear_layer(1, 1, bias=False))


class KANUNet(nn.Module, KanzooModel):
    """U-KAN style segmentation network (or its plain-token twin).

    Args:
        config: A :class:`KANUNetConfig` (or dict); defaults when omitted.
        device: Create the parameters on this device (``"meta"`` allocates nothing).
        dtype: Cast the parameters to this floating-point dtype after initialisation.
        **overrides: Config fields to override (``num_classes=...``, ``in_chans=...``).

    Forward: ``pixel_values`` float ``(B, in_chans, H, W)`` with H, W multiples of ``stride`` ->
    logits ``(B, num_classes, H, W)``.
    """

    config_class = KANUNetConfig
    kanzoo_model = "kan_unet"

    def __init__(
        self,
        config: KANUNetConfig | dict | None = None,
        *,
        device: Any = None,
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        self.config = cfg = self._make_config(config, overrides)
        conv = get_conv_layer(cfg.conv_layer, dim=2)
        linear = get_linear_layer(cfg.token_layer, **cfg.layer_kwargs)
        self.stride = cfg.stride
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.grad_checkpointing = False
        self.encoder_only = False
        depths = list(cfg.depths or [])
        ukan = cfg.variant == "ukan"
        conv_bias = ukan
        # U-KAN's token layers: efficient-kan's KANLinear has no bias, its no_kan twin's nn.Linear has one.
        token_bias = not (ukan and _builds_kan_layer(linear))
        if ukan:
            # U-KAN: token stage i and decoder token level i share rate i * r / (stages + 1)
            # (linspace(0, r, 3) over its one-block stages: 0 for the first, r / 2 for the second).
            n_stages = len(cfg.token_dims)
            per_stage = [cfg.drop_path_rate * i / n_stages for i in range(n_stages)]
            rates = [r for r, d in zip(per_stage, depths) for _ in range(d)]
            rates += [r for level in range(n_stages) for r in [per_stage[level]] * depths[-1 - level]]
        else:
            total = 2 * sum(depths)
            rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]

        def hidden(dim: int) -> int:
            return max(1, int(round(dim * cfg.mlp_ratio)))

        with factory_context(device):
            self.encoder = nn.ModuleList()
            self.feature_info: list[dict[str, Any]] = []
            in_ch = cfg.in_chans
            for i, ch in enumerate(cfg.conv_channels):
                self.encoder.append(_conv_pair(conv, in_ch, ch, ch, bias=conv_bias))
                self.feature_info.append(dict(num_chs=ch, reduction=2 ** (i + 1), module=f"encoder.{i}"))
                in_ch = ch
            self.embeds = nn.ModuleList()
            self.token_stages = nn.ModuleList()
            start = 0
            for i, (dim, depth) in enumerate(zip(cfg.token_dims, depths)):
                self.embeds.append(PatchEmbed(in_ch, dim))
                self.token_stages.append(
                    TokenStage(
                        dim, hidden(dim), linear, drop_paths=rates[start : start + depth], bias=token_bias
                    )
                )
                reduction = 2 ** (len(cfg.conv_channels) + i + 1)
                self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f"token_stages.{i}"))
                start += depth
                in_ch = dim
            self.num_features = in_ch

            # Decoder levels, deepest first: reduce to the skip's channels, upsample, add the skip.
            skips = list(cfg.conv_channels) + list(cfg.token_dims[:-1])
            self.decoder = nn.ModuleList()
            self.decoder_tokens = nn.ModuleList()
            for level, skip_ch in enumerate(reversed(skips)):
                self.decoder.append(_conv_pair(conv, in_ch, in_ch, skip_ch, bias=conv_bias))
                if level < len(cfg.token_dims):
                    depth = depths[len(depths) - 1 - level]
                    self.decoder_tokens.append(
                        TokenStage(
                            skip_ch,
                            hidden(skip_ch),
                            linear,
                            drop_paths=rates[start : start + depth],
                            bias=token_bias,
                        )
                    )
                    start += depth
                in_ch = skip_ch
            self.final = _conv_pair(conv, in_ch, in_ch, in_ch, bias=conv_bias)
            self.head = nn.Conv2d(in_ch, cfg.num_classes, 1)
        if ukan:
            for part in (self.embeds, self.token_stages, self.decoder_tokens):
                part.apply(_ukan_init)
        if dtype is not None:
            self.to(dtype=dtype)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_chans, H, W)`` with H, W multiples of the stride."""
        self._checked(x)

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        what = (
            f"KAN-UNet ({len(self.encoder)} pooling conv stages + {len(self.embeds)} stride-2 token stages)"
        )
        return check_image(x, self.in_chans, self.stride, what)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every encoder and decoder level's activations in backward (same results)."""
        self.grad_checkpointing = enable

    def _run(self, fn: Any, args: tuple[torch.Tensor, ...], modules: list[nn.Module]) -> torch.Tensor:
        """``fn(*args)``, checkpointed when gradient checkpointing is on."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, modules=modules)
        return fn(*args)

    def _encoder_level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Feature level ``i`` of ``feature_info`` from level ``i - 1`` (or the input)."""
        n_conv = len(self.encoder)
        if i < n_conv:
            stage = self.encoder[i]
            return self._run(lambda t: F.max_pool2d(stage(t), 2), (x,), [stage])
        embed, stage = self.embeds[i - n_conv], self.token_stages[i - n_conv]
        return self._run(lambda t: stage(embed(t)), (x,), [embed, stage])

    def _decoder_level(self, level: int, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decoder level ``level`` (deepest first): conv pair, 2x upsampling, skip, token stage."""
        block = self.decoder[level]
        tokens = self.decoder_tokens[level] if level < len(self.decoder_tokens) else None

        def run(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            t = F.interpolate(block(t), scale_factor=2, mode="bilinear", align_corners=False) + s
            return t if tokens is None else tokens(t)

        return self._run(run, (x, skip), [block] if tokens is None else [block, tokens])

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The encoder's feature maps (``feature_info`` order, finest first), timm's API.

        Args:
            x: ``pixel_values`` ``(B, in_chans, H, W)``.
            indices: ``None`` all levels, an int ``n`` the last (deepest) ``n``, or a sequence of
                levels (negative counts from the deepest).
            norm: Accepted for timm's API (the token stages end with their own LayerNorm).
            stop_early: Stop after the deepest requested level.
            output_fmt: Only ``"NCHW"``.
            intermediates_only: Return only the list of maps.

        Returns:
            The maps, or ``(deepest computed map, maps)``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"KAN-UNet gives output_fmt 'NCHW' only, got {output_fmt!r}")
        take, last = take_indices(len(self.feature_info), indices)
        levels = last + 1 if stop_early else len(self.feature_info)
        x = self._checked(x)
        out = []
        for i in range(levels):
            x = self._encoder_level(i, x)
            if i in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Keep the encoder up to the deepest of ``indices``; drop the decoder and head.

        Afterwards the model is an encoder: ``forward`` returns ``forward_features`` (the deepest
        kept level). Returns the absolute indices (timm's API; ``prune_norm``/``prune_head`` are
        accepted, a U-Net head cannot be kept without its decoder).
        """
        take, last = take_indices(len(self.feature_info), indices)
        n_conv = len(self.encoder)
        self.encoder = self.encoder[: last + 1]
        self.embeds = self.embeds[: max(last + 1 - n_conv, 0)]
        self.token_stages = self.token_stages[: max(last + 1 - n_conv, 0)]
        self.feature_info = self.feature_info[: last + 1]
        self.num_features = self.feature_info[-1]["num_chs"]
        self.stride = self.feature_info[-1]["reduction"]  # the encoder alone needs multiples of this
        self.decoder, self.decoder_tokens = nn.ModuleList(), nn.ModuleList()
        self.final, self.head = nn.Identity(), nn.Identity()
        self.encoder_only = True
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's deepest map ``(B, token_dims[-1], H / stride, W / stride)``."""
        x = self._checked(x)
        for i in range(len(self.feature_info)):
            x = self._encoder_level(i, x)
        return x

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.encoder_only:
            return self.forward_features(pixel_values)
        x, levels = self.forward_intermediates(pixel_values)
        skips = levels[:-1]  # the bottleneck is not a skip
        for level in range(len(self.decoder)):
            x = self._decoder_level(level, x, skips[-1 - level])
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
    overrides, factory = split_factory_kwargs(overrides)
    cfg = KANUNetConfig.from_dict({**_SIZES[size], "token_layer": token_layer, **overrides})
    return KANUNet(cfg, **factory)


def _matched(size: str, overrides: dict[str, Any]) -> KANUNet:
    """The twin with its token hidden width searched to within 5% of the KAN model's parameters."""
    overrides, factory = split_factory_kwargs(overrides)
    rest = {k: v for k, v in overrides.items() if k != "mlp_ratio"}
    twin_rest = {k: v for k, v in rest.items() if k not in ("layer_kwargs", "token_layer")}
    dim0 = (rest.get("token_dims") or _SIZES[size]["token_dims"])[0]

    def twin(width: int, **factory: Any) -> KANUNet:
        return _build(size, "linear", {**twin_rest, "mlp_ratio": width / dim0, **factory})

    width = matched_width(
        f"unet_{size}_matched",
        rest,
        target=lambda: _build(size, "kan", rest),
        twin=twin,
        low=1,
        high=64 * dim0,
    )
    return twin(width, **factory)


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


# ------------------------------------------------------------------------------------------------
# The reference U-KAN (variant="ukan"), named by the widths of its embed_dims. base is UKAN's own
# default [256, 320, 512], small its trainer's default [128, 160, 256]; tiny fits the CPU tests.
# ``embed_dims=[e0, e1, e2]`` may be passed as an override to get any other U-KAN width.
# ------------------------------------------------------------------------------------------------

_UKAN_DIMS: dict[str, list[int]] = {"tiny": [32, 48, 64], "small": [128, 160, 256], "base": [256, 320, 512]}


def _build_ukan(size: str, token_layer: str, overrides: dict[str, Any]) -> KANUNet:
    overrides, factory = split_factory_kwargs(overrides)
    layout = ukan_layout(overrides.pop("embed_dims", _UKAN_DIMS[size]))
    cfg = {**layout, "token_layer": token_layer, "variant": "ukan", **overrides}
    return KANUNet(KANUNetConfig.from_dict(cfg), **factory)


@register_model(family="kan_unet", aliases=("kan_unet_ukan",), **_META)
def kan_unet_ukan_tiny(**overrides: Any) -> KANUNet:
    """The reference U-KAN at embed_dims [32, 48, 64] (conv 4/8/32, KAN token stages 48/64)."""
    return _build_ukan("tiny", "kan", overrides)


@register_model(family="kan_unet", **_META)
def kan_unet_ukan_small(**overrides: Any) -> KANUNet:
    """The reference U-KAN at its trainer's default embed_dims [128, 160, 256]."""
    return _build_ukan("small", "kan", overrides)


@register_model(family="kan_unet", **_META)
def kan_unet_ukan_base(**overrides: Any) -> KANUNet:
    """The reference U-KAN at its constructor's default embed_dims [256, 320, 512]."""
    return _build_ukan("base", "kan", overrides)


@register_model(family="unet", twin_of="kan_unet_ukan_tiny", aliases=("unet_ukan",), **_META)
def unet_ukan_tiny(**overrides: Any) -> KANUNet:
    """U-KAN's ``no_kan`` twin (Linear token layers) of kan_unet_ukan_tiny."""
    return _build_ukan("tiny", "linear", overrides)


@register_model(family="unet", twin_of="kan_unet_ukan_small", **_META)
def unet_ukan_small(**overrides: Any) -> KANUNet:
    """U-KAN's ``no_kan`` twin of kan_unet_ukan_small."""
    return _build_ukan("small", "linear", overrides)


@register_model(family="unet", twin_of="kan_unet_ukan_base", **_META)
def unet_ukan_base(**overrides: Any) -> KANUNet:
    """U-KAN's ``no_kan`` twin of kan_unet_ukan_base."""
    return _build_ukan("base", "linear", overrides)
