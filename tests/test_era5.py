"""ERA5 store registry, store opening/probing and the GenCast batch converter.

Runs the real code on small WeatherBench2-shaped zarr stores in a temp dir;
no test touches the network.
"""

import datetime
import pathlib
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gencast_control.data import era5_batches, era5_schema, era5_store
from gencast_control.configs import stores
from tests.wb2_store import make_wb2_dataset, write_wb2_store

LEVELS = (500, 850)
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("wb2") / "era5.zarr"
  write_wb2_store(path)
  return str(path)


@pytest.fixture(scope="module")
def raw():
  return make_wb2_dataset()


@pytest.fixture(scope="module")
def store(store_path):
  return era5_store.open_store(store_path)


def batch(store, init=("2020-01-02T00", "2020-01-02T12"), **kwargs):
  kwargs.setdefault("levels", LEVELS)
  kwargs.setdefault("resolution_step", 4)
  return era5_batches.to_gencast_batch(store, list(init), **kwargs)


# ----------------------------------------------------------------- registry --
def test_registry_specs_are_consistent():
  for name in stores.list_stores():
    spec = stores.get_store(name)
    assert spec.path.startswith("gs://weatherbench2/datasets/")
    assert spec.path.endswith(".zarr")
    grid = f"{spec.num_lon * spec.subsample}x"
    if spec.subsample == 1 and "37" not in name:
      assert grid in spec.path, name
    # Equiangular: spacing = 360 / num_lon.
    assert spec.resolution_deg == pytest.approx(360 / spec.num_lon)
  assert stores.get_store("era5_0p25deg_6h").latitude_order == "descending"
  assert stores.get_store("era5_1deg_6h").subsample == 4
  with pytest.raises(ValueError, match="era5_0p25deg_6h"):
    stores.get_store("no_such_store")


def test_store_paths_appear_only_in_the_registry():
  offenders = [
      str(p.relative_to(REPO)) for folder in ("gencast_control", "adapters",
                                              "configs")
      for p in (REPO / folder).rglob("*.py")
      if "gs://weatherbench2" in p.read_text() and p.name != "stores.py"]
  assert not offenders


# ------------------------------------------------------------ open / probe --
def test_probe_reports_layout(store_path):
  report = era5_store.probe_store(store_path)
  assert "dims: time=12, latitude=73, longitude=144, level=2" in report
  assert "73 points, 90 .. -90 (descending, spacing 2.5), poles: yes" in report
  assert "2020-01-01T00:00 .. 2020-01-03T18:00, step 6h (uniform)" in report
  assert "levels: 500, 850" in report
  assert ("sea_surface_temperature   (time, latitude, longitude) float32"
          in report)
  assert "land_sea_mask             (latitude, longitude) float32" in report


def test_probe_flags_non_uniform_time_and_memory_store(raw):
  ds = raw.isel(time=[0, 1, 2, 4, 5])
  ds.to_zarr("memory://wb2_probe.zarr", mode="w", zarr_format=2,
             consolidated=True)
  report = era5_store.probe_store("memory://wb2_probe.zarr")
  assert "NON-UNIFORM: steps 6h, 12h" in report


def test_open_missing_local_store(tmp_path):
  with pytest.raises(era5_store.StoreUnavailableError, match="does not exist"):
    era5_store.open_store(str(tmp_path / "nothing.zarr"))
  with pytest.raises(ValueError, match="registered stores"):
    era5_store.open_store("not_a_store_name")


class _SlowFS:
  def __init__(self, **kwargs):
    self.kwargs = kwargs

  def get_mapper(self, path):
    time.sleep(20)


class _BrokenFS(_SlowFS):
  def get_mapper(self, path):
    raise OSError("Cannot connect to host storage.googleapis.com:443")


def test_gs_open_times_out_with_clear_error(monkeypatch):
  import gcsfs
  monkeypatch.setattr(gcsfs, "GCSFileSystem", _SlowFS)
  start = time.monotonic()
  with pytest.raises(era5_store.StoreUnavailableError) as info:
    era5_store.open_store("gs://weatherbench2/datasets/x.zarr", timeout_s=0.3)
  assert time.monotonic() - start < 3.0
  message = str(info.value)
  assert "gs://weatherbench2/datasets/x.zarr" in message
  assert "timed out after 0.3 s" in message and "offline" in message


def test_gs_open_unreachable_endpoint_times_out():
  # Real gcsfs against a closed loopback port: it retries with back-off, the
  # watchdog gives up at the deadline. No traffic leaves the machine.
  start = time.monotonic()
  with pytest.raises(era5_store.StoreUnavailableError, match="timed out after 1 s"):
    era5_store.open_store("gs://weatherbench2/datasets/x.zarr", timeout_s=1.0,
                    storage_options={"endpoint_url": "http://127.0.0.1:9"})
  assert time.monotonic() - start < 3.0


