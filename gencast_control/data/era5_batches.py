"""WeatherBench2 ERA5 <-> GenCast batches, and lat/lon states for the core.

GenCast's data contract (Price et al. 2024, "Probabilistic weather forecasting
with machine learning", Nature; graphcast's gencast.py / data_utils.py):

  * dims `batch`, `time`, `level`, `lat` (ASCENDING), `lon`; ensembles `sample`;
  * `time` is a timedelta relative to the last input frame: inputs at
    (-(F-1)*12h, ..., -12h, 0), targets at (12h, 24h, ...), with F = 2 input
    frames; a `datetime` coordinate (batch, time) holds the absolute times;
  * forcings year_progress_{sin,cos} (batch, time) and day_progress_{sin,cos}
    (batch, time, lon) are derived from the datetime (below); inputs carry them
    at the input times, `forcings` at the target times;
  * static fields geopotential_at_surface and land_sea_mask (lat, lon);
  * sea_surface_temperature is NaN over land in ERA5 and stays NaN in the
    batch: GenCast wraps its predictor in nan_cleaning.NaNCleaner, which fills
    the NaNs with the dataset minimum (`min_by_level` statistics) before the
    network and puts them back in the predictions. Here NaN SST is accepted only
    where land_sea_mask > `sst_land_threshold`; any other NaN is an error.

Names, grid checks and times live in `era5_schema` (the one place where
WeatherBench2 names are converted to GenCast's).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.data.era5_schema import (PROGRESS_FORCINGS, as_datetimes,
                                              check_nans, check_variables,
                                              format_timedelta, progress_forcings,
                                              standardize_grid, store_time_step,
                                              time_indices, to_wb2_names,
                                              validate_gencast_dataset)

SURFACE_TARGETS = ("2m_temperature", "mean_sea_level_pressure",
                   "10m_v_component_of_wind", "10m_u_component_of_wind",
                   "total_precipitation_12hr", "sea_surface_temperature")
ATMOSPHERIC_TARGETS = ("temperature", "geopotential", "u_component_of_wind",
                       "v_component_of_wind", "vertical_velocity",
                       "specific_humidity")
STATIC_VARIABLES = ("geopotential_at_surface", "land_sea_mask")
GENCAST_TARGETS = SURFACE_TARGETS + ATMOSPHERIC_TARGETS
GENCAST_INPUTS = (tuple(v for v in SURFACE_TARGETS
                        if v != "total_precipitation_12hr")
                  + ATMOSPHERIC_TARGETS + PROGRESS_FORCINGS + STATIC_VARIABLES)
PRECIP_12H, PRECIP_6H = "total_precipitation_12hr", "total_precipitation_6hr"


class GenCastBatch(NamedTuple):
  """GenCast's (inputs, targets, forcings); unpacks like a 3-tuple."""
  inputs: xr.Dataset
  targets: xr.Dataset
  forcings: xr.Dataset

  @property
  def targets_template(self) -> xr.Dataset:
    """The targets with NaN values: what GenCast's sampler is given."""
    return self.targets * np.nan


# --------------------------------------------------------------- converter --
def _read_frames(grid: xr.Dataset, names: Sequence[str], idx: np.ndarray,
                 lead: np.ndarray, datetimes: np.ndarray) -> xr.Dataset:
  """Reads variables at time indices idx [B, T] into dims (batch, time, ...).

  total_precipitation_12hr, if the store lacks it, is derived from the 6 h
  accumulations ending at t and t - 6h: tp12(t) = tp6(t) + tp6(t - 6h).
  """
  coords = {"time": lead, "lat": grid["lat"], "lon": grid["lon"],
            "datetime": (("batch", "time"), datetimes)}
  if not names:
    return xr.Dataset(coords=coords)
  derive = PRECIP_12H in names and PRECIP_12H not in grid.data_vars
  read = [n for n in names if not (derive and n == PRECIP_12H)]
  frames = []
  for row in idx:
    frame = grid[read].isel(time=row).load().assign_coords(time=lead)
    if derive:
      tp6 = grid[PRECIP_6H]
      frame[PRECIP_12H] = (tp6.dims, tp6.isel(time=row).values
                           + tp6.isel(time=row - 1).values)
    frames.append(frame[list(names)])
  out = xr.concat(frames, dim="batch", coords="minimal", compat="override",
                  join="override")
  return out.assign_coords(coords)


