"""Configuration of the KAN-GPT family (a transformers ``PreTrainedConfig``).

Unknown keys are refused at construction (so a typo or a foreign key in ``config.json`` fails with
one line naming it), except the keys every transformers config takes. Attributes that code sets on
a built config (``config.foo = 1``, as some transformers utilities do) are saved as usual; their
names are listed under ``kanzoo_extra_keys`` in ``config.json`` so that what ``save_pretrained``
writes always loads again.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from transformers import GenerationConfig, PreTrainedConfig

__all__ = ["KanGPTConfig", "LAYER_SPECS", "TRANSFORMERS_CONFIG_KEYS"]

# Layer specs a config may name; the layer factory (kanzoo.layers.get_linear_layer) turns them into
# constructors. Strings only, so the config stays JSON-serializable.
LAYER_SPECS = ("linear", "kan", "kan_rational")


class KanGPTConfig(PreTrainedConfig):
    """Configuration of a GPT-2 style decoder whose feed-forward layers may be KAN layers.

    The KAN model and its MLP twin are the same class: the twin only sets ``ffn_layer="linear"``.
    Layer choices are strings understood by ``kanzoo.layers.get_linear_layer`` and their options
    live in ``layer_kwargs`` (for example ``{"grid_size": 8, "basis": "rbf"}``), so the config
    serializes to plain JSON.

    Args:
        vocab_size: Number of token ids.
        n_positions: Longest sequence the learned position embedding supports (alias
            ``max_position_embeddings``).
        n_embd: Model width (alias ``hidden_size``).
        n_layer: Number of decoder blocks (alias ``num_hidden_layers``).
        n_head: Number of attention heads; must divide ``n_embd`` (alias ``num_attention_heads``).
        ffn_ratio: Hidden width of the feed-forward block as a multiple of ``n_embd``.
        ffn_hidden_size: Explicit feed-forward hidden width; overrides ``ffn_ratio`` when set
            (parameter-matched twins use it).
        ffn_layer: Layer spec of the two feed-forward projections (``"kan"``, ``"kan_rational"``
            or ``"linear"``).
        attn_layer: Layer spec of the attention input (q, k, v) and output projections.
        head_layer: Layer spec of the language-model head.
        layer_kwargs: Keyword options forwarded to every non-``"linear"`` layer constructor.
        ffn_activation: Activation between the two feed-forward projections: ``"gelu"``,
            ``"gelu_tanh"``, ``"relu"``, ``"silu"`` or ``"identity"``. ``None`` decides from the
            built layer: ``"identity"`` when it is a KAN layer (``kanzoo.layers.is_kan_layer``),
            whose edges carry their own learnable nonlinearities, else ``"gelu"``.
        bias: Whether projections have biases.
        embd_pdrop: Dropout on the summed token and position embeddings.
        attn_pdrop: Dropout on the attention probabilities.
        resid_pdrop: Dropout on the output of every attention and feed-forward block.
        layer_norm_epsilon: Epsilon of the layer norms.
        initializer_range: Standard deviation of the normal init of linear layers and embeddings.
        use_cache: Whether the forward pass returns a key/value cache by default (in eval mode).
        bos_token_id: Id of the beginning-of-sequence token, if any.
        eos_token_id: Id(s) of the end-of-sequence token, if any.
        pad_token_id: Id of the padding token, if any.
        tie_word_embeddings: Share the token embedding matrix with a linear LM head. ``None`` ties
            when ``head_layer == "linear"``; a KAN head cannot be tied.
        kanzoo_model: Family key written to ``config.json`` for ``kanzoo.from_pretrained``.
        **kwargs: The keys every transformers config takes besides its fields (``torch_dtype``,
            ``attn_implementation``, ``output_attentions``, ``name_or_path``, generation parameters,
            the keys transformers 4.x wrote into every ``config.json``; see
            :data:`TRANSFORMERS_CONFIG_KEYS`). Any other key raises ``ValueError`` naming it.
    """

    model_type = "kan_gpt"
    attribute_map = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
    }

    vocab_size: int = 256
    n_positions: int = 128
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    ffn_ratio: float = 4.0
    ffn_hidden_size: int | None = None
    ffn_layer: str = "kan"
    attn_layer: str = "linear"
    head_layer: str = "linear"
    layer_kwargs: dict[str, Any] | None = None
    ffn_activation: str | None = None
    bias: bool = True
    embd_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    tie_word_embeddings: bool | None = None
    kanzoo_model: str = "kan_gpt"

    def __post_init__(self, **kwargs: Any) -> None:
        for alias in [k for k in kwargs if k in self.attribute_map]:  # before the checks below
            setattr(self, self.attribute_map[alias], kwargs.pop(alias))
        saved_extras = kwargs.pop(EXTRA_KEYS, None) or []
        if not isinstance(saved_extras, list) or not all(isinstance(k, str) for k in saved_extras):
            raise ValueError(f"{EXTRA_KEYS} must be a list of attribute names, got {saved_extras!r}")
        unknown = sorted(set(kwargs) - TRANSFORMERS_CONFIG_KEYS - _generation_keys() - set(saved_extras))
        if unknown:
            known = sorted(_field_names() | set(self.attribute_map))
            hints = "".join(
                f"; {key!r}: did you mean {close[0]!r}?"
                for key in unknown
                if (close := difflib.get_close_matches(key, known, n=1))
            )
            raise ValueError(f"KanGPTConfig has no field(s) {unknown}{_hint_or_fields(hints, known)}")
        if self.layer_kwargs is None:
            self.layer_kwargs = {}
        if not isinstance(self.layer_kwargs, dict):
            raise ValueError(f"layer_kwargs must be a dict, got {type(self.layer_kwargs).__name__}")
        for name in ("ffn_layer", "attn_layer", "head_layer"):
            spec = getattr(self, name)
            if not isinstance(spec, str) or not spec:
                raise ValueError(
                    f"{name} must be a layer spec string such as {LAYER_SPECS}, got {spec!r}; "
                    "put layer options in layer_kwargs"
                )
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.ffn_hidden_size is not None and self.ffn_hidden_size < 1:
            raise ValueError(f"ffn_hidden_size must be a positive integer, got {self.ffn_hidden_size!r}")
        if self.ffn_hidden_size is None and not self.ffn_ratio > 0:
            raise ValueError(f"ffn_ratio must be > 0, got {self.ffn_ratio!r}")
        if self.ffn_activation is not None and self.ffn_activation not in _ACTIVATIONS:
            raise ValueError(
                f"ffn_activation must be one of {sorted(_ACTIVATIONS)}, got {self.ffn_activation!r}"
            )
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.tie_word_embeddings is None:
            self.tie_word_embeddings = self.head_layer == "linear"
        elif self.tie_word_embeddings and self.head_layer != "linear":
            raise ValueError(
                f"tie_word_embeddings=True needs a linear LM head, but head_layer={self.head_layer!r}; "
                "pass tie_word_embeddings=False (or leave it None)"
            )
        super().__post_init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """transformers' dict, plus the names of attributes set after construction (see module doc)."""
        out = super().to_dict()
        out.pop(EXTRA_KEYS, None)
        extras = sorted(set(out) - _field_names() - TRANSFORMERS_CONFIG_KEYS - _generation_keys())
        if extras:
            out[EXTRA_KEYS] = extras
        return out

    @property
    def ffn_width(self) -> int:
        """The feed-forward hidden width actually built."""
        if self.ffn_hidden_size is not None:
            return int(self.ffn_hidden_size)
        return max(1, int(round(self.ffn_ratio * self.n_embd)))