def test_gs_open_error_is_wrapped(monkeypatch):
  import gcsfs
  monkeypatch.setattr(gcsfs, "GCSFileSystem", _BrokenFS)
  with pytest.raises(era5_store.StoreUnavailableError,
                     match="gs://bucket/a.zarr.*Cannot connect.*offline"):
    era5_store.open_store("gs://bucket/a.zarr", timeout_s=5)


def test_gs_options_are_anonymous_with_timeout(monkeypatch):
  seen = {}

  class Recorder(_BrokenFS):
    def __init__(self, **kwargs):
      seen.update(kwargs)

  import gcsfs
  monkeypatch.setattr(gcsfs, "GCSFileSystem", Recorder)
  with pytest.raises(era5_store.StoreUnavailableError):
    era5_store.open_store("gs://bucket/a.zarr", timeout_s=7)
  assert seen["token"] == "anon" and seen["requests_timeout"] == 7


def test_registered_name_opens_subsampled(monkeypatch, store_path):
  monkeypatch.setattr(era5_store, "_gcs_mapper",
                      lambda path, timeout, options: store_path)
  ds = era5_store.open_store("era5_1deg_6h")
  assert ds.sizes["latitude"] == 19 and ds.sizes["longitude"] == 36
  assert ds["latitude"].values[0] == 90 and ds["latitude"].values[-1] == -90


# -------------------------------------------------------------- converter --
def test_batch_layout(store):
  inputs, targets, forcings = batch(store, target_steps=2)
  for ds in (inputs, targets):
    assert ds.sizes == {"batch": 2, "time": 2, "lat": 19, "lon": 36,
                        "level": 2}
    assert ds["temperature"].dims == ("batch", "time", "level", "lat", "lon")
    assert ds["2m_temperature"].dims == ("batch", "time", "lat", "lon")
    assert ds["datetime"].dims == ("batch", "time")
    np.testing.assert_array_equal(ds["lat"], np.arange(-90, 91, 10))
    np.testing.assert_array_equal(ds["lon"], np.arange(0, 360, 10))
    assert all(v.dtype == np.float32 for v in ds.data_vars.values())
  h12 = np.timedelta64(12, "h")
  np.testing.assert_array_equal(inputs["time"], [-h12, 0 * h12])
  np.testing.assert_array_equal(targets["time"], [h12, 2 * h12])
  np.testing.assert_array_equal(
      inputs["datetime"].values[1].astype("datetime64[h]"),
      np.array(["2020-01-02T00", "2020-01-02T12"], "datetime64[h]"))
  assert "total_precipitation_12hr" not in inputs
  assert "total_precipitation_12hr" in targets
  assert set(era5_schema.PROGRESS_FORCINGS) <= set(inputs.data_vars)
  assert set(forcings.data_vars) == set(era5_schema.PROGRESS_FORCINGS)
  assert forcings["day_progress_sin"].dims == ("batch", "time", "lon")
  assert forcings["year_progress_cos"].dims == ("batch", "time")
  assert inputs["land_sea_mask"].dims == ("lat", "lon")


def test_batch_values_are_reversed_subsampled_store(store, raw):
  inputs, targets, _ = batch(store)
  expected = raw["temperature"].sel(time="2020-01-02T00").values[
      :, ::4, ::4][:, ::-1]
  np.testing.assert_array_equal(inputs["temperature"].values[1, 0], expected)
  expected = raw["2m_temperature"].sel(time="2020-01-03T00").values[
      ::4, ::4][::-1]
  np.testing.assert_array_equal(targets["2m_temperature"].values[1, 0],
                                expected)
  lsm = raw["land_sea_mask"].values[::4, ::4][::-1]
  np.testing.assert_array_equal(inputs["land_sea_mask"].values, lsm)
  sst = inputs["sea_surface_temperature"].values
  assert np.isnan(sst[..., lsm > 0.5]).all()  # GenCast keeps SST NaN on land
  assert np.isfinite(sst[..., lsm <= 0.5]).all()


def test_native_resolution_keeps_grid(store, raw):
  inputs, _, _ = batch(store, resolution_step=1, init=("2020-01-01T12",))
  assert inputs.sizes["lat"] == 73 and inputs.sizes["lon"] == 144
  np.testing.assert_array_equal(
      inputs["10m_u_component_of_wind"].values[0, 1],
      raw["10m_u_component_of_wind"].sel(time="2020-01-01T12").values[::-1])


