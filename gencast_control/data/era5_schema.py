"""The WeatherBench2 / GenCast data contract: names, grid, times, checks.

WeatherBench2 stores (Rasp et al. 2024) use dims time/level/latitude/longitude
(the 0.25 deg store has latitude DESCENDING) and `realization` for ensemble
members; GenCast (Price et al. 2024, Nature; graphcast's gencast.py and
data_utils.py) uses batch/time/level/lat/lon with lat ASCENDING, `sample` for
members and a timedelta `time`. `WB2_TO_GENCAST` is the one place where names
are converted. Every check raises ValueError naming the exact problem.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

# The one name conversion table: WeatherBench2 name -> GenCast name.
WB2_TO_GENCAST: dict[str, str] = {
    "latitude": "lat",
    "longitude": "lon",
    "realization": "sample",
}
GENCAST_TO_WB2: dict[str, str] = {v: k for k, v in WB2_TO_GENCAST.items()}

SST = "sea_surface_temperature"
PROGRESS_FORCINGS = ("year_progress_sin", "year_progress_cos",
                     "day_progress_sin", "day_progress_cos")
SECONDS_PER_DAY = 86400.0
AVG_DAYS_PER_YEAR = 365.24219  # mean tropical year, as in GenCast.


# ---------------------------------------------------------------- forcings --
def progress_forcings(datetimes: np.ndarray, lon: np.ndarray
                      ) -> dict[str, np.ndarray]:
  """Year and day progress features of GenCast.

  With s the seconds since 1970-01-01 and lambda the longitude in degrees,

    year_progress = (s / 86400 / 365.24219) mod 1,
    day_progress  = (s / 86400 mod 1 + lambda / 360) mod 1   (local solar day),

  and each feature p gives sin(2 pi p), cos(2 pi p) (float32).

  Args:
    datetimes: datetime64 array of any shape S.
    lon: [L] longitudes in degrees.
  Returns:
    year_progress_{sin,cos} of shape S, day_progress_{sin,cos} of shape S + [L].
  """
  seconds = np.asarray(datetimes, "datetime64[s]").astype(np.int64)
  year = np.mod(seconds / SECONDS_PER_DAY / AVG_DAYS_PER_YEAR, 1.0)
  day = np.mod(np.mod(seconds, 86400)[..., None] / SECONDS_PER_DAY
               + np.asarray(lon, np.float64) / 360.0, 1.0)
  out = {}
  for name, p in (("year_progress", year), ("day_progress", day)):
    out[f"{name}_sin"] = np.sin(2 * np.pi * p).astype(np.float32)
    out[f"{name}_cos"] = np.cos(2 * np.pi * p).astype(np.float32)
  return out


# ---------------------------------------------------------------- the grid --
def to_gencast_names(dataset: xr.Dataset) -> xr.Dataset:
  """Renames WeatherBench2 dims/coords to GenCast's (latitude -> lat, ...)."""
  return dataset.rename({k: v for k, v in WB2_TO_GENCAST.items()
                         if k in dataset.variables or k in dataset.dims})


def to_wb2_names(dataset: xr.Dataset) -> xr.Dataset:
  """Renames GenCast dims/coords to WeatherBench2's (lat -> latitude, ...)."""
  return dataset.rename({k: v for k, v in GENCAST_TO_WB2.items()
                         if k in dataset.variables or k in dataset.dims})


