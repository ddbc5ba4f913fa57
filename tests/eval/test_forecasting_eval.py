"""Forecasting metrics against independent references (sklearn, sMAPE/MASE by hand), baselines, runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from kanzoo.data.timeseries import forecasting_data
from kanzoo.eval.forecasting import error_terms, fit_linear_baseline, seasonal_naive
from kanzoo.eval.runner import evaluate


def test_mse_and_mae_match_sklearn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(5, 4, 3, generator=g), torch.randn(5, 4, 3, generator=g)
    ones, zeros = torch.ones(3), torch.zeros(3)
    t = error_terms(pred, target, loc=zeros, scale=ones, mase_scale=ones)
    p, y = pred.numpy().reshape(-1), target.numpy().reshape(-1)
    assert float(t["mse"].mean()) == pytest.approx(mean_squared_error(y, p), rel=1e-6)
    assert float(t["mae"].mean()) == pytest.approx(mean_absolute_error(y, p), rel=1e-6)
    # per horizon step: sklearn over the (window, channel) pairs of that step
    for h in range(4):
        ref = mean_squared_error(target[:, h].numpy().ravel(), pred[:, h].numpy().ravel())
        assert float(t["mse"][:, h].mean()) == pytest.approx(ref, rel=1e-6)


def test_smape_and_mase_by_hand_in_original_units():
    # one window, one channel, standardised with loc 10 and scale 2: truth 12, 14; forecast 11, 14
    target = torch.tensor([[[1.0], [2.0]]])
    pred = torch.tensor([[[0.5], [2.0]]])
    t = error_terms(
        pred, target, loc=torch.tensor([10.0]), scale=torch.tensor([2.0]), mase_scale=torch.tensor([4.0])
    )
    # sMAPE (M4): 200 |y - f| / (|y| + |f|): 200 * 1 / 23 and 0
    assert t["smape"].flatten().tolist() == pytest.approx([200 / 23, 0.0])
    # MASE: |y - f| in original units over the in-sample seasonal-naive MAE (4): 0.25 and 0
    assert t["mase"].flatten().tolist() == pytest.approx([0.25, 0.0])
    # MSE/MAE stay on the standardised scale
    assert t["mse"].flatten().tolist() == pytest.approx([0.25, 0.0])
    # both zero -> sMAPE term 0 (not NaN)
    z = error_terms(
        torch.zeros(1, 1, 1),
        torch.zeros(1, 1, 1),
        loc=torch.zeros(1),
        scale=torch.ones(1),
        mase_scale=torch.ones(1),
    )
    assert float(z["smape"]) == 0.0


def test_mase_and_smape_of_a_series_by_hand_end_to_end(tmp_path):
    """Whole pipeline on a 16-step series: MASE = forecast MAE / in-sample seasonal-naive MAE."""
    y = np.array([3.0, 5.0, 4.0, 6.0, 5.0, 7.0, 6.0, 8.0, 7.0, 9.0, 8.0, 10.0, 9.0, 11.0, 10.0, 12.0])
    dm = forecasting_data(
        y, name="toy", lookback=2, horizon=2, season=1, val_fraction=0.25, test_fraction=0.0
    )
    # in-sample 1-step naive MAE over the 12 train steps: 2, 1, 2, ..., 2 (six 2s, five 1s) -> 17 / 11
    assert np.abs(np.diff(y[:12])).sum() == 17.0
    assert dm.info["mase_scale"] == pytest.approx([17 / 11])
    # the val segment (steps 12..15: 9 11 10 12) holds one window: past (9, 11) -> truth (10, 12)
    assert len(dm.val) == 1
    r = evaluate(LastValue(2), dm, output_dir=tmp_path / "e", progress=False)
    m = r["results"][0]["metrics"]
    # forecast (11, 11): absolute errors 1 and 1
    assert m["mase"] == pytest.approx(1.0 / (17 / 11))
    assert m["smape"] == pytest.approx((200 * 1 / 21 + 200 * 1 / 23) / 2)
    assert m["mase_seasonal_naive"] == pytest.approx(m["mase"])  # season 1: the same naive forecast


def test_seasonal_naive_repeats_the_last_season():
    past = torch.arange(1.0, 8.0).reshape(1, 7, 1)  # 1..7
    assert seasonal_naive(past, 5, 3).flatten().tolist() == [5, 6, 7, 5, 6]
    assert seasonal_naive(past, 3, 1).flatten().tolist() == [7, 7, 7]
    with pytest.raises(ValueError, match="lookback >= season"):
        seasonal_naive(past, 2, 8)


def test_linear_baseline_is_least_squares():
    g = torch.Generator().manual_seed(1)
    past, future = torch.randn(40, 6, 2, generator=g), torch.randn(40, 3, 2, generator=g)
    w, b = fit_linear_baseline(past, future, ridge=0.0)
    x = past.transpose(1, 2).reshape(-1, 6).double().numpy()
    y = future.transpose(1, 2).reshape(-1, 3).double().numpy()
    sol, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    np.testing.assert_allclose(w.numpy(), sol[:-1], atol=1e-8)
    np.testing.assert_allclose(b.numpy(), sol[-1], atol=1e-8)
    # a truly linear relation is recovered exactly
    true_w = torch.randn(6, 3, generator=g, dtype=torch.float64)
    fut = (past.transpose(1, 2).double() @ true_w + 0.5).transpose(1, 2)
    w2, b2 = fit_linear_baseline(past, fut, ridge=0.0)
    np.testing.assert_allclose(w2.numpy(), true_w.numpy(), atol=1e-8)
    np.testing.assert_allclose(b2.numpy(), 0.5, atol=1e-8)


class LastValue(nn.Module):
    """Forecasts the last observed value (the naive forecast), ``(B, L, C) -> (B, H, C)``."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[:, -1:].expand(-1, self.horizon, -1) + 0 * self.dummy


