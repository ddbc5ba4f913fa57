"""Evaluate checkpoints on data: the logic behind ``evaluate.py`` (no Hydra here).

``evaluate(checkpoint, data, ...)`` loads the model (a local directory, a shipped name or a hub id),
builds or takes the data, checks that the two fit (task, classes, vocabulary), runs the model with a
progress bar, scores it with :mod:`kanzoo.eval` metrics and writes ``metrics.json``, ``report.md``
and pictures (segmentation overlays or a confusion matrix) into ``output_dir``. Everything is first
written to a temporary folder beside ``output_dir`` and moved in at the end, so a failure leaves
nothing half-written. ``compare=`` evaluates a second checkpoint on the same data and puts the two
side by side (metrics, parameter counts, throughput).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kanzoo.eval.classification import classification_scores, plot_confusion_matrix
from kanzoo.eval.forecasting import run_forecasting
from kanzoo.eval.lm import LMScoreAccumulator
from kanzoo.eval.report import (
    atomic_output_dir,
    format_table,
    metric_rows,
    render_report,
    save_overlay,
    write_json,
)
from kanzoo.eval.science import run_pde, run_regression
from kanzoo.eval.segmentation import SegmentationAccumulator, logits_to_labels
from kanzoo.eval.ukan import UKAN_BATCH_SIZE, ukan_scores

__all__ = [
    "PROTOCOLS",
    "RESOLUTIONS",
    "default_data",
    "evaluate",
    "load_checkpoint",
    "print_summary",
    "resolve_data",
]

PROTOCOLS = ("per_image", "ukan")
RESOLUTIONS = ("original", "train")
_FAMILY_TASKS = {
    "kan_gpt": "lm",
    "gpt": "lm",
    "conv_kan": "classification",
    "cnn": "classification",
    "kan_vit": "classification",
    "vit": "classification",
    "kan_unet": "segmentation",
    "unet": "segmentation",
}
# Runners of the forecasting and scientific tasks: (model, dm, split, **common) -> (metrics, pictures)
_TASK_RUNNERS = {"forecasting": run_forecasting, "regression": run_regression, "pde": run_pde}


# ------------------------------------------------------------------------------------------- loading
def load_checkpoint(checkpoint: Any) -> tuple[nn.Module, str, str | None]:
    """Load ``checkpoint`` and work out its task.

    Args:
        checkpoint: a directory written by ``save_pretrained``, a shipped checkpoint name, a hub id,
            or an already built ``nn.Module`` (for tests and notebooks).

    Returns:
        ``(model, display_name, task)``; task is ``"lm"``, ``"classification"``, ``"segmentation"``
        or None when it cannot be told.
    """
    if isinstance(checkpoint, nn.Module):
        return checkpoint, type(checkpoint).__name__, _task_from_model(checkpoint)
    from kanzoo.models import from_pretrained

    model = from_pretrained(str(checkpoint))
    path = Path(str(checkpoint)).expanduser()
    name = str(checkpoint)
    task = None
    if path.is_dir():
        # runs/kan_unet/final -> "kan_unet/final": the run folder tells checkpoints apart
        name = f"{path.resolve().parent.name}/{path.name}" if path.name in ("final", "best") else path.name
        task = _task_from_dir(path)
    return model, name, task or _task_from_model(model)


def _task_from_dir(path: Path) -> str | None:
    for candidate in (path / "train_summary.json", path.parent / "train_summary.json"):
        if candidate.is_file():
            try:
                task = json.loads(candidate.read_text()).get("task")
            except (OSError, ValueError):
                continue
            if task:
                return str(task)
    cfg = path / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        key = data.get("kanzoo_model") or data.get("model_type")
        if key in _FAMILY_TASKS:
            return _FAMILY_TASKS[key]
    return None


def _task_from_model(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    task = getattr(cfg, "task", None)
    if isinstance(task, str):
        return task
    key = getattr(model, "kanzoo_model", None) or getattr(cfg, "kanzoo_model", None)
    key = key or getattr(cfg, "model_type", None)
    if key in _FAMILY_TASKS:
        return _FAMILY_TASKS[key]
    if isinstance(key, str):
        from kanzoo.models import list_models, model_info

        names = list_models(family=key)
        if names:
            return model_info(names[0])["task"]
    return None


def default_data(checkpoint: Any) -> Any:
    """The data a checkpoint was trained on: ``train_summary.json``'s data config, else the
    registry's ``default_data`` of its model name; None when neither is known."""
    if isinstance(checkpoint, nn.Module):
        return None
    path = Path(str(checkpoint)).expanduser()
    if not path.is_dir():
        from kanzoo.models import pretrained_dir

        path = pretrained_dir() / str(checkpoint)  # a shipped checkpoint name
    for candidate in (path / "train_summary.json", path.parent / "train_summary.json"):
        if not candidate.is_file():
            continue
        try:
            summary = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        data = (summary.get("config") or {}).get("data")
        if isinstance(data, Mapping) and data.get("name"):
            return dict(data)
        if isinstance(data, str):
            return data
        model_name = summary.get("model")
        if isinstance(model_name, str):
            from kanzoo.models import is_model, model_info

            if is_model(model_name) and model_info(model_name).get("default_data"):
                return model_info(model_name)["default_data"]
    return None


