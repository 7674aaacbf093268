"""A user's table of point observations (stations, soundings, buoys).

One row per observation, columns

    time, *position columns (e.g. lat, lon or x), variable, value, error_std
    [, level]

from a pandas DataFrame, a .csv file or a NetCDF file (.nc / .nc4) with one
observation dim. `latitude` / `longitude` are read as `lat` / `lon` (or the
other way round when the grid's dims are spelt so). `level` is the pressure
level in hPa; a blank level marks a surface variable. Other columns are
kept (e.g. a station id).

Times are model times (every entry a number, the PDE systems) or dates
(ISO 8601 strings, pandas Timestamps, numpy datetime64), see `parse_times`.

Errors are ValueErrors of one line naming the file, the column and the first
bad row; rows are counted from 1 over the data rows, the header not counted
(data row 1 is line 2 of a CSV file).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

CSV_SUFFIXES = (".csv",)
NETCDF_SUFFIXES = (".nc", ".nc4")
# The one alias table: every spelling of a position column, canonical first.
ALIASES: tuple[tuple[str, ...], ...] = (("lat", "latitude"),
                                        ("lon", "longitude"))
OPTIONAL_COLUMNS = ("level",)


def _row(i: int) -> str:
  return f"row {i + 1}"


def _blank(values: pd.Series) -> np.ndarray:
  """NaN, None, NaT or a string of spaces."""
  text = values.map(lambda v: isinstance(v, str) and not v.strip())
  return (values.isna() | text.astype(bool)).to_numpy()


def _is_number(value) -> bool:
  """An int or float (not a bool), or a string that reads as one."""
  if isinstance(value, (bool, np.bool_)):
    return False
  if isinstance(value, numbers.Number):
    return True
  if isinstance(value, (str, bytes)):
    try:
      float(value)
    except ValueError:
      return False
    return True
  return False


def parse_times(values, where: str) -> np.ndarray:
  """Observation times: float64 model times, or datetime64[ns] (naive UTC).

  Every entry a number (int, float or a numeric string) gives float64 model
  times. Otherwise every entry must be a date: an ISO 8601 string ("Z" or an
  offset converts to UTC, no offset is read as UTC), a pandas Timestamp or a
  numpy datetime64; tz-aware times are converted to UTC and the time zone is
  dropped. Non-ISO text such as 01/02/2020 is refused (day and month would be
  ambiguous). ValueError (naming `where` and the row) for a blank, an
  unparsable entry, or numbers mixed with dates.
  """
  series = pd.Series(values).reset_index(drop=True)
  blank = _blank(series)
  if blank.any():
    raise ValueError(f"{where}: column time is blank at"
                     f" {_row(int(np.argmax(blank)))}")
  if series.dtype.kind in "iuf":
    times = series.to_numpy(np.float64)
  elif series.dtype.kind == "M":
    times = None
  else:
    number = series.map(_is_number).to_numpy(bool)
    if number.all():
      times = series.map(float).to_numpy(np.float64)
    elif number.any():
      i, j = int(np.argmax(number)), int(np.argmax(~number))
      raise ValueError(f"{where}: column time mixes numbers ({_row(i)}:"
                       f" {series[i]!r}) and dates ({_row(j)}:"
                       f" {series[j]!r}); use one kind")
    else:
      times = None
  if times is not None:
    bad = ~np.isfinite(times)
    if bad.any():
      i = int(np.argmax(bad))
      raise ValueError(f"{where}: time {series[i]!r} at {_row(i)} is not a"
                       " finite number")
    return times
  parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
  bad = parsed.isna().to_numpy()
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"{where}: time {series[i]!r} at {_row(i)} is neither a"
                     " number nor an ISO 8601 date (e.g. 2020-01-01T06:00Z)")
  return parsed.dt.tz_localize(None).to_numpy().astype("datetime64[ns]")


def _read(source, where: str) -> pd.DataFrame:
  if isinstance(source, pd.DataFrame):
    return source.reset_index(drop=True)
  if not isinstance(source, (str, os.PathLike)):
    raise ValueError(f"{where}: a point table is a DataFrame or the path of"
                     f" a .csv, .nc or .nc4 file, got {type(source).__name__}")
  path = Path(os.fspath(source))
  suffix = path.suffix.lower()
  if suffix not in CSV_SUFFIXES + NETCDF_SUFFIXES:
    raise ValueError(f"{where}: unsupported observation table kind"
                     f" {path.suffix or '(no suffix)'!r}; accepted: a"
                     " DataFrame, .csv, .nc or .nc4")
  if not path.is_file():
    raise FileNotFoundError(f"observation table {path} does not exist")
  if suffix in CSV_SUFFIXES:
    try:
      return pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
      return pd.DataFrame()
  try:
    ds = xr.open_dataset(path)
  except (OSError, ValueError, TypeError) as error:
    first = (str(error).splitlines() or [type(error).__name__])[0]
    raise ValueError(f"{where}: not a readable NetCDF file ({first})"
                     ) from None
  with ds:
    if len(ds.dims) != 1:
      raise ValueError(f"{where}: a point table has one observation dim;"
                       f" this file has dims {dict(ds.sizes)}")
    return ds.load().to_dataframe().reset_index()


def _rename_aliases(table: pd.DataFrame, wanted: Sequence[str],
                    where: str) -> pd.DataFrame:
  """Renames latitude -> lat etc. (to the spelling in `wanted`)."""
  renames = {}
  for group in ALIASES:
    present = [c for c in group if c in table.columns]
    if len(present) > 1:
      raise ValueError(f"{where}: columns {present} are the same position;"
                       " keep one")
    target = [c for c in group if c in wanted]
    if present and target and present[0] != target[0]:
      renames[present[0]] = target[0]
  return table.rename(columns=renames)


def _numeric(table: pd.DataFrame, column: str, where: str) -> np.ndarray:
  values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
  bad = np.isnan(values) & ~_blank(table[column])
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"{where}: column {column} has the non-numeric value"
                     f" {table[column].iloc[i]!r} at {_row(i)}")
  return values


def read_point_table(source, position_columns: Sequence[str], *,
                     where: str | None = None) -> pd.DataFrame:
  """The checked table: time parsed (`parse_times`), positions, value,
  error_std (and level) float64, variable str, rows 0..N-1 in file order.

  source: a DataFrame, or the path of a .csv, .nc or .nc4 file.
  position_columns: the grid's spatial dims, e.g. ("lat", "lon").
  where: the name used in errors (default: the file, or "the observation
    table" for a DataFrame).
  """
  if where is None:
    where = ("the observation table" if isinstance(source, pd.DataFrame)
             else str(source))
  position_columns = tuple(position_columns)
  table = _read(source, where)
  table = table.rename(columns=lambda c: c.strip() if isinstance(c, str)
                       else c)
  table = _rename_aliases(table, position_columns, where)
  required = ("time", *position_columns, "variable", "value", "error_std")
  missing = [c for c in required if c not in table.columns]
  if missing:
    raise ValueError(f"{where}: missing column(s) {missing}; the table needs"
                     f" {list(required)} (optional {list(OPTIONAL_COLUMNS)})"
                     f" and has {list(map(str, table.columns))}")
  if table.empty:
    raise ValueError(f"{where}: the observation table has no rows")
  for column in required:
    blank = _blank(table[column])
    if blank.any():
      raise ValueError(f"{where}: column {column} is blank at"
                       f" {_row(int(np.argmax(blank)))}")
  table = table.copy()
  table["time"] = parse_times(table["time"], where)
  for column in (*position_columns, "value", "error_std"):
    values = _numeric(table, column, where)
    bad = ~np.isfinite(values)
    if bad.any():
      i = int(np.argmax(bad))
      raise ValueError(f"{where}: column {column} is {values[i]} at"
                       f" {_row(i)}; it must be finite")
    table[column] = values
  bad = table["error_std"].to_numpy() <= 0
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"{where}: error_std is {table['error_std'].iloc[i]:g}"
                     f" at {_row(i)}; it must be > 0")
  if "level" in table.columns:
    level = _numeric(table, "level", where)  # NaN: a surface variable
    bad = level <= 0
    if bad.any():
      i = int(np.argmax(bad))
      raise ValueError(f"{where}: level is {level[i]:g} hPa at {_row(i)}; a"
                       " pressure level must be > 0 (blank: surface)")
    table["level"] = level
  table["variable"] = table["variable"].map(
      lambda v: (v.decode() if isinstance(v, bytes) else str(v)).strip())
  return table
