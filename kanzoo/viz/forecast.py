"""Forecast plots: a forecaster's prediction for one window, drawn with the history before it.

```python
from kanzoo.viz import plot_model_forecast
fig = plot_model_forecast("kan_tsf-elnino", "elnino", split="test", path="forecast.png")
```

The truth, the model's forecast and (by default) the seasonal-naive and linear baselines of
``evaluate.py`` are drawn after ``history`` steps of the series (original units), one panel per
channel. The drawing itself is :func:`kanzoo.eval.forecasting.plot_forecast`, which ``evaluate.py``
uses for its report pictures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kanzoo.eval.forecasting import fit_linear_baseline, plot_forecast, seasonal_naive, window_history

__all__ = ["plot_forecast", "plot_model_forecast"]


def _resolve(model: Any, data: Any):
    from kanzoo.data import DataModule, build_data
    from kanzoo.models import from_pretrained

    if not isinstance(model, nn.Module):
        model = from_pretrained(str(model))
    if isinstance(data, DataModule):
        dm = data
    elif isinstance(data, str):
        dm = build_data(data)
    elif isinstance(data, dict):
        kwargs = dict(data)
        dm = build_data(kwargs.pop("name"), **kwargs)
    else:
        raise ValueError(
            f"data must be a DataModule, a dataset name or a config dict, got {type(data).__name__}"
        )
    if dm.task != "forecasting":
        raise ValueError(f"plot_model_forecast needs forecasting data, got a {dm.task} dataset")
    return model.eval(), dm


def plot_model_forecast(
    model: nn.Module | str | os.PathLike,
    data: Any,
    *,
    split: str = "test",
    window: int = -1,
    channels: Sequence[int] | None = None,
    history: int | None = None,
    baselines: bool = True,
    path: str | os.PathLike | None = None,
):
    """Forecast one window of ``split`` with ``model`` and draw it after the series' history.

    Args:
        model: A forecasting model, a checkpoint directory or a shipped checkpoint name.
        data: A forecasting DataModule, a dataset name (``"elnino"``) or ``{"name": ..., **kwargs}``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        window: Index of the window in the split (negative counts from the end).
        channels: Channels to draw (default: the first three).
        history: Steps of history before the forecast start (default: twice the lookback, within the split).
        baselines: Also draw the seasonal-naive and the linear baseline forecasts.
        path: PNG file to write (None: only return the figure).

    Returns:
        The matplotlib ``Figure``.
    """
    model, dm = _resolve(model, data)
    ds = {"train": dm.train, "val": dm.val, "test": dm.test}.get(split)
    if ds is None or len(ds) == 0:
        raise ValueError(f"the data has no (or an empty) {split!r} split")
    index = window + len(ds) if window < 0 else window
    if not 0 <= index < len(ds):
        raise ValueError(f"window {window} out of range for the {len(ds)} windows of {split!r}")
    item = ds[index]
    past, future = item["past_values"][None], item["future_values"][None]
    param = next(model.parameters())
    with torch.no_grad():
        pred = model(past.to(param)).float().cpu()
    forecasts = {"model": pred}
    if baselines:
        forecasts["seasonal naive"] = seasonal_naive(past, ds.horizon, int(dm.info["season"]))
        items = [dm.train[i] for i in range(len(dm.train))]
        w, b = fit_linear_baseline(
            torch.stack([it["past_values"] for it in items]),
            torch.stack([it["future_values"] for it in items]),
        )
        forecasts["linear"] = (past.transpose(1, 2).double() @ w + b).transpose(1, 2).float()
    scale, loc = item["scale"].numpy(), item["loc"].numpy()
    context, times = window_history(ds, int(item["start"]), history)
    chans = list(channels) if channels is not None else list(range(min(3, context.shape[1])))
    names = dm.info.get("channel_names")
    return plot_forecast(
        context[:, chans],
        (future[0].numpy() * scale + loc)[:, chans],
        {k: (v[0].numpy() * scale + loc)[:, chans] for k, v in forecasts.items()},
        path,
        channel_names=[names[c] for c in chans] if names else None,
        times=times,
        title=f"{dm.info.get('name', 'data')} {split} window {index}",
    )