def test_progress_forcings_match_brute_force(store):
  _, _, forcings = batch(store, target_steps=2)
  epoch = datetime.datetime(1970, 1, 1)
  for b in range(2):
    for t in range(2):
      when = pd.Timestamp(forcings["datetime"].values[b, t]).to_pydatetime()
      seconds = (when - epoch).total_seconds()
      year = (seconds / 86400 / 365.24219) % 1
      assert forcings["year_progress_sin"].values[b, t] == pytest.approx(
          np.sin(2 * np.pi * year), abs=1e-5)
      assert forcings["year_progress_cos"].values[b, t] == pytest.approx(
          np.cos(2 * np.pi * year), abs=1e-5)
      for j, lon in enumerate(forcings["lon"].values):
        day = ((seconds % 86400) / 86400 + lon / 360) % 1
        assert forcings["day_progress_sin"].values[b, t, j] == pytest.approx(
            np.sin(2 * np.pi * day), abs=1e-5)
        assert forcings["day_progress_cos"].values[b, t, j] == pytest.approx(
            np.cos(2 * np.pi * day), abs=1e-5)
  # 12 UTC at 90 E is 18 h local: day progress 0.75, sin = -1.
  noon = era5_schema.progress_forcings(np.array(["2020-06-01T12"], "datetime64[s]"),
                                np.array([90.0]))
  assert noon["day_progress_sin"][0, 0] == pytest.approx(-1.0, abs=1e-6)


def test_precipitation_12h_is_derived_from_6h(store, raw):
  without = store.drop_vars("total_precipitation_12hr")
  _, targets, _ = batch(without, init=("2020-01-02T00",))
  tp6 = raw["total_precipitation_6hr"]
  expected = (tp6.sel(time="2020-01-02T12") + tp6.sel(time="2020-01-02T06")
              ).values[::4, ::4][::-1]
  np.testing.assert_allclose(targets["total_precipitation_12hr"].values[0, 0],
                             expected, rtol=1e-6)
  # Inputs at the store's first time are fine: tp12 is only a target.
  batch(without, init=("2020-01-01T12",))
  with pytest.raises(ValueError, match="needs the 6 h before the first frame"):
    batch(without, init=("2020-01-01T12",), input_variables=(
        "2m_temperature", "total_precipitation_12hr"))
  with pytest.raises(ValueError, match=r"\['total_precipitation_12hr'\] not"):
    batch(without.drop_vars("total_precipitation_6hr"))


def test_round_trip_back_to_wb2(store, raw):
  _, targets, _ = batch(store, target_steps=2)
  sample = targets.isel(batch=[1]).expand_dims(sample=3)
  back = era5_batches.from_gencast_output(sample, latitude_descending=True)
  assert "realization" in back.dims and "latitude" in back.dims
  assert back.sizes["realization"] == 3
  valid = np.array(["2020-01-03T00", "2020-01-03T12"], "datetime64[ns]")
  np.testing.assert_array_equal(back["time"].values, valid)
  np.testing.assert_array_equal(back["prediction_timedelta"].values,
                                np.array([12, 24], "timedelta64[h]"))
  truth = raw.sel(time=valid).isel(latitude=slice(None, None, 4),
                                   longitude=slice(None, None, 4))
  for name in ("temperature", "total_precipitation_12hr"):
    got = back[name].isel(realization=0).transpose(*truth[name].dims)
    xr.testing.assert_equal(got.reset_coords(drop=True),
                            truth[name].sel(level=list(LEVELS))
                            if "level" in truth[name].dims
                            else truth[name])
  # Without the datetime coordinate the init time is passed explicitly.
  bare = targets.isel(batch=[1]).drop_vars("datetime")
  back2 = era5_batches.from_gencast_output(bare, init_time="2020-01-02T12")
  np.testing.assert_array_equal(back2["time"].values, valid)


def test_round_trip_errors(store):
  _, targets, _ = batch(store)
  with pytest.raises(ValueError, match="batch = 2"):
    era5_batches.from_gencast_output(targets)
  with pytest.raises(ValueError, match="pass init_time"):
    era5_batches.from_gencast_output(targets.isel(batch=[0]).drop_vars("datetime"))
  with pytest.raises(ValueError, match="disagrees"):
    era5_batches.from_gencast_output(targets.isel(batch=[0]), init_time="2020-01-01")
  with pytest.raises(ValueError, match="strictly ascending"):
    era5_batches.from_gencast_output(targets.isel(batch=[0], lat=slice(None, None, -1)))


# ------------------------------------------------------------- validation --
def _shuffled_lat(ds):
  order = np.arange(ds.sizes["latitude"])
  order[[3, 10]] = order[[10, 3]]
  return ds.isel(latitude=order)


