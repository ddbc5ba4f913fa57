"""Classification and language-model metrics against sklearn / closed forms."""

import math

import numpy as np
import pytest
import torch

from kanzoo.eval import (
    LMScoreAccumulator,
    classification_scores,
    lm_scores,
    plot_confusion_matrix,
    token_nll_sum,
)


def test_classification_against_sklearn():
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, top_k_accuracy_score

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 7))
    labels = rng.integers(0, 7, size=200)
    s = classification_scores(logits, labels)
    assert s["top1"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert s["top5"] == pytest.approx(top_k_accuracy_score(labels, logits, k=5, labels=range(7)))
    cm = confusion_matrix(labels, logits.argmax(1), labels=range(7))
    assert s["confusion_matrix"] == cm.tolist()
    assert s["per_class_accuracy"] == pytest.approx((np.diag(cm) / cm.sum(1)).tolist())
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, logits.argmax(1)))


def test_classification_hand_case_and_absent_class():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1]])
    labels = torch.tensor([0, 1, 1, 0])
    s = classification_scores(logits, labels)
    assert s["top1"] == 0.5
    assert s["top5"] == 1.0  # k clipped to 3 classes
    assert s["per_class_accuracy"][:2] == [0.5, 0.5]
    assert math.isnan(s["per_class_accuracy"][2])  # class 2 has no sample
    with pytest.raises(ValueError, match="labels must lie"):
        classification_scores(logits, torch.tensor([0, 1, 3, 0]))


def test_confusion_png(tmp_path):
    path = plot_confusion_matrix([[3, 1], [0, 4]], tmp_path / "cm.png", class_names=["a", "b"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _CharTok:
    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_lm_nll_perplexity_bits_per_byte():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 300)
    ids = torch.tensor([[65, 66, 233, 67, 68], [69, 70, 71, 72, 73]])  # chr(233) is 2 UTF-8 bytes
    s, n = token_nll_sum(logits, ids)
    logp = torch.log_softmax(logits.double(), -1)
    ref = -sum(logp[b, t, ids[b, t + 1]].item() for b in range(2) for t in range(4))
    assert n == 8 and s == pytest.approx(ref, rel=1e-5)
    acc = LMScoreAccumulator(tokenizer=_CharTok())
    acc.update(logits[:1], ids[:1])
    acc.update(logits[1:], ids[1:])
    r = acc.result()
    n_bytes = len("B\u00e9CD".encode()) + 4  # predicted tokens only; first of each block is context
    assert r["num_bytes"] == n_bytes == 9
    assert r["nll"] == pytest.approx(ref / 8, rel=1e-5)
    assert r["perplexity"] == pytest.approx(math.exp(ref / 8), rel=1e-5)
    assert r["bits_per_byte"] == pytest.approx(ref / math.log(2) / 9, rel=1e-5)


def test_uniform_model_perplexity_equals_vocab():
    v = 50
    logits = torch.zeros(3, 9, v)
    ids = torch.randint(0, v, (3, 9))
    r = lm_scores(*token_nll_sum(logits, ids))
    assert r["nll"] == pytest.approx(math.log(v))
    assert r["perplexity"] == pytest.approx(v)
    with pytest.raises(ValueError):
        lm_scores(0.0, 0)
