"""Assimilating your own observations: the public API and the CLI on files
the tests write (grid file, point table, off-grid operator, initial ensemble,
cycling) with conftest's tiny CLI run."""

import json
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import gencast_control as gc
from gencast_control import api, cli
from tests.conftest import TINY_CLI


@pytest.fixture(scope="module")
def case(tiny_run, tmp_path_factory):
  """A tiny KS truth, its initial state and station observations as files."""
  root = tmp_path_factory.mktemp("own_obs")
  truth = xr.open_dataset(Path(tiny_run["D"]) / "test.nc").isel(
      trajectory=0, drop=True).load()
  truth.to_netcdf(root / "truth.nc")
  truth.isel(time=[0]).to_netcdf(root / "initial.nc")
  x = truth["x"].values
  dx = x[1] - x[0]
  rng = np.random.default_rng(0)
  rows = []
  for t in truth["time"].values[1:13]:
    u = truth["u"].sel(time=t).values
    for s in x[::4] + 0.4 * dx:  # off the grid
      exact = np.interp(s, np.r_[x, x[-1] + dx], np.r_[u, u[0]])
      rows.append({"time": t, "x": s, "variable": "u",
                   "value": exact + 0.05 * rng.normal(), "error_std": 0.05})
  pd.DataFrame(rows).to_csv(root / "stations.csv", index=False)
  gridded = truth.where(xr.DataArray(rng.random(truth["u"].shape) < 0.3,
                                     dims=truth["u"].dims))
  gridded.isel(time=slice(0, 13)).to_netcdf(root / "gridded.nc")
  return {**tiny_run, "root": root, "truth": truth}


def _assimilate(case, out, *extra):
  argv = ["assimilate", "--ardm", case["A"], "--controller", case["C"],
          "--out", str(out), "--members", "2"] + list(extra) + TINY_CLI
  assert cli.main(argv) == 0
  return json.loads((out / "monitoring.json").read_text())


def test_point_table_with_truth_writes_analysis_monitoring_and_plot(
    case, tmp_path):
  root = case["root"]
  stats = _assimilate(case, tmp_path, "--observations",
                      str(root / "stations.csv"), "--initial",
                      str(root / "initial.nc"), "--truth",
                      str(root / "truth.nc"))
  analysis = xr.open_dataset(tmp_path / "analysis.nc")
  assert analysis["u"].dims == ("sample", "time", "x")
  assert analysis["u"].shape == (2, 13, 32)
  np.testing.assert_allclose(analysis["time"], np.arange(13.0))
  m = stats["monitoring"]["u"]
  assert m["count"] == 12 * 8
  assert m["expected_rmse_obs_error"] == pytest.approx(0.05)
  assert m["omb_rmse"] > 0 and m["oma_rmse"] > 0
  assert set(stats["scores"]) == {"controlled", "unguided"}
  assert (tmp_path / "analysis.png").stat().st_size > 5_000
  assert "O-B RMSE" in (tmp_path / "monitoring.md").read_text()


def test_gridded_file_and_an_initial_ensemble(case, tmp_path):
  root = case["root"]
  ensemble = xr.concat([case["truth"].isel(time=[0]),
                        case["truth"].isel(time=[5]).assign_coords(time=[0.0])],
                       dim="sample")
  ensemble.to_netcdf(tmp_path / "ensemble.nc")
  stats = _assimilate(case, tmp_path / "out", "--observations",
                      str(root / "gridded.nc"), "--initial",
                      str(tmp_path / "ensemble.nc"), "--error-std", "u=0.05")
  analysis = xr.open_dataset(tmp_path / "out" / "analysis.nc")
  np.testing.assert_array_equal(analysis["u"].values[:, 0],
                                ensemble["u"].values[:, 0])
  observed = np.isfinite(xr.open_dataset(root / "gridded.nc")["u"].values)
  assert stats["monitoring"]["u"]["count"] == observed[1:].sum()


def test_climatological_start_says_which_states(case, tmp_path):
  stats = _assimilate(case, tmp_path, "--observations",
                      str(case["root"] / "stations.csv"), "--data", case["D"])
  assert "members start from training states" in stats["initial"]


