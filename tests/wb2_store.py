"""Small WeatherBench2-shaped ERA5 stores for tests (no network).

Layout of the real 0.25 deg store, shrunk: latitude DESCENDING 90 .. -90 with
4*18+1 points (2.5 deg) and 4*36 longitudes, so [::4, ::4] gives the 10 deg
19 x 36 grid with poles; dims time/level/latitude/longitude; static fields
land_sea_mask and geopotential_at_surface; SST NaN over land.
"""

import numpy as np
import pandas as pd
import xarray as xr

SURFACE = ("2m_temperature", "mean_sea_level_pressure",
           "10m_u_component_of_wind", "10m_v_component_of_wind",
           "total_precipitation_12hr", "total_precipitation_6hr")
ATMOSPHERIC = ("temperature", "geopotential", "u_component_of_wind",
               "v_component_of_wind", "vertical_velocity", "specific_humidity")


def make_wb2_dataset(num_lat=73, num_lon=144, levels=(500, 850), days=3,
                     start="2020-01-01", seed=0) -> xr.Dataset:
  rng = np.random.default_rng(seed)
  lat = np.linspace(90.0, -90.0, num_lat, dtype=np.float32)
  lon = np.linspace(0.0, 360.0, num_lon, endpoint=False, dtype=np.float32)
  time = pd.date_range(start, periods=4 * days, freq="6h").values
  shape = (time.size, num_lat, num_lon)
  data = {}
  for name in SURFACE:
    data[name] = (("time", "latitude", "longitude"),
                  rng.normal(size=shape).astype(np.float32))
  for name in ATMOSPHERIC:
    data[name] = (("time", "level", "latitude", "longitude"),
                  rng.normal(size=(time.size, len(levels), num_lat, num_lon)
                             ).astype(np.float32))
  # Land: a block of longitudes between 60 and 150 deg, plus Antarctica.
  land = ((lon[None, :] >= 60) & (lon[None, :] < 150)) | (lat[:, None] < -70)
  land_sea_mask = land.astype(np.float32)
  sst = 280.0 + rng.normal(size=shape).astype(np.float32)
  sst[:, land] = np.nan
  data["sea_surface_temperature"] = (("time", "latitude", "longitude"), sst)
  data["land_sea_mask"] = (("latitude", "longitude"), land_sea_mask)
  data["geopotential_at_surface"] = (
      ("latitude", "longitude"),
      rng.normal(size=(num_lat, num_lon)).astype(np.float32))
  return xr.Dataset(
      data, coords={"time": time, "latitude": lat, "longitude": lon,
                    "level": np.asarray(levels, np.int64)})


def write_wb2_store(path, **kwargs) -> xr.Dataset:
  """Writes make_wb2_dataset(**kwargs) as a zarr store; returns the dataset."""
  ds = make_wb2_dataset(**kwargs)
  ds.to_zarr(str(path), mode="w", zarr_format=2, consolidated=True)
  return ds
