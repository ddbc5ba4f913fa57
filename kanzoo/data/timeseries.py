"""Forecasting data: real series bundled with statsmodels, your CSV/parquet files, HF datasets.

Every builder returns a ``task="forecasting"`` :class:`DataModule` of sliding windows:

* The series ``(T, C)`` (time steps x channels) is cut **chronologically** into train / val / test
  segments (``1 - val_fraction - test_fraction`` / ``val_fraction`` / ``test_fraction`` of the steps).
* Windows of ``lookback + horizon`` consecutive steps are taken *inside* each segment (stride
  ``stride``), so no window straddles a boundary: nothing of the val or test period is seen while
  training, neither as input nor as target.
* Values are standardised per channel with the mean and standard deviation of the **train segment
  only**; the MASE scale (the in-sample mean absolute error of the seasonal-naive forecast, M4
  style) is also computed on the train segment, in original units.

Items are dicts of tensors: ``past_values (L, C)`` and ``future_values (H, C)`` (standardised),
``loc``/``scale (C,)`` (to undo the standardisation), ``mase_scale (C,)`` and ``start`` (index of the
window's first step in the full series). ``info`` carries ``lookback``, ``horizon``,
``num_channels``, ``season``, ``channel_names``, ``freq``, ``splits`` (step ranges) and the statistics.

Embedded series (statsmodels' bundled CSVs, read directly from the installed package; statsmodels
is needed only for these files): ``elnino`` (monthly Pacific sea-surface temperature 1950-2010,
season 12, the default), ``sunspots`` (yearly sunspot numbers 1700-2008, season 11), ``co2`` (weekly
Mauna Loa CO2 1958-2001, season 52, missing weeks interpolated), ``nile`` (yearly Nile flow
1871-1970, no season), ``macrodata`` (quarterly US macro series 1959-2009, 12 channels, season 4).
Your data: ``timeseries_file`` (CSV/TSV/parquet with a time column) and ``hf_timeseries`` (a saved
or hub Hugging Face dataset with a time column). This module imports no model code.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DataModule, check_path, register_dataset, warn_once

__all__ = [
    "ForecastWindows",
    "STATSMODELS_SERIES",
    "forecasting_data",
    "load_statsmodels_series",
    "mase_scale",
    "split_bounds",
]


# --------------------------------------------------------------------------------------------- windows


class ForecastWindows(Dataset):
    """Sliding ``(lookback, horizon)`` windows over one chronological segment.

    Args:
        values: Standardised segment ``(T_s, C)``.
        offset: Index of the segment's first step in the full series.
        lookback: Input steps ``L``.
        horizon: Target steps ``H``.
        stride: Steps between consecutive window starts.
        loc: Per-channel mean used for standardising ``(C,)``.
        scale: Per-channel standard deviation used for standardising ``(C,)``.
        mase_scale: Per-channel MASE denominator in original units ``(C,)``.
        times: Time labels of the segment's steps (strings), for plots and reports.
    """

    def __init__(
        self,
        *,
        values: torch.Tensor,
        offset: int,
        lookback: int,
        horizon: int,
        stride: int,
        loc: torch.Tensor,
        scale: torch.Tensor,
        mase_scale: torch.Tensor,
        times: Sequence[str] | None = None,
    ) -> None:
        self.values = values.float().contiguous()
        self.offset, self.lookback, self.horizon, self.stride = (
            int(offset),
            int(lookback),
            int(horizon),
            int(stride),
        )
        self.loc, self.scale, self.mase_scale = loc.float(), scale.float(), mase_scale.float()
        self.times = list(times) if times is not None else None
        span = self.lookback + self.horizon
        self._n = max(0, (self.values.shape[0] - span) // self.stride + 1)

    def __len__(self) -> int:
        return self._n

    def window_start(self, i: int) -> int:
        """Start of window ``i`` within the segment."""
        if not 0 <= i < self._n:
            raise IndexError(f"window {i} out of range (0..{self._n - 1})")
        return i * self.stride

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.window_start(int(i))
        mid = s + self.lookback
        return {
            "past_values": self.values[s:mid],
            "future_values": self.values[mid : mid + self.horizon],
            "loc": self.loc,
            "scale": self.scale,
            "mase_scale": self.mase_scale,
            "start": torch.tensor(self.offset + s, dtype=torch.long),
        }

    def original(self) -> torch.Tensor:
        """The segment in original units ``(T_s, C)``."""
        return self.values * self.scale + self.loc


# --------------------------------------------------------------------------------------------- core


def split_bounds(n: int, *, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """Chronological ``[start, stop)`` step ranges of the train / val (/ test) segments."""
    if not 0.0 < val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction must be in (0, 1) and test_fraction in [0, 1) with a sum below 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    n_train = n - n_val - n_test
    out = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
    if n_test > 0:
        out["test"] = (n_train + n_val, n)
    return out


def mase_scale(train: np.ndarray, season: int) -> np.ndarray:
    """Per-channel mean ``|y_t - y_{t-m}|`` over the training segment (the M4 MASE denominator).

    A channel whose seasonal differences are all zero falls back to the 1-step naive error, and to
    1.0 when that is zero too (a constant series), with a warning.
    """
    if season < 1 or season >= train.shape[0]:
        raise ValueError(
            f"season must be >= 1 and shorter than the training segment ({train.shape[0]} steps), "
            f"got {season}"
        )
    scale = np.abs(train[season:] - train[:-season]).mean(axis=0)
    naive = np.abs(np.diff(train, axis=0)).mean(axis=0) if train.shape[0] > 1 else np.zeros_like(scale)
    bad = ~(scale > 0)
    if bad.any():
        scale = np.where(bad, naive, scale)
        if not (scale > 0).all():
            warn_once("a constant training series has no MASE scale; using 1.0 for it")
            scale = np.where(scale > 0, scale, 1.0)
    return scale


def forecasting_data(
    values: np.ndarray,
    *,
    name: str,
    lookback: int,
    horizon: int,
    season: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    stride: int = 1,
    channel_names: Sequence[str] | None = None,
    times: Sequence[str] | None = None,
    freq: str | None = None,
    source: str = "",
) -> DataModule:
    """A forecasting :class:`DataModule` from a complete series ``values (T, C)`` (see the module doc).

    Args:
        values: The series, oldest step first; float, no missing values.
        name: Dataset name used in messages.
        lookback: Input window ``L``.
        horizon: Forecast length ``H``.
        season: Seasonal period ``m`` of the seasonal-naive forecast and MASE (1: no seasonality).
        val_fraction: Fraction of the steps in the val segment.
        test_fraction: Fraction of the steps in the test segment (0: none).
        stride: Steps between window starts.
        channel_names: One name per channel.
        times: One time label per step.
        freq: Sampling frequency description (``"monthly"``, ...).
        source: Where the data came from.

    Raises:
        ValueError: Bad sizes, missing values, or a segment too short for one window.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 1:
        raise ValueError(f"data={name}: expected a (time, channels) series, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"data={name}: the series has missing or non-finite values; fill them first")
    for key, v in (("lookback", lookback), ("horizon", horizon), ("stride", stride), ("season", season)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"data.{key} must be a positive integer, got {v!r}")
    n, c = values.shape
    names = list(channel_names) if channel_names is not None else [f"series_{i}" for i in range(c)]
    if len(names) != c:
        raise ValueError(f"data={name}: {len(names)} channel names for {c} channels")
    bounds = split_bounds(n, val_fraction=val_fraction, test_fraction=test_fraction)
    span = lookback + horizon
    for split, (a, b) in bounds.items():
        if b - a < span:
            raise ValueError(
                f"data={name}: the {split} segment has {b - a} of {n} steps, fewer than lookback + horizon "
                f"= {span}; lower data.lookback / data.horizon or change data.val_fraction / "
                "data.test_fraction"
            )
    a, b = bounds["train"]
    train = values[a:b]
    loc = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    mscale = mase_scale(train, season)
    z = torch.from_numpy((values - loc) / std).float()
    t_loc, t_scale, t_mase = (torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in (loc, std, mscale))
    labels = [str(t) for t in times] if times is not None else None
    if labels is not None and len(labels) != n:
        raise ValueError(f"data={name}: {len(labels)} time labels for {n} steps")

    def windows(split: str) -> ForecastWindows | None:
        if split not in bounds:
            return None
        s, e = bounds[split]
        return ForecastWindows(
            values=z[s:e], offset=s, lookback=lookback, horizon=horizon, stride=stride,
            loc=t_loc, scale=t_scale, mase_scale=t_mase, times=labels[s:e] if labels else None,
        )  # fmt: skip

    info = {
        "lookback": int(lookback),
        "horizon": int(horizon),
        "num_channels": int(c),
        "season": int(season),
        "channel_names": names,
        "freq": freq,
        "splits": {k: list(v) for k, v in bounds.items()},
        "num_steps": int(n),
        "loc": loc.tolist(),
        "scale": std.tolist(),
        "mase_scale": mscale.tolist(),
        "source": source,
    }
    return DataModule(
        task="forecasting", train=windows("train"), val=windows("val"), test=windows("test"), info=info
    )


# --------------------------------------------------------------------------------------------- statsmodels

# name -> (csv file, frequency, default season, default lookback, default horizon)
STATSMODELS_SERIES: dict[str, tuple[str, str, int, int, int]] = {
    "elnino": ("elnino/elnino.csv", "monthly", 12, 36, 12),
    "sunspots": ("sunspots/sunspots.csv", "yearly", 11, 22, 11),
    "co2": ("co2/co2.csv", "weekly", 52, 104, 52),
    "nile": ("nile/nile.csv", "yearly", 1, 8, 4),
    "macrodata": ("macrodata/macrodata.csv", "quarterly", 4, 16, 4),
}


def _statsmodels_file(relative: str, name: str) -> Path:
    spec = importlib.util.find_spec("statsmodels")
    if spec is None or spec.origin is None:
        raise OSError(
            f"data={name} reads the series bundled with statsmodels, which is not installed; "
            "pip install statsmodels (the kanzoo[timeseries] extra)"
        )
    path = Path(spec.origin).parent / "datasets" / relative
    if not path.is_file():
        raise OSError(f"data={name}: {path} is missing from the installed statsmodels")
    return path


def _read_numeric_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip().strip('"') for h in rows[0]]
    body = [[float(v) if v.strip() not in ("", "NA", "nan") else math.nan for v in r] for r in rows[1:] if r]
    return header, np.asarray(body, dtype=np.float64)