def test_two_chained_runs_equal_one_run_over_both_periods(case, tmp_path):
  # Observations in steps 1-4 and 9-12: nothing in the preview beyond the
  # first period's end (H = 4), so the first run sees what one run sees.
  table = pd.read_csv(case["root"] / "stations.csv")
  table = table[(table["time"] <= 4) | (table["time"] >= 9)]
  table.to_csv(tmp_path / "obs.csv", index=False)
  common = ["--observations", str(tmp_path / "obs.csv")]
  initial = ["--initial", str(case["root"] / "initial.nc")]
  _assimilate(case, tmp_path / "one", *common, *initial)
  _assimilate(case, tmp_path / "first", *common, *initial, "--steps", "4")
  _assimilate(case, tmp_path / "second", *common, "--restart",
              str(tmp_path / "first"))
  one = xr.open_dataset(tmp_path / "one" / "analysis.nc")["u"]
  first = xr.open_dataset(tmp_path / "first" / "analysis.nc")["u"]
  second = xr.open_dataset(tmp_path / "second" / "analysis.nc")["u"]
  chained = np.concatenate([first.values, second.values[:, 1:]], axis=1)
  np.testing.assert_allclose(chained, one.values, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(second["time"], np.arange(4.0, 13.0))


def test_linear_operator_matches_brute_force_interpolation(case):
  truth = case["truth"]
  table = pd.read_csv(case["root"] / "stations.csv")
  model = gc.load_model(case["A"])
  obs = gc.observations_from_points(table, model, truth.isel(time=[0]),
                                    variables=("u",), dt=1.0)
  states = truth["u"].values[:13, :, None]
  h = api.observation_operator(obs, states)
  x = truth["x"].values
  dx = x[1] - x[0]
  brute = [np.interp(r.x, np.r_[x, x[-1] + dx],
                     np.r_[states[r.step, :, 0], states[r.step, 0, 0]])
           for r in obs.points.itertuples()]
  np.testing.assert_allclose(h, brute, rtol=1e-6)
  # The controller sees each station at its nearest grid point.
  grid_obs = np.asarray(obs.stream.mask)[1]
  assert grid_obs.sum() == 8 and grid_obs[::4].all()


def test_each_observation_keeps_its_own_error_std(case, tmp_path):
  """Stations of mixed quality reach the controller with their own stds;
  two observations on one grid point and time become their mean with std
  sqrt(s1^2 + s2^2) / 2. A gridded file can carry u_error_std."""
  truth = case["truth"]
  grid = truth.isel(time=[0])
  x = truth["x"].values
  table = pd.DataFrame({"time": [1.0, 1.0, 1.0, 2.0],
                        "x": [x[3], x[3] + 1e-3, x[9], x[9]],
                        "variable": "u", "value": [1.0, 3.0, 0.5, 0.7],
                        "error_std": [0.3, 0.4, 0.05, 1.5]})
  obs = gc.observations_from_points(table, gc.load_model(case["A"]), grid,
                                    variables=("u",), dt=1.0)
  std, values = np.asarray(obs.stream.entry_std()), np.asarray(
      obs.stream.values)
  assert obs.stream.heteroscedastic
  assert values[1, 3, 0] == pytest.approx(2.0)
  assert std[1, 3, 0] == pytest.approx(0.25)  # sqrt(0.09 + 0.16) / 2
  assert std[1, 9, 0] == pytest.approx(0.05)
  assert std[2, 9, 0] == pytest.approx(1.5)
  preview = obs.stream.preview(0, 2)
  assert float(preview.error_std[0, 9, 0]) == pytest.approx(0.05)
  # Gridded: per-observation stds from the file's u_error_std.
  gridded = xr.open_dataset(case["root"] / "gridded.nc")
  quality = xr.full_like(gridded["u"], 0.05).where(gridded["x"] < 40, 0.8)
  gridded.assign(u_error_std=quality).to_netcdf(tmp_path / "mixed.nc")
  stats = _assimilate(case, tmp_path / "run", "--observations",
                      str(tmp_path / "mixed.nc"), "--initial",
                      str(case["root"] / "initial.nc"))
  observed = gridded["u"].isel(time=slice(1, None)).notnull()
  expected = np.sqrt(float((quality.isel(time=slice(1, None))**2)
                           .where(observed).mean()))
  assert stats["monitoring"]["u"]["expected_rmse_obs_error"] == \
      pytest.approx(expected, rel=1e-5)
  with pytest.raises(ValueError, match="need an error std"):
    gc.observations_from_dataset(gridded, gc.load_model(case["A"]),
                                 grid, variables=("u",), dt=1.0)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(x=t["x"] + 1e3), None),  # periodic x wraps: no error
    (lambda t: t.assign(variable="v"), "variable 'v' is not one the model"),
    (lambda t: t.assign(error_std=-1.0), "error_std"),
    (lambda t: t.assign(error_std=np.nan), "error_std"),
    (lambda t: pd.concat([t, t.iloc[:1]]), "repeats an earlier observation"),
    (lambda t: t.assign(time=t["time"] - 100), "no overlap"),
    (lambda t: t.assign(time=t["time"] + 0.5), "not a model time"),
    (lambda t: t.drop(columns="error_std"), "error_std"),
])
def test_bad_point_tables(case, change, message):
  table = change(pd.read_csv(case["root"] / "stations.csv"))
  model = gc.load_model(case["A"])
  grid = case["truth"].isel(time=[0])
  if message is None:
    gc.observations_from_points(table, model, grid, variables=("u",), dt=1.0)
    return
  with pytest.raises(ValueError, match=message):
    gc.observations_from_points(table, model, grid, variables=("u",), dt=1.0)


