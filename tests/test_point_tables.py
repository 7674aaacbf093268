"""Reading a user's station table: kinds, times, aliases and every error."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gencast_control.data.point_tables import parse_times, read_point_table

LATLON = ("lat", "lon")


def write_csv(tmp_path, text, name="stations.csv"):
  path = tmp_path / name
  path.write_text(text)
  return path


def table(**changes):
  data = {"time": ["2020-01-01T06:00:00Z", "2020-01-01T12:00:00"],
          "lat": [10.0, -20.5], "lon": [350.0, 5.0],
          "variable": ["2m_temperature", "temperature"],
          "value": [280.5, 250.0], "error_std": [1.0, 0.5]}
  data.update(changes)
  return pd.DataFrame(data)


def test_csv_with_iso_times_with_and_without_z(tmp_path):
  path = write_csv(tmp_path, (
      "time, latitude, longitude, variable, value, error_std, level, station\n"
      "2020-01-01T06:00:00Z, 10.0, 350, 2m_temperature, 280.5, 1.0, , A\n"
      "2020-01-01 12:00, -20.5, 5, temperature, 250, 0.5, 850, B\n"
      "2020-01-01T13:00+01:00, 0, 0, temperature, 251, 0.5, 500, C\n"))
  out = read_point_table(path, LATLON)
  assert out["time"].dtype == np.dtype("datetime64[ns]")
  np.testing.assert_array_equal(out["time"].values, np.array(
      ["2020-01-01T06", "2020-01-01T12", "2020-01-01T12"], "datetime64[ns]"))
  np.testing.assert_array_equal(out["lat"], [10.0, -20.5, 0.0])
  np.testing.assert_array_equal(out["lon"], [350.0, 5.0, 0.0])
  assert list(out["variable"]) == ["2m_temperature", "temperature",
                                   "temperature"]
  assert np.isnan(out["level"][0]) and out["level"][1] == 850.0
  assert list(out["station"]) == ["A", "B", "C"]


def test_dataframe_with_timestamps():
  times = [pd.Timestamp("2020-01-01 06:00", tz="UTC"),
           pd.Timestamp("2020-01-01 07:00", tz="Europe/Paris")]
  out = read_point_table(table(time=times), LATLON)
  np.testing.assert_array_equal(out["time"].values, np.array(
      ["2020-01-01T06", "2020-01-01T06"], "datetime64[ns]"))
  naive = read_point_table(table(time=pd.to_datetime(
      ["2020-01-01", "2020-01-02"])), LATLON)
  assert naive["time"].dtype == np.dtype("datetime64[ns]")


def test_netcdf_with_datetime64_times(tmp_path):
  path = tmp_path / "obs.nc"
  xr.Dataset({
      "time": ("obs", np.array(["2020-01-01T06", "2020-01-02T00"],
                               "datetime64[ns]")),
      "latitude": ("obs", [10.0, 20.0]), "longitude": ("obs", [0.0, 90.0]),
      "variable": ("obs", ["temperature", "geopotential"]),
      "value": ("obs", [250.0, 5.0e4]), "error_std": ("obs", [1.0, 50.0]),
      "level": ("obs", [850.0, 500.0])}).to_netcdf(path)
  out = read_point_table(path, LATLON)
  assert out["time"].dtype == np.dtype("datetime64[ns]")
  assert out["time"].iloc[1] == pd.Timestamp("2020-01-02")
  assert list(out["variable"]) == ["temperature", "geopotential"]
  np.testing.assert_array_equal(out["lon"], [0.0, 90.0])


def test_float_model_times(tmp_path):
  path = write_csv(tmp_path, "time,x,variable,value,error_std\n"
                             "1,0.5,u,0.1,0.2\n2.5,3,u,-0.3,0.2\n")
  out = read_point_table(path, ("x",))
  assert out["time"].dtype == np.float64
  np.testing.assert_array_equal(out["time"], [1.0, 2.5])
  np.testing.assert_array_equal(parse_times(["1", "2.5e1"], "t"), [1, 25])


def test_grid_spelt_latitude_reads_lat_columns():
  out = read_point_table(table(), ("latitude", "longitude"))
  assert "latitude" in out and "lat" not in out


def test_parse_times_errors():
  with pytest.raises(ValueError, match="f.csv: column time mixes numbers"
                     r" \(row 1: 1.0\) and dates \(row 2: '2020-01-01'\)"):
    parse_times(np.array([1.0, "2020-01-01"], object), "f.csv")
  with pytest.raises(ValueError, match="f.csv: time 'yesterday' at row 2 is"
                     " neither a number nor an ISO 8601 date"):
    parse_times(["2020-01-01", "yesterday"], "f.csv")
  with pytest.raises(ValueError, match="time '01/02/2020' at row 1"):
    parse_times(["01/02/2020"], "f.csv")
  with pytest.raises(ValueError, match="column time is blank at row 2"):
    parse_times(["2020-01-01", None], "f.csv")


def test_kinds_and_files(tmp_path):
  for name in ("stations.txt", "stations.xlsx"):
    with pytest.raises(ValueError, match=f"{name}: unsupported observation"
                       " table kind .* accepted: a DataFrame, .csv, .nc"):
      read_point_table(tmp_path / name, LATLON)
  with pytest.raises(FileNotFoundError, match="missing.csv does not exist"):
    read_point_table(tmp_path / "missing.csv", LATLON)
  with pytest.raises(ValueError, match="empty.csv: the observation table has"
                     " no rows"):
    read_point_table(write_csv(tmp_path, "time,lat,lon,variable,value,"
                               "error_std\n", "empty.csv"), LATLON)
  with pytest.raises(ValueError, match="blank.csv: missing column"):
    read_point_table(write_csv(tmp_path, "", "blank.csv"), LATLON)
  with pytest.raises(ValueError, match="bad.nc: not a readable NetCDF"):
    read_point_table(write_csv(tmp_path, "hello", "bad.nc"), LATLON)
  path = tmp_path / "grid.nc"
  xr.Dataset({"value": (("a", "b"), np.ones((2, 2)))}).to_netcdf(path)
  with pytest.raises(ValueError, match="grid.nc: a point table has one"
                     " observation dim"):
    read_point_table(path, LATLON)


@pytest.mark.parametrize("changes, message", [
    (dict(lat=[10.0, np.nan]), "column lat is blank at row 2"),
    (dict(variable=["t", " "]), "column variable is blank at row 2"),
    (dict(value=[np.nan, 1.0]), "column value is blank at row 1"),
    (dict(error_std=[1.0, None]), "column error_std is blank at row 2"),
    (dict(time=[None, "2020-01-01"]), "column time is blank at row 1"),
    (dict(error_std=[1.0, 0.0]), "error_std is 0 at row 2; it must be > 0"),
    (dict(error_std=[-1.0, 1.0]), "error_std is -1 at row 1"),
    (dict(error_std=[1.0, np.inf]), "column error_std is inf at row 2; it"
                                    " must be finite"),
    (dict(value=[1.0, "warm"]), "column value has the non-numeric value"
                                " 'warm' at row 2"),
    (dict(lon=["east", 1.0]), "column lon has the non-numeric value 'east'"
                              " at row 1"),
    (dict(level=[850.0, -1.0]), "level is -1 hPa at row 2"),
    (dict(level=["high", 850]), "column level has the non-numeric value"),
])
def test_bad_cells_name_the_column_and_row(changes, message):
  with pytest.raises(ValueError, match="the observation table: " + message):
    read_point_table(table(**changes), LATLON)


def test_missing_and_doubled_columns(tmp_path):
  with pytest.raises(ValueError, match=r"obs.csv: missing column\(s\)"
                     r" \['error_std'\]"):
    read_point_table(table().drop(columns="error_std"), LATLON,
                     where="obs.csv")
  with pytest.raises(ValueError, match=r"columns \['lat', 'latitude'\] are"
                     " the same position"):
    read_point_table(table(latitude=[1.0, 2.0]), LATLON)
