"""Import kan-gpt (github.com/AdityaNG/kan-gpt) efficient-kan GPT state dicts as ``KanGPTForCausalLM``.

Layout learned from ``kan_gpt/model.py`` (``GPT``, ``Block``, ``CausalSelfAttention``) and
``kan_gpt/efficient_kan/model.py`` (``KAN``, ``KANLinear``): every projection is a one-layer
efficient-kan ``KAN(width=[in, out])`` (attention ``c_attn``/``c_proj``, MLP ``c_fc``/``c_proj``
and ``lm_head``), without bias, SiLU base branch, standalone spline scale, grid 3 and (because
kan-gpt passes ``grid`` as the order) spline order 3. Pre-LN blocks with default ``nn.LayerNorm``
(eps 1e-5, with bias), tanh-GELU between the MLP projections, learned positions, untied head.

Mapping: ``<proj>.layers.0.{base_weight,spline_weight,spline_scaler}`` -> ``<proj>.<same>``,
``<proj>.layers.0.grid`` -> ``<proj>.basis.grid``; the causal-mask buffer ``attn.bias`` is checked
(lower-triangular ones) and dropped. Dropout (0.1 in kan-gpt) only acts in training.
The pykan-based variant (``KAN_IMPLEMENTATION=ORIGINAL_KAN``) is not supported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from kanzoo.convert._checkpoint import (
    check_float_sources,
    label_of,
    names_its_source,
    read_checkpoint,
    unwrap_state_dict,
)
from kanzoo.models._gpt_config import KanGPTConfig
from kanzoo.models._validate import CheckpointError, CheckpointMismatchError, key_mismatches
from kanzoo.models.kan_gpt import KanGPTForCausalLM

__all__ = ["KAN_GPT_PRESETS", "from_kan_gpt", "kan_gpt_config"]

# kan-gpt's model_type presets: name -> (n_layer, n_head, n_embd).
KAN_GPT_PRESETS: dict[str, tuple[int, int, int]] = {
    "openai-gpt": (12, 12, 768),
    "gpt2": (12, 12, 768),
    "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600),
    "gopher-44m": (8, 16, 512),
    "gpt-mini": (6, 6, 192),
    "gpt-micro": (4, 4, 128),
    "gpt-nano": (3, 3, 48),
    "gpt-pico": (1, 1, 1),
}
_PROJ = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def kan_gpt_config(
    *,
    vocab_size: int,
    block_size: int,
    n_layer: int,
    n_head: int,
    n_embd: int,
    ffn_hidden_size: int | None = None,
    grid_size: int = 3,
    spline_order: int = 3,
    spline_scaler: bool = True,
    dropout: float = 0.1,
) -> KanGPTConfig:
    """The ``KanGPTConfig`` of a kan-gpt efficient-kan GPT (see module docstring).

    Args:
        vocab_size: Vocabulary size.
        block_size: Number of learned positions.
        n_layer: Blocks.
        n_head: Attention heads (divides ``n_embd``).
        n_embd: Width.
        ffn_hidden_size: MLP width (kan-gpt: ``4 * n_embd``).
        grid_size: efficient-kan grid intervals.
        spline_order: Spline order.
        spline_scaler: Whether the layers have a standalone spline scale.
        dropout: Embedding/attention/residual dropout (training only).
    """
    return KanGPTConfig(
        vocab_size=vocab_size,
        n_positions=block_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        ffn_hidden_size=ffn_hidden_size or 4 * n_embd,
        ffn_layer="kan",
        attn_layer="kan",
        head_layer="kan",
        ffn_activation="gelu_tanh",
        bias=False,
        tie_word_embeddings=False,
        layer_norm_epsilon=1e-5,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        resid_pdrop=dropout,
        layer_kwargs={
            "grid_size": grid_size,
            "spline_order": spline_order,
            "grid_range": [-1.0, 1.0],
            "base_activation": "silu",
            "spline_scaler": spline_scaler,
        },
    )


def _load(source: Any, *, allow_nonfinite: bool) -> dict[str, torch.Tensor]:
    label = label_of(source)
    if isinstance(source, (str, os.PathLike)):
        source = read_checkpoint(source, who="from_kan_gpt", suffixes=None)
    return unwrap_state_dict(
        source, who="from_kan_gpt", label=label, allow_nonfinite=allow_nonfinite, knots=".grid"
    )


def _peer_key(ours: str) -> str:
    if ours.endswith(".basis.grid"):
        return ours[: -len("basis.grid")] + "layers.0.grid"
    stem, _, name = ours.rpartition(".")
    if name in ("base_weight", "spline_weight", "spline_scaler"):
        return f"{stem}.layers.0.{name}"
    return ours


def _listing(keys: list[str]) -> str:  # for the architecture-reading errors above the full check
    return f"{', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''} ({len(keys)} in all)"


@names_its_source("from_kan_gpt")
def from_kan_gpt(
    source: Mapping[str, torch.Tensor] | str | os.PathLike,
    *,
    n_head: int | None = None,
    model_type: str | None = None,
    dropout: float = 0.1,
    allow_nonfinite: bool = False,
) -> KanGPTForCausalLM:
    """Convert a kan-gpt efficient-kan ``GPT`` state dict into a :class:`KanGPTForCausalLM` (eval mode).

    Args:
        source: ``GPT.state_dict()`` or a ``.pth``/``.pt``/``.bin``/``.ckpt`` (``weights_only``) or
            ``.safetensors`` file; ``{"model"|"state_dict"|"model_state_dict": sd}`` wrappers and
            ``module.``/``_orig_mod.`` prefixes are unwrapped.
        n_head: Attention heads. Default: from ``model_type``, else from the kan-gpt preset whose
            (n_layer, n_embd) match the shapes.
        model_type: kan-gpt preset name (``"gpt-mini"`` ...); checked against the shapes.
        dropout: Dropout stored in the config (kan-gpt default 0.1; inactive in eval).
        allow_nonfinite: Import NaN/inf weights (refused by default). Knot grids must be finite
            and strictly increasing regardless.

    Raises:
        ValueError: Missing/unexpected keys, wrong shapes, unknown heads, a pykan checkpoint,
            NaN/inf or integer weights, a NaN, constant or decreasing knot grid.
    """
    label = label_of(source)
    sd = _load(source, allow_nonfinite=allow_nonfinite)
    if any(".act_fun." in k or ".symbolic_fun." in k for k in sd):
        raise ValueError(
            "from_kan_gpt: this is a pykan (ORIGINAL_KAN) kan-gpt checkpoint; only EFFICIENT_KAN is supported"
        )
    need = [
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "lm_head.layers.0.spline_weight",
        "lm_head.layers.0.grid",
        "transformer.h.0.mlp.c_fc.layers.0.base_weight",
    ]
    missing = [k for k in need if k not in sd]
    if missing:
        raise ValueError(f"from_kan_gpt: missing keys {_listing(missing)}; got {_listing(sorted(sd))}")
    vocab, n_embd = sd["transformer.wte.weight"].shape
    block = sd["transformer.wpe.weight"].shape[0]
    n_layer = len({k.split(".")[2] for k in sd if k.startswith("transformer.h.")})
    n = sd["lm_head.layers.0.spline_weight"].shape[-1]
    k = sd["lm_head.layers.0.grid"].shape[-1] - n - 1
    if k < 1 or n - k < 1:
        raise ValueError(f"from_kan_gpt: lm_head grid/spline shapes give order {k} and {n - k} intervals")
    if model_type is not None:
        if model_type not in KAN_GPT_PRESETS:
            raise ValueError(
                f"from_kan_gpt: unknown model_type {model_type!r}; choose from {sorted(KAN_GPT_PRESETS)}"
            )
        p_layer, p_head, p_embd = KAN_GPT_PRESETS[model_type]
        if (p_layer, p_embd) != (n_layer, n_embd):
            raise ValueError(
                f"from_kan_gpt: model_type {model_type!r} has n_layer={p_layer}, n_embd={p_embd}, "
                f"the state dict n_layer={n_layer}, n_embd={n_embd}"
            )
        if n_head is not None and n_head != p_head:
            raise ValueError(
                f"from_kan_gpt: n_head={n_head} contradicts model_type {model_type!r} ({p_head})"
            )
        n_head = p_head
    if n_head is None:
        heads = {h for (l_, h, e) in KAN_GPT_PRESETS.values() if (l_, e) == (n_layer, n_embd)}
        if len(heads) != 1:
            raise ValueError(
                f"from_kan_gpt: n_layer={n_layer}, n_embd={n_embd} match no kan-gpt preset; pass n_head"
            )
        n_head = heads.pop()
    if n_embd % n_head:
        raise ValueError(f"from_kan_gpt: n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    config = kan_gpt_config(
        vocab_size=vocab,
        block_size=block,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        ffn_hidden_size=sd["transformer.h.0.mlp.c_fc.layers.0.base_weight"].shape[0],
        grid_size=n - k,
        spline_order=k,
        spline_scaler="lm_head.layers.0.spline_scaler" in sd,
        dropout=dropout,
    )
    dtype = sd["transformer.wte.weight"].dtype
    if not dtype.is_floating_point:
        raise CheckpointError(
            f"from_kan_gpt: {label}: tensor 'transformer.wte.weight' has dtype "
            f"{str(dtype).removeprefix('torch.')}; expected a floating-point tensor"
        )
    with torch.device("meta"):
        model = KanGPTForCausalLM(config)
    model = model.to(dtype)
    ours = model.state_dict()
    expected = {_peer_key(key): key for key in ours}
    masks = {f"transformer.h.{i}.attn.bias": i for i in range(n_layer)}
    report = key_mismatches({p: ours[o] for p, o in expected.items()}, sd, ignore_unexpected=masks)
    tril = torch.tril(torch.ones(block, block)).view(1, 1, block, block)
    report.shapes += [
        f"{m} (expected the ({block}, {block}) lower-triangular causal mask)"
        for m in masks
        if m in sd and (sd[m].shape != tril.shape or not torch.equal(sd[m].float().cpu(), tril))
    ]
    if report:
        raise CheckpointMismatchError("from_kan_gpt: " + report.message(label, "kan-gpt's GPT layout"))
    check_float_sources(
        model, {o: sd[p] for p, o in expected.items()}, who="from_kan_gpt", label=label, name=_peer_key
    )
    model.load_state_dict(
        {o: sd[p].detach().to(ours[o].dtype).clone() for p, o in expected.items()}, strict=True, assign=True
    )
    return model.eval()
