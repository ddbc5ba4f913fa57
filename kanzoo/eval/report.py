"""Reports: console table, ``report.md``, ``metrics.json``, overlay pictures, atomic output folders."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_output_dir", "format_table", "render_report", "save_overlay", "write_json"]

# Scalar metrics shown in tables, per task, in this order (others stay in metrics.json).
HEADLINE = {
    "segmentation": (
        "iou",
        "dice",
        "iou_pooled",
        "dice_pooled",
        "miou",
        "hd95",
        "precision",
        "recall",
        "specificity",
        "ukan_iou",
        "ukan_dice",
        "ukan_hd95",
    ),
    "classification": ("top1", "top5", "balanced_accuracy"),
    "lm": ("nll", "perplexity", "bits_per_byte"),
    "forecasting": tuple(
        f"{m}{b}" for m in ("mse", "mae", "smape", "mase") for b in ("", "_seasonal_naive", "_linear")
    ),
    "regression": ("rmse", "mse", "mae", "r2", "max_abs_error", "symbolic_rmse"),
    "pde": ("rel_l2", "mse", "max_abs_error", "residual_mse"),
}
COMMON = ("params", "samples_per_s", "tokens_per_s", "num_samples")


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success its files move into ``output_dir``.

    The temporary folder lives beside ``output_dir`` (same file system, so the final moves are
    renames). On an exception it is deleted, parent folders this call created are removed again
    and ``output_dir`` is left as it was: never half-written. Files already in ``output_dir`` with
    the same names are replaced; others are kept. An existing *file* at ``output_dir`` is refused
    before anything is created.
    """
    from kanzoo._cli import UserInputError

    out = Path(output_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserInputError(f"output_dir {out} is an existing file; give a folder")
    created = [p for p in reversed(out.parents) if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(f"cannot create output_dir {out}: {err.strerror or err}") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if not out.exists():
            os.replace(tmp, out)
            return
        for item in sorted(tmp.rglob("*"), key=lambda p: len(p.parts)):
            target = out / item.relative_to(tmp)
            if item.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(item, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):  # parents this call made, innermost first, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else str(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON with NaN as null and inf as a string (strict JSON)."""
    Path(path).write_text(json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4f}"
    return str(v)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False) -> str:
    """Plain-text (aligned) or Markdown table of already-chosen rows."""
    cells = [[str(c) for c in columns]] + [[_fmt(v) for v in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in cells[1:]
    ]
    return "\n".join(lines)


def metric_rows(results: Sequence[dict[str, Any]], task: str) -> tuple[list[str], list[list[Any]]]:
    """Metric-by-model rows: first column the metric, one column per evaluated checkpoint."""
    names = [r["checkpoint_name"] for r in results]
    headline = HEADLINE.get(task)
    if headline is None:  # a task without a table entry: every scalar metric, in order of appearance
        seen: dict[str, None] = {}
        for r in results:
            for k, v in r["metrics"].items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in COMMON:
                    seen.setdefault(k)
        headline = tuple(seen)
    keys = [k for k in headline + COMMON if any(k in r["metrics"] for r in results)]
    rows = [[k] + [r["metrics"].get(k) for r in results] for k in keys]
    return ["metric", *names], rows


def render_report(
    results: Sequence[dict[str, Any]], *, task: str, meta: dict[str, Any], pictures: Sequence[str]
) -> str:
    """The Markdown report: settings, metric table (side by side when comparing), definitions, pictures."""
    cols, rows = metric_rows(results, task)
    lines = [f"# Evaluation: {' vs '.join(r['checkpoint_name'] for r in results)}", ""]
    for k, v in meta.items():
        lines.append(f"- **{k}**: {_fmt(v) if not isinstance(v, str) else v}")
    lines += ["", format_table(cols, rows, markdown=True), ""]
    if task == "segmentation":
        lines += [
            "Definitions: `iou`/`dice` are per-image means (an image where prediction and target are both "
            "empty scores 1); `*_pooled` sum the pixel counts of all images first; `hd95` is the symmetric "
            "95th-percentile boundary distance in pixels of the evaluated resolution (both empty: 0, one "
            "empty: the image diagonal); precision/recall/specificity are pooled over pixels. `ukan_*` "
            "follow the U-KAN paper's protocol (IoU pooled per batch of 8, Dice = 2·IoU/(1+IoU)).",
            "",
        ]
    lines += [
        "`params` counts every parameter once; `samples_per_s` (`tokens_per_s` for LMs) is forward-only "
        "throughput on the evaluation device after one untimed warm-up batch, data loading excluded.",
        "",
    ]
    if task == "lm":
        lines += [
            "NLL in nats per predicted token; perplexity = exp(NLL); bits per byte over UTF-8 bytes.",
            "",
        ]
    if task in ("forecasting", "regression", "pde"):
        from kanzoo.eval.science import report_lines  # definitions, per-horizon tables, formulas

        lines += report_lines(task, results)
    for pic in pictures:
        lines.append(f"![{Path(pic).stem}]({pic})")
    return "\n".join(lines).rstrip() + "\n"


_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]],
    dtype=np.float64,
) / 255.0  # fmt: skip


def save_overlay(
    image: np.ndarray,
    target: np.ndarray,
    pred: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    num_classes: int = 2,
    min_height: int = 160,
) -> None:
    """Save ``image | ground truth | prediction`` side by side as a PNG (masks tinted over the image).

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` floats in [0, 1].
        target: ``(H, W)`` integer labels.
        pred: ``(H, W)`` integer labels.
        path: PNG file to write.
        title: caption drawn above the panels (e.g. the image id and its IoU).
        num_classes: number of classes (class c >= 1 gets palette colour c - 1).
        min_height: small images are enlarged (nearest neighbour) to at least this height.
    """
    from PIL import Image, ImageDraw

    img = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)

    def tint(mask: np.ndarray) -> np.ndarray:
        out = img.copy()
        for c in range(1, num_classes):
            sel = mask == c
            if sel.any():
                out[sel] = 0.45 * out[sel] + 0.55 * _PALETTE[(c - 1) % len(_PALETTE)]
        return out

    h, w = img.shape[:2]
    gap = 4
    panels = [img, tint(np.asarray(target)), tint(np.asarray(pred))]
    strip = np.ones((h, 3 * w + 2 * gap, 3))
    for k, pnl in enumerate(panels):
        strip[:, k * (w + gap) : k * (w + gap) + w] = pnl
    pic = Image.fromarray((strip * 255).round().astype(np.uint8))
    scale = max(1, -(-min_height // h))
    if scale > 1:
        pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
    head = 30
    canvas = Image.new("RGB", (pic.width, pic.height + head), "white")
    canvas.paste(pic, (0, head))
    draw = ImageDraw.Draw(canvas)
    panel_w = (pic.width - 2 * gap * scale) // 3
    for k, name in enumerate(("image", "ground truth", "prediction")):
        draw.text((k * (panel_w + gap * scale) + 2, 16), name, fill="black")
    if title:
        draw.text((2, 2), title, fill="black")
    canvas.save(path)
