"""KAN-ViT: timm's VisionTransformer with KAN feed-forward layers (the Kolmogorov-Arnold Transformer).

The only change to a ViT is the block MLP: :class:`KANMlp` builds ``fc1``/``fc2`` through
``kanzoo.layers.get_linear_layer(config.mlp_layer)``. With the default ``"kan_rational"`` each is a
group-rational KAN layer ``y = W R(x) + b`` (GR-KAN); following the KAT recipe ``fc1``'s rational
starts as the identity and ``fc2``'s as a rational fit of GELU, so at initialisation the FFN
computes (up to that fit) what the MLP ``fc2(GELU(fc1(x)))`` with the same weights would. KAN
layers carry their nonlinearity on the edges, so the separate node activation between ``fc1`` and
``fc2`` is an ``nn.Identity``; the MLP twin (``"linear"``) uses GELU there. ``mlp_layer="kan"``
selects B-spline KAN layers instead.

Attention, patch embedding, norms, tokens and head are timm's, so every timm ViT feature
(``forward_features``, ``reset_classifier``, ``dynamic_img_size``, ...) works, and the twin's state
dict uses timm's names (``blocks.0.mlp.fc1.weight``).

The ``*_patch16_224`` GR-KAN variants are the models of KAT (``Adamdad/kat``): their checkpoints
import with ``kanzoo.convert.kat.from_kat`` and also load directly (``model.load_state_dict``,
timm's ``checkpoint_path=``), since KAN-ViT renames KAT's FFN tensors on load.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from kanzoo.layers import KANLinear, get_linear_layer, is_kan_layer
from kanzoo.layers.bases.rational import RationalBasis
from kanzoo.models._base import KanzooConfig, KanzooModel, matched_width
from kanzoo.models._vision import factory_context, split_factory_kwargs

from ._registry import register_family, register_model

__all__ = ["KANMlp", "KANViT", "KANViTConfig", "kat_mimetic_init_"]

_RATIONAL_INITS = ("gelu", "silu", "identity")
_WEIGHT_INITS = ("", "kat_mimetic")


class KANMlp(nn.Module):
    """Transformer feed-forward ``fc2(act(fc1(x)))`` whose linear maps come from the layer factory.

    Accepts the keyword arguments timm's ``Block`` passes to its ``mlp_layer``. What the FFN does
    between ``fc1`` and ``fc2`` is read from the BUILT layers, never from the spec's spelling:
    if ``fc1`` is a KAN layer (``kanzoo.layers.is_kan_layer``) its edges carry the nonlinearity
    and the node activation is ``nn.Identity``; any other layer (``"linear"``, ``"Linear"``,
    ``nn.Linear``, a partial of it, ...) gets ``act_layer`` (GELU by default), as timm's ``Mlp``.
    Layers with a rational basis (GR-KAN) start as KAT does: ``fc1``'s rational is the identity,
    ``fc2``'s is ``rational_init``, unless ``layer_kwargs`` sets ``init`` itself.

    Args:
        in_features: Input (and default output) width.
        hidden_features: Hidden width (default: ``in_features``).
        out_features: Output width (default: ``in_features``).
        act_layer: Node activation when the layers are not KAN layers (default GELU).
        norm_layer: Optional norm on the hidden features (timm's ``scale_mlp_norm``).
        bias: Whether the linear maps have biases.
        drop: Dropout after the activation and after ``fc2``.
        layer: Linear spec: ``"kan_rational"`` (GR-KAN), ``"kan"`` (B-spline), ``"linear"``, a
            class or a partial.
        layer_kwargs: Extra options for the factory (both layers).
        rational_init: Starting function of ``fc2``'s rational for rational-basis layers
            (``"gelu"``, ``"silu"`` i.e. swish, or ``"identity"``); ``fc1``'s starts as the identity.
        device: Device for the parameters (they are created there: ``"meta"`` allocates nothing).
        dtype: Dtype for the parameters.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Any = None,
        norm_layer: Any = None,
        bias: bool = True,
        drop: float = 0.0,
        *,
        layer: str = "kan_rational",
        layer_kwargs: dict[str, Any] | None = None,
        rational_init: str = "gelu",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        hidden = hidden_features or in_features
        out = out_features or in_features
        kwargs = dict(layer_kwargs or {})
        linear = get_linear_layer(layer, **kwargs)
        with factory_context(device):
            self.fc1 = linear(in_features, hidden, bias=bias)
            if is_kan_layer(self.fc1):
                self.act = nn.Identity()
            else:
                self.act = act_layer() if act_layer is not None else nn.GELU()
            self.drop1 = nn.Dropout(drop)
            self.norm = norm_layer(hidden) if norm_layer is not None else nn.Identity()
            self.fc2 = linear(hidden, out, bias=bias)
            self.drop2 = nn.Dropout(drop)
        if "init" not in kwargs:
            # KAT initialisation: identity rational before fc1, GELU/swish-shaped rational before fc2.
            _start_rational(self.fc1, "identity")
            _start_rational(self.fc2, rational_init)
        if dtype is not None:
            self.to(dtype=dtype)

    def init_weights(self) -> None:
        """ViT (timm) initialisation for GR-KAN layers: their weight plays the Linear weight's role.

        timm's ViT init draws Linear weights from a truncated normal (std 0.02) with zero bias and
        calls ``init_weights`` on other modules; a group-rational KAN layer ``W R(x) + b`` gets the
        same, so KAN-ViT and its MLP twin start from the same weight distribution. B-spline layers
        keep their own initialisation.
        """
        for fc in (self.fc1, self.fc2):
            if isinstance(fc, KANLinear) and fc.base_weight is None and fc.num_features == 1:
                trunc_normal_(fc.spline_weight, std=0.02)
                if fc.spline_scaler is not None:
                    nn.init.ones_(fc.spline_scaler)
                if fc.bias is not None:
                    nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.fc2(self.norm(x)))


