"""ERA5 as trajectory splits: the data step of the ERA5 pilot.

Reads a WeatherBench2 ERA5 store (registry name or path, `era5_store`), keeps a
few channels ("name" for surface variables, "name@level" for a pressure level,
as `era5_batches.channel_names`), subsamples time to the model step and cuts
each period (train / validation / test years) into non-overlapping windows of
num_steps + 1 states, written in the project's trajectory format
(`trajectories`; dims trajectory, time, latitude, longitude with latitude
ASCENDING), so train-ardm / train-controller / evaluate work unchanged.

States are standardised per channel with the mean m_c and standard deviation
s_c of the TRAINING states (all times and grid points),

    x_c = (X_c - m_c) / s_c,

and (m_c, s_c) are stored as the variable attributes `normalization_mean` /
`normalization_std`, so physical values are X_c = s_c x_c + m_c. A regime's
noise_std is therefore in units of s_c: per-variable observation errors
sigma_c = noise_std * s_c in physical units.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.configs import stores as store_registry
from gencast_control.data.era5_schema import (check_variables, format_timedelta,
                                              standardize_grid, store_time_step)
from gencast_control.data.era5_store import open_store

SPATIAL_DIMS = ("latitude", "longitude")
MEAN_ATTR, STD_ATTR = "normalization_mean", "normalization_std"


@dataclasses.dataclass(frozen=True)
class ERA5DataConfig:
  """Where the pilot's trajectories come from.

  Attributes:
    store: registry name (configs/stores.py) or a gs:// / local zarr path.
    channels: "name" (surface) or "name@level" (pressure level in hPa).
    step_hours: model time step; a multiple of the store's time step.
    train_period, validation_period, test_period: (first, last) day, ISO
      strings, inclusive (e.g. ("2008-01-01", "2017-12-31")).
    timeout_s: deadline for opening a gs:// store (era5_store.open_store).
  """
  store: str = "era5_5p625deg_6h"
  channels: tuple[str, ...] = ("geopotential@500", "temperature@850",
                               "2m_temperature")
  step_hours: int = 12
  train_period: tuple[str, str] = ("2008-01-01", "2017-12-31")
  validation_period: tuple[str, str] = ("2018-01-01", "2018-12-31")
  test_period: tuple[str, str] = ("2020-01-01", "2020-12-31")
  timeout_s: float = 60.0

  def __post_init__(self):
    if not self.channels:
      raise ValueError("ERA5DataConfig.channels must name at least one channel")
    if len(set(self.channels)) != len(self.channels):
      raise ValueError(f"duplicate channels in {self.channels}")
    if self.step_hours < 1:
      raise ValueError(f"step_hours must be >= 1, got {self.step_hours}")
    for name in ("train_period", "validation_period", "test_period"):
      first, last = getattr(self, name)
      if pd.Timestamp(first) > pd.Timestamp(last):
        raise ValueError(f"{name} {(first, last)} ends before it starts")

  def prepare(self, out_dir) -> "ERA5DataConfig":
    """The config that reads the data (`pipeline.simulate` calls this before
    the data step); an existing store needs nothing."""
    del out_dir
    return self


def parse_channel(channel: str) -> tuple[str, int | None]:
  """'temperature@850' -> ('temperature', 850); '2m_temperature' -> (.., None)."""
  name, sep, level = channel.partition("@")
  if not name or (sep and not level.isdigit()):
    raise ValueError(f"channel {channel!r} must be 'name' or 'name@level'"
                     " (level in hPa, e.g. 'temperature@850')")
  return name, int(level) if sep else None


def _channel_values(grid: xr.Dataset, channel: str, idx: np.ndarray
                    ) -> np.ndarray:
  """[len(idx), lat, lon] float32 of one channel at time indices `idx`."""
  name, level = parse_channel(channel)
  var = grid[name]
  has_level = "level" in var.dims
  if level is None and has_level:
    raise ValueError(
        f"{name!r} has pressure levels {grid['level'].values.tolist()}; name"
        f" one as '{name}@LEVEL'")
  if level is not None:
    if not has_level:
      raise ValueError(f"{name!r} is a surface variable; drop '@{level}'")
    levels = grid["level"].values.tolist()
    if level not in levels:
      raise ValueError(f"level {level} of {channel!r} is not in the store;"
                       f" levels: {levels}")
    var = var.sel(level=level)
  extra = [d for d in var.dims if d not in ("time", "lat", "lon")]
  if extra:
    raise ValueError(f"{channel!r} has unexpected dims {extra}")
  values = np.asarray(var.isel(time=idx).transpose("time", "lat", "lon")
                      .values, np.float32)
  bad = ~np.isfinite(values)
  if bad.any():
    raise ValueError(f"channel {channel!r} has {int(bad.sum())} NaN/inf"
                     " value(s) in the selected times")
  return values


def _check_grid(grid: xr.Dataset, store: str, state_shape: Sequence[int],
                channels: Sequence[str]) -> None:
  lat, lon = grid["lat"].values, grid["lon"].values
  expected = (lat.size, lon.size, len(channels))
  if tuple(state_shape) != expected:
    raise ValueError(
        f"store {store!r} has a {lat.size} x {lon.size} (lat x lon) grid and"
        f" {len(channels)} channel(s) but the config's ARDM expects"
        f" state_shape {tuple(state_shape)}; set ardm.state_shape ="
        f" {expected} or use a store with that grid")
  if store in store_registry.STORES:
    spec = store_registry.get_store(store)
    if (spec.num_lat, spec.num_lon) != (lat.size, lon.size):
      raise ValueError(
          f"store {store!r} is registered as {spec.num_lat} x {spec.num_lon}"
          f" but has {lat.size} x {lon.size} points")
  dlon = np.diff(lon.astype(np.float64))
  if lon.size > 1 and not (np.allclose(dlon, dlon[0], rtol=1e-3)
                           and np.isclose(dlon[0] * lon.size, 360.0,
                                          rtol=1e-3)):
    raise ValueError(
        "longitudes must be uniform and span the globe (the pilot's ARDM is"
        f" periodic in longitude); got {lon.size} points {lon[0]:g} .."
        f" {lon[-1]:g}")


def _windows(times: np.ndarray, period: tuple[str, str], stride: int,
             length: int, count: int, split: str) -> np.ndarray:
  """[W, length] store time indices of evenly spread windows in `period`.

  The period's store times from its first time on, every `stride`-th, are cut
  into non-overlapping windows of `length` states; `count` > 0 keeps that many,
  evenly spread over the period (0 keeps all).
  """
  index = pd.DatetimeIndex(times)
  first, last = pd.Timestamp(period[0]), pd.Timestamp(period[1])
  last = last + pd.Timedelta(days=1) if last == last.normalize() else last
  inside = np.flatnonzero((index >= first) & (index < last))
  if inside.size == 0:
    raise ValueError(
        f"{split} period {period[0]} .. {period[1]} has no times in the store"
        f" (it covers {index[0]:%Y-%m-%dT%H:%M} .. {index[-1]:%Y-%m-%dT%H:%M})")
  idx = inside[::stride]
  available = idx.size // length
  if available == 0:
    raise ValueError(
        f"{split} period {period[0]} .. {period[1]} has {idx.size} model"
        f" states but one trajectory needs {length} (data.num_steps + 1)")
  windows = idx[:available * length].reshape(available, length)
  if 0 < count < available:
    windows = windows[np.unique(np.linspace(0, available - 1, count)
                                .round().astype(int))]
  return windows


def _dataset(values: np.ndarray, channels: Sequence[str], grid: xr.Dataset,
             starts: np.ndarray, step_hours: int, mean: np.ndarray,
             std: np.ndarray, source: str) -> xr.Dataset:
  """Trajectory dataset from standardised [W, T+1, lat, lon, C] values."""
  dims = ("trajectory", "time") + SPATIAL_DIMS
  data = {}
  for c, channel in enumerate(channels):
    name, _ = parse_channel(channel)
    attrs = {MEAN_ATTR: float(mean[c]), STD_ATTR: float(std[c])}
    if "units" in grid[name].attrs:
      attrs["units"] = str(grid[name].attrs["units"])
    data[channel] = (dims, values[..., c], attrs)
  coords = {
      "trajectory": np.arange(values.shape[0]),
      "time": np.arange(values.shape[1]) * float(step_hours),
      "latitude": grid["lat"].values.astype(np.float32),
      "longitude": grid["lon"].values.astype(np.float32),
      "start_time": ("trajectory", starts.astype("datetime64[ns]")),
  }
  ds = xr.Dataset(data, coords=coords,
                  attrs={"source": source, "step_hours": step_hours,
                         "description": "ERA5 channels standardised with the"
                         " training-period mean/std (variable attrs)"})
  ds["time"].attrs["description"] = "lead time in hours from start_time"
  return ds


def extract_splits(data: ERA5DataConfig, num_steps: int,
                   counts: dict[str, int], state_shape: Sequence[int]
                   ) -> dict[str, xr.Dataset]:
  """Reads the store and returns standardised train/validation/test splits.

  Args:
    data: the store, channels, step and periods.
    num_steps: T; each trajectory holds T + 1 states data.step_hours apart.
    counts: {split: maximum number of trajectories} (0 = all windows).
    state_shape: the ARDM's (lat, lon, C), checked against the store.
  Raises:
    era5_store.StoreUnavailableError: the store cannot be opened in time.
    ValueError: missing variables or levels, a grid other than state_shape,
      a step that is not a multiple of the store's, too-short periods, NaNs.
  """
  if num_steps < 1:
    raise ValueError(f"data.num_steps must be >= 1, got {num_steps}")
  dataset = open_store(data.store, timeout_s=data.timeout_s)
  names = [parse_channel(c)[0] for c in data.channels]
  check_variables(dataset, list(dict.fromkeys(names)))
  if "time" not in dataset.coords:
    raise ValueError(f"store {data.store!r} has no time coordinate (a"
                     " climatology?); the pilot needs an ERA5 store")
  grid = standardize_grid(dataset[list(dict.fromkeys(names))], 1,
                          require_poles=False)
  _check_grid(grid, data.store, state_shape, data.channels)
  times = np.asarray(grid["time"].values, "datetime64[ns]")
  store_step = store_time_step(times)
  step = np.timedelta64(data.step_hours, "h").astype("timedelta64[ns]")
  if step % store_step:
    raise ValueError(f"step_hours {data.step_hours} is not a multiple of the"
                     f" store's time step {format_timedelta(store_step)}")
  stride = int(step // store_step)
  periods = {"train": data.train_period, "validation": data.validation_period,
             "test": data.test_period}
  raw = {}
  for split, period in periods.items():
    windows = _windows(times, period, stride, num_steps + 1,
                       counts.get(split, 0), split)
    flat = windows.ravel()
    values = np.stack([_channel_values(grid, c, flat) for c in data.channels],
                      axis=-1)
    raw[split] = (values.reshape(windows.shape + values.shape[1:]),
                  times[windows[:, 0]])
  train = raw["train"][0]
  axes = tuple(range(train.ndim - 1))
  mean = train.mean(axes, dtype=np.float64)
  std = train.std(axes, dtype=np.float64)
  if np.any(std <= 0):
    raise ValueError(f"channel(s) {[c for c, s in zip(data.channels, std) if s <= 0]}"
                     " are constant over the training period")
  return {split: _dataset(((values - mean) / std).astype(np.float32),
                          data.channels, grid, starts, data.step_hours, mean,
                          std, data.store)
          for split, (values, starts) in raw.items()}


def channel_stds(ds: xr.Dataset, channels: Sequence[str]) -> np.ndarray:
  """[C] physical standard deviations s_c stored by `extract_splits`."""
  missing = [c for c in channels if STD_ATTR not in ds[c].attrs]
  if missing:
    raise ValueError(f"channel(s) {missing} carry no {STD_ATTR!r} attribute:"
                     " not written by the ERA5 data step")
  return np.asarray([ds[c].attrs[STD_ATTR] for c in channels], np.float64)
