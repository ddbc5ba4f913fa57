"""KAN-GPT: forward/loss semantics, KV cache, generation, transformers integration, twins."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from kanzoo.layers import KANLinear
from kanzoo.models import CheckpointMismatchError, create_model, list_models, model_info
from kanzoo.models import from_pretrained as kanzoo_from_pretrained
from kanzoo.models.kan_gpt import KanGPTConfig, KanGPTForCausalLM

transformers = pytest.importorskip("transformers")
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache  # noqa: E402

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64, "vocab_size": 40, "ffn_ratio": 2.0}


def tiny(ffn_layer: str = "kan", **kw) -> KanGPTForCausalLM:
    model = KanGPTForCausalLM(KanGPTConfig(**{**TINY, "ffn_layer": ffn_layer, **kw}))
    return model.eval()


def ids(batch: int = 2, length: int = 12, vocab: int = TINY["vocab_size"]) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length))


LAYOUTS = {
    "kan_ffn": {"ffn_layer": "kan"},
    "mlp": {"ffn_layer": "linear"},
    "kan_everywhere": {"ffn_layer": "kan", "attn_layer": "kan", "head_layer": "kan"},
    "rational_ffn": {"ffn_layer": "kan_rational"},
}


# ---------------------------------------------------------------------------- forward & loss


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_forward_shapes_and_shifted_loss(layout):
    model = tiny(**LAYOUTS[layout])
    x = ids(3, 10)
    out = model(x, labels=x)
    assert out.logits.shape == (3, 10, TINY["vocab_size"])
    assert torch.isfinite(out.logits).all()
    # Independent reference: token t predicts token t+1.
    ref = F.cross_entropy(out.logits[:, :-1].reshape(-1, TINY["vocab_size"]), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, ref)


def test_ignored_labels_and_label_shape_check():
    model = tiny()
    x = ids(2, 8)
    labels = x.clone()
    labels[:, :4] = -100
    out = model(x, labels=labels)
    ref = F.cross_entropy(out.logits[:, 3:-1].reshape(-1, TINY["vocab_size"]), x[:, 4:].reshape(-1))
    torch.testing.assert_close(out.loss, ref)
    with pytest.raises(ValueError, match="labels shape"):
        model(x, labels=x[:, :5])


def test_causality_future_tokens_do_not_leak():
    model = tiny()
    x = ids(1, 16)
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % TINY["vocab_size"]
    a, b = model(x).logits, model(y).logits
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_every_parameter_gets_a_gradient_and_tied_head():
    model = tiny(attn_layer="kan").train()
    assert model.lm_head.weight is model.transformer.wte.weight
    x = ids(2, 8)
    model(x, labels=x).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_loss_decreases_on_repeated_string():
    text = "hello kan world. " * 4
    vocab = sorted(set(text))
    data = torch.tensor([[vocab.index(c) for c in text]])[:, :48]
    model = tiny(vocab_size=len(vocab)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = model(data, labels=data).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_position_limit_and_bad_inputs_raise():
    model = tiny()
    with pytest.raises(ValueError, match="n_positions"):
        model(ids(1, TINY["n_positions"] + 1))
    with pytest.raises(ValueError, match="exactly one"):
        model()
    cache = model(ids(1, 4), use_cache=True).cache
    with pytest.raises(ValueError, match="past \\+ length"):  # mask must cover the cached tokens too
        model(ids(1, 2), cache=cache, attention_mask=torch.ones(1, 2, dtype=torch.long))


# ---------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("layout", ["kan_ffn", "kan_everywhere"])
def test_incremental_decoding_with_cache_matches_full_forward(layout):
    model = tiny(**LAYOUTS[layout])
    x = ids(2, 14)
    full = model(x, use_cache=False).logits
    out = model(x[:, :6], use_cache=True)
    assert isinstance(out.cache, DynamicCache) and out.cache.get_seq_length() == 6
    pieces = [out.logits]
    cache = out.cache
    for t in range(6, 14, 2):  # two tokens at a time: exercises the causal mask with a past
        step = model(x[:, t : t + 2], cache=cache, use_cache=True)
        cache = step.cache
        pieces.append(step.logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_legacy_tuple_cache_is_accepted():
    model = tiny()
    x = ids(2, 10)
    first = model(x[:, :7], use_cache=True)
    legacy = tuple((layer.keys, layer.values) for layer in first.cache.layers)
    via_tuple = model(x[:, 7:], cache=legacy, use_cache=True).logits
    with pytest.warns(FutureWarning, match="`past_key_values` is deprecated"):  # as in transformers 5.x
        via_old_name = model(x[:, 7:], past_key_values=legacy, use_cache=True).logits
    full = model(x).logits[:, 7:]
    torch.testing.assert_close(via_tuple, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(via_old_name, full, atol=1e-5, rtol=1e-5)


def test_left_padding_matches_unpadded_sequences():
    model = tiny()
    long, short = ids(1, 9)[0], ids(1, 5)[0]
    batch = torch.stack([long, torch.cat([torch.zeros(4, dtype=torch.long), short])])
    mask = torch.tensor([[1] * 9, [0] * 4 + [1] * 5])
    logits = model(batch, attention_mask=mask).logits
    torch.testing.assert_close(logits[0], model(long[None]).logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1, 4:], model(short[None]).logits[0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- generate


def greedy_by_hand(model: nn.Module, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Reference: recompute the whole sequence every step, append the argmax."""
    seq = prompt
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    return seq


