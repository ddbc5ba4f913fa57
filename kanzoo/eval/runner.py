"""Evaluate checkpoints on data: the logic behind ``evaluate.py`` (no Hydra here).

``evaluate(checkpoint, data, ...)`` loads the model (a local directory, a shipped name or a hub id),
builds the data prepared as the checkpoint was trained (:mod:`kanzoo.eval.sources`), checks that the
two fit (task, classes, vocabulary), runs the task's evaluator (:mod:`kanzoo.eval.evaluators`) and
writes ``metrics.json``, ``report.md`` and pictures (segmentation overlays or a confusion matrix)
into ``output_dir``. Everything is first written to a temporary folder beside ``output_dir`` and
moved in at the end, so a failure leaves nothing half-written. ``compare=`` evaluates a second
checkpoint on the same data and puts the two side by side (metrics, parameter counts, throughput).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from kanzoo._cli import UserInputError
from kanzoo.eval.config import PROTOCOLS, RESOLUTIONS, EvalConfig, check_device
from kanzoo.eval.evaluators import EvalContext, _slug, get_evaluator
from kanzoo.eval.report import atomic_output_dir, format_table, metric_rows, render_report, write_json
from kanzoo.eval.sources import default_data, load_checkpoint, resolve_data, resolve_eval_data

__all__ = [
    "PROTOCOLS",
    "RESOLUTIONS",
    "default_data",
    "evaluate",
    "evaluate_config",
    "load_checkpoint",
    "print_summary",
    "resolve_data",
]


def _num_params(model: torch.nn.Module) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def evaluate(
    checkpoint: Any,
    data: Any = None,
    *,
    split: str = "val",
    output_dir: str | Path | None = None,
    protocol: str = "per_image",
    threshold: float = 0.5,
    resolution: str = "original",
    compare: Any = None,
    batch_size: int = 8,
    num_overlays: int = 4,
    overlay_max_side: int = 1024,
    device: str = "auto",
    hd95_convention: str = "pooled",
    compute_hd95: bool = True,
    max_samples: int | None = None,
    progress: bool = True,
    data_defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one checkpoint (or two side by side) and write the report.

    Args:
        checkpoint: directory, shipped name, hub id, or an ``nn.Module``.
        data: dataset/benchmark name, a config mapping ``{"name": ..., **settings}`` (every setting
            given counts as chosen by the user) or a DataModule; None = the data recorded with the
            checkpoint. Preprocessing fields not given (input size, channels, normalization, mask
            decoding, tokenizer, block size) are taken from the checkpoint's recorded training data.
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
        overlay_max_side: longer side of overlay pictures, in pixels (scores use every pixel).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:<i>"``, ``"mps"``.
        hd95_convention: ``"pooled"`` (medpy) or ``"max"`` (MONAI).
        compute_hd95: skip HD95 (faster) when False.
        max_samples: stop after this many samples (quick looks; the report says so).
        progress: show a tqdm progress bar.
        data_defaults: defaults of the data config (e.g. the rest of its YAML group) that the
            checkpoint's recorded preprocessing may override; ``data``'s own settings win over both.

    Returns:
        The content of ``metrics.json`` plus ``output_dir`` and ``table`` (the printed table).

    Raises:
        UserInputError: a bad setting, data that does not fit the checkpoint, or inputs that are
            not finite (one line naming the setting, file or sample).
    """
    cfg = EvalConfig(
        split=split, output_dir=None if output_dir is None else str(output_dir), protocol=protocol,
        threshold=threshold, resolution=resolution, batch_size=batch_size, num_overlays=num_overlays,
        overlay_max_side=overlay_max_side, device=device, hd95_convention=hd95_convention,
        compute_hd95=compute_hd95, max_samples=max_samples, progress=progress,
    )  # fmt: skip
    return evaluate_config(cfg, checkpoint, data, compare=compare, data_defaults=data_defaults)