def _check_precip_derivable(grid: xr.Dataset, idx: np.ndarray) -> None:
  """tp12 from tp6 needs a 6-hourly store and the 6 h before each time."""
  step = store_time_step(grid["time"].values)
  if step != np.timedelta64(6, "h"):
    raise ValueError(f"cannot derive {PRECIP_12H} from {PRECIP_6H} on a"
                     f" {format_timedelta(step)} time axis")
  if idx.min() < 1:
    raise ValueError(f"deriving {PRECIP_12H} needs the 6 h before the first"
                     " frame, which is not in the store")


def _add_progress(ds: xr.Dataset, names: Sequence[str]) -> xr.Dataset:
  feats = progress_forcings(ds["datetime"].values, ds["lon"].values)
  for name in names:
    dims = ("batch", "time") + (("lon",) if name.startswith("day") else ())
    ds[name] = (dims, feats[name])
  return ds


def to_gencast_batch(
    store: xr.Dataset,
    init_time,
    *,
    input_variables: Sequence[str] = GENCAST_INPUTS,
    target_variables: Sequence[str] = GENCAST_TARGETS,
    forcing_variables: Sequence[str] = PROGRESS_FORCINGS,
    levels: Sequence[int] | None = None,
    resolution_step: int = 1,
    input_frames: int = 2,
    target_steps: int = 1,
    step: str | pd.Timedelta = "12h",
    require_poles: bool = True,
    sst_land_threshold: float | None = 0.5,
) -> GenCastBatch:
  """Builds GenCast's (inputs, targets, forcings) from a WeatherBench2 store.

  Args:
    store: WeatherBench2 dataset (dims time, level, latitude, longitude).
    init_time: the last input frame t0 (one datetime-like or a sequence of
      them, which becomes the `batch` dim).
    input_variables, target_variables, forcing_variables: GenCast's lists;
      progress forcings are computed, everything else is read from the store
      (total_precipitation_12hr is derived from total_precipitation_6hr if
      missing).
    levels: pressure levels (hPa) to keep; None keeps the store's.
    resolution_step: every k-th lat/lon point (4: 1 deg from 0.25 deg).
    input_frames: F frames at t0 - (F-1)*step .. t0 (GenCast: 2).
    target_steps: targets at t0 + step .. t0 + target_steps*step.
    step: model time step (GenCast: 12 h); a multiple of the store's step.
    require_poles: demand latitudes +-90 (GenCast needs them).
    sst_land_threshold: see `check_nans`.
  Returns:
    GenCastBatch(inputs, targets, forcings) in GenCast's layout.
  Raises:
    ValueError: naming the problem (missing variable/level/time, wrong grid,
      unsorted latitude, non-uniform time step, NaN).
  """
  if input_frames < 1 or target_steps < 1:
    raise ValueError(f"need input_frames >= 1 and target_steps >= 1, got"
                     f" {input_frames}, {target_steps}")
  if "time" not in store.coords or not np.issubdtype(store["time"].dtype,
                                                     np.datetime64):
    raise ValueError("the store has no datetime `time` coordinate")
  step = pd.Timedelta(step).to_timedelta64().astype("timedelta64[ns]")
  store_step = store_time_step(store["time"].values)
  if step % store_step:
    raise ValueError(f"step {format_timedelta(step)} is not a multiple of the"
                     f" store's time step {format_timedelta(store_step)}")
  forcing_set = set(forcing_variables) | set(PROGRESS_FORCINGS)
  unknown = [f for f in forcing_variables if f not in PROGRESS_FORCINGS]
  if unknown:
    raise ValueError(f"forcing(s) {unknown} are not derivable; supported:"
                     f" {list(PROGRESS_FORCINGS)}")
  read = [v for v in dict.fromkeys(list(input_variables)
                                   + list(target_variables))
          if v not in forcing_set]
  derive_precip = (PRECIP_12H in read and PRECIP_12H not in store.data_vars
                   and PRECIP_6H in store.data_vars)
  from_store = [v for v in read if not (derive_precip and v == PRECIP_12H)]
  check_variables(store, from_store)
  extra = [PRECIP_6H] if derive_precip else []
  if "land_sea_mask" in store.data_vars and "land_sea_mask" not in read:
    extra.append("land_sea_mask")  # to check where SST may be NaN
  store = store[from_store + extra]
  if levels is not None:
    if "level" not in store.coords:
      raise ValueError("levels were requested but the store has no `level`")
    missing = [lv for lv in levels if lv not in store["level"].values]
    if missing:
      raise ValueError(f"level(s) {missing} not in the store; available:"
                       f" {store['level'].values.tolist()}")
    store = store.sel(level=list(levels))
  grid = standardize_grid(store, resolution_step, require_poles)

  inits = as_datetimes(init_time)
  in_lead = np.arange(-(input_frames - 1), 1) * step
  out_lead = np.arange(1, target_steps + 1) * step
  in_times = inits[:, None] + in_lead[None]
  out_times = inits[:, None] + out_lead[None]
  in_idx = time_indices(grid["time"].values, in_times)
  out_idx = time_indices(grid["time"].values, out_times)

  if derive_precip:
    _check_precip_derivable(grid, np.concatenate(
        ([in_idx] if PRECIP_12H in input_variables else [])
        + ([out_idx] if PRECIP_12H in target_variables else []), axis=1))
  static = [v for v in read if v in grid.data_vars
            and "time" not in grid[v].dims]
  dynamic_in = [v for v in input_variables
                if v not in forcing_set and v not in static]
  dynamic_out = [v for v in target_variables if v not in static]
  inputs = _read_frames(grid, dynamic_in, in_idx, in_lead, in_times)
  targets = _read_frames(grid, dynamic_out, out_idx, out_lead, out_times)
  forcings = _read_frames(grid, [], out_idx, out_lead, out_times)
  inputs = _add_progress(inputs, [v for v in input_variables
                                  if v in forcing_set])
  forcings = _add_progress(forcings, list(forcing_variables)).drop_vars("lat")
  for name in static:
    if name in input_variables:
      inputs[name] = grid[name].load()
  lsm = (grid["land_sea_mask"].load() if "land_sea_mask" in grid.data_vars
         else None)
  check_nans(inputs, lsm, sst_land_threshold)
  check_nans(targets, lsm, sst_land_threshold)
  cast = lambda d: d.astype({k: np.float32 for k, v in d.data_vars.items()
                             if np.issubdtype(v.dtype, np.floating)})
  return GenCastBatch(cast(inputs), cast(targets), cast(forcings))


