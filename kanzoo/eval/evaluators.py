"""One evaluator per task: run a model over a split and score it (registry + the built-in ones).

An evaluator is ``fn(model, dm, split, ctx) -> (metrics, picture_file_names)`` where ``ctx`` is an
:class:`EvalContext` (the typed :class:`~kanzoo.eval.config.EvalConfig`, the device, the folder
for pictures and the checkpoint's display name). A new task registers its evaluator with one line::

    register_evaluator("forecasting", evaluate_forecasting)
    # or, for a runner taking the usual keywords (device, batch_size, tag, progress, ...):
    register_evaluator("forecasting", lambda model, dm, split, ctx: run(model, dm, split, **ctx.common()))

Every evaluator refuses inputs that are not finite (NaN/inf pixels) with one line naming the
sample, the way training refuses a NaN loss, instead of scoring garbage.

Segmentation at the original resolution keeps memory proportional to one image: predictions are
upsampled once per image into a compact label map, counted in row chunks, HD95 runs on the
bounding box of the masks, and overlays are drawn at most ``overlay_max_side`` pixels wide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kanzoo._cli import UserInputError
from kanzoo.data.masks import IGNORE_INDEX
from kanzoo.eval.classification import classification_scores, plot_confusion_matrix
from kanzoo.eval.config import EvalConfig
from kanzoo.eval.forecasting import run_forecasting
from kanzoo.eval.lm import LMScoreAccumulator
from kanzoo.eval.report import save_overlay
from kanzoo.eval.science import run_pde, run_regression
from kanzoo.eval.segmentation import SegmentationAccumulator, confusion_matrices, logits_to_labels
from kanzoo.eval.ukan import UKAN_BATCH_SIZE, ukan_scores

__all__ = ["EvalContext", "get_evaluator", "list_evaluators", "register_evaluator"]

#: Pixels counted per chunk when scoring one large image (bounds the temporary int64 buffers).
CHUNK_PIXELS = 1 << 20


@dataclass
class EvalContext:
    """What an evaluator needs besides the model and the data.

    Args:
        cfg: The evaluation settings.
        device: Where the model runs.
        picture_dir: Folder for pictures (a temporary folder moved into ``output_dir`` at the end).
        tag: Display name of the checkpoint (used in titles and file names).
    """

    cfg: EvalConfig
    device: torch.device
    picture_dir: Path
    tag: str

    def common(self) -> dict[str, Any]:
        """The usual keyword arguments of a task runner: ``device``, ``batch_size``, ``tag``,
        ``progress``, ``max_samples`` and ``picture_dir`` (for one-line adapters)."""
        cfg = self.cfg
        return {
            "device": self.device, "batch_size": cfg.batch_size, "tag": self.tag, "progress": cfg.progress,
            "max_samples": cfg.max_samples, "picture_dir": self.picture_dir,
        }  # fmt: skip


Evaluator = Callable[[nn.Module, Any, str, EvalContext], tuple[dict[str, Any], list[str]]]
_EVALUATORS: dict[str, Evaluator] = {}


def register_evaluator(task: str, fn: Evaluator | None = None) -> Any:
    """Register ``fn`` as the evaluator of ``task`` (also usable as ``@register_evaluator(task)``).

    Raises:
        ValueError: ``task`` already has a different evaluator.
    """

    def deco(f: Evaluator) -> Evaluator:
        if task in _EVALUATORS and _EVALUATORS[task] is not f:
            raise ValueError(f"task {task!r} already has an evaluator ({_EVALUATORS[task].__name__})")
        _EVALUATORS[task] = f
        return f

    return deco if fn is None else deco(fn)


def list_evaluators() -> list[str]:
    """Tasks that have an evaluator, sorted."""
    return sorted(_EVALUATORS)


def get_evaluator(task: str) -> Evaluator:
    """The evaluator of ``task``; a task without one raises a one-line ``UserInputError``."""
    if task not in _EVALUATORS:
        raise UserInputError(f"no evaluator for task {task!r}; available: {', '.join(list_evaluators())}")
    return _EVALUATORS[task]


# ------------------------------------------------------------------------------------------ helpers
def model_logits(out: Any) -> torch.Tensor:
    """The logits tensor of a model output (a tensor, a mapping or an object with ``.logits``)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    logits = getattr(out, "logits", None)
    if logits is None:
        raise TypeError(f"model output {type(out).__name__} has no logits")
    return logits


