"""GenCast through the public API and the CLI, as a user with station data:
DeepMind's checkpoint, statistics and example as files (a tiny random
GenCast written in DeepMind's formats), a lat/lon/level station CSV with ISO
times, the analysis with CF attributes and dates; u = 0 through the new path
reproduces DeepMind's sampler bit for bit, step after step.

Runs where DeepMind's GenCast code is installed (graphcast 0.2 or
weathernext); skipped otherwise.
"""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip(
    "gencast_control.adapters.gencast.predictor",
    reason="DeepMind's GenCast code is not installed (pip install"
    " 'gencast-control[gencast-next]' or '[gencast]'); the GenCast API tests"
    " need it", exc_type=ImportError)

import jax  # noqa: E402
import xarray as xr  # noqa: E402

import gencast_control as gc  # noqa: E402
from gencast_control import api, cli  # noqa: E402
from gencast_control.adapters import gencast as g  # noqa: E402
from gencast_control.adapters.gencast import tiny  # noqa: E402
from gencast_control.core.controller import (  # noqa: E402
    ControllerConfig, bind_controller, init_controller, save_controller)
from gencast_control.core.networks import ConvNetConfig  # noqa: E402

pytestmark = pytest.mark.gencast

STEPS = 2
CONTROLLER = ControllerConfig(horizon=1, network=ConvNetConfig(
    width=8, num_blocks=1, kernel_size=3, dilations=(1,), embedding_size=8))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp("gencast_user")
  model, example = tiny.offline_assets(num_steps=STEPS, seed=0,
                                       example_seed=1)
  checkpoint, stats, example_path = tiny.write_assets(model, example, root)
  ardm = gc.load_model(checkpoint, stats=stats, example=example_path)
  params = init_controller(CONTROLLER, ardm, jax.random.PRNGKey(1))
  save_controller(root / "zero.npz", params, CONTROLLER, ardm)
  bumped = jax.tree.map(lambda p: p + 0.05 * np.sign(np.asarray(p) + 1e-3),
                        params)
  save_controller(root / "controller.npz", bumped, CONTROLLER, ardm)
  # Stations: off-grid lat/lon, a pressure level, ISO times, the truth + noise
  rng = np.random.default_rng(0)
  datetimes = np.asarray(example["datetime"].values)[0]
  truth = ardm.layout.unstack(
      ardm.layout.stack(example.isel(batch=0), ("time",), allow_missing=True),
      {"time": datetimes})
  rows = []
  for k in range(2, 2 + STEPS):
    for lat, lon in ((47.5, 8.5), (-33.9, 151.2), (64.1, 338.0), (5.0, 355.5)):
      at = truth.sel(time=datetimes[k]).interp(lat=lat, lon=min(lon, 350.0))
      time = str(datetimes[k])[:19] + "Z"
      rows.append({"time": time, "lat": lat, "lon": lon, "level": "",
                   "variable": "2m_temperature", "error_std": 0.5,
                   "value": float(at["2m_temperature"]) + rng.normal()})
      rows.append({"time": time, "lat": lat, "lon": lon, "level": 850,
                   "variable": "temperature", "error_std": 0.5,
                   "value": float(at["temperature"].sel(level=850))})
  pd.DataFrame(rows).to_csv(root / "stations.csv", index=False)
  return dict(root=root, model=model, example=example, ardm=ardm,
              checkpoint=checkpoint, stats=stats, example_path=example_path,
              initial=example.isel(time=slice(0, 2)), params=params)


