"""train-ardm for a GenCast config (adapters/gencast/training.py): DeepMind's
GenCast trained on one's own WeatherBench2-shaped store.

A tiny store with the Held-Suarez variable names (8 x 16 equiangular grid
without poles, 12-hourly, 7 days) and a tiny GenCast (mesh refined once,
latent 8, one layer). Checked: the statistics against numpy's formulas and
in DeepMind's file layout; train-ardm through the CLI writes a checkpoint
DeepMind's own code reads, resumes, refuses another run's work folder and an
existing output; --init fine-tunes a checkpoint (its parameters and
architecture); training lowers the loss of a fixed batch; the trained model
in the splits' standardised units (pipeline.load_gencast) steps, guided or
not, as GenCast in physical units, with the forcings of the splits' dates.

Most of XLA's optimisations are switched off for this module (on top of
conftest's -O0 back end; the module's cold run 72 s -> 59 s on the shared
2-core machine); the numbers compared are computed by the same kind of
programs on both sides. Runs share programs where they can: the --init run
(1 step, the first run's store and learning rate) compiles nothing new, and
the loss test reuses the resumed run instead of training its own model.

Runs where DeepMind's GenCast code is installed (graphcast 0.2 or
weathernext); skipped otherwise.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip(
    "gencast_control.adapters.gencast.predictor",
    reason="DeepMind's GenCast code is not installed (pip install"
    " 'gencast-control[gencast-next]' or '[gencast]'); the GenCast training"
    " tests need it", exc_type=ImportError)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import xarray as xr  # noqa: E402

from gencast_control import cli  # noqa: E402
from gencast_control.adapters.gencast import assets  # noqa: E402
from gencast_control.adapters.gencast import training  # noqa: E402
from gencast_control.adapters.gencast.ardm import GenCastARDM  # noqa: E402
from gencast_control.adapters.gencast.training_config import (  # noqa: E402
    companion_paths)
from gencast_control.adapters.gencast.upstream import upstream  # noqa: E402
from gencast_control.baselines.guidance import DPSOptions, dps_rule  # noqa: E402
from gencast_control.configs.gencast_assets import STATS_FILES  # noqa: E402
from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.core.observations import Preview  # noqa: E402
from gencast_control.core.standardised import StandardisedARDM  # noqa: E402
from gencast_control.data.era5_schema import (PROGRESS_FORCINGS,  # noqa: E402
                                              progress_forcings)
from gencast_control.systems import pipeline  # noqa: E402

pytestmark = pytest.mark.gencast

LEVELS = (250, 500, 850)
VARIABLES = ("surface_pressure", "temperature", "geopotential",
             "u_component_of_wind", "v_component_of_wind")
TRAIN_PERIOD = ("2000-01-01", "2000-01-03")  # split_days (3, 2, 2)
# A tiny GenCast on the 8 x 16 grid; the splits of 3 states (2 inputs + 1).
TINY = ["pde.simulation.split_days=(3.0, 2.0, 2.0)", "data.num_steps=2",
        "ardm.grid_shape=(8, 16)", "ardm.mesh_size=1", "ardm.latent_size=8",
        "ardm.num_layers=1", "ardm.num_heads=2", "ardm.attention_k_hop=2",
        "ardm.noise_frequencies=4", "ardm.noise_output_sizes=(8, 8)",
        "ardm.sampling_noise_levels=2", "ardm_training.batch_size=2",
        "ardm_training.learning_rate=1e-2", "ardm_training.log_every=1",
        "ardm_training.checkpoint_every=1"]


def sets(overrides):
  return [x for o in overrides for x in ("--set", o)]


def make_store(path, seed: int, days: int = 7) -> xr.Dataset:
  """A WeatherBench2-shaped zarr store (dims time, level, latitude,
  longitude; 12-hourly) of the Held-Suarez variables: smooth drifting waves
  on plausible climatologies plus noise, on the 8 x 16 equiangular grid
  without poles (latitudes -78.75 .. 78.75, longitudes 0 .. 337.5)."""
  rng = np.random.default_rng(seed)
  lat = -78.75 + 22.5 * np.arange(8)
  lon = 22.5 * np.arange(16)
  times = pd.date_range("2000-01-01", periods=2 * days, freq="12h").values
  t = 0.5 * np.arange(times.size)[:, None, None, None]  # days
  la = np.deg2rad(lat)[None, None, :, None]
  lo = np.deg2rad(lon)[None, None, None, :]
  lev = np.asarray(LEVELS, np.float64)[None, :, None, None]
  height = (1000 - lev) / 750

  def wave(amplitude, k, speed):
    return amplitude * np.cos(la) * np.sin(k * lo - speed * t
                                           + rng.uniform(0, 2 * np.pi))

  def noise(scale, shape=(times.size, 3, 8, 16)):
    return scale * rng.standard_normal(shape)

  fields = {
      "temperature": 300 - 60 * height - 30 * np.sin(la)**2
                     + wave(3, 2, 0.8) + noise(0.5),
      "geopotential": 9.81 * (12000 - 11 * lev) * (1 + 0.01 * np.cos(la))
                      + wave(300, 3, 0.6) + noise(20),
      "u_component_of_wind": 30 * np.cos(la)**2 * height + wave(5, 2, 1.0)
                             + noise(1),
      "v_component_of_wind": wave(4, 3, 1.2) + noise(1),
  }
  dims = ("time", "level", "latitude", "longitude")
  data = {name: (dims, value.astype(np.float32))
          for name, value in fields.items()}
  data["surface_pressure"] = (
      dims[:1] + dims[2:], (1e5 + wave(800, 2, 0.7)[:, 0]
                            + noise(50, (times.size, 8, 16))
                            ).astype(np.float32))
  ds = xr.Dataset(data, coords={"time": times,
                                "level": np.asarray(LEVELS, np.int64),
                                "latitude": lat, "longitude": lon})
  ds.to_zarr(path, mode="w", consolidated=True, zarr_format=2)
  return ds


@pytest.fixture(scope="module", autouse=True)
def quick_compiles():
  """XLA without most optimisations: GenCast's programs compile faster."""
  before = jax.config.values["jax_disable_most_optimizations"]
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
  root = tmp_path_factory.mktemp("gencast_stores")
  return {seed: (root / f"store{seed}.zarr",
                 make_store(root / f"store{seed}.zarr", seed))
          for seed in (0, 1)}


