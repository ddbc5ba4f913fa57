"""Import a U-KAN segmentation checkpoint as a kanzoo KAN-UNet with identical outputs.

Peer: the ``UKAN`` model of the GitHub repository ``CUHK-AIM-Group/U-KAN`` (``Seg_UKAN/archs.py``,
its ``KANLinear`` in ``Seg_UKAN/kan.py``, an efficient-kan layer). Its trainer saves
``torch.save(model.state_dict())`` as ``model.pth``. ``UKAN(embed_dims=[e0, e1, e2])`` is kanzoo's
``KANUNet`` with ``variant="ukan"``, ``conv_channels=[e0 // 8, e0 // 4, e0]`` and
``token_dims=[e1, e2]`` (registered as ``kan_unet_ukan_*``; ``no_kan`` twins as ``unet_ukan_*``).

Key mapping (U-KAN -> kanzoo)::

    encoder{1,2,3}.conv.<j>.*           -> encoder.{0,1,2}.<j>.*       conv3x3-BN-ReLU x2
    patch_embed{3,4}.{proj,norm}.*      -> embeds.{0,1}.{proj,norm}.*
    block{1,2}.<b>.norm2.*              -> token_stages.{0,1}.blocks.<b>.norm.*
    block{1,2}.<b>.layer.fc<n>.grid     -> token_stages.{0,1}.blocks.<b>.layer.fc<n>.basis.grid
    block{1,2}.<b>.layer.fc<n>.*        -> token_stages.{0,1}.blocks.<b>.layer.fc<n>.*
    block{1,2}.<b>.layer.dwconv_<n>.dwconv.* / .bn.*  -> ....layer.mix<n>.conv.* / .bn.*
    norm3, norm4                        -> token_stages.{0,1}.norm
    decoder{1,2,3,4}.conv.<j>.*         -> decoder.{0,1,2,3}.<j>.*
    dblock{1,2}.*  (same inner layout)  -> decoder_tokens.{0,1}.blocks.*
    dnorm3, dnorm4                      -> decoder_tokens.{0,1}.norm
    decoder5.conv.<j>.*                 -> final.<j>.*
    final.*                             -> head.*

``fc<n>`` holds efficient-kan tensors (``base_weight``, ``spline_weight``, ``spline_scaler``,
``grid``; no bias) or, for a ``no_kan`` checkpoint, ``nn.Linear``'s ``weight``/``bias``. The knots
are copied per input, so grids moved by efficient-kan's ``update_grid`` import exactly too.

Read from the shapes: input channels, the five widths, number of classes, blocks per token stage,
KAN or ``no_kan``, grid size, spline order, grid range and whether the standalone spline scale is
present. Caveats: outputs agree in eval mode (BatchNorm running statistics are imported; dropout
and drop-path are inactive); U-KAN's ``UKAN`` ignores its ``input_channels`` argument (the first
conv always takes 3 channels) and does not forward ``no_kan`` to its blocks, so a ``no_kan``
checkpoint comes from a patched copy — both are imported as their tensors say. U-KAN's own
pre-processing (resize, normalisation) belongs to the data pipeline, not to the model.
"""

from __future__ import annotations

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
from kanzoo.models._validate import CheckpointMismatchError, key_mismatches
from kanzoo.models.kan_unet import KANUNet, KANUNetConfig

__all__ = ["from_ukan", "load_ukan_state_dict", "ukan_key"]

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

# kanzoo name -> U-KAN name, tried in order (the first match wins).
_BLOCK_INNER = (
    (re.compile(r"^norm\.(.+)$"), r"norm2.\1"),
    (re.compile(r"^layer\.fc(\d)\.basis\.grid$"), r"layer.fc\1.grid"),
    (re.compile(r"^layer\.fc(\d)\.(.+)$"), r"layer.fc\1.\2"),
    (re.compile(r"^layer\.mix(\d)\.conv\.(.+)$"), r"layer.dwconv_\1.dwconv.\2"),
    (re.compile(r"^layer\.mix(\d)\.bn\.(.+)$"), r"layer.dwconv_\1.bn.\2"),
)
_STAGE = re.compile(r"^(token_stages|decoder_tokens)\.(\d+)\.(?:blocks\.(\d+)\.(.+)|norm\.(.+))$")
_SEQ = re.compile(r"^(encoder|decoder)\.(\d+)\.(.+)$")
_EMBED = re.compile(r"^embeds\.(\d+)\.(.+)$")