def split_loader(dm: Any, split: str, batch_size: int) -> tuple[Any, torch.utils.data.DataLoader]:
    """``(dataset, DataLoader)`` of one split in dataset order; a missing or empty split is refused."""
    ds = {"train": dm.train, "val": dm.val, "test": dm.test}.get(split)
    if split not in ("train", "val", "test"):
        raise UserInputError(f"split must be 'val', 'test' or 'train', got {split!r}")
    if ds is None:
        raise UserInputError(
            f"the data has no {split!r} split (available: train, val{', test' if dm.test else ''})"
        )
    if len(ds) == 0:
        raise UserInputError(f"the {split!r} split is empty")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=dm.collate_fn)
    return ds, loader


def _base_dataset(dataset: Any, index: int) -> tuple[Any, int]:
    while isinstance(dataset, torch.utils.data.Subset):
        index = int(dataset.indices[index])
        dataset = dataset.dataset
    return dataset, index


def sample_name(dataset: Any, index: int, item_id: Any = None) -> str:
    """What to call sample ``index`` in a message: its image file when known, else its id."""
    base, i = _base_dataset(dataset, index)
    pairs = getattr(base, "pairs", None)
    if isinstance(pairs, list) and 0 <= i < len(pairs) and hasattr(pairs[i], "image"):
        return f"image {pairs[i].image}"
    return f"sample {item_id}" if item_id is not None else f"sample {index}"


def check_finite(x: torch.Tensor, dataset: Any, start: int, ids: Any = None) -> None:
    """Refuse a batch whose inputs hold NaN or inf, naming the first bad sample."""
    if not x.is_floating_point():
        return
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    bad = (~finite).reshape(x.shape[0], -1)
    j = int(bad.any(1).nonzero()[0, 0])
    item_id = ids[j] if isinstance(ids, (list, tuple)) else None
    raise UserInputError(
        f"{sample_name(dataset, start + j, item_id)}: the model input holds {int(bad[j].sum())} NaN or "
        "infinite value(s); evaluation needs finite pixels (fix or remove the file)"
    )


def _original_mask(dataset: Any, index: int) -> np.ndarray | None:
    """The full-resolution mask of item ``index`` when the dataset can provide it."""
    dataset, index = _base_dataset(dataset, index)
    for attr in ("original_mask", "load_original_mask"):
        fn = getattr(dataset, attr, None)
        if callable(fn):
            m = fn(index)
            return None if m is None else np.asarray(m.cpu() if isinstance(m, torch.Tensor) else m)
    return None


def _compact(labels: np.ndarray) -> np.ndarray:
    """The same labels in the smallest integer type that holds them (uint8 for class ids and 255)."""
    if labels.dtype == np.uint8 or not labels.size:
        return labels
    lo, hi = int(labels.min()), int(labels.max())
    if lo >= 0 and hi <= 255:
        return labels.astype(np.uint8)
    if -(2**15) <= lo and hi < 2**15:
        return labels.astype(np.int16)
    return labels


