"""One path for every model: a toy FrozenARDM that is not a grid model
(tests/toy_ardm.py, weather names on a small sphere, 6 h steps) runs through
gc.assimilate, the CLI `assimilate` and the evaluation engine with no change
outside its file; station tables with ISO dates, levels and lat/lon; O-B
monitoring against brute-force interpolation on the sphere; the analysis
written with CF attributes and read back."""

import json

import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import gencast_control as gc
from gencast_control import api, cli
from gencast_control.core import assimilation
from gencast_control.core.controller import (ControllerConfig, init_controller,
                                             save_controller)
from gencast_control.core.networks import ConvNetConfig
from gencast_control.core.regimes import ObservationRegime
from gencast_control.evaluation import engine
from tests.toy_ardm import LAT, LON, ToyARDM

START = np.datetime64("2024-01-01T00:00", "ns")
STEPS = 4


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
  root = tmp_path_factory.mktemp("toy")
  model = ToyARDM()
  config = ControllerConfig(horizon=2, network=ConvNetConfig(
      width=4, num_blocks=1), encoding_channels=4)
  params = init_controller(config, model, jax.random.PRNGKey(0))
  # Nonzero controller parameters (init gives u = 0 by construction).
  params = jax.tree.map(
      lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
      params)
  save_controller(root / "controller.npz", params, config, model)
  rng = np.random.default_rng(0)
  la, lo = np.meshgrid(np.deg2rad(LAT), np.deg2rad(LON), indexing="ij")
  field = np.cos(la) * np.sin(lo)
  initial = xr.Dataset(
      {"surface_pressure": (("time", "lat", "lon"), field[None]),
       "temperature": (("time", "level", "lat", "lon"),
                       np.stack([field, -field])[None])},
      coords={"time": [START], "lat": LAT, "lon": LON, "level": [500, 850]})
  # descending latitude, as WeatherBench2's 0.25 deg store: reindexed
  initial.isel(lat=slice(None, None, -1)).to_netcdf(root / "initial.nc")
  rows = []
  for k in range(1, STEPS + 1):
    for lat, lon in ((45.3, 12.0), (-71.0, 355.0), (88.0, 100.0)):
      rows.append({"time": str(START + np.timedelta64(6 * k, "h")) + "Z",
                   "lat": lat, "lon": lon, "level": 850,
                   "variable": "temperature",
                   "value": rng.normal(), "error_std": 0.2})
      rows.append({"time": str(START + np.timedelta64(6 * k, "h")),
                   "latitude": None, "lat": lat, "lon": lon, "level": None,
                   "variable": "surface_pressure", "value": rng.normal(),
                   "error_std": 0.5})
  table = pd.DataFrame(rows).drop(columns="latitude")
  table.to_csv(root / "stations.csv", index=False)
  return {"root": root, "model": model, "initial": initial, "table": table}


