"""Language-model metrics: mean token NLL (nats), perplexity and bits per byte.

Definitions, for the predicted tokens ``y_1..y_N`` of an evaluation set (every position of a
block except the first, since position ``t`` predicts token ``t+1``):

* ``nll = -(1/N) Σ log p(y_i | context)`` in nats (natural log);
* ``perplexity = exp(nll)``;
* ``bits_per_byte = Σ -log p(y_i | context) / (ln 2 · B)`` where ``B`` is the number of UTF-8 bytes
  of the text those N tokens decode to. Bytes are counted per evaluated block by decoding the
  block's predicted tokens with the tokenizer and measuring the UTF-8 length of the result. This is
  exact for character and byte-level tokenizers and for BPE tokens that end on character
  boundaries; a multi-byte character cut by a block edge is counted as the replacement character's
  length. Bits per byte makes models with different tokenizers comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["LMScoreAccumulator", "lm_scores", "token_nll_sum"]


def token_nll_sum(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[float, int]:
    """Sum of next-token NLL (nats) of a batch and the number of predicted tokens.

    Args:
        logits: ``(B, T, V)`` model output for ``input_ids``.
        input_ids: ``(B, T)`` tokens; position ``t`` of the logits is scored against token ``t+1``.
    """
    if logits.ndim != 3 or input_ids.ndim != 2 or logits.shape[:2] != input_ids.shape:
        raise ValueError(
            "logits (B, T, V) and input_ids (B, T) must agree, "
            f"got {tuple(logits.shape)} / {tuple(input_ids.shape)}"
        )
    pred = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    tgt = input_ids[:, 1:].reshape(-1)
    return float(F.cross_entropy(pred, tgt, reduction="sum")), int(tgt.numel())


def lm_scores(nll_sum: float, num_tokens: int, num_bytes: int | None = None) -> dict[str, float]:
    """Turn a summed NLL into ``nll``, ``perplexity`` and (given a byte count) ``bits_per_byte``."""
    if num_tokens <= 0:
        raise ValueError("lm_scores needs at least one predicted token")
    nll = nll_sum / num_tokens
    out = {"nll": nll, "perplexity": math.exp(nll) if nll < 700 else float("inf"), "num_tokens": num_tokens}
    if num_bytes is not None:
        if num_bytes <= 0:
            raise ValueError("bits_per_byte needs a positive byte count")
        out["bits_per_byte"] = nll_sum / (math.log(2) * num_bytes)
        out["num_bytes"] = num_bytes
    return out


@dataclass
class LMScoreAccumulator:
    """Accumulate NLL, token and byte counts over batches; ``result()`` gives :func:`lm_scores`.

    Args:
        tokenizer: object with ``decode(list[int]) -> str`` used to count bytes (None: no bits/byte).
    """

    tokenizer: Any = None
    nll_sum: float = 0.0
    num_tokens: int = 0
    num_bytes: int = 0

    def update(self, logits: torch.Tensor, input_ids: torch.Tensor) -> None:
        s, n = token_nll_sum(logits, input_ids)
        self.nll_sum += s
        self.num_tokens += n
        if self.tokenizer is not None:
            for row in input_ids[:, 1:].tolist():
                self.num_bytes += len(self.tokenizer.decode(row).encode("utf-8"))

    def result(self) -> dict[str, float]:
        return lm_scores(
            self.nll_sum, self.num_tokens, self.num_bytes if self.tokenizer is not None else None
        )