@pytest.mark.parametrize("mutate, kwargs, message", [
    (lambda ds: ds.drop_vars("specific_humidity"), {},
     r"\['specific_humidity'\] not in the store; available: \['10m_u"),
    (lambda ds: ds, {"levels": (500, 700)}, r"level\(s\) \[700\] not in"),
    (lambda ds: ds, {"resolution_step": 5},
     "resolution_step 5 does not divide num_lat - 1 = 72"),
    (lambda ds: ds.isel(longitude=slice(0, 142)), {"resolution_step": 4},
     "does not divide num_lon = 142"),
    (lambda ds: ds.isel(latitude=slice(1, 72)), {"resolution_step": 1},
     "no poles"),
    (_shuffled_lat, {}, "latitude is not sorted"),
    (lambda ds: ds.isel(time=[0, 1, 2, 3, 5, 6, 7]), {},
     "not uniformly increasing"),
    (lambda ds: ds, {"init": ("2020-01-03T18",)},
     "time 2020-01-04 06:00:00 is not in the store"),
    (lambda ds: ds, {"init": ("2019-12-31T18",)},
     "2019-12-31 06:00:00 is not in the store \\(it covers 2020-01-01"),
    (lambda ds: ds, {"step": "9h"}, "not a multiple of the store's time step"),
    (lambda ds: ds.drop_vars("land_sea_mask"),
     {"input_variables": ("2m_temperature", "sea_surface_temperature")},
     "no land_sea_mask"),
])
def test_validation_errors(store, mutate, kwargs, message):
  with pytest.raises(ValueError, match=message):
    batch(mutate(store), **kwargs)


def test_nan_sst_over_sea_and_nan_elsewhere_are_rejected(raw):
  sea = raw.copy(deep=True)
  sst = sea["sea_surface_temperature"].values
  sst[4, 8, 0] = np.nan  # lon 0 is sea; time 4 = 2020-01-02T00
  with pytest.raises(ValueError,
                     match=r"sea_surface_temperature is NaN at 1 sea point.*"
                     r"time=0h \(2020-01-02T00:00\), lat=70.0, lon=0.0"):
    batch(sea, init=("2020-01-02T00",))
  # A relaxed threshold accepts it.
  batch(sea, sst_land_threshold=None)
  bad = raw.copy(deep=True)
  bad["temperature"].values[2, 1, 0, 0] = np.nan  # 2020-01-01T12
  with pytest.raises(ValueError, match="'temperature' has 1 NaN value.*"
                     r"time=-12h \(2020-01-01T12:00\), level=850, lat=90.0"):
    batch(bad, init=("2020-01-02T00",))


def test_validate_gencast_dataset(store):
  inputs, _, _ = batch(store)
  era5_schema.validate_gencast_dataset(inputs)
  with pytest.raises(ValueError, match="no 'time'"):
    era5_schema.validate_gencast_dataset(inputs.drop_vars("time"))
  with pytest.raises(ValueError, match="timedelta"):
    era5_schema.validate_gencast_dataset(inputs.assign_coords(
        time=inputs["datetime"].values[0]))


# ----------------------------------------------------------- latlon_state --
def test_latlon_state_stacks_channels(store, raw):
  frame = store.sel(time="2020-01-01T06")
  state, channels = era5_batches.latlon_state(
      frame, ["2m_temperature", "temperature", "land_sea_mask"], [850, 500])
  assert state.shape == (73, 144, 4) and state.dtype == np.float32
  assert channels == ["2m_temperature", "temperature@850", "temperature@500",
                      "land_sea_mask"]
  ref = raw.sel(time="2020-01-01T06")
  np.testing.assert_array_equal(state[..., 0],
                                ref["2m_temperature"].values[::-1])
  np.testing.assert_array_equal(state[..., 1],
                                ref["temperature"].sel(level=850).values[::-1])
  np.testing.assert_array_equal(state[..., 3],
                                ref["land_sea_mask"].values[::-1])


def test_latlon_state_leading_dims_and_nan(store, raw):
  frames = store.isel(time=[0, 3])
  state, channels = era5_batches.latlon_state(
      frames, ["land_sea_mask", "geopotential"])
  assert state.shape == (2, 73, 144, 3)
  assert channels == ["land_sea_mask", "geopotential@500", "geopotential@850"]
  np.testing.assert_array_equal(state[0, ..., 0], state[1, ..., 0])
  np.testing.assert_array_equal(
      state[1, ..., 2], raw["geopotential"].values[3, 1, ::-1])
  with pytest.raises(ValueError, match="'sea_surface_temperature' has"):
    era5_batches.latlon_state(frames, ["sea_surface_temperature"])
  filled, _ = era5_batches.latlon_state(frames, ["sea_surface_temperature"],
                                fill_nan={"sea_surface_temperature": 271.0})
  land = raw["land_sea_mask"].values[::-1] > 0.5
  assert np.all(filled[:, land, 0] == 271.0)
  with pytest.raises(ValueError, match="not in the store"):
    era5_batches.latlon_state(frames, ["relative_humidity"])
  with pytest.raises(ValueError, match="level"):
    era5_batches.latlon_state(frames, ["geopotential"], levels=[300])
