"""Inputs by name and coordinate, never by position (issue 26): the grid ARDM
checkpoint records its variables, grid and model_dt; the initial state, the
observations and the training splits are aligned to them or refused, and
time axes with gaps or repeats are refused naming the file.

A custom system with two variables (h, v) on a periodic dim `s`, states 0.5
apart, trained for two steps by the CLI; its controller has random (nonzero)
weights, so the analysis depends on where every observation lands."""

import json

import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import gencast_control as gc
from gencast_control import api, cli
from gencast_control.adapters.grid import load_grid_ardm, save_grid_ardm
from gencast_control.core import config as config_lib
from gencast_control.core.checkpoint import CheckpointError
from gencast_control.core.controller import init_controller, save_controller
from gencast_control.systems import pipeline
from gencast_control.systems.registry import get_system

DT = 0.5
S = np.arange(16.0)
SMALL = ["--config", "custom"] + [
    arg for item in ("ardm.state_shape=(16, 2)", "ardm.network.width=8",
                     "ardm.network.num_blocks=1", "ardm.sampler.method=euler",
                     "ardm.sampler.num_steps=2", "controller.network.width=8",
                     "controller.horizon=2",
                     "ardm_training.num_steps=2", "ardm_training.batch_size=2")
    for arg in ("--set", item)]


def _splits(num_times=20, dt=DT, times=None):
  """{split: Dataset} of h, v (trajectory, time, s)."""
  rng = np.random.default_rng(0)
  t = np.arange(num_times) * dt if times is None else np.asarray(times)
  phase = rng.uniform(0, 2 * np.pi, (4, 1, 1))
  h = np.sin(2 * np.pi * S / 16 + 0.6 * t[None, :, None] + phase)
  v = np.cos(3 * h) + 0.1 * S / 16
  out = {}
  for split, sl in (("train", slice(0, 2)), ("validation", slice(2, 3)),
                    ("test", slice(3, 4))):
    out[split] = xr.Dataset({"h": (("trajectory", "time", "s"), h[sl]),
                             "v": (("trajectory", "time", "s"), v[sl])},
                            coords={"s": S, "time": t})
  return out


def _write(splits, folder):
  folder.mkdir(parents=True, exist_ok=True)
  for split, ds in splits.items():
    ds.to_netcdf(folder / f"{split}.nc")
  return folder


def _config(*extra):
  return config_lib.load_config("custom", SMALL[3::2] + list(extra))


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
  root = tmp_path_factory.mktemp("alignment")
  data = _write(_splits(), root / "data")
  ardm, ctrl = root / "a.npz", root / "c.npz"
  assert cli.main(["train-ardm", "--data", str(data), "--out", str(ardm),
                   "--set", f"pde.model_dt={DT}"] + SMALL) == 0
  model = gc.load_model(ardm)
  config = _config().controller
  params = init_controller(config, model, jax.random.PRNGKey(0))
  noise = jax.random.split(jax.random.PRNGKey(1),
                           len(jax.tree.leaves(params)))
  leaves, tree = jax.tree.flatten(params)
  params = jax.tree.unflatten(tree, [
      x + 0.3 * jax.random.normal(k, x.shape)
      for x, k in zip(leaves, noise)])
  save_controller(ctrl, params, config, model, {"system": "custom"})
  truth = xr.open_dataset(data / "test.nc").isel(trajectory=0,
                                                 drop=True).load()
  return {"root": root, "data": data, "ardm": ardm, "ctrl": ctrl,
          "model": model, "controller": gc.load_controller(ctrl, model),
          "truth": truth, "initial": truth.isel(time=[0])}