def test_gc_assimilate_runs_a_model_that_is_not_a_grid_model(toy):
  model = gc.load_model("tests.toy_ardm:make_model")
  controller = gc.load_controller(toy["root"] / "controller.npz", model)
  initial = xr.open_dataset(toy["root"] / "initial.nc")
  obs = gc.observations_from_points(toy["root"] / "stations.csv", model,
                                    initial)
  assert obs.num_steps == STEPS
  np.testing.assert_array_equal(
      obs.times, START + np.arange(STEPS + 1) * np.timedelta64(6, "h"))
  analysis = gc.assimilate(model, controller, obs, initial, members=3,
                           progress=True)
  background = gc.assimilate(model, None, obs, initial, members=3)
  # the progress bar runs one compiled step per forecast step: same result
  np.testing.assert_array_equal(
      analysis["temperature"],
      gc.assimilate(model, controller, obs, initial, members=3)["temperature"])
  assert analysis["temperature"].dims == ("sample", "time", "level", "lat",
                                          "lon")
  np.testing.assert_array_equal(analysis["lat"], LAT)  # the model's order
  assert analysis["time"].dtype.kind == "M"
  # time 0 is the initial state, aligned by coordinate
  np.testing.assert_allclose(
      analysis["temperature"].isel(sample=0, time=0),
      toy["initial"]["temperature"].isel(time=0).transpose("level", ...),
      rtol=1e-6)
  assert not np.allclose(analysis["temperature"], background["temperature"])
  # u = 0: the controller-free rollout is the ensemble rollout's
  plain = assimilation.ensemble_rollout(
      model, api.initial_ensemble(initial, model.layout, 1, 3), STEPS,
      jax.random.PRNGKey(0), 3)
  np.testing.assert_array_equal(
      np.asarray(plain)[..., 1:], np.moveaxis(
          background["temperature"].values, 2, -1))

  # O-B: brute-force bilinear interpolation on the sphere
  stats = gc.monitoring(obs, background, analysis)
  mean = background.mean("sample")
  rows = obs.points[obs.points["variable"] == "surface_pressure"]
  brute = []
  for r in rows.itertuples():
    f = mean["surface_pressure"].isel(time=r.step).values
    lat = min(max(r.lat, LAT[0]), LAT[-1])  # polar caps: the outermost row
    i = min(np.searchsorted(LAT, lat, side="right") - 1, len(LAT) - 2)
    a = (lat - LAT[i]) / (LAT[i + 1] - LAT[i])
    j = int(r.lon // 30) % 12
    b = (r.lon - 30 * (r.lon // 30)) / 30
    value = ((1 - a) * (1 - b) * f[i, j] + (1 - a) * b * f[i, (j + 1) % 12]
             + a * (1 - b) * f[i + 1, j] + a * b * f[i + 1, (j + 1) % 12])
    brute.append(r.value - value)
  brute = np.asarray(brute)
  assert stats["surface_pressure"]["count"] == len(brute) == 3 * STEPS
  assert stats["surface_pressure"]["omb_mean"] == pytest.approx(brute.mean())
  assert stats["surface_pressure"]["omb_rmse"] == pytest.approx(
      np.sqrt(np.mean(brute**2)))

  # written with CF attributes, read back with dates and members
  path = api.write_analysis(analysis, toy["root"] / "analysis.nc")
  back = xr.open_dataset(path)
  assert back["temperature"].attrs["standard_name"] == "air_temperature"
  assert back["lat"].attrs["units"] == "degrees_north"
  assert back["time"].dtype.kind == "M" and back.sizes["sample"] == 3
  with pytest.raises(FileExistsError):
    api.write_analysis(analysis, path)
  wb2 = api.write_analysis(analysis, toy["root"] / "analysis.zarr",
                           naming="weatherbench2")
  assert {"latitude", "longitude", "realization"} <= set(
      xr.open_zarr(wb2).dims)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(variable="humidity"), "not one the model predicts"),
    (lambda t: t.assign(level=t["level"].fillna(850).replace(850, 700)),
     "has no level 700"),
    (lambda t: t.assign(time=t["time"].str.replace("T06", "T05")),
     "not a model time"),
    (lambda t: t.assign(time=1.0), "are model times"),
    (lambda t: t.assign(lat=t["lat"] + 100), "outside the grid"),
    (lambda t: t.assign(time=t["time"].where(t.index != 3)), "time"),
])
def test_bad_station_tables_name_the_problem(toy, change, message):
  model = ToyARDM()
  with pytest.raises(ValueError, match=message):
    gc.observations_from_points(change(toy["table"]), model, toy["initial"])


def test_cli_assimilate_runs_a_model_of_ones_own(toy, tmp_path):
  root = toy["root"]
  assert cli.main(["assimilate", "--ardm", "tests.toy_ardm:make_model",
                   "--controller", str(root / "controller.npz"),
                   "--observations", str(root / "stations.csv"),
                   "--initial", str(root / "initial.nc"), "--members", "2",
                   "--out", str(tmp_path / "out")]) == 0
  analysis = xr.open_dataset(tmp_path / "out" / "analysis.nc")
  assert analysis["time"].dtype.kind == "M"
  assert analysis.sizes == {"sample": 2, "time": STEPS + 1, "level": 2,
                            "lat": 9, "lon": 12}
  monitoring = json.loads((tmp_path / "out" / "monitoring.json").read_text())
  assert monitoring["monitoring"]["temperature"]["count"] == 3 * STEPS


def test_the_evaluation_engine_runs_it(toy):
  model = ToyARDM()
  truth = assimilation.ensemble_rollout(
      model, api.initial_ensemble(toy["initial"], model.layout, 1, 1)[0],
      STEPS, jax.random.PRNGKey(7), 1)
  truth = np.asarray(truth)  # [1, T+1, ...]: one trajectory, h = 1
  regime = ObservationRegime(name="half", fraction=0.5, noise_std=0.1)
  key = jax.random.PRNGKey(0)
  observations = engine.observe(regime, truth, 1, key)
  controller = gc.load_controller(toy["root"] / "controller.npz", model)
  runs = {}
  for name, ctrl in (("unguided", None), ("controlled", controller)):
    runs[name] = engine.run_programs([assimilation.ensemble_program(
        model, truth[k, :1], STEPS, engine.member_key(key, k), 2,
        observations[k] if ctrl is not None else None, ctrl,
        ctrl.config.horizon if ctrl is not None else 1)
        for k in range(len(truth))])
  for run in runs.values():
    scores = engine.score(run.ensembles, truth)
    assert run.ensembles.shape == (1, 2, STEPS + 1, 9, 12, 3)
    assert np.isfinite(scores["rmse"]) and scores["rmse"] > 0


MEMBERS_SCRIPT = """
import json, sys
import jax, numpy as np, xarray as xr
import gencast_control as gc
from gencast_control.core import assimilation
from tests.toy_ardm import ToyARDM
root = sys.argv[1]
model = ToyARDM()
controller = gc.load_controller(root + "/controller.npz", model)
initial = xr.open_dataset(root + "/initial.nc")
obs = gc.observations_from_points(root + "/stations.csv", model, initial)
out = {"devices": jax.local_device_count()}
for members in (4, 3):
  sharding = assimilation.member_sharding(members)
  out[f"spread_{members}"] = (None if sharding is None else
                              len(sharding.device_set))
  analysis = gc.assimilate(model, controller, obs, initial, members=members)
  np.save(root + f"/members_{members}.npy", analysis["temperature"].values)
print(json.dumps(out))
"""