def upsampled_labels(logits: torch.Tensor, size: tuple[int, int], *, threshold: float) -> np.ndarray:
    """Labels of ``logits (K, h, w)`` bilinearly resized to ``size``, as a compact ``(H, W)`` array.

    The resize is one ``F.interpolate`` (so results equal resizing the whole batch); labels are
    taken in row chunks, so besides the resized logits only ``H*W`` bytes are held.
    """
    up = F.interpolate(logits[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]
    k, height, width = up.shape
    out = np.empty((height, width), dtype=np.uint8 if max(k, 2) <= 256 else np.int64)
    rows = max(1, CHUNK_PIXELS // max(width * k, 1))
    for r0 in range(0, height, rows):
        out[r0 : r0 + rows] = logits_to_labels(up[None, :, r0 : r0 + rows], threshold=threshold)[0].numpy()
    del up
    return out


def _add_large_image(acc: SegmentationAccumulator, pred: np.ndarray, target: np.ndarray, name: str):
    """Add one image to ``acc`` counting its confusion matrix in row chunks (bounded buffers)."""
    if pred.shape != target.shape:
        raise ValueError(f"mask of {name}: prediction shape {pred.shape} != target shape {target.shape}")
    if pred.ndim != 2 or pred.size <= CHUNK_PIXELS:
        return acc.update(pred, target, name=name)
    k = acc.num_classes
    cm = torch.zeros(k, k, dtype=torch.long)
    rows = max(1, CHUNK_PIXELS // pred.shape[1])
    for r0 in range(0, pred.shape[0], rows):
        cm += confusion_matrices(
            torch.from_numpy(np.ascontiguousarray(pred[r0 : r0 + rows]))[None],
            torch.from_numpy(np.ascontiguousarray(target[r0 : r0 + rows]))[None],
            num_classes=k, ignore_index=acc.ignore_index, names=[f"mask of {name}"],
        )[0]  # fmt: skip
    hd = acc.image_hd95(pred, target) if acc.compute_hd95 else float("nan")
    return acc.add_image(cm, hd=hd, name=name, ignored=int(target.size - int(cm.sum())))


def _nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = np.minimum(
        ((np.arange(size[0]) + 0.5) * arr.shape[0] / size[0]).astype(np.int64), arr.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(size[1]) + 0.5) * arr.shape[1] / size[1]).astype(np.int64), arr.shape[1] - 1
    )
    return arr[rows[:, None], cols[None, :]]


def overlay_size(shape: tuple[int, ...], max_side: int) -> tuple[int, int]:
    """``(h, w)`` of an overlay panel: the mask's size scaled down so the longer side <= ``max_side``."""
    h, w = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _denormalize(x: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    x = x.detach().float().cpu()
    c = x.shape[0]
    if mean is not None and std is not None:
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)[:c]
        s = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)[:c]
        x = x * s + m
    if c == 1:
        x = x.expand(3, -1, -1)
    elif c != 3:
        x = x[:3] if c > 3 else x[:1].expand(3, -1, -1)
    return x.clamp(0, 1)


def _overlay_image(x: torch.Tensor, info: Mapping[str, Any], size: tuple[int, int]) -> np.ndarray:
    img = _denormalize(x, info.get("mean"), info.get("std"))
    if tuple(img.shape[-2:]) != tuple(size):
        img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
    return img.permute(1, 2, 0).numpy()


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


