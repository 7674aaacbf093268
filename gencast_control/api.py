"""Assimilate your own observations: the public API.

    import gencast_control as gc
    model = gc.load_model("ks")                      # a shipped name or a path
    controller = gc.load_controller("ks", model)
    grid = xr.open_dataset("initial.nc")             # state(s) with coordinates
    obs = gc.observations_from_points("stations.csv", grid, dt=1.0)
    analysis = gc.assimilate(model, controller, obs, grid, members=8)
    gc.score(analysis, truth)                        # with a truth, if any

The controller sees observations on the model grid (Observations: values, a
mask and an error std per grid point and time). Gridded observations (NaN =
unobserved) are used as they are. A point observation is given to the
controller at its nearest grid point with its own error std; k of them on one
point and time become their mean, with error std sqrt(sum_i sigma_i^2) / k.
The controller weighs each observation by its error std (its encoder sees
log sigma per observation); it has learnt that over the error stds it was
trained on (the config's regimes), so far outside them it extrapolates. The
monitoring statistics (`monitoring`) compare each point observation with the
state interpolated to the point (linear, or nearest with
method="nearest"): H(x) of the DA literature.

A run starts at the last time t_0 of `initial` and advances t_k = t_0 + k dt;
observation times must be such times. Observations at or before t_0 and
after the run's last step are left out, so one file serves every cycle of a
cycled run (`restart_state`). Members start from `initial`: one
state shared by all, or one per member (a `sample` dim).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
import pandas as pd
import xarray as xr

from gencast_control import pipeline

from gencast_control.evaluation import metrics
from gencast_control.adapters.grid import GridARDM, load_grid_ardm
from gencast_control.core.assimilation import ensemble_rollout
from gencast_control.core.controller import BoundController, bind_controller
from gencast_control.core.controller import load_controller as _load_controller
from gencast_control.core.observations import Observations

POINT_COLUMNS = ("time", "variable", "value", "error_std")


@dataclasses.dataclass(frozen=True)
class ObservationSet:
  """Observations of a run: the controller's gridded stream and, for point
  observations, the table that the monitoring statistics use.

  stream: Observations over times[0..T] on the model grid.
  times: [T+1] the run's times t_0 + k dt.
  variables: channel names, in the model's channel order.
  spatial_dims: the grid's dims, e.g. ("x",).
  coords: {dim: 1-D coordinate} of the grid.
  points: the point table (columns time, *spatial_dims, variable, value,
    error_std, plus step), or None for gridded observations.
  """
  stream: Observations
  times: np.ndarray
  variables: tuple[str, ...]
  spatial_dims: tuple[str, ...]
  coords: dict
  points: pd.DataFrame | None

  @property
  def num_steps(self) -> int:
    return len(self.times) - 1


def load_model(name_or_path: str | os.PathLike) -> GridARDM:
  """A frozen ARDM: a shipped name ("ks", "kolmogorov") or a checkpoint."""
  return load_grid_ardm(checkpoint_path(name_or_path, "ardm"))[0]


def load_controller(name_or_path: str | os.PathLike,
                    model: GridARDM) -> BoundController:
  """The controller trained for `model`: a shipped name or a checkpoint."""
  config, params, _ = _load_controller(
      checkpoint_path(name_or_path, "controller"), model)
  return bind_controller(config, model.periodic, params)


def checkpoint_path(name_or_path, kind: str) -> Path:
  """A checkpoint file, or the shipped `kind` ("ardm", "controller") of a
  config name such as "ks"."""
  path = Path(name_or_path)
  if path.suffix == ".npz" or path.exists():
    return path
  shipped = pipeline.shipped_checkpoints(str(name_or_path))[
      ("ardm", "controller").index(kind)]
  if not shipped.exists():
    raise ValueError(f"{name_or_path!r} is neither a checkpoint file nor a"
                     " shipped model (ks, kolmogorov)")
  return shipped


# ------------------------------------------------------------------ the grid


def _grid(grid: xr.Dataset | xr.DataArray, model: GridARDM | None = None
          ) -> tuple[tuple[str, ...], dict]:
  """(spatial dims, {dim: coordinate}) of a state dataset."""
  if isinstance(grid, xr.Dataset) and not grid.data_vars:
    raise ValueError("the grid (initial state) dataset has no variables")
  dims = tuple(d for d in (grid.dims if isinstance(grid, xr.DataArray)
                           else next(iter(grid.data_vars.values())).dims)
               if d not in ("sample", "time", "history", "trajectory"))
  coords = {}
  for d in dims:
    if d not in grid.coords:
      raise ValueError(f"the grid has no coordinate for its dim {d!r}")
    coords[d] = np.asarray(grid[d].values, np.float64)
  if model is not None and tuple(len(coords[d]) for d in dims) != tuple(
      model.state_shape[:-1]):
    raise ValueError(
        f"the grid {dict((d, len(coords[d])) for d in dims)} does not match"
        f" the model's grid {tuple(model.state_shape[:-1])}")
  return dims, coords


def _run_times(start: float, dt: float, times: np.ndarray,
               num_steps: int | None) -> np.ndarray:
  """t_0 + k dt, k = 0..T, with T the last observation's step by default."""
  steps = (np.asarray(times, np.float64) - start) / dt
  steps = steps[steps > 1e-6]  # at or before t_0: not assimilated
  if steps.size and (np.abs(steps - np.round(steps)) > 1e-6).any():
    bad = float(np.asarray(times)[np.argmax(np.abs(steps - np.round(steps)))])
    raise ValueError(f"observation time {bad:g} is not a model time t_0 + k dt"
                     f" (t_0 = {start:g}, dt = {dt:g})")
  if not steps.size:
    raise ValueError(f"no observation lies after the run's start t_0 ="
                     f" {start:g}: no overlap between the observation times"
                     " and the run")
  num_steps = int(np.round(steps.max())) if num_steps is None else num_steps
  if num_steps < 1:
    raise ValueError(f"the run needs >= 1 step, got {num_steps}")
  return start + dt * np.arange(num_steps + 1)


