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

from kanzoo.data.masks import IGNORE_INDEX


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
    """Causal LM: the model shifts ``labels`` itself and returns ``.loss`` (mean token NLL).

    Validation metrics: ``val_loss`` (mean NLL in nats of the scored tokens), ``val_ppl_est``
    (its exponential: a perplexity estimate from the evaluated batches), ``val_token_acc`` and
    ``eval_tokens`` (the number of tokens scored).
    """

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
        # The trainer scores only trainer.eval_max_batches batches of the validation split (10 for
        # the default LM recipes), so its perplexity is an estimate from those tokens and is named
        # so; evaluate.py's ``perplexity`` covers the whole split. ``eval_tokens`` says how many
        # tokens the estimate rests on.
        loss = sums["nll"] / max(sums["tokens"], 1.0)
        return {
            "val_loss": loss,
            "val_ppl_est": math.exp(min(loss, 50.0)),
            "val_token_acc": sums["correct"] / max(sums["tokens"], 1.0),
            "eval_tokens": int(sums["tokens"]),
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


def soft_dice_loss(
    logits: Tensor, mask: Tensor, *, eps: float = 1.0, ignore_index: int | None = None
) -> Tensor:
    """Mean soft Dice loss over images (binary: 1 channel; multi-class: foreground classes).

    Args:
        logits: ``(B, K, H, W)``; K = 1 means a binary sigmoid output.
        mask: ``(B, H, W)`` integer labels.
        eps: Smoothing added to numerator and denominator.
        ignore_index: Label of pixels left out of the loss (None: every pixel counts).
    """
    valid = None if ignore_index is None else mask != ignore_index
    if valid is not None and bool(valid.all()):
        valid = None  # the same arithmetic as without ignored pixels
    if logits.shape[1] == 1:
        prob = torch.sigmoid(logits[:, 0])
        target = (mask > 0).to(prob.dtype)
        if valid is not None:
            prob, target = prob * valid, target * valid
        inter = (prob * target).flatten(1).sum(1)
        denom = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
        return (1 - (2 * inter + eps) / (denom + eps)).mean()
    k = logits.shape[1]
    prob = logits.softmax(1)[:, 1:]
    target = F.one_hot(mask.clamp(0, k - 1), k).permute(0, 3, 1, 2)[:, 1:].to(prob.dtype)
    if valid is not None:
        prob, target = prob * valid[:, None], target * valid[:, None]
    inter = (prob * target).flatten(2).sum(2)
    denom = prob.flatten(2).sum(2) + target.flatten(2).sum(2)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def _pixel_bce(logit: Tensor, mask: Tensor, ignore_index: int | None, *, per_image: bool = False) -> Tensor:
    """Binary cross-entropy over the pixels that are not ``ignore_index`` (mean, or mean per image)."""
    target = (mask > 0).to(logit.dtype)
    valid = None if ignore_index is None else mask != ignore_index
    if valid is None or bool(valid.all()):
        loss = F.binary_cross_entropy_with_logits(logit, target, reduction="none" if per_image else "mean")
        return loss.flatten(1).mean(1) if per_image else loss
    w = valid.to(logit.dtype)
    loss = F.binary_cross_entropy_with_logits(logit, target * w, weight=w, reduction="none").flatten(1)
    if per_image:
        return loss.sum(1) / w.flatten(1).sum(1).clamp(min=1)
    return loss.sum() / w.sum().clamp(min=1)


class Segmentation(Task):
    """Semantic segmentation: BCE (K=1) or CE (K>1) plus soft Dice; reports mean per-image IoU/Dice.

    Masks hold class ids and ``IGNORE_INDEX`` (255) for pixels that no loss and no metric counts.
    Predictions and scores come from :mod:`kanzoo.eval.segmentation` (``logits_to_labels`` and
    ``SegmentationAccumulator``), the code ``evaluate.py`` scores with, so the validation IoU
    printed during training is the IoU ``evaluate.py`` reports on the same images at the same size.

    Args:
        dice_weight: Weight of the soft Dice term in the loss.
        ignore_index: Mask label left out of loss and metrics (None: every pixel counts).
    """

    name = "segmentation"
    sum_keys = ("loss", "iou", "dice", "n")
    monitor = "val_iou"
    monitor_max = True

    def __init__(self, *, dice_weight: float = 1.0, ignore_index: int | None = IGNORE_INDEX) -> None:
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index

    def _logits_and_mask(self, model, batch) -> tuple[Tensor, Tensor]:
        logits = _logits(model(batch["pixel_values"])).float()
        mask = batch["mask"].long()
        if logits.shape[-2:] != mask.shape[-2:]:
            raise ValueError(
                f"segmentation logits {tuple(logits.shape[-2:])} and masks "
                f"{tuple(mask.shape[-2:])} differ in size"
            )
        return logits, mask

    def loss(self, model, batch):
        logits, mask = self._logits_and_mask(model, batch)
        ignore = self.ignore_index
        if logits.shape[1] == 1:
            ce = _pixel_bce(logits[:, 0], mask, ignore)
        else:
            ce = F.cross_entropy(logits, mask, ignore_index=-100 if ignore is None else ignore)
        return ce + self.dice_weight * soft_dice_loss(logits, mask, ignore_index=ignore)

    def eval_sums(self, model, batch):
        from kanzoo.eval.segmentation import SegmentationAccumulator, logits_to_labels

        logits, mask = self._logits_and_mask(model, batch)
        ignore = self.ignore_index
        if logits.shape[1] == 1:
            loss = _pixel_bce(logits[:, 0], mask, ignore, per_image=True)
            num_classes = 2
        else:
            num_classes = logits.shape[1]
            ce = F.cross_entropy(
                logits, mask, ignore_index=-100 if ignore is None else ignore, reduction="none"
            ).flatten(1)
            valid = torch.ones_like(mask, dtype=torch.bool) if ignore is None else mask != ignore
            loss = ce.sum(1) / valid.flatten(1).sum(1).clamp(min=1)
        acc = SegmentationAccumulator(num_classes=num_classes, ignore_index=ignore, compute_hd95=False)
        ids = batch.get("id")
        names = [str(i) for i in ids] if isinstance(ids, (list, tuple)) else None
        acc.update_batch(logits_to_labels(logits), mask, names=names)
        return {"loss": float(loss.sum()), **acc.sums()}

    def finalize(self, sums):
        from kanzoo.eval.segmentation import SegmentationAccumulator

        n = max(sums["n"], 1.0)
        scores = SegmentationAccumulator.from_sums(sums)
        return {"val_loss": sums["loss"] / n, "val_iou": scores["iou"], "val_dice": scores["dice"]}


#: Task name -> Task class. A new task registers itself with one line: ``register_task(MyTask)``.
_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task], *, name: str | None = None) -> type[Task]:
    """Register a :class:`Task` subclass under ``name`` (default ``cls.name``); usable as a decorator.

    Raises:
        ValueError: the name is empty or already taken by another class.
    """
    key = name or cls.name
    if not key:
        raise ValueError(f"task class {cls.__name__} has no name")
    if key in _TASKS and _TASKS[key] is not cls:
        raise ValueError(f"task {key!r} is already registered ({_TASKS[key].__name__})")
    _TASKS[key] = cls
    return cls


def list_tasks() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def get_task(name: str, **kwargs: Any) -> Task:
    """Task object by name (``lm``, ``classification``, ``segmentation``, or a registered one).

    Args:
        name: A registered task name.
        **kwargs: Keyword arguments of that task's constructor.
    """
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(list_tasks())}")
    return _TASKS[name](**kwargs)


for _cls in (LanguageModeling, Classification, Segmentation):
    register_task(_cls)


def _register_science_tasks() -> None:
    from .tasks_science import SCIENCE_TASKS  # forecasting, regression, pde (they subclass Task)

    for key, cls in SCIENCE_TASKS.items():
        register_task(cls, name=key)


_register_science_tasks()  # at the end: tasks_science imports Task from this module
