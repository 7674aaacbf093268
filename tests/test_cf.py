"""CF attributes, WeatherBench2 names and atomic NetCDF / zarr writing."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gencast_control.data import era5_schema
from gencast_control.data.cf import (to_weatherbench2, with_cf_attributes,
                                     write_dataset)


def analysis() -> xr.Dataset:
  """An analysis ensemble: dims (sample, time, lat, lon, level)."""
  rng = np.random.default_rng(0)
  dims = ("sample", "time", "lat", "lon")
  shape = (3, 4, 5, 8)
  return xr.Dataset(
      {"2m_temperature": (dims, rng.normal(280, 5, shape).astype("f4")),
       "temperature": (dims + ("level",), rng.normal(250, 5, shape + (2,))),
       "geopotential@500": (dims, rng.normal(5e4, 100, shape)),
       "my_tracer": (dims, rng.normal(size=shape), {"units": "ppm"}),
       "total_precipitation_12hr": (dims, np.zeros(shape),
                                    {"units": "mm"})},
      coords={"sample": np.arange(3),
              "time": pd.date_range("2020-01-01T06", periods=4, freq="6h"),
              "lat": np.linspace(-90.0, 90.0, 5), "lon": 45.0 * np.arange(8),
              "level": [500, 850]},
      attrs={"method": "controlled", "seed": 0})


def test_with_cf_attributes_adds_what_it_knows():
  ds = analysis()
  out = with_cf_attributes(ds, {"model": "abc123", "command": "gc run",
                                "flag": True})
  assert out["2m_temperature"].attrs == {
      "units": "K", "long_name": "2 metre temperature",
      "standard_name": "air_temperature"}
  assert out["geopotential@500"].attrs["long_name"] == \
      "geopotential at 500 hPa"
  assert out["geopotential@500"].attrs["standard_name"] == "geopotential"
  assert out["my_tracer"].attrs == {"units": "ppm"}  # nothing invented
  precip = out["total_precipitation_12hr"].attrs
  assert precip["units"] == "mm"  # an existing attribute is kept
  assert precip["standard_name"] == "lwe_thickness_of_precipitation_amount"
  assert out["lat"].attrs["units"] == "degrees_north"
  assert out["lat"].attrs["axis"] == "Y"
  assert out["lon"].attrs["standard_name"] == "longitude"
  assert out["level"].attrs["positive"] == "down"
  assert out["time"].attrs["standard_name"] == "time"
  assert out["sample"].attrs["long_name"] == "ensemble member"
  assert out.attrs["Conventions"] == "CF-1.8"
  assert out.attrs["method"] == "controlled" and out.attrs["seed"] == 0
  assert out.attrs["model"] == "abc123" and out.attrs["flag"] == 1
  assert ds["lat"].attrs == {} and ds.attrs == {"method": "controlled",
                                                "seed": 0}


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_write_and_read_back(tmp_path, suffix):
  ds = with_cf_attributes(analysis(), {"command": "gencast-control run"})
  path = write_dataset(ds, tmp_path / "out" / f"analysis{suffix}")
  assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
  with xr.open_dataset(path, engine="zarr" if suffix == ".zarr"
                       else None) as back:
    assert np.issubdtype(back["time"].dtype, np.datetime64)
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)
    assert back["time"].encoding["units"].startswith("hours since 2020-01-01")
    assert back["2m_temperature"].dims == ("sample", "time", "lat", "lon")
    assert back.sizes["sample"] == 3
    assert back["temperature"].attrs["standard_name"] == "air_temperature"
    assert back["lat"].attrs["standard_name"] == "latitude"
    assert back.attrs["Conventions"] == "CF-1.8"
    assert back.attrs["command"] == "gencast-control run"
    np.testing.assert_array_equal(back["temperature"].values,
                                  ds["temperature"].values)
  with pytest.raises(FileExistsError, match=f"{path} exists"):
    write_dataset(ds, path)
  write_dataset(ds.isel(sample=slice(0, 2)), path, overwrite=True)
  with xr.open_dataset(path, engine="zarr" if suffix == ".zarr"
                       else None) as back:
    assert back.sizes["sample"] == 2
  assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_to_weatherbench2_names():
  wb2 = to_weatherbench2(analysis())
  assert set(wb2.dims) == {"realization", "time", "latitude", "longitude",
                           "level"}
  assert wb2["2m_temperature"].dims == ("realization", "time", "latitude",
                                        "longitude")
  back = era5_schema.to_gencast_names(wb2)
  assert set(back.dims) == {"sample", "time", "lat", "lon", "level"}
  out = with_cf_attributes(wb2)
  assert out["latitude"].attrs["units"] == "degrees_north"
  assert out["realization"].attrs["long_name"] == "ensemble member"


def test_bad_suffix_refused(tmp_path):
  for name in ("analysis.txt", "analysis"):
    with pytest.raises(ValueError, match="unsupported output kind"):
      write_dataset(analysis(), tmp_path / name)
  assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_the_old_file(tmp_path):
  path = write_dataset(analysis(), tmp_path / "analysis.nc")
  before = path.read_bytes()
  bad = analysis().assign_attrs(unwritable=None)  # NetCDF refuses None
  with pytest.raises((TypeError, ValueError)):
    write_dataset(bad, path, overwrite=True)
  assert path.read_bytes() == before
  assert [p.name for p in tmp_path.iterdir()] == ["analysis.nc"]