def _error_std(error_std, variables) -> np.ndarray:
  """[C] error stds from one value or {variable: std}."""
  if isinstance(error_std, dict):
    missing = [v for v in variables if v not in error_std]
    if missing:
      raise ValueError(f"error_std has no entry for variable(s) {missing}")
    error_std = [error_std[v] for v in variables]
  std = np.broadcast_to(np.asarray(error_std, np.float64), (len(variables),))
  if not (np.isfinite(std).all() and (std > 0).all()):
    raise ValueError(f"error std must be positive and finite, got {std}")
  return std.astype(np.float32)


def error_std_name(variable: str) -> str:
  """The variable of a gridded observation file that holds `variable`'s
  per-observation error stds."""
  return f"{variable}_error_std"


# ---------------------------------------------------- gridded observations


def observations_from_dataset(ds: xr.Dataset, variables: Sequence[str],
                              error_std: float | dict | None, start: float,
                              dt: float, num_steps: int | None = None,
                              model: GridARDM | None = None
                              ) -> ObservationSet:
  """Observations on the model grid: dims (time, *spatial), NaN = unobserved.

  variables: the model's channels in order (each must be in `ds`).
  error_std: one std for all variables or {variable: std}; None: per
    observation, from the variables `<variable>_error_std` of `ds` (same
    dims; a network of mixed quality).
  start, dt: the run's first time t_0 and step (see module doc).
  """
  missing = [v for v in variables if v not in ds]
  if missing:
    raise ValueError(f"the observations have no variable(s) {missing}; they"
                     f" have {list(ds.data_vars)}")
  if "time" not in ds.dims:
    raise ValueError("gridded observations need a `time` dim")
  dims, coords = _grid(ds[variables[0]], model)
  times = _run_times(start, dt, ds["time"].values, num_steps)
  if error_std is None:
    missing = [error_std_name(v) for v in variables
               if error_std_name(v) not in ds]
    if missing:
      raise ValueError(
          "gridded observations need an error std: one value or one per"
          " variable (--error-std STD or VAR=STD), or per observation the"
          f" variable(s) {missing} in the file")
  shape = (len(times),) + tuple(len(coords[d]) for d in dims) + (
      len(variables),)
  values = np.full(shape, np.nan, np.float32)
  std = np.ones(shape, np.float32)
  steps = np.round((ds["time"].values - start) / dt).astype(int)
  keep = (steps > 0) & (steps < len(times))
  for c, v in enumerate(variables):
    values[steps[keep], ..., c] = ds[v].transpose("time", *dims).values[keep]
    if error_std is None:
      std[steps[keep], ..., c] = ds[error_std_name(v)].transpose(
          "time", *dims).values[keep]
  if error_std is not None:
    std = _error_std(error_std, variables)
  elif np.isnan(std[np.isfinite(values)]).any():
    raise ValueError("an observed value has no error std (NaN in"
                     " <variable>_error_std)")
  return ObservationSet(Observations.from_arrays(values, noise_std=std),
                        times, tuple(variables), dims, coords, None)