def resolve_data(data: Any, *, protocol: str = "per_image") -> tuple[Any, str]:
    """Build a DataModule from a name, a config mapping (``{"name": ..., **kwargs}``) or pass one through.

    Benchmark names (``busi``, ``glas``, ``cvc_clinicdb``, ``kvasir_seg``, ``isic2018``) go through
    :func:`kanzoo.eval.benchmarks.build_benchmark`, which checks the folder and applies the split.
    """
    from kanzoo.data import DataModule, build_data

    if isinstance(data, DataModule):
        return data, str(data.info.get("name", "data"))
    if isinstance(data, str):
        name, kwargs = data, {}
    elif isinstance(data, Mapping):
        kwargs = {k: v for k, v in dict(data).items() if not str(k).startswith("_")}
        name = kwargs.pop("name", None)
        if name is None:
            raise ValueError(
                f"data config needs a 'name' (a dataset or benchmark), got keys {sorted(kwargs)}"
            )
    else:
        raise ValueError(f"data must be a name, a config mapping or a DataModule, got {type(data).__name__}")
    from kanzoo.eval.benchmarks import BENCHMARKS, build_benchmark

    if str(name) in BENCHMARKS:
        return build_benchmark(str(name), protocol=protocol, **kwargs), str(name)
    if protocol == "ukan":
        raise ValueError(
            f"protocol=ukan applies to the segmentation benchmarks ({', '.join(BENCHMARKS)}), not to {name!r}"
        )
    return build_data(str(name), **kwargs), str(name)


# ------------------------------------------------------------------------------------------- helpers
def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    logits = getattr(out, "logits", None)
    if logits is None:
        raise TypeError(f"model output {type(out).__name__} has no logits")
    return logits


def _num_params(model: nn.Module) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _loader(dm: Any, split: str, batch_size: int) -> Any:
    ds = {"train": dm.train, "val": dm.val, "test": dm.test}.get(split)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'val', 'test' or 'train', got {split!r}")
    if ds is None:
        raise ValueError(
            f"the data has no {split!r} split (available: train, val{', test' if dm.test else ''})"
        )
    if len(ds) == 0:
        raise ValueError(f"the {split!r} split is empty")
    return ds, torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=dm.collate_fn)


def _original_mask(dataset: Any, index: int) -> np.ndarray | None:
    """The full-resolution mask of item ``index`` when the dataset can provide it."""
    while isinstance(dataset, torch.utils.data.Subset):
        index = int(dataset.indices[index])
        dataset = dataset.dataset
    for attr in ("original_mask", "load_original_mask"):
        fn = getattr(dataset, attr, None)
        if callable(fn):
            m = fn(index)
            return None if m is None else np.asarray(m.cpu() if isinstance(m, torch.Tensor) else m)
    return None


def _denormalize(x: torch.Tensor, mean: Any, std: Any) -> np.ndarray:
    x = x.detach().float().cpu()
    c = x.shape[0]
    if mean is not None and std is not None:
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)[:c]
        s = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)[:c]
        x = x * s + m
    img = x.permute(1, 2, 0).numpy()
    if c == 1:
        img = img[..., 0]
    elif c != 3:
        img = img[..., :3] if c > 3 else np.repeat(img[..., :1], 3, axis=-1)
    return np.clip(img, 0, 1)


def _warm_up(model: nn.Module, x: torch.Tensor, device: torch.device, *, lm: bool = False) -> None:
    """One untimed forward pass, so compilation and lazy initialisation stay out of the throughput."""
    with torch.no_grad():
        model(input_ids=x) if lm else model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