def evaluate_config(
    cfg: EvalConfig,
    checkpoint: Any,
    data: Any = None,
    *,
    compare: Any = None,
    data_defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate` with the settings already in an :class:`EvalConfig` (``evaluate.py`` uses it)."""
    dev = torch.device(check_device(cfg.device))
    if cfg.output_dir is not None and Path(cfg.output_dir).expanduser().is_file():
        raise UserInputError(f"output_dir={cfg.output_dir} is an existing file; give a folder")
    loaded = [load_checkpoint(checkpoint)] + ([load_checkpoint(compare)] if compare is not None else [])
    dm, data_name, provenance = resolve_eval_data(
        checkpoint, data, defaults=data_defaults, protocol=cfg.protocol
    )
    for _, name, task in loaded:
        if task is not None and task != dm.task:
            raise UserInputError(
                f"checkpoint {name!r} is a {task} model but data {data_name!r} is a {dm.task} dataset; "
                f"pick a {task} dataset or a {dm.task} checkpoint"
            )
    if cfg.protocol == "ukan" and dm.task != "segmentation":
        raise UserInputError("protocol=ukan is a segmentation protocol")
    run_task = get_evaluator(dm.task)
    output_dir = cfg.output_dir
    if output_dir is None:
        output_dir = Path("runs") / "eval" / _slug(f"{loaded[0][1]}_{data_name}_{cfg.split}")
    results = []
    with atomic_output_dir(output_dir) as tmp:
        pictures: list[str] = []
        for i, (model, name, _) in enumerate(loaded):
            model = model.to(dev).eval()
            ctx = EvalContext(cfg=cfg, device=dev, picture_dir=tmp, tag=name)
            metrics, pics = run_task(model, dm, cfg.split, ctx)
            metrics["params"] = _num_params(model)
            pictures += pics
            source = str(checkpoint if i == 0 else compare)
            results.append({"checkpoint": source, "checkpoint_name": name, "metrics": metrics})
        if len({r["checkpoint_name"] for r in results}) < len(results):
            results[1]["checkpoint_name"] += " (compare)"
        meta: dict[str, Any] = {
            "data": data_name,
            "split": cfg.split,
            "task": dm.task,
            "protocol": cfg.protocol,
            "resolution": results[0]["metrics"].get("evaluated_resolution", cfg.resolution)
            if dm.task == "segmentation"
            else "-",
            "device": str(dev),
        }
        if dm.task == "segmentation":
            meta["threshold"] = cfg.threshold
            meta["hd95_convention"] = cfg.hd95_convention
        if cfg.max_samples is not None:
            meta["max_samples"] = cfg.max_samples
        cols, rows = metric_rows(results, dm.task)
        table = format_table(cols, rows)
        payload = {**meta, **provenance, "results": results}
        write_json(payload, tmp / "metrics.json")
        shown = dict(meta)
        pre, src = provenance.get("preprocessing") or {}, provenance.get("preprocessing_source") or {}
        if pre:
            shown["preprocessing"] = ", ".join(f"{k}={v} ({src.get(k, 'data')})" for k, v in pre.items())
        (tmp / "report.md").write_text(render_report(results, task=dm.task, meta=shown, pictures=pictures))
    out = Path(output_dir).expanduser().resolve()
    return {**payload, "table": table, "output_dir": str(out)}


def print_summary(result: Mapping[str, Any]) -> None:
    """Print the header, the metric table and where the files went."""
    head = ", ".join(
        f"{k}={result[k]}" for k in ("data", "split", "task", "protocol", "resolution") if k in result
    )
    print(head)
    pre = result.get("preprocessing") or {}
    if pre:
        shown = {k: v for k, v in pre.items() if k in ("image_size", "in_chans", "tokenizer", "block_size")}
        if shown:
            print("preprocessing: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    print(result["table"])
    print(f"wrote {Path(result['output_dir']) / 'metrics.json'} and report.md")
