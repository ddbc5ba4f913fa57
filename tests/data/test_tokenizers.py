"""Tokenizers: round trips, agreement with the transformers conversion, save/load."""

import numpy as np
import pytest

from kanzoo.data import BPETokenizer, ByteTokenizer, CharTokenizer, build_tokenizer, load_tokenizer

TEXT = "To be, or not to be: that is the question.\n\tWhether 'tis nobler — in the mind?\n\n"
UNICODE = "naïve café — 東京 🙂\n"


def test_byte_ids_are_utf8_bytes():
    tok = ByteTokenizer()
    assert tok.vocab_size == 256
    assert tok.encode(UNICODE) == list(UNICODE.encode("utf-8"))
    assert tok.decode(tok.encode(UNICODE)) == UNICODE
    with pytest.raises(ValueError, match="byte ids"):
        tok.decode([300])


def test_char_vocab_is_sorted_alphabet_and_round_trips():
    tok = CharTokenizer.from_text([TEXT, UNICODE])
    assert tok.chars == sorted(set(TEXT + UNICODE))
    ids = tok.encode(TEXT + UNICODE)
    assert ids == [tok.chars.index(c) for c in TEXT + UNICODE]
    assert tok.decode(ids) == TEXT + UNICODE
    np.testing.assert_array_equal(tok.encode_array(TEXT), np.array(tok.encode(TEXT)))
    with pytest.raises(ValueError, match="not in the tokenizer's alphabet"):
        tok.encode("xyzQ")


def test_char_tokenizer_rejects_bad_alphabet():
    with pytest.raises(ValueError):
        CharTokenizer(chars=["a", "a"])
    with pytest.raises(ValueError):
        CharTokenizer(chars=["ab"])


def test_bpe_trains_to_vocab_size_and_round_trips():
    corpus = [TEXT * 20, UNICODE * 5, "the theme of the thesis " * 50]
    tok = BPETokenizer.train(corpus, vocab_size=300)
    assert 258 <= tok.vocab_size <= 300
    for s in (TEXT, UNICODE, "unseen words: xylophone ŋ"):
        assert tok.decode(tok.encode(s)) == s
        assert tok.decode(tok.encode_array(s).tolist()) == s
    # merges compress frequent text below one id per byte
    assert len(tok.encode("the theme of the thesis ")) < len(b"the theme of the thesis ")
    assert tok.encode("<|endoftext|>") == [tok.eos_token_id]
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(corpus, vocab_size=100)


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_hf_conversion_gives_same_ids_and_save_load(kind, tmp_path):
    corpus = [TEXT * 10, UNICODE * 3]
    tok = build_tokenizer(kind, corpus, vocab_size=280)
    hf = tok.to_hf()
    for s in (TEXT, UNICODE, "  to  be\n\nor not  "):
        assert hf(s)["input_ids"] == tok.encode(s)
        assert hf.decode(tok.encode(s)) == s
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
    assert again.encode(TEXT) == tok.encode(TEXT)
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert auto(TEXT)["input_ids"] == tok.encode(TEXT)


def test_text_generation_pipeline_runs_with_converted_tokenizer():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, pipeline

    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=16, n_layer=1, n_head=2)
    )
    gen = pipeline("text-generation", model=model, tokenizer=tok.to_hf(), device="cpu")
    out = gen("To be", max_new_tokens=5, do_sample=False, pad_token_id=0)[0]["generated_text"]
    assert out.startswith("To be") and len(out) == len("To be") + 5
    assert set(out) <= set(tok.chars)


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="tokenizer must be"):
        build_tokenizer(3, ["abc"])  # type: ignore[arg-type]
