"""Assimilate your own observations: the public API, one path for every model.

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> import gencast_control as gc
    >>> model = gc.load_model("ks")            # a shipped name, .npz, "module:factory"
    >>> controller = gc.load_controller("ks", model)
    >>> x = model.layout.coords[0]             # the grid it was trained on
    >>> initial = xr.Dataset({"u": (("time", "x"), np.cos(x / 16)[None])},
    ...                      coords={"time": [0.0], "x": x})
    >>> stations = pd.DataFrame({"time": [1.0, 2.0, 3.0], "x": [5.3, 40.1, 77.7],
    ...                          "variable": "u", "value": [0.9, -0.6, 0.2],
    ...                          "error_std": 0.1})
    >>> obs = gc.observations_from_points(stations, model, initial)
    >>> analysis = gc.assimilate(model, controller, obs, initial, members=2)
    >>> analysis["u"].dims, analysis.sizes["time"]
    (('sample', 'time', 'x'), 4)
    >>> background = gc.assimilate(model, None, obs, initial, members=2)
    >>> gc.monitoring(obs, background, analysis)["u"]["count"]
    3

GenCast runs the same calls: `gc.load_model(checkpoint, stats=..., example=...)`
gives DeepMind's GenCast as a FrozenARDM, station tables carry lat, lon, an
optional pressure `level` and dates, and the analysis comes back with datetime
times, a `sample` dim and CF attributes (`write_analysis`).

Every input is aligned to the model's StateLayout (gencast_control.core.layout)
by name and coordinate: the channels are (variable, level) pairs of the model,
the grid is the model's (GenCast) or the initial state's (the grid models). The
controller sees observations on the model grid (Observations: values, a mask
and an error std per grid point and time). Gridded observations (NaN =
unobserved) are used as they are. A point observation is given to the
controller at its nearest grid point with its own error std; k of them on one
point and time become their mean, with error std sqrt(sum_i sigma_i^2) / k.
The controller weighs each observation by its error std (its encoder sees
log sigma per observation); it has learnt that over the error stds it was
trained on (the config's regimes), so far outside them it extrapolates. The
monitoring statistics (`monitoring`) compare each point observation with the
state interpolated to the point, H(x) of the DA literature
(gencast_control.core.interpolation: linear or nearest, longitude wrap and
polar caps on the sphere).

A run starts at the last time t_0 of `initial` and advances t_k = t_0 + k dt,
with floats for the PDE systems and datetimes for weather models
(gencast_control.core.times); observation times must be such times.
Observations at or before t_0 and after the run's last step are left out, so
one file serves every cycle of a cycled run (`restart_state`). Members start
from `initial`: one state shared by all, or one per member (a `sample` dim).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.systems import pipeline
from gencast_control.core import interpolation, times as time_lib
from gencast_control.core.ardm import FrozenARDM
from gencast_control.core.assimilation import ensemble_rollout
from gencast_control.core.controller import BoundController, bind_controller
from gencast_control.core.controller import load_controller as _load_controller
from gencast_control.core.layout import StateLayout
from gencast_control.core.observations import Observations
from gencast_control.core.plugins import is_plugin_spec, plugin_model
from gencast_control.data import cf, point_tables
from gencast_control.evaluation import metrics

POINT_COLUMNS = ("time", "variable", "value", "error_std")


@dataclasses.dataclass(frozen=True)
class ObservationSet:
  """Observations of a run: the controller's gridded stream and, for point
  observations, the table that the monitoring statistics use.

  stream: Observations over times[0..T] on the model grid.
  times: [T+1] the run's times t_0 + k dt (floats or datetime64).
  layout: the model's channels and grid the stream lies on.
  points: the point table (columns time, *dims, [level,] variable, value,
    error_std, plus step and channel), or None for gridded observations.
  method: the operator H of the monitoring ("linear" or "nearest").
  """
  stream: Observations
  times: np.ndarray
  layout: StateLayout
  points: pd.DataFrame | None
  method: str = "nearest"

  @property
  def num_steps(self) -> int:
    return len(self.times) - 1

  @property
  def variables(self) -> tuple[str, ...]:
    return self.layout.variables

  @property
  def spatial_dims(self) -> tuple[str, ...]:
    return self.layout.dims

  @property
  def coords(self) -> dict:
    return dict(zip(self.layout.dims, self.layout.coords))


# ------------------------------------------------------------- the model


def load_model(source: Any, *, stats: Any = None, example: Any = None,
               timeout_s: float = 60.0) -> FrozenARDM:
  """A frozen ARDM.

  source: a shipped grid model ("ks", "kolmogorov"), a grid ARDM checkpoint
    (.npz written by `gencast-control train-ardm`), a model of your own as
    "module:factory" or "path/to/file.py:factory" (factory() returns a
    FrozenARDM; `plugin_model`), or, with `stats`, a
    GenCast checkpoint: DeepMind's (a registered name such as "1p0deg_mini",
    a local path or gs://) or one in DeepMind's CheckPoint format.
  stats: GenCast's normalisation statistics: "bucket", a local folder or a
    gs:// folder (adapters.gencast.assets.load_stats).
  example: GenCast's data structure: a Dataset in DeepMind's example layout
    (batch, time, lat, lon, level, with static inputs and a `datetime`
    coordinate), a NetCDF path or a registered example name; it fixes the
    grid, the static inputs and the forcings.
  timeout_s: the deadline of every network read.
  """
  if not isinstance(timeout_s, (int, float)) or isinstance(
      timeout_s, bool) or not timeout_s > 0:
    raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
  if stats is not None or example is not None:
    if stats is None or example is None:
      raise ValueError("a GenCast model needs both stats= (its normalisation"
                       " statistics) and example= (its data layout)")
    from gencast_control.adapters.gencast import ardm as gencast_ardm
    from gencast_control.adapters.gencast import assets as gencast_assets
    model = source
    if not isinstance(source, gencast_assets.GenCastModel):
      model = gencast_assets.load_model(source, stats, timeout_s=timeout_s)
    if not isinstance(example, xr.Dataset):
      example = gencast_assets.load_example(example, timeout_s=timeout_s)
    return gencast_ardm.GenCastARDM.from_example(model, example)
  if isinstance(source, FrozenARDM):
    return source
  if not isinstance(source, (str, os.PathLike)):
    raise ValueError("load_model takes a shipped name, a checkpoint path or"
                     f" 'module:factory', got {type(source).__name__}")
  if is_plugin_spec(source):
    return plugin_model(source)
  from gencast_control.adapters.grid import load_grid_ardm
  return load_grid_ardm(checkpoint_path(source, "ardm"))[0]


def _check_int(value, name: str, low: int = 1, none: bool = False):
  """A one-line error unless value is an int >= low (or None when allowed)."""
  if value is None and none:
    return None
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, np.integer)):
    raise ValueError(f"{name} must be an integer, got {value!r}")
  if value < low:
    raise ValueError(f"{name} must be >= {low}, got {value}")
  return int(value)


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
  """A NetCDF file or zarr store, loaded; one-line errors naming the path."""
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"{path} does not exist")
  try:
    ds = (xr.open_zarr(path) if path.suffix == ".zarr" or path.is_dir()
          else xr.open_dataset(path))
    return ds.load()
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"cannot read {path} as NetCDF or zarr: {e}") from e


def _check_dataset(value, name: str) -> xr.Dataset:
  """value as a Dataset: a Dataset, or a NetCDF/zarr path opened."""
  if isinstance(value, (str, os.PathLike)):
    return open_dataset(value)
  if not isinstance(value, xr.Dataset):
    raise ValueError(f"{name} must be an xarray Dataset or a NetCDF/zarr"
                     f" path, got {type(value).__name__}")
  return value


def _check_model(model) -> FrozenARDM:
  if not isinstance(model, FrozenARDM):
    raise ValueError(f"model must be a FrozenARDM (gc.load_model), got"
                     f" {type(model).__name__}")
  return model


def load_controller(source: str | os.PathLike,
                    model: FrozenARDM) -> BoundController:
  """The controller trained for `model`: a shipped name or a checkpoint."""
  _check_model(model)
  config, params, _ = _load_controller(
      checkpoint_path(source, "controller"), model)
  return bind_controller(config, model.periodic, params)


def checkpoint_path(name_or_path, kind: str) -> Path:
  """A checkpoint file, or the shipped `kind` ("ardm", "controller") of a
  config name such as "ks"."""
  if not isinstance(name_or_path, (str, os.PathLike)):
    raise ValueError(f"a {kind} checkpoint must be a name or a path, got"
                     f" {type(name_or_path).__name__}")
  if kind == "ardm" and is_plugin_spec(name_or_path):
    return name_or_path  # a model of one's own (core.plugins)
  path = Path(name_or_path)
  if path.suffix == ".npz" or path.exists():
    if not path.is_file():
      raise FileNotFoundError(f"{kind} checkpoint {path} does not exist")
    return path
  shipped = pipeline.shipped_checkpoints(str(name_or_path))[
      ("ardm", "controller").index(kind)]
  if not shipped.exists():
    raise ValueError(f"{name_or_path!r} is neither a checkpoint file nor a"
                     " shipped model (ks, kolmogorov)")
  return shipped


def model_layout(model: FrozenARDM, initial: xr.Dataset | None = None,
                 variables: Sequence[str] | None = None,
                 dt: Any = None) -> StateLayout:
  """The layout every input is aligned to: the model's own (GenCast), or
  read off the initial state (grid models: `variables` in channel order,
  default the initial state's, and the time step dt)."""
  _check_model(model)
  layout = model.layout
  if layout is not None:
    if variables is not None and tuple(variables) != layout.variables:
      raise ValueError(f"variables {list(variables)} are not the model's"
                       f" {list(layout.variables)}")
    if dt is not None and time_lib.as_timestep(dt) != layout.timestep:
      raise ValueError(f"dt = {dt!r} differs from the model's time step"
                       f" {layout.timestep!r}")
    return layout
  if initial is None:
    raise ValueError("this model has no grid of its own: give the initial"
                     " state (its coordinates are the grid)")
  if dt is None:
    raise ValueError("this model's time step is not recorded: give dt=")
  layout = StateLayout.from_dataset(initial, variables, model.periodic,
                                    time_lib.as_timestep(dt))
  if layout.shape != tuple(model.state_shape):
    raise ValueError(f"the initial state's grid and variables give a state"
                     f" of shape {layout.shape}; the model's is"
                     f" {tuple(model.state_shape)}")
  return layout


def _grid(layout: StateLayout) -> interpolation.Grid:
  return interpolation.Grid.from_coords(
      layout.dims, dict(zip(layout.dims, layout.coords)), layout.periodic,
      layout.sphere)


def start_time(initial: xr.Dataset) -> Any:
  """t_0: the last time of `initial` (its `datetime` coordinate where the
  time dim holds GenCast's lead times; 0.0 without a time coordinate)."""
  if not isinstance(initial, xr.Dataset):
    raise ValueError(f"the initial state must be an xarray Dataset, got"
                     f" {type(initial).__name__}")
  times = _dataset_times(initial)
  if times is not None and times.size:
    return time_lib.as_time(times[-1], "the initial state's time")
  if "time" in initial.coords:
    raise ValueError("the initial state's time holds lead times only: give"
                     " it a `datetime` coordinate")
  return np.float64(0.0)


def _run_start(initial, start):
  return (time_lib.as_time(start, "start") if start is not None
          else start_time(initial))


def _error_std(error_std, variables) -> np.ndarray:
  """[V] error stds from one value or {variable: std}."""
  if isinstance(error_std, dict):
    missing = [v for v in variables if v not in error_std]
    if missing:
      raise ValueError(f"error_std has no entry for variable(s) {missing}")
    error_std = [error_std[v] for v in variables]
  try:
    std = np.broadcast_to(np.asarray(error_std, np.float64),
                          (len(variables),))
  except (TypeError, ValueError):
    raise ValueError(f"error_std must be a number or {{variable: number}},"
                     f" got {error_std!r}") from None
  if not (np.isfinite(std).all() and (std > 0).all()):
    raise ValueError(f"error std must be positive and finite, got {std}")
  return std.astype(np.float32)


def error_std_name(variable: str) -> str:
  """The variable of a gridded observation file that holds `variable`'s
  per-observation error stds."""
  return f"{variable}_error_std"


# ---------------------------------------------------- gridded observations


def observations_from_dataset(ds: xr.Dataset, model: FrozenARDM,
                              initial: xr.Dataset, *,
                              error_std: float | dict | None = None,
                              variables: Sequence[str] | None = None,
                              dt: Any = None, num_steps: int | None = None,
                              start: Any = None,
                              where: str = "the observations"
                              ) -> ObservationSet:
  """Observations on the model grid: dims (time, [level,] *spatial), NaN =
  unobserved, aligned to the model's layout by name and coordinate.

  initial: the run's initial state (its last time is t_0; for grid models
    its coordinates are the grid). start overrides t_0.
  error_std: one std for all variables or {variable: std}; None: per
    observation, from the variables `<variable>_error_std` of `ds` (same
    dims; a network of mixed quality).
  variables, dt: the grid models' channels and time step (model_layout).
  """
  ds = _check_dataset(ds, where)
  initial = _check_dataset(initial, "initial")
  num_steps = _check_int(num_steps, "num_steps", none=True)
  layout = model_layout(model, initial, variables, dt)
  if "time" not in ds.dims or "time" not in ds.coords:
    raise ValueError(f"{where}: gridded observations need a `time` dim with"
                     " a coordinate (the observation times)")
  obs_times = np.asarray(ds["time"].values)
  time_lib.check_time_axis(obs_times, None, where)
  t0 = _run_start(initial, start)
  run = time_lib.run_times(t0, layout.timestep, obs_times, num_steps)
  steps = time_lib.steps_between(obs_times, t0, layout.timestep)
  keep = (steps > 0) & (steps < len(run))
  values = np.full((len(run),) + layout.shape, np.nan, np.float32)
  values[steps[keep]] = layout.stack(ds, ("time",), where)[keep]
  if error_std is None:
    missing = [error_std_name(v) for v in layout.variables
               if error_std_name(v) not in ds]
    if missing:
      raise ValueError(
          f"{where}: gridded observations need an error std: one value or"
          " one per variable (--error-std STD or VAR=STD), or per"
          f" observation the variable(s) {missing} in the file")
    renamed = ds[[error_std_name(v) for v in layout.variables]].rename(
        {error_std_name(v): v for v in layout.variables})
    std = np.ones_like(values)
    std[steps[keep]] = layout.stack(renamed, ("time",), where)[keep]
    observed = np.isfinite(values)
    if np.isnan(std[observed]).any():
      raise ValueError(f"{where}: an observed value has no error std (NaN in"
                       " <variable>_error_std)")
    bad = observed & ~(std > 0)
    if bad.any() or not np.isfinite(std[observed]).all():
      c = int(np.nonzero(bad)[-1][0]) if bad.any() else 0
      raise ValueError(f"{where}: {error_std_name(layout.channels[c][0])}"
                       " must be positive and finite where a value is"
                       " observed")
  else:
    per_variable = _error_std(error_std, layout.variables)
    std = np.concatenate([np.full(len(levels) or 1, s, np.float32) for s,
                          levels in zip(per_variable, layout.levels)])
  return ObservationSet(Observations.from_arrays(values, noise_std=std), run,
                        layout, None)


# ------------------------------------------------------ point observations


def read_point_table(source, layout: StateLayout | None = None,
                     where: str | None = None) -> pd.DataFrame:
  """A point table (DataFrame, .csv or NetCDF) with parsed times
  (gencast_control.data.point_tables)."""
  dims = layout.dims if layout is not None else ()
  return point_tables.read_point_table(source, dims, where=where)


def observations_from_points(table, model: FrozenARDM, initial: xr.Dataset,
                             *, variables: Sequence[str] | None = None,
                             dt: Any = None, num_steps: int | None = None,
                             method: str = "linear", start: Any = None
                             ) -> ObservationSet:
  """Point observations: columns time, one per spatial dim (lat, lon for
  GenCast), optional level, variable, value, error_std (a DataFrame, .csv or
  NetCDF); times as numbers or dates, as the model's.

  initial: the run's initial state (its last time is t_0; for grid models
    its coordinates are the grid). start overrides t_0.
  method: "linear" or "nearest", the operator H of `monitoring`.
  The controller sees each observation at its nearest grid point, with its
  error std (module doc).
  """
  if method not in interpolation.METHODS:
    raise ValueError(f"method must be 'linear' or 'nearest', got {method!r}")
  initial = _check_dataset(initial, "initial")
  num_steps = _check_int(num_steps, "num_steps", none=True)
  layout = model_layout(model, initial, variables, dt)
  where = (f"observation table {table}" if isinstance(table, (str, Path))
           else "the observation table")
  table = read_point_table(table, layout, where)
  levels = table["level"].values if "level" in table else None
  channel = layout.channel_index(table["variable"].values, levels, where)
  grid = _grid(layout)
  grid.check_inside({d: table[d].values for d in layout.dims}, where)
  t0 = _run_start(initial, start)
  run = time_lib.run_times(t0, layout.timestep, table["time"].values,
                           num_steps)
  steps = time_lib.steps_between(table["time"].values, t0, layout.timestep)
  key = ["time", *layout.dims, "variable"] + (["level"] if levels is not None
                                              else [])
  duplicated = table.duplicated(subset=key)
  if duplicated.any():
    row = int(np.argmax(duplicated.values))
    raise ValueError(f"{where}: row {row + 1} repeats an earlier observation"
                     " (same time, position, variable and level)")
  table = table.assign(step=steps, channel=channel)
  table = table[(table["step"] > 0) & (table["step"] < len(run))
                ].reset_index(drop=True)
  index, _ = interpolation.point_operator(
      grid, {d: table[d].values for d in layout.dims}, "nearest",
      where=where)
  shape = (len(run),) + layout.shape
  flat = (len(run), int(np.prod(layout.shape[:-1])), layout.shape[-1])
  total, variance, count = (np.zeros(flat, np.float64) for _ in range(3))
  at = (table["step"].values, index[:, 0], table["channel"].values)
  np.add.at(total, at, table["value"].values)
  np.add.at(variance, at, table["error_std"].values**2)
  np.add.at(count, at, 1.0)
  observed = count > 0
  values = np.where(observed, total / np.maximum(count, 1), np.nan)
  std = np.where(observed, np.sqrt(variance) / np.maximum(count, 1), 1.0)
  return ObservationSet(
      Observations.from_arrays(values.reshape(shape),
                               noise_std=std.reshape(shape)),
      run, layout, table, method)


def observation_operator(observations: ObservationSet, states: np.ndarray
                         ) -> np.ndarray:
  """H(x) of every point observation: states [..., T+1, *spatial, C] ->
  [..., P] at each row's time step, channel and position."""
  table = _points(observations)
  grid = _grid(observations.layout)
  index, weight = interpolation.point_operator(
      grid, {d: table[d].values for d in grid.dims}, observations.method)
  return interpolation.apply_operator_at(
      states, table["step"].values, table["channel"].values, index, weight,
      shape=grid.shape)


# ------------------------------------------------------------- assimilation


def initial_ensemble(initial: xr.Dataset, layout: StateLayout,
                     history_length: int, members: int) -> np.ndarray:
  """[M, h, *spatial, C] from a state dataset with dims ([sample], [time],
  [level,] *spatial) (a `batch` dim of size 1 is dropped); its last h times
  are the history, checked to be regular at the model step."""
  where = "the initial state"
  if not isinstance(initial, xr.Dataset):
    raise ValueError(f"{where} must be an xarray Dataset, got"
                     f" {type(initial).__name__}")
  if "batch" in initial.dims:
    if initial.sizes["batch"] != 1:
      raise ValueError(f"{where} has a batch of {initial.sizes['batch']};"
                       " give one initial state (or members on `sample`)")
    initial = initial.isel(batch=0)
  if "time" not in initial.dims:
    initial = initial.expand_dims("time")
  h = history_length
  if initial.sizes["time"] < h:
    raise ValueError(f"{where} has {initial.sizes['time']} time(s); the model"
                     f" needs a history of {h}")
  initial = initial.isel(time=slice(-h, None))
  times = _dataset_times(initial)
  if times is not None:
    time_lib.check_time_axis(times, layout.timestep, where)
  if "sample" not in initial.dims:
    initial = initial.expand_dims(sample=members)
  elif initial.sizes["sample"] != members:
    raise ValueError(f"{where} has {initial.sizes['sample']} members"
                     f" (sample dim) but members={members}")
  # NaN/inf are the model's to judge (FrozenARDM.check_history: GenCast's
  # sea surface temperature is undefined over land)
  return layout.stack(initial, ("sample", "time"), where, allow_missing=True)


def check_written_by(initial: xr.Dataset, model: FrozenARDM,
                     where: str = "the initial state") -> None:
  """Refuses a restart state that another model wrote (the analysis records
  the fingerprint of the model that made it)."""
  written_by = initial.attrs.get("model_fingerprint")
  if written_by and written_by != model.fingerprint:
    raise ValueError(f"{where} was written by another model ({written_by});"
                     f" this model is {model.fingerprint}: restart a run of"
                     " the same model")


def _dataset_times(ds: xr.Dataset) -> np.ndarray | None:
  """The times of a state dataset: its `datetime` coordinate, else its
  `time` (None where there are only GenCast's lead times, or none)."""
  for name in ("datetime", "time"):
    if name in ds.coords:
      values = np.asarray(ds[name].values).reshape(-1)
      if not np.issubdtype(values.dtype, np.timedelta64):
        return values
  return None


def assimilate(model: FrozenARDM, controller: BoundController | None,
               observations: ObservationSet, initial: xr.Dataset,
               members: int | None = None, seed: int = 0,
               first_step: int | None = None,
               progress: bool | str = False) -> xr.Dataset:
  """The analysis ensemble, dims (sample, time, [level,] *spatial), at
  t_0..t_T, labelled with the model's coordinates and CF attributes.

  controller None gives the unguided forecast (the background).
  members: M; default the initial state's `sample` size, else 8.
  first_step: the global index of the run's first step; step n of member m
    uses the key fold_in(fold_in(PRNGKey(seed), m), first_step + n), so a
    cycled run continues the keys of one run over both periods. Default: the
    `next_step` attribute of `initial` (set by `restart_state`), else 0.
  progress: a tqdm bar over the forecast steps (a string: its label).
  """
  _check_model(model)
  if controller is not None and not callable(controller):
    raise ValueError("controller must be a bound controller"
                     " (gc.load_controller) or None")
  if not isinstance(observations, ObservationSet):
    raise ValueError("observations must be an ObservationSet"
                     " (gc.observations_from_points or"
                     f" gc.observations_from_dataset), got"
                     f" {type(observations).__name__}")
  initial = _check_dataset(initial, "initial")
  seed = _check_int(seed, "seed", low=0)
  if members is None:
    members = initial.sizes.get("sample", 8)
  members = _check_int(members, "members")
  if first_step is None:
    first_step = int(initial.attrs.get("next_step", 0))
  first_step = _check_int(first_step, "first_step", low=0)
  if not isinstance(progress, (bool, str)):
    raise ValueError(f"progress must be True/False or a label, got"
                     f" {progress!r}")
  _check_memory(members, observations.num_steps, model.state_shape)
  if model.state_shape != observations.layout.shape:
    raise ValueError(f"the observations lie on a grid of shape"
                     f" {observations.layout.shape}; the model's state is"
                     f" {tuple(model.state_shape)}")
  check_written_by(initial, model)
  layout = observations.layout
  h = model.history_length
  x0 = initial_ensemble(initial, layout, h, int(members))
  run = observations.times
  history_times = run[0] - layout.timestep * np.arange(h - 1, -1, -1)
  context = model.context_for(np.concatenate([history_times, run[1:]]))
  horizon = controller.config.horizon if controller is not None else 1
  ensemble = np.asarray(ensemble_rollout(
      model, x0, observations.num_steps, jax.random.PRNGKey(seed),
      int(members), observations.stream if controller is not None else None,
      controller, horizon, first_step=first_step, context=context,
      progress=progress))
  method = "controlled" if controller is not None else "unguided"
  analysis = layout.unstack(
      ensemble, {"sample": np.arange(members), "time": run},
      attrs={"method": method, "seed": seed, "first_step": first_step,
             "next_step": first_step + observations.num_steps,
             "model_fingerprint": model.fingerprint})
  return cf.with_cf_attributes(analysis)


def _check_memory(members: int, num_steps: int, shape) -> None:
  """Refuses, before any compiled step, an ensemble whose analysis alone
  (float32 [M, T+1, *spatial, C], held on the host and the device) needs
  more than half of this machine's memory."""
  need = 2 * 4 * members * (num_steps + 1) * int(np.prod(shape))
  try:
    have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):  # not on this platform
    return
  if need > have / 2:
    raise ValueError(
        f"{members} members x {num_steps + 1} times of a state {tuple(shape)}"
        f" need about {need / 2**30:.1f} GiB, more than half of this"
        f" machine's {have / 2**30:.1f} GiB: fewer members or steps (cycle"
        " with restart_state)")