@pytest.fixture(scope="module")
def data(stores, tmp_path_factory):
  """`simulate` on store 0: the standardised train/validation/test splits."""
  out = tmp_path_factory.mktemp("gencast_splits")
  assert cli.main(["simulate", "--config", "heldsuarez_gencast", "--out",
                   str(out), "--set", f"pde.store={stores[0][0]}"]
                  + sets(TINY)) == 0
  return out


def train_args(store, data, out, steps, *extra):
  return (["train-ardm", "--config", "heldsuarez_gencast", "--data",
           str(data), "--out", str(out)]
          + sets(TINY + [f"pde.store={store}",
                         f"ardm_training.num_steps={steps}"]) + list(extra))


def read_log(out):
  path = out.with_suffix(".work") / "log.jsonl"
  return [r for r in map(json.loads, path.read_text().splitlines())
          if "loss" in r]


def read_checkpoint(path):
  gc = upstream()
  with open(path, "rb") as f:
    return gc.checkpoint.load(f, gc.gencast.CheckPoint)


def flat_params(params):
  return {f"{m}/{n}": np.asarray(v) for m, p in params.items()
          for n, v in p.items()}


@pytest.fixture(scope="module")
def trained(stores, data, tmp_path_factory):
  """`train-ardm` for 2 steps on store 0: OUT, its companions and log."""
  out = tmp_path_factory.mktemp("gencast_run") / "gencast.npz"
  assert cli.main(train_args(stores[0][0], data, out, 2)) == 0
  return out


def copy_run(out, directory):
  """OUT with its companions and work folder, copied into `directory`."""
  stats, example = companion_paths(out)
  copy = directory / out.name
  shutil.copy(out, copy)
  shutil.copy(example, companion_paths(copy)[1])
  shutil.copytree(stats, companion_paths(copy)[0])
  shutil.copytree(out.with_suffix(".work"), copy.with_suffix(".work"))
  return copy


# --- 1. statistics -----------------------------------------------------------------

