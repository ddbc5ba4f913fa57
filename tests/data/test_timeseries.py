"""Forecasting data: chronological splits, train-only statistics, file, HF and statsmodels sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kanzoo.data import build_data
from kanzoo.data.timeseries import forecasting_data, mase_scale, split_bounds


def _series(n: int = 200, c: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return 10 + np.sin(2 * np.pi * t / 12) * np.arange(1, c + 1) + 0.1 * rng.standard_normal((n, c))


def test_splits_are_chronological_and_windows_never_cross_a_boundary():
    values = _series(200)
    dm = forecasting_data(values, name="toy", lookback=24, horizon=6, season=12, stride=1)
    bounds = dm.info["splits"]
    assert bounds == {"train": [0, 140], "val": [140, 170], "test": [170, 200]}
    for split, ds in (("train", dm.train), ("val", dm.val), ("test", dm.test)):
        lo, hi = bounds[split]
        starts = [int(ds[i]["start"]) for i in range(len(ds))]
        assert starts == list(range(lo, hi - 30 + 1))  # every window inside [lo, hi)
        assert min(starts) >= lo and max(starts) + 24 + 6 <= hi
        # items are the standardised values at exactly those steps
        item = ds[len(ds) - 1]
        s = int(item["start"])
        raw = values[s : s + 30]
        got = (
            torch.cat([item["past_values"], item["future_values"]]).numpy() * dm.info["scale"]
            + dm.info["loc"]
        )
        np.testing.assert_allclose(got, raw, rtol=1e-5, atol=1e-4)


def test_statistics_come_from_the_training_segment_only():
    values = _series(200)
    dm = forecasting_data(values, name="toy", lookback=24, horizon=6, season=12)
    changed = values.copy()
    changed[140:] *= 1000.0  # val and test change; train does not
    dm2 = forecasting_data(changed, name="toy", lookback=24, horizon=6, season=12)
    for key in ("loc", "scale", "mase_scale"):
        assert dm.info[key] == dm2.info[key]
    train = values[:140]
    np.testing.assert_allclose(dm.info["loc"], train.mean(0))
    np.testing.assert_allclose(dm.info["scale"], train.std(0))
    np.testing.assert_allclose(dm.info["mase_scale"], np.abs(train[12:] - train[:-12]).mean(0))
    # the training windows are identical whatever happens after the boundary
    a, b = dm.train[len(dm.train) - 1], dm2.train[len(dm2.train) - 1]
    assert torch.equal(a["future_values"], b["future_values"])


def test_mase_scale_by_hand_and_fallbacks():
    y = np.array([[1.0], [3.0], [2.0], [5.0], [4.0]])
    # season 2: |2-1|, |5-3|, |4-2| -> mean 5/3
    assert mase_scale(y, 2)[0] == pytest.approx(5 / 3)
    assert mase_scale(y, 1)[0] == pytest.approx((2 + 1 + 3 + 1) / 4)
    periodic = np.array([[1.0], [2.0], [1.0], [2.0]])  # seasonal differences all zero -> 1-step naive
    assert mase_scale(periodic, 2)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="season"):
        mase_scale(y, 5)


def test_split_bounds_and_too_short_segments_fail_clearly():
    assert split_bounds(100, val_fraction=0.2, test_fraction=0.0) == {"train": (0, 80), "val": (80, 100)}
    with pytest.raises(ValueError, match="val_fraction"):
        split_bounds(100, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(
        ValueError, match=r"val segment has 30 of 200 steps, fewer than lookback \+ horizon = 40"
    ):
        forecasting_data(_series(200), name="toy", lookback=30, horizon=10, season=12)
    with pytest.raises(ValueError, match="missing or non-finite"):
        forecasting_data(np.array([1.0, np.nan] * 50), name="toy", lookback=2, horizon=1, season=1)
    with pytest.raises(ValueError, match="data.lookback must be a positive integer"):
        forecasting_data(_series(200), name="toy", lookback=0, horizon=1, season=1)


@pytest.mark.parametrize(
    "name, steps, channels, season",
    [
        ("elnino", 732, 1, 12),
        ("sunspots", 309, 1, 11),
        ("co2", 2284, 1, 52),
        ("nile", 100, 1, 1),
        ("macrodata", 203, 12, 4),
    ],
)
def test_statsmodels_series_load_offline(name, steps, channels, season):
    pytest.importorskip("statsmodels")
    dm = build_data(name)
    assert dm.task == "forecasting" and dm.info["num_steps"] == steps
    assert dm.info["num_channels"] == channels and dm.info["season"] == season
    assert len(dm.train) > 0 and len(dm.val) > 0 and len(dm.test) > 0
    item = dm.val[0]
    assert item["past_values"].shape == (dm.info["lookback"], channels)
    assert torch.isfinite(item["past_values"]).all()


def test_statsmodels_values_match_statsmodels_own_loader():
    sm = pytest.importorskip("statsmodels.datasets")
    dm = build_data("elnino", test_fraction=0.0, val_fraction=0.5, lookback=1, horizon=1)
    ours = np.concatenate([dm.train.original().numpy(), dm.val.original().numpy()])[:, 0]
    theirs = sm.elnino.load_pandas().data.iloc[:, 1:].to_numpy().ravel()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    co2 = build_data("co2", test_fraction=0.0, val_fraction=0.5, lookback=1, horizon=1)
    assert co2.train.times[0] == "1958-03-29"
    raw = sm.co2.load_pandas().data["co2"].to_numpy()
    ours = np.concatenate([co2.train.original().numpy(), co2.val.original().numpy()])[:, 0]
    ok = np.isfinite(raw)
    np.testing.assert_allclose(ours[ok], raw[ok], rtol=1e-5)  # the missing weeks are interpolated


def _table(tmp_path, suffix: str):
    import pandas as pd

    n = 120
    df = pd.DataFrame(
        {
            "date": pd.date_range("2000-01-01", periods=n, freq="D").astype(str),
            "sales": np.arange(n, dtype=float),
            "temp": np.arange(n, dtype=float) * 2,
            "label": ["x"] * n,
        }
    )
    df.loc[5, "sales"] = np.nan
    shuffled = df.sample(frac=1.0, random_state=0)
    path = tmp_path / f"series{suffix}"
    shuffled.to_parquet(path) if suffix == ".parquet" else shuffled.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_timeseries_file_sorts_by_time_and_interpolates(tmp_path, suffix):
    path = _table(tmp_path, suffix)
    with pytest.warns(UserWarning, match="1 missing value"):
        dm = build_data(
            "timeseries_file", path=str(path), time_column="date", lookback=8, horizon=4, season=7
        )
    assert dm.info["channel_names"] == ["sales", "temp"]  # numeric columns only
    series = np.concatenate(
        [dm.train.original().numpy(), dm.val.original().numpy(), dm.test.original().numpy()]
    )
    np.testing.assert_allclose(series[:, 0], np.arange(120.0), atol=1e-3)  # sorted; step 5 interpolated
    assert dm.train.times[0] == "2000-01-01"


def test_timeseries_file_errors_name_the_problem(tmp_path):
    import pandas as pd

    path = tmp_path / "dup.csv"
    pd.DataFrame({"t": [1, 1, 2] * 20, "v": np.arange(60.0)}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="duplicate time stamps"):
        build_data("timeseries_file", path=str(path), time_column="t", lookback=2, horizon=1)
    with pytest.raises(ValueError, match="no time column 'time'"):
        build_data("timeseries_file", path=str(path), time_column="time", lookback=2, horizon=1)
    with pytest.raises(ValueError, match=r"unknown value column\(s\) \['w'\]"):
        build_data("timeseries_file", path=str(path), value_columns=["w"], lookback=2, horizon=1)
    with pytest.raises(FileNotFoundError, match="time-series file not found"):
        build_data("timeseries_file", path=str(tmp_path / "missing.csv"))


def test_hf_timeseries_from_a_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    n = 90
    order = np.random.default_rng(0).permutation(n)
    ds = datasets.Dataset.from_dict({"step": order.tolist(), "value": (order * 0.5).tolist()})
    ds.save_to_disk(str(tmp_path / "saved"))
    dm = build_data(
        "hf_timeseries", path_or_hub_name=str(tmp_path / "saved"), time_column="step", lookback=6, horizon=3
    )
    assert dm.info["channel_names"] == ["value"] and dm.info["num_steps"] == n
    np.testing.assert_allclose(
        dm.train.original().numpy()[:, 0], np.arange(dm.info["splits"]["train"][1]) * 0.5, atol=1e-4
    )
    with pytest.raises(ValueError, match="no split 'validation'"):
        build_data("hf_timeseries", path_or_hub_name=str(tmp_path / "saved"), split="validation")
