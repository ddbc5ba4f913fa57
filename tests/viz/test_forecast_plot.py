"""kanzoo.viz.plot_model_forecast: the drawn history, truth and forecasts are the data (original units)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kanzoo.models as zoo
from kanzoo.data.timeseries import forecasting_data
from kanzoo.viz import plot_model_forecast


def test_forecast_plot_draws_history_truth_model_and_baselines(tmp_path):
    t = np.arange(240, dtype=float)
    y = np.stack([20 + 3 * np.sin(2 * np.pi * t / 12), 100 + 0.5 * t], axis=1)
    dm = forecasting_data(y, name="toy", lookback=24, horizon=6, season=12, channel_names=["wave", "trend"])
    torch.manual_seed(0)
    model = zoo.create_model("tsf_tiny", lookback=24, horizon=6, num_channels=2)
    fig = plot_model_forecast(model, dm, split="test", window=-1, path=tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["wave", "trend"]
    lines = {line.get_label(): line for line in axes[1].lines}
    assert {"history", "truth", "model", "seasonal naive", "linear"} <= set(lines)
    item = dm.test[len(dm.test) - 1]
    start = int(item["start"])
    np.testing.assert_allclose(lines["truth"].get_ydata(), y[start + 24 : start + 30, 1], rtol=1e-5)
    np.testing.assert_allclose(lines["history"].get_ydata()[-24:], y[start : start + 24, 1], rtol=1e-5)
    with torch.no_grad():
        pred = model(item["past_values"][None])[0, :, 1].numpy() * dm.info["scale"][1] + dm.info["loc"][1]
    np.testing.assert_allclose(lines["model"].get_ydata(), pred, rtol=1e-5)
    # the linear baseline fits a pure trend exactly
    np.testing.assert_allclose(lines["linear"].get_ydata(), y[start + 24 : start + 30, 1], rtol=1e-4)
    with pytest.raises(ValueError, match="out of range"):
        plot_model_forecast(model, dm, split="test", window=len(dm.test))