def _start_rational(layer: nn.Module, init: str) -> None:
    """Re-initialise ``layer``'s rational basis (if it has one) as the function ``init``."""
    basis = getattr(layer, "basis", None)
    if isinstance(basis, RationalBasis) and basis.init != init:
        basis.init = init
        basis.reset_parameters()


@dataclasses.dataclass
class KANViTConfig(KanzooConfig):
    """Configuration of :class:`KANViT` (and its MLP twin).

    Args:
        img_size: Input height/width.
        patch_size: Patch height/width.
        in_chans: Input channels.
        num_classes: Output classes; 0 gives pooled features.
        global_pool: ``"token"`` (class token) or ``"avg"``.
        embed_dim: Token width.
        depth: Number of transformer blocks.
        num_heads: Attention heads.
        mlp_ratio: FFN hidden width relative to ``embed_dim``.
        qkv_bias: Bias in the qkv projection.
        mlp_layer: FFN linear spec: ``"kan_rational"`` (default), ``"kan"`` (B-spline), ``"linear"``.
        layer_kwargs: Extra options for the FFN layer factory (e.g. ``{"num_groups": 4}``).
        rational_init: Starting function of the rational before each block's ``fc2`` with GR-KAN
            FFNs: ``"gelu"`` (default) or ``"silu"`` (swish, the default of KAT's ``kat_*`` models).
        init_values: Layer-scale initial value (timm's ``init_values``; ``None``: no layer scale).
        weight_init: ``""`` (timm's ViT initialisation) or ``"kat_mimetic"`` (KAT's: timm's, then
            the "mimetic" attention factors of :func:`kat_mimetic_init_`).
        drop_rate: Dropout before the head.
        proj_drop_rate: Dropout in attention projection and FFN.
        attn_drop_rate: Attention dropout.
        drop_path_rate: Stochastic depth rate.
        dynamic_img_size: Accept other input sizes (position embeddings are interpolated).
    """

    img_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 10
    global_pool: str = "token"
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    mlp_layer: str = "kan_rational"
    layer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    rational_init: str = "gelu"
    init_values: float | None = None
    weight_init: str = ""
    drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dynamic_img_size: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.img_size, list | tuple):  # timm passes input_size[-2:]
            if len(set(self.img_size)) != 1:
                raise ValueError(f"only square images are supported, got img_size={self.img_size}")
            self.img_size = int(self.img_size[0])
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        if self.rational_init not in _RATIONAL_INITS:
            raise ValueError(f"rational_init must be one of {_RATIONAL_INITS}, got {self.rational_init!r}")
        if self.weight_init not in _WEIGHT_INITS:
            raise ValueError(f"weight_init must be one of {_WEIGHT_INITS}, got {self.weight_init!r}")
        if self.init_values is not None and not float(self.init_values) > 0:
            raise ValueError(f"init_values must be positive or None, got {self.init_values!r}")


