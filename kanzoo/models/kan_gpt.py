"""KAN-GPT: a GPT-2 style decoder whose feed-forward layers are KAN layers, and its MLP twin.

Pre-LN blocks (``x + attn(ln(x))``, ``x + ffn(ln(x))``), learned position embeddings, causal
self-attention with a transformers ``Cache`` for fast decoding. Every projection is built by a
constructor from ``kanzoo.layers.get_linear_layer``, so the KAN model and its MLP twin come from one
code path: the twin is the same class with ``ffn_layer="linear"``.

The classes follow transformers' ``PreTrainedModel`` contract the way its own decoders do: masks
come from ``transformers.masking_utils.create_causal_mask`` (padding, dynamic and static caches),
attention runs through the implementation the config selects (``"sdpa"`` by default, ``"eager"``
returns the weights), ``output_hidden_states``/``output_attentions``/``return_dict`` are read from
the call or the config, loss keyword arguments reach ``self.loss_function``, blocks support
gradient checkpointing, and the forward has no data-dependent Python control flow under
``torch.compile``/``torch.export``. Importing this module registers ``"kan_gpt"`` with
``AutoConfig``, ``AutoModel`` and ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    GenerationMixin,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, slice_logits_to_keep
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from kanzoo.layers import get_linear_layer, is_kan_layer
from kanzoo.models._gpt_config import KanGPTConfig
from kanzoo.models._gpt_init import (
    check_forward_inputs,
    check_generation_length,
    is_kan_module,
    load_pretrained,
    reset_unloaded,
)
from kanzoo.models._registry import register_family

__all__ = [
    "KanGPTAttention",
    "KanGPTBlock",
    "KanGPTConfig",
    "KanGPTForCausalLM",
    "KanGPTMLP",
    "KanGPTModel",
    "KanGPTPreTrainedModel",
    "eager_attention_forward",
]

LinearCtor = Callable[..., nn.Module]

_ACT_MODULES: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def _layer_ctor(spec: str, layer_kwargs: dict[str, Any]) -> LinearCtor:
    """Constructor for one layer role; ``layer_kwargs`` (KAN options) only reach KAN layers.

    Whether ``spec`` builds a KAN layer is asked of a built 1x1 probe (``is_kan_layer``), not read
    from the spec string.
    """
    ctor = get_linear_layer(spec)
    if not layer_kwargs or not is_kan_layer(ctor(1, 1, bias=False)):
        return ctor
    return get_linear_layer(spec, **layer_kwargs)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention as explicit matmuls, returning ``(output (B, T, H, D), weights (B, H, T, S))``.

    ``attention_mask`` is what ``create_causal_mask`` builds (boolean, True = attend, or additive
    float), or ``None`` where SDPA would use ``is_causal``: then a query block longer than one token
    is masked causally with SDPA's upper-left alignment, and a single query sees every key.
    """
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is None and query.shape[-2] > 1:
        ones = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device)
        attention_mask = ones.tril()
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2), weights


