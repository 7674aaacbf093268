"""The Held-Suarez pilot: dinosaur's atmosphere as a WeatherBench2 store, its
physics, and the whole ERA5 pilot path on it (simulate -> train-ardm ->
train-controller -> pilot with the perfect-model LETKF), at the coarsest
resolution for a few days."""

import json

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("dinosaur", reason="the Held-Suarez system needs the"
                    " optional extra: pip install -e '.[sphere]'")

from gencast_control import cli  # noqa: E402
from gencast_control.systems import held_suarez  # noqa: E402

# T10 on a 32 x 16 grid, 4 sigma levels; 30 days of spin-up (the jet forms
# in about 20), then 3 / 2 / 2 days of 12-hourly states.
SIMULATION = ["pde.simulation.max_wavenumber=10",
              "pde.simulation.gaussian_nodes=8", "pde.simulation.layers=4",
              "pde.simulation.spinup_days=30.0",
              "pde.simulation.split_days=(3.0, 2.0, 2.0)"]
TINY = SIMULATION + [
    "ardm.state_shape=(16, 32, 5)", "data.num_steps=2",
    "ardm.network.width=8", "ardm.network.num_blocks=1",
    "ardm.network.dilations=(1,)", "ardm.network.embedding_size=8",
    "ardm.sampler.method='euler'", "ardm.sampler.num_steps=1",
    "ardm_training.num_steps=2", "ardm_training.batch_size=2",
    "controller.network.width=4", "controller.network.num_blocks=1",
    "controller.network.dilations=(1,)", "controller.network.embedding_size=8",
    "controller_training.num_steps=2", "controller_training.batch_size=2",
    "controller_training.window=1", "controller_training.spinup=0",
    "controller_training.validate_every=0",
    "assimilation.num_steps=2", "assimilation.ensemble_size=3",
    "assimilation.num_trajectories=1", "pde.reference.ensemble_size=4"]


def sets(overrides):
  return [x for o in overrides for x in ("--set", o)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """`gencast-control simulate --config heldsuarez`: the store and splits."""
  out = tmp_path_factory.mktemp("heldsuarez")
  assert cli.main(["simulate", "--config", "heldsuarez", "--out", str(out)]
                  + sets(TINY)) == 0
  return out


def test_store_is_shaped_like_weatherbench2(data):
  ds = xr.open_zarr(data / "heldsuarez.zarr")
  assert dict(ds.sizes) == {"time": 14, "level": 3, "latitude": 16,
                            "longitude": 32}
  assert sorted(ds.data_vars) == sorted(held_suarez.LEVEL_VARIABLES
                                        + held_suarez.SURFACE_VARIABLES)
  assert ds["temperature"].dims == ("time", "level", "latitude", "longitude")
  assert ds["surface_pressure"].dims == ("time", "latitude", "longitude")
  np.testing.assert_array_equal(ds["level"], [250, 500, 850])
  # Equiangular cell centres, ascending, no poles (WB2's 64 x 32 layout).
  np.testing.assert_allclose(ds["latitude"], -90 + (np.arange(16) + 0.5)
                             * 180 / 16, atol=1e-9)
  np.testing.assert_allclose(ds["longitude"], np.arange(32) * 360 / 32)
  assert set(np.diff(ds["time"].values)) == {np.timedelta64(12, "h")}
  assert ds["geopotential"].attrs["units"] == "m2 s-2"
  assert "Held-Suarez" in ds.attrs["title"] and "members" in ds.attrs
  states = np.load(held_suarez.states_path(data / "heldsuarez.zarr"))
  assert states["vorticity"].shape[0] == 4  # the validation member's states
  # The data step cut the members into standardised trajectories.
  train = xr.open_dataset(data / "train.nc")
  assert train.sizes["trajectory"] == 2 and train.sizes["time"] == 3
  assert str(train["start_time"].values[0])[:10] == "2000-01-01"


def test_physics_no_blow_up_jets_and_mass(data):
  ds = xr.open_zarr(data / "heldsuarez.zarr").load()
  for name, v in ds.data_vars.items():
    assert np.isfinite(v.values).all(), name
  t = ds["temperature"]
  assert 170 < float(t.min()) and float(t.max()) < 320
  # Held-Suarez: a westerly jet in each hemisphere's mid-latitudes at 250 hPa.
  u = ds["u_component_of_wind"].sel(level=250).mean(("time", "longitude"))
  lat = ds["latitude"].values
  for hemisphere in (lat > 0, lat < 0):
    band = hemisphere & (np.abs(lat) > 15) & (np.abs(lat) < 65)
    assert float(u[band].max()) > 10.0
    assert float(u[band].max()) > float(u[np.abs(lat) < 10].mean()) + 5
  # Dry mass: the area-weighted mean surface pressure of each member is
  # conserved (members start from different perturbations).
  weights = np.cos(np.deg2rad(ds["latitude"]))
  mean_ps = ds["surface_pressure"].weighted(weights).mean(
      ("latitude", "longitude")).values
  for member in (slice(0, 6), slice(6, 10), slice(10, 14)):
    values = mean_ps[member]
    assert np.ptp(values) / values.mean() < 1e-4
  np.testing.assert_allclose(mean_ps, 1e5, rtol=5e-3)


def test_whole_pilot_path_with_the_perfect_model_letkf(data, tmp_path):
  args = sets(TINY)
  ardm, controller = tmp_path / "ardm.npz", tmp_path / "controller.npz"
  assert cli.main(["train-ardm", "--config", "heldsuarez", "--data",
                   str(data), "--out", str(ardm)] + args) == 0
  assert cli.main(["train-controller", "--config", "heldsuarez", "--data",
                   str(data), "--ardm", str(ardm), "--out", str(controller)]
                  + args) == 0
  out = tmp_path / "pilot"
  # One regime: each regime's LETKF is its own compiled program.
  assert cli.main(["pilot", "--config", "heldsuarez", "--data", str(data),
                   "--ardm", str(ardm), "--controller", str(controller),
                   "--regime", "swath_20pct", "--out", str(out)] + args) == 0
  rows = json.loads((out / "pilot.json").read_text())
  assert list(rows) == ["swath_20pct"]
  for by_method in rows.values():
    assert sorted(by_method) == ["controlled", "dps", "letkf", "unguided"]
    for scores in by_method.values():
      assert np.isfinite([scores["rmse"], scores["crps"]]).all()
      assert set(scores["per_channel"]) == {
          "geopotential@500", "temperature@850", "u_component_of_wind@250",
          "v_component_of_wind@850", "surface_pressure"}
  for regime in rows:
    assert (out / f"pilot_map_{regime}.png").stat().st_size > 0
  assert "time / unguided" in (out / "pilot.md").read_text()


def test_bad_settings_are_clear_errors():
  with pytest.raises(ValueError, match="multiple of dt_minutes"):
    held_suarez.HeldSuarezConfig(store_hours=12, dt_minutes=7)
  with pytest.raises(ValueError, match="three positive day counts"):
    held_suarez.HeldSuarezConfig(split_days=(1.0, 0.0, 1.0))
  with pytest.raises(ValueError, match="ascending"):
    held_suarez.HeldSuarezConfig(levels=(850, 500))
  with pytest.raises(ValueError, match="ensemble_size >= 2"):
    held_suarez.LETKFOptions(ensemble_size=1)