def _factored_near_identity(dim: int, alpha: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors ``L, R`` with ``L @ R = A = alpha * U + beta * I`` (``U`` uniform, unit variance / dim).

    ``A = U_s diag(s) V^T`` (SVD) is split symmetrically, ``L = U_s sqrt(s)``, ``R = sqrt(s) V^T``, so
    the leading columns of ``L`` and rows of ``R`` carry the strongest directions of ``A``.
    """
    bound = math.sqrt(3.0 / dim)
    noise = (torch.rand(dim, dim, dtype=torch.float64) * 2 - 1) * bound
    u, s, vh = torch.linalg.svd(alpha * noise + beta * torch.eye(dim, dtype=torch.float64))
    root = s.sqrt()
    return u * root, root[:, None] * vh


@torch.no_grad()
def kat_mimetic_init_(model: VisionTransformer) -> None:
    """KAT's "mimetic" attention initialisation (weight_init ``kan_mimetic`` of ``Adamdad/kat``).

    Per head, the query and key maps are the leading ``head_dim`` factors of a matrix near
    ``+0.7 I`` (so ``W_q^T W_k`` starts close to a scaled identity: tokens attend to similar
    tokens), and per block ``W_v`` and ``W_proj`` are the two factors of a matrix near ``-0.4 I``
    (``W_v W_proj = -0.4 I + noise``). Biases and every other weight keep timm's ViT init. Draws
    from torch's global generator.
    """
    for block in model.blocks:
        attn = block.attn
        qkv, proj = attn.qkv.weight, attn.proj.weight
        dim = qkv.shape[1]
        hd = dim // attn.num_heads
        for h in range(attn.num_heads):
            left, right = _factored_near_identity(dim, 0.7, 0.7)
            qkv[h * hd : (h + 1) * hd] = left[:, :hd].T.to(qkv.dtype)
            qkv[dim + h * hd : dim + (h + 1) * hd] = right[:hd].to(qkv.dtype)
        left, right = _factored_near_identity(dim, 0.4, -0.4)
        qkv[2 * dim :] = left.to(qkv.dtype)
        proj.copy_(right.to(proj.dtype))


def _accept_kat_names(state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: rename a KAT checkpoint's FFN tensors to kanzoo's in place.

    KAT (``Adamdad/kat``) stores ``blocks.<i>.mlp.act<n>.weight_numerator/denominator`` and
    ``mlp.fc<n>.weight (out, in)``; kanzoo's GR-KAN layer holds them as ``mlp.fc<n>.basis.*`` and
    ``mlp.fc<n>.spline_weight (out, in, 1)``. Only state dicts with KAT's ``act`` names are touched,
    so ``model.load_state_dict(kat_sd)`` and timm's ``checkpoint_path=``/``pretrained_cfg_overlay``
    loading of KAT files work on the GR-KAN variants.
    """
    from kanzoo.convert.kat import is_kat_state_dict, kat_to_kanzoo_state_dict

    if is_kat_state_dict(state_dict, prefix):
        converted = kat_to_kanzoo_state_dict(state_dict, prefix=prefix)
        state_dict.clear()
        state_dict.update(converted)


class KANViT(VisionTransformer, KanzooModel):
    """Vision Transformer with KAN FFNs (or, for the twin, plain MLPs).

    Args:
        config: A :class:`KANViTConfig` (or dict); defaults when omitted.
        device: Create the parameters on this device (``"meta"`` allocates nothing), as timm's ViT.
        dtype: Parameter dtype, as timm's ViT.
        **overrides: Config fields to override (``num_classes=...``, ``mlp_layer="kan"``).

    Forward: ``pixel_values`` float ``(B, in_chans, img_size, img_size)`` -> logits ``(B, num_classes)``.
    """

    config_class = KANViTConfig
    kanzoo_model = "kan_vit"

    def __init__(
        self,
        config: KANViTConfig | dict | None = None,
        *,
        device: Any = None,
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> None:
        cfg = self._make_config(config, overrides)
        mlp = functools.partial(
            KANMlp,
            layer=cfg.mlp_layer,
            layer_kwargs=dict(cfg.layer_kwargs),
            rational_init=cfg.rational_init,
        )
        super().__init__(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            in_chans=cfg.in_chans,
            num_classes=cfg.num_classes,
            global_pool=cfg.global_pool,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            qkv_bias=cfg.qkv_bias,
            init_values=cfg.init_values,
            drop_rate=cfg.drop_rate,
            proj_drop_rate=cfg.proj_drop_rate,
            attn_drop_rate=cfg.attn_drop_rate,
            drop_path_rate=cfg.drop_path_rate,
            dynamic_img_size=cfg.dynamic_img_size,
            mlp_layer=mlp,
            device=device,
            dtype=dtype,
        )
        self.config = cfg
        self._register_load_state_dict_pre_hook(_accept_kat_names)
        if cfg.weight_init == "kat_mimetic" and not next(self.parameters()).is_meta:
            kat_mimetic_init_(self)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for ``pixel_values`` ``(B, in_chans, H, W)``."""
        return super().forward(pixel_values)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head (and keep ``config`` in sync, so ``save_pretrained`` round-trips)."""
        super().reset_classifier(num_classes, global_pool)
        changes: dict[str, Any] = {"num_classes": num_classes}
        if global_pool is not None:
            changes["global_pool"] = global_pool
        self.config = self.config.replace(**changes)

    def set_input_size(
        self,
        img_size: int | tuple[int, int] | None = None,
        patch_size: int | tuple[int, int] | None = None,
    ) -> None:
        """timm's ``set_input_size`` (position embeddings resampled), with ``config`` kept in sync."""
        changes: dict[str, Any] = {}
        for name, value in (("img_size", img_size), ("patch_size", patch_size)):
            if value is None:
                continue
            sizes = {int(v) for v in value} if isinstance(value, list | tuple) else {int(value)}
            if len(sizes) != 1:
                raise ValueError(f"KAN-ViT supports square {name} only, got {value!r}")
            changes[name] = sizes.pop()
        config = self.config.replace(**changes)  # validates before anything changes
        super().set_input_size(img_size=img_size, patch_size=patch_size)
        self.config = config


register_family("kan_vit", KANViT)

# ------------------------------------------------------------------------------------------------
# Registered sizes. tiny/small train on 32x32 images (4x4 patches) on a 2-core CPU; the
# *_patch16_224 variants have the standard ViT-Ti/S/B shapes for ImageNet-scale training and are
# KAT's models (GitHub Adamdad/kat, katransformer.py): same widths, depths, heads, mlp_ratio 4,
# 8 rational groups, qkv bias, class token, LayerNorm(eps=1e-6), no layer scale. KAT's recipe
# also initialises attention "mimetically": pass weight_init="kat_mimetic" to train from scratch
# as KAT does (not the default: one SVD per head and block costs seconds to minutes on a CPU).
# kan_vit_<size>_patch16_224 is kat_<size>_gelu_patch16_224 (fc2's rational starts as GELU) and
# kan_vit_<size>_swish_patch16_224 is kat_<size>_patch16_224 / kat_<size>_swish_patch16_224.
# kanzoo.convert.kat.from_kat loads KAT's checkpoints into them.
# ------------------------------------------------------------------------------------------------

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4),
    "small": dict(img_size=32, patch_size=4, embed_dim=128, depth=6, num_heads=4),
    "tiny_patch16_224": dict(
        img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3, num_classes=1000
    ),
    "small_patch16_224": dict(
        img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6, num_classes=1000
    ),
    "base_patch16_224": dict(
        img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, num_classes=1000
    ),
}
_META = dict(task="classification", default_data="digits")


