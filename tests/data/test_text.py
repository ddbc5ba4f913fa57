"""Language-modelling data: local files through HF datasets, packing, splits, embedded corpora."""

import json

import pytest
import torch

from kanzoo.data import PackedBlocks, build_data
from kanzoo.data.corpora import markdown_play_to_text

DOCS = [
    "First document: the quick brown fox jumps over the lazy dog.\n" * 30,
    "Second document, with other words: pack my box with five dozen liquor jugs.\n" * 30,
]


def _stream_of(dm):
    """Reassembles a split's token stream from its windows (windows overlap by one token)."""
    items = [dm[i]["input_ids"] for i in range(len(dm))]
    return torch.cat([items[0]] + [x[1:] for x in items[1:]])


def test_packed_blocks_cover_every_target_once():
    tokens = torch.arange(100, dtype=torch.int16)
    ds = PackedBlocks(tokens=tokens, block_size=10)
    assert len(ds) == (100 - 10) // 9 + 1 == 11
    item = ds[0]
    assert item["input_ids"].dtype == torch.long and torch.equal(item["labels"], item["input_ids"])
    # targets are positions 1.. of each window; together they are tokens[1:last] once each
    targets = torch.cat([ds[i]["input_ids"][1:] for i in range(len(ds))])
    assert torch.equal(targets, torch.arange(1, 1 + targets.numel()))
    assert ds[-1]["input_ids"][-1] == 99  # last window starts at 10 * 9 = 90
    with pytest.raises(IndexError):
        ds[11]
    with pytest.raises(ValueError):
        PackedBlocks(tokens=tokens, block_size=1)


@pytest.mark.parametrize("fmt", ["txt", "json", "jsonl", "parquet"])
def test_text_from_local_files_matches_direct_encoding(tmp_path, fmt):
    if fmt == "txt":
        for i, d in enumerate(DOCS):
            (tmp_path / f"doc{i}.txt").write_text(d)
    elif fmt == "json":
        (tmp_path / "c.json").write_text(json.dumps([{"text": d} for d in DOCS]))
    elif fmt == "jsonl":
        (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    else:
        import datasets

        datasets.Dataset.from_dict({"text": DOCS}).to_parquet(str(tmp_path / "c.parquet"))
    dm = build_data("text", path_or_hub_name=str(tmp_path), tokenizer="char", block_size=32)
    tok = dm.info["tokenizer"]
    assert dm.task == "lm" and dm.info["vocab_size"] == len(set("".join(DOCS) + "\n"))
    expected = torch.tensor(tok.encode("\n\n".join(DOCS)))
    n_val = dm.info["num_val_tokens"]
    assert n_val == expected.numel() - round(0.9 * expected.numel())
    train, val = _stream_of(dm.train), _stream_of(dm.val)
    assert torch.equal(train, expected[: train.numel()])  # train = head of the stream
    assert torch.equal(val, expected[-n_val:][: val.numel()])  # val = tail
    assert dm.train[0]["input_ids"].shape == (32,)


def test_text_json_custom_column_and_errors(tmp_path):
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in DOCS))
    dm = build_data("text", path_or_hub_name=tmp_path / "c.jsonl", text_column="body", block_size=16)
    assert len(dm.train) > 0
    with pytest.raises(ValueError, match="text column 'text'"):
        build_data("text", path_or_hub_name=tmp_path / "c.jsonl", block_size=16)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_data("text", path_or_hub_name=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="fewer than block_size"):
        build_data("text", path_or_hub_name=tmp_path / "c.jsonl", text_column="body", block_size=100_000)


def test_text_from_saved_dataset_uses_its_validation_split(tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": DOCS}),
            "validation": datasets.Dataset.from_dict({"text": DOCS[:1]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    dm = build_data("text", path_or_hub_name=str(tmp_path / "saved"), tokenizer="byte", block_size=64)
    assert dm.info["vocab_size"] == 256
    assert dm.info["num_val_tokens"] == len(DOCS[0].encode())
    assert dm.info["num_train_tokens"] == len("\n\n".join(DOCS).encode())


def test_unreachable_hub_name_fails_fast_with_file_not_found():
    with pytest.raises(FileNotFoundError, match="could not be loaded from the hub"):
        build_data("text", path_or_hub_name="no-such-user/no-such-corpus")


def test_bpe_packs_documents_with_eos(tmp_path):
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    dm = build_data(
        "text", path_or_hub_name=tmp_path, tokenizer="bpe", vocab_size=300, block_size=16, val_fraction=0.5
    )
    tok = dm.info["tokenizer"]
    stream = torch.cat([_stream_of(dm.train), _stream_of(dm.val)])
    assert (stream == tok.eos_token_id).sum() >= 1
    assert DOCS[0][:40] in tok.decode(stream.tolist())


def test_markdown_play_conversion():
    md = (
        "# Play\n\n## ACT I\n\n_Enter HAMLET_\n\n"
        "**HAMLET**  \nTo be, or not to be,  \nthat is \\[the] question.\n"
    )
    assert (
        markdown_play_to_text(md)
        == "Play\n\nACT I\n\nEnter HAMLET\n\nHAMLET:\nTo be, or not to be,\nthat is [the] question.\n"
    )


def test_embedded_shakespeare_offline():
    dm = build_data("shakespeare", block_size=64)
    tok = dm.info["tokenizer"]
    assert dm.task == "lm" and 60 < dm.info["vocab_size"] < 100
    assert dm.info["num_train_tokens"] > 4_000_000
    text = tok.decode(dm.train.tokens.tolist())
    assert "A Midsummer Night's Dream" in text and "\nTHESEUS:\n" in text and "**" not in text
    assert "To be, or not to be" in text  # Hamlet is in the train part
    assert "Romeo" in tok.decode(dm.val.tokens.tolist())  # the last plays are val
    assert len(dm.train) == (dm.info["num_train_tokens"] - 64) // 63 + 1


def test_embedded_pydoc_offline_and_max_chars():
    from pydoc_data.topics import topics

    dm = build_data("pydoc", block_size=32, max_chars=20_000)
    # documents (sorted by topic) are cut after 20000 characters, then joined by blank lines
    docs, n = [], 0
    for k in sorted(topics):
        if n >= 20_000:
            break
        docs.append((topics[k].strip() + "\n")[: 20_000 - n])
        n += len(docs[-1])
    tok = dm.info["tokenizer"]
    stream = torch.cat([dm.train.tokens, dm.val.tokens]).tolist()
    assert tok.decode(stream) == "\n\n".join(docs)