# ------------------------------------------------------ point observations


def read_point_table(source) -> pd.DataFrame:
  """A point table from a DataFrame, a .csv or a NetCDF file (one obs dim)."""
  if isinstance(source, pd.DataFrame):
    return source.copy()
  path = Path(source)
  if not path.is_file():
    raise FileNotFoundError(f"observation table {path} does not exist")
  if path.suffix == ".csv":
    return pd.read_csv(path)
  return xr.open_dataset(path).to_dataframe().reset_index()


def observations_from_points(table, grid: xr.Dataset, start: float, dt: float,
                             variables: Sequence[str] | None = None,
                             num_steps: int | None = None,
                             model: GridARDM | None = None,
                             method: str = "linear") -> ObservationSet:
  """Point observations: columns time, one per spatial dim, variable, value,
  error_std (a DataFrame, .csv or NetCDF).

  grid: a state dataset with the grid's coordinates (e.g. the initial
    state). Points outside a non-periodic axis are an error; periodic axes
    (model.periodic) wrap.
  method: "linear" or "nearest", the operator H of `monitoring`.
  The controller sees each observation at its nearest grid point, with its
  error std (module doc).
  """
  if method not in ("linear", "nearest"):
    raise ValueError(f"method must be 'linear' or 'nearest', got {method!r}")
  table = read_point_table(table)
  dims, coords = _grid(grid, model)
  need = ("time",) + dims + ("variable", "value", "error_std")
  missing = [c for c in need if c not in table.columns]
  if missing:
    raise ValueError(f"the observation table lacks column(s) {missing}; it"
                     f" needs {list(need)}")
  if table.empty:
    raise ValueError("the observation table has no rows")
  variables = tuple(variables or sorted(table["variable"].unique()))
  unknown = sorted(set(table["variable"]) - set(variables))
  if unknown:
    raise ValueError(f"unknown variable(s) {unknown} in the observation"
                     f" table; the model has {list(variables)}")
  if table[["value", "error_std"]].isna().any().any():
    raise ValueError("the observation table has missing values or error"
                     " stds")
  if not (table["error_std"] > 0).all():
    raise ValueError("every error_std must be > 0")
  duplicated = table.duplicated(subset=["time", *dims, "variable"])
  if duplicated.any():
    row = table[duplicated].iloc[0]
    raise ValueError(f"duplicated observation: {row['variable']} at time"
                     f" {row['time']:g}, {', '.join(f'{d}={row[d]:g}' for d in dims)}")
  periodic = model.periodic if model is not None else (False,) * len(dims)
  for d, wrap in zip(dims, periodic):
    c = coords[d]
    step = (c[-1] - c[0]) / (len(c) - 1)
    low, high = c[0], c[-1] + (step if wrap else 0.0)
    if not wrap and ((table[d] < low) | (table[d] > high)).any():
      raise ValueError(f"observations outside the domain: {d} must lie in"
                       f" [{low:g}, {high:g}]")
  times = _run_times(start, dt, table["time"].values, num_steps)
  table = table.assign(step=np.round((table["time"] - start) / dt).astype(int))
  table = table[(table["step"] > 0) & (table["step"] < len(times))
                ].reset_index(drop=True)
  shape = (len(times),) + tuple(len(coords[d]) for d in dims) + (
      len(variables),)
  total, variance, count = (np.zeros(shape, np.float64) for _ in range(3))
  index = _nearest_index(table, dims, coords, periodic)
  channel = table["variable"].map({v: i for i, v in enumerate(variables)})
  where = (table["step"].values, *index, channel.values)
  np.add.at(total, where, table["value"].values)
  np.add.at(variance, where, table["error_std"].values**2)
  np.add.at(count, where, 1.0)
  observed = count > 0
  values = np.where(observed, total / np.maximum(count, 1), np.nan)
  std = np.where(observed, np.sqrt(variance) / np.maximum(count, 1), 1.0)
  table = table.assign(method=method)
  return ObservationSet(Observations.from_arrays(values, noise_std=std),
                        times, variables, dims, coords, table)


def _position(values: np.ndarray, c: np.ndarray) -> np.ndarray:
  """Fractional grid index of coordinates on the uniform axis `c`."""
  return (values - c[0]) / ((c[-1] - c[0]) / (len(c) - 1))


def _on_axis(i: np.ndarray, size: int, wrap: bool) -> np.ndarray:
  """Integer indices wrapped (periodic axis) or clipped into 0..size-1."""
  return np.mod(i, size) if wrap else np.clip(i, 0, size - 1)


