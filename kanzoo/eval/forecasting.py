"""Forecasting metrics, baselines and the evaluate.py runner for ``task="forecasting"``.

Metrics (per horizon step ``h = 1..H`` and averaged over the horizon), for windows from
:mod:`kanzoo.data.timeseries` (values standardised with training statistics):

* ``mse``, ``mae``: squared / absolute error of the **standardised** values (the convention of the
  long-horizon forecasting literature; comparable across channels of different units),
* ``smape``: M4's symmetric MAPE in percent on the original values,
  ``200 |y - ŷ| / (|y| + |ŷ|)`` (0 where both are 0),
* ``mase``: M4's mean absolute scaled error, ``|y - ŷ|`` in original units divided by the
  in-sample mean absolute error of the seasonal-naive forecast on the training segment.

Every metric is a mean over windows, channels (and horizon steps); the element-wise terms come
from :func:`error_terms`, which the training task (``kanzoo.train.tasks_science.Forecasting``)
uses too, so training and evaluation report the same numbers.

Baselines computed in the same run on the same windows: the **seasonal naive** forecast (the last
observed season repeated; the last value when ``season = 1``) and a **linear** forecaster (one
least-squares map from the standardised lookback window to the horizon, shared by all channels,
fitted in closed form on the training windows, as the "Linear" baseline of Zeng et al. 2023).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "METRICS",
    "error_terms",
    "fit_linear_baseline",
    "forecast_report_lines",
    "plot_forecast",
    "run_forecasting",
    "seasonal_naive",
    "window_history",
]

METRICS = ("mse", "mae", "smape", "mase")
BASELINES = ("seasonal_naive", "linear")


def error_terms(pred: Tensor, target: Tensor, *, loc: Tensor, scale: Tensor, mase_scale: Tensor) -> dict:
    """Element-wise error terms of standardised forecasts, each ``(B, H, C)``.

    Args:
        pred: Forecast ``(B, H, C)``, standardised.
        target: Truth ``(B, H, C)``, standardised.
        loc: Mean used for standardising, ``(B, C)`` or ``(C,)``.
        scale: Standard deviation used for standardising, ``(B, C)`` or ``(C,)``.
        mase_scale: In-sample seasonal-naive MAE in original units, ``(B, C)`` or ``(C,)``.

    Returns:
        ``{"mse": se, "mae": ae, "smape": percent, "mase": scaled abs error}``.
    """
    pred, target = pred.double(), target.double()

    def per_channel(v: Tensor) -> Tensor:
        v = v.double()
        return v[:, None, :] if v.dim() == 2 else v.reshape(1, 1, -1)

    err = pred - target
    y = target * per_channel(scale) + per_channel(loc)
    yh = pred * per_channel(scale) + per_channel(loc)
    abs_orig = (y - yh).abs()
    denom = y.abs() + yh.abs()
    smape = torch.where(denom > 0, 200.0 * abs_orig / torch.where(denom > 0, denom, 1.0), 0.0)
    return {"mse": err.square(), "mae": err.abs(), "smape": smape, "mase": abs_orig / per_channel(mase_scale)}


def seasonal_naive(past: Tensor, horizon: int, season: int) -> Tensor:
    """The last observed season repeated: ``ŷ_{T+h} = y_{T+h-m*ceil(h/m)}``; ``past (B, L, C)``.

    Raises:
        ValueError: The lookback is shorter than the season.
    """
    length = past.shape[1]
    if season > length:
        raise ValueError(f"the seasonal-naive forecast needs lookback >= season, got {length} < {season}")
    idx = torch.tensor([length - season + (h % season) for h in range(horizon)], device=past.device)
    return past.index_select(1, idx)


def fit_linear_baseline(past: Tensor, future: Tensor, *, ridge: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Least-squares ``future ≈ past @ W + b`` over all (window, channel) rows.

    Args:
        past: Training inputs ``(N, L, C)``.
        future: Training targets ``(N, H, C)``.
        ridge: Relative Tikhonov term (times the mean diagonal of the normal matrix) for stability.

    Returns:
        ``(W (L, H), b (H,))``.
    """
    x = past.transpose(1, 2).reshape(-1, past.shape[1]).double()
    y = future.transpose(1, 2).reshape(-1, future.shape[1]).double()
    xa = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    gram = xa.T @ xa
    lam = ridge * float(gram.diagonal().mean())
    sol = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), xa.T @ y)
    return sol[:-1], sol[-1]


