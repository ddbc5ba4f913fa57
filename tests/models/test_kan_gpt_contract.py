"""KAN-GPT follows transformers' ``PreTrainedModel`` contract: caches, output flags, attention
weights, loss arguments, loading options, gradient checkpointing, the ``past_key_values`` rename,
twin semantics and config validation. References are computed by hand (explicit attention
matmuls, ``F.cross_entropy``, a full forward for cached decoding)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from kanzoo.models import CheckpointMismatchError, create_model
from kanzoo.models.kan_gpt import KanGPTConfig, KanGPTForCausalLM, KanGPTModel

transformers = pytest.importorskip("transformers")
from transformers import DynamicCache, StaticCache  # noqa: E402

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64, "vocab_size": 40, "ffn_ratio": 2.0}
V = TINY["vocab_size"]


def tiny(**kw) -> KanGPTForCausalLM:
    return KanGPTForCausalLM(KanGPTConfig(**{**TINY, **kw})).eval()


def ids(batch: int = 2, length: int = 8) -> torch.Tensor:
    return torch.randint(0, V, (batch, length))


# ---------------------------------------------------------------------------- caches


@pytest.mark.parametrize("make_cache", ["static", "dynamic"])
def test_decode_step_without_mask_matches_full_forward(make_cache):
    """Regression: a StaticCache passed without a mask let the new token attend to empty slots."""
    model = tiny()
    x = ids(1, 8)
    full = model(x, use_cache=False).logits
    cache = StaticCache(config=model.config, max_cache_len=32) if make_cache == "static" else DynamicCache()
    prefill = model(x[:, :7], cache=cache).logits
    step = model(x[:, 7:], cache=cache).logits  # no attention_mask, as a user would call it
    torch.testing.assert_close(prefill, full[:, :7], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[:, -1], full[:, 7], atol=1e-5, rtol=1e-5)


def test_mask_that_does_not_cover_the_cache_is_refused():
    model = tiny()
    cache = model(ids(1, 4), use_cache=True).cache
    with pytest.raises(ValueError, match=r"past \+ length"):
        model(ids(1, 2), cache=cache, attention_mask=torch.ones(1, 2, dtype=torch.long))


def test_past_key_values_is_the_deprecated_name_of_cache():
    model = tiny()
    x = ids(2, 9)
    expected = model(x[:, 8:], cache=model(x[:, :8], use_cache=True).cache).logits
    with pytest.warns(FutureWarning, match="`past_key_values` is deprecated.*Use `cache` instead"):
        old = model(x[:, 8:], past_key_values=model(x[:, :8], use_cache=True).cache).logits
    torch.testing.assert_close(old, expected, atol=0, rtol=0)


# ---------------------------------------------------------------------------- output flags


def test_config_output_hidden_states_and_return_dict_are_honoured():
    model = tiny()
    x = ids(2, 6)
    base = model.transformer
    embeddings = base.wte(x) + base.wpe(torch.arange(6))[None]

    model.config.output_hidden_states = True
    out = model(x)
    assert len(out.hidden_states) == TINY["n_layer"] + 1
    torch.testing.assert_close(out.hidden_states[0], embeddings)
    torch.testing.assert_close(out.hidden_states[-1], base(x).last_hidden_state)
    picked = model(x, output_hidden_states=[0, -1]).hidden_states  # transformers' index selection
    assert picked[1] is None and torch.equal(picked[0], out.hidden_states[0])
    assert model(x, output_hidden_states=False).hidden_states is None

    model.config.return_dict = False
    as_tuple = model(x)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], out.logits)
    assert isinstance(model(x, return_dict=True), transformers.modeling_outputs.CausalLMOutputWithPast)
    assert isinstance(base(x), tuple)


def _attention_by_hand(model: KanGPTForCausalLM, x: torch.Tensor) -> torch.Tensor:
    """Block 0's attention probabilities from explicit matmuls (causal, softmax over keys)."""
    base = model.transformer
    h = base.h[0].ln_1(base.wte(x) + base.wpe(torch.arange(x.shape[1]))[None])
    q, k, _ = base.h[0].attn.c_attn(h).split(TINY["n_embd"], dim=-1)
    heads, dim = TINY["n_head"], TINY["n_embd"] // TINY["n_head"]
    q = q.view(*x.shape, heads, dim).transpose(1, 2)
    k = k.view(*x.shape, heads, dim).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dim)
    future = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)