def test_the_checkpoint_records_variables_grid_and_model_dt(custom,
                                                            tmp_path):
  layout = custom["model"].layout
  assert layout.variables == ("h", "v") and layout.dims == ("s",)
  np.testing.assert_array_equal(layout.coords[0], S)
  assert layout.timestep == DT and layout.periodic == (True,)
  assert not layout.sphere
  # A checkpoint from before (no "state"): no layout, today's behaviour;
  # the same fingerprint, so controllers trained for it still load.
  ardm, meta = load_grid_ardm(custom["ardm"])
  old = tmp_path / "old.npz"
  save_grid_ardm(old, ardm.with_layout(None), {"system": "custom"})
  before = gc.load_model(old)
  assert before.layout is None and before.fingerprint == ardm.fingerprint
  gc.load_controller(custom["ctrl"], before)
  with pytest.raises(ValueError, match="time step is not recorded"):
    api.model_layout(before, custom["initial"])
  # A recorded layout that does not fit the model is a corrupt checkpoint.
  bad = dict(meta["state"], coords={"s": list(range(15))})
  ardm_meta = {k: v for k, v in meta.items() if k != "state"}
  save_grid_ardm(tmp_path / "bad.npz", ardm, ardm_meta)
  arrays = dict(np.load(tmp_path / "bad.npz"))
  arrays["__metadata__"] = np.frombuffer(json.dumps(
      dict(json.loads(arrays["__metadata__"].tobytes()), state=bad)).encode(),
      np.uint8)
  np.savez(tmp_path / "bad.npz", **arrays)
  with pytest.raises(CheckpointError, match="invalid state layout"):
    load_grid_ardm(tmp_path / "bad.npz")


def _points(truth, times):
  return pd.DataFrame([
      {"time": float(t), "s": s, "variable": v,
       "value": float(truth[v].sel(time=t, s=s)), "error_std": 0.1}
      for t in times for s in S[::3] for v in ("h", "v")])


def test_permuted_initial_variables_and_the_checkpoints_dt_in_the_cli(
    custom, tmp_path):
  """BAD before: an initial state with its variables in another order
  swapped the channels, and `assimilate` stepped by the config's model_dt
  (1.0 here) instead of the checkpoint's (0.5)."""
  truth = custom["truth"]
  _points(truth, truth["time"].values[1:6]).to_csv(tmp_path / "obs.csv",
                                                   index=False)
  initial = custom["initial"]
  initial.to_netcdf(tmp_path / "hv.nc")
  xr.Dataset({"v": initial["v"], "h": initial["h"]}).isel(
      s=slice(None, None, -1)).to_netcdf(tmp_path / "vh.nc")
  assert list(xr.open_dataset(tmp_path / "vh.nc").data_vars) == ["v", "h"]
  runs = {}
  for name in ("hv", "vh"):
    assert cli.main(["assimilate", "--ardm", str(custom["ardm"]),
                     "--controller", str(custom["ctrl"]), "--observations",
                     str(tmp_path / "obs.csv"), "--initial",
                     str(tmp_path / f"{name}.nc"), "--members", "2", "--out",
                     str(tmp_path / name)] + SMALL) == 0
    runs[name] = xr.open_dataset(tmp_path / name / "analysis.nc").load()
  xr.testing.assert_identical(runs["hv"], runs["vh"])
  np.testing.assert_allclose(runs["hv"]["time"], np.arange(6) * DT)
  np.testing.assert_array_equal(runs["hv"]["s"], S)
  assert list(runs["hv"].data_vars) == ["h", "v"]
  # Swapping the data between the names does change the analysis: the
  # equality above is alignment, not indifference.
  swapped = initial.assign(h=initial["v"], v=initial["h"])
  obs = gc.observations_from_points(tmp_path / "obs.csv", custom["model"],
                                    swapped)
  other = gc.assimilate(custom["model"], custom["controller"], obs, swapped,
                        members=2)
  assert not np.allclose(other["h"].values, runs["hv"]["h"].values)


def test_api_variables_and_dt_are_checked_against_the_checkpoint(custom):
  initial = custom["initial"]
  with pytest.raises(ValueError, match=r"variables \['v', 'h'\] are not"
                     r" the model's \['h', 'v'\]"):
    api.model_layout(custom["model"], initial, ("v", "h"))
  with pytest.raises(ValueError, match="dt = 1.0 differs from the model's"):
    api.model_layout(custom["model"], initial, dt=1.0)
  assert api.model_layout(custom["model"], initial, ("h", "v"),
                          DT) is custom["model"].layout


def test_commands_that_use_the_configs_step_refuse_another(custom, tmp_path,
                                                           capsys):
  """evaluate, demo and train-controller read or simulate truths at the
  config's step: a checkpoint trained at another is refused, naming both;
  so is training on data whose step is not the config's."""
  with pytest.raises(CheckpointError, match=r"pde.model_dt=1 but .*a.npz"
                     r" was trained with model_dt 0.5"):
    pipeline.load_checkpoints(_config(), custom["ardm"])
  pipeline.load_checkpoints(_config(f"pde.model_dt={DT}"), custom["ardm"])
  assert cli.main(["train-ardm", "--data", str(custom["data"]), "--out",
                   str(tmp_path / "a.npz")] + SMALL) == 2
  err = capsys.readouterr().err
  assert "train.nc: its states are 0.5 apart but the config's pde.model_dt"\
      " is 1" in err and "--set pde.model_dt=0.5" in err