def check_truth(truth: xr.Dataset, observations: ObservationSet) -> None:
  """Refuses, before the run, a truth that lacks a variable, a time of the
  run or the model's grid (the scores would fail after the run)."""
  layout = observations.layout
  truth = _check_dataset(truth, "the truth")
  if "time" not in truth.coords:
    raise ValueError("the truth has no `time` coordinate")
  have = set(np.asarray(truth["time"].values).tolist())
  missing = [t for t in observations.times[1:] if t.item() not in have]
  if missing:
    raise ValueError(f"the truth does not cover the run's time"
                     f" {time_lib.format_time(missing[0])} (it has"
                     f" {truth.sizes['time']} times)")
  layout.stack(truth.sel(time=observations.times[1:2]), ("time",),
               "the truth", allow_missing=True)


def write_analysis(analysis: xr.Dataset, path: str | os.PathLike, *,
                   naming: str = "gencast", overwrite: bool = False) -> Path:
  """Writes an analysis (or background) as NetCDF (.nc) or zarr (.zarr),
  atomically, refusing an existing path unless overwrite. naming "gencast"
  keeps lat/lon/sample; "weatherbench2" renames them latitude/longitude/
  realization, as WeatherBench2's evaluation reads them."""
  if not isinstance(analysis, xr.Dataset):
    raise ValueError(f"analysis must be an xarray Dataset (the first"
                     f" argument), got {type(analysis).__name__}")
  if not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"path must be a file path (.nc or .zarr), got"
                     f" {type(path).__name__}")
  if naming not in ("gencast", "weatherbench2"):
    raise ValueError(f"naming must be 'gencast' or 'weatherbench2', got"
                     f" {naming!r}")
  if naming == "weatherbench2":
    analysis = cf.to_weatherbench2(analysis)
  cf.write_dataset(analysis, path, overwrite=overwrite)
  return Path(path)