def test_compute_stats_are_numpys_formulas_in_deepminds_files(stores,
                                                              tmp_path):
  _, store = stores[0]
  stats = training.compute_stats(store, VARIABLES, LEVELS, TRAIN_PERIOD)
  times = store["time"].values
  inside = times < np.datetime64("2000-01-04")
  assert inside.sum() == 6
  for name in VARIABLES:
    values = store[name].values[inside].astype(np.float64)
    axes = (0, 2, 3) if values.ndim == 4 else (0, 1, 2)
    expected = {"mean_by_level": values.mean(axes),
                "stddev_by_level": values.std(axes),
                "diffs_stddev_by_level": np.diff(values, axis=0).std(axes),
                "min_by_level": values.min(axes)}
    for which, value in expected.items():
      got = getattr(stats, which)[name]
      assert got.dims == (("level",) if values.ndim == 4 else ()), which
      assert got.dtype == np.float32
      np.testing.assert_allclose(got.values, value, rtol=1e-6,
                                 err_msg=f"{which} {name}")
  forcings = progress_forcings(times[inside], store["longitude"].values)
  for name in PROGRESS_FORCINGS:
    for which in ("mean_by_level", "stddev_by_level",
                  "diffs_stddev_by_level"):
      expected = (forcings[name].mean() if which == "mean_by_level"
                  else forcings[name].std())
      np.testing.assert_allclose(float(getattr(stats, which)[name]),
                                 expected, rtol=1e-5, atol=1e-6,
                                 err_msg=f"{which} {name}")
    assert name not in stats.min_by_level
  for which in STATS_FILES:  # DeepMind's layout: only the level coordinate
    assert list(getattr(stats, which).coords) == ["level"]
    np.testing.assert_array_equal(getattr(stats, which)["level"], LEVELS)
  stats.check_covers(training.task_config(
      load_config("heldsuarez_gencast", TINY).ardm))
  # 24 h steps: the statistics of every other state.
  daily = training.compute_stats(store, ["temperature"], [500],
                                 TRAIN_PERIOD, step_hours=24)
  values = store["temperature"].sel(level=500).values[inside][::2]
  np.testing.assert_allclose(
      daily.diffs_stddev_by_level["temperature"].values,
      [np.diff(values.astype(np.float64), axis=0).std()], rtol=1e-6)
  with pytest.raises(ValueError, match="at least 2"):
    training.compute_stats(store, VARIABLES, LEVELS,
                           ("2000-01-01T00", "2000-01-01T06"))

  directory = training.write_stats(stats, tmp_path / "stats")
  assert sorted(p.name for p in directory.iterdir()) == sorted(
      f"{name}.nc" for name in STATS_FILES)
  loaded = assets.load_stats(directory)
  for which in STATS_FILES:
    xr.testing.assert_identical(getattr(loaded, which),
                                getattr(stats, which))


def test_architecture_config_refuses_what_deepminds_checkpoint_cannot_hold():
  from gencast_control.adapters.gencast.training_config import (
      GenCastArchitectureConfig)
  for sizes in ((8,), (8, 8, 8), (8, 0)):
    with pytest.raises(ValueError, match="noise_output_sizes must be two"):
      GenCastArchitectureConfig(noise_output_sizes=sizes)
  with pytest.raises(ValueError, match="multiple of num_heads"):
    GenCastArchitectureConfig(latent_size=10, num_heads=4)


# --- 2. train-ardm through the CLI ---------------------------------------------------

def test_train_ardm_writes_deepminds_checkpoint_stats_and_example(trained):
  gc = upstream()
  checkpoint = read_checkpoint(trained)  # DeepMind's own reader
  assert isinstance(checkpoint, gc.gencast.CheckPoint)
  assert checkpoint.denoiser_architecture_config.latent_size == 8
  assert checkpoint.denoiser_architecture_config.mesh_size == 1
  assert tuple(checkpoint.task_config.pressure_levels) == LEVELS
  assert set(checkpoint.task_config.target_variables) == set(VARIABLES)
  assert set(checkpoint.task_config.forcing_variables) == set(
      PROGRESS_FORCINGS)
  assert "heldsuarez_gencast, 2 steps" in checkpoint.description
  params = flat_params(checkpoint.params)
  assert params and all(np.isfinite(v).all() for v in params.values())

  stats_dir, example_path = companion_paths(trained)
  assert sorted(p.name for p in stats_dir.iterdir()) == sorted(
      f"{name}.nc" for name in STATS_FILES)
  assets.load_stats(stats_dir).check_covers(checkpoint.task_config)
  example = xr.load_dataset(example_path)
  assert example.sizes["time"] == 3 and example.sizes["batch"] == 1
  assert (example.sizes["lat"], example.sizes["lon"]) == (8, 16)
  assert set(VARIABLES) <= set(example.data_vars)
  np.testing.assert_array_equal(
      example["datetime"].values[0],
      np.asarray(["2000-01-01T00", "2000-01-01T12", "2000-01-02T00"],
                 "datetime64[ns]"))

  log = read_log(trained)
  assert [r["step"] for r in log] == [1, 2]
  for record in log:
    assert np.isfinite(record["loss"]) and record["loss"] > 0
    assert all(np.isfinite(record[f"loss {name}"]) for name in VARIABLES)


@pytest.fixture(scope="module")
def resumed(trained, stores, data, tmp_path_factory):
  """A copy of the 2-step run, rerun with num_steps=22: (OUT, log before,
  log after)."""
  out = copy_run(trained, tmp_path_factory.mktemp("gencast_resumed"))
  before = read_log(out)
  assert cli.main(train_args(stores[0][0], data, out, 22,
                             "--overwrite")) == 0
  return out, before, read_log(out)


