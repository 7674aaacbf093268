"""ERA5 pilot end to end on a tiny WeatherBench2-shaped store (no network).

data step (simulate) -> train-ardm -> train-controller -> pilot (controlled vs
unguided vs DPS under three densities, latitude-weighted scores); bad stores
and configs fail with clear errors.
"""

import csv
import json

import jax
import numpy as np
import pytest
import xarray as xr

from gencast_control import cli
from gencast_control.evaluation import era5_pilot, forecasts, metrics
from gencast_control.systems import pipeline
from gencast_control.core.config import load_config
from gencast_control.core.controller import init_controller, save_controller
from gencast_control.data.era5_store import StoreUnavailableError
from gencast_control.data.era5_trajectories import (ERA5DataConfig, STD_ATTR,
                                                    extract_splits)
from tests.wb2_store import write_wb2_store

NUM_LAT, NUM_LON = 8, 16
CHANNELS = ("geopotential@500", "temperature@850", "2m_temperature",
            "u_component_of_wind@850")


def data_overrides(store):
  """Reads a 12-day store: 6 / 3 / 3 days of 12-hourly states."""
  return [f"pde.store={store}", "pde.step_hours=12",
          "pde.train_period=('2020-01-01', '2020-01-06')",
          "pde.validation_period=('2020-01-07', '2020-01-09')",
          "pde.test_period=('2020-01-10', '2020-01-12')",
          "data.num_steps=3", f"ardm.state_shape=({NUM_LAT}, {NUM_LON}, 4)"]


TINY = ["ardm.network.width=8", "ardm.network.num_blocks=1",
        "ardm.network.dilations=(1,)", "ardm.network.embedding_size=8",
        "ardm.sampler.method='euler'", "ardm.sampler.num_steps=1",
        "ardm_training.num_steps=3",
        "ardm_training.batch_size=4", "controller.network.width=4",
        "controller.network.num_blocks=1", "controller.network.dilations=(1,)",
        "controller.network.embedding_size=8",
        "controller_training.num_steps=2", "controller_training.batch_size=2",
        "controller_training.window=1", "controller_training.spinup=0",
        "assimilation.num_steps=3", "assimilation.ensemble_size=3",
        "assimilation.num_trajectories=1"]


