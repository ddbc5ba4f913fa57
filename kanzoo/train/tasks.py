"""Per-task training loss and evaluation metrics (lm, classification, segmentation).

Evaluation accumulates *sums* (loss, counts, per-image scores) so that results over a sharded
validation set are exact after one all-reduce.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TASKS = ("lm", "classification", "segmentation")


def _logits(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    logits = getattr(output, "logits", None)
    if logits is None:
        raise TypeError(f"model output of type {type(output).__name__} has no logits")
    return logits


class Task:
    """Interface: :meth:`loss`, :meth:`count` (throughput units) and sum-based evaluation."""

    name = ""
    unit = "samples"
    #: Keys of :meth:`eval_sums` (fixed, so processes can all-reduce them as one vector).
    sum_keys: tuple[str, ...] = ()
    #: Metric used to pick the best checkpoint, and whether larger is better.
    monitor = "val_loss"
    monitor_max = False

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    def count(self, batch: dict[str, Any]) -> int:
        """Throughput units in ``batch`` (samples, or tokens for LMs)."""
        return int(batch["pixel_values"].shape[0])

    def eval_sums(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, float]:
        """Additive statistics of one validation batch."""
        raise NotImplementedError

    def finalize(self, sums: dict[str, float]) -> dict[str, float]:
        """Metrics from the (all-reduced) sums."""
        raise NotImplementedError


class LanguageModeling(Task):
    """Causal LM: the model shifts ``labels`` itself and returns ``.loss`` (mean token NLL)."""

    name = "lm"
    unit = "tok"
    sum_keys = ("nll", "tokens", "correct")

    def loss(self, model, batch):
        out = model(input_ids=batch["input_ids"], labels=batch["labels"])
        loss = out["loss"] if isinstance(out, dict) else getattr(out, "loss", None)
        if loss is None:
            raise TypeError("language model returned no loss although labels were given")
        return loss

    def count(self, batch):
        return int(batch["input_ids"].numel())

    def eval_sums(self, model, batch):
        logits = _logits(model(input_ids=batch["input_ids"])).float()
        labels = batch["labels"]
        # Same shift as the model's own loss: position t predicts token t+1; -100 is ignored.
        shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
        shift_labels = labels[:, 1:].reshape(-1)
        nll = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
        tokens = (shift_labels != -100).sum()
        correct = ((shift_logits.argmax(-1) == shift_labels) & (shift_labels != -100)).sum()
        return {"nll": float(nll), "tokens": float(tokens), "correct": float(correct)}

    def finalize(self, sums):
        loss = sums["nll"] / max(sums["tokens"], 1.0)
        return {
            "val_loss": loss,
            "val_ppl": math.exp(min(loss, 50.0)),
            "val_token_acc": sums["correct"] / max(sums["tokens"], 1.0),
        }


class Classification(Task):
    """Image classification with cross-entropy; reports accuracy."""

    name = "classification"
    sum_keys = ("loss", "correct", "n")
    monitor = "val_acc"
    monitor_max = True

    def loss(self, model, batch):
        return F.cross_entropy(_logits(model(batch["pixel_values"])).float(), batch["labels"])

    def eval_sums(self, model, batch):
        logits = _logits(model(batch["pixel_values"])).float()
        labels = batch["labels"]
        return {
            "loss": float(F.cross_entropy(logits, labels, reduction="sum")),
            "correct": float((logits.argmax(-1) == labels).sum()),
            "n": float(labels.numel()),
        }

    def finalize(self, sums):
        n = max(sums["n"], 1.0)
        return {"val_loss": sums["loss"] / n, "val_acc": sums["correct"] / n}


def soft_dice_loss(logits: Tensor, mask: Tensor, *, eps: float = 1.0) -> Tensor:
    """Mean soft Dice loss over images (binary: 1 channel; multi-class: foreground classes).

    Args:
        logits: ``(B, K, H, W)``; K = 1 means a binary sigmoid output.
        mask: ``(B, H, W)`` integer labels.
        eps: Smoothing added to numerator and denominator.
    """
    if logits.shape[1] == 1:
        prob = torch.sigmoid(logits[:, 0])
        target = (mask > 0).to(prob.dtype)
        inter = (prob * target).flatten(1).sum(1)
        denom = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
        return (1 - (2 * inter + eps) / (denom + eps)).mean()
    k = logits.shape[1]
    prob = logits.softmax(1)[:, 1:]
    target = F.one_hot(mask.clamp(0, k - 1), k).permute(0, 3, 1, 2)[:, 1:].to(prob.dtype)
    inter = (prob * target).flatten(2).sum(2)
    denom = prob.flatten(2).sum(2) + target.flatten(2).sum(2)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def _per_image_scores(pred: Tensor, mask: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-image IoU and Dice of hard predictions, averaged over foreground classes.

    A class absent from both prediction and ground truth of an image scores 1 for that image.
    """
    ious, dices = [], []
    for c in range(1, max(num_classes, 2)):
        p = (pred == c).flatten(1)
        t = (mask == c).flatten(1)
        inter = (p & t).sum(1).double()
        union = (p | t).sum(1).double()
        total = p.sum(1).double() + t.sum(1).double()
        empty = union == 0
        ious.append(torch.where(empty, torch.ones_like(inter), inter / union.clamp(min=1)))
        dices.append(torch.where(empty, torch.ones_like(inter), 2 * inter / total.clamp(min=1)))
    return torch.stack(ious).mean(0), torch.stack(dices).mean(0)


