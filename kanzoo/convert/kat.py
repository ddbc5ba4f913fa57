"""Import a Kolmogorov-Arnold Transformer (KAT) checkpoint as a kanzoo KAN-ViT with identical logits.

Peer: the GitHub repository ``Adamdad/kat`` (``katransformer.py``: ``KATVisionTransformer``, a timm
ViT whose block MLP ``KAN`` computes ``fc2(act2(fc1(act1(x))))``) with the group-rational
activation ``KAT_Group`` of ``Adamdad/rational_kat_cu`` (``kat_rational/kat_1dgroup_triton.py``;
forward formula in ``kat_rational/rational_triton.py`` and ``src/rational_kernel_group.cu``)::

    R(x) = (a_0 + a_1 x + ... + a_5 x^5) / (1 + |b_1| |x| + |b_2| |x|^2 + |b_3| |x|^3 + |b_4| |x|^4)

with channel ``c`` of a width-``D`` input using group ``c // (D / num_groups)`` (contiguous blocks).
``KAT_Group`` keeps ONE numerator ``weight_numerator (1, 6)`` shared by all groups and
``weight_denominator (num_groups, 4)``; the older ``KAT_1DGroup`` keeps ``(num_groups, 6)``
numerators (both accepted). ``act -> Linear`` is exactly kanzoo's GR-KAN layer
``KANLinear(basis="rational", base_activation=None, spline_scaler=False)``: ``y = W R(x) + b``,
same rational, same contiguous groups (kanzoo maps channel ``i`` to ``i * G // D``, equal to KAT's
map whenever ``G`` divides ``D``, which KAT's kernels require).

Key mapping (KAT -> kanzoo ``KANViT``)::

    blocks.<i>.mlp.act<n>.weight_numerator    -> blocks.<i>.mlp.fc<n>.basis.numerator (repeated per group)
    blocks.<i>.mlp.act<n>.weight_denominator  -> blocks.<i>.mlp.fc<n>.basis.denominator
    blocks.<i>.mlp.fc<n>.weight  (out, in)    -> blocks.<i>.mlp.fc<n>.spline_weight (out, in, 1)
    blocks.<i>.mlp.fc<n>.bias                 -> blocks.<i>.mlp.fc<n>.bias
    everything else (patch_embed, cls_token, pos_embed, norm1/2, attn.qkv/proj, ls1/2.gamma,
    norm, fc_norm, head)                      -> same name (both are timm ViTs)

Read from the shapes: embed dim, patch size, input channels, image size (from ``pos_embed``),
depth, FFN width (``mlp_ratio``), rational groups and degrees, class count, qkv bias, layer scale,
and the pooling (``fc_norm`` present: ``global_pool="avg"``). The number of heads is not in the
weights: it defaults to KAT's preset for the embed dim (192: 3, 384: 6, 768: 12).

Registered kanzoo names for KAT's models: ``kan_vit_{tiny,small,base}_swish_patch16_224`` are
``kat_{tiny,small,base}_patch16_224`` (and ``*_swish_*``), ``kan_vit_{tiny,small,base}_patch16_224``
are ``kat_*_gelu_patch16_224``; they differ only in how ``fc2``'s rational is initialised.

Caveats: logits agree in eval mode (dropout and drop-path inactive). KAT's CUDA/Triton kernels
evaluate the rational in float32 under autocast, kanzoo in the compute dtype of its basis. KAT's
pure-torch CPU fallback (``kat_1dgroup_torch.Rational_CUDA_A_1DGroup``) writes the denominator as
``1 + sum_j |b_j| x^j`` (no ``|x|``), which differs from the kernels KAT trains with for negative
inputs; the kernels' form (above) is the one imported.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kanzoo.convert._checkpoint import (
    check_float_sources,
    label_of,
    names_its_source,
    read_checkpoint,
    unwrap_state_dict,
)
from kanzoo.models._registry import create_model, is_model, list_models, model_info
from kanzoo.models._validate import CheckpointMismatchError, key_mismatches
from kanzoo.models.kan_vit import KANViT, KANViTConfig

__all__ = [
    "KAT_NUM_HEADS",
    "from_kat",
    "is_kat_state_dict",
    "kat_to_kanzoo_state_dict",
    "load_kat_state_dict",
]

#: KAT's number of attention heads for each registered embed dim (tiny, small, base).
KAT_NUM_HEADS = {192: 3, 384: 6, 768: 12}

_EMA_KEYS = ("state_dict_ema", "model_ema", "ema")
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
_ACT = re.compile(r"^(blocks\.\d+\.mlp\.)act([12])\.weight_(numerator|denominator)$")
_FC = re.compile(r"^(blocks\.\d+\.mlp\.fc[12]\.)(weight|bias)$")
_ACT_INITS = {"swish": "silu", "silu": "silu", "gelu": "gelu"}


def load_kat_state_dict(
    source: Mapping[str, Any] | nn.Module | str | os.PathLike,
    *,
    use_ema: bool = False,
    allow_nonfinite: bool = False,
) -> dict[str, torch.Tensor]:
    """Read and unwrap a KAT ``state_dict``.

    Args:
        source: A mapping of names to tensors, a KAT module, or a path to a ``.pth``/``.pt``/
            ``.bin``/``.ckpt``/``.tar`` file (``torch.load`` with ``weights_only=True``, never
            arbitrary unpickling) or a ``.safetensors`` file. Accepted wrappers:
            ``{"model": sd}`` (KAT's released files), ``{"state_dict": sd}`` (timm's
            ``train.py`` checkpoints), ``{"model_state_dict": sd}``, ``{"module": sd}``,
            ``{"net": sd}`` (other entries such as an optimizer, or the ``argparse.Namespace`` that
            timm's ``train.py`` saves as ``args``, are ignored), and key prefixes
            ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``).
        use_ema: Take the EMA weights (``state_dict_ema``/``model_ema``/``ema``) of a training
            checkpoint instead of the raw ones.
        allow_nonfinite: Accept NaN/inf weights (refused by default).

    Returns:
        A plain ``dict`` of KAT key -> tensor.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: Unreadable file, no tensors, non-tensor values, NaN/inf values, or no EMA weights
            when asked.
    """
    label = label_of(source)
    if isinstance(source, nn.Module):
        source = source.state_dict()
    if isinstance(source, (str, os.PathLike)):
        # timm's train.py stores its argparse.Namespace beside the weights: allow just that class
        source = read_checkpoint(
            source, who="from_kat", suffixes=_TORCH_SUFFIXES, safe_globals=[argparse.Namespace]
        )
    if use_ema and isinstance(source, Mapping):
        ema = next((source[k] for k in _EMA_KEYS if isinstance(source.get(k), Mapping)), None)
        if ema is None:
            raise ValueError(f"from_kat: use_ema=True but the checkpoint has none of {list(_EMA_KEYS)}")
        source = ema
    return unwrap_state_dict(source, who="from_kat", label=label, allow_nonfinite=allow_nonfinite)


def _shape(sd: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"from_kat: missing key {key!r}; this does not look like a KAT state_dict")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise ValueError(f"from_kat: {key} must have {ndim} dimensions, got shape {shape}")
    return shape


def _infer_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """KANViTConfig fields that the tensors determine."""
    embed_dim, in_chans, ph, pw = _shape(sd, "patch_embed.proj.weight", 4)
    if ph != pw:
        raise ValueError(f"from_kat: only square patches are supported, got {ph}x{pw}")
    if "cls_token" not in sd:
        raise ValueError("from_kat: missing key 'cls_token'; KAN-ViT needs KAT's class token")
    tokens = _shape(sd, "pos_embed", 3)[1] - 1
    side = math.isqrt(max(tokens, 0))
    if tokens < 1 or side * side != tokens:
        raise ValueError(f"from_kat: pos_embed holds {tokens} patch positions, not a square grid")
    depth = 0
    while f"blocks.{depth}.norm1.weight" in sd:
        depth += 1
    if depth == 0:
        raise ValueError("from_kat: no transformer blocks (missing 'blocks.0.norm1.weight')")
    hidden = _shape(sd, "blocks.0.mlp.fc1.weight", 2)[0]
    groups, den = _shape(sd, "blocks.0.mlp.act1.weight_denominator", 2)
    num = _shape(sd, "blocks.0.mlp.act1.weight_numerator", 2)[1]
    for width, where in ((embed_dim, "embed dim"), (hidden, "FFN width")):
        if width % groups:
            raise ValueError(
                f"from_kat: {groups} rational groups do not divide the {where} {width}; KAT's kernels "
                "need equal contiguous groups"
            )
    if num < 2:
        raise ValueError(f"from_kat: weight_numerator needs >= 2 coefficients, got {num}")
    ratio = hidden / embed_dim
    if int(embed_dim * ratio) != hidden:  # timm builds int(dim * mlp_ratio) hidden units
        ratio = (hidden + 0.5) / embed_dim
    layer_kwargs: dict[str, Any] = {"num_groups": groups}
    if (num - 1, den) != (5, 4):
        layer_kwargs.update(numerator_degree=num - 1, denominator_degree=den)
    return {
        "img_size": side * ph,
        "patch_size": ph,
        "in_chans": in_chans,
        "num_classes": _shape(sd, "head.weight", 2)[0] if "head.weight" in sd else 0,
        "global_pool": "avg" if "fc_norm.weight" in sd else "token",
        "embed_dim": embed_dim,
        "depth": depth,
        "mlp_ratio": ratio,
        "qkv_bias": "blocks.0.attn.qkv.bias" in sd,
        "mlp_layer": "kan_rational",
        "layer_kwargs": layer_kwargs,
        # the value is replaced by the checkpoint's gammas; only its presence matters
        "init_values": 1e-5 if "blocks.0.ls1.gamma" in sd else None,
    }


def is_kat_state_dict(sd: Mapping[str, Any], prefix: str = "") -> bool:
    """Whether ``sd`` holds KAT's FFN names (``blocks.<i>.mlp.act<n>.weight_*``) under ``prefix``."""
    return any(k.startswith(prefix) and _ACT.match(k[len(prefix) :]) for k in sd)