def test_train_ardm_resumes_its_work_folder(resumed):
  out, before, after = resumed
  assert [r["step"] for r in after] == list(range(1, 23))
  assert after[:2] == before  # steps 1, 2 are the first session's
  assert np.isfinite([r["loss"] for r in after]).all()
  assert "22 steps" in read_checkpoint(out).description


def test_train_ardm_refuses_outputs_and_other_runs(trained, stores, data,
                                                   tmp_path, capsys):
  out = copy_run(trained, tmp_path)
  before = out.read_bytes()
  capsys.readouterr()
  # A finished run's checkpoint is not replaced without --overwrite.
  assert cli.main(train_args(stores[0][0], data, out, 3)) == 2
  assert "--overwrite" in capsys.readouterr().err
  assert out.read_bytes() == before
  # Another store (other statistics): its work folder is another run's.
  assert cli.main(train_args(stores[1][0], data, out, 3,
                             "--overwrite")) == 2
  assert "belongs to another run" in capsys.readouterr().err
  assert out.read_bytes() == before
  assert [r["step"] for r in read_log(out)] == [1, 2]


# --- 3. --init fine-tunes ------------------------------------------------------------

def test_init_fine_tunes_the_checkpoint_with_its_architecture(
    trained, stores, data, tmp_path):
  out = tmp_path / "fine_tuned.npz"
  # The config's architecture (latent 16) gives way to the checkpoint's (8).
  # One step: the warm-up starts the learning rate at 0, so the parameters
  # stay exactly the checkpoint's.
  assert cli.main(train_args(stores[0][0], data, out, 1, "--init",
                             str(trained), "--set",
                             "ardm.latent_size=16")) == 0
  start, tuned = read_checkpoint(trained), read_checkpoint(out)
  assert tuned.denoiser_architecture_config.latent_size == 8
  assert tuned.task_config == start.task_config
  assert "fine-tuned by gencast-control" in tuned.description
  before, after = flat_params(start.params), flat_params(tuned.params)
  assert sorted(before) == sorted(after)
  for name, value in before.items():
    np.testing.assert_array_equal(after[name], value, err_msg=name)
  # The first step's batch and noise are the first run's (same seed and
  # example times); its loss differs as the parameters do (the
  # checkpoint's, not the first run's fresh init).
  log = read_log(out)
  assert [r["step"] for r in log] == [1]
  assert np.isfinite(log[0]["loss"])
  assert log[0]["loss"] != read_log(trained)[0]["loss"]


# --- 4. training lowers the loss ------------------------------------------------------

def test_training_lowers_the_loss(trained, resumed, stores):
  """The 20 more steps of the resumed run (batches of 2 of the 4 training
  examples) lower GenCast's loss of a fixed batch of them (the store's first
  two), averaged over 16 fixed draws of the noise level and noise (in a
  measured run 7.0 -> 5.2)."""
  _, store = stores[0]
  model = training.load_trained(trained).model
  times = store["time"].values[1:3]
  batch = training.reader(store, model.task_config)(times)
  arrays = training.batch_arrays(batch)
  templates = training.batch_templates(batch)
  transformed = training.loss_transform(model, {})
  unwrap = upstream().xarray_jax.unwrap_data

  @jax.jit
  def loss(params, key):
    value, _ = transformed.apply(params, key,
                                 *training.batch_datasets(arrays, templates))
    return jnp.mean(unwrap(value))

  def mean_loss(path):
    params = read_checkpoint(path).params
    return np.mean([float(loss(params, jax.random.PRNGKey(100 + i)))
                    for i in range(16)])

  before, after = mean_loss(trained), mean_loss(resumed[0])
  assert after < 0.85 * before, (before, after)


# --- 5. the trained GenCast in the splits' units ---------------------------------------

@pytest.fixture(scope="module")
def standardised(trained, data):
  config = load_config("heldsuarez_gencast", TINY)
  ardm, *_ = pipeline.load_checkpoints(config, trained, data_dir=data)
  return config, ardm


def test_load_trained_needs_its_companions(trained, tmp_path):
  ardm = training.load_trained(trained, sampling_noise_levels=2)
  assert isinstance(ardm, GenCastARDM)
  assert ardm.state_shape == (8, 16, 13)
  assert ardm.model.sampler_config.num_noise_levels == 2
  alone = tmp_path / trained.name
  shutil.copy(trained, alone)
  with pytest.raises(FileNotFoundError, match="statistics and example"):
    training.load_trained(alone)