class _Timer:
    """Forward-only throughput after one untimed warm-up pass (compilation stays out of it)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self.units, self.warm = device, 0.0, 0, False

    def run(self, fn: Callable[[], Any], units: int) -> Any:
        with torch.no_grad():
            if not self.warm:
                fn()
                self.warm = True
            self._sync()
            t0 = time.perf_counter()
            out = fn()
            self._sync()
        self.seconds += time.perf_counter() - t0
        self.units += units
        return out

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def rate(self) -> float:
        return self.units / self.seconds if self.seconds > 0 else float("nan")


# ------------------------------------------------------------------------------------ segmentation
@register_evaluator("segmentation")
def evaluate_segmentation(model: nn.Module, dm: Any, split: str, ctx: EvalContext):
    """IoU/Dice/HD95/... per image (original resolution when the data provides it) and overlays."""
    cfg = ctx.cfg
    ds, loader = split_loader(dm, split, UKAN_BATCH_SIZE if cfg.protocol == "ukan" else cfg.batch_size)
    info = dm.info
    data_classes = int(info.get("num_classes", 2))
    ignore_index = info.get("ignore_index", IGNORE_INDEX)
    acc, k_out, num_classes = None, None, None
    ukan_p, ukan_t, pictures = [], [], []
    timer = _Timer(ctx.device)
    used_original, index = False, 0
    from tqdm.auto import tqdm

    for batch in tqdm(loader, desc=f"eval {ctx.tag}", disable=not cfg.progress, unit="batch"):
        x = batch["pixel_values"]
        ids = batch.get("id") or [f"{split}[{index + j}]" for j in range(x.shape[0])]
        check_finite(x, ds, index, ids)
        x = x.to(ctx.device)
        logits = model_logits(timer.run(lambda x=x: model(x), x.shape[0])).float()
        if logits.ndim != 4 or logits.shape[0] != x.shape[0] or logits.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                "segmentation model must return (B, K, H, W) logits at the input size "
                f"{tuple(x.shape[-2:])}, got {tuple(logits.shape)}"
            )
        k_out = logits.shape[1]
        num_classes = 2 if k_out == 1 else k_out
        if num_classes != data_classes:
            raise UserInputError(
                f"the model predicts {num_classes} classes ({k_out} output channel(s)) but the data has "
                f"{data_classes}; evaluate a checkpoint trained for this data"
            )
        if acc is None:
            acc = SegmentationAccumulator(
                num_classes=num_classes, ignore_index=ignore_index, compute_hd95=cfg.compute_hd95,
                hd95_convention=cfg.hd95_convention,
            )  # fmt: skip
        logits = logits.cpu()
        labels = logits_to_labels(logits, threshold=cfg.threshold)
        for j in range(x.shape[0]):
            item_id = str(ids[j])
            target, pred = batch["mask"][j].numpy(), labels[j].numpy()
            orig = _original_mask(ds, index) if cfg.resolution == "original" else None
            if orig is not None and orig.shape != target.shape:
                if orig.ndim != 2:
                    raise ValueError(f"mask of {item_id}: expected a 2-D label map, got shape {orig.shape}")
                target = _compact(orig)
                del orig
                pred = upsampled_labels(logits[j], target.shape, threshold=cfg.threshold)
                used_original = True
            iou, _, _ = _add_large_image(acc, pred, target, item_id)
            if cfg.protocol == "ukan":
                ukan_p.append(labels[j].numpy().astype(np.uint8))
                ukan_t.append(batch["mask"][j].numpy().astype(np.uint8))
            if len(pictures) < cfg.num_overlays:
                size = overlay_size(pred.shape, cfg.overlay_max_side)
                path = ctx.picture_dir / f"overlay_{_slug(ctx.tag)}_{len(pictures):02d}_{_slug(item_id)}.png"
                save_overlay(
                    _overlay_image(x[j], info, size), _nearest(target, size), _nearest(pred, size), path,
                    title=f"{ctx.tag} | {item_id} | IoU {iou:.3f}", num_classes=num_classes,
                )  # fmt: skip
                pictures.append(path.name)
            index += 1
            del target, pred
            if cfg.max_samples is not None and index >= cfg.max_samples:
                break
        if cfg.max_samples is not None and index >= cfg.max_samples:
            break
    metrics = acc.result()
    if cfg.protocol == "ukan":
        if num_classes != 2 or k_out != 1:
            raise UserInputError("protocol=ukan is defined for binary models with one sigmoid output channel")
        u = ukan_scores(ukan_p, ukan_t, batch_size=UKAN_BATCH_SIZE, compute_hd95=cfg.compute_hd95)
        metrics.update(ukan_iou=u["iou"], ukan_dice=u["dice"], ukan_hd95=u["hd95_ukan"])
    metrics["num_samples"] = index
    metrics["samples_per_s"] = timer.rate()
    metrics["evaluated_resolution"] = "original" if used_original else "train"
    return metrics, pictures


# ---------------------------------------------------------------------------------- classification
@register_evaluator("classification")
def evaluate_classification(model: nn.Module, dm: Any, split: str, ctx: EvalContext):
    """Top-1/top-5, per-class accuracy and a confusion matrix picture."""
    cfg = ctx.cfg
    ds, loader = split_loader(dm, split, cfg.batch_size)
    from tqdm.auto import tqdm

    timer = _Timer(ctx.device)
    all_logits, all_labels, seen = [], [], 0
    n_data = dm.info.get("num_classes")
    for batch in tqdm(loader, desc=f"eval {ctx.tag}", disable=not cfg.progress, unit="batch"):
        x = batch["pixel_values"]
        check_finite(x, ds, seen, batch.get("id"))
        x = x.to(ctx.device)
        logits = model_logits(timer.run(lambda x=x: model(x), x.shape[0])).float()
        if logits.ndim != 2:
            raise ValueError(
                f"classification model must return (B, num_classes) logits, got {tuple(logits.shape)}"
            )
        labels = batch["labels"].cpu()
        if (
            n_data is not None
            and labels.numel()
            and (int(labels.min()) < 0 or int(labels.max()) >= int(n_data))
        ):
            j = int(((labels < 0) | (labels >= int(n_data))).nonzero()[0, 0])
            raise UserInputError(
                f"{sample_name(ds, seen + j)}: label {int(labels[j])} is outside 0..{int(n_data) - 1}"
            )
        take = labels.shape[0] if cfg.max_samples is None else min(labels.shape[0], cfg.max_samples - seen)
        all_logits.append(logits[:take].cpu())
        all_labels.append(labels[:take])
        seen += take
        if cfg.max_samples is not None and seen >= cfg.max_samples:
            break
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    if n_data is not None and logits.shape[1] != int(n_data):
        raise UserInputError(
            f"the model predicts {logits.shape[1]} classes but the data has {n_data}; "
            "evaluate a checkpoint trained for this data"
        )
    metrics = classification_scores(logits, labels)
    path = ctx.picture_dir / f"confusion_{_slug(ctx.tag)}.png"
    plot_confusion_matrix(metrics["confusion_matrix"], path, class_names=dm.info.get("class_names"),
                          title=f"{ctx.tag} ({split})")  # fmt: skip
    metrics["num_samples"] = seen
    metrics["samples_per_s"] = timer.rate()
    return metrics, [path.name]


# ------------------------------------------------------------------------------------------- lm
@register_evaluator("lm")
def evaluate_lm(model: nn.Module, dm: Any, split: str, ctx: EvalContext):
    """Mean token NLL, perplexity and bits per byte over every block of the split."""
    cfg = ctx.cfg
    _, loader = split_loader(dm, split, cfg.batch_size)
    from tqdm.auto import tqdm

    vocab = dm.info.get("vocab_size")
    acc = LMScoreAccumulator(tokenizer=dm.info.get("tokenizer"))
    timer = _Timer(ctx.device)
    seen = 0
    for batch in tqdm(loader, desc=f"eval {ctx.tag}", disable=not cfg.progress, unit="batch"):
        ids = batch["input_ids"]
        if cfg.max_samples is not None:
            ids = ids[: cfg.max_samples - seen]
        ids = ids.to(ctx.device)
        logits = model_logits(timer.run(lambda ids=ids: model(input_ids=ids), ids.numel())).float()
        if vocab is not None and logits.shape[-1] < int(vocab):
            raise UserInputError(
                f"the model's vocabulary ({logits.shape[-1]}) is smaller than the data tokenizer's "
                f"({vocab}); evaluate with the tokenizer the checkpoint was trained with"
            )
        acc.update(logits.cpu(), ids.cpu())
        seen += ids.shape[0]
        if cfg.max_samples is not None and seen >= cfg.max_samples:
            break
    metrics = acc.result()
    metrics["num_samples"] = seen
    metrics["tokens_per_s"] = timer.rate()
    return metrics, []


# ------------------------------------------------ forecasting, regression, pde (runners in their modules)
for _task, _run in (("forecasting", run_forecasting), ("regression", run_regression), ("pde", run_pde)):
    register_evaluator(_task, lambda model, dm, split, ctx, _run=_run: _run(model, dm, split, **ctx.common()))