def kat_to_kanzoo_state_dict(
    sd: Mapping[str, torch.Tensor], *, num_groups: int | None = None, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Rename and reshape KAT tensors to kanzoo ``KANViT`` names (see the module docstring).

    Args:
        sd: A KAT state dict (unwrapped, see :func:`load_kat_state_dict`).
        num_groups: Rational groups; a shared ``(1, m + 1)`` numerator is repeated to
            ``(num_groups, m + 1)``. Default: the row count of the same activation's denominator.
        prefix: Only keys starting with ``prefix`` are renamed (the prefix is kept).

    Returns:
        A new dict; keys outside the FFNs keep their names.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        local = key[len(prefix) :] if key.startswith(prefix) else None
        act = _ACT.match(local) if local is not None else None
        fc = _FC.match(local) if local is not None else None
        if act:
            head, n, part = act.groups()
            if part == "numerator" and value.dim() == 2 and value.shape[0] == 1:
                groups = num_groups
                if groups is None:
                    den = sd.get(f"{prefix}{head}act{n}.weight_denominator")
                    groups = den.shape[0] if den is not None and den.dim() == 2 else 1
                value = value.expand(groups, -1)
            out[f"{prefix}{head}fc{n}.basis.{part}"] = value.clone()
        elif fc and fc.group(2) == "weight" and value.dim() == 2:
            out[f"{prefix}{fc.group(1)}spline_weight"] = value.unsqueeze(-1)
        else:
            out[key] = value
    return out


def _kat_name(kanzoo_key: str) -> str:
    m = re.match(r"^(blocks\.\d+\.mlp\.)fc([12])\.basis\.(numerator|denominator)$", kanzoo_key)
    if m:
        return f"{m.group(1)}act{m.group(2)}.weight_{m.group(3)}"
    if kanzoo_key.endswith(".spline_weight"):
        return kanzoo_key[: -len("spline_weight")] + "weight"
    return kanzoo_key


def _check_layout(model: KANViT, mapped: Mapping[str, torch.Tensor], *, label: str) -> None:
    report = key_mismatches(model.state_dict(), mapped, name=_kat_name)
    if report:
        c = model.config
        target = (
            f"KAT with embed_dim={c.embed_dim}, depth={c.depth}, mlp_ratio={c.mlp_ratio:g}, "
            f"{c.layer_kwargs}, num_classes={c.num_classes}"
        )
        raise CheckpointMismatchError("from_kat: " + report.message(label, target))
    check_float_sources(model, mapped, who="from_kat", label=label, name=_kat_name)


@names_its_source("from_kat")
def from_kat(
    source: Mapping[str, Any] | nn.Module | str | os.PathLike,
    *,
    model_name: str | None = None,
    num_classes: int | None = None,
    num_heads: int | None = None,
    act_init: str | None = None,
    use_ema: bool = False,
    drop_path_rate: float = 0.0,
    allow_nonfinite: bool = False,
) -> KANViT:
    """Convert a KAT (``Adamdad/kat``) checkpoint into a kanzoo ``KANViT`` with the same logits.

    Args:
        source: The KAT state_dict, module, or a checkpoint path (see :func:`load_kat_state_dict`
            for files, wrappers and prefixes accepted).
        model_name: A registered ``kan_vit_*`` name to build (e.g. ``"kan_vit_tiny_swish_patch16_224"``);
            the tensors' sizes override its preset. Default: a ``KANViT`` built from the tensors.
        num_classes: Classes of the returned head. ``None`` or the checkpoint's count keeps KAT's
            head; another count replaces it by a fresh head (for fine-tuning), like timm's
            ``create_model(..., num_classes=n)``.
        num_heads: Attention heads (not stored in the weights); default KAT's preset for the
            embed dim (192: 3, 384: 6, 768: 12), required for other widths.
        act_init: How KAT initialised ``act2`` (``"swish"``, KAT's default, or ``"gelu"``); only
            recorded in the config (``rational_init``) for re-initialisation, never changes outputs.
            Default: swish, or the preset of ``model_name``.
        use_ema: Import the EMA weights of a timm training checkpoint.
        drop_path_rate: Stochastic depth for further training (KAT's recipes use 0.1).
        allow_nonfinite: Import NaN/inf weights (refused by default).

    Returns:
        The model in eval mode, in the checkpoint's dtype, whose logits equal KAT's ``model(x)``.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: Unreadable source, invalid options, or tensors that do not fit KAT's layout
            (missing, unexpected and wrongly shaped keys are named with KAT's names).
    """
    label = label_of(source)
    sd = load_kat_state_dict(source, use_ema=use_ema, allow_nonfinite=allow_nonfinite)
    cfg = _infer_config(sd)
    embed_dim = cfg["embed_dim"]
    if num_heads is None:
        if embed_dim not in KAT_NUM_HEADS:
            raise ValueError(
                f"from_kat: embed dim {embed_dim} is not one of KAT's presets {KAT_NUM_HEADS}; pass num_heads"
            )
        num_heads = KAT_NUM_HEADS[embed_dim]
    if int(num_heads) < 1 or embed_dim % int(num_heads):
        raise ValueError(f"from_kat: num_heads={num_heads} must be >= 1 and divide the embed dim {embed_dim}")
    cfg["num_heads"] = int(num_heads)
    if act_init is not None:
        if act_init not in _ACT_INITS:
            raise ValueError(f"from_kat: act_init must be one of {sorted(_ACT_INITS)}, got {act_init!r}")
        cfg["rational_init"] = _ACT_INITS[act_init]
    elif model_name is None:
        cfg["rational_init"] = "silu"
    if num_classes is not None and int(num_classes) < 0:
        raise ValueError(f"from_kat: num_classes must be >= 0, got {num_classes}")
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"from_kat: drop_path_rate must be in [0, 1), got {drop_path_rate}")
    cfg["drop_path_rate"] = float(drop_path_rate)
    dtype = sd["patch_embed.proj.weight"].dtype
    if not dtype.is_floating_point:
        raise ValueError(f"from_kat: patch_embed.proj.weight must be floating point, got {dtype}")

    if model_name is None:
        model = KANViT(KANViTConfig.from_dict(cfg))
    else:
        if not is_model(model_name) or model_info(model_name)["family"] != "kan_vit":
            names = list_models("kan_vit_*")
            raise ValueError(f"from_kat: model_name must be a KAN-ViT name ({names}), got {model_name!r}")
        model = create_model(model_name, **cfg)
    model = model.to(dtype)
    mapped = kat_to_kanzoo_state_dict(sd, num_groups=cfg["layer_kwargs"]["num_groups"])
    _check_layout(model, mapped, label=label)
    model.load_state_dict(mapped, strict=True)
    if num_classes is not None and int(num_classes) != model.config.num_classes:
        model.reset_classifier(int(num_classes))
        model.to(dtype)
    return model.eval()
