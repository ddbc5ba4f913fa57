"""Tokenizers for language modelling: character, byte and corpus-trained byte-level BPE.

All share one small interface: ``encode(str) -> list[int]``, ``decode(list[int]) -> str``,
``vocab_size``, ``encode_array(str) -> np.ndarray`` (fast path for whole corpora),
``save_pretrained(dir)`` and ``to_hf()`` (a ``transformers.PreTrainedTokenizerFast`` giving the
same ids, so ``pipeline("text-generation")`` and ``AutoTokenizer.from_pretrained(dir)`` work).
``load_tokenizer(dir)`` reads any of them back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

KANZOO_TOKENIZER_FILE = "kanzoo_tokenizer.json"
EOS = "<|endoftext|>"


def _byte_chars() -> list[str]:
    """The printable stand-in character for each byte value 0..255 (GPT-2 byte-level alphabet).

    Bytes that are printable Latin-1 characters stand for themselves; every other byte is given
    the next unused code point from 256 upward, so each byte maps to one visible character.
    """
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


class BaseTokenizer:
    """Shared save/convert logic; subclasses define the ids."""

    kind: str = ""
    eos_token: str | None = None

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)

    def __len__(self) -> int:
        return self.vocab_size

    def _backend(self):  # -> tokenizers.Tokenizer
        raise NotImplementedError

    def _payload(self) -> dict[str, Any]:
        return {}

    def to_hf(self, **kwargs: Any):
        """A ``transformers.PreTrainedTokenizerFast`` producing the same ids as ``encode``."""
        from transformers import PreTrainedTokenizerFast

        extra = {"eos_token": self.eos_token} if self.eos_token else {}
        return PreTrainedTokenizerFast(
            tokenizer_object=self._backend(), clean_up_tokenization_spaces=False, **extra, **kwargs
        )

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        """Writes the HF tokenizer files plus ``kanzoo_tokenizer.json``; returns the paths written."""
        d = Path(save_directory)
        d.mkdir(parents=True, exist_ok=True)
        written = [str(p) for p in self.to_hf().save_pretrained(str(d))]
        meta = {"kind": self.kind, "vocab_size": self.vocab_size, **self._payload()}
        (d / KANZOO_TOKENIZER_FILE).write_text(json.dumps(meta, ensure_ascii=False))
        return [*written, str(d / KANZOO_TOKENIZER_FILE)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class ByteTokenizer(BaseTokenizer):
    """UTF-8 bytes as tokens: 256 ids, no training, any text encodes."""

    kind = "byte"

    @property
    def vocab_size(self) -> int:
        return 256

    def encode_array(self, text: str) -> np.ndarray:
        # Surrogate escapes (undecodable bytes of a file read with errors="bytes") become the
        # original bytes again, so any byte sequence round-trips.
        return np.frombuffer(text.encode("utf-8", errors="surrogateescape"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < 256]
        if bad:
            raise ValueError(f"byte ids must be in [0, 256), got {bad[:5]}")
        return bytes(ids).decode("utf-8", errors="replace")

    def _backend(self):
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

        vocab = {ch: b for b, ch in enumerate(_byte_chars())}
        tok = Tokenizer(models.WordLevel(vocab=vocab))
        # Map bytes to their stand-in characters, then make every character its own token.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated"),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        return tok


class CharTokenizer(BaseTokenizer):
    """One id per character of a fixed alphabet (built from a corpus with :meth:`from_text`).

    Args:
        chars: The alphabet; ``chars[i]`` has id ``i``. Characters must be unique.
    """

    kind = "char"

    def __init__(self, *, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars:
            raise ValueError("CharTokenizer needs a non-empty alphabet")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be unique single characters")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str | Iterable[str]) -> CharTokenizer:
        """Alphabet = sorted set of the characters in ``text`` (a string or an iterable of strings)."""
        seen: set[str] = set()
        for part in [text] if isinstance(text, str) else text:
            seen.update(part)
        return cls(chars=sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @cached_property
    def _lut(self) -> np.ndarray:
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        lut = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
        lut[codes] = np.arange(len(codes))
        return lut

    def encode_array(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        lut = self._lut
        ids = np.where(codes < len(lut), lut[np.minimum(codes, len(lut) - 1)], -1)
        if (ids < 0).any():
            bad = sorted({chr(c) for c in codes[ids < 0][:1000]})
            raise ValueError(f"characters not in the tokenizer's alphabet: {bad[:10]!r}")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        try:
            return "".join(self.chars[int(i)] for i in ids)
        except IndexError:
            raise ValueError(f"token id out of range for vocab_size={self.vocab_size}") from None

    def _payload(self) -> dict[str, Any]:
        return {"chars": self.chars}

    def _backend(self):
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

        tok = Tokenizer(models.WordLevel(vocab=dict(self.stoi)))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        return tok


class BPETokenizer(BaseTokenizer):
    """Byte-level BPE (GPT-2 style) from the ``tokenizers`` library; train with :meth:`train`.

    Args:
        tokenizer: A trained ``tokenizers.Tokenizer``.
    """

    kind = "bpe"
    eos_token = EOS

    def __init__(self, *, tokenizer: Any) -> None:
        self.tok = tokenizer

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int = 1024,
        min_frequency: int = 2,
        show_progress: bool = False,
    ) -> BPETokenizer:
        """Learns merges on ``texts`` up to ``vocab_size`` ids (256 byte ids + ``<|endoftext|>`` + merges)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 258:
            raise ValueError(f"BPE vocab_size must be >= 258 (256 bytes + eos + 1 merge), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer=tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    @property
    def eos_token_id(self) -> int:
        return self.tok.token_to_id(EOS)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def encode_array(self, text: str) -> np.ndarray:
        # Encode groups of lines in one batch call (parallel in Rust). Decoding gives the text back
        # exactly; ids may differ from one `encode` call only where a whitespace run spans a cut.
        lines = text.splitlines(keepends=True)
        chunks = ["".join(lines[i : i + 256]) for i in range(0, len(lines), 256)] or [""]
        encs = self.tok.encode_batch(chunks)
        return np.fromiter((i for e in encs for i in e.ids), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def _backend(self):
        return self.tok


class HFTokenizer(BaseTokenizer):
    """Wraps any ``transformers`` tokenizer (a hub name or a saved folder) in the same interface.

    Args:
        tokenizer: A ``transformers`` tokenizer instance.
    """

    kind = "hf"

    def __init__(self, *, tokenizer: Any) -> None:
        self.hf = tokenizer
        self.eos_token = tokenizer.eos_token

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def encode_array(self, text: str) -> np.ndarray:
        lines = text.splitlines(keepends=True)
        chunks = ["".join(lines[i : i + 256]) for i in range(0, len(lines), 256)] or [""]
        ids = self.hf(chunks, add_special_tokens=False)["input_ids"]
        return np.fromiter((i for row in ids for i in row), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode([int(i) for i in ids])

    def to_hf(self, **kwargs: Any):
        return self.hf

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        return [str(p) for p in self.hf.save_pretrained(str(save_directory))]


def load_tokenizer(path_or_name: str | os.PathLike) -> BaseTokenizer:
    """Loads a tokenizer saved by ``save_pretrained`` (or any HF tokenizer folder / hub name).

    Raises:
        FileNotFoundError: a local folder without tokenizer files, or an unreachable hub name.
    """
    p = Path(path_or_name).expanduser()
    meta_file = p / KANZOO_TOKENIZER_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        kind = meta.get("kind")
        if kind == "char":
            return CharTokenizer(chars=meta["chars"])
        if kind == "byte":
            return ByteTokenizer()
        if kind == "bpe":
            from tokenizers import Tokenizer

            return BPETokenizer(tokenizer=Tokenizer.from_file(str(p / "tokenizer.json")))
        raise ValueError(f"{meta_file}: unknown tokenizer kind {kind!r}")
    if p.is_dir() and not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"no tokenizer files (kanzoo_tokenizer.json / tokenizer.json) in {p}")
    import contextlib

    from transformers import AutoTokenizer

    from kanzoo._hub import hub_cache_only, hub_unavailable, one_line_error

    reason = None if p.is_dir() else hub_unavailable("model")
    try:
        with hub_cache_only() if reason else contextlib.nullcontext():
            return HFTokenizer(tokenizer=AutoTokenizer.from_pretrained(str(path_or_name)))
    except OSError as e:
        why = f"cached while the hub cannot be used ({reason})" if reason else "reachable on the hub"
        raise FileNotFoundError(
            f"tokenizer {str(path_or_name)!r} is neither a local tokenizer folder nor {why}"
            f" [{one_line_error(e)}]"
        ) from None


def build_tokenizer(
    spec: str | BaseTokenizer, corpus: Sequence[str], *, vocab_size: int | None = None
) -> BaseTokenizer:
    """Builds the tokenizer named by ``spec`` for ``corpus`` (a list of document strings).

    Args:
        spec: ``"char"`` (alphabet of the corpus), ``"byte"`` (256 ids), ``"bpe"`` (trained on the
            corpus), a saved tokenizer folder, a hub tokenizer name, or a tokenizer instance.
        corpus: Documents used to build char/BPE vocabularies.
        vocab_size: BPE vocabulary size (default 1024); ignored otherwise.
    """
    if isinstance(spec, BaseTokenizer):
        return spec
    if spec == "char":
        return CharTokenizer.from_text(corpus)
    if spec == "byte":
        return ByteTokenizer()
    if spec == "bpe":
        return BPETokenizer.train(corpus, vocab_size=vocab_size or 1024)
    if not isinstance(spec, str):
        raise ValueError(f"tokenizer must be 'char', 'byte', 'bpe', a path or a tokenizer, got {spec!r}")
    return load_tokenizer(spec)