def test_members_spread_over_local_devices(toy):
  """4 forced CPU devices: 4 members are split over them (the `sample` mesh
  axis), 3 members run unsplit; the analyses equal one device's."""
  import os
  import subprocess
  import sys
  root = str(toy["root"])
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(filter(
      None, [os.environ.get("XLA_FLAGS", ""),
             "--xla_force_host_platform_device_count=4"])))
  proc = subprocess.run([sys.executable, "-c", MEMBERS_SCRIPT, root], env=env,
                        capture_output=True, text=True, timeout=600,
                        cwd=os.path.dirname(os.path.dirname(__file__)))
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report == {"devices": 4, "spread_4": 4, "spread_3": None}
  model = ToyARDM()
  controller = gc.load_controller(toy["root"] / "controller.npz", model)
  initial = xr.open_dataset(toy["root"] / "initial.nc")
  obs = gc.observations_from_points(toy["root"] / "stations.csv", model,
                                    initial)
  for members in (4, 3):
    one_device = gc.assimilate(model, controller, obs, initial,
                               members=members)["temperature"].values
    np.testing.assert_allclose(
        np.load(toy["root"] / f"members_{members}.npy"), one_device,
        rtol=1e-5, atol=1e-6)


def test_the_public_api_checks_its_arguments(toy):
  """Wrong types, ranges, paths and swapped arguments: one-line ValueErrors
  that name the argument, before any compiled step."""
  model = ToyARDM()
  root = toy["root"]
  initial = toy["initial"]
  obs = gc.observations_from_points(toy["table"], model, initial)
  controller = gc.load_controller(root / "controller.npz", model)
  cases = [
      (lambda: gc.load_model(3), "load_model takes"),
      (lambda: gc.load_model("ks", timeout_s=-1), "timeout_s"),
      (lambda: gc.load_model("nowhere/model.npz"), "does not exist"),
      (lambda: gc.load_model("tests.toy_ardm:nothing"), "no callable"),
      (lambda: gc.load_controller(root / "controller.npz", "ks"),
       "model must be a FrozenARDM"),
      (lambda: gc.observations_from_points(model, toy["table"], initial),
       "model must be a FrozenARDM"),
      (lambda: gc.observations_from_points(toy["table"], model, 3),
       "initial must be an xarray Dataset or a NetCDF/zarr path"),
      (lambda: gc.observations_from_points(toy["table"], model,
                                           root / "missing.nc"),
       "does not exist"),
      (lambda: gc.observations_from_points(toy["table"], model, initial,
                                           num_steps=0), "num_steps"),
      (lambda: gc.observations_from_points(toy["table"], model, initial,
                                           method="cubic"), "method"),
      (lambda: gc.observations_from_points(toy["table"], model, initial,
                                           dt="3h"), "differs from the"),
      (lambda: gc.assimilate(model, obs, controller, initial),
       "controller must be a bound controller"),
      (lambda: gc.assimilate(model, controller, initial, obs),
       "observations must be an ObservationSet"),
      (lambda: gc.assimilate(model, None, obs, initial, members=0),
       "members must be >= 1"),
      (lambda: gc.assimilate(model, None, obs, initial, members=2.5),
       "members must be an integer"),
      (lambda: gc.assimilate(model, None, obs, initial, seed=-1), "seed"),
      (lambda: gc.assimilate(model, None, obs, initial.expand_dims(
          sample=3), members=2), "3 members"),
      (lambda: gc.restart_state(initial), "lacks the attribute"),
      (lambda: gc.score(initial, initial), "no `sample` dim"),
      (lambda: gc.monitoring(initial, initial, obs),
       "must be the ObservationSet"),
      (lambda: gc.write_analysis(initial, root / "analysis.txt"),
       "unsupported output kind"),
  ]
  for call, message in cases:
    with pytest.raises((ValueError, FileNotFoundError), match=message):
      call()


def test_checks_before_work(toy, tmp_path, capsys):
  """A truth that does not cover the run, and an ensemble that does not fit
  in memory, are refused before the first compiled step; nothing written."""
  root = toy["root"]
  short = toy["initial"].copy()
  short.to_netcdf(tmp_path / "short_truth.nc")  # one time only
  out = tmp_path / "out"
  assert cli.main(["assimilate", "--ardm", "tests.toy_ardm:make_model",
                   "--controller", str(root / "controller.npz"),
                   "--observations", str(root / "stations.csv"),
                   "--initial", str(root / "initial.nc"), "--truth",
                   str(tmp_path / "short_truth.nc"), "--out", str(out)]) == 2
  assert "does not cover the run's time 2024-01-01T06:00" in \
      capsys.readouterr().err
  assert not out.exists() or not any(out.iterdir())
  model = ToyARDM()
  obs = gc.observations_from_points(toy["table"], model, toy["initial"])
  with pytest.raises(ValueError, match="more than half of this machine"):
    gc.assimilate(model, None, obs, toy["initial"], members=10**8)