def from_gencast_output(dataset: xr.Dataset, init_time=None,
                        latitude_descending: bool = False) -> xr.Dataset:
  """GenCast predictions -> WeatherBench2 layout with absolute valid times.

  Renames sample -> realization, lat/lon -> latitude/longitude and replaces
  the lead-time `time` by valid times t0 + lead (from the `datetime`
  coordinate, or from `init_time` when it is absent); the lead time is kept as
  the coordinate `prediction_timedelta`. A `batch` dim must have size 1.
  """
  validate_gencast_dataset(dataset)
  if "batch" in dataset.dims:
    if dataset.sizes["batch"] != 1:
      raise ValueError(
          f"from_gencast_output converts one forecast, got batch ="
          f" {dataset.sizes['batch']}; convert ds.isel(batch=[i]) one by one")
    dataset = dataset.isel(batch=0, drop=False)
  lead = dataset["time"].values
  if "datetime" in dataset.coords:
    valid = np.asarray(dataset["datetime"].values, "datetime64[ns]")
    if init_time is not None:
      expected = as_datetimes(init_time)[0] + lead
      if not np.array_equal(valid, expected):
        raise ValueError(f"init_time {init_time} disagrees with the dataset's"
                         " datetime coordinate")
  elif init_time is not None:
    valid = as_datetimes(init_time)[0] + lead
  else:
    raise ValueError("the dataset has no `datetime` coordinate; pass init_time")
  dataset = dataset.drop_vars([c for c in ("datetime", "batch")
                               if c in dataset.coords])
  dataset = dataset.assign_coords(time=valid, prediction_timedelta=("time",
                                                                    lead))
  dataset = to_wb2_names(dataset)
  if latitude_descending:
    dataset = dataset.isel(latitude=slice(None, None, -1))
  return dataset