def _linear_forecast(past: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return (past.transpose(1, 2).double() @ w + b).transpose(1, 2).to(past.dtype)


def _stack(ds: Any) -> dict[str, Tensor]:
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class _HorizonSums:
    """Per-horizon sums of every error term for one forecaster."""

    def __init__(self, horizon: int) -> None:
        self.sums = {m: torch.zeros(horizon, dtype=torch.float64) for m in METRICS}
        self.count = 0

    def update(self, terms: dict[str, Tensor]) -> None:
        for m in METRICS:
            self.sums[m] += terms[m].sum(dim=(0, 2))
        self.count += terms["mse"].shape[0] * terms["mse"].shape[2]

    def result(self) -> dict[str, list[float]]:
        return {m: (self.sums[m] / max(self.count, 1)).tolist() for m in METRICS}


def plot_forecast(
    history: np.ndarray,
    target: np.ndarray,
    forecasts: dict[str, np.ndarray],
    path: str | Path | None = None,
    *,
    channel_names: Sequence[str] | None = None,
    times: Sequence[str] | None = None,
    title: str = "",
):
    """Draw the history, the truth and one or more forecasts, one panel per channel.

    Args:
        history: ``(T_hist, C)`` values before the forecast start (original units).
        target: ``(H, C)`` true future values.
        forecasts: ``{label: (H, C)}`` forecasts (the first is drawn boldest).
        path: PNG file to write (None: only return the figure).
        channel_names: Panel titles.
        times: ``T_hist + H`` time labels for the x axis ticks (None: step numbers).
        title: Figure title.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    history, target = np.asarray(history), np.asarray(target)
    c = history.shape[1]
    fig, axes = plt.subplots(c, 1, figsize=(8, 2.6 * c), squeeze=False)
    t_hist = np.arange(history.shape[0])
    t_fut = np.arange(history.shape[0], history.shape[0] + target.shape[0])
    styles = ["-", "--", ":", "-."]
    for j, ax in enumerate(axes[:, 0]):
        ax.plot(t_hist, history[:, j], color="0.35", lw=1.0, label="history")
        ax.plot(t_fut, target[:, j], color="black", lw=1.6, label="truth")
        for k, (label, f) in enumerate(forecasts.items()):
            ax.plot(
                t_fut, np.asarray(f)[:, j], styles[k % len(styles)], lw=2.0 if k == 0 else 1.3, label=label
            )
        ax.axvline(history.shape[0] - 0.5, color="0.6", lw=0.8)
        ax.set_title(channel_names[j] if channel_names else f"channel {j}", fontsize=9)
        if times is not None:
            ticks = np.linspace(0, len(times) - 1, min(6, len(times))).round().astype(int)
            ax.set_xticks(ticks, [str(times[i]) for i in ticks], fontsize=7)
        if j == 0:
            ax.legend(fontsize=7, ncol=min(5, 2 + len(forecasts)), loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


def _plot_per_horizon(per_horizon: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, metric in zip(axes, ("mase", "smape")):
        for label, values in per_horizon.items():
            ax.plot(np.arange(1, len(values[metric]) + 1), values[metric], marker=".", label=label)
        ax.set_xlabel("horizon step")
        ax.set_title(metric, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_forecasting(
    model: nn.Module,
    dm: Any,
    split: str,
    *,
    device: torch.device,
    batch_size: int,
    picture_dir: Path,
    tag: str,
    progress: bool,
    max_samples: int | None,
) -> tuple[dict[str, Any], list[str]]:
    """Score ``model`` on the windows of ``split`` next to the seasonal-naive and linear baselines.

    Returns:
        ``(metrics, picture file names)``; metrics hold the horizon means (``mse``, ``mse_linear``,
        ``mase_seasonal_naive``, ...) and ``per_horizon`` lists.
    """
    from tqdm.auto import tqdm

    ds = {"train": dm.train, "val": dm.val, "test": dm.test}.get(split)
    if ds is None or len(ds) == 0:
        raise ValueError(f"the forecasting data has no (or an empty) {split!r} split")
    info = dm.info
    lookback, horizon, season = int(info["lookback"]), int(info["horizon"]), int(info["season"])
    cfg = getattr(model, "config", None)
    for key in ("lookback", "horizon", "num_channels"):
        want = getattr(cfg, key, None)
        if want is not None and int(want) != int(info[key]):
            raise ValueError(
                f"the model was built for {key}={want} but the data has {key}={info[key]}; set "
                f"data.{key}={want} (or evaluate a checkpoint trained for this data)"
            )
    if season > lookback:
        raise ValueError(f"season {season} exceeds lookback {lookback}: no seasonal-naive baseline")
    train = _stack(dm.train)
    w, b = fit_linear_baseline(train["past_values"], train["future_values"])
    loader = torch.utils.data.DataLoader(ds, batch_size=max(int(batch_size), 64), shuffle=False)
    sums = {name: _HorizonSums(horizon) for name in ("model", *BASELINES)}
    fwd, seen, last = 0.0, 0, None
    for bi, batch in enumerate(tqdm(loader, desc=f"eval {tag}", disable=not progress, unit="batch")):
        past = batch["past_values"]
        x = past.to(device)
        if bi == 0:
            with torch.no_grad():
                model(x)
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = model(x).float()
        if device.type == "cuda":
            torch.cuda.synchronize()
        fwd += time.perf_counter() - t0
        pred = pred.cpu()
        if pred.shape != batch["future_values"].shape:
            raise ValueError(
                f"forecasting model must return (B, {horizon}, C) forecasts, got {tuple(pred.shape)}"
            )
        stats = {k: batch[k] for k in ("loc", "scale", "mase_scale")}
        target = batch["future_values"]
        forecasts = {
            "model": pred,
            "seasonal_naive": seasonal_naive(past, horizon, season),
            "linear": _linear_forecast(past, w, b),
        }
        for name, f in forecasts.items():
            sums[name].update(error_terms(f, target, **stats))
        last = (batch, forecasts)
        seen += past.shape[0]
        if max_samples is not None and seen >= max_samples:
            break
    per_horizon = {name: s.result() for name, s in sums.items()}
    metrics: dict[str, Any] = {}
    for m in METRICS:
        metrics[m] = float(np.mean(per_horizon["model"][m]))
        for base in BASELINES:
            metrics[f"{m}_{base}"] = float(np.mean(per_horizon[base][m]))
    metrics.update(
        per_horizon=per_horizon,
        lookback=lookback,
        horizon=horizon,
        season=season,
        num_samples=seen,
        samples_per_s=seen / fwd if fwd > 0 else math.nan,
    )
    pictures = _pictures(ds, last, info, picture_dir, tag, per_horizon)
    return metrics, pictures


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def window_history(ds: Any, start: int, history: int | None = None) -> tuple[np.ndarray, list[str] | None]:
    """The series before a window's forecast start, in original units, and the time labels.

    Args:
        ds: A ``ForecastWindows`` split.
        start: The window's ``start`` (index in the full series).
        history: Steps to return (default twice the lookback), clipped to the split.

    Returns:
        ``(values (T, C), labels of those T steps plus the horizon's, or None)``.
    """
    s = start - ds.offset
    first = max(0, s + ds.lookback - (2 * ds.lookback if history is None else int(history)))
    context = ds.original()[first : s + ds.lookback].numpy()
    times = ds.times[first : s + ds.lookback + ds.horizon] if ds.times is not None else None
    return context, times


def _pictures(ds, last, info, picture_dir: Path, tag: str, per_horizon) -> list[str]:
    batch, forecasts = last
    j = batch["past_values"].shape[0] - 1  # the last window evaluated
    scale, loc = batch["scale"][j].numpy(), batch["loc"][j].numpy()
    context, times = window_history(ds, int(batch["start"][j]))
    target = batch["future_values"][j].numpy() * scale + loc
    shown = {k: v[j].numpy() * scale + loc for k, v in forecasts.items()}
    channels = list(range(min(3, context.shape[1])))
    names = info.get("channel_names") or None
    forecast_png = picture_dir / f"forecast_{_slug(tag)}.png"
    plot_forecast(
        context[:, channels], target[:, channels], {k: v[:, channels] for k, v in shown.items()},
        forecast_png, channel_names=[names[c] for c in channels] if names else None, times=times,
        title=f"{tag}: last window of the split",
    )  # fmt: skip
    horizon_png = picture_dir / f"per_horizon_{_slug(tag)}.png"
    _plot_per_horizon(per_horizon, horizon_png, f"{tag}: error per horizon step")
    return [forecast_png.name, horizon_png.name]


def forecast_report_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown: metric definitions and a per-horizon table (model vs baselines) per checkpoint."""
    from kanzoo.eval.report import format_table

    lines = [
        "Definitions: `mse`/`mae` on values standardised with the training segment's mean and standard "
        "deviation; `smape` (M4, percent) and `mase` (M4: absolute error over the training segment's "
        "seasonal-naive mean absolute error) on original values; all are means over windows, channels "
        "and horizon steps. `*_seasonal_naive` repeats the last observed season; `*_linear` is a "
        "least-squares linear map from the lookback window to the horizon, fitted on the training "
        "windows in the same run.",
        "",
    ]
    for r in results:
        ph = r["metrics"].get("per_horizon")
        if not ph:
            continue
        cols = ["h"] + [f"{m} {who}" for m in ("mase", "smape", "mse") for who in ph]
        horizon = len(ph["model"]["mse"])
        rows = [
            [h + 1] + [ph[who][m][h] for m in ("mase", "smape", "mse") for who in ph] for h in range(horizon)
        ]
        lines += [
            f"Per horizon step, {r['checkpoint_name']}:",
            "",
            format_table(cols, rows, markdown=True),
            "",
        ]
    return lines
