"""Writing an analysis ensemble the way weather users read it (CF-1.8).

`with_cf_attributes` adds units, long_name and CF standard_name to the
GenCast / ERA5 variables it knows (CF_ATTRS; a channel "name@level" such as
"temperature@850" takes name's attributes) and to the coordinates, never
overwriting an attribute already set and never inventing a standard_name for
a variable it does not know. `to_weatherbench2` renames lat / lon / sample
to latitude / longitude / realization (era5_schema's one name table;
era5_schema.to_gencast_names is its inverse). `write_dataset` writes NetCDF
or zarr atomically, with datetimes encoded as "hours since <first time>"
(or seconds) so that every reader decodes them back to datetimes.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.data import era5_schema

CONVENTIONS = "CF-1.8"


def _attrs(units: str, long_name: str, standard_name: str) -> dict:
  return dict(units=units, long_name=long_name, standard_name=standard_name)


# Variable attributes by GenCast / ERA5 / WeatherBench2 name (the Held-Suarez
# store's temperature, winds, geopotential and surface_pressure included).
CF_ATTRS: dict[str, dict[str, str]] = {
    "2m_temperature": _attrs("K", "2 metre temperature", "air_temperature"),
    "10m_u_component_of_wind": _attrs("m s-1", "10 metre eastward wind",
                                      "eastward_wind"),
    "10m_v_component_of_wind": _attrs("m s-1", "10 metre northward wind",
                                      "northward_wind"),
    "mean_sea_level_pressure": _attrs("Pa", "mean sea level pressure",
                                      "air_pressure_at_mean_sea_level"),
    "sea_surface_temperature": _attrs("K", "sea surface temperature",
                                      "sea_surface_temperature"),
    # ERA5 precipitation is a depth of liquid water (m): CF's name for that
    # is the "lwe_thickness_" one (precipitation_amount is in kg m-2).
    "total_precipitation_12hr": _attrs(
        "m", "total precipitation accumulated over 12 hours",
        "lwe_thickness_of_precipitation_amount"),
    "temperature": _attrs("K", "temperature", "air_temperature"),
    "geopotential": _attrs("m2 s-2", "geopotential", "geopotential"),
    "u_component_of_wind": _attrs("m s-1", "eastward wind", "eastward_wind"),
    "v_component_of_wind": _attrs("m s-1", "northward wind",
                                  "northward_wind"),
    "vertical_velocity": _attrs("Pa s-1", "vertical velocity (omega)",
                                "lagrangian_tendency_of_air_pressure"),
    "specific_humidity": _attrs("kg kg-1", "specific humidity",
                                "specific_humidity"),
    "surface_pressure": _attrs("Pa", "surface pressure",
                               "surface_air_pressure"),
    "geopotential_at_surface": _attrs("m2 s-2", "geopotential at the surface",
                                      "surface_geopotential"),
    "land_sea_mask": _attrs("1", "land-sea mask", "land_area_fraction"),
}

_LAT = dict(units="degrees_north", standard_name="latitude",
            long_name="latitude", axis="Y")
_LON = dict(units="degrees_east", standard_name="longitude",
            long_name="longitude", axis="X")
_MEMBER = dict(long_name="ensemble member", standard_name="realization")
# Coordinate attributes, by GenCast and WeatherBench2 name. `time` is in
# `_time_attrs` (its standard_name depends on its dtype).
COORD_ATTRS: dict[str, dict[str, str]] = {
    "lat": _LAT, "latitude": _LAT, "lon": _LON, "longitude": _LON,
    "level": dict(units="hPa", standard_name="air_pressure",
                  long_name="pressure level", positive="down", axis="Z"),
    "sample": _MEMBER, "realization": _MEMBER,
}


def _time_attrs(da: xr.DataArray) -> dict[str, str]:
  """Datetimes: time; timedeltas (GenCast lead times): forecast_period;
  numbers (model time, no calendar): axis only."""
  if np.issubdtype(da.dtype, np.datetime64):
    return dict(standard_name="time", long_name="time", axis="T")
  if np.issubdtype(da.dtype, np.timedelta64):
    return dict(standard_name="forecast_period", long_name="lead time",
                axis="T")
  return dict(long_name="model time", axis="T")


def cf_attrs_for(name: str) -> dict[str, str]:
  """The known attributes of a variable ("temperature@850" included), or {}."""
  base, _, level = str(name).partition("@")
  attrs = dict(CF_ATTRS.get(base, {}))
  if attrs and level:
    attrs["long_name"] = f"{attrs['long_name']} at {level} hPa"
  return attrs


def _attr_value(value):
  """A value NetCDF and zarr can store (others become JSON text)."""
  if isinstance(value, (bool, np.bool_)):
    return int(value)
  if isinstance(value, (str, int, float, np.number, np.ndarray)):
    return value
  return json.dumps(value, default=str)


def with_cf_attributes(ds: xr.Dataset, extra_attrs: dict | None = None
                       ) -> xr.Dataset:
  """A copy of `ds` with the CF attributes it knows added (existing ones
  kept), global Conventions = "CF-1.8", and `extra_attrs` (e.g. method,
  model fingerprint, command; these do overwrite) as global attributes."""
  out = ds.copy()
  for name, var in out.variables.items():
    if name == "time":
      known = _time_attrs(var)
    elif name in COORD_ATTRS and name in out.coords:
      known = COORD_ATTRS[name]
    else:
      known = cf_attrs_for(name)
    var.attrs = {**known, **var.attrs}
  out.attrs = {"Conventions": CONVENTIONS, **out.attrs}
  for key, value in (extra_attrs or {}).items():
    if value is not None:
      out.attrs[str(key)] = _attr_value(value)
  return out


def to_weatherbench2(ds: xr.Dataset) -> xr.Dataset:
  """lat / lon / sample renamed latitude / longitude / realization
  (era5_schema.GENCAST_TO_WB2; era5_schema.to_gencast_names undoes it)."""
  return era5_schema.to_wb2_names(ds)


def _time_encoding(da: xr.DataArray) -> dict:
  """{units: "hours since T0" (or seconds), calendar, dtype int64}: exact
  integers that decode back to datetime64."""
  times = np.asarray(da.values, "datetime64[ns]").reshape(-1)
  times = times[~np.isnat(times)]
  if not times.size:
    return {}
  start = times.min()
  offsets = times - start
  for unit, size in (("hours", 3600), ("seconds", 1)):
    if (offsets % np.timedelta64(size, "s") == np.timedelta64(0)).all():
      return {"units": f"{unit} since {pd.Timestamp(start):%Y-%m-%d %H:%M:%S}",
              "calendar": "proleptic_gregorian", "dtype": "int64"}
  return {}


def _suffix(path: Path) -> str:
  suffix = path.suffix.lower()
  if suffix not in (".nc", ".nc4", ".zarr"):
    raise ValueError(f"{path}: unsupported output kind"
                     f" {path.suffix or '(no suffix)'!r}; write .nc, .nc4"
                     " (NetCDF) or .zarr")
  return suffix


def _remove(path: Path) -> None:
  if path.is_dir() and not path.is_symlink():
    shutil.rmtree(path)
  elif path.exists() or path.is_symlink():
    path.unlink()


def write_dataset(ds: xr.Dataset, path: str | os.PathLike, *,
                  overwrite: bool = False) -> Path:
  """Writes NetCDF (.nc, .nc4) or zarr (.zarr) atomically; returns the path.

  The dataset goes to a temporary sibling first, then takes `path`'s name
  (os.replace); an existing `path` is refused (FileExistsError) unless
  overwrite, when it is moved aside, replaced and then deleted. Source
  encodings (chunks, compressors of the store it came from) are dropped.
  """
  path = Path(os.fspath(path))
  suffix = _suffix(path)
  if (path.exists() or path.is_symlink()) and not overwrite:
    raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite)"
                          " to replace it")
  path.parent.mkdir(parents=True, exist_ok=True)
  ds = ds.drop_encoding()
  encoding = {name: enc for name, var in ds.variables.items()
              if np.issubdtype(var.dtype, np.datetime64)
              and (enc := _time_encoding(var))}
  tag = uuid.uuid4().hex[:8]
  tmp = path.with_name(f".{path.name}.tmp-{tag}")
  try:
    if suffix == ".zarr":
      # zarr v2 with consolidated metadata, as WeatherBench2's stores
      ds.to_zarr(tmp, mode="w-", encoding=encoding, consolidated=True,
                 zarr_format=2)
    else:
      ds.to_netcdf(tmp, encoding=encoding)
    if path.exists() or path.is_symlink():
      aside = path.with_name(f".{path.name}.old-{tag}")
      os.replace(path, aside)
      try:
        os.replace(tmp, path)
      except OSError:
        os.replace(aside, path)
        raise
      _remove(aside)
    else:
      os.replace(tmp, path)
  finally:
    _remove(tmp)
  return path