def restart_state(analysis: xr.Dataset, history_length: int = 1
                  ) -> xr.Dataset:
  """The initial ensemble of the next cycle: the analysis's last h times."""
  analysis = _check_dataset(analysis, "analysis")
  history_length = _check_int(history_length, "history_length")
  missing = [a for a in ("next_step", "seed") if a not in analysis.attrs]
  if missing:
    raise ValueError(f"the analysis lacks the attribute(s) {missing}: give"
                     " the Dataset that gc.assimilate returned (or its file)")
  if analysis.sizes.get("time", 0) < history_length:
    raise ValueError(f"the analysis has {analysis.sizes.get('time', 0)}"
                     f" time(s); the next cycle needs {history_length}")
  state = analysis.isel(time=slice(-history_length, None))
  keep = {k: analysis.attrs[k] for k in ("model_fingerprint",)
          if k in analysis.attrs}
  return state.assign_attrs(next_step=int(analysis.attrs["next_step"]),
                            seed=int(analysis.attrs["seed"]), **keep)


def _on_analysis_grid(truth: xr.DataArray, like: xr.DataArray,
                      v: str) -> xr.DataArray:
  """The truth of variable v at the analysis's times and coordinates
  (reordered where only the order differs); ValueError otherwise."""
  missing = [t for t in np.asarray(like["time"].values)
             if t not in set(np.asarray(truth["time"].values))]
  if missing:
    raise ValueError(f"the truth does not cover the analysis time"
                     f" {time_lib.format_time(missing[0])} ({v!r})")
  truth = truth.sel(time=like["time"].values)
  for d in like.dims[2:]:
    if d not in truth.dims:
      raise ValueError(f"the truth's {v!r} has no dim {d!r}")
    want = np.asarray(like[d].values)
    have = np.asarray(truth[d].values)
    if have.shape == want.shape and np.allclose(np.sort(have), np.sort(want)):
      truth = truth.sel({d: want}, method="nearest")
    else:
      raise ValueError(f"the truth's {d!r} coordinate is not the analysis's")
  return truth.transpose(*like.dims[1:])