_ACTIVATIONS = frozenset({"gelu", "gelu_tanh", "relu", "silu", "identity"})

EXTRA_KEYS = "kanzoo_extra_keys"

# Keys a transformers config accepts besides its dataclass fields. PreTrainedConfig.__post_init__ and
# from_dict consume the first group; to_dict/save_pretrained and transformers' integrations write the
# second; transformers 4.x wrote the third into every config.json (they stay plain attributes).
# Generation parameters (max_length, do_sample, ...) are accepted too: transformers drops them.
TRANSFORMERS_CONFIG_KEYS = frozenset(
    {
        "torch_dtype", "num_labels", "name_or_path", "_name_or_path", "_commit_hash",
        "output_attentions", "attn_implementation", "experts_implementation", "per_layer_config",
        "_attn_implementation_internal", "_experts_implementation_internal",
        "model_type", "quantization_config", "auto_map", "tie_last_hidden_states",
        "is_decoder", "add_cross_attention", "tie_encoder_decoder", "cross_attention_hidden_size",
        "torchscript", "pruned_heads", "use_bfloat16", "tf_legacy_loss", "finetuning_task",
        "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id", "task_specific_params",
    }
)  # fmt: skip


def _generation_keys() -> frozenset[str]:
    return frozenset(GenerationConfig._get_default_generation_params())


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(KanGPTConfig)}


def _hint_or_fields(hints: str, known: list[str]) -> str:
    """The did-you-mean hints, or the list of valid fields when there is no close match."""
    return hints if hints else f" (valid fields: {', '.join(known)})"
