"""KAN-TSF: a time-series forecaster whose MLPs are KAN layers, with reversible instance normalisation.

The design follows the KAN forecasting literature (KAN4TSF/RMoK, NeuralForecast's KAN model) and the
MLP forecasters they build on (N-BEATS, TSMixer): a lookback window of ``L`` steps of ``C`` channels
is mapped to the next ``H`` steps by residual blocks that mix along time, then a temporal projection::

    x (B, L, C) -> RevIN normalise (per window and channel: mean, std over the L steps; affine)
                -> z (B, C, L)                     one row per channel, weights shared across channels
                -> depth x [ z = z + fc2(act(fc1(z)))          time mixing over the L steps
                             (channel_mixing: z = z + fc2'(act(fc1'(z^T)))^T  mixing over the C channels) ]
                -> head: L -> H  -> (B, H, C) -> RevIN denormalise

Every ``fc`` and the head come from ``kanzoo.layers.get_linear_layer(config.layer)``: ``"kan"``
(B-spline KAN, node activation ``identity``: the nonlinearity lives on the edges) or, for the twin
``tsf_*``, ``"linear"`` with GELU. ``channel_mixing=False`` (default) is channel-independent, as
RMoK and PatchTST are: the same weights forecast every channel; ``True`` adds TSMixer-style
feature mixing across channels (useful for multivariate data such as ``macrodata``).

RevIN (Kim et al., ICLR 2022) removes each window's level and scale before the network and puts
them back afterwards, so the network sees comparable inputs even when the series drifts. Data
are already standardised with training-split statistics by ``kanzoo.data`` (no leakage); RevIN
works per window on top of that.

Forward: ``x (B, lookback, num_channels) -> (B, horizon, num_channels)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from kanzoo.layers import get_linear_layer
from kanzoo.models._base import KanzooConfig, KanzooModel, make_activation, matched_width
from kanzoo.models._registry import register_family, register_model

__all__ = ["KANTSF", "KANTSFConfig", "MixerBlock", "RevIN"]


@dataclasses.dataclass
class KANTSFConfig(KanzooConfig):
    """Configuration of :class:`KANTSF` (and its MLP twin).

    Args:
        lookback: Input window length ``L``.
        horizon: Forecast length ``H``.
        num_channels: Number of series ``C`` (RevIN's affine parameters and channel mixing are per channel).
        hidden: Hidden width of the time-mixing blocks.
        depth: Number of residual mixing blocks.
        channel_mixing: Also mix across channels in every block (TSMixer style); False: channel-independent.
        channel_hidden: Hidden width of the channel-mixing MLP (``channel_mixing=True`` only).
        layer: Layer spec for ``get_linear_layer``: ``"kan"`` (B-spline KAN), ``"linear"`` (the twin),
            ``"kan_rbf"``, ``"kan_chebyshev"``, ...
        layer_kwargs: Extra layer options. The registered sizes set B-spline options
            ``{"grid_size": 5, "grid_range": [-3, 3]}`` (RevIN-normalised inputs span a few units);
            give the options of another basis together with another ``layer`` (or ``{}``).
        act: Node activation inside the blocks: ``"identity"`` for KAN layers, ``"gelu"`` for the twin.
        dropout: Dropout after each block's hidden layer and before the head.
        revin: Reversible instance normalisation around the network.
        revin_affine: Learn a per-channel scale and shift inside RevIN.
        revin_eps: Added to the window variance.
    """

    lookback: int = 36
    horizon: int = 12
    num_channels: int = 1
    hidden: int = 32
    depth: int = 1
    channel_mixing: bool = False
    channel_hidden: int = 16
    layer: str = "kan"
    layer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    act: str = "identity"
    dropout: float = 0.0
    revin: bool = True
    revin_affine: bool = True
    revin_eps: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lookback", "horizon", "num_channels", "hidden", "depth", "channel_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        make_activation(self.act)


class RevIN(nn.Module):
    """Reversible instance normalisation over the time axis of ``(B, L, C)`` windows.

    ``normalize`` stores each window's per-channel mean and standard deviation (computed on the
    window itself: no future values are involved) and ``denormalize`` applies the inverse to the
    forecast. The statistics are returned, not stored on the module, so forward stays functional.

    Args:
        num_channels: Channels ``C``.
        affine: Learn a per-channel scale and shift applied after normalising (inverted before
            denormalising).
        eps: Added to the variance.
    """

    def __init__(self, num_channels: int, *, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels))
            self.bias = nn.Parameter(torch.zeros(num_channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)
        z = (x - mean) / std
        if self.weight is not None:
            z = z * self.weight + self.bias
        return z, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        if self.weight is not None:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean


class MixerBlock(nn.Module):
    """Residual MLP ``z + drop(fc2(drop(act(fc1(z)))))`` over the last axis (layers from the factory).

    Args:
        linear_layer: Constructor ``(in, out) -> module``.
        dim: Size of the mixed axis.
        hidden: Hidden width.
        act: Node activation name.
        dropout: Dropout probability.
    """

    def __init__(self, linear_layer: Any, dim: int, hidden: int, *, act: str, dropout: float) -> None:
        super().__init__()
        self.fc1 = linear_layer(dim, hidden)
        self.act = make_activation(act)
        self.drop = nn.Dropout(dropout)
        self.fc2 = linear_layer(hidden, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.drop(self.fc2(self.drop(self.act(self.fc1(z)))))


class KANTSF(nn.Module, KanzooModel):
    """Forecaster ``(B, lookback, C) -> (B, horizon, C)`` with KAN (or, for the twin, plain) layers.

    Args:
        config: A :class:`KANTSFConfig` (or dict); defaults when omitted.
        **overrides: Config fields to override (``lookback=...``, ``num_channels=...``).
    """

    config_class = KANTSFConfig
    kanzoo_model = "kan_tsf"

    def __init__(self, config: KANTSFConfig | dict | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = self._make_config(config, overrides)
        linear = get_linear_layer(cfg.layer, **cfg.layer_kwargs)
        self.revin = (
            RevIN(cfg.num_channels, affine=cfg.revin_affine, eps=cfg.revin_eps) if cfg.revin else None
        )
        self.time_mix = nn.ModuleList(
            MixerBlock(linear, cfg.lookback, cfg.hidden, act=cfg.act, dropout=cfg.dropout)
            for _ in range(cfg.depth)
        )
        self.channel_mix = (
            nn.ModuleList(
                MixerBlock(linear, cfg.num_channels, cfg.channel_hidden, act=cfg.act, dropout=cfg.dropout)
                for _ in range(cfg.depth)
            )
            if cfg.channel_mixing
            else None
        )
        self.head_drop = nn.Dropout(cfg.dropout)
        self.head = linear(cfg.lookback, cfg.horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        z = x.transpose(1, 2)  # (B, C, L): time mixing acts on the last axis
        for i, block in enumerate(self.time_mix):
            z = block(z)
            if self.channel_mix is not None:
                z = self.channel_mix[i](z.transpose(1, 2)).transpose(1, 2)
        y = self.head(self.head_drop(z)).transpose(1, 2)  # (B, H, C)
        if stats is not None:
            y = self.revin.denormalize(y, stats)
        return y


register_family("kan_tsf", KANTSF)

# ------------------------------------------------------------------------------------------------
# Registered sizes (defaults sized for the embedded monthly El Nino series: 36 months -> 12 months).
# ------------------------------------------------------------------------------------------------

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden=32, depth=1, layer_kwargs={"grid_size": 5, "grid_range": [-3.0, 3.0]}),
    "small": dict(hidden=64, depth=2, layer_kwargs={"grid_size": 5, "grid_range": [-3.0, 3.0]}),
}
_KAN = dict(layer="kan", act="identity")
_TWIN = dict(layer="linear", act="gelu", layer_kwargs={})
_META = dict(task="forecasting", default_data="elnino", input_size=(36, 1))


def _build(size: str, spec: dict[str, Any], overrides: dict[str, Any]) -> KANTSF:
    return KANTSF(KANTSFConfig.from_dict({**_SIZES[size], **spec, **overrides}))


def _matched(size: str, overrides: dict[str, Any]) -> KANTSF:
    """The MLP twin with ``hidden`` (and ``channel_hidden``, scaled alike) searched so its parameters
    are within 5% of the KAN model's. KAN-only options shape the target but not the twin."""
    rest = {k: v for k, v in overrides.items() if k != "hidden"}
    twin_rest = {k: v for k, v in rest.items() if k not in ("layer_kwargs", "layer", "act")}
    base_hidden = int(overrides.get("hidden", _SIZES[size]["hidden"]))
    base_ch = int(overrides.get("channel_hidden", KANTSFConfig.channel_hidden))

    def twin(width: int) -> KANTSF:
        ch = max(1, round(base_ch * width / base_hidden))
        return _build(size, _TWIN, {**twin_rest, "hidden": width, "channel_hidden": ch})

    width = matched_width(
        f"tsf_{size}_matched",
        overrides,
        target=lambda: _build(size, _KAN, {**rest, "hidden": base_hidden}),
        twin=twin,
        low=1,
        high=64 * base_hidden,
    )
    return twin(width)


