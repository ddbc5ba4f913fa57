"""Conv-KAN: a small residual image classifier whose convolutions are KAN convolutions.

Every convolution (stem, the two 3x3 convolutions of each residual block, and the 1x1 projection
shortcuts) is built by ``kanzoo.layers.get_conv_layer(config.conv_layer)``. With ``"kan"`` each
kernel tap applies a learnable univariate function to its input pixel (``KANConv2d``); with
``"conv"`` the same network is an ordinary ResNet-style CNN, the twin (registered as ``cnn_*``).
Batch norm, activations, pooling and the linear head are shared by both.

Layout (ResNet basic blocks, no max-pool; the tiny size uses a stride-2 stem to stay fast on CPU)::

    stem: conv3x3(in_chans -> w0, stride stem_stride) - BN - act
    stage i (i = 0..S-1): depths[i] basic blocks of width w_i, the first one strided by 2 when i > 0
    head: global pool (average by default) - dropout - Linear(w_{S-1} -> num_classes)

It follows timm's classifier interface (as timm's ResNet does): ``feature_info`` (the stem and
every stage), ``forward_features``/``forward_head(pre_logits=...)``, ``forward_intermediates``
and ``prune_intermediate_layers`` (so ``features_only=True`` works with timm's list and getter
wrappers), ``reset_classifier(num_classes, global_pool)``, ``num_features``/``head_hidden_size``,
``set_grad_checkpointing`` and stochastic depth (``drop_path_rate``, per block, linearly
increasing). The forward has no Python branch on tensor values or shapes, so ``torch.fx``
tracing (with the KAN layers as leaf modules, as timm's tracer has them), ``torch.export`` and
the meta device work.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.fx
from torch import nn

from kanzoo.layers import get_conv_layer
from kanzoo.models._base import (
    KanzooConfig,
    KanzooModel,
    make_activation,
    matched_width,
)
from kanzoo.models._registry import register_family, register_model
from kanzoo.models._vision import (
    POOL_TYPES,
    DropPath,
    GlobalPool,
    check_image,
    checkpoint,
    factory_context,
    split_factory_kwargs,
    take_indices,
)

__all__ = ["BasicBlock", "ConvKAN", "ConvKANConfig"]

torch.fx.wrap("check_image")  # a traced Conv-KAN keeps its input check as one graph node


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
        global_pool: Pooling before the classifier: ``"avg"`` (default), ``"max"``, ``"avgmax"``,
            ``"catavgmax"`` (average and max concatenated: twice the features) or ``""`` (none:
            the model returns the feature map, with ``num_classes > 0`` the classifier applied at
            every location, ``(B, num_classes, H', W')``).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth: block ``i`` of ``n`` drops its residual branch with
            probability ``drop_path_rate * i / (n - 1)`` while training (timm's ResNet schedule).
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
    global_pool: str = "avg"
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
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
        _check_pool(self.global_pool)
        if not 0.0 <= self.drop_path_rate < 1.0 or not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(
                f"drop_rate and drop_path_rate must be in [0, 1), got {self.drop_rate}, {self.drop_path_rate}"
            )


def _check_pool(global_pool: str) -> None:
    if global_pool not in POOL_TYPES:
        raise ValueError(f"global_pool must be one of {POOL_TYPES}, got {global_pool!r}")


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
        drop_path: Stochastic depth rate of the residual branch.
    """

    def __init__(
        self,
        conv_layer: Any,
        in_ch: int,
        out_ch: int,
        *,
        stride: int = 1,
        act: str = "silu",
        drop_path: float = 0.0,
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
        self.drop_path = DropPath(drop_path)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.bn2(self.conv2(self.conv1(x)))) + self.shortcut(x))