# ---------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("layout", ["kan_ffn", "kan_everywhere", "rational_ffn"])
def test_save_and_auto_load_give_identical_logits(tmp_path, layout):
    model = tiny(**LAYOUTS[layout])
    if layout == "kan_ffn":
        # A data-adapted (non-default) grid must survive the round trip, not be rebuilt.
        grid = model.transformer.h[0].mlp.c_fc.basis.grid
        with torch.no_grad():
            grid.mul_(1.5)
    x = ids(2, 9)
    expected = model(x).logits
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["kanzoo_model"] == "kan_gpt" and saved["model_type"] == "kan_gpt"
    assert (tmp_path / "model.safetensors").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), KanGPTConfig)
    for loaded in (AutoModelForCausalLM.from_pretrained(tmp_path), kanzoo_from_pretrained(tmp_path)):
        assert isinstance(loaded, KanGPTForCausalLM)
        loaded.eval()
        torch.testing.assert_close(loaded(x).logits, expected, atol=0, rtol=0)
    if layout == "kan_ffn":
        reloaded_grid = loaded.transformer.h[0].mlp.c_fc.basis.grid
        torch.testing.assert_close(reloaded_grid, grid)


def test_loading_incomplete_checkpoint_names_the_keys(tmp_path):
    tiny().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = "transformer.h.1.mlp.c_fc.spline_weight"
    assert dropped in weights
    weights.pop(dropped)
    weights["transformer.extra.weight"] = torch.zeros(2)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError) as err:
        AutoModelForCausalLM.from_pretrained(tmp_path)
    assert dropped in str(err.value) and "transformer.extra.weight" in str(err.value)


@pytest.mark.parametrize("layout", ["kan_ffn", "rational_ffn"])
def test_tensors_missing_from_a_checkpoint_get_the_layer_init(tmp_path, layout):
    """from_pretrained builds on the meta device: what the checkpoint lacks must be re-initialised
    by the KAN layer's own scheme (not left as uninitialised memory), the rest kept as saved."""
    model = tiny(**LAYOUTS[layout])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # move every tensor away from its init value
    model.save_pretrained(tmp_path)
    fresh_model = tiny(**LAYOUTS[layout])
    fresh = fresh_model.state_dict()
    weights = load_file(tmp_path / "model.safetensors")
    prefix = "transformer.h.0.mlp.c_fc."
    if layout == "kan_ffn":
        dropped = [prefix + "spline_scaler", prefix + "basis.grid"]
    else:
        dropped = [prefix + "basis.numerator", prefix + "basis.denominator"]
    for key in dropped:
        weights.pop(key)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError, match="missing keys"):
        KanGPTForCausalLM.from_pretrained(tmp_path)
    loaded_model = KanGPTForCausalLM.from_pretrained(tmp_path, strict=False)
    loaded = loaded_model.state_dict()
    for key in dropped:  # deterministic inits: ones, the uniform knots, the fitted identity rational
        torch.testing.assert_close(loaded[key], fresh[key], atol=0, rtol=0)
    for key, value in weights.items():
        torch.testing.assert_close(loaded[key], value, atol=0, rtol=0)
    if layout == "rational_ffn":  # a non-persistent buffer, never saved: rebuilt, not garbage
        for block in range(TINY["n_layer"]):
            got = loaded_model.transformer.h[block].mlp.c_proj.basis.group_index
            torch.testing.assert_close(got, fresh_model.transformer.h[block].mlp.c_proj.basis.group_index)


def test_missing_directory_fails_fast(tmp_path):
    with pytest.raises((OSError, FileNotFoundError)):
        AutoModelForCausalLM.from_pretrained(tmp_path / "nope")


# ---------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def char_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["to be or not to be, that is the question.", "the quick brown fox jumps over the lazy dog."] * 4
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>"
    )


def test_text_generation_pipeline_from_a_saved_directory(tmp_path, char_tokenizer):
    from transformers import pipeline

    tok = char_tokenizer
    model = tiny(vocab_size=len(tok), initializer_range=0.2, eos_token_id=tok.eos_token_id, pad_token_id=0)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    gen = pipeline("text-generation", model=str(tmp_path))
    prompt = "to be or"
    text = gen(prompt, max_new_tokens=6, do_sample=False)[0]["generated_text"]
    assert text.startswith(prompt)
    # Same continuation as the hand-written greedy loop on the original model.
    prompt_ids = tok(prompt, return_tensors="pt").input_ids
    expected = greedy_by_hand(model, prompt_ids, 6)
    if tok.eos_token_id in expected[0, prompt_ids.shape[1] :]:
        stop = expected[0].tolist().index(tok.eos_token_id, prompt_ids.shape[1])
        expected = expected[:, :stop]
    assert text == tok.decode(expected[0], skip_special_tokens=True)

    # Past n_positions (64 here) the pipeline fails before generating, in one line naming the limit.
    calls = []
    gen.model.register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=f"n_positions={TINY['n_positions']}") as err:
        gen(prompt, max_new_tokens=TINY["n_positions"], do_sample=False)
    assert "\n" not in str(err.value) and not calls