class Segmentation(Task):
    """Semantic segmentation: BCE (K=1) or CE (K>1) plus soft Dice; reports mean per-image IoU/Dice."""

    name = "segmentation"
    sum_keys = ("loss", "iou", "dice", "n")
    monitor = "val_iou"
    monitor_max = True

    def __init__(self, *, dice_weight: float = 1.0) -> None:
        self.dice_weight = dice_weight

    def loss(self, model, batch):
        logits = _logits(model(batch["pixel_values"])).float()
        mask = batch["mask"].long()
        if logits.shape[-2:] != mask.shape[-2:]:
            raise ValueError(
                f"segmentation logits {tuple(logits.shape[-2:])} and masks "
                f"{tuple(mask.shape[-2:])} differ in size"
            )
        if logits.shape[1] == 1:
            ce = F.binary_cross_entropy_with_logits(logits[:, 0], (mask > 0).float())
        else:
            ce = F.cross_entropy(logits, mask, ignore_index=255)
        return ce + self.dice_weight * soft_dice_loss(logits, mask)

    def eval_sums(self, model, batch):
        logits = _logits(model(batch["pixel_values"])).float()
        mask = batch["mask"].long()
        if logits.shape[1] == 1:
            pred = (logits[:, 0] > 0).long()
            num_classes = 2
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], (mask > 0).float(), reduction="none")
            mask_eval = (mask > 0).long()
        else:
            pred = logits.argmax(1)
            num_classes = logits.shape[1]
            loss = F.cross_entropy(logits, mask, ignore_index=255, reduction="none")
            mask_eval = mask
        iou, dice = _per_image_scores(pred, mask_eval, num_classes)
        return {
            "loss": float(loss.flatten(1).mean(1).sum()),
            "iou": float(iou.sum()),
            "dice": float(dice.sum()),
            "n": float(mask.shape[0]),
        }

    def finalize(self, sums):
        n = max(sums["n"], 1.0)
        return {"val_loss": sums["loss"] / n, "val_iou": sums["iou"] / n, "val_dice": sums["dice"] / n}


def get_task(name: str) -> Task:
    """Task object by name (``lm``, ``classification``, ``segmentation``)."""
    from .tasks_science import SCIENCE_TASKS  # forecasting, regression, pde

    table = {"lm": LanguageModeling, "classification": Classification, "segmentation": Segmentation}
    table.update(SCIENCE_TASKS)
    if name not in table:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(table)}")
    return table[name]()
