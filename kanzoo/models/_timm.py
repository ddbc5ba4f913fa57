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

The models follow timm's model contract, as timm's ResNet (Conv-KAN, CNN) and ViT (KAN-ViT) do,
and pass timm's own ``tests/test_models.py`` (``tests/ecosystem/test_timm_suite.py``):
``device=``/``dtype=`` (``"meta"`` included), ``num_classes``, ``in_chans``, ``global_pool``,
``drop_rate``, ``drop_path_rate``, ``features_only=True`` with ``out_indices``/``feature_cls``,
``forward_intermediates``, ``set_grad_checkpointing``, FX tracing with timm's tracer; an unknown
keyword raises :class:`UnexpectedArgumentError` (a ``TypeError``, as timm's contract says, and a
``ValueError``, as kanzoo's). Not supported: TorchScript (KAN layers run custom autograd
Functions) and timm's ``in_chans`` adaptation of a pretrained KAN stem (it has no ``.weight``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import register_notrace_module
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models import register_model as timm_register_model
from torch import nn

from kanzoo.layers import KANLayer

from . import conv_kan, kan_vit
from ._registry import create_model, model_info

# timm's FX tracer (feature extraction, its test suite) treats KAN layers as leaf modules: their
# forward dispatches to custom autograd Functions, which symbolic tracing cannot see through.
register_notrace_module(KANLayer)

_CONFIG_CLASSES = {conv_kan.__name__: conv_kan.ConvKANConfig, kan_vit.__name__: kan_vit.KANViTConfig}

__all__: list[str] = []  # timm's register_model appends the entrypoint names

_SMALL_IMAGE = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0, interpolation="bilinear")


def _cfg(
    *, input_size: tuple[int, int, int], num_classes: int, first_conv: str | tuple[()], **kwargs: Any
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
        fixed_input_size=True,
    )


# Conv-KAN/CNN feature maps at the nominal 32x32 input: tiny has a stride-2 stem (network stride
# 8), small a stride-1 stem (network stride 4).
_POOL = {"tiny": (4, 4), "small": (8, 8)}


def _conv_cfg(size: str, first_conv: str | tuple[()]) -> dict:
    return _cfg(
        input_size=(3, 32, 32), num_classes=10, first_conv=first_conv, pool_size=_POOL[size], **_SMALL_IMAGE
    )


def _vit_small_image_cfg() -> dict:
    return _cfg(
        input_size=(3, 32, 32),
        num_classes=10,
        first_conv="patch_embed.proj",
        fixed_input_size=True,
        **_SMALL_IMAGE,
    )


# first_conv lists the convolutions whose ``.weight`` timm adapts when ``in_chans`` differs from a
# checkpoint's: none for KAN stems (a KAN convolution has base and spline weights, no ``.weight``),
# so a 3-channel Conv-KAN checkpoint does not load into an ``in_chans=1`` model.
# fixed_input_size: a KAN-ViT (as timm's ViTs) takes its configured size only, unless built with
# dynamic_img_size=True; timm then passes img_size from the cfg and never feeds other sizes.
default_cfgs = generate_default_cfgs(
    {
        "conv_kan_tiny": _conv_cfg("tiny", ()),
        "conv_kan_small": _conv_cfg("small", ()),
        "cnn_tiny": _conv_cfg("tiny", "stem.conv"),
        "cnn_small": _conv_cfg("small", "stem.conv"),
        "kan_vit_tiny": _vit_small_image_cfg(),
        "kan_vit_small": _vit_small_image_cfg(),
        **{name: _imagenet_cfg() for name in _VIT_224},
    }
)


class UnexpectedArgumentError(TypeError, ValueError):
    """A timm factory keyword that the model does not take.

    timm's contract (``create_model(name, not_a_model_arg=1)`` raises ``TypeError``, as a Python
    call would) and kanzoo's (user errors are ``ValueError``) both hold.
    """


# timm's factory arguments that every kanzoo model takes besides its config fields.
_FACTORY_ARGS = frozenset({"device", "dtype"})


def _config_class(variant: str) -> type:
    return _CONFIG_CLASSES[_family_module(variant)]


def _family_module(variant: str) -> str:
    return model_info(variant)["module"]


def _feature_cfg(variant: str, config_kwargs: dict[str, Any]) -> dict[str, Any]:
    """How ``features_only=True`` wraps the model (timm's ``feature_cfg``).

    KAN-ViT: timm ViT's own (``FeatureGetterNet`` over ``forward_intermediates``, the last 3
    blocks). Conv-KAN: timm ResNet's (``FeatureListNet`` over ``feature_info``), by default every
    level (the stem and each stage; counted on a meta-device build of the same configuration).
    """
    if _family_module(variant) == kan_vit.__name__:
        return dict(out_indices=3, feature_cls="getter")
    levels = len(create_model(variant, device="meta", **config_kwargs).feature_info)
    return dict(flatten_sequential=True, out_indices=tuple(range(levels)))


def _build(variant: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """timm-style construction of the kanzoo model ``variant`` (kwargs are config overrides)."""
    fields = {f.name for f in dataclasses.fields(_config_class(variant))}
    # build_model_with_cfg consumes its own options (pretrained_cfg, features_only, out_indices...)
    # before it calls the model; everything else must be a config field or a factory argument.
    consumed = {"pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only", "out_indices",
                "feature_cls", "pruned"}  # fmt: skip
    unknown = sorted(set(kwargs) - fields - _FACTORY_ARGS - consumed)
    if unknown:
        raise UnexpectedArgumentError(
            f"{variant}() got unexpected keyword argument(s) {unknown}; it takes the fields of "
            f"{_config_class(variant).__name__} ({', '.join(sorted(fields))}) and device, dtype"
        )
    config_kwargs = {k: v for k, v in kwargs.items() if k in fields}
    feature_cfg = _feature_cfg(variant, config_kwargs) if kwargs.get("features_only") else None
    return build_model_with_cfg(
        functools.partial(create_model, variant), variant, pretrained, feature_cfg=feature_cfg, **kwargs
    )


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