def score(analysis: xr.Dataset, truth: xr.Dataset,
          skip_first: bool = True) -> dict[str, dict[str, float]]:
  """RMSE of the ensemble mean, fair CRPS and spread/skill per variable,
  over space (and levels) and t_1..t_T (t_0 is given, not assimilated)."""
  analysis = _check_dataset(analysis, "analysis")
  truth = _check_dataset(truth, "truth")
  if "sample" not in analysis.dims:
    raise ValueError("the analysis has no `sample` dim: give the ensemble"
                     " that gc.assimilate returned")
  out = {}
  for v in analysis.data_vars:
    if v not in truth:
      raise ValueError(f"the truth has no variable {v!r}")
    ens = analysis[v].values
    tru = _on_analysis_grid(truth[v], analysis[v], v).values
    if skip_first:
      ens, tru = ens[:, 1:], tru[1:]
    out[v] = {"rmse": float(metrics.rmse(ens.mean(0), tru)),
              "crps": float(metrics.crps_fair(ens, tru)),
              "spread_skill": float(metrics.spread_skill_ratio(ens, tru))}
  return out


def monitoring(observations: ObservationSet, background: xr.Dataset,
               analysis: xr.Dataset) -> dict[str, dict[str, float]]:
  """Observation-minus-background and observation-minus-analysis statistics
  per variable (of the ensemble means, at the observations, t_1..t_T).

  expected_rmse_obs_error is the RMS of the stated error stds: the RMS of
  y - H(x_true). A consistent system has mean(O-B) and mean(O-A) near 0 and
  RMS(O-A) <= expected_rmse_obs_error <= RMS(O-B) (Desroziers et al. 2005).
  """
  if not isinstance(observations, ObservationSet):
    raise ValueError("observations must be the ObservationSet of the run,"
                     f" got {type(observations).__name__}")
  background = _check_dataset(background, "background")
  analysis = _check_dataset(analysis, "analysis")
  for name, ds in (("background", background), ("analysis", analysis)):
    if "sample" not in ds.dims:
      raise ValueError(f"the {name} has no `sample` dim: give the ensemble"
                       " that gc.assimilate returned")
  layout = observations.layout
  table = _points(observations)
  names = ("background", "analysis")
  states = np.stack([layout.stack(ds.mean("sample", keep_attrs=True),
                                  ("time",), f"the {name}")
                     for name, ds in zip(names, (background, analysis))])
  means = dict(zip(names, observation_operator(observations, states)))
  out = {}
  for v in layout.variables:
    rows = (table["variable"] == v).values
    y = table["value"].values[rows]
    stats = {"count": int(rows.sum()),
             "expected_rmse_obs_error": float(np.sqrt(np.mean(
                 table["error_std"].values[rows]**2))) if rows.any()
             else None}
    for name, short in (("background", "omb"), ("analysis", "oma")):
      d = y - means[name][rows]
      stats[f"{short}_mean"] = float(d.mean()) if rows.any() else None
      stats[f"{short}_rmse"] = float(np.sqrt(np.mean(d**2))) if rows.any() \
          else None
    out[v] = stats
  return out


