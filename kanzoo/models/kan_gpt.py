"""KAN-GPT: a GPT-2 style decoder whose feed-forward layers are KAN layers, and its MLP twin.

Pre-LN blocks (``x + attn(ln(x))``, ``x + ffn(ln(x))``), learned position embeddings, causal
self-attention through ``F.scaled_dot_product_attention`` with a transformers ``Cache`` for fast
decoding. Every projection is built by a constructor from ``kanzoo.layers.get_linear_layer``, so
the KAN model and its MLP twin come from one code path: the twin is the same class with
``ffn_layer="linear"``.

The classes plug into transformers: importing this module registers ``"kan_gpt"`` with
``AutoConfig``, ``AutoModel`` and ``AutoModelForCausalLM``, so ``generate()``, ``pipeline`` and
``AutoModelForCausalLM.from_pretrained(dir)`` work as for any causal LM.
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
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from kanzoo.layers import get_linear_layer
from kanzoo.models._base import CheckpointMismatchError
from kanzoo.models._gpt_config import KanGPTConfig
from kanzoo.models._gpt_init import is_kan_module, reset_unloaded
from kanzoo.models._registry import register_family

__all__ = [
    "KanGPTAttention",
    "KanGPTBlock",
    "KanGPTConfig",
    "KanGPTForCausalLM",
    "KanGPTMLP",
    "KanGPTModel",
    "KanGPTPreTrainedModel",
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
    """Constructor for one layer role; ``layer_kwargs`` only reach the non-linear (KAN) layers."""
    if spec == "linear":
        return get_linear_layer("linear")
    return get_linear_layer(spec, **layer_kwargs)


class KanGPTAttention(nn.Module):
    """Multi-head causal self-attention with fused q/k/v projection and an optional KV cache.

    Args:
        hidden_size: Model width.
        num_heads: Number of heads (divides ``hidden_size``).
        linear_layer: Constructor ``(in, out, *, bias) -> nn.Module`` of the projections.
        attn_dropout: Dropout on the attention probabilities (training only).
        resid_dropout: Dropout on the block output.
        bias: Whether the projections have biases.
        layer_idx: Index of the block; addresses this layer in the cache.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        num_heads: int,
        linear_layer: LinearCtor,
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.0,
        bias: bool = True,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.layer_idx = layer_idx
        self.attn_dropout = attn_dropout
        self.c_attn = linear_layer(hidden_size, 3 * hidden_size, bias=bias)
        self.c_proj = linear_layer(hidden_size, hidden_size, bias=bias)
        self.resid_dropout = nn.Dropout(resid_dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.c_attn(x).split(self.hidden_size, dim=-1)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
            if attn_mask is not None and attn_mask.shape[-1] != k.shape[-2]:
                # A fixed-size cache returns all its slots: slot j holds absolute position j, and the
                # slots past the filled region must stay invisible.
                pad = k.shape[-2] - attn_mask.shape[-1]
                if pad < 0 or attn_mask.dtype != torch.bool:
                    raise ValueError(
                        f"attention mask covers {attn_mask.shape[-1]} keys but the cache holds {k.shape[-2]}"
                    )
                attn_mask = F.pad(attn_mask, (0, pad), value=False)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
            is_causal=is_causal and attn_mask is None,
        )
        y = y.transpose(1, 2).reshape(batch, length, self.hidden_size)
        return self.resid_dropout(self.c_proj(y))


class KanGPTMLP(nn.Module):
    """Feed-forward block ``proj(act(fc(x)))`` whose projections come from ``linear_layer``.

    Args:
        hidden_size: Model width.
        ffn_hidden_size: Inner width.
        linear_layer: Constructor of the two projections (KAN or linear).
        activation: Activation between the projections (``"identity"`` for KAN layers).
        dropout: Dropout on the block output.
        bias: Whether the projections have biases.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        ffn_hidden_size: int,
        linear_layer: LinearCtor,
        activation: str = "gelu",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in _ACT_MODULES:
            raise ValueError(f"activation must be one of {sorted(_ACT_MODULES)}, got {activation!r}")
        self.c_fc = linear_layer(hidden_size, ffn_hidden_size, bias=bias)
        self.act = _ACT_MODULES[activation]()
        self.c_proj = linear_layer(ffn_hidden_size, hidden_size, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class KanGPTBlock(nn.Module):
    """Pre-LN decoder block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``.

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
        self.attn = KanGPTAttention(
            hidden_size=config.n_embd,
            num_heads=config.n_head,
            linear_layer=attn_layer,
            attn_dropout=config.attn_pdrop,
            resid_dropout=config.resid_pdrop,
            bias=config.bias,
            layer_idx=layer_idx,
        )
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
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask=attn_mask, is_causal=is_causal, cache=cache)
        return x + self.mlp(self.ln_2(x))