@register_model(family="kan_tsf", aliases=("kan_tsf",), **_META)
def kan_tsf_tiny(**overrides: Any) -> KANTSF:
    """KAN-TSF tiny: RevIN, one residual KAN time-mixing block (hidden 32), KAN head; channel-independent."""
    return _build("tiny", _KAN, overrides)


@register_model(family="kan_tsf", **_META)
def kan_tsf_small(**overrides: Any) -> KANTSF:
    """KAN-TSF small: RevIN, two residual KAN time-mixing blocks (hidden 64), KAN head."""
    return _build("small", _KAN, overrides)


@register_model(family="tsf", twin_of="kan_tsf_tiny", aliases=("tsf",), **_META)
def tsf_tiny(**overrides: Any) -> KANTSF:
    """MLP twin of kan_tsf_tiny: the same network with nn.Linear layers and GELU."""
    return _build("tiny", _TWIN, overrides)


@register_model(family="tsf", twin_of="kan_tsf_small", **_META)
def tsf_small(**overrides: Any) -> KANTSF:
    """MLP twin of kan_tsf_small."""
    return _build("small", _TWIN, overrides)


@register_model(family="tsf", twin_of="kan_tsf_tiny", **_META)
def tsf_tiny_matched(**overrides: Any) -> KANTSF:
    """MLP twin of kan_tsf_tiny widened (hidden searched) to within 5% of its parameters."""
    return _matched("tiny", overrides)


@register_model(family="tsf", twin_of="kan_tsf_small", **_META)
def tsf_small_matched(**overrides: Any) -> KANTSF:
    """MLP twin of kan_tsf_small widened to within 5% of its parameters."""
    return _matched("small", overrides)