def standardize_grid(dataset: xr.Dataset, resolution_step: int = 1,
                     require_poles: bool = True) -> xr.Dataset:
  """Validated GenCast grid: names lat/lon, every k-th point, lat ascending.

  Args:
    dataset: WeatherBench2 (latitude/longitude) or GenCast (lat/lon) names.
    resolution_step: keep every k-th latitude and longitude (4: GenCast 1 deg
      from the 0.25 deg store). k must divide (num_lat - 1) when the poles are
      required and num_lon always, so the coarse grid stays equiangular.
    require_poles: demand latitudes +-90 (GenCast's spherical noise needs them).
  Raises:
    ValueError: missing lat/lon, unsorted or non-uniform coordinates, a step
      that does not divide the grid, or no poles where required.
  """
  dataset = to_gencast_names(dataset)
  for name in ("lat", "lon"):
    if name not in dataset.coords:
      raise ValueError(
          f"dataset has no {GENCAST_TO_WB2[name]!r} (or {name!r}) coordinate;"
          f" coordinates: {sorted(map(str, dataset.coords))}")
  if not isinstance(resolution_step, (int, np.integer)) or resolution_step < 1:
    raise ValueError(f"resolution_step must be a positive integer, got"
                     f" {resolution_step!r}")
  lat = dataset["lat"].values.astype(np.float64)
  lon = dataset["lon"].values.astype(np.float64)
  dlat = np.diff(lat)
  if lat.size > 1 and not (np.all(dlat > 0) or np.all(dlat < 0)):
    raise ValueError(
        "latitude is not sorted (neither strictly ascending nor descending):"
        f" first values {lat[:5].tolist()}")
  if np.any(np.diff(lon) <= 0):
    raise ValueError(f"longitude is not strictly ascending: first values"
                     f" {lon[:5].tolist()}")
  if lat.size > 1 and not np.allclose(np.abs(dlat), abs(dlat[0]), rtol=1e-3):
    raise ValueError("latitude spacing is not uniform (not an equiangular"
                     " grid)")
  step = int(resolution_step)
  if step > 1:
    if require_poles and (lat.size - 1) % step:
      raise ValueError(
          f"resolution_step {step} does not divide num_lat - 1 = {lat.size-1}:"
          " the subsampled grid would lose a pole")
    if lon.size % step:
      raise ValueError(f"resolution_step {step} does not divide num_lon ="
                       f" {lon.size}: the subsampled longitudes would not be"
                       " uniform around the globe")
    dataset = dataset.isel(lat=slice(None, None, step),
                           lon=slice(None, None, step))
  lat = dataset["lat"].values
  if lat.size > 1 and lat[0] > lat[-1]:  # descending (0.25 deg store)
    dataset = dataset.isel(lat=slice(None, None, -1))
  if require_poles:
    lat = dataset["lat"].values
    if not (np.isclose(lat[0], -90.0) and np.isclose(lat[-1], 90.0)):
      raise ValueError(
          f"the grid has no poles (latitudes {lat[0]:g} .. {lat[-1]:g});"
          " GenCast needs an equiangular grid including +-90 (pass"
          " require_poles=False for other models)")
  return dataset


# ------------------------------------------------------------------- times --
def as_datetimes(init_time) -> np.ndarray:
  """A datetime-like or a sequence of them as a 1-D datetime64[ns] array."""
  values = np.atleast_1d(np.asarray(
      pd.to_datetime(init_time if np.ndim(init_time) else [init_time])))
  return values.astype("datetime64[ns]")


def format_timedelta(delta) -> str:
  """'6h', '30min', '1d' style text for a timedelta."""
  seconds = pd.Timedelta(delta).total_seconds()
  if seconds == 0:
    return "0h"
  for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
    if seconds % size == 0:
      return f"{int(seconds // size)}{unit}"
  return str(pd.Timedelta(delta))


def store_time_step(times: np.ndarray) -> np.timedelta64:
  """The uniform step of a datetime axis; ValueError if not uniform."""
  times = np.asarray(times, "datetime64[ns]")
  if times.size < 2:
    raise ValueError(f"the store has {times.size} time(s); need at least 2")
  steps = np.unique(np.diff(times))
  if steps.size != 1 or steps[0] <= np.timedelta64(0, "ns"):
    raise ValueError(
        "the store's time coordinate is not uniformly increasing: steps"
        f" {[format_timedelta(s) for s in steps[:5]]}")
  return steps[0]


def time_indices(times: np.ndarray, wanted: np.ndarray) -> np.ndarray:
  """Indices of `wanted` datetimes in `times`; ValueError names a missing one."""
  index = pd.DatetimeIndex(np.asarray(times, "datetime64[ns]"))
  wanted = np.asarray(wanted, "datetime64[ns]")
  positions = index.get_indexer(wanted.ravel())
  if np.any(positions < 0):
    missing = pd.Timestamp(wanted.ravel()[np.argmax(positions < 0)])
    raise ValueError(
        f"time {missing} is not in the store (it covers {index[0]} .."
        f" {index[-1]} every {format_timedelta(index[1] - index[0])})")
  return positions.reshape(wanted.shape)