class KanGPTPreTrainedModel(PreTrainedModel):
    """Weight init and transformers plumbing shared by the KAN-GPT models."""

    config_class = KanGPTConfig
    config: KanGPTConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["KanGPTBlock"]
    _supports_sdpa = True

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
    def from_pretrained(cls, *args: Any, strict: bool = True, **kwargs: Any):
        """``PreTrainedModel.from_pretrained`` that, by default, refuses incomplete checkpoints.

        Args:
            *args: Forwarded (the directory or hub id first).
            strict: Raise :class:`CheckpointMismatchError` naming every missing, unexpected or
                shape-mismatched key instead of silently initialising them.
            **kwargs: Forwarded to ``PreTrainedModel.from_pretrained``.
        """
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if strict:
            problems = []
            for what in ("missing_keys", "unexpected_keys", "mismatched_keys"):
                keys = sorted(str(k) for k in info.get(what) or ())
                if keys:
                    problems.append(f"{what.replace('_', ' ')}: {', '.join(keys)}")
            if problems:
                raise CheckpointMismatchError(
                    f"checkpoint {args[0] if args else ''!s} does not fit {cls.__name__}: "
                    + "; ".join(problems)
                )
        return (model, info) if want_info else model


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
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.wte = new_embeddings

    def _attention_mask(
        self,
        attention_mask: torch.Tensor | None,
        *,
        batch: int,
        length: int,
        past: int,
        device: torch.device,
    ) -> tuple[torch.Tensor | None, bool]:
        """SDPA mask (bool, True = attend) of shape (B|1, 1, T, past+T), or None with ``is_causal``."""
        if attention_mask is not None and attention_mask.dim() == 4:
            if attention_mask.dtype != torch.bool:
                attention_mask = (
                    attention_mask == 0 if attention_mask.is_floating_point() else attention_mask > 0
                )
            return attention_mask, False
        total = past + length
        if attention_mask is not None and tuple(attention_mask.shape) != (batch, total):
            raise ValueError(
                f"attention_mask must have shape (batch, past + length) = {(batch, total)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        padded = attention_mask is not None and not bool(attention_mask.all())
        if not padded:
            if past == 0:
                return None, True
            if length == 1:
                return None, False  # one new token sees every cached position
        query_pos = torch.arange(past, total, device=device)
        mask = torch.arange(total, device=device)[None, :] <= query_pos[:, None]  # (T, total)
        mask = mask[None, None]
        if padded:
            mask = mask & attention_mask.bool()[:, None, None, :]
            # Queries sitting on padding would see no key at all (SDPA returns NaN); let them see
            # themselves. Their outputs are ignored, and real tokens never attend to them.
            mask = mask | (torch.arange(total, device=device)[None, :] == query_pos[:, None])[None, None]
        return mask, False

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | tuple | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast | tuple:
        """Run the decoder.

        Args:
            input_ids: Token ids (B, T); give these or ``inputs_embeds``.
            cache: Key/value cache of earlier tokens (a transformers ``Cache``, or the legacy tuple
                of per-layer ``(key, value)`` pairs). ``input_ids`` then hold only the new tokens.
            attention_mask: (B, past + T) with 1 for real tokens and 0 for padding, or a 4D boolean
                mask (True = attend) used as is.
            position_ids: (B|1, T) positions; derived from the mask or the cache length when omitted.
            inputs_embeds: Token embeddings (B, T, C) instead of ``input_ids``.
            use_cache: Return an updated cache (default: ``config.use_cache`` in eval mode).
            output_hidden_states: Also return the input of every block and the final output.
            return_dict: Return a ``ModelOutput`` (default) or a tuple.
            **kwargs: ``past_key_values`` (old name of ``cache``); generation extras are ignored.
        """
        if cache is None and kwargs.get("past_key_values") is not None:
            cache = kwargs.pop("past_key_values")
        if kwargs.get("output_attentions"):
            raise ValueError(
                "KanGPT uses fused scaled-dot-product attention and cannot return attention weights"
            )
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
            inputs_embeds = self.wte(input_ids)
        batch, length = inputs_embeds.shape[:2]
        device = inputs_embeds.device

        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        cache = _as_cache(cache, self.config)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past = cache.get_seq_length() if cache is not None else 0

        if position_ids is None:
            if attention_mask is not None and attention_mask.dim() == 2:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
            else:
                position_ids = torch.arange(past, past + length, device=device)[None]
        if position_ids.numel() and int(position_ids.max()) >= self.config.n_positions:
            raise ValueError(
                f"position {int(position_ids.max())} is beyond the {self.config.n_positions} positions this "
                f"model was built for (n_positions); shorten the input or the generation length"
            )
        mask, is_causal = self._attention_mask(
            attention_mask, batch=batch, length=length, past=past, device=device
        )

        x = self.drop(inputs_embeds + self.wpe(position_ids))
        hidden_states: tuple[torch.Tensor, ...] | None = () if output_hidden_states else None
        for block in self.h:
            if hidden_states is not None:
                hidden_states += (x,)
            x = block(x, attn_mask=mask, is_causal=is_causal, cache=cache)
        x = self.ln_f(x)
        if hidden_states is not None:
            hidden_states += (x,)
        out = BaseModelOutputWithPast(
            last_hidden_state=x, cache=cache if use_cache else None, hidden_states=hidden_states
        )
        return out if return_dict is not False else out.to_tuple()


class KanGPTForCausalLM(KanGPTPreTrainedModel, GenerationMixin):
    """KAN-GPT with a language-model head (tied to the token embedding when the head is linear).

    ``model(input_ids, labels=input_ids)`` returns ``.logits`` (B, T, V) and ``.loss``: labels are
    shifted inside (token t predicts token t+1); ``-100`` labels are ignored.

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

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | tuple | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        """Next-token logits and, with ``labels``, the mean cross-entropy of the shifted labels.

        Args:
            input_ids: Token ids (B, T).
            cache: Key/value cache of earlier tokens (see :meth:`KanGPTModel.forward`).
            attention_mask: (B, past + T) padding mask (1 = token, 0 = padding).
            position_ids: Explicit positions (B|1, T).
            inputs_embeds: Token embeddings instead of ``input_ids``.
            labels: (B, T) target ids, usually ``input_ids``; shifted inside, ``-100`` ignored.
            use_cache: Return an updated cache.
            output_hidden_states: Also return every block's hidden states.
            return_dict: Return a ``ModelOutput`` (default) or a tuple.
            logits_to_keep: Compute logits for the last k positions only (0 = all), or for the
                positions in a 1D index tensor. Generation uses 1.
            **kwargs: ``num_items_in_batch`` for the loss; ``past_key_values`` as old name of ``cache``.
        """
        num_items = kwargs.pop("num_items_in_batch", None)
        out = self.transformer(
            input_ids,
            cache=cache,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
        else:
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:2]:
                raise ValueError(
                    f"labels shape {tuple(labels.shape)} must match the logits' (batch, length) "
                    f"{tuple(logits.shape[:2])}; labels need all positions (logits_to_keep=0)"
                )
            loss = self.loss_function(
                logits, labels, vocab_size=self.config.vocab_size, num_items_in_batch=num_items
            )
        result = CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states
        )
        return result if return_dict is not False else result.to_tuple()


AutoConfig.register("kan_gpt", KanGPTConfig, exist_ok=True)
AutoModel.register(KanGPTConfig, KanGPTModel, exist_ok=True)
AutoModelForCausalLM.register(KanGPTConfig, KanGPTForCausalLM, exist_ok=True)
register_family("kan_gpt", KanGPTForCausalLM)

# Registered sizes and twins live beside the classes so that importing the family registers all.
from kanzoo.models import _gpt_variants as _variants  # noqa: E402,F401
