"""Opening and describing WeatherBench2 ERA5 zarr stores.

Stores are named in the registry `gencast_control.configs.stores` or given as
a path: gs:// (public bucket, read anonymously through gcsfs), memory:// or a
local directory / NetCDF file. Opening a gs:// store has a hard deadline: gcsfs
retries a dead connection with back-off for minutes, so the open runs on a
watchdog thread and fails with `StoreUnavailableError` once `timeout_s` passes.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.configs import stores as store_registry
from gencast_control.data.era5_schema import format_timedelta


class StoreUnavailableError(ConnectionError):
  """A store could not be opened (offline, unreachable, missing or invalid)."""


def resolve_store(path_or_name: str) -> tuple[str, int]:
  """(path, subsample step) of a registered store name or a plain path."""
  if path_or_name in store_registry.STORES:
    spec = store_registry.get_store(path_or_name)
    return spec.path, spec.subsample
  scheme = path_or_name.split("://")[0] if "://" in path_or_name else ""
  if scheme and scheme not in ("gs", "gcs", "memory"):
    raise ValueError(
        f"{path_or_name!r}: {scheme}:// stores are not supported; give a gs://"
        " path, a registered store name or a local path (copy the store"
        " first, e.g. with gsutil or rclone)")
  if "://" in path_or_name or os.path.sep in path_or_name or os.path.exists(
      path_or_name) or path_or_name.endswith((".zarr", ".nc")):
    return path_or_name, 1
  raise ValueError(
      f"{path_or_name!r} is neither a registered store nor a path; registered"
      f" stores: {', '.join(store_registry.list_stores())}")


def _gcs_mapper(path: str, timeout_s: float, storage_options: dict[str, Any]):
  import gcsfs  # pylint: disable=import-outside-toplevel
  options = dict(token="anon", requests_timeout=timeout_s,
                 skip_instance_cache=True)
  options.update(storage_options)
  return gcsfs.GCSFileSystem(**options).get_mapper(path)


def _open_local(path: str) -> xr.Dataset:
  if path.startswith("memory://"):
    return xr.open_zarr(path, chunks=None)
  if not os.path.exists(path):
    raise StoreUnavailableError(f"store {path!r} does not exist")
  if os.path.isfile(path):
    return xr.open_dataset(path, chunks=None)
  return xr.open_zarr(path, chunks=None)


def open_store(path_or_name: str, timeout_s: float = 30.0,
               storage_options: dict[str, Any] | None = None) -> xr.Dataset:
  """Opens a WeatherBench2-style zarr store lazily (chunks=None, no dask).

  Args:
    path_or_name: registry name (see configs/stores.py) or a gs://, memory://
      or local path. A registered store with `subsample` k is returned with
      every k-th latitude and longitude (e.g. GenCast's 1 deg grid).
    timeout_s: deadline for opening a gs:// store (also gcsfs's per-request
      timeout, which bounds later reads).
    storage_options: extra gcsfs.GCSFileSystem arguments (token stays "anon"
      unless overridden).

  Raises:
    StoreUnavailableError: the store cannot be opened within `timeout_s`
      (network offline or bucket unreachable), or does not exist.
  """
  path, subsample = resolve_store(path_or_name)
  if timeout_s <= 0:
    raise ValueError(f"timeout_s must be positive, got {timeout_s}")
  if path.startswith(("gs://", "gcs://")):
    dataset = _open_with_deadline(path, timeout_s, storage_options or {})
  else:
    try:
      dataset = _open_local(path)
    except StoreUnavailableError:
      raise
    except (OSError, ValueError, KeyError) as e:
      raise StoreUnavailableError(
          f"could not open store {path!r}: {type(e).__name__}: {e}") from e
  if subsample > 1:
    dataset = dataset.isel(latitude=slice(None, None, subsample),
                           longitude=slice(None, None, subsample))
  return dataset


def _open_with_deadline(path: str, timeout_s: float,
                        storage_options: dict[str, Any]) -> xr.Dataset:
  """Opens a gs:// store on a daemon thread; gives up after `timeout_s`."""
  result: dict[str, Any] = {}
  done = threading.Event()

  def target():
    try:
      mapper = _gcs_mapper(path, timeout_s, storage_options)
      result["dataset"] = xr.open_zarr(mapper, chunks=None)
    except BaseException as e:  # pylint: disable=broad-except
      result["error"] = e
    finally:
      done.set()

  threading.Thread(target=target, name=f"open_store:{path}",
                   daemon=True).start()
  if not done.wait(timeout_s):
    raise StoreUnavailableError(
        f"timed out after {timeout_s:g} s opening {path!r}: the network may be"
        " offline or the bucket unreachable (gs:// stores need internet"
        " access; use a local copy or a larger timeout_s)")
  if "error" in result:
    e = result["error"]
    raise StoreUnavailableError(
        f"could not open {path!r} ({type(e).__name__}: {e}); the network may"
        " be offline, the bucket unreachable or the path wrong") from e
  return result["dataset"]


