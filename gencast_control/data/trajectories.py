"""Trajectory datasets: the on-disk format shared by the PDEs and your own data.

A trajectory dataset is an xarray Dataset (NetCDF file or zarr store) whose
data variables all have dims ("trajectory", "time", *spatial), a strictly
increasing `time` coordinate (model time) and finite values. Training reads
the time coordinate as the model's step: it must be regular, without gaps or
repeats (`time_step` names the first that is not). The splits of
one experiment live in one folder as train / validation / test with suffix .nc
(NetCDF) or .zarr. In memory, the variables are stacked as channels:
[trajectory, time, *spatial, C] float32 (the core's channel-last layout).

Writes are atomic: a dataset is written to a temporary path in the target's
folder and moved into place with os.replace, so a crash never leaves a
partial file under the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr

from gencast_control.core import times as time_lib
from gencast_control.core.times import format_step

SPLITS = ("train", "validation", "test")
LEADING_DIMS = ("trajectory", "time")
FORMAT_SUFFIXES = {"netcdf": ".nc", "zarr": ".zarr"}


class TrajectoryDatasetError(ValueError):
  """A trajectory dataset does not follow the format described above."""


def _check_format(format: str) -> str:  # noqa: A002
  if format not in FORMAT_SUFFIXES:
    raise ValueError(f"unknown format {format!r}: use 'netcdf' or 'zarr'")
  return format


def _variable_names(ds: xr.Dataset, variables) -> tuple[str, ...]:
  if variables is None:
    variables = tuple(ds.data_vars)
    if not variables:
      raise TrajectoryDatasetError("the dataset has no data variables")
  elif isinstance(variables, str):
    variables = (variables,)
  variables = tuple(variables)
  if not variables:
    raise ValueError("variables must name at least one variable")
  missing = [v for v in variables if v not in ds.data_vars]
  if missing:
    raise TrajectoryDatasetError(
        f"variable(s) {missing} missing; the dataset has"
        f" {sorted(map(str, ds.data_vars))}")
  return variables


# ----------------------------------------------------------------- splitting


def split_dataset(ds: xr.Dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1)
                  ) -> dict[str, xr.Dataset]:
  """Splits along `trajectory` into contiguous train/validation/test blocks.

  Sizes follow the fractions by largest-remainder rounding (they add up to n);
  a split with a positive fraction gets at least one trajectory when n allows
  it, taken from the largest split. Contiguous blocks (no shuffling) keep
  time-ordered trajectories (e.g. one per year) from leaking between splits.
  """
  fractions = tuple(float(f) for f in fractions)
  if (len(fractions) != 3 or min(fractions) < 0
      or abs(sum(fractions) - 1.0) > 1e-6):
    raise ValueError(f"fractions must be 3 non-negative numbers summing to 1,"
                     f" got {fractions}")
  if "trajectory" not in ds.dims:
    raise TrajectoryDatasetError(
        f"cannot split: the dataset has no 'trajectory' dim (dims:"
        f" {tuple(ds.dims)})")
  n = ds.sizes["trajectory"]
  raw = np.asarray(fractions) * n
  sizes = np.floor(raw + 1e-9).astype(int)
  for i in np.argsort(-(raw - sizes), kind="stable")[:n - sizes.sum()]:
    sizes[i] += 1
  positive = np.asarray(fractions) > 0
  if n >= positive.sum():
    for i in np.flatnonzero(positive & (sizes == 0)):
      sizes[np.argmax(sizes)] -= 1
      sizes[i] = 1
  bounds = np.concatenate([[0], np.cumsum(sizes)])
  return {split: ds.isel(trajectory=slice(bounds[i], bounds[i + 1]))
          for i, split in enumerate(SPLITS)}


# ------------------------------------------------------------------- writing


def write_dataset(ds: xr.Dataset, path, format: str | None = None  # noqa: A002
                  ) -> Path:
  """Writes a NetCDF file or zarr store atomically; returns its path.

  format defaults to 'zarr' for a .zarr suffix and 'netcdf' otherwise. The
  dataset is written to a temporary name in the same folder, then moved into
  place with os.replace; an existing zarr store is replaced only once the new
  one is complete. Encodings inherited from the source file are dropped.
  """
  path = Path(path)
  format = _check_format(format or ("zarr" if path.suffix == ".zarr"
                                    else "netcdf"))
  if not isinstance(ds, xr.Dataset):
    raise TypeError(f"expected an xarray.Dataset, got {type(ds).__name__}")
  path.parent.mkdir(parents=True, exist_ok=True)
  ds = ds.drop_encoding()
  tmp = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.",
                         suffix=".tmp")
  try:
    target = Path(tmp) / path.name
    if format == "zarr":
      ds.to_zarr(target, mode="w", consolidated=False)
    else:
      ds.to_netcdf(target)
    if format == "zarr" and path.exists():
      old = Path(tmp) / "replaced"
      os.replace(path, old)  # moved aside, deleted with tmp below
    elif path.is_dir():
      raise IsADirectoryError(f"{path} is a directory; cannot write a NetCDF"
                              " file there")
    os.replace(target, path)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return path


def write_splits(datasets: Mapping[str, xr.Dataset], out_dir,
                 format: str = "netcdf") -> dict[str, Path]:  # noqa: A002
  """Writes {split: dataset} as out_dir/<split>.nc (or .zarr), each atomically.

  Split names are usually train / validation / test; any plain file stem is
  accepted.
  """
  suffix = FORMAT_SUFFIXES[_check_format(format)]
  for split in datasets:
    if not split or Path(split).name != split or split.startswith("."):
      raise ValueError(f"split name {split!r} is not a plain file name")
  return {split: write_dataset(ds, Path(out_dir) / f"{split}{suffix}", format)
          for split, ds in datasets.items()}


# ------------------------------------------------------------------- reading


def open_trajectories(path, load: bool = True) -> xr.Dataset:
  """Opens a NetCDF file or a zarr store (a directory or a .zarr path).

  With load=True the data are read into memory and the file is closed;
  otherwise zarr stores stay lazy (dask). Stores are written without
  consolidated metadata (not part of the zarr v3 spec); both kinds open.
  """
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"trajectory dataset {path} does not exist")
  try:
    if path.is_dir() or path.suffix == ".zarr":
      with warnings.catch_warnings():  # stores without consolidated metadata
        warnings.filterwarnings("ignore", message=".*consolidated metadata",
                                category=RuntimeWarning)
        ds = xr.open_zarr(path, consolidated=None)
      return ds.load() if load else ds
    with xr.open_dataset(path) as ds:
      return ds.load()
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise TrajectoryDatasetError(
        f"cannot read trajectory dataset {path} as"
        f" {'zarr' if path.is_dir() else 'NetCDF'}: {e}") from e


def validate_trajectories(ds: xr.Dataset,
                          variables: Sequence[str] | None = None,
                          spatial_dims: Sequence[str] | None = None
                          ) -> tuple[str, ...]:
  """Checks a trajectory dataset; raises TrajectoryDatasetError if malformed.

  Checks: the variables exist (default: all data variables); each has dims
  exactly ("trajectory", "time", *spatial_dims) in that order (spatial_dims
  default: those of the first variable); at least one trajectory and two
  times; numeric, finite values; a strictly increasing `time` coordinate when
  there is one. Returns the spatial dims.
  """
  if not isinstance(ds, xr.Dataset):
    raise TypeError(f"expected an xarray.Dataset, got {type(ds).__name__}")
  variables = _variable_names(ds, variables)
  if spatial_dims is None:
    spatial_dims = tuple(d for d in ds[variables[0]].dims
                         if d not in LEADING_DIMS)
  spatial_dims = tuple(spatial_dims)
  expected = LEADING_DIMS + spatial_dims
  for v in variables:
    dims = ds[v].dims
    missing = [d for d in expected if d not in dims]
    extra = [d for d in dims if d not in expected]
    if missing or extra:
      problems = ([f"missing dim(s) {missing}"] if missing else []) + (
          [f"unexpected dim(s) {extra}"] if extra else [])
      raise TrajectoryDatasetError(
          f"variable {v!r} has dims {dims}: {' and '.join(problems)};"
          f" expected {expected}")
    if dims != expected:
      raise TrajectoryDatasetError(
          f"variable {v!r} has its dims in the order {dims}; expected"
          f" {expected} (use ds.transpose(*{expected}))")
  if ds.sizes["trajectory"] < 1:
    raise TrajectoryDatasetError("the dataset has no trajectories")
  if ds.sizes["time"] < 2:
    raise TrajectoryDatasetError(
        f"trajectories need at least 2 times, got {ds.sizes['time']}")
  for v in variables:
    if ds[v].dtype.kind not in "fiu":
      raise TrajectoryDatasetError(
          f"variable {v!r} has non-numeric dtype {ds[v].dtype}")
    data = ds[v].data
    num_nan = int(np.isnan(data).sum())
    num_inf = int(np.isinf(data).sum())
    if num_nan or num_inf:
      raise TrajectoryDatasetError(
          f"variable {v!r} has {num_nan} NaN and {num_inf} inf values (of"
          f" {ds[v].size}); fill or drop them")
    largest = float(np.abs(data).max()) if data.size else 0.0
    if largest > float(np.finfo(np.float32).max):
      raise TrajectoryDatasetError(
          f"variable {v!r} has values up to {largest:.3g}, beyond float32's"
          f" range ({np.finfo(np.float32).max:.3g}) that the models compute"
          " in; rescale it (e.g. change its units)")
  if "time" in ds.coords:
    t = ds["time"].values
    if t.ndim != 1 or t.dtype.kind not in "fiumM":
      raise TrajectoryDatasetError(
          f"the time coordinate must be 1-D numeric or datetime, got dims"
          f" {ds['time'].dims} and dtype {t.dtype}")
    steps = np.diff(t)
    bad = np.flatnonzero(~(steps > np.zeros_like(steps)))
    if bad.size:
      i = int(bad[0])
      raise TrajectoryDatasetError(
          f"the time coordinate is not strictly increasing: time[{i}] ="
          f" {t[i]} is followed by time[{i + 1}] = {t[i + 1]}"
          + (" (a repeated time)" if t[i] == t[i + 1] else ""))
  return spatial_dims


def time_step(ds: xr.Dataset, where: str):
  """The time between consecutive states of a trajectory dataset: its `time`
  coordinate checked strictly increasing, without repeated times and
  regular (every step equal to the first); TrajectoryDatasetError naming
  `where` (the file) and the first repeat or gap. A float (np.float64) for
  numeric times, a np.timedelta64 for dates; None without a time coordinate
  or with a single time."""
  if "time" not in ds.coords:
    return None
  t = np.asarray(ds["time"].values)
  if t.ndim != 1 or t.dtype.kind not in "fiumM":
    raise TrajectoryDatasetError(
        f"{where}: the time coordinate must be 1-D numeric or datetime, got"
        f" dims {ds['time'].dims} and dtype {t.dtype}")
  if t.dtype.kind in "iuf":
    t = t.astype(np.float64)
    if not np.isfinite(t).all():
      raise TrajectoryDatasetError(f"{where}: the time coordinate has NaN or"
                                   " inf values")
  elif np.isnat(t).any():
    raise TrajectoryDatasetError(f"{where}: the time coordinate has missing"
                                 " (NaT) values")
  if t.size < 2:
    return None
  try:
    time_lib.check_time_axis(t, None, where)
  except ValueError as e:
    raise TrajectoryDatasetError(
        f"{e}: the states of a trajectory must be one model step apart")
  step = t[1] - t[0]
  off = np.abs(np.asarray(np.diff(t) / step, np.float64) - 1.0) > 1e-6
  if off.any():
    i = int(np.argmax(off))
    fmt = time_lib.format_time
    raise TrajectoryDatasetError(
        f"{where}: the time coordinate has a gap: the step from {fmt(t[i])}"
        f" to {fmt(t[i + 1])} is {format_step(t[i + 1] - t[i])}, the first"
        f" step {format_step(step)}: the states of a trajectory"
        " must be one model step apart (drop or fill the gap, or cut the"
        " trajectory there)")
  if t.dtype.kind == "f":
    return np.float64(step)
  return np.timedelta64(step, "ns")


# --------------------------------------------------------- array conversions


def trajectories_to_array(ds: xr.Dataset,
                          variables: Sequence[str] | None = None
                          ) -> np.ndarray:
  """Stacks variables as channels: [trajectory, time, *spatial, C] float32.

  Channel c is variables[c] (default: all data variables in order); all of
  them must have the same dims in the same order.
  """
  variables = _variable_names(ds, variables)
  dims = ds[variables[0]].dims
  for v in variables[1:]:
    if ds[v].dims != dims:
      raise TrajectoryDatasetError(
          f"cannot stack {variables[0]!r} {dims} with {v!r} {ds[v].dims}:"
          " all variables need the same dims in the same order")
  return np.stack([np.asarray(ds[v].values, np.float32) for v in variables],
                  axis=-1)


def array_to_trajectories(array: np.ndarray,
                          template_or_coords: xr.Dataset | Mapping[str, Any],
                          variables: Sequence[str],
                          attrs: Mapping[str, Any] | None = None
                          ) -> xr.Dataset:
  """Inverse of trajectories_to_array: [trajectory, time, *spatial, C] -> ds.

  template_or_coords is either a trajectory Dataset (its variables' dims,
  coords, variable attrs and dataset attrs are reused; its sizes must match
  the array's) or a mapping {dim: coordinate values} that names every spatial
  dim in order and optionally "trajectory" and "time" (default 0, 1, ...).
  """
  array = np.asarray(array)
  variables = (variables,) if isinstance(variables, str) else tuple(variables)
  if array.ndim < 3:
    raise ValueError(f"array must be [trajectory, time, *spatial, C], got"
                     f" shape {array.shape}")
  if array.shape[-1] != len(variables):
    raise ValueError(f"array has {array.shape[-1]} channels but"
                     f" {len(variables)} variables {list(variables)}")
  shape = array.shape[:-1]
  var_attrs: dict[str, dict] = {}
  if isinstance(template_or_coords, xr.Dataset):
    template = template_or_coords
    present = [v for v in variables if v in template.data_vars]
    source = present[0] if present else next(iter(template.data_vars), None)
    if source is None:
      raise ValueError("the template dataset has no data variables")
    dims = template[source].dims
    coords = {d: template[d].values for d in dims if d in template.coords}
    var_attrs = {v: dict(template[v].attrs) for v in present}
    attrs = dict(template.attrs) if attrs is None else dict(attrs)
  else:
    coords = dict(template_or_coords)
    dims = LEADING_DIMS + tuple(d for d in coords if d not in LEADING_DIMS)
    attrs = dict(attrs or {})
  if len(dims) != len(shape):
    raise ValueError(f"array shape {array.shape} has {len(shape)} non-channel"
                     f" axes but the dims are {dims}")
  for d, n in zip(dims, shape):
    if d in coords and len(coords[d]) != n:
      raise ValueError(f"dim {d!r} has {n} entries in the array but"
                       f" {len(coords[d])} coordinate values")
  coords = {d: coords.get(d, np.arange(n)) for d, n in zip(dims, shape)}
  data_vars = {v: xr.Variable(dims, array[..., c], var_attrs.get(v))
               for c, v in enumerate(variables)}
  return xr.Dataset(data_vars, coords=coords, attrs=attrs)