def test_outside_a_non_periodic_domain_and_a_wrong_initial_shape(case):
  table = pd.read_csv(case["root"] / "stations.csv")
  grid = case["truth"].isel(time=[0])
  # B records no grid (a checkpoint from before): the initial state's is
  # checked against the model's state shape
  with pytest.raises(ValueError, match="the model's is"):
    api.model_layout(gc.load_model(case["B"]), grid.isel(x=slice(0, 16)),
                     ("u",), 1.0)
  # A (train-ardm) records its grid: the initial state is aligned to it
  layout = api.model_layout(gc.load_model(case["A"]), grid, ("u",), 1.0)
  with pytest.raises(ValueError, match="'x' coordinate .* is not the model's"):
    api.initial_ensemble(grid.isel(x=slice(0, 16)), layout, 1, 2)


def test_a_custom_system_with_its_own_names(tmp_path):
  """Variables `h`, `v` on a dim `s`: no PDE section, names from the data."""
  rng = np.random.default_rng(0)
  s = np.arange(16.0)
  phase = rng.uniform(0, 2 * np.pi, (4, 1, 1))
  t = np.arange(20.0)[None, :, None]
  h = np.sin(2 * np.pi * s / 16 + 0.3 * t + phase)
  data = tmp_path / "data"
  data.mkdir()
  for split, sl in (("train", slice(0, 2)), ("validation", slice(2, 3)),
                    ("test", slice(3, 4))):
    xr.Dataset({"h": (("trajectory", "time", "s"), h[sl]),
                "v": (("trajectory", "time", "s"), np.cos(h[sl]))},
               coords={"s": s, "time": t[0, :, 0]}).to_netcdf(
                   data / f"{split}.nc")
  small = ["--config", "custom"] + [
      arg for item in ("ardm.state_shape=(16, 2)", "ardm.network.width=8",
                       "ardm.network.num_blocks=1", "ardm.sampler.method=euler",
                       "ardm.sampler.num_steps=2", "controller.network.width=8",
                       "ardm_training.num_steps=2", "ardm_training.batch_size=2",
                       "controller_training.num_steps=2",
                       "controller_training.batch_size=2",
                       "controller_training.spinup=0",
                       "controller_training.window=1",
                       "controller_training.validate_every=0")
      for arg in ("--set", item)]
  ardm, ctrl = tmp_path / "a.npz", tmp_path / "c.npz"
  assert cli.main(["train-ardm", "--data", str(data), "--out", str(ardm)]
                  + small) == 0
  # Controller training reads the data as train-ardm does (pipeline.
  # load_split); a u = 0 controller keeps this test fast.
  from gencast_control.core.config import load_config
  from gencast_control.core.controller import init_controller, save_controller
  model = gc.load_model(ardm)
  config = load_config("custom", small[3::2]).controller
  save_controller(ctrl, init_controller(config, model, jax.random.PRNGKey(0)),
                  config, model, {"system": "custom"})
  truth = xr.open_dataset(data / "test.nc").isel(trajectory=0, drop=True)
  truth.isel(time=[0]).to_netcdf(tmp_path / "initial.nc")
  rows = [{"time": float(k), "s": 3.5, "variable": v,
           "value": float(truth[v].sel(time=k).interp(s=3.5)),
           "error_std": 0.1} for k in range(1, 6) for v in ("h", "v")]
  pd.DataFrame(rows).to_csv(tmp_path / "obs.csv", index=False)
  assert cli.main(["assimilate", "--ardm", str(ardm), "--controller",
                   str(ctrl), "--observations", str(tmp_path / "obs.csv"),
                   "--initial", str(tmp_path / "initial.nc"), "--members",
                   "2", "--out", str(tmp_path / "out")] + small) == 0
  analysis = xr.open_dataset(tmp_path / "out" / "analysis.nc")
  assert set(analysis.data_vars) == {"h", "v"}
  assert analysis["h"].dims == ("sample", "time", "s")