def _describe_axis(values: np.ndarray) -> str:
  if values.size < 2:
    return f"{values.size} point(s) {values.tolist()}"
  diffs = np.diff(values.astype(np.float64))
  if np.all(diffs > 0):
    order = "ascending"
  elif np.all(diffs < 0):
    order = "descending"
  else:
    order = "UNSORTED"
  uniform = np.allclose(diffs, diffs[0], rtol=1e-4, atol=1e-6)
  spacing = f"spacing {abs(diffs[0]):g}" if uniform else "non-uniform spacing"
  return (f"{values.size} points, {values[0]:g} .. {values[-1]:g} ({order},"
          f" {spacing})")


def describe_time(times: np.ndarray) -> str:
  """'first .. last, step Xh (uniform), N times' for a datetime64 axis."""
  times = np.asarray(times, dtype="datetime64[ns]")
  first, last = pd.Timestamp(times[0]), pd.Timestamp(times[-1])
  if times.size < 2:
    return f"{first:%Y-%m-%dT%H:%M} (1 time)"
  steps = np.unique(np.diff(times))
  kind = "uniform" if steps.size == 1 else (
      "NON-UNIFORM: steps " + ", ".join(format_timedelta(s) for s in steps[:4])
      + (" ..." if steps.size > 4 else ""))
  return (f"{first:%Y-%m-%dT%H:%M} .. {last:%Y-%m-%dT%H:%M}, step"
          f" {format_timedelta(steps[0])} ({kind}), {times.size} times")


def describe_dataset(dataset: xr.Dataset, title: str = "") -> str:
  """Human-readable report: dims, coordinates, latitude order, variables."""
  lines = [f"store: {title}"] if title else []
  lines.append("dims: " + ", ".join(f"{k}={v}"
                                    for k, v in dataset.sizes.items()))
  for lat_name in ("latitude", "lat"):
    if lat_name in dataset.coords:
      lat = dataset[lat_name].values
      poles = bool(np.isclose(np.abs(lat).max(), 90.0)) if lat.size else False
      lines.append(f"latitude ({lat_name}): {_describe_axis(lat)}, poles:"
                   f" {'yes' if poles else 'no'}")
  for lon_name in ("longitude", "lon"):
    if lon_name in dataset.coords:
      lines.append(f"longitude ({lon_name}): "
                   f"{_describe_axis(dataset[lon_name].values)}")
  if "time" in dataset.coords:
    time = dataset["time"].values
    if np.issubdtype(time.dtype, np.datetime64) and time.size:
      lines.append(f"time: {describe_time(time)}")
    else:
      lines.append(f"time: {time.size} values of dtype {time.dtype}")
  else:
    lines.append("time: none (" + ", ".join(
        d for d in dataset.dims if d in ("hour", "dayofyear")) + ")")
  if "level" in dataset.coords:
    lines.append("levels: " + ", ".join(
        str(v) for v in dataset["level"].values.tolist()))
  lines.append(f"variables ({len(dataset.data_vars)}):")
  width = max((len(str(n)) for n in dataset.data_vars), default=0)
  for name, var in sorted(dataset.data_vars.items()):
    lines.append(f"  {str(name):<{width}}  ({', '.join(map(str, var.dims))})"
                 f" {var.dtype}")
  return "\n".join(lines)


def probe_store(path_or_name: str, timeout_s: float = 30.0) -> str:
  """Opens a store and returns `describe_dataset`'s report (no data read)."""
  path, _ = resolve_store(path_or_name)
  dataset = open_store(path_or_name, timeout_s=timeout_s)
  title = path if path == path_or_name else f"{path_or_name} = {path}"
  return describe_dataset(dataset, title)