def _interpolate(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Linear interpolation over missing steps per channel (edges take the nearest value)."""
    out = values.copy()
    missing = 0
    idx = np.arange(values.shape[0])
    for j in range(values.shape[1]):
        bad = ~np.isfinite(out[:, j])
        if bad.all():
            raise ValueError(f"channel {j} has no finite value")
        if bad.any():
            missing += int(bad.sum())
            out[bad, j] = np.interp(idx[bad], idx[~bad], out[~bad, j])
    return out, missing


def load_statsmodels_series(name: str) -> tuple[np.ndarray, list[str], list[str], str, int]:
    """``(values (T, C), channel_names, time_labels, freq, season)`` of a bundled statsmodels series."""
    if name not in STATSMODELS_SERIES:
        raise ValueError(f"unknown statsmodels series {name!r}; available: {', '.join(STATSMODELS_SERIES)}")
    relative, freq, season, _, _ = STATSMODELS_SERIES[name]
    header, table = _read_numeric_csv(_statsmodels_file(relative, name))
    if name == "elnino":  # one row per year, one column per month
        years = table[:, 0].astype(int)
        values = table[:, 1:].reshape(-1, 1)
        times = [f"{y}-{m:02d}" for y in years for m in range(1, 13)]
        names = ["sst"]
    elif name == "co2":  # yyyymmdd, value (missing weeks as empty fields)
        times = [f"{int(d) // 10000}-{int(d) // 100 % 100:02d}-{int(d) % 100:02d}" for d in table[:, 0]]
        values, names = table[:, 1:], ["co2"]
    elif name == "macrodata":  # year, quarter, 12 series
        times = [f"{int(y)}Q{int(q)}" for y, q in table[:, :2]]
        values, names = table[:, 2:], header[2:]
    else:  # sunspots, nile: year, value
        times = [str(int(y)) for y in table[:, 0]]
        values, names = table[:, 1:], [h.lower() for h in header[1:]]
    values, missing = _interpolate(values)
    if missing:
        warn_once(f"data={name}: {missing} missing step(s) filled by linear interpolation")
    return values, names, times, freq, season


def _register_statsmodels(name: str, description: str) -> None:
    _, _, season, lookback, horizon = STATSMODELS_SERIES[name]

    def build(
        *,
        lookback: int = lookback,
        horizon: int = horizon,
        season: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        stride: int = 1,
        channels: Sequence[str] | None = None,
    ) -> DataModule:
        values, names, times, freq, default_season = load_statsmodels_series(name)
        if channels is not None:
            values, names = _select(values, names, channels, name)
        return forecasting_data(
            values, name=name, lookback=lookback, horizon=horizon,
            season=default_season if season is None else season, val_fraction=val_fraction,
            test_fraction=test_fraction, stride=stride, channel_names=names, times=times, freq=freq,
            source=f"statsmodels.datasets.{name}",
        )  # fmt: skip

    build.__name__ = f"build_{name}"
    build.__doc__ = f"""{description} (statsmodels' bundled CSV; offline).

    Args:
        lookback: Input window (default {lookback}).
        horizon: Forecast length (default {horizon}).
        season: Seasonal period of the seasonal-naive forecast and MASE (default {season}).
        val_fraction: Chronological fraction of steps for val.
        test_fraction: Chronological fraction of steps for test (0: none).
        stride: Steps between window starts.
        channels: Keep only these channels (by name); default all.
    """
    register_dataset(name, description)(build)


def _select(values: np.ndarray, names: list[str], channels: Sequence[str], what: str):
    missing = [c for c in channels if c not in names]
    if missing or not channels:
        raise ValueError(
            f"data={what}: unknown channel(s) {missing or channels}; available: {', '.join(names)}"
        )
    idx = [names.index(c) for c in channels]
    return values[:, idx], [names[i] for i in idx]


_register_statsmodels("elnino", "Monthly Pacific El Nino sea-surface temperature 1950-2010 (732 steps)")
_register_statsmodels("sunspots", "Yearly sunspot numbers 1700-2008 (309 steps)")
_register_statsmodels("co2", "Weekly Mauna Loa atmospheric CO2 1958-2001 (2284 steps)")
_register_statsmodels("nile", "Yearly Nile river flow at Aswan 1871-1970 (100 steps)")
_register_statsmodels("macrodata", "Quarterly US macroeconomic series 1959-2009 (203 steps, 12 channels)")


# --------------------------------------------------------------------------------------------- your data


def _from_columns(
    columns: dict[str, np.ndarray],
    *,
    what: str,
    time_column: str | None,
    value_columns: Sequence[str] | None,
    fill: str,
) -> tuple[np.ndarray, list[str], list[str] | None]:
    """``(values, names, time labels)`` from a column table, sorted by time."""
    if fill not in ("interpolate", "error"):
        raise ValueError(f"data.fill must be 'interpolate' or 'error', got {fill!r}")
    available = list(columns)
    if time_column is not None and time_column not in columns:
        raise ValueError(f"{what}: no time column {time_column!r}; columns: {', '.join(available)}")
    if value_columns is None:
        value_columns = [
            c for c in available
            if c != time_column and np.issubdtype(np.asarray(columns[c]).dtype, np.number)
        ]  # fmt: skip
        if not value_columns:
            raise ValueError(
                f"{what}: no numeric column besides the time column; columns: {', '.join(available)}"
            )
    else:
        value_columns = list(value_columns)
        unknown = [c for c in value_columns if c not in columns]
        if unknown:
            raise ValueError(f"{what}: unknown value column(s) {unknown}; columns: {', '.join(available)}")
    try:
        values = np.stack([np.asarray(columns[c], dtype=np.float64) for c in value_columns], axis=1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: value columns {value_columns} must be numeric ({err})") from None
    times = None
    if time_column is not None:
        t = np.asarray(columns[time_column])
        key = _time_key(t, what, time_column)
        order = np.argsort(key, kind="stable")
        if (np.diff(key[order]) == 0).any():
            raise ValueError(f"{what}: the time column {time_column!r} has duplicate time stamps")
        values, times = values[order], [str(v) for v in t[order]]
    if not np.isfinite(values).all():
        if fill == "error":
            raise ValueError(
                f"{what}: {int((~np.isfinite(values)).sum())} missing value(s); set data.fill=interpolate"
            )
        values, missing = _interpolate(values)
        warn_once(f"{what}: {missing} missing value(s) filled by linear interpolation")
    return values, value_columns, times


def _time_key(t: np.ndarray, what: str, column: str) -> np.ndarray:
    """Sortable numbers for a time column (numbers as is, else parsed as datetimes)."""
    if np.issubdtype(t.dtype, np.number):
        return t.astype(np.float64)
    if np.issubdtype(t.dtype, np.datetime64):
        return t.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    try:
        return np.asarray([np.datetime64(str(v), "ns") for v in t]).astype(np.int64).astype(np.float64)
    except ValueError:
        raise ValueError(
            f"{what}: time column {column!r} is neither numeric nor ISO dates (e.g. {str(t[0])!r})"
        ) from None


def _read_table(path: Path) -> dict[str, np.ndarray]:
    from kanzoo._extras import import_extra

    pd = import_extra("pandas", needed_by=f"reading {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            df = pd.read_csv(path)
        elif suffix == ".tsv":
            df = pd.read_csv(path, sep="\t")
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet")
    except (OSError, ValueError):
        raise
    except Exception as err:  # parser errors of pandas / pyarrow
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {err}") from None
    return {str(c): df[c].to_numpy() for c in df.columns}


@register_dataset("timeseries_file", "Your series: a CSV/TSV/parquet file with a time column")
def build_timeseries_file(
    *,
    path: str | os.PathLike,
    time_column: str | None = None,
    value_columns: Sequence[str] | None = None,
    season: int = 1,
    lookback: int = 36,
    horizon: int = 12,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    stride: int = 1,
    fill: str = "interpolate",
    freq: str | None = None,
) -> DataModule:
    """Forecasting windows over the numeric columns of a table file, sorted by ``time_column``.

    Args:
        path: ``.csv``, ``.tsv`` or ``.parquet`` file, one row per time step.
        time_column: Column giving the time (numbers or ISO dates); rows are sorted by it and
            duplicates are refused. None: the file order is the time order.
        value_columns: Series to forecast (default: every numeric column except the time column).
        season: Seasonal period (12 for monthly data with a yearly cycle, 1 for none).
        lookback: Input window.
        horizon: Forecast length.
        val_fraction: Chronological fraction of steps for val.
        test_fraction: Chronological fraction of steps for test (0: none).
        stride: Steps between window starts.
        fill: ``"interpolate"`` missing values linearly, or ``"error"``.
        freq: Frequency description recorded in ``info``.
    """
    p = check_path(path, "time-series file")
    values, names, times = _from_columns(
        _read_table(p), what=str(p), time_column=time_column, value_columns=value_columns, fill=fill
    )
    return forecasting_data(
        values, name="timeseries_file", lookback=lookback, horizon=horizon, season=season,
        val_fraction=val_fraction, test_fraction=test_fraction, stride=stride, channel_names=names,
        times=times, freq=freq, source=str(p),
    )  # fmt: skip


@register_dataset("hf_timeseries", "A Hugging Face dataset (saved folder or hub name) with a time column")
def build_hf_timeseries(
    *,
    path_or_hub_name: str | os.PathLike,
    time_column: str | None = None,
    value_columns: Sequence[str] | None = None,
    split: str = "train",
    config_name: str | None = None,
    season: int = 1,
    lookback: int = 36,
    horizon: int = 12,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    stride: int = 1,
    fill: str = "interpolate",
    freq: str | None = None,
) -> DataModule:
    """Forecasting windows over the numeric columns of one split of a Hugging Face dataset.

    The split holds the whole series, one row per time step (train/val/test are cut from it
    chronologically, as for every forecasting builder).

    Args:
        path_or_hub_name: A ``save_to_disk`` folder or a hub dataset name (needs the network).
        time_column: Time column (numbers or ISO dates); None: the row order is the time order.
        value_columns: Series to forecast (default: every numeric column except the time column).
        split: Dataset split holding the series.
        config_name: Hub configuration name.
        season: Seasonal period.
        lookback: Input window.
        horizon: Forecast length.
        val_fraction: Chronological fraction of steps for val.
        test_fraction: Chronological fraction of steps for test (0: none).
        stride: Steps between window starts.
        fill: ``"interpolate"`` missing values linearly, or ``"error"``.
        freq: Frequency description recorded in ``info``.
    """
    from .image import load_hf_dataset

    ds = load_hf_dataset(path_or_hub_name, config_name=config_name)
    if split not in ds:
        raise ValueError(f"dataset {path_or_hub_name!s} has no split {split!r} (splits: {', '.join(ds)})")
    table = ds[split]
    columns = {c: np.asarray(table[c]) for c in table.column_names}
    values, names, times = _from_columns(
        columns, what=str(path_or_hub_name), time_column=time_column, value_columns=value_columns, fill=fill
    )
    return forecasting_data(
        values, name="hf_timeseries", lookback=lookback, horizon=horizon, season=season,
        val_fraction=val_fraction, test_fraction=test_fraction, stride=stride, channel_names=names,
        times=times, freq=freq, source=str(path_or_hub_name),
    )  # fmt: skip