@pytest.fixture(scope="module")
def probe_files(case, tmp_path_factory):
  """Files of the held-out probe's classes (benchmarks/bad_input_probe.py)."""
  root = tmp_path_factory.mktemp("probe")
  gridded = xr.open_dataset(case["root"] / "gridded.nc")
  gridded.drop_vars("time").to_netcdf(root / "no_time.nc")
  gridded.assign(u_error_std=xr.full_like(gridded["u"], -0.1)).to_netcdf(
      root / "negative_std.nc")
  (root / "obs.txt").write_text(
      (case["root"] / "stations.csv").read_text())
  return root


@pytest.mark.parametrize("extra, message", [
    (["--observations", "{P}/no_time.nc"], "`time` dim with a coordinate"),
    (["--observations", "{P}/negative_std.nc"], "u_error_std must be positive"),
    (["--observations", "{P}/obs.txt"], ".txt"),
    (["--observations", "{R}/stations.csv", "--error-std", "5"],
     "--error-std is for gridded observations"),
    (["--observations", "{R}/stations.csv", "--members", "0"],
     "--members must be >= 1"),
    (["--observations", "{R}/stations.csv", "--data", "{D}"],
     "give one of --initial, --restart and --data"),
    (["--observations", "{R}/stations.csv", "--set", "pde.model_dt=2.0"],
     "drop the override"),
])
def test_probe_classes_are_refused_in_one_line(case, probe_files, tmp_path,
                                               capsys, extra, message):
  fill = {"P": str(probe_files), "R": str(case["root"]), "D": case["D"]}
  argv = ["assimilate", "--ardm", case["A"], "--controller", case["C"],
          "--initial", str(case["root"] / "initial.nc"), "--out",
          str(tmp_path / "out")] + [a.format(**fill) for a in extra] + TINY_CLI
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and len(err.splitlines()) == 1, err


def test_api_probe_classes(case):
  model = gc.load_model(case["A"])
  grid = case["truth"].isel(time=[0])
  gridded = xr.open_dataset(case["root"] / "gridded.nc")
  with pytest.raises(ValueError, match="error_std must be a number"):
    gc.observations_from_dataset(gridded, model, grid, error_std="abc",
                                 variables=("u",), dt=1.0)
  with pytest.raises(ValueError, match="path must be a file path"):
    gc.write_analysis(grid, 3)
  with pytest.raises(ValueError, match="analysis must be an xarray Dataset"):
    gc.write_analysis("analysis.nc", grid)
  other = grid.assign_attrs(model_fingerprint="toy-0123")
  obs = gc.observations_from_dataset(gridded, model, grid, error_std=0.1,
                                     variables=("u",), dt=1.0)
  with pytest.raises(ValueError, match="written by another model"):
    gc.assimilate(model, None, obs, other, members=2)