def sets(overrides):
  return [x for o in overrides for x in ("--set", o)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  path = tmp_path_factory.mktemp("wb2") / "era5.zarr"
  ds = write_wb2_store(path, num_lat=NUM_LAT, num_lon=NUM_LON,
                       levels=(500, 850), days=12)
  return path, ds


def test_data_step_writes_standardised_ascending_splits(store, tmp_path):
  path, raw = store
  assert cli.main(["simulate", "--config", "era5_pilot", "--out",
                   str(tmp_path)] + sets(data_overrides(path))) == 0
  splits = {s: xr.open_dataset(tmp_path / f"{s}.nc")
            for s in ("train", "validation", "test")}
  # 6 days at 12 h = 12 states -> 3 windows of 4; 3 days -> 1 window each.
  assert [splits[s].sizes["trajectory"] for s in splits] == [3, 1, 1]
  test = splits["test"]
  assert tuple(test["temperature@850"].dims) == ("trajectory", "time",
                                                 "latitude", "longitude")
  assert np.all(np.diff(test["latitude"].values) > 0)  # store is descending
  np.testing.assert_array_equal(test["time"].values, [0.0, 12.0, 24.0, 36.0])
  assert str(test["start_time"].values[0])[:13] == "2020-01-10T00"
  train = splits["train"]
  for c in CHANNELS:  # standardised with the training statistics
    np.testing.assert_allclose(float(train[c].mean()), 0.0, atol=1e-5)
    np.testing.assert_allclose(float(train[c].std()), 1.0, atol=1e-4)
  # One value traced back to the store: t850 at 2020-01-10T12 (lead 12 h),
  # southernmost row, longitude index 3.
  c = "temperature@850"
  expected = float(raw["temperature"].sel(level=850).sel(
      time="2020-01-10T12:00").isel(latitude=-1, longitude=3))
  m, s = (test[c].attrs["normalization_mean"],
          test[c].attrs["normalization_std"])
  got = float(test[c].isel(trajectory=0, time=1, latitude=0, longitude=3))
  np.testing.assert_allclose(got * s + m, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_pilot_end_to_end_with_latitude_weighted_scores(store, tmp_path):
  path, _ = store
  data, out = tmp_path / "data", tmp_path / "pilot"
  overrides = data_overrides(path) + TINY
  args = sets(overrides)
  assert cli.main(["simulate", "--config", "era5_pilot", "--out", str(data)]
                  + args) == 0
  ardm_path, ctrl_path = tmp_path / "ardm.npz", tmp_path / "controller.npz"
  assert cli.main(["train-ardm", "--config", "era5_pilot", "--data",
                   str(data), "--out", str(ardm_path)] + args) == 0
  config = load_config("era5_pilot", overrides)
  # train-controller on this code path is exercised by
  # tests/test_held_suarez.py; here an untrained (u = 0) controller with
  # perturbed weights keeps the compile time down.
  ardm = pipeline.load_checkpoints(config, ardm_path)[0]
  params = init_controller(config.controller, ardm, jax.random.PRNGKey(0))
  params = jax.tree.map(
      lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
      params)
  save_controller(ctrl_path, params, config.controller, ardm,
                  {"system": config.system})
  # What `gencast-control pilot` runs, keeping the ensembles for the checks.
  rows = era5_pilot.run_pilot(config, data, ardm_path, ctrl_path, out,
                              keep_ensembles=True)
  assert json.loads((out / "pilot.json").read_text())["stations_20pct"][
      "dps"]["rmse"] == rows["stations_20pct"]["dps"]["rmse"]
  assert list(rows) == ["stations_1pct", "stations_5pct", "stations_20pct"]
  for by_method in rows.values():
    assert sorted(by_method) == ["_arrays", "controlled", "dps", "unguided"]
    for s in (by_method[m] for m in ("unguided", "controlled", "dps")):
      assert np.isfinite([s["rmse"], s["crps"]]).all() and s["crps"] > 0
      assert len(s["rmse_per_time"]) == 4  # t = 0..T
      assert sorted(s["per_channel"]) == sorted(CHANNELS)
      # No spectrum or physics diagnostic on the sphere: skipped, not an
      # error; the rank histogram has M + 1 = 4 bins.
      assert "spectrum_error" not in s and len(s["rank_histogram"]) == 4
  assert (out / "pilot.md").read_text().count("| stations_") == 9
  table = list(csv.DictReader((out / "pilot.csv").open()))
  assert len(table) == 9 and float(table[2]["rmse"]) == pytest.approx(
      rows["stations_1pct"]["dps"]["rmse"])
  assert (out / "pilot_rmse_vs_time.png").stat().st_size > 0

  # Brute-force latitude weighting on the same ensembles (one channel).
  test = xr.open_dataset(data / "test.nc")
  lat = test["latitude"].values
  std = np.asarray([test[c].attrs[STD_ATTR] for c in CHANNELS])
  again = rows["stations_5pct"]
  ens, y = again["_arrays"]["controlled"], again["_arrays"]["truth"]
  assert ens.shape == (1, 3, 4, NUM_LAT, NUM_LON, 4)  # K, M, T+1, grid, C
  c = 1
  phi = np.deg2rad(lat)
  edges = np.concatenate([[-np.pi / 2], (phi[1:] + phi[:-1]) / 2, [np.pi / 2]])
  w = np.diff(np.sin(edges))  # cell areas (poles get the polar caps)
  num = den = crps_num = 0.0
  m = ens.shape[1]
  for k in range(ens.shape[0]):
    for t in range(1, ens.shape[2]):  # lead times 1..T
      for i in range(NUM_LAT):
        for j in range(NUM_LON):
          members, obs = ens[k, :, t, i, j, c], y[k, t, i, j, c]
          num += w[i] * (members.mean() - obs)**2
          den += w[i]
          pairs = sum(abs(a - b) for a in members for b in members)
          crps_num += w[i] * (np.mean(np.abs(members - obs))
                              - pairs / (2 * m * (m - 1)))
  scores = again["controlled"]["per_channel"][CHANNELS[c]]
  np.testing.assert_allclose(scores["rmse"], np.sqrt(num / den) * std[c],
                             rtol=1e-5)
  np.testing.assert_allclose(scores["crps"], crps_num / den * std[c],
                             rtol=1e-5)
  unweighted = np.sqrt(np.mean((ens.mean(1) - y)[:, 1:, ..., c]**2)) * std[c]
  assert abs(scores["rmse"] - unweighted) > 1e-4 * unweighted
  # The three methods share the observations but differ.
  assert not np.allclose(again["_arrays"]["dps"], again["_arrays"]["unguided"])

  # Settings are chosen on the validation split: `--split validation`, with
  # a choice of methods (the unguided reference always runs).
  val = tmp_path / "validation"
  assert cli.main(["pilot", "--config", "era5_pilot", "--data", str(data),
                   "--ardm", str(ardm_path), "--controller", str(ctrl_path),
                   "--regime", "stations_5pct", "--method", "controlled",
                   "--split", "validation", "--out", str(val)] + args) == 0
  chosen = json.loads((val / "pilot.json").read_text())["stations_5pct"]
  assert sorted(chosen) == ["controlled", "unguided"]
  assert chosen["controlled"]["rmse"] != rows["stations_5pct"]["controlled"][
      "rmse"]

  # The generic evaluate path weights by latitude too.
  weights = forecasts.spatial_weights(config, data)
  np.testing.assert_allclose(weights[:, 0], metrics.area_weights(lat))
  assert weights.shape == (NUM_LAT, NUM_LON)
  assert forecasts.spatial_weights(load_config("ks"), data) is None


@pytest.mark.parametrize("overrides, match", [
    (["pde.channels=('vorticity@500',)", "ardm.state_shape=(8, 16, 1)"],
     r"\['vorticity'\] not in the store"),
    (["pde.channels=('temperature@300',)", "ardm.state_shape=(8, 16, 1)"],
     "level 300"),
    (["pde.channels=('temperature',)", "ardm.state_shape=(8, 16, 1)"],
     "name one as 'temperature@LEVEL'"),
    (["pde.channels=('2m_temperature@850',)", "ardm.state_shape=(8, 16, 1)"],
     "surface variable"),
    (["ardm.state_shape=(32, 64, 4)"], r"8 x 16 .* expects state_shape"),
    (["pde.step_hours=9"], "not a multiple of the store's time step 6h"),
    (["pde.test_period=('2021-01-01', '2021-12-31')"],
     "test period .* has no times in the store"),
    (["data.num_steps=40"], "needs 41"),
])
def test_bad_configs_give_clear_errors(store, overrides, match):
  path, _ = store
  config = load_config("era5_pilot", data_overrides(path) + overrides)
  counts = {"train": 0, "validation": 0, "test": 0}
  with pytest.raises(ValueError, match=match):
    extract_splits(config.pde, config.data.num_steps, counts,
                   config.ardm.state_shape)


def test_bad_stores_give_clear_errors(store, tmp_path, capsys):
  path, raw = store
  with pytest.raises(StoreUnavailableError, match="does not exist"):
    extract_splits(ERA5DataConfig(store=str(tmp_path / "nope.zarr")), 3, {},
                   (NUM_LAT, NUM_LON, 3))
  # Through the CLI: exit code 2 and a one-line message, no traceback.
  assert cli.main(["simulate", "--config", "era5_pilot", "--out",
                   str(tmp_path / "x"), "--set",
                   f"pde.store={tmp_path / 'nope.zarr'}"]) == 2
  err = capsys.readouterr().err
  assert "does not exist" in err and "Traceback" not in err
  # A store with NaNs in a selected channel.
  bad = raw.copy(deep=True)
  bad["2m_temperature"][4, 2, 3] = np.nan  # 2020-01-02T00
  bad_path = tmp_path / "nan.zarr"
  bad.to_zarr(str(bad_path), mode="w", zarr_format=2, consolidated=True)
  config = load_config("era5_pilot", data_overrides(path)
                       + [f"pde.store={bad_path}"])
  with pytest.raises(ValueError, match="'2m_temperature' has 1 NaN"):
    extract_splits(config.pde, 3, {}, config.ardm.state_shape)
  # Non-global longitudes cannot be periodic.
  half = raw.isel(longitude=slice(0, NUM_LON // 2))
  half_path = tmp_path / "half.zarr"
  half.to_zarr(str(half_path), mode="w", zarr_format=2, consolidated=True)
  with pytest.raises(ValueError, match="span the globe"):
    extract_splits(ERA5DataConfig(store=str(half_path),
                                  train_period=("2020-01-01", "2020-01-06")),
                   3, {}, (NUM_LAT, NUM_LON // 2, 3))
  # ERA5 evaluation needs the extracted data.
  assert cli.main(["evaluate", "--config", "era5_pilot"]) == 2
  assert "era5 configs need --data" in capsys.readouterr().err
  assert cli.main(["pilot", "--config", "ks", "--data", str(tmp_path),
                   "--ardm", "a.npz", "--controller", "c.npz"]) == 2
  assert "needs a lat/lon config" in capsys.readouterr().err
  with pytest.raises(ValueError, match="unknown split 'train'"):
    era5_pilot.run_pilot(load_config("era5_pilot"), tmp_path, "a.npz",
                         "c.npz", tmp_path / "out", split="train")