def _nearest_index(table, dims, coords, periodic):
  return [_on_axis(np.round(_position(table[d].values, coords[d])).astype(int),
                   len(coords[d]), wrap) for d, wrap in zip(dims, periodic)]


def interpolate_to_points(states: np.ndarray, table: pd.DataFrame,
                          dims: Sequence[str], coords: dict,
                          periodic: Sequence[bool], variables: Sequence[str],
                          method: str = "linear") -> np.ndarray:
  """H(x): states [..., T+1, *spatial, C] at the table's points -> [..., P].

  Multilinear interpolation on the (uniform) grid, or the nearest point.
  """
  states = np.asarray(states)
  channel = table["variable"].map(
      {v: i for i, v in enumerate(variables)}).values
  step = table["step"].values
  # corners: lists of (index array, weight) per dim, one per grid corner
  if method == "nearest":
    corners = [[(i, 1.0) for i in _nearest_index(table, dims, coords,
                                                 periodic)]]
  else:
    corners = [[]]
    for d, wrap in zip(dims, periodic):
      n = len(coords[d])
      pos = _position(table[d].values, coords[d])
      i0 = np.floor(pos).astype(int)
      frac = pos - i0
      options = [(_on_axis(i0, n, wrap), 1.0 - frac),
                 (_on_axis(i0 + 1, n, wrap), frac)]
      corners = [prev + [opt] for prev in corners for opt in options]
  out = np.zeros(states.shape[:states.ndim - len(dims) - 2] + (len(table),))
  for corner in corners:
    weight = np.prod([w for _, w in corner], axis=0)
    index = tuple(i for i, _ in corner)
    out += weight * states[(Ellipsis, step) + index + (channel,)]
  return out


# ------------------------------------------------------------- assimilation


def initial_ensemble(initial: xr.Dataset, variables: Sequence[str],
                     model: GridARDM, members: int) -> np.ndarray:
  """[M, h, *spatial, C] from a state dataset with dims ([sample], [time],
  *spatial); its last h times are the history (h = model.history_length)."""
  missing = [v for v in variables if v not in initial]
  if missing:
    raise ValueError(f"the initial state has no variable(s) {missing}")
  dims, _ = _grid(initial, model)
  h = model.history_length
  arrays = []
  for v in variables:
    da = initial[v]
    if "time" not in da.dims:
      da = da.expand_dims("time")
    if da.sizes["time"] < h:
      raise ValueError(f"the initial state has {da.sizes['time']} times; the"
                       f" model needs a history of {h}")
    da = da.isel(time=slice(-h, None))
    if "sample" not in da.dims:
      da = da.expand_dims(sample=members)
    arrays.append(da.transpose("sample", "time", *dims).values)
  x = np.stack(arrays, axis=-1).astype(np.float32)
  if x.shape[0] != members:
    raise ValueError(f"the initial ensemble has {x.shape[0]} members but"
                     f" members={members}")
  if x.shape[2:] != tuple(model.state_shape):
    raise ValueError(f"the initial state has shape {x.shape[2:]}; the model"
                     f" needs {tuple(model.state_shape)}")
  if not np.isfinite(x).all():
    raise ValueError("the initial state contains NaN or inf")
  return x


def start_time(initial: xr.Dataset) -> float:
  """t_0: the last time of `initial` (0 without a time coordinate)."""
  if "time" in initial.coords and initial["time"].size:
    return float(np.asarray(initial["time"].values).reshape(-1)[-1])
  return 0.0


def assimilate(model: GridARDM, controller: BoundController | None,
               observations: ObservationSet, initial: xr.Dataset,
               members: int = 8, seed: int = 0,
               first_step: int | None = None) -> xr.Dataset:
  """The analysis ensemble, dims (sample, time, *spatial), at t_0..t_T.

  controller None gives the unguided forecast (the background).
  first_step: the global index of the run's first step; step n of member m
    uses the key fold_in(fold_in(PRNGKey(seed), m), first_step + n), so a
    cycled run continues the keys of one run over both periods. Default: the
    `first_step` attribute of `initial` (set by `restart_state`), else 0.
  """
  if first_step is None:
    first_step = int(initial.attrs.get("next_step", 0))
  x0 = initial_ensemble(initial, observations.variables, model, members)
  stream = observations.stream
  horizon = controller.config.horizon if controller is not None else 1
  ensemble = np.asarray(ensemble_rollout(
      model, x0, observations.num_steps, jax.random.PRNGKey(seed), members,
      stream if controller is not None else None, controller, horizon,
      first_step=first_step))
  coords = {d: observations.coords[d] for d in observations.spatial_dims}
  coords.update(time=observations.times, sample=np.arange(members))
  dims = ("sample", "time") + observations.spatial_dims
  return xr.Dataset(
      {v: (dims, ensemble[..., c])
       for c, v in enumerate(observations.variables)},
      coords=coords,
      attrs={"method": "controlled" if controller is not None else
             "unguided", "seed": seed, "first_step": first_step,
             "next_step": first_step + observations.num_steps})