def test_zero_control_through_gc_assimilate_is_deepminds_sampler(files):
  """gc.assimilate (the core rollout, context = forcings computed from the
  dates) with u = 0 is the unguided rollout bit for bit, and that is
  DeepMind's GenCast called step by step with the rollout's keys and
  DeepMind's own next inputs and forcings (to float32 rounding: a program
  compiled alone may round differently)."""
  ardm, model = files["ardm"], files["model"]
  obs = gc.observations_from_points(files["root"] / "stations.csv", ardm,
                                    files["initial"])
  zero = bind_controller(CONTROLLER, ardm.periodic, files["params"])
  runs = {"unguided": gc.assimilate(ardm, None, obs, files["initial"], 2),
          "zero": gc.assimilate(ardm, zero, obs, files["initial"], 2)}
  for v in runs["zero"].data_vars:
    assert np.array_equal(runs["zero"][v].values, runs["unguided"][v].values,
                          equal_nan=True)
  upstream = g.upstream.upstream()
  forward = g.upstream_forward_transform(model)
  step = jax.jit(lambda rng, i, t, f: forward.apply(model.params, {}, rng, i,
                                                    t, f)[0])
  inputs, targets, forcings = tiny.split_example(model.task_config,
                                                 files["example"], STEPS)
  first = targets.coords["time"].isel(time=[0])
  for m in range(2):
    current = inputs
    for n in range(STEPS):
      key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), m),
                               n)
      template = (targets.isel(time=[n]) * np.nan).assign_coords(time=first)
      frame = forcings.isel(time=[n]).assign_coords(time=first)
      prediction = step(key, current, template, frame)
      reference = np.asarray(ardm.channel_layout.stack(prediction))[0]
      ours = ardm.layout.stack(runs["zero"].isel(sample=m, time=n + 1), ())
      # One compiled rollout (vmapped members, scanned steps) against
      # DeepMind's step compiled alone: XLA may round differently (measured:
      # 1 ulp); the same program with u = 0 is bit for bit the unguided one.
      scale = np.nanmax(np.abs(reference), axis=(0, 1))  # per channel
      assert (np.abs(ours - reference) <= 1e-6 * scale).all(where=~np.isnan(
          reference)), np.nanmax(np.abs(ours - reference) / scale)
      assert np.array_equal(np.isnan(ours), np.isnan(reference))
      current = upstream.rollout._get_next_inputs(
          current, xr.merge([prediction, frame]))


def test_station_csv_through_the_cli_writes_a_cf_analysis(files, tmp_path):
  out = tmp_path / "out"
  assert cli.main(["assimilate", "--ardm", str(files["checkpoint"]),
                   "--stats", str(files["stats"]), "--example",
                   str(files["example_path"]), "--controller",
                   str(files["root"] / "controller.npz"), "--observations",
                   str(files["root"] / "stations.csv"), "--members", "2",
                   "--out", str(out)]) == 0
  analysis = xr.open_dataset(out / "analysis.nc")
  background = xr.open_dataset(out / "background.nc")
  assert analysis["temperature"].dims == ("sample", "time", "level", "lat",
                                          "lon")
  assert analysis["time"].dtype.kind == "M" and analysis.sizes["time"] == 3
  assert analysis["temperature"].attrs["standard_name"] == "air_temperature"
  assert analysis["2m_temperature"].attrs["units"] == "K"
  assert analysis.attrs["Conventions"].startswith("CF")
  assert not np.allclose(analysis["temperature"], background["temperature"])
  stats = json.loads((out / "monitoring.json").read_text())["monitoring"]
  assert stats["temperature"]["count"] == 4 * STEPS
  assert stats["2m_temperature"]["count"] == 4 * STEPS
  # O-B of the interior stations: xarray's own linear interpolation
  table = pd.read_csv(files["root"] / "stations.csv")
  table = table[(table["variable"] == "temperature") & (table["lon"] < 350)]
  mean = background["temperature"].sel(level=850).mean("sample")
  brute = [r.value - float(mean.sel(time=np.datetime64(r.time[:19]))
                           .interp(lat=r.lat, lon=r.lon))
           for r in table.itertuples()]
  obs = gc.observations_from_points(files["root"] / "stations.csv",
                                    files["ardm"], files["initial"])
  h = api.observation_operator(
      obs, files["ardm"].layout.stack(
          background.mean("sample"), ("time",)))
  points = obs.points
  interior = ((points["variable"] == "temperature")
              & (points["lon"] < 350)).values
  np.testing.assert_allclose(points["value"].values[interior] - h[interior],
                             brute, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(variable="relative_humidity"),
     "not one the model predicts"),
    (lambda t: t.assign(level=t["level"].replace(850, 700)),
     "has no level 700"),
    (lambda t: t.assign(time=t["time"].str.replace("T12", "T13")),
     "not a model time"),
    (lambda t: t.assign(lat=t["lat"] + 50), "outside the grid"),
])
def test_bad_station_tables_name_the_problem(files, change, message):
  table = pd.read_csv(files["root"] / "stations.csv")
  with pytest.raises(ValueError, match=message):
    gc.observations_from_points(change(table), files["ardm"],
                                files["initial"])


def test_load_model_needs_stats_and_example_together(files):
  with pytest.raises(ValueError, match="both stats= .* and example="):
    gc.load_model(files["checkpoint"], stats=files["stats"])


def test_the_gencast_module_docstring_example_runs():
  import doctest
  result = doctest.testmod(g, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