def test_split_context_is_the_forcings_of_the_splits_dates(standardised,
                                                            stores, data):
  _, ardm = standardised
  _, store = stores[0]
  context = pipeline.split_context(ardm, data, "train")
  assert sorted(context) == sorted(PROGRESS_FORCINGS)
  # The train split: 2 trajectories of 3 states, the store's first 6 times.
  dates = store["time"].values[:6].reshape(2, 3)
  expected = progress_forcings(dates, store["longitude"].values)
  for name in PROGRESS_FORCINGS:
    assert context[name].shape == expected[name].shape, name
    np.testing.assert_allclose(context[name], expected[name], atol=1e-6,
                               err_msg=name)


def test_standardised_gencast_steps_as_gencast_in_physical_units(
    standardised, stores, data):
  """The StandardisedARDM of load_gencast on the train split's standardised
  states is the inner GenCast on the store's physical states (read through
  DeepMind's batch layout), standardised: unguided with u = 0, and guided
  by DPS toward observations given in each one's units."""
  config, ardm = standardised
  assert isinstance(ardm, StandardisedARDM)
  inner = ardm.inner
  assert isinstance(inner, GenCastARDM)
  assert tuple(ardm.layout.variables) == config.ardm.channels
  assert inner.model.sampler_config.num_noise_levels == 2
  states = pipeline.load_split(config, data, "train", ardm.layout)
  assert states.shape == (2, 3, 8, 16, 13)
  context = pipeline.split_context(ardm, data, "train")
  context0 = {name: value[0] for name, value in context.items()}

  # The first trajectory from the store, as GenCast reads it (physical).
  store = stores[0][1]
  batch = training.reader(store, inner.model.task_config)(
      store["time"].values[1:2])
  physical, physical_context = inner.trajectories(*batch)
  np.testing.assert_allclose(ardm.to_standardised(physical[0]), states[0],
                             atol=1e-4)
  for name in PROGRESS_FORCINGS:
    np.testing.assert_allclose(physical_context[name][0], context0[name],
                               atol=1e-6, err_msg=name)
  physical_context0 = {k: v[0] for k, v in physical_context.items()}

  # Observations of the third state at ~30 % of the entries, error std 0.5
  # (standardised) per channel.
  rng = np.random.default_rng(0)
  mask = (rng.uniform(size=states.shape[2:]) < 0.3).astype(np.float32)
  y = mask * states[0, 2]
  noise = np.full(13, 0.5, np.float32)
  rules = {"standardised": dps_rule(DPSOptions(), jnp.asarray(y), mask,
                                    noise, None),
           "physical": dps_rule(DPSOptions(),
                                jnp.asarray(mask * ardm.to_physical(y)),
                                mask, noise * ardm.std, None)}

  key = jax.random.PRNGKey(7)

  @jax.jit
  def steps(history_std, history_phys):
    out = {}
    for guided in (False, True):
      x, _ = ardm.step(history_std, key, context=context0,
                       guidance=rules["standardised"] if guided else None)
      s, _ = inner.step(history_phys, key, context=physical_context0,
                        guidance=rules["physical"] if guided else None)
      out[guided] = (x, s)
    return out

  out = jax.device_get(steps(jnp.asarray(states[0, :2]),
                             jnp.asarray(physical[0, :2])))
  for guided, (x, s) in out.items():
    assert np.isfinite(x).all() and np.isfinite(s).all()
    np.testing.assert_allclose(x, ardm.to_standardised(s), atol=2e-4,
                               err_msg=f"guided={guided}")
  # Guidance acted: the guided state is nearer the observations.
  misfit = {g: np.sqrt(np.sum(mask * (x - y)**2) / mask.sum())
            for g, (x, _) in out.items()}
  assert misfit[True] < misfit[False], misfit


def test_previews_go_to_physical_units(standardised):
  _, ardm = standardised
  rng = np.random.default_rng(1)
  shape = (1,) + ardm.state_shape
  values = rng.normal(size=shape).astype(np.float32)
  mask = (rng.uniform(size=shape) < 0.5).astype(np.float32)
  preview = Preview(values=values * mask, mask=mask, offsets=np.ones(1),
                    error_std=0.3 * mask)
  physical = ardm._preview(preview)  # pylint: disable=protected-access
  np.testing.assert_allclose(physical.values,
                             mask * (ardm.mean + ardm.std * values),
                             rtol=1e-6)
  np.testing.assert_allclose(physical.error_std, 0.3 * mask * ardm.std,
                             rtol=1e-6)
  assert ardm._preview(None) is None  # pylint: disable=protected-access