# ------------------------------------------------------------------------------------------- tasks
def _run_segmentation(
    model, dm, split, *, device, batch_size, threshold, resolution, protocol, hd95_convention, compute_hd95,
    num_overlays, picture_dir, tag, progress, max_samples,
):  # fmt: skip
    ds, loader = _loader(dm, split, UKAN_BATCH_SIZE if protocol == "ukan" else batch_size)
    info = dm.info
    data_classes = int(info.get("num_classes", 2))
    ignore_index = info.get("ignore_index")
    acc = None
    ukan_p, ukan_t = [], []
    pictures, fwd_time, timed, seen, index = [], 0.0, 0, 0, 0
    used_original = False
    from tqdm.auto import tqdm

    bar = tqdm(loader, desc=f"eval {tag}", disable=not progress, unit="batch")
    for bi, batch in enumerate(bar):
        x = batch["pixel_values"].to(device)
        masks = batch["mask"]
        ids = batch.get("id") or [f"{split}[{index + j}]" for j in range(x.shape[0])]
        if bi == 0:
            _warm_up(model, x, device)
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = _logits(model(x)).float()
        if device.type == "cuda":
            torch.cuda.synchronize()
        fwd_time += time.perf_counter() - t0
        timed += x.shape[0]
        if logits.ndim != 4 or logits.shape[0] != x.shape[0] or logits.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                "segmentation model must return (B, K, H, W) logits at the input size "
                f"{tuple(x.shape[-2:])}, got {tuple(logits.shape)}"
            )
        k_out = logits.shape[1]
        num_classes = 2 if k_out == 1 else k_out
        if num_classes != data_classes:
            raise ValueError(
                f"the model predicts {num_classes} classes ({k_out} output channel(s)) but the data has "
                f"{data_classes}; evaluate a checkpoint trained for this data"
            )
        if acc is None:
            acc = SegmentationAccumulator(
                num_classes=num_classes, ignore_index=ignore_index, compute_hd95=compute_hd95,
                hd95_convention=hd95_convention,
            )  # fmt: skip
        labels = logits_to_labels(logits, threshold=threshold).cpu()
        for j in range(x.shape[0]):
            item_id = str(ids[j])
            target = masks[j].numpy()
            pred = labels[j].numpy()
            orig = _original_mask(ds, index) if resolution == "original" else None
            if orig is not None and orig.shape != target.shape:
                if orig.ndim != 2:
                    raise ValueError(f"mask of {item_id}: expected a 2-D label map, got shape {orig.shape}")
                up = F.interpolate(logits[j : j + 1], size=orig.shape, mode="bilinear", align_corners=False)
                pred, target, used_original = (
                    logits_to_labels(up, threshold=threshold)[0].cpu().numpy(),
                    orig,
                    True,
                )
            iou, _, _ = acc.update(pred, target, name=f"mask of {item_id}")
            if protocol == "ukan":
                ukan_p.append(labels[j].numpy().astype(np.uint8))
                ukan_t.append(masks[j].numpy().astype(np.uint8))
            if len(pictures) < num_overlays:
                img = _denormalize(x[j], info.get("mean"), info.get("std"))
                if img.shape[:2] != pred.shape:
                    t_img = torch.from_numpy(np.ascontiguousarray(img)).float()
                    t_img = t_img[None, None] if t_img.ndim == 2 else t_img.permute(2, 0, 1)[None]
                    t_img = F.interpolate(t_img, size=pred.shape, mode="bilinear", align_corners=False)[0]
                    img = t_img[0].numpy() if t_img.shape[0] == 1 else t_img.permute(1, 2, 0).numpy()
                path = picture_dir / f"overlay_{_slug(tag)}_{len(pictures):02d}_{_slug(item_id)}.png"
                save_overlay(img, target, pred, path, title=f"{tag} | {item_id} | IoU {iou:.3f}",
                             num_classes=num_classes)  # fmt: skip
                pictures.append(path.name)
            index += 1
            seen += 1
        if max_samples is not None and seen >= max_samples:
            break
    metrics = acc.result()
    if protocol == "ukan":
        if num_classes != 2 or k_out != 1:
            raise ValueError("protocol=ukan is defined for binary models with one sigmoid output channel")
        u = ukan_scores(ukan_p, ukan_t, batch_size=UKAN_BATCH_SIZE, compute_hd95=compute_hd95)
        metrics.update(ukan_iou=u["iou"], ukan_dice=u["dice"], ukan_hd95=u["hd95_ukan"])
    metrics["num_samples"] = seen
    metrics["samples_per_s"] = timed / fwd_time if fwd_time > 0 else float("nan")
    metrics["evaluated_resolution"] = "original" if used_original else "train"
    return metrics, pictures