# ---------------------------------------------------------------------------- registry & twins


def _module_types(model: nn.Module) -> dict[str, type]:
    return {name: type(m) for name, m in model.named_modules()}


def _in_ffn_layer(name: str) -> bool:
    parts = name.split(".")
    return "mlp" in parts and parts[parts.index("mlp") + 1 :][:1] in (["c_fc"], ["c_proj"], ["act"])


def test_twin_has_the_same_module_tree_apart_from_ffn_layers():
    kan, twin = create_model("kan_gpt_nano"), create_model("gpt_nano")
    kan_tree, twin_tree = _module_types(kan), _module_types(twin)
    shared = {n for n in kan_tree if not _in_ffn_layer(n)}
    assert shared == {n for n in twin_tree if not _in_ffn_layer(n)}
    assert all(kan_tree[n] is twin_tree[n] for n in shared)
    ffn = ("mlp.c_fc", "mlp.c_proj")
    assert all(type(m) is nn.Linear for n, m in twin.named_modules() if n.endswith(ffn))
    assert all(type(m) is KANLinear for n, m in kan.named_modules() if n.endswith(ffn))
    kan_cfg, twin_cfg = kan.config.to_dict(), twin.config.to_dict()
    differing = {k for k in kan_cfg if kan_cfg[k] != twin_cfg.get(k)}
    assert differing == {"ffn_layer"}  # the node activation follows the built layer


@pytest.mark.parametrize("size", ["nano", "mini"])
def test_matched_twin_parameter_count_within_five_percent(size):
    from kanzoo.models._gpt_variants import count_gpt_parameters

    kan = count_gpt_parameters(KanGPTConfig(**{**create_model(f"kan_gpt_{size}").config.to_dict()}))
    matched_model = create_model(f"gpt_{size}_matched")
    matched = sum(p.numel() for p in matched_model.parameters())
    plain = sum(p.numel() for p in create_model(f"gpt_{size}").parameters())
    assert abs(matched - kan) <= 0.05 * kan
    assert plain < 0.5 * kan  # the same-width twin is much smaller: matching is not a no-op
    assert matched_model.config.ffn_layer == "linear"
    assert matched_model.config.ffn_hidden_size > create_model(f"gpt_{size}").config.ffn_width


def test_registered_names_aliases_and_overrides():
    names = set(list_models("*gpt*"))
    expected = {"kan_gpt_nano", "kan_gpt_mini", "kan_gpt_small", "gpt_nano", "gpt_mini", "gpt_small"}
    assert expected | {"gpt_nano_matched", "gpt_mini_matched", "gpt_small_matched"} <= names
    assert model_info("kan_gpt")["name"] == "kan_gpt_nano" and model_info("gpt")["name"] == "gpt_nano"
    info = model_info("kan_gpt_nano")
    assert info["task"] == "lm" and info["twin"] == "gpt_nano" and info["matched_twin"] == "gpt_nano_matched"
    model = create_model(
        "kan_gpt", vocab_size=65, attn_layer="kan", head_layer="kan", layer_kwargs={"grid_size": 3}
    )
    assert model.lm_head.spline_weight.shape == (65, 64, 6) and not model.config.tie_word_embeddings
    assert model.transformer.h[0].attn.c_attn.basis.grid_size == 3
    assert sum(p.numel() for p in create_model("kan_gpt_nano").parameters()) < 1_000_000
    with pytest.raises(ValueError, match="n_embd"):
        create_model("kan_gpt_nano", n_embed=32)


def test_config_aliases_json_round_trip_and_validation():
    cfg = KanGPTConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=6, max_position_embeddings=32)
    assert (cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_positions) == (48, 3, 6, 32)
    again = KanGPTConfig.from_dict(json.loads(cfg.to_json_string(use_diff=False)))
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="divisible"):
        KanGPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        KanGPTConfig(head_layer="kan", tie_word_embeddings=True)
    with pytest.raises(ValueError, match="layer spec"):
        KanGPTConfig(ffn_layer=nn.Linear)


@pytest.mark.slow
def test_pipeline_example_caps_max_new_tokens_at_n_positions(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    args = ["--steps", "2", "--chars", "20000", "--block-size", "16", "--batch-size", "2"]
    args += ["--out", str(tmp_path / "run"), "--max-new-tokens", "500"]
    proc = subprocess.run(
        [sys.executable, str(root / "examples" / "gpt_pipeline.py"), *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    # 128 positions, a 7-character prompt: 122 new tokens fit (the last one is never fed back).
    assert "--max-new-tokens capped at 122 (n_positions=128)" in proc.stdout