# ------------------------------------------------------------- validation --
def check_variables(dataset: xr.Dataset, names: Sequence[str]) -> None:
  """ValueError naming every missing variable and listing the available ones."""
  missing = [n for n in names if n not in dataset.data_vars]
  if missing:
    raise ValueError(
        f"variable(s) {missing} not in the store; available:"
        f" {sorted(map(str, dataset.data_vars))}")


def _first_nan(var: xr.DataArray, where: np.ndarray) -> str:
  """'batch=0, time=-12h (2020-01-01T12:00), lat=70.0, lon=0.0' of a NaN."""
  idx = dict(zip(var.dims, np.unravel_index(int(np.argmax(where)),
                                            where.shape)))
  parts = []
  for dim, i in idx.items():
    if dim not in var.coords:
      parts.append(f"{dim}={i}")
      continue
    value = var[dim].values[i]
    if isinstance(value, np.timedelta64):
      text = format_timedelta(value)
      if "datetime" in var.coords and set(var["datetime"].dims) <= set(idx):
        when = var["datetime"].values[tuple(idx[d]
                                            for d in var["datetime"].dims)]
        text += f" ({pd.Timestamp(when):%Y-%m-%dT%H:%M})"
      parts.append(f"{dim}={text}")
    elif isinstance(value, np.datetime64):
      parts.append(f"{dim}={pd.Timestamp(value):%Y-%m-%dT%H:%M}")
    else:
      parts.append(f"{dim}={value}")
  return ", ".join(parts)


def check_nans(dataset: xr.Dataset, land_sea_mask: xr.DataArray | None,
               sst_land_threshold: float | None = 0.5) -> None:
  """Raises ValueError for NaN anywhere except SST over land.

  SST may be NaN where land_sea_mask > sst_land_threshold (ERA5 leaves SST
  undefined over land; GenCast fills these points, see the module docstring).
  sst_land_threshold=None accepts NaN SST anywhere.
  """
  for name, var in dataset.data_vars.items():
    if not np.issubdtype(var.dtype, np.floating):
      continue
    nan = np.isnan(var.values)
    if not nan.any():
      continue
    if name == SST:
      if sst_land_threshold is None:
        continue
      if land_sea_mask is None:
        raise ValueError(
            "sea_surface_temperature has NaNs but the store has no"
            " land_sea_mask to check that they lie over land (pass"
            " sst_land_threshold=None to accept them)")
      sea = (land_sea_mask <= sst_land_threshold).broadcast_like(var)
      nan = nan & sea.transpose(*var.dims).values
      if nan.any():
        raise ValueError(
            f"sea_surface_temperature is NaN at {int(nan.sum())} sea point(s)"
            f" (land_sea_mask <= {sst_land_threshold}), first at"
            f" {_first_nan(var, nan)}; ERA5 SST may be NaN only over land")
      continue
    raise ValueError(f"variable {name!r} has {int(nan.sum())} NaN value(s),"
                     f" first at {_first_nan(var, nan)}")


def validate_gencast_dataset(dataset: xr.Dataset) -> None:
  """Checks GenCast layout: lat/lon/time present, lat strictly ascending."""
  for name in ("lat", "lon", "time"):
    if name not in dataset.coords:
      raise ValueError(f"not a GenCast dataset: no {name!r} coordinate"
                       f" (coordinates: {sorted(map(str, dataset.coords))})")
  lat = dataset["lat"].values
  if lat.size > 1 and not np.all(np.diff(lat) > 0):
    raise ValueError("GenCast datasets need latitude strictly ascending; got"
                     f" {lat[:3].tolist()} ... {lat[-3:].tolist()}")
  if not np.issubdtype(dataset["time"].dtype, np.timedelta64):
    raise ValueError(f"GenCast `time` must be a timedelta (lead time), got"
                     f" dtype {dataset['time'].dtype}")