def _points(observations: ObservationSet) -> pd.DataFrame:
  """The point table of the observations (every observed grid value of a
  gridded stream is a point), times t_1..t_T."""
  if observations.points is not None:
    return observations.points[observations.points["step"] > 0]
  layout = observations.layout
  mask = np.asarray(observations.stream.mask) > 0
  values = np.asarray(observations.stream.values)
  where = np.nonzero(mask)
  names = np.asarray([v for v, _ in layout.channels])
  table = {"step": where[0], "time": observations.times[where[0]],
           "channel": where[-1], "variable": names[where[-1]],
           "value": values[where],
           "error_std": np.asarray(observations.stream.entry_std())[where]}
  for i, (d, c) in enumerate(zip(layout.dims, layout.coords)):
    table[d] = c[where[1 + i]]
  table = pd.DataFrame(table)
  return table[table["step"] > 0]


def monitoring_markdown(stats: dict[str, dict[str, float]]) -> str:
  lines = ["| variable | count | O-B mean | O-B RMSE | O-A mean | O-A RMSE |"
           " expected RMS of y - H(truth) |", "|---|---|---|---|---|---|---|"]
  fmt = lambda x: "-" if x is None else f"{x:.4g}"
  for v, s in stats.items():
    lines.append(f"| {v} | {s['count']} | {fmt(s['omb_mean'])} |"
                 f" {fmt(s['omb_rmse'])} | {fmt(s['oma_mean'])} |"
                 f" {fmt(s['oma_rmse'])} | {fmt(s['expected_rmse_obs_error'])} |")
  return "\n".join(lines) + "\n"