def ukan_key(kanzoo_key: str) -> str:
    """The U-KAN ``state_dict`` name of a kanzoo ``KANUNet`` (U-KAN layout) parameter or buffer.

    Args:
        kanzoo_key: A key of ``KANUNet.state_dict()`` with 3 conv stages and 2 token stages.

    Returns:
        The matching key of ``UKAN.state_dict()`` (e.g. ``embeds.0.proj.weight`` ->
        ``patch_embed3.proj.weight``).

    Raises:
        ValueError: ``kanzoo_key`` is not part of the U-KAN layout.
    """
    m = _SEQ.match(kanzoo_key)
    if m:
        return f"{m[1]}{int(m[2]) + 1}.conv.{m[3]}"
    m = _EMBED.match(kanzoo_key)
    if m:
        return f"patch_embed{int(m[1]) + 3}.{m[2]}"
    m = _STAGE.match(kanzoo_key)
    if m:
        kind, stage = m[1], int(m[2])
        if m[5] is not None:
            return f"{'norm' if kind == 'token_stages' else 'dnorm'}{stage + 3}.{m[5]}"
        block = f"{'block' if kind == 'token_stages' else 'dblock'}{stage + 1}.{m[3]}"
        for pattern, repl in _BLOCK_INNER:
            if pattern.match(m[4]):
                return f"{block}.{pattern.sub(repl, m[4])}"
    if kanzoo_key.startswith("final."):
        return "decoder5.conv." + kanzoo_key[len("final.") :]
    if kanzoo_key.startswith("head."):
        return "final." + kanzoo_key[len("head.") :]
    raise ValueError(f"{kanzoo_key!r} is not a parameter of the U-KAN layout")


def load_ukan_state_dict(
    source: Mapping[str, Any] | nn.Module | str | os.PathLike, *, allow_nonfinite: bool = False
) -> dict[str, torch.Tensor]:
    """Read and unwrap a U-KAN ``state_dict``.

    Args:
        source: A mapping of names to tensors, a ``UKAN`` module, or a path to a ``.pth``/``.pt``/
            ``.bin``/``.ckpt`` file (``torch.load`` with ``weights_only=True``, never arbitrary
            unpickling) or a ``.safetensors`` file. Accepted wrappers: ``{"state_dict": sd}``,
            ``{"model_state_dict": sd}``, ``{"model": sd}``, ``{"module": sd}``, ``{"net": sd}``
            (other entries beside the wrapper, e.g. an optimizer, are ignored), and key prefixes
            ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``), in any nesting.
        allow_nonfinite: Accept NaN/inf weights (refused by default).

    Returns:
        A plain ``dict`` of U-KAN key -> tensor.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: Unreadable file, no tensors, non-tensor values, NaN/inf values, knot grids that
            are not finite and strictly increasing.
    """
    label = label_of(source)
    if isinstance(source, (str, os.PathLike)):
        hint = ". Save model.state_dict(), not the pickled module"
        source = read_checkpoint(source, who="from_ukan", suffixes=_TORCH_SUFFIXES, hint=hint)
    return unwrap_state_dict(
        source, who="from_ukan", label=label, allow_nonfinite=allow_nonfinite, knots=".grid"
    )