def _build(size: str, mlp_layer: str, overrides: dict[str, Any], **preset: Any) -> KANViT:
    overrides, factory = split_factory_kwargs(overrides)
    cfg = KANViTConfig.from_dict({**_SIZES[size], "mlp_layer": mlp_layer, **preset, **overrides})
    return KANViT(cfg, **factory)


def _input_size(size: str) -> tuple[int, int, int]:
    s = _SIZES[size]["img_size"]
    return (3, s, s)


def _matched(size: str, overrides: dict[str, Any]) -> KANViT:
    """The MLP twin with its FFN hidden width searched to within 5% of the KAN model's parameters."""
    overrides, factory = split_factory_kwargs(overrides)
    rest = {k: v for k, v in overrides.items() if k != "mlp_ratio"}
    twin_rest = {k: v for k, v in rest.items() if k not in ("layer_kwargs", "mlp_layer")}
    dim = rest.get("embed_dim", _SIZES[size]["embed_dim"])

    def twin(width: int, **factory: Any) -> KANViT:
        # (width + 0.5) / dim makes timm's int(dim * mlp_ratio) land exactly on width.
        return _build(size, "linear", {**twin_rest, "mlp_ratio": (width + 0.5) / dim, **factory})

    width = matched_width(
        f"vit_{size}_matched",
        rest,
        target=lambda: _build(size, "kan_rational", rest),
        twin=twin,
        low=1,
        high=64 * dim,
    )
    return twin(width, **factory)