def restart_state(analysis: xr.Dataset, history_length: int = 1
                  ) -> xr.Dataset:
  """The initial ensemble of the next cycle: the analysis's last h times."""
  state = analysis.isel(time=slice(-history_length, None))
  return state.assign_attrs(next_step=int(analysis.attrs["next_step"]),
                            seed=int(analysis.attrs["seed"]))


def score(analysis: xr.Dataset, truth: xr.Dataset,
          skip_first: bool = True) -> dict[str, dict[str, float]]:
  """RMSE of the ensemble mean, fair CRPS and spread/skill per variable,
  over space and t_1..t_T (t_0 is given, not assimilated)."""
  out = {}
  for v in analysis.data_vars:
    if v not in truth:
      raise ValueError(f"the truth has no variable {v!r}")
    t = truth[v].sel(time=analysis["time"], method="nearest")
    if not np.allclose(t["time"].values, analysis["time"].values):
      raise ValueError("the truth does not cover the analysis times")
    ens = analysis[v].values
    tru = t.transpose("time", *analysis[v].dims[2:]).values
    if skip_first:
      ens, tru = ens[:, 1:], tru[1:]
    out[v] = {"rmse": float(metrics.rmse(ens.mean(0), tru)),
              "crps": float(metrics.crps_fair(ens, tru)),
              "spread_skill": float(metrics.spread_skill_ratio(ens, tru))}
  return out


def monitoring(observations: ObservationSet, background: xr.Dataset,
               analysis: xr.Dataset, periodic: Sequence[bool]
               ) -> dict[str, dict[str, float]]:
  """Observation-minus-background and observation-minus-analysis statistics
  per variable (of the ensemble means, at the observations, t_1..t_T).

  expected_rmse_obs_error is the RMS of the stated error stds: the RMS of
  y - H(x_true). A consistent system has mean(O-B) and mean(O-A) near 0 and
  RMS(O-A) <= expected_rmse_obs_error <= RMS(O-B) (Desroziers et al. 2005).
  """
  table = observations.points
  if table is None:  # gridded: every observed grid value is a point
    table = _grid_table(observations)
  table = table[table["step"] > 0]
  out = {}
  means = {}
  for name, ds in (("background", background), ("analysis", analysis)):
    states = np.stack([ds[v].mean("sample").values
                       for v in observations.variables], axis=-1)
    means[name] = interpolate_to_points(
        states, table, observations.spatial_dims, observations.coords,
        periodic, observations.variables,
        table["method"].iloc[0] if "method" in table and len(table)
        else "nearest")
  for v in observations.variables:
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


def _grid_table(observations: ObservationSet) -> pd.DataFrame:
  mask = np.asarray(observations.stream.mask) > 0
  values = np.asarray(observations.stream.values)
  where = np.nonzero(mask)
  table = {"step": where[0], "time": observations.times[where[0]],
           "variable": np.asarray(observations.variables)[where[-1]],
           "value": values[where],
           "error_std": np.asarray(observations.stream.entry_std())[where],
           "method": "nearest"}
  for i, d in enumerate(observations.spatial_dims):
    table[d] = observations.coords[d][where[1 + i]]
  return pd.DataFrame(table)


def monitoring_markdown(stats: dict[str, dict[str, float]]) -> str:
  lines = ["| variable | count | O-B mean | O-B RMSE | O-A mean | O-A RMSE |"
           " expected RMS of y - H(truth) |", "|---|---|---|---|---|---|---|"]
  fmt = lambda x: "-" if x is None else f"{x:.4g}"
  for v, s in stats.items():
    lines.append(f"| {v} | {s['count']} | {fmt(s['omb_mean'])} |"
                 f" {fmt(s['omb_rmse'])} | {fmt(s['oma_mean'])} |"
                 f" {fmt(s['oma_rmse'])} | {fmt(s['expected_rmse_obs_error'])} |")
  return "\n".join(lines) + "\n"
