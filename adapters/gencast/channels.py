"""GenCast's xarray variables <-> channel-last grids [..., lat, lon, C].

The controller works on channel-last arrays. The target variables of a GenCast
task are stacked in the order of DeepMind's `model_utils.dataset_to_stacked`
(variables sorted by name, then their levels in coordinate order), so that the
stacking is the same one GenCast's own grid nodes use. Observations, previews
and controls all use this `ChannelLayout`; `layout.channel_names` spells the
order out ("2m_temperature", "temperature@500", ...).

Also here: the input checks of GenCast's call contract (dims batch, time, lat
ascending, lon, level; an equiangular grid with poles and 2 (nlat - 1)
longitudes, which its spherical-harmonic noise requires), raising ValueError
with the problem named instead of a deep JAX trace.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.adapters.gencast.upstream import upstream


@dataclasses.dataclass(frozen=True)
class ChannelLayout:
  """Which (variable, level) sits in which channel of a [.., lat, lon, C] grid.

  Attributes:
    variables: target variable names, sorted (dataset_to_stacked's order).
    levels: per variable, its pressure levels, or () for a surface variable.
    lat, lon: the grid coordinates (degrees; lat ascending).
  """
  variables: tuple[str, ...]
  levels: tuple[tuple[int, ...], ...]
  lat: tuple[float, ...]
  lon: tuple[float, ...]

  @classmethod
  def from_template(cls, template: xr.Dataset) -> "ChannelLayout":
    """The layout of a targets template (dims batch, time, [level,] lat, lon)."""
    names = tuple(sorted(template.data_vars))
    levels = []
    for name in names:
      extra = [d for d in template[name].dims
               if d not in ("batch", "time", "lat", "lon")]
      if extra not in ([], ["level"]):
        raise ValueError(f"target {name!r} has dims {template[name].dims};"
                         " expected (batch, time, [level,] lat, lon)")
      levels.append(tuple(int(v) for v in template[name].coords["level"].values)
                    if extra else ())
    return cls(variables=names, levels=tuple(levels),
               lat=tuple(float(v) for v in template.coords["lat"].values),
               lon=tuple(float(v) for v in template.coords["lon"].values))

  @property
  def channel_names(self) -> tuple[str, ...]:
    return tuple(f"{name}@{level}" if levels else name
                 for name, levels in zip(self.variables, self.levels)
                 for level in (levels or (None,)))

  @property
  def num_channels(self) -> int:
    return len(self.channel_names)

  @property
  def spatial_shape(self) -> tuple[int, int]:
    return (len(self.lat), len(self.lon))

  def stack(self, dataset: xr.Dataset,
            leading: Sequence[str] = ("batch",)) -> Any:
    """[*leading, lat, lon, C] array of the layout's variables.

    A `time` dim that is not in `leading` must have size 1 and is dropped.
    Works on numpy- and JAX-backed (xarray_jax) datasets.
    """
    gc = upstream()
    missing = [v for v in self.variables if v not in dataset.data_vars]
    if missing:
      raise ValueError(f"dataset lacks the variables {missing} of the channel"
                       " layout")
    subset = dataset[list(self.variables)]
    if "time" in subset.dims and "time" not in leading:
      if subset.sizes["time"] != 1:
        raise ValueError("stacking one state needs a single time, got"
                         f" {subset.sizes['time']}")
    preserved = tuple(leading) + ("lat", "lon")
    stacked = gc.model_utils.dataset_to_stacked(subset, preserved_dims=preserved)
    array = gc.xarray_jax.unwrap_data(stacked.transpose(*preserved, "channels"))
    if array.shape[-1] != self.num_channels:
      raise ValueError(f"dataset stacks to {array.shape[-1]} channels, the"
                       f" layout has {self.num_channels} ({self.channel_names})")
    return array

  def unstack(self, array, template: xr.Dataset) -> xr.Dataset:
    """Inverse of `stack` for a [batch, lat, lon, C] array (JAX or numpy)."""
    gc = upstream()
    variable = gc.xarray_jax.Variable(("batch", "lat", "lon", "channels"),
                                      array)
    return gc.model_utils.stacked_to_dataset(
        variable, template[list(self.variables)],
        preserved_dims=("batch", "lat", "lon"))

  def per_channel(self, stats: xr.Dataset) -> np.ndarray:
    """[C] values of a per-variable (per-level) statistics Dataset."""
    out = []
    for name, levels in zip(self.variables, self.levels):
      if name not in stats:
        raise ValueError(f"statistics lack variable {name!r}")
      values = stats[name]
      if levels:
        if "level" in values.dims:
          values = values.sel(level=list(levels))
          out.extend(np.asarray(values.values, np.float64).reshape(-1))
        else:
          out.extend([float(values.values)] * len(levels))
      else:
        out.append(float(np.asarray(values.values).reshape(-1)[0]))
    return np.asarray(out, np.float32)


@dataclasses.dataclass(frozen=True)
class ChannelStats:
  """Per-channel statistics of a layout: means, stddevs, residual stddevs.

  is_residual[c] = 1 where GenCast predicts the normalised 12 h difference
  (target that is also an input), 0 where it predicts the normalised value.
  """
  mean: np.ndarray
  std: np.ndarray
  diffs_std: np.ndarray
  is_residual: np.ndarray

  @classmethod
  def create(cls, layout: ChannelLayout, stats, input_variables) -> "ChannelStats":
    residual = np.asarray([
        float(name in input_variables)
        for name, levels in zip(layout.variables, layout.levels)
        for _ in (levels or (None,))], np.float32)
    diffs = np.where(residual > 0,
                     _per_channel_or_ones(layout, stats.diffs_stddev_by_level),
                     1.0).astype(np.float32)
    return cls(mean=layout.per_channel(stats.mean_by_level),
               std=layout.per_channel(stats.stddev_by_level),
               diffs_std=diffs, is_residual=residual)

  def normalize(self, x):
    """(x - mean) / std: physical state -> GenCast's normalised state."""
    return (x - self.mean) / self.std

  def denoised_to_state(self, denoised, norm_last):
    """Normalised state estimate from the denoiser's output.

    For residual channels x = x_n + diffs_std * d, so (x - mean) / std =
    norm(x_n) + d * diffs_std / std; for the others d is already (x - mean)/std.
    """
    return jnp.where(self.is_residual > 0,
                     norm_last + denoised * (self.diffs_std / self.std),
                     denoised)


def _per_channel_or_ones(layout: ChannelLayout, stats: xr.Dataset) -> np.ndarray:
  out = []
  for name, levels in zip(layout.variables, layout.levels):
    n = len(levels) or 1
    if name in stats:
      sub = ChannelLayout((name,), (levels,), layout.lat, layout.lon)
      out.extend(sub.per_channel(stats))
    else:
      out.extend([1.0] * n)
  return np.asarray(out, np.float32)


# --- input checks ------------------------------------------------------------

def check_grid(lat: np.ndarray, lon: np.ndarray, where: str,
               expected_shape: tuple[int, int] | None = None) -> None:
  """ValueError unless lat/lon form one of GenCast's equiangular grids: with
  poles (lon = 2 (lat - 1), ERA5's) or without (lon = 2 lat, WeatherBench2's
  64 x 32), the two its spherical-harmonic noise supports."""
  lat = np.asarray(lat, np.float64)
  lon = np.asarray(lon, np.float64)
  if lat.ndim != 1 or lat.size < 3:
    raise ValueError(f"{where}: lat must be a 1-D coordinate, got {lat.shape}")
  if np.all(np.diff(lat) < 0):
    raise ValueError(
        f"{where}: latitude is descending ({lat[0]:g} .. {lat[-1]:g}); GenCast"
        " needs it ascending: use ds.isel(lat=slice(None, None, -1))")
  if not np.all(np.diff(lat) > 0):
    raise ValueError(f"{where}: latitude must be strictly ascending")
  step = lat[1] - lat[0]
  poles = np.isclose(lat[0], -90.0) and np.isclose(lat[-1], 90.0)
  offset = (np.isclose(lat[0], -90.0 + step / 2)
            and np.isclose(lat[-1], 90.0 - step / 2))
  if not (np.allclose(np.diff(lat), step) and (poles or offset)):
    raise ValueError(
        f"{where}: GenCast needs an equiangular latitude grid, with poles"
        " (-90 .. 90) or without (-90 + d/2 .. 90 - d/2), got"
        f" {lat[0]:g} .. {lat[-1]:g} with {lat.size} points")
  nlon = 2 * (lat.size - 1) if poles else 2 * lat.size
  if lon.size != nlon or not np.allclose(np.diff(lon), step):
    raise ValueError(
        f"{where}: GenCast needs {nlon} longitudes spaced {step:g} deg for"
        f" {lat.size} latitudes, got {lon.size}")
  if expected_shape is not None and (lat.size, lon.size) != tuple(expected_shape):
    raise ValueError(
        f"{where}: grid is {lat.size} x {lon.size} (lat x lon) but the model"
        f" was trained on {expected_shape[0]} x {expected_shape[1]}")


def _check_variables(ds, names, what):
  if not isinstance(ds, xr.Dataset):
    raise ValueError(f"{what} must be an xarray.Dataset, got {type(ds).__name__}")
  missing = sorted(set(names) - set(ds.data_vars))
  if missing:
    raise ValueError(f"{what} lack the variables {missing} of the GenCast task")


def _check_nan(ds, what, allowed=("sea_surface_temperature",)):
  for name, da in ds.data_vars.items():
    if name in allowed or not isinstance(da.data, np.ndarray):
      continue
    if np.issubdtype(da.dtype, np.floating) and np.isnan(da.values).any():
      raise ValueError(f"{what} variable {name!r} contains NaN (only"
                       f" {list(allowed)} may, over land)")


def check_call(inputs: xr.Dataset, targets_template: xr.Dataset,
               forcings: xr.Dataset | None, task_config,
               expected_grid: tuple[int, int] | None = None) -> None:
  """Checks GenCast's call contract; ValueError naming the first problem."""
  _check_variables(inputs, task_config.input_variables, "inputs")
  _check_variables(targets_template, task_config.target_variables,
                   "targets_template")
  if task_config.forcing_variables:
    if forcings is None:
      raise ValueError("forcings are required: the task has forcing variables"
                       f" {list(task_config.forcing_variables)}")
    _check_variables(forcings, task_config.forcing_variables, "forcings")
  for what, ds in (("inputs", inputs), ("targets_template", targets_template)):
    for dim in ("batch", "time", "lat", "lon"):
      if dim not in ds.dims:
        raise ValueError(f"{what} lack the dimension {dim!r} (GenCast needs"
                         " batch, time, lat, lon and level)")
    check_grid(ds.coords["lat"].values, ds.coords["lon"].values, what,
               expected_grid)
    if "level" in ds.dims:
      levels = tuple(int(v) for v in ds.coords["level"].values)
      if levels != tuple(task_config.pressure_levels):
        raise ValueError(f"{what} have pressure levels {levels}, the model"
                         f" needs {tuple(task_config.pressure_levels)}")
  for coord in ("lat", "lon"):
    if not np.allclose(inputs.coords[coord].values,
                       targets_template.coords[coord].values):
      raise ValueError(f"inputs and targets_template have different {coord}")
  step = pd.Timedelta(targets_template.coords["time"].values[0])
  if step <= pd.Timedelta(0):
    raise ValueError("targets_template time must be positive lead times")
  frames = pd.Timedelta(task_config.input_duration) // step
  if inputs.sizes["time"] != frames:
    raise ValueError(
        f"inputs have {inputs.sizes['time']} times, the model needs {frames}"
        f" ({task_config.input_duration} of {step} steps)")
  if forcings is not None and "time" in forcings.dims and (
      forcings.sizes["time"] != targets_template.sizes["time"]):
    raise ValueError(f"forcings have {forcings.sizes['time']} times,"
                     f" targets_template {targets_template.sizes['time']}")
  _check_nan(inputs, "inputs")
  if forcings is not None:
    _check_nan(forcings, "forcings")