def _run_classification(model, dm, split, *, device, batch_size, picture_dir, tag, progress, max_samples):
    _, loader = _loader(dm, split, batch_size)
    from tqdm.auto import tqdm

    all_logits, all_labels, fwd_time, timed = [], [], 0.0, 0
    for bi, batch in enumerate(tqdm(loader, desc=f"eval {tag}", disable=not progress, unit="batch")):
        x = batch["pixel_values"].to(device)
        if bi == 0:
            _warm_up(model, x, device)
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = _logits(model(x)).float()
        if device.type == "cuda":
            torch.cuda.synchronize()
        fwd_time += time.perf_counter() - t0
        timed += x.shape[0]
        if logits.ndim != 2:
            raise ValueError(
                f"classification model must return (B, num_classes) logits, got {tuple(logits.shape)}"
            )
        all_logits.append(logits.cpu())
        all_labels.append(batch["labels"].cpu())
        if max_samples is not None and sum(len(t) for t in all_labels) >= max_samples:
            break
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    n_data = dm.info.get("num_classes")
    if n_data is not None and logits.shape[1] != int(n_data):
        raise ValueError(
            f"the model predicts {logits.shape[1]} classes but the data has {n_data}; "
            "evaluate a checkpoint trained for this data"
        )
    metrics = classification_scores(logits, labels)
    path = picture_dir / f"confusion_{_slug(tag)}.png"
    plot_confusion_matrix(metrics["confusion_matrix"], path, class_names=dm.info.get("class_names"),
                          title=f"{tag} ({split})")  # fmt: skip
    metrics["samples_per_s"] = timed / fwd_time if fwd_time > 0 else float("nan")
    return metrics, [path.name]


def _run_lm(model, dm, split, *, device, batch_size, tag, progress, max_samples):
    _, loader = _loader(dm, split, batch_size)
    from tqdm.auto import tqdm

    vocab = dm.info.get("vocab_size")
    acc = LMScoreAccumulator(tokenizer=dm.info.get("tokenizer"))
    fwd_time, timed, seen = 0.0, 0, 0
    for bi, batch in enumerate(tqdm(loader, desc=f"eval {tag}", disable=not progress, unit="batch")):
        ids = batch["input_ids"].to(device)
        if bi == 0:
            _warm_up(model, ids, device, lm=True)
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = _logits(model(input_ids=ids)).float()
        if device.type == "cuda":
            torch.cuda.synchronize()
        fwd_time += time.perf_counter() - t0
        timed += ids.numel()
        if vocab is not None and logits.shape[-1] < int(vocab):
            raise ValueError(
                f"the model's vocabulary ({logits.shape[-1]}) is smaller than the data tokenizer's "
                f"({vocab}); evaluate with the tokenizer the checkpoint was trained with"
            )
        acc.update(logits.cpu(), ids.cpu())
        seen += ids.shape[0]
        if max_samples is not None and seen >= max_samples:
            break
    metrics = acc.result()
    metrics["num_samples"] = seen
    metrics["tokens_per_s"] = timed / fwd_time if fwd_time > 0 else float("nan")
    return metrics, []


