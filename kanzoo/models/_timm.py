"""timm registration of the kanzoo classifiers (runs when ``kanzoo.models`` is imported).

After ``import kanzoo``::

    timm.create_model("kan_vit_tiny_patch16_224", num_classes=10)
    timm.create_model("conv_kan_tiny", num_classes=10)
    # weights saved by kanzoo (model.safetensors) load through timm's own machinery:
    file = "run/model.safetensors"
    timm.create_model("conv_kan_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=file))
    timm.create_model("conv_kan_tiny", checkpoint_path=file)
    # a KAT checkpoint (github.com/Adamdad/kat) on the matching GR-KAN KAN-ViT:
    timm.create_model("kan_vit_tiny_swish_patch16_224", checkpoint_path="kat_tiny_patch16_224.pth")

Each timm entrypoint builds the model through the kanzoo registry (same name) via timm's
``build_model_with_cfg``, so timm's ``pretrained_cfg``/``default_cfg``, classifier reset on a
``num_classes`` change, and ``checkpoint_path`` loading all apply. Names that timm already uses
for its own models (``vit_tiny_patch16_224`` ...) are not overwritten; the kanzoo ViT twins have
timm's parameter names, so timm's own ViTs are their timm counterparts. KAT's names
(``kat_tiny_patch16_224`` ...) are left to KAT's own package; its checkpoints load into the
``kan_vit_*_patch16_224`` models (KAN-ViT renames KAT's FFN tensors when it loads a state dict).
"""

from __future__ import annotations

import functools
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models import register_model as timm_register_model
from torch import nn

from ._registry import create_model

__all__: list[str] = []  # timm's register_model appends the entrypoint names

_SMALL_IMAGE = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0, interpolation="bilinear")


def _cfg(
    *, input_size: tuple[int, int, int], num_classes: int, first_conv: str | None, **kwargs: Any
) -> dict:
    return {
        "url": "",
        "num_classes": num_classes,
        "input_size": input_size,
        "pool_size": None,
        "classifier": "head",
        "first_conv": first_conv,
        "license": "apache-2.0",
        **kwargs,
    }


# KAN-ViTs at ViT-Ti/S/B shapes; the GR-KAN ones are KAT's models and load KAT checkpoints.
_VIT_224 = (
    "kan_vit_tiny_patch16_224",
    "kan_vit_small_patch16_224",
    "kan_vit_base_patch16_224",
    "kan_vit_tiny_swish_patch16_224",
    "kan_vit_small_swish_patch16_224",
    "kan_vit_base_swish_patch16_224",
)


def _imagenet_cfg() -> dict:
    return _cfg(
        input_size=(3, 224, 224),
        num_classes=1000,
        first_conv="patch_embed.proj",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        crop_pct=0.875,  # KAT's (and DeiT's) evaluation crop
        interpolation="bicubic",
    )


# first_conv is None for KAN stems: timm's in_chans adaptation only knows ordinary conv weights.
default_cfgs = generate_default_cfgs(
    {
        "conv_kan_tiny": _cfg(input_size=(3, 32, 32), num_classes=10, first_conv=None, **_SMALL_IMAGE),
        "conv_kan_small": _cfg(input_size=(3, 32, 32), num_classes=10, first_conv=None, **_SMALL_IMAGE),
        "cnn_tiny": _cfg(input_size=(3, 32, 32), num_classes=10, first_conv="stem.conv", **_SMALL_IMAGE),
        "cnn_small": _cfg(input_size=(3, 32, 32), num_classes=10, first_conv="stem.conv", **_SMALL_IMAGE),
        "kan_vit_tiny": _cfg(
            input_size=(3, 32, 32), num_classes=10, first_conv="patch_embed.proj", **_SMALL_IMAGE
        ),
        "kan_vit_small": _cfg(
            input_size=(3, 32, 32), num_classes=10, first_conv="patch_embed.proj", **_SMALL_IMAGE
        ),
        **{name: _imagenet_cfg() for name in _VIT_224},
    }
)


def _build(variant: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """timm-style construction of the kanzoo model ``variant`` (kwargs are config overrides)."""
    return build_model_with_cfg(functools.partial(create_model, variant), variant, pretrained, **kwargs)


@timm_register_model
def conv_kan_tiny(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Conv-KAN tiny (B-spline KAN convolutions, 32x32 inputs)."""
    return _build("conv_kan_tiny", pretrained, **kwargs)


@timm_register_model
def conv_kan_small(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Conv-KAN small (B-spline KAN convolutions, 32x32 inputs)."""
    return _build("conv_kan_small", pretrained, **kwargs)


@timm_register_model
def cnn_tiny(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CNN twin of conv_kan_tiny."""
    return _build("cnn_tiny", pretrained, **kwargs)


@timm_register_model
def cnn_small(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CNN twin of conv_kan_small."""
    return _build("cnn_small", pretrained, **kwargs)


@timm_register_model
def kan_vit_tiny(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KAN-ViT tiny (GR-KAN FFNs, 32x32 inputs, 4x4 patches)."""
    return _build("kan_vit_tiny", pretrained, **kwargs)


@timm_register_model
def kan_vit_small(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KAN-ViT small (GR-KAN FFNs, 32x32 inputs, 4x4 patches)."""
    return _build("kan_vit_small", pretrained, **kwargs)


@timm_register_model
def kan_vit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KAN-ViT with ViT-Ti/16 shapes and GR-KAN FFNs."""
    return _build("kan_vit_tiny_patch16_224", pretrained, **kwargs)


@timm_register_model
def kan_vit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KAN-ViT with ViT-S/16 shapes and GR-KAN FFNs."""
    return _build("kan_vit_small_patch16_224", pretrained, **kwargs)


@timm_register_model
def kan_vit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KAN-ViT with ViT-B/16 shapes and GR-KAN FFNs (KAT's ``kat_base_gelu_patch16_224``)."""
    return _build("kan_vit_base_patch16_224", pretrained, **kwargs)


@timm_register_model
def kan_vit_tiny_swish_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KAT-Tiny (``kat_tiny_patch16_224``): ViT-Ti/16 shapes, swish-initialised rationals."""
    return _build("kan_vit_tiny_swish_patch16_224", pretrained, **kwargs)


@timm_register_model
def kan_vit_small_swish_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KAT-Small (``kat_small_patch16_224``): ViT-S/16 shapes, swish-initialised rationals."""
    return _build("kan_vit_small_swish_patch16_224", pretrained, **kwargs)


@timm_register_model
def kan_vit_base_swish_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """KAT-Base (``kat_base_patch16_224``): ViT-B/16 shapes, swish-initialised rationals."""
    return _build("kan_vit_base_swish_patch16_224", pretrained, **kwargs)


def timm_model_names() -> list[str]:
    """Names this module registers with timm."""
    return sorted(default_cfgs)