class ConvKAN(nn.Module, KanzooModel):
    """Residual image classifier with KAN (or, for the twin, plain) convolutions.

    Args:
        config: A :class:`ConvKANConfig` (or dict); defaults when omitted.
        device: Create the parameters on this device (``"meta"`` allocates nothing).
        dtype: Cast the parameters to this floating-point dtype after initialisation.
        **overrides: Config fields to override (``num_classes=...``, ``in_chans=...``).

    Forward: ``pixel_values`` float ``(B, in_chans, H, W)`` -> logits ``(B, num_classes)``
    (pooled features ``(B, head_hidden_size)`` for ``num_classes=0``, the feature map for
    ``global_pool=""`` as well).
    """

    config_class = ConvKANConfig
    kanzoo_model = "conv_kan"

    def __init__(
        self,
        config: ConvKANConfig | dict | None = None,
        *,
        device: Any = None,
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        self.config = cfg = self._make_config(config, overrides)
        conv = get_conv_layer(cfg.conv_layer, dim=2, **cfg.layer_kwargs)
        widths = [cfg.base_width * m for m in cfg.stage_multipliers]
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.num_features = widths[-1]
        self.grad_checkpointing = False
        total = sum(cfg.depths)
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        with factory_context(device):
            self.stem = ConvNormAct(conv, cfg.in_chans, widths[0], stride=cfg.stem_stride, act=cfg.act)
            self.feature_info = [dict(num_chs=widths[0], reduction=cfg.stem_stride, module="stem.act")]
            stages = []
            in_ch = widths[0]
            for i, (width, depth) in enumerate(zip(widths, cfg.depths)):
                blocks = []
                for j in range(depth):
                    stride = 2 if (i > 0 and j == 0) else 1
                    rate = rates[sum(cfg.depths[:i]) + j]
                    blocks.append(BasicBlock(conv, in_ch, width, stride=stride, act=cfg.act, drop_path=rate))
                    in_ch = width
                stages.append(nn.Sequential(*blocks))
                reduction = cfg.stem_stride * 2**i
                self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f"stages.{i}"))
            self.stages = nn.Sequential(*stages)
            self.global_pool = GlobalPool(cfg.global_pool)
            self.head_drop = nn.Dropout(cfg.drop_rate)
            self.head = self._new_head(cfg.num_classes)
        if dtype is not None:
            self.to(dtype=dtype)

    # timm-style interface -------------------------------------------------------------------
    @property
    def head_hidden_size(self) -> int:
        """Width of the pre-logits features (``num_features``, doubled by ``"catavgmax"``)."""
        return self.num_features * self.global_pool.feature_multiplier()

    def _new_head(self, num_classes: int, like: torch.Tensor | None = None) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        factory = {} if like is None else {"device": like.device, "dtype": like.dtype}
        return nn.Linear(self.head_hidden_size, num_classes, **factory)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head for ``num_classes`` outputs (0 = pooled features), optionally the pooling.

        The new head is created on the device and with the dtype of the existing parameters, and
        ``config`` follows, so ``save_pretrained`` round-trips.
        """
        pool = self.global_pool.pool_type if global_pool is None else global_pool
        _check_pool(pool)
        self.global_pool = GlobalPool(pool).train(self.training)
        self.num_classes = num_classes
        self.head = self._new_head(num_classes, like=self.stem.bn.weight).train(self.training)
        self.config = self.config.replace(num_classes=num_classes, global_pool=pool)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in backward instead of storing them (same results)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise learning-rate decay): stem, stages (blocks), head."""
        blocks = r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)"
        return dict(stem=r"^stem", blocks=blocks)

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(stage, x, modules=[stage])
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map ``(B, C, H / (stem_stride * 2^(S-1)), W / (stem_stride * 2^(S-1)))``."""
        x = self.stem(check_image(x, self.in_chans))
        for stage in self.stages:
            x = self._run_stage(stage, x)
        return x

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature maps of ``feature_info`` (stem, then every stage), timm's API.

        Args:
            x: ``pixel_values`` ``(B, in_chans, H, W)``.
            indices: Which of the ``1 + S`` feature levels to return: ``None`` all, an int ``n``
                the last ``n``, a sequence the given (negative counts from the end) levels.
            norm: Accepted for timm's API; Conv-KAN has no final norm.
            stop_early: Stop after the last requested level (the returned final map is then
                that level's).
            output_fmt: Only ``"NCHW"``.
            intermediates_only: Return only the list of maps.

        Returns:
            The list of maps, or ``(final feature map, maps)``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"Conv-KAN gives output_fmt 'NCHW' only, got {output_fmt!r}")
        take, last = take_indices(len(self.feature_info), indices)
        stages = self.stages if not stop_early else self.stages[:last]
        out = []
        x = self.stem(check_image(x, self.in_chans))
        if 0 in take:
            out.append(x)
        for i, stage in enumerate(stages, start=1):
            x = self._run_stage(stage, x)
            if i in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the head); returns the absolute indices.

        ``config`` keeps describing the network while at least one stage is left (its ``depths``
        and ``stage_multipliers`` are cut too); a model pruned to the stem alone has no config
        form, so ``save_pretrained`` of it does not reload.
        """
        take, last = take_indices(len(self.feature_info), indices)
        self.stages = self.stages[:last]
        self.feature_info = self.feature_info[: last + 1]
        self.num_features = self.feature_info[-1]["num_chs"]
        if last >= 1:
            c = self.config
            self.config = c.replace(depths=c.depths[:last], stage_multipliers=c.stage_multipliers[:last])
        if prune_head:
            self.reset_classifier(0, "")
        return take

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled features (``pre_logits``) or logits; without pooling, per-location logits."""
        x = self.head_drop(self.global_pool(x))
        if pre_logits:
            return x
        if self.global_pool.pool_type == "":
            return self.head(x.movedim(1, -1)).movedim(-1, 1)
        return self.head(x)

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
    overrides, factory = split_factory_kwargs(overrides)
    cfg = ConvKANConfig.from_dict({**_SIZES[size], "conv_layer": conv_layer, **overrides})
    return ConvKAN(cfg, **factory)


def _matched(size: str, overrides: dict[str, Any]) -> ConvKAN:
    """The CNN twin with ``base_width`` searched so its parameters are within 5% of the KAN model's.

    ``layer_kwargs`` (KAN options such as ``grid_size``) shape the target but not the twin.
    """
    overrides, factory = split_factory_kwargs(overrides)
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
    return _build(size, "conv", {**twin_rest, "base_width": width, **factory})


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