# ------------------------------------------------------------- core state --
def channel_names(dataset: xr.Dataset, variables: Sequence[str],
                  levels: Sequence[int] | None = None) -> list[str]:
  """'name' for surface variables, 'name@level' for each level otherwise."""
  names = []
  for v in variables:
    if "level" in dataset[v].dims:
      lv = dataset["level"].values if levels is None else levels
      names += [f"{v}@{int(x)}" for x in lv]
    else:
      names.append(v)
  return names


def latlon_state(dataset: xr.Dataset, variables: Sequence[str],
                 levels: Sequence[int] | None = None,
                 fill_nan: dict[str, float] | None = None
                 ) -> tuple[np.ndarray, list[str]]:
  """Stacks variables into the core's channel-last layout [..., lat, lon, C].

  Rows are ordered by ascending latitude. Leading dims (e.g. batch, time) are
  the dataset's non-spatial, non-level dims in order of appearance; static
  fields are broadcast over them. Channels follow `variables`, each atmospheric
  variable expanded over `levels` (channel names as in `channel_names`).

  Args:
    fill_nan: value per variable to put where it is NaN (e.g. SST over land:
      GenCast uses the dataset minimum); a remaining NaN raises ValueError.
  """
  dataset = standardize_grid(dataset, 1, require_poles=False)
  check_variables(dataset, variables)
  if levels is not None:
    missing = [lv for lv in levels if lv not in dataset["level"].values]
    if missing:
      raise ValueError(f"level(s) {missing} not available; levels:"
                       f" {dataset['level'].values.tolist()}")
  lead = []
  for v in variables:
    lead += [d for d in dataset[v].dims
             if d not in ("lat", "lon", "level") and d not in lead]
  sizes = {d: dataset.sizes[d] for d in lead}
  blocks = []
  for v in variables:
    var = dataset[v]
    if "level" in var.dims:
      var = var.sel(level=list(levels)) if levels is not None else var
      var = var.transpose(*[d for d in lead if d in var.dims], "lat", "lon",
                          "level")
    else:
      var = var.transpose(*[d for d in lead if d in var.dims], "lat",
                          "lon").expand_dims(level=[0], axis=-1)
    missing_dims = {d: n for d, n in sizes.items() if d not in var.dims}
    if missing_dims:
      var = var.expand_dims(missing_dims).transpose(*lead, "lat", "lon",
                                                    "level")
    values = np.asarray(var.values, np.float32)
    if fill_nan and v in fill_nan:
      values = np.where(np.isnan(values), np.float32(fill_nan[v]), values)
    if np.isnan(values).any():
      raise ValueError(
          f"variable {v!r} has {int(np.isnan(values).sum())} NaN value(s);"
          " pass fill_nan={name: value} (GenCast fills SST over land with the"
          " dataset minimum)")
    blocks.append(values)
  return (np.concatenate(blocks, axis=-1),
          channel_names(dataset, variables, levels))