def _assimilate_grid(custom, obs, initial=None):
  initial = custom["initial"] if initial is None else initial
  stream = gc.observations_from_dataset(obs, custom["model"], initial,
                                        error_std=0.1)
  return stream, gc.assimilate(custom["model"], custom["controller"], stream,
                               initial, members=2)


def test_gridded_observations_are_aligned_by_coordinate(custom):
  """BAD before: a coordinate running the other way landed the values in
  the wrong place and labelled the analysis with the file's coordinates."""
  truth = custom["truth"].isel(time=slice(0, 6))
  mask = np.random.default_rng(1).random(truth["h"].shape) < 0.4
  obs = truth.where(xr.DataArray(mask, dims=truth["h"].dims))
  stream, analysis = _assimilate_grid(custom, obs)
  reversed_obs = obs.isel(s=slice(None, None, -1))[["v", "h"]]
  reversed_initial = custom["initial"].isel(s=slice(None, None, -1))
  stream_r, analysis_r = _assimilate_grid(custom, reversed_obs,
                                          reversed_initial)
  np.testing.assert_array_equal(stream.stream.values, stream_r.stream.values)
  xr.testing.assert_identical(analysis, analysis_r)
  np.testing.assert_array_equal(analysis_r["s"], S)
  # the same values flipped by position (coordinates kept) differ
  flipped = obs.copy(data={v: obs[v].values[..., ::-1] for v in obs})
  assert not np.allclose(_assimilate_grid(custom, flipped)[1]["h"].values,
                         analysis["h"].values)
  # another grid is refused, naming the dim
  with pytest.raises(ValueError, match="'s' coordinate .* is not the"
                     " model's"):
    _assimilate_grid(custom, obs.assign_coords(s=S + 0.5))
  with pytest.raises(ValueError, match="'s' coordinate"):
    _assimilate_grid(custom, obs.isel(s=slice(0, 8)))
  with pytest.raises(ValueError, match="'s' coordinate"):
    _assimilate_grid(custom, obs, custom["initial"].assign_coords(s=S * 2))


@pytest.mark.parametrize("times, message", [
    (np.r_[0.0, 0.5, 1.0, 2.0, 2.5, 3.0],
     "train.nc: the time coordinate has a gap: the step from 1 to 2 is 1,"
     " the first step 0.5"),
    (np.r_[0.0, 0.5, 1.0, 1.0, 1.5, 2.0], "train.nc: the time coordinate is"
     " not strictly increasing: time[2] = 1.0 is followed by time[3] = 1.0"
     " (a repeated time)"),
    (np.r_[0.0, 0.5, 1.5, 1.0, 2.0, 2.5], "train.nc: the time coordinate is"
     " not strictly increasing: time[2] = 1.5 is followed by time[3] = 1.0"),
])
def test_training_splits_with_gaps_or_repeats_are_refused(tmp_path, capsys,
                                                          times, message):
  """BAD before: training data with gaps in time were learnt as if the
  steps were regular."""
  data = _write(_splits(times=times), tmp_path / "data")
  assert cli.main(["train-ardm", "--data", str(data), "--out",
                   str(tmp_path / "a.npz"), "--set", f"pde.model_dt={DT}"]
                  + SMALL) == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "a.npz").exists()