def test_output_attentions_returns_the_attention_weights():
    x = ids(2, 7)
    eager = KanGPTForCausalLM._from_config(KanGPTConfig(**TINY), attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    out = eager(x, output_attentions=True)
    assert len(out.attentions) == TINY["n_layer"]
    torch.testing.assert_close(out.attentions[0], _attention_by_hand(eager, x), atol=1e-6, rtol=1e-5)

    sdpa = tiny()
    sdpa.load_state_dict(eager.state_dict())
    assert sdpa.config._attn_implementation == "sdpa"  # the default
    with_weights = sdpa(x, output_attentions=True)  # this call attends through the eager path
    torch.testing.assert_close(with_weights.attentions[0], out.attentions[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(with_weights.logits, sdpa(x).logits, atol=1e-5, rtol=1e-5)
    assert sdpa(x).attentions is None
    eager.config.output_attentions = True  # from the config (transformers allows it with eager only)
    assert len(eager(x).attentions) == TINY["n_layer"]


# ---------------------------------------------------------------------------- loss


def test_loss_keyword_arguments_reach_the_loss_function():
    model = tiny()
    x = ids(2, 8)
    logits = model(x).logits
    flat = logits.reshape(-1, V)

    aligned = torch.randint(0, V, (2, 8))  # already aligned with the logits: no shift inside
    loss = model(x, shift_labels=aligned).loss
    torch.testing.assert_close(loss, F.cross_entropy(flat, aligned.reshape(-1)))
    torch.testing.assert_close(model(x, labels=x, shift_labels=aligned).loss, loss)  # replaces labels

    labels = x.clone()
    labels[:, :3] = -1
    got = model(x, labels=labels, ignore_index=-1).loss
    ref = F.cross_entropy(logits[:, 2:-1].reshape(-1, V), x[:, 3:].reshape(-1))
    torch.testing.assert_close(got, ref)

    summed = F.cross_entropy(logits[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1), reduction="sum")
    torch.testing.assert_close(model(x, labels=x, num_items_in_batch=torch.tensor(5)).loss, summed / 5)


# ---------------------------------------------------------------------------- loading


def test_from_pretrained_options_follow_transformers(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    x = ids(2, 6)
    expected = model(x).logits

    loaded, info = KanGPTForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    torch.testing.assert_close(loaded.eval()(x).logits, expected, atol=0, rtol=0)

    again = KanGPTForCausalLM.from_pretrained(None, config=model.config, state_dict=model.state_dict())
    torch.testing.assert_close(again.eval()(x).logits, expected, atol=0, rtol=0)

    # A different vocabulary: the embedding (and the tied head) are re-initialised, the rest is kept.
    bigger, info = KanGPTForCausalLM.from_pretrained(
        tmp_path, vocab_size=50, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert bigger.transformer.wte.weight.shape == (50, TINY["n_embd"])
    mismatched = {k[0] if isinstance(k, tuple) else k for k in info["mismatched_keys"]}
    assert "transformer.wte.weight" in mismatched
    for name, value in model.state_dict().items():
        if "wte" not in name and "lm_head" not in name:
            torch.testing.assert_close(bigger.state_dict()[name], value, atol=0, rtol=0)
    with pytest.raises((CheckpointMismatchError, RuntimeError)):
        KanGPTForCausalLM.from_pretrained(tmp_path, vocab_size=50)  # refused without the option

    weights = load_file(tmp_path / "model.safetensors")
    dropped = "transformer.h.0.mlp.c_fc.spline_weight"
    weights.pop(dropped)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError, match=dropped):
        KanGPTForCausalLM.from_pretrained(tmp_path)  # kanzoo's default: strict for files
    _, info = KanGPTForCausalLM.from_pretrained(tmp_path, output_loading_info=True)  # the report instead
    assert dropped in info["missing_keys"]


def test_a_kan_head_is_no_output_embedding_and_is_not_resized():
    linear = tiny()
    assert linear.get_output_embeddings() is linear.lm_head
    linear.resize_token_embeddings(V + 4)
    assert linear.lm_head.weight.shape == (V + 4, TINY["n_embd"]) and linear.config.vocab_size == V + 4
    kan_head = tiny(head_layer="kan")
    assert kan_head.get_output_embeddings() is None
    with pytest.raises(ValueError, match="head_layer='kan'"):
        kan_head.resize_token_embeddings(V + 4)


# ---------------------------------------------------------------------------- gradient checkpointing


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(use_reentrant):
    """Through ``gradient_checkpointing_enable`` (transformers 5.x: a deprecated alias of
    ``activation_checkpointing_enable``) and the new name."""
    model = tiny(attn_layer="kan").train()
    x = ids(2, 8)
    runs = []
    # A pre-hook: the recomputation stops inside the block once it has what backward needs.
    model.transformer.h[0].mlp.register_forward_pre_hook(lambda *_: runs.append(1))

    def grads():
        model.zero_grad()
        model(x, labels=x).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    assert len(runs) == 1
    assert model.supports_gradient_checkpointing
    if use_reentrant:
        with pytest.warns(FutureWarning, match="activation_checkpointing_enable"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    else:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.is_activation_checkpointing
    runs.clear()
    checkpointed = grads()
    assert len(runs) == 2  # the block ran again in backward: activations were not kept
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


# ---------------------------------------------------------------------------- twins & config


def test_node_activation_comes_from_the_built_layer_not_the_spec_string():
    for spec in ("linear", "Linear", "LINEAR"):
        twin = create_model("gpt_nano", ffn_layer=spec)
        assert type(twin.transformer.h[0].mlp.c_fc) is nn.Linear
        assert isinstance(twin.transformer.h[0].mlp.act, nn.GELU), spec  # not a purely linear FFN
    for spec in ("kan", "KAN", "kan_rational"):
        assert isinstance(create_model("kan_gpt_nano", ffn_layer=spec).transformer.h[0].mlp.act, nn.Identity)
    explicit = create_model("gpt_nano", ffn_activation="silu")
    assert isinstance(explicit.transformer.h[0].mlp.act, nn.SiLU)
    # KAN options reach the KAN layers only, whatever the spelling of the linear spec.
    mixed = create_model("gpt_nano", ffn_layer="Linear", attn_layer="KAN", layer_kwargs={"grid_size": 3})
    assert type(mixed.transformer.h[0].mlp.c_fc) is nn.Linear
    assert mixed.transformer.h[0].attn.c_attn.basis.grid_size == 3


def test_unknown_config_keys_are_refused_in_one_line(tmp_path):
    for bad, named in (
        (dict(_target_="kanzoo.x"), "'_target_'"),
        (dict(n_embed=32), "did you mean 'n_embd'"),
    ):
        with pytest.raises(ValueError, match=named) as err:
            KanGPTConfig(**bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="did you mean"):
        create_model("kan_gpt_nano", hidden_sise=32)

    tiny().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "anything": 1}))
    with pytest.raises(ValueError, match="'anything'"):
        KanGPTForCausalLM.from_pretrained(tmp_path)


def test_transformers_config_keys_round_trip(tmp_path):
    config = KanGPTConfig(
        **TINY,
        torch_dtype="float32",  # old name of dtype
        attn_implementation="eager",
        output_attentions=True,
        output_hidden_states=True,
        return_dict=False,
        max_length=30,  # a generation parameter: transformers drops it
        is_decoder=True,  # written into every config.json by transformers 4.x
        tokenizer_class="PreTrainedTokenizerFast",
        id2label={0: "a", 1: "b"},
    )
    assert config._attn_implementation == "eager" and config.output_attentions and config.is_decoder
    config.layer_norm_eps = 1.0  # an attribute set on a built config (transformers' test utilities do)
    config.save_pretrained(tmp_path)
    loaded = KanGPTConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.layer_norm_eps == 1.0 and loaded.tokenizer_class == "PreTrainedTokenizerFast"
    model = KanGPTModel(loaded)
    assert isinstance(model(ids(1, 4)), tuple)  # return_dict=False from the config
