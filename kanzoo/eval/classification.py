"""Classification metrics: top-k accuracy, per-class accuracy, confusion matrix (+ PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["classification_scores", "plot_confusion_matrix"]


def classification_scores(
    logits: Any,
    labels: Any,
    num_classes: int | None = None,
    *,
    topk: Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """Score class logits against integer labels.

    Args:
        logits: ``(N, K)`` scores (logits or probabilities; only their order matters).
        labels: ``(N,)`` integer labels in ``[0, K)``.
        num_classes: K (default: the logits' second dimension).
        topk: the k's of top-k accuracy; a k larger than K is clipped to K (then it is 1.0).

    Returns:
        ``top1``, ``top5`` (one ``top{k}`` per requested k), ``per_class_accuracy`` (list, NaN for a
        class without samples), ``balanced_accuracy`` (mean of the defined per-class accuracies),
        ``confusion_matrix`` (list of lists, ``[true][pred]`` counts), ``num_samples``.
        Ties in the scores are broken by ``torch.topk``'s order.
    """
    x = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if x.ndim != 2:
        raise ValueError(f"logits must have shape (N, K), got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError("classification_scores needs at least one sample")
    k_cls = int(num_classes if num_classes is not None else x.shape[1])
    if x.shape[1] != k_cls:
        raise ValueError(f"logits have {x.shape[1]} classes but num_classes={k_cls}")
    y = y.long()
    if y.min() < 0 or y.max() >= k_cls:
        raise ValueError(f"labels must lie in [0, {k_cls - 1}], got {int(y.min())}..{int(y.max())}")
    x = x.float()
    out: dict[str, Any] = {}
    for k in topk:
        kk = min(int(k), k_cls)
        top = x.topk(kk, dim=1).indices
        out[f"top{int(k)}"] = float((top == y[:, None]).any(dim=1).float().mean())
    pred = x.argmax(dim=1)
    cm = torch.bincount(y * k_cls + pred, minlength=k_cls * k_cls).reshape(k_cls, k_cls)
    support = cm.sum(dim=1)
    per_class = [float(cm[c, c] / support[c]) if support[c] > 0 else float("nan") for c in range(k_cls)]
    defined = [v for v in per_class if not np.isnan(v)]
    out["per_class_accuracy"] = per_class
    out["balanced_accuracy"] = float(np.mean(defined))
    out["confusion_matrix"] = cm.tolist()
    out["num_samples"] = int(x.shape[0])
    return out


def plot_confusion_matrix(
    cm: Any,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Path:
    """Draw a confusion matrix (rows = true class, columns = predicted) to a PNG with matplotlib.

    Args:
        cm: ``(K, K)`` counts.
        path: output file.
        class_names: tick labels (default: class indices).
        normalize: colour by row-normalized rate (numbers printed are counts either way).
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(cm, dtype=np.float64)
    k = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize else m
    size = min(2 + 0.45 * k, 16)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    int(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[i, j] > 0.5 * (rates.max() or 1) else "black",
                )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
