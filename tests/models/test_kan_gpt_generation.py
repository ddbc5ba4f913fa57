"""KAN-GPT ``generate()`` against hand-written reference decoding loops.

Every reference recomputes the whole sequence at every step without a cache (``use_cache=False``),
so it shares nothing with the cached paths ``generate`` takes: the greedy loop appends the argmax,
the sampling loop applies temperature and top-k itself and draws with ``torch.multinomial`` from
the same seeded generator state, and the beam-search loop expands every beam by every token and
keeps the best cumulative log-probabilities.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kanzoo.models.kan_gpt import KanGPTConfig, KanGPTForCausalLM

transformers = pytest.importorskip("transformers")

VOCAB = 40
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64, "vocab_size": VOCAB, "ffn_ratio": 2.0}


def tiny(seed: int = 0, **kw) -> KanGPTForCausalLM:
    torch.manual_seed(seed)
    # A wide init spreads the logits, so that no reference step sits on a near tie.
    return KanGPTForCausalLM(KanGPTConfig(**{**TINY, "initializer_range": 0.2, **kw})).eval()


def prompts(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def next_logits(model, seq: torch.Tensor) -> torch.Tensor:
    return model(seq, use_cache=False).logits[:, -1].float()


@torch.no_grad()
def greedy_reference(model, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    seq = prompt
    for _ in range(steps):
        seq = torch.cat([seq, next_logits(model, seq).argmax(-1, keepdim=True)], dim=1)
    return seq


@torch.no_grad()
def sampling_reference(model, prompt, steps: int, *, temperature: float, top_k: int, seed: int):
    torch.manual_seed(seed)
    seq = prompt
    for _ in range(steps):
        scores = next_logits(model, seq) / temperature
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
        token = torch.multinomial(scores.softmax(-1), num_samples=1)
        seq = torch.cat([seq, token], dim=1)
    return seq


@torch.no_grad()
def beam_reference(model, prompt: torch.Tensor, steps: int, beams: int) -> list[tuple[list[int], float]]:
    """All beams after ``steps`` tokens, best first: ``(tokens, summed log-probability)``."""
    kept = [(prompt[0].tolist(), 0.0)]
    for _ in range(steps):
        candidates = []
        for tokens, score in kept:
            logp = F.log_softmax(next_logits(model, torch.tensor([tokens])), dim=-1)[0]
            candidates += [(tokens + [t], score + logp[t].item()) for t in range(VOCAB)]
        kept = sorted(candidates, key=lambda c: -c[1])[:beams]
    return kept


CACHES = {
    "no_cache": {"use_cache": False},
    "dynamic": {"use_cache": True},
    "static": {"cache_implementation": "static"},
}


@pytest.fixture(scope="module")
def model() -> KanGPTForCausalLM:
    return tiny()


@pytest.mark.parametrize("ffn_layer", ["kan", "linear"])
def test_greedy_equals_reference(ffn_layer):
    model = tiny(ffn_layer=ffn_layer)
    prompt = prompts(2, 5)
    expected = greedy_reference(model, prompt, 10)
    for cache, kwargs in CACHES.items():
        got = model.generate(prompt, max_new_tokens=10, do_sample=False, pad_token_id=0, **kwargs)
        assert torch.equal(got, expected), cache


def test_seeded_sampling_equals_reference(model):
    prompt = prompts(2, 4)
    expected = sampling_reference(model, prompt, 12, temperature=0.7, top_k=8, seed=123)
    assert not torch.equal(expected, greedy_reference(model, prompt, 12))  # sampling is not greedy here
    sampling = {"do_sample": True, "temperature": 0.7, "top_k": 8, "top_p": 1.0, "pad_token_id": 0}
    for cache, kwargs in CACHES.items():
        torch.manual_seed(123)
        got = model.generate(prompt, max_new_tokens=12, **sampling, **kwargs)
        assert torch.equal(got, expected), cache


def test_beam_search_equals_reference(model):
    prompt = prompts(1, 4)
    expected = beam_reference(model, prompt, 6, beams=3)
    for use_cache in (True, False):
        out = model.generate(
            prompt,
            max_new_tokens=6,
            num_beams=3,
            num_return_sequences=3,
            do_sample=False,
            length_penalty=0.0,  # rank by the summed log-probability, as the reference does
            pad_token_id=0,
            use_cache=use_cache,
            return_dict_in_generate=True,
            output_scores=True,
        )
        assert out.sequences.tolist() == [tokens for tokens, _ in expected], use_cache
        scores = torch.tensor([score for _, score in expected])
        torch.testing.assert_close(out.sequences_scores, scores, atol=1e-4, rtol=1e-4)


def _left_padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([torch.zeros(width - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([torch.cat([torch.zeros(width - len(r)), torch.ones(len(r))]) for r in rows]).long()
    return ids, mask


def test_left_padded_batch_equals_each_prompt_alone(model):
    rows = [prompts(1, 7, seed=2)[0], prompts(1, 3, seed=3)[0], prompts(1, 5, seed=4)[0]]
    ids, mask = _left_padded(rows)
    expected = [greedy_reference(model, row[None], 8)[0] for row in rows]
    for cache in ("dynamic", "static"):
        kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0, **CACHES[cache]}
        got = model.generate(ids, attention_mask=mask, **kwargs)
        for i, row in enumerate(rows):
            assert torch.equal(got[i, ids.shape[1] - len(row) :], expected[i]), (cache, i)


def test_left_padded_beam_search_equals_each_prompt_alone(model):
    rows = [prompts(1, 6, seed=5)[0], prompts(1, 3, seed=6)[0]]
    ids, mask = _left_padded(rows)
    got = model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=5,
        num_beams=2,
        length_penalty=0.0,
        do_sample=False,
        pad_token_id=0,
    )
    for i, row in enumerate(rows):
        pad = ids.shape[1] - len(row)
        assert got[i, pad:].tolist() == beam_reference(model, row[None], 5, beams=2)[0][0], i


@pytest.mark.parametrize("assistant", ["draft_model", "prompt_lookup"])
def test_assisted_decoding_equals_greedy_reference(model, assistant):
    # A repetitive prompt gives prompt-lookup decoding candidates to accept and to reject.
    prompt = torch.tensor([[3, 4, 5, 6, 3, 4, 5, 6, 3, 4]])
    if assistant == "draft_model":
        kwargs = {"assistant_model": tiny(seed=7, ffn_layer="linear", n_layer=1)}
    else:
        kwargs = {"prompt_lookup_num_tokens": 3}
    got = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0, **kwargs)
    assert torch.equal(got, greedy_reference(model, prompt, 12))


def test_generation_past_n_positions_fails_before_any_forward():
    model = tiny(n_positions=16)
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    prompt = prompts(1, 6)
    with pytest.raises(ValueError, match="n_positions=16") as err:
        model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert "\n" not in str(err.value) and "1 fewer new tokens" in str(err.value)
    assert not calls
    # The longest request that fits: the last new token is never fed back, so 6 + 11 - 1 = 16 positions.
    got = model.generate(prompt, max_new_tokens=11, do_sample=False, pad_token_id=0)
    assert torch.equal(got, greedy_reference(model, prompt, 11))