# ------------------------------------------------------------------------------------------- entry
def evaluate(
    checkpoint: Any,
    data: Any,
    *,
    split: str = "val",
    output_dir: str | Path | None = None,
    protocol: str = "per_image",
    threshold: float = 0.5,
    resolution: str = "original",
    compare: Any = None,
    batch_size: int = 8,
    num_overlays: int = 4,
    device: str = "auto",
    hd95_convention: str = "pooled",
    compute_hd95: bool = True,
    max_samples: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate one checkpoint (or two side by side) and write the report.

    Args:
        checkpoint: directory, shipped name, hub id, or an ``nn.Module``.
        data: dataset/benchmark name, a config mapping ``{"name": ..., **kwargs}`` or a DataModule;
            None = the data recorded in the checkpoint's ``train_summary.json``.
        split: ``"val"`` or ``"test"`` (``"train"`` also works).
        output_dir: where ``metrics.json``, ``report.md`` and pictures go
            (default ``runs/eval/<checkpoint>_<data>_<split>``).
        protocol: ``"per_image"`` (default) or ``"ukan"`` (U-KAN paper: its split, training
            resolution, sigmoid > 0.5, batch-pooled IoU; binary segmentation benchmarks only).
        threshold: sigmoid probability threshold of binary segmentation models.
        resolution: ``"original"`` (predictions resized back to each image's original size when the
            data can provide the original mask) or ``"train"`` (the model's input size).
        compare: a second checkpoint evaluated on the same data and reported beside the first.
        batch_size: images/blocks per forward pass (the U-KAN protocol always uses 8).
        num_overlays: segmentation overlay pictures per checkpoint.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        hd95_convention: ``"pooled"`` (medpy) or ``"max"`` (MONAI).
        compute_hd95: skip HD95 (faster) when False.
        max_samples: stop after this many samples (quick looks; the report says so).
        progress: show a tqdm progress bar.

    Returns:
        The content of ``metrics.json`` plus ``output_dir`` and ``table`` (the printed table).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    if protocol == "ukan":
        resolution, threshold = "train", 0.5
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    dev = _device(device)
    loaded = [load_checkpoint(checkpoint)] + ([load_checkpoint(compare)] if compare is not None else [])
    if data is None:
        data = default_data(checkpoint)
        if data is None:
            raise ValueError(
                f"no data given and none recorded with checkpoint {checkpoint!r}; pass data=<name>"
            )
    dm, data_name = resolve_data(data, protocol=protocol)
    for _, name, task in loaded:
        if task is not None and task != dm.task:
            raise ValueError(
                f"checkpoint {name!r} is a {task} model but data {data_name!r} is a {dm.task} dataset; "
                f"pick a {task} dataset or a {dm.task} checkpoint"
            )
    if protocol == "ukan" and dm.task != "segmentation":
        raise ValueError("protocol=ukan is a segmentation protocol")
    if output_dir is None:
        output_dir = Path("runs") / "eval" / _slug(f"{loaded[0][1]}_{data_name}_{split}")
    results = []
    with atomic_output_dir(output_dir) as tmp:
        pictures: list[str] = []
        for model, name, _ in loaded:
            model = model.to(dev).eval()
            common = dict(
                device=dev, batch_size=batch_size, tag=name, progress=progress, max_samples=max_samples
            )
            if dm.task == "segmentation":
                metrics, pics = _run_segmentation(
                    model, dm, split, threshold=threshold, resolution=resolution, protocol=protocol,
                    hd95_convention=hd95_convention, compute_hd95=compute_hd95, num_overlays=num_overlays,
                    picture_dir=tmp, **common,
                )  # fmt: skip
            elif dm.task == "classification":
                metrics, pics = _run_classification(model, dm, split, picture_dir=tmp, **common)
            elif dm.task in _TASK_RUNNERS:
                metrics, pics = _TASK_RUNNERS[dm.task](model, dm, split, picture_dir=tmp, **common)
            else:
                metrics, pics = _run_lm(model, dm, split, **common)
            metrics["params"] = _num_params(model)
            pictures += pics
            source = str(checkpoint if not results else compare)
            results.append({"checkpoint": source, "checkpoint_name": name, "metrics": metrics})
        if len({r["checkpoint_name"] for r in results}) < len(results):
            results[1]["checkpoint_name"] += " (compare)"
        meta = {
            "data": data_name,
            "split": split,
            "task": dm.task,
            "protocol": protocol,
            "resolution": results[0]["metrics"].get("evaluated_resolution", resolution)
            if dm.task == "segmentation"
            else "-",
            "device": str(dev),
        }
        if dm.task == "segmentation":
            meta["threshold"] = threshold
            meta["hd95_convention"] = hd95_convention
        if max_samples is not None:
            meta["max_samples"] = max_samples
        cols, rows = metric_rows(results, dm.task)
        table = format_table(cols, rows)
        payload = {**meta, "results": results}
        write_json(payload, tmp / "metrics.json")
        (tmp / "report.md").write_text(render_report(results, task=dm.task, meta=meta, pictures=pictures))
    out = Path(output_dir).expanduser().resolve()
    return {**payload, "table": table, "output_dir": str(out)}


def print_summary(result: Mapping[str, Any]) -> None:
    """Print the header, the metric table and where the files went."""
    head = ", ".join(
        f"{k}={result[k]}" for k in ("data", "split", "task", "protocol", "resolution") if k in result
    )
    print(head)
    print(result["table"])
    print(f"wrote {Path(result['output_dir']) / 'metrics.json'} and report.md")
