"""Trajectory datasets: the on-disk format shared by the PDEs and your own data.

A trajectory dataset is an xarray Dataset (NetCDF file or zarr store) whose
data variables all have dims ("trajectory", "time", *spatial), a monotonic
`time` coordinate and finite values. Splits live in one folder as
train/validation/test with suffix .nc or .zarr. In memory, the variables are
stacked as channels: [trajectory, time, *spatial, C].
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

SPLITS = ("train", "validation", "test")


def split_dataset(ds: xr.Dataset, fractions=(0.8, 0.1, 0.1)
                  ) -> dict[str, xr.Dataset]:
  """Splits along `trajectory` into train/validation/test by fractions."""
  if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(
      fractions) < 0:
    raise ValueError(f"fractions must be 3 non-negative numbers summing to 1,"
                     f" got {fractions}")
  n = ds.sizes.get("trajectory", 0)
  n_train = int(round(fractions[0] * n))
  n_val = int(round(fractions[1] * n))
  bounds = [0, n_train, n_train + n_val, n]
  return {split: ds.isel(trajectory=slice(bounds[i], bounds[i + 1]))
          for i, split in enumerate(SPLITS)}


def write_dataset(ds: xr.Dataset, path, fmt: str | None = None) -> Path:
  """Writes NetCDF (.nc) or zarr (.zarr) atomically: temp path, then rename."""
  path = Path(path)
  fmt = fmt or ("zarr" if path.suffix == ".zarr" else "netcdf")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
  try:
    target = tmp / path.name
    if fmt == "zarr":
      ds.to_zarr(target, mode="w")
    elif fmt == "netcdf":
      ds.to_netcdf(target)
    else:
      raise ValueError(f"unknown format {fmt!r}: use 'netcdf' or 'zarr'")
    if path.is_dir():
      shutil.rmtree(path)
    os.replace(target, path)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return path


def write_splits(datasets: Mapping[str, xr.Dataset], out_dir,
                 fmt: str = "netcdf") -> dict[str, Path]:
  """Writes {split: dataset} as out_dir/split.nc (or .zarr)."""
  suffix = {"netcdf": ".nc", "zarr": ".zarr"}.get(fmt)
  if suffix is None:
    raise ValueError(f"unknown format {fmt!r}: use 'netcdf' or 'zarr'")
  return {split: write_dataset(ds, Path(out_dir) / f"{split}{suffix}", fmt)
          for split, ds in datasets.items()}


def open_trajectories(path) -> xr.Dataset:
  """Opens a NetCDF file or zarr store (loaded into memory)."""
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"trajectory dataset {path} does not exist")
  try:
    if path.is_dir():
      return xr.open_zarr(path).load()
    with xr.open_dataset(path) as ds:
      return ds.load()
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"cannot read trajectory dataset {path}: {e}") from e


def validate_trajectories(ds: xr.Dataset, variables: Sequence[str],
                          spatial_dims: Sequence[str]) -> None:
  """Raises ValueError naming the first problem with a trajectory dataset."""
  expected = ("trajectory", "time") + tuple(spatial_dims)
  for v in variables:
    if v not in ds.data_vars:
      raise ValueError(f"variable {v!r} is missing; the dataset has"
                       f" {sorted(ds.data_vars)}")
    dims = ds[v].dims
    if set(dims) != set(expected):
      raise ValueError(f"variable {v!r} has dims {dims}, expected {expected}")
    if dims != expected:
      raise ValueError(f"variable {v!r} has dims in the order {dims}; expected"
                       f" {expected} (use ds.transpose(*{expected}))")
    values = ds[v].values
    bad = ~np.isfinite(values)
    if bad.any():
      raise ValueError(f"variable {v!r} has {int(bad.sum())} NaN/inf values")
  if ds.sizes["time"] < 2:
    raise ValueError(f"trajectories need at least 2 times, got"
                     f" {ds.sizes['time']}")
  if "time" in ds.coords:
    t = ds["time"].values
    if not (np.diff(t.astype(np.float64) if t.dtype.kind in "fiu" else t)
            > np.zeros((), dtype=np.diff(t).dtype)).all():
      raise ValueError("the time coordinate is not strictly increasing")
  if ds.sizes["trajectory"] < 1:
    raise ValueError("the dataset has no trajectories")


def trajectories_to_array(ds: xr.Dataset, variables: Sequence[str]
                          ) -> np.ndarray:
  """Stacks variables as channels: [trajectory, time, *spatial, C] float32."""
  missing = [v for v in variables if v not in ds.data_vars]
  if missing:
    raise ValueError(f"variables {missing} are missing; the dataset has"
                     f" {sorted(ds.data_vars)}")
  return np.stack([ds[v].values for v in variables], axis=-1).astype(
      np.float32)