@register_model(family="kan_vit", aliases=("kan_vit",), input_size=_input_size("tiny"), **_META)
def kan_vit_tiny(**overrides: Any) -> KANViT:
    """KAN-ViT tiny: 32x32 input, 4x4 patches, width 64, 4 blocks, GR-KAN FFNs."""
    return _build("tiny", "kan_rational", overrides)


@register_model(family="kan_vit", input_size=_input_size("small"), **_META)
def kan_vit_small(**overrides: Any) -> KANViT:
    """KAN-ViT small: 32x32 input, 4x4 patches, width 128, 6 blocks, GR-KAN FFNs."""
    return _build("small", "kan_rational", overrides)


@register_model(family="kan_vit", input_size=_input_size("tiny_patch16_224"), **_META)
def kan_vit_tiny_patch16_224(**overrides: Any) -> KANViT:
    """KAN-ViT with ViT-Ti/16 shapes (224x224, width 192, 12 blocks, 3 heads), GR-KAN FFNs."""
    return _build("tiny_patch16_224", "kan_rational", overrides)


@register_model(family="kan_vit", input_size=_input_size("small_patch16_224"), **_META)
def kan_vit_small_patch16_224(**overrides: Any) -> KANViT:
    """KAN-ViT with ViT-S/16 shapes (224x224, width 384, 12 blocks, 6 heads), GR-KAN FFNs."""
    return _build("small_patch16_224", "kan_rational", overrides)


@register_model(family="kan_vit", input_size=_input_size("base_patch16_224"), **_META)
def kan_vit_base_patch16_224(**overrides: Any) -> KANViT:
    """KAN-ViT with ViT-B/16 shapes (224x224, width 768, 12 blocks, 12 heads), GR-KAN FFNs."""
    return _build("base_patch16_224", "kan_rational", overrides)


@register_model(family="kan_vit", input_size=_input_size("tiny_patch16_224"), **_META)
def kan_vit_tiny_swish_patch16_224(**overrides: Any) -> KANViT:
    """KAT-Tiny (``kat_tiny_patch16_224``): ViT-Ti/16 shapes, fc2's rational starts as swish."""
    return _build("tiny_patch16_224", "kan_rational", overrides, rational_init="silu")


@register_model(family="kan_vit", input_size=_input_size("small_patch16_224"), **_META)
def kan_vit_small_swish_patch16_224(**overrides: Any) -> KANViT:
    """KAT-Small (``kat_small_patch16_224``): ViT-S/16 shapes, fc2's rational starts as swish."""
    return _build("small_patch16_224", "kan_rational", overrides, rational_init="silu")


@register_model(family="kan_vit", input_size=_input_size("base_patch16_224"), **_META)
def kan_vit_base_swish_patch16_224(**overrides: Any) -> KANViT:
    """KAT-Base (``kat_base_patch16_224``): ViT-B/16 shapes, fc2's rational starts as swish."""
    return _build("base_patch16_224", "kan_rational", overrides, rational_init="silu")


@register_model(
    family="vit", twin_of="kan_vit_tiny", aliases=("vit",), input_size=_input_size("tiny"), **_META
)
def vit_tiny(**overrides: Any) -> KANViT:
    """MLP twin of kan_vit_tiny (GELU MLPs)."""
    return _build("tiny", "linear", overrides)


@register_model(family="vit", twin_of="kan_vit_small", input_size=_input_size("small"), **_META)
def vit_small(**overrides: Any) -> KANViT:
    """MLP twin of kan_vit_small."""
    return _build("small", "linear", overrides)


@register_model(family="vit", twin_of="kan_vit_tiny", input_size=_input_size("tiny"), **_META)
def vit_tiny_matched(**overrides: Any) -> KANViT:
    """MLP twin of kan_vit_tiny with FFN width matched to within 5% of its parameters."""
    return _matched("tiny", overrides)


@register_model(family="vit", twin_of="kan_vit_small", input_size=_input_size("small"), **_META)
def vit_small_matched(**overrides: Any) -> KANViT:
    """MLP twin of kan_vit_small with FFN width matched to within 5% of its parameters."""
    return _matched("small", overrides)
