"""Registered KAN-GPT sizes, their MLP twins and parameter-matched MLP twins.

``kan_gpt_<size>`` has KAN feed-forward layers; ``gpt_<size>`` is the same model with linear FFN
layers (everything else identical); ``gpt_<size>_matched`` is that twin with its FFN hidden width
solved so its parameter count is within 5% of ``kan_gpt_<size>``'s. Every function takes config
overrides (``attn_layer="kan"``, ``head_layer="kan"``, ``layer_kwargs={"grid_size": 8}``,
``vocab_size=65``, ...), applied to the KAN reference and the twin alike.
"""

from __future__ import annotations

from typing import Any

from kanzoo.models._base import parameter_count_of
from kanzoo.models._gpt_config import KanGPTConfig
from kanzoo.models._registry import register_model
from kanzoo.models.kan_gpt import KanGPTForCausalLM

__all__ = ["GPT_SIZES", "count_gpt_parameters", "matched_ffn_width"]

# nano trains on a 2-core CPU at a few hundred tokens per step; mini/small are for real runs.
GPT_SIZES: dict[str, dict[str, Any]] = {
    "nano": {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 128, "ffn_ratio": 2.0},
    "mini": {"n_layer": 4, "n_head": 4, "n_embd": 128, "n_positions": 256, "ffn_ratio": 2.0},
    "small": {"n_layer": 6, "n_head": 6, "n_embd": 192, "n_positions": 256, "ffn_ratio": 2.0},
}
_TOLERANCE = 0.05
_META = {"task": "lm", "default_data": "shakespeare"}


def _config(size: str, fixed: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    # Unknown keys are refused by KanGPTConfig itself (one line, did-you-mean).
    return {**GPT_SIZES[size], **fixed, **overrides}


def count_gpt_parameters(config: KanGPTConfig) -> int:
    """Number of distinct parameters of ``KanGPTForCausalLM(config)`` (built on the meta device)."""
    return parameter_count_of(lambda: KanGPTForCausalLM(config))


def matched_ffn_width(kan_kwargs: dict[str, Any], *, tolerance: float = _TOLERANCE) -> int:
    """FFN hidden width of the linear twin whose parameter count matches the KAN model's.

    The twin's parameter count is affine in its FFN width, so two counts give the exact slope;
    the width is solved for, rounded, and checked against ``tolerance``.

    Args:
        kan_kwargs: Config fields of the KAN reference model.
        tolerance: Largest accepted relative difference of the parameter counts.

    Returns:
        The FFN hidden width for the linear twin (``ffn_hidden_size``).
    """
    kan_config = KanGPTConfig(**kan_kwargs)
    target = count_gpt_parameters(kan_config)
    twin = {**kan_kwargs, "ffn_layer": "linear", "ffn_activation": kan_kwargs.get("ffn_activation")}
    w0 = kan_config.ffn_width
    p0 = count_gpt_parameters(KanGPTConfig(**{**twin, "ffn_hidden_size": w0}))
    p1 = count_gpt_parameters(KanGPTConfig(**{**twin, "ffn_hidden_size": w0 + 1}))
    width = max(1, round(w0 + (target - p0) / (p1 - p0)))
    got = p0 + (width - w0) * (p1 - p0)
    if abs(got - target) > tolerance * target:
        raise ValueError(
            f"no linear FFN width matches {target} KAN parameters within {tolerance:.0%} "
            f"(closest: width {width} with {got}); the non-FFN parameters alone exceed the target"
        )
    return width


def _kan(size: str, overrides: dict[str, Any]) -> KanGPTForCausalLM:
    return KanGPTForCausalLM(KanGPTConfig(**_config(size, {"ffn_layer": "kan"}, overrides)))


def _twin(size: str, overrides: dict[str, Any]) -> KanGPTForCausalLM:
    return KanGPTForCausalLM(KanGPTConfig(**_config(size, {"ffn_layer": "linear"}, overrides)))


def _matched(size: str, overrides: dict[str, Any]) -> KanGPTForCausalLM:
    if "ffn_hidden_size" in overrides or "ffn_ratio" in overrides:
        raise ValueError("a matched twin solves its own FFN width; override the KAN model's size instead")
    kan_kwargs = _config(size, {"ffn_layer": "kan"}, overrides)
    if kan_kwargs["ffn_layer"] == "linear":
        raise ValueError("a matched twin mirrors a KAN FFN; ffn_layer='linear' leaves nothing to match")
    width = matched_ffn_width(kan_kwargs)
    twin = {**kan_kwargs, "ffn_layer": "linear", "ffn_hidden_size": width}
    return KanGPTForCausalLM(KanGPTConfig(**twin))


@register_model(family="kan_gpt", aliases=("kan_gpt",), **_META)
def kan_gpt_nano(**overrides: Any) -> KanGPTForCausalLM:
    """KAN-GPT nano: 2 layers, width 64, 4 heads, B-spline KAN FFN (ratio 2); CPU-trainable."""
    return _kan("nano", overrides)


@register_model(family="kan_gpt", **_META)
def kan_gpt_mini(**overrides: Any) -> KanGPTForCausalLM:
    """KAN-GPT mini: 4 layers, width 128, 4 heads, B-spline KAN FFN (ratio 2)."""
    return _kan("mini", overrides)


@register_model(family="kan_gpt", **_META)
def kan_gpt_small(**overrides: Any) -> KanGPTForCausalLM:
    """KAN-GPT small: 6 layers, width 192, 6 heads, B-spline KAN FFN (ratio 2)."""
    return _kan("small", overrides)


@register_model(family="gpt", twin_of="kan_gpt_nano", aliases=("gpt",), **_META)
def gpt_nano(**overrides: Any) -> KanGPTForCausalLM:
    """MLP twin of ``kan_gpt_nano`` (same widths, GELU MLP instead of the KAN FFN)."""
    return _twin("nano", overrides)


@register_model(family="gpt", twin_of="kan_gpt_mini", **_META)
def gpt_mini(**overrides: Any) -> KanGPTForCausalLM:
    """MLP twin of ``kan_gpt_mini``."""
    return _twin("mini", overrides)


@register_model(family="gpt", twin_of="kan_gpt_small", **_META)
def gpt_small(**overrides: Any) -> KanGPTForCausalLM:
    """MLP twin of ``kan_gpt_small``."""
    return _twin("small", overrides)


@register_model(family="gpt", twin_of="kan_gpt_nano", **_META)
def gpt_nano_matched(**overrides: Any) -> KanGPTForCausalLM:
    """MLP twin of ``kan_gpt_nano`` with its FFN widened to the KAN model's parameter count (±5%)."""
    return _matched("nano", overrides)


@register_model(family="gpt", twin_of="kan_gpt_mini", **_META)
def gpt_mini_matched(**overrides: Any) -> KanGPTForCausalLM:
    """MLP twin of ``kan_gpt_mini`` with matched parameter count (±5%)."""
    return _matched("mini", overrides)


@register_model(family="gpt", twin_of="kan_gpt_small", **_META)
def gpt_small_matched(**overrides: Any) -> KanGPTForCausalLM:
    """MLP twin of ``kan_gpt_small`` with matched parameter count (±5%)."""
    return _matched("small", overrides)