def _toy_dm():
    t = np.arange(300, dtype=float)
    y = np.stack([10 + np.sin(2 * np.pi * t / 12), 5 + 0.01 * t + np.cos(2 * np.pi * t / 12)], axis=1)
    return forecasting_data(y, name="toy", lookback=24, horizon=6, season=12, channel_names=["a", "b"])


def test_runner_reports_per_horizon_metrics_next_to_the_baselines(tmp_path):
    dm = _toy_dm()
    out = tmp_path / "eval"
    r = evaluate(LastValue(6), dm, split="test", output_dir=out, progress=False)
    m = r["results"][0]["metrics"]
    for key in ("mse", "mae", "smape", "mase"):
        assert key in m and f"{key}_seasonal_naive" in m and f"{key}_linear" in m
        assert len(m["per_horizon"]["model"][key]) == 6
        assert m[key] == pytest.approx(np.mean(m["per_horizon"]["model"][key]))
    # sine + linear trend follow a linear recurrence: the least-squares linear forecaster is exact
    assert m["mse_linear"] < 1e-4 * m["mse"]
    # independent reference for the model's per-horizon MSE: numpy over the test windows
    past = torch.stack([dm.test[i]["past_values"] for i in range(len(dm.test))])
    fut = torch.stack([dm.test[i]["future_values"] for i in range(len(dm.test))])
    ref = ((past[:, -1:] - fut) ** 2).mean(dim=(0, 2)).numpy()
    np.testing.assert_allclose(m["per_horizon"]["model"]["mse"], ref, rtol=1e-5)
    snaive = past[:, [24 - 12 + h % 12 for h in range(6)]]
    ref = ((snaive - fut) ** 2).mean(dim=(0, 2)).numpy()
    np.testing.assert_allclose(m["per_horizon"]["seasonal_naive"]["mse"], ref, rtol=1e-5)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["task"] == "forecasting" and saved["results"][0]["metrics"]["horizon"] == 6
    report = (out / "report.md").read_text()
    assert "mase_seasonal_naive" in report and "Per horizon step" in report
    assert (out / "forecast_LastValue.png").is_file() and (out / "per_horizon_LastValue.png").is_file()
    assert "mase_linear" in r["table"]


def test_runner_refuses_a_model_built_for_other_windows(tmp_path):
    from kanzoo.models import create_model

    model = create_model("tsf_tiny", lookback=12, horizon=6, num_channels=2)
    with pytest.raises(ValueError, match=r"built for lookback=12 but the data has lookback=24"):
        evaluate(model, _toy_dm(), output_dir=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_training_task_reports_the_evaluator_numbers(tmp_path):
    from kanzoo.eval.forecasting import run_forecasting
    from kanzoo.train.tasks_science import Forecasting

    dm = _toy_dm()
    task = Forecasting()
    model = LastValue(6)
    sums = {k: 0.0 for k in task.sum_keys}
    for batch in dm.loader("val", batch_size=16, shuffle=False):
        for k, v in task.eval_sums(model, batch).items():
            sums[k] += v
    got = task.finalize(sums)
    m, _ = run_forecasting(
        model, dm, "val", device=torch.device("cpu"), batch_size=8, picture_dir=tmp_path, tag="t",
        progress=False, max_samples=None,
    )  # fmt: skip
    assert got["val_loss"] == pytest.approx(m["mse"]) and got["val_mae"] == pytest.approx(m["mae"])
    assert got["val_mase"] == pytest.approx(m["mase"]) and got["val_smape"] == pytest.approx(m["smape"])
