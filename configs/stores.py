"""Registry of the WeatherBench2 ERA5 zarr stores the project reads.

This module is the ONLY place in the code base where store paths appear; every
other module asks `get_store(name)`. Facts are from the WeatherBench2 data guide
(Rasp et al. 2024, "WeatherBench 2", https://weatherbench2.readthedocs.io,
docs/source/data-guide.ipynb): the public bucket gs://weatherbench2/datasets is
read anonymously; the 0.25 deg (1440x721) store has latitude DESCENDING
(90 .. -90) and contains the poles; the conservatively regridded stores built by
weatherbench2.regridding have latitude ASCENDING; `64x32` stores have no poles,
`240x121` stores do. GenCast 1 deg (Price et al. 2024, arXiv 2312.15796) is the
0.25 deg store subsampled [::4, ::4] (181 x 360 points, poles included).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

# WeatherBench2's 13 pressure levels (hPa), the levels GenCast uses.
WB13_LEVELS: tuple[int, ...] = (50, 100, 150, 200, 250, 300, 400, 500, 600,
                                700, 850, 925, 1000)
# ERA5's 37 pressure levels (hPa).
ERA5_37_LEVELS: tuple[int, ...] = (
    1, 2, 3, 5, 7, 10, 20, 30, 50, 70, 100, 125, 150, 175, 200, 225, 250, 300,
    350, 400, 450, 500, 550, 600, 650, 700, 750, 775, 800, 825, 850, 875, 900,
    925, 950, 975, 1000)

_BUCKET = "gs://weatherbench2/datasets"


@dataclasses.dataclass(frozen=True)
class StoreSpec:
  """One WeatherBench2 zarr store.

  Attributes:
    name: registry key.
    path: gs:// address of the zarr store.
    kind: "era5" (dims time/level/latitude/longitude) or "climatology"
      (dims hour/dayofyear/level/latitude/longitude).
    resolution_deg: nominal grid spacing after `subsample`.
    num_lon, num_lat: grid size after `subsample`.
    latitude_order: order of the store's latitude coordinate.
    has_poles: whether latitudes include +-90.
    levels: pressure levels (hPa) in the store.
    time_start, time_end: first and last time (ISO, UTC) of an "era5" store.
    time_step_hours: spacing of the time coordinate.
    subsample: open_store takes every `subsample`-th latitude and longitude
      (GenCast 1 deg = 0.25 deg store [::4, ::4]); 1 = as stored.
    description: one line for listings.
  """
  name: str
  path: str
  kind: Literal["era5", "climatology"]
  resolution_deg: float
  num_lon: int
  num_lat: int
  latitude_order: Literal["ascending", "descending"]
  has_poles: bool
  levels: tuple[int, ...]
  time_start: str | None = None
  time_end: str | None = None
  time_step_hours: int = 6
  subsample: int = 1
  description: str = ""


def _era5(name, file, res, nlon, nlat, order, poles, levels=WB13_LEVELS,
          step=6, subsample=1, description=""):
  return StoreSpec(
      name=name, path=f"{_BUCKET}/era5/{file}", kind="era5",
      resolution_deg=res, num_lon=nlon, num_lat=nlat, latitude_order=order,
      has_poles=poles, levels=levels, time_start="1959-01-01T00:00",
      # The hourly store's last time is not documented; left unknown.
      time_end="2023-01-10T18:00" if step == 6 else None,
      time_step_hours=step, subsample=subsample, description=description)


def _climatology(name, file, res, nlon, nlat, order, poles, description=""):
  return StoreSpec(
      name=name, path=f"{_BUCKET}/era5-hourly-climatology/{file}",
      kind="climatology", resolution_deg=res, num_lon=nlon, num_lat=nlat,
      latitude_order=order, has_poles=poles, levels=WB13_LEVELS,
      description=description)


_0P25 = "1959-2023_01_10-wb13-6h-1440x721_with_derived_variables.zarr"

STORES: dict[str, StoreSpec] = {s.name: s for s in (
    _era5("era5_0p25deg_6h", _0P25, 0.25, 1440, 721, "descending", True,
          description="ERA5 0.25 deg, 13 levels, 6-hourly, with derived"
          " variables (total_precipitation_12hr) and static fields"),
    _era5("era5_1deg_6h", _0P25, 1.0, 360, 181, "descending", True,
          subsample=4,
          description="GenCast 1 deg: 0.25 deg store subsampled [::4, ::4]"),
    _era5("era5_1p5deg_6h",
          "1959-2023_01_10-6h-240x121_equiangular_with_poles_conservative.zarr",
          1.5, 240, 121, "ascending", True,
          description="ERA5 1.5 deg (WB2 evaluation resolution), conservative"),
    _era5("era5_5p625deg_6h",
          "1959-2023_01_10-6h-64x32_equiangular_conservative.zarr",
          5.625, 64, 32, "ascending", False,
          description="ERA5 5.625 deg, conservative, no poles (pilot scale)"),
    _era5("era5_0p25deg_1h_37lvl",
          "1959-2023_01_10-full_37-1h-0p25deg-chunk-1.zarr", 0.25, 1440, 721,
          "descending", True, levels=ERA5_37_LEVELS, step=1,
          description="raw hourly ERA5, 37 levels (large; rarely needed)"),
    _climatology("era5_climatology_1990_2019_0p25deg",
                 "1990-2019_6h_1440x721.zarr", 0.25, 1440, 721, "descending",
                 True, description="6-hourly day-of-year climatology"),
    _climatology("era5_climatology_1990_2019_1p5deg",
                 "1990-2019_6h_240x121_equiangular_with_poles_conservative"
                 ".zarr",
                 1.5, 240, 121, "ascending", True,
                 description="6-hourly day-of-year climatology"),
    _climatology("era5_climatology_1990_2019_5p625deg",
                 "1990-2019_6h_64x32_equiangular_conservative.zarr", 5.625,
                 64, 32, "ascending", False,
                 description="6-hourly day-of-year climatology"),
    _climatology("era5_climatology_1990_2017_1p5deg",
                 "1990-2017_6h_240x121_equiangular_with_poles_conservative"
                 ".zarr",
                 1.5, 240, 121, "ascending", True,
                 description="climatology for evaluating 2018 forecasts"),
)}


def list_stores() -> tuple[str, ...]:
  """Names of all registered stores."""
  return tuple(STORES)


def get_store(name: str) -> StoreSpec:
  """The registered store `name`; ValueError listing the names otherwise."""
  try:
    return STORES[name]
  except KeyError:
    raise ValueError(f"unknown store {name!r}; registered stores:"
                     f" {', '.join(STORES)}") from None