def test_splits_are_read_by_name_and_coordinate(custom, tmp_path):
  """train-controller and the evaluation read splits through the model's
  layout: variables in another order and a reversed coordinate give the
  same states; another grid or step is refused naming the file."""
  config = _config(f"pde.model_dt={DT}")
  layout = custom["model"].layout
  reference = pipeline.load_split(config, custom["data"], "validation",
                                  layout)
  splits = _splits()
  shuffled = {k: ds[["v", "h"]].isel(s=slice(None, None, -1))
              for k, ds in splits.items()}
  folder = _write(shuffled, tmp_path / "shuffled")
  np.testing.assert_array_equal(
      pipeline.load_split(config, folder, "validation", layout), reference)
  # without a model's layout (a checkpoint from before, or train-ardm) the
  # variables are the config's or the data's, in their order; the grid is
  # still read in ascending order
  folder = _write({k: ds.isel(s=slice(None, None, -1))
                   for k, ds in splits.items()}, tmp_path / "reversed")
  np.testing.assert_array_equal(
      pipeline.load_split(config, folder, "validation"), reference)
  folder = _write({k: ds.assign_coords(s=S + 1) for k, ds in splits.items()},
                  tmp_path / "shifted")
  with pytest.raises(ValueError, match="validation.nc: the 's' coordinate"):
    pipeline.load_split(config, folder, "validation", layout)
  folder = _write(_splits(dt=1.0), tmp_path / "coarse")
  with pytest.raises(ValueError, match="validation.nc: its states are 1"
                     " apart but the ARDM steps 0.5"):
    pipeline.load_split(config, folder, "validation", layout)
  gap = {k: ds.isel(time=[0, 1, 2, 4, 5]) for k, ds in splits.items()}
  folder = _write(gap, tmp_path / "gap")
  with pytest.raises(ValueError, match="validation.nc: the time coordinate"
                     " has a gap"):
    pipeline.load_split(config, folder, "validation", layout)


def test_a_latitude_longitude_grid_is_a_sphere():
  config = config_lib.load_config("custom", [
      "ardm.state_shape=(3, 4, 1)", "ardm.periodic=(False, True)"])
  ds = xr.Dataset(
      {"t2m": (("trajectory", "time", "lat", "lon"), np.zeros((1, 2, 3, 4)))},
      coords={"time": [0.0, 1.0], "lat": [60.0, 0.0, -60.0],
              "lon": [0.0, 90.0, 180.0, 270.0]})
  layout = pipeline.data_layout(config, ds, "t.nc")
  assert layout.sphere and layout.dims == ("lat", "lon")
  np.testing.assert_array_equal(layout.coords[0], [-60.0, 0.0, 60.0])
  flat = pipeline.data_layout(config, ds.rename(lat="y", lon="x"), "t.nc")
  assert not flat.sphere


def test_dated_data_and_data_without_a_grid(custom):
  """Dates record a timedelta step (the config's number is model time and
  is not compared with it); data without spatial coordinates record no
  layout (the grid then comes from the initial state, as before)."""
  from gencast_control.adapters.grid import layout_from_dict, layout_to_dict
  config = _config()
  ds = _splits()["train"]
  dated = ds.assign_coords(time=np.datetime64("2020-01-01")
                           + np.arange(ds.sizes["time"])
                           * np.timedelta64(6, "h"))
  layout = pipeline.data_layout(config, dated, "dated.nc")
  assert layout.timestep == np.timedelta64(6, "h")
  state = json.loads(json.dumps(layout_to_dict(layout)))
  assert state["model_dt"] == "0 days 06:00:00"
  again = layout_from_dict(state, config.ardm)
  assert again.timestep == layout.timestep and again.variables == ("h", "v")
  gap = dated.isel(time=[0, 1, 3, 4])
  with pytest.raises(ValueError, match="dated.nc: the time coordinate has a"
                     " gap: the step from 2020-01-01T06:00:00 to"
                     " 2020-01-01T18:00:00 is 0 days 12:00:00"):
    pipeline.data_layout(config, gap, "dated.nc")
  assert pipeline.data_layout(_config(f"pde.model_dt={DT}"),
                              ds.drop_vars("s"), "bare.nc") is None


@pytest.mark.parametrize("name", ["ks", "kolmogorov"])
def test_shipped_checkpoints_record_their_systems_grid(name):
  """The shipped ARDMs carry the layout train-ardm reads off their system's
  data; parameters, config and fingerprint are those the shipped
  controllers were trained against."""
  config = config_lib.load_config(name, [])
  model = gc.load_model(name)
  gc.load_controller(name, model)  # checks the ARDM's fingerprint
  system = get_system(config.system)
  data = system.generate(jax.random.PRNGKey(0), 1, 1, config.pde,
                         burn_in_steps=0)
  expected = pipeline.data_layout(config, data, name)
  layout = model.layout
  assert layout.variables == system.variables == expected.variables
  assert layout.dims == system.spatial_dims == expected.dims
  for ours, theirs in zip(layout.coords, expected.coords):
    np.testing.assert_array_equal(ours, theirs)
  assert layout.timestep == config.pde.model_dt == expected.timestep
  assert layout.periodic == config.ardm.periodic
  pipeline.load_checkpoints(config, pipeline.shipped_checkpoints(name)[0])