class KanGPTAttention(nn.Module):
    """Multi-head causal self-attention with fused q/k/v projection and an optional KV cache.

    The attention kernel is the one ``config._attn_implementation`` names in transformers'
    ``ALL_ATTENTION_FUNCTIONS`` (``"sdpa"`` by default); ``"eager"`` (and any call that asks for
    ``output_attentions``) runs :func:`eager_attention_forward`, which also returns the weights.

    Args:
        config: The model configuration (sizes, dropout, attention implementation).
        linear_layer: Constructor ``(in, out, *, bias) -> nn.Module`` of the projections.
        layer_idx: Index of the block; addresses this layer in the cache.
    """

    is_causal = True

    def __init__(self, *, config: KanGPTConfig, linear_layer: LinearCtor, layer_idx: int = 0) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.scaling = self.head_dim**-0.5
        self.layer_idx = layer_idx
        self.attn_dropout = config.attn_pdrop
        self.c_attn = linear_layer(self.hidden_size, 3 * self.hidden_size, bias=config.bias)
        self.c_proj = linear_layer(self.hidden_size, self.hidden_size, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        q, k, v = self.c_attn(hidden_states).split(self.hidden_size, dim=-1)
        shape = (batch, length, self.num_heads, self.head_dim)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))  # (B, heads, T, head_dim)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        implementation = self.config._attn_implementation
        if output_attentions or implementation == "eager":
            attend = eager_attention_forward
        else:
            attend = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        y, weights = attend(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.attn_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        y = y.reshape(batch, length, self.hidden_size)
        return self.resid_dropout(self.c_proj(y)), weights


class KanGPTMLP(nn.Module):
    """Feed-forward block ``proj(act(fc(x)))`` whose projections come from ``linear_layer``.

    Args:
        hidden_size: Model width.
        ffn_hidden_size: Inner width.
        linear_layer: Constructor of the two projections (KAN or linear).
        activation: Activation between the projections; ``None`` takes ``"identity"`` when the built
            ``fc`` is a KAN layer (its edges are learnable nonlinearities) and ``"gelu"`` otherwise.
        dropout: Dropout on the block output.
        bias: Whether the projections have biases.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        ffn_hidden_size: int,
        linear_layer: LinearCtor,
        activation: str | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation is not None and activation not in _ACT_MODULES:
            raise ValueError(f"activation must be one of {sorted(_ACT_MODULES)}, got {activation!r}")
        self.c_fc = linear_layer(hidden_size, ffn_hidden_size, bias=bias)
        if activation is None:
            activation = "identity" if is_kan_layer(self.c_fc) else "gelu"
        self.act = _ACT_MODULES[activation]()
        self.c_proj = linear_layer(ffn_hidden_size, hidden_size, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class KanGPTBlock(GradientCheckpointingLayer):
    """Pre-LN decoder block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``.

    Under ``gradient_checkpointing_enable()`` the block is recomputed in backward (without a cache).

    Args:
        config: The model configuration (sizes, dropouts, activation).
        attn_layer: Constructor of the attention projections.
        ffn_layer: Constructor of the feed-forward projections.
        layer_idx: Index of the block (cache addressing).
    """

    def __init__(
        self, *, config: KanGPTConfig, attn_layer: LinearCtor, ffn_layer: LinearCtor, layer_idx: int
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = KanGPTAttention(config=config, linear_layer=attn_layer, layer_idx=layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = KanGPTMLP(
            hidden_size=config.n_embd,
            ffn_hidden_size=config.ffn_width,
            linear_layer=ffn_layer,
            activation=config.ffn_activation,
            dropout=config.resid_pdrop,
            bias=config.bias,
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        attn, _ = self.attn(
            self.ln_1(hidden_states), attention_mask, cache=cache, output_attentions=output_attentions
        )
        hidden_states = hidden_states + attn
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class KanGPTPreTrainedModel(PreTrainedModel):
    """Weight init and transformers plumbing shared by the KAN-GPT models.

    Supported (and tested): SDPA (default) and eager attention, gradient checkpointing,
    ``torch.compile(fullgraph=True)`` and ``torch.export`` with a static cache. Flash/flex attention,
    tensor parallelism and serving backends (``_supports_attention_backend``) are not.
    """

    config_class = KanGPTConfig
    config: KanGPTConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["KanGPTBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    _can_compile_fullgraph = True
    _can_record_outputs = {
        "hidden_states": KanGPTBlock,
        "attentions": OutputRecorder(KanGPTAttention, index=1),
    }

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 init for linear layers/embeddings/norms; KAN layers keep their own init scheme.

        Residual output projections (``c_proj`` of attention and of a linear FFN) use the GPT-2
        ``std / sqrt(2 * n_layer)`` scaling. Every write goes through ``transformers.initialization``
        (or restores loaded values), so tensors loaded from a checkpoint are never overwritten.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif is_kan_module(module):
            reset_unloaded(module)
        if isinstance(module, (KanGPTAttention, KanGPTMLP)) and isinstance(module.c_proj, nn.Linear):
            init.normal_(module.c_proj.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))

    @classmethod
    def from_pretrained(cls, *args: Any, strict: bool | None = None, **kwargs: Any):
        """``PreTrainedModel.from_pretrained``; by default refuses checkpoints that do not fit.

        All of transformers' options work as documented there, among them
        ``from_pretrained(None, config=..., state_dict=...)``, ``output_loading_info=True`` (returns
        ``(model, loading_info)``) and ``ignore_mismatched_sizes=True`` (re-initialises tensors whose
        shape differs, and lists them under ``mismatched_keys``).

        Args:
            *args: Forwarded (the directory or hub id first, or ``None`` with ``state_dict``).
            strict: Raise :class:`~kanzoo.models.CheckpointMismatchError` naming every missing,
                    unexpected or (without ``ignore_mismatched_sizes``) shape-mismatched key. ``None``
                (default) is strict for checkpoint files (a directory or hub id) unless
                ``output_loading_info=True``, which hands the report to the caller as transformers
                does; a ``state_dict`` given in code loads as in transformers (what it lacks is
                initialised). ``False`` loads what fits and re-initialises the rest.
            **kwargs: Forwarded to ``PreTrainedModel.from_pretrained``.
        """
        return load_pretrained(super().from_pretrained, cls.__name__, args, kwargs, strict=strict)


def _as_cache(cache: Any, config: KanGPTConfig) -> Cache | None:
    if cache is None or isinstance(cache, Cache):
        return cache
    if isinstance(cache, (tuple, list)):
        # Legacy format: one (key, value) pair per layer, each (B, heads, T, head_dim).
        return DynamicCache(tuple(cache), config=config)
    raise TypeError(f"cache must be a transformers Cache or a tuple of (key, value) pairs, got {type(cache)}")


class KanGPTModel(KanGPTPreTrainedModel):
    """The decoder stack: token + position embeddings, ``n_layer`` blocks, final layer norm.

    Args:
        config: The model configuration.
    """

    def __init__(self, config: KanGPTConfig) -> None:
        super().__init__(config)
        attn_layer = _layer_ctor(config.attn_layer, config.layer_kwargs)
        ffn_layer = _layer_ctor(config.ffn_layer, config.layer_kwargs)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(
            KanGPTBlock(config=config, attn_layer=attn_layer, ffn_layer=ffn_layer, layer_idx=i)
            for i in range(config.n_layer)
        )
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.wte = new_embeddings

    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | tuple | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | list[int] | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Run the decoder.

        Args:
            input_ids: Token ids (B, T); give these or ``inputs_embeds``.
            cache: Key/value cache of earlier tokens (a transformers ``Cache`` such as
                ``DynamicCache`` or ``StaticCache``, or the legacy tuple of per-layer ``(key, value)``
                pairs). ``input_ids`` then hold only the new tokens. ``past_key_values`` is the old
                name (a ``FutureWarning``, as in transformers 5.x).
            attention_mask: (B, past + T) with 1 for real tokens and 0 for padding, or a prepared 4D
                mask (boolean, True = attend, or additive float) used as is.
            position_ids: (B|1, T) positions; derived from a 2D mask (left padding) or the cache
                length when omitted.
            inputs_embeds: Token embeddings (B, T, C) instead of ``input_ids``.
            use_cache: Return an updated cache (default: ``config.use_cache`` in eval mode).
            output_attentions: Return every layer's attention weights (default:
                ``config.output_attentions``); the call then attends with the eager path.
            output_hidden_states: Return the input of every block and the final output (default:
                ``config.output_hidden_states``), or only those at the given indices.
            **kwargs: ``return_dict`` (default ``config.return_dict``); other keys (generation
                extras, loss arguments) are ignored.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if inputs_embeds is None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
            inputs_embeds = self.wte(input_ids)
        length = inputs_embeds.shape[1]

        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache = False  # the recomputed blocks would write the cache twice
        cache = _as_cache(cache, self.config)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past = cache.get_seq_length() if cache is not None else 0

        longest = None
        if attention_mask is not None and attention_mask.dim() == 2 and position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
            longest = attention_mask.shape[-1]
        elif position_ids is None:
            position_ids = (torch.arange(length, device=inputs_embeds.device) + past)[None]
            longest = past + length
        check_forward_inputs(position_ids, longest, attention_mask, past + length, self.config.n_positions)

        if (
            attention_mask is not None
            and attention_mask.dim() == 4
            and not attention_mask.is_floating_point()
        ):
            attention_mask = attention_mask.bool()  # integer 4D masks: nonzero = attend
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )

        x = self.drop(inputs_embeds + self.wpe(position_ids))
        for block in self.h:
            x = block(x, mask, cache=cache, output_attentions=output_attentions)
        x = self.ln_f(x)
        return BaseModelOutputWithPast(last_hidden_state=x, cache=cache if use_cache else None)


class KanGPTForCausalLM(KanGPTPreTrainedModel, GenerationMixin):
    """KAN-GPT with a language-model head (tied to the token embedding when the head is linear).

    ``model(input_ids, labels=input_ids)`` returns ``.logits`` (B, T, V) and ``.loss``: labels are
    shifted inside (token t predicts token t+1); ``-100`` labels are ignored. ``generate`` refuses,
    before it starts, a request that would run past ``n_positions``.

    Args:
        config: The model configuration.
    """

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: KanGPTConfig) -> None:
        super().__init__(config)
        self.transformer = KanGPTModel(config)
        head = _layer_ctor(config.head_layer, config.layer_kwargs)
        self.lm_head = head(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.transformer.wte = new_embeddings

    def get_output_embeddings(self) -> nn.Linear | None:
        # transformers treats output embeddings as a (vocab, hidden) matrix (tying, resizing): a KAN
        # head is none, so it is not reported as one.
        return self.lm_head if isinstance(self.lm_head, nn.Linear) else None

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> nn.Embedding:
        """``PreTrainedModel.resize_token_embeddings``; refused (ValueError) with a KAN head."""
        if not isinstance(self.lm_head, nn.Linear):
            raise ValueError(
                f"cannot resize the vocabulary: the language-model head is a {type(self.lm_head).__name__} "
                f"(head_layer={self.config.head_layer!r}), not a weight matrix; use head_layer='linear'"
            )
        return super().resize_token_embeddings(*args, **kwargs)

    def _prepare_cache_for_generation(
        self,
        generation_config: Any,
        model_kwargs: dict,
        generation_mode: Any,
        batch_size: int,
        max_cache_length: int,
    ) -> Any:
        # generate() calls this once the final length is known, before the first forward pass.
        check_generation_length(max_cache_length, self.config.n_positions)
        return super()._prepare_cache_for_generation(
            generation_config, model_kwargs, generation_mode, batch_size, max_cache_length
        )

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | tuple | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | list[int] | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Next-token logits and, with ``labels`` (or ``shift_labels``), the language-model loss.

        Args:
            input_ids: Token ids (B, T).
            cache: Key/value cache of earlier tokens (see :meth:`KanGPTModel.forward`).
            attention_mask: (B, past + T) padding mask (1 = token, 0 = padding).
            position_ids: Explicit positions (B|1, T).
            inputs_embeds: Token embeddings instead of ``input_ids``.
            labels: (B, T) target ids, usually ``input_ids``; shifted inside, ``-100`` ignored.
            use_cache: Return an updated cache.
            output_attentions: Return the attention weights (see :meth:`KanGPTModel.forward`).
            output_hidden_states: Return the hidden states (see :meth:`KanGPTModel.forward`).
            logits_to_keep: Compute logits for the last k positions only (0 = all), or for the
                positions in an index tensor. Generation uses 1.
            **kwargs: Loss arguments for ``self.loss_function`` (``shift_labels``: targets already
                aligned with the logits, which replace ``labels``; ``ignore_index``;
                ``num_items_in_batch``), ``return_dict``, and ``past_key_values`` (old name of
                ``cache``).
        """
        # Unset flags stay unset, so that the base model falls back to the config's values.
        flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}
        out = self.transformer(
            input_ids,
            cache=cache,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **{k: v for k, v in flags.items() if v is not None},
            **kwargs,
        )
        logits = self.lm_head(slice_logits_to_keep(out.last_hidden_state, logits_to_keep))
        loss = None
        if labels is not None or kwargs.get("shift_labels") is not None:
            targets = kwargs["shift_labels"] if kwargs.get("shift_labels") is not None else labels
            if targets.shape != logits.shape[:2]:
                raise ValueError(
                    f"labels shape {tuple(targets.shape)} must match the logits' (batch, length) "
                    f"{tuple(logits.shape[:2])}; labels need all positions (logits_to_keep=0)"
                )
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=out.cache,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )


AutoConfig.register("kan_gpt", KanGPTConfig, exist_ok=True)
AutoModel.register(KanGPTConfig, KanGPTModel, exist_ok=True)
AutoModelForCausalLM.register(KanGPTConfig, KanGPTForCausalLM, exist_ok=True)
register_family("kan_gpt", KanGPTForCausalLM)

# Registered sizes and twins live beside the classes so that importing the family registers all.
from kanzoo.models import _gpt_variants as _variants  # noqa: E402,F401