def _shape(sd: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(
            f"from_ukan: missing key {key!r}, needed to read the architecture; is this a U-KAN (UKAN) "
            f"state_dict? Got {len(sd)} keys, e.g. {sorted(sd)[:6]}"
        )
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise ValueError(f"from_ukan: {key!r} should have {ndim} dimensions, got shape {shape}")
    return shape


def _count_blocks(sd: Mapping[str, torch.Tensor], name: str) -> int:
    pattern = re.compile(rf"^{name}\.(\d+)\.")
    indices = sorted({int(m[1]) for k in sd if (m := pattern.match(k))})
    if not indices or indices != list(range(len(indices))):
        raise ValueError(f"from_ukan: expected blocks {name}.0 .. {name}.<n-1>, found indices {indices}")
    return len(indices)


def _infer_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture fields of ``KANUNetConfig`` read from the tensor shapes."""
    c1, in_ch = _shape(sd, "encoder1.conv.0.weight", 4)[:2]
    c2 = _shape(sd, "encoder2.conv.0.weight", 4)[0]
    c3 = _shape(sd, "encoder3.conv.0.weight", 4)[0]
    e1 = _shape(sd, "patch_embed3.proj.weight", 4)[0]
    e2 = _shape(sd, "patch_embed4.proj.weight", 4)[0]
    num_classes = _shape(sd, "final.weight", 4)[0]
    depths = [_count_blocks(sd, "block1"), _count_blocks(sd, "block2")]
    decoder_depths = [_count_blocks(sd, "dblock1"), _count_blocks(sd, "dblock2")]
    if decoder_depths != depths[::-1]:
        raise ValueError(
            f"from_ukan: encoder token stages have {depths} blocks and decoder ones {decoder_depths}; "
            "kanzoo's KAN-UNet mirrors them (dblock1 as many as block2, dblock2 as many as block1)"
        )
    cfg: dict[str, Any] = dict(
        in_chans=in_ch,
        num_classes=num_classes,
        conv_channels=[c1, c2, c3],
        token_dims=[e1, e2],
        depths=depths,
        variant="ukan",
    )
    fc = "block1.0.layer.fc1."
    if fc + "spline_weight" in sd:
        n = _shape(sd, fc + "spline_weight", 3)[2]
        knots = sd[fc + "grid"] if fc + "grid" in sd else None
        if knots is None or knots.dim() != 2:
            raise ValueError(f"from_ukan: {fc}grid must be a (in, G + 2k + 1) knot tensor")
        k = knots.shape[1] - n - 1
        g = n - k
        if k < 1 or g < 1:
            raise ValueError(
                f"from_ukan: {fc}grid has {knots.shape[1]} knots for {n} spline coefficients per input: "
                f"spline order {k} and grid size {g} must both be >= 1"
            )
        lo, hi = float(knots[0, k]), float(knots[0, k + g])
        if not hi > lo:
            raise ValueError(f"from_ukan: {fc}grid range [{lo}, {hi}] is empty")
        cfg["token_layer"] = "kan"
        cfg["layer_kwargs"] = {
            "grid_size": g,
            "spline_order": k,
            "grid_range": [round(lo, 6), round(hi, 6)],
            "spline_scaler": fc + "spline_scaler" in sd,
        }
    elif fc + "weight" in sd:
        cfg["token_layer"] = "linear"
    else:
        raise ValueError(
            f"from_ukan: {fc}* holds neither KAN tensors (spline_weight, grid, ...) "
            "nor nn.Linear ones (weight)"
        )
    return cfg


def _check(option: str, given: Any, found: Any, where: str) -> None:
    if given is not None and given != found:
        raise ValueError(f"from_ukan: {option}={given!r} but the checkpoint has {found!r} ({where})")


@names_its_source("from_ukan")
def from_ukan(
    source: Mapping[str, Any] | nn.Module | str | os.PathLike,
    *,
    num_classes: int | None = None,
    input_channels: int | None = None,
    no_kan: bool | None = None,
    drop_path_rate: float = 0.0,
    img_size: int = 256,
    allow_nonfinite: bool = False,
) -> KANUNet:
    """Convert a U-KAN ``UKAN`` checkpoint into a kanzoo ``KANUNet`` (``variant="ukan"``).

    Args:
        source: The ``UKAN`` state_dict, module, or a checkpoint path (see
            :func:`load_ukan_state_dict` for files, wrappers and prefixes accepted).
        num_classes: Expected output channels; checked against ``final.weight`` (read from it
            when None).
        input_channels: Expected input channels; checked against ``encoder1.conv.0.weight``.
        no_kan: Expected token layers (True: ``nn.Linear``, False: KAN); read from the keys when None.
        drop_path_rate: U-KAN's ``drop_path_rate`` (only matters when training further).
        img_size: Nominal input size written to the config (U-KAN's trainer uses 256).
        allow_nonfinite: Import NaN/inf weights (refused by default).

    Returns:
        The model in eval mode, in the dtype of the checkpoint, whose output equals U-KAN's
        ``model(x)`` (eval mode) for every input whose height and width are multiples of 32.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: Unreadable source, options contradicting the checkpoint, or keys that do not fit
            the U-KAN layout (missing, unexpected and wrongly shaped keys are named, U-KAN names).
    """
    label = label_of(source)
    sd = load_ukan_state_dict(source, allow_nonfinite=allow_nonfinite)
    cfg = _infer_config(sd)
    _check("num_classes", num_classes, cfg["num_classes"], "final.weight")
    _check("input_channels", input_channels, cfg["in_chans"], "encoder1.conv.0.weight")
    _check("no_kan", no_kan, cfg["token_layer"] == "linear", "block1.0.layer.fc1")
    if not drop_path_rate >= 0.0 or drop_path_rate >= 1.0:
        raise ValueError(f"from_ukan: drop_path_rate must be in [0, 1), got {drop_path_rate}")
    if int(img_size) < 1:
        raise ValueError(f"from_ukan: img_size must be positive, got {img_size}")
    config = KANUNetConfig.from_dict(
        {**cfg, "drop_path_rate": float(drop_path_rate), "img_size": int(img_size)}
    )
    dtype = sd["final.weight"].dtype
    if not dtype.is_floating_point:
        raise ValueError(f"from_ukan: final.weight must be floating point, got {dtype}")
    model = KANUNet(config).to(dtype)

    names = {ukan_key(k): k for k in model.state_dict()}
    expected = model.state_dict()
    report = key_mismatches({u: expected[k] for u, k in names.items()}, sd)
    if report:
        raise CheckpointMismatchError(
            "from_ukan: " + report.message(label, "U-KAN with " + _describe(config))
        )
    check_float_sources(
        model, {k: sd[u] for u, k in names.items()}, who="from_ukan", label=label, name=ukan_key
    )
    model.load_state_dict({k: sd[u] for u, k in names.items()}, strict=True)
    return model.eval()


def _describe(config: KANUNetConfig) -> str:
    e0 = config.conv_channels[-1]
    kind = "no_kan (Linear)" if config.token_layer == "linear" else f"KAN {config.layer_kwargs}"
    return (
        f"embed_dims [{e0}, {config.token_dims[0]}, {config.token_dims[1]}], "
        f"conv stages {config.conv_channels}, "
        f"{config.in_chans} input channels, {config.num_classes} classes, {kind} token layers"
    )
