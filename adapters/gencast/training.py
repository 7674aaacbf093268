"""Training GenCast (DeepMind's architecture and loss) on one's own store.

    gencast-control train-ardm --config heldsuarez_gencast --data DIR \
        --out runs/hsgc/gencast.npz [--init DEEPMIND_CHECKPOINT.npz]

The loss is GenCast's (Price et al. 2024, "Probabilistic weather forecasting
with machine learning", Nature, Methods "Training"), composed from DeepMind's
own parts because `gencast.GenCast.loss` hard-codes weights for ERA5's
surface variables: with x the target's 12 h residual normalised by
diffs_stddev_by_level (normalization.InputsAndResiduals),

    sigma = rho_inverse_cdf(U(0, 1))   on [sigma_min, sigma_max], rho = 7,
    eps   = spherical white noise      (samplers_utils.spherical_white_noise_like),
    L     = lambda(sigma) sum_v w_v mean_{b?,lat,lon,level} a_lat a_level
                                     (D(x + sigma eps; sigma) - x)^2,
    lambda(sigma) = c_out(sigma)^-2 = (sigma^2 + 1) / sigma^2,

with D GenCast's preconditioned denoiser, a_lat, a_level the latitude and
level weights of losses.weighted_mse_per_level and w_v the config's
per-variable weights (default 1). Training runs through the project's loop
(training_loop.train: resumable, run identity, divergence guards), examples
streamed from the zarr store (data.example_stream.ExampleStream).

Outputs, in DeepMind's formats, so that DeepMind's own code reads them:

    OUT                  checkpoint.dump of a gencast.CheckPoint
    OUT.stats/           the four normalisation statistics (NetCDF), computed
                         from the training period (`compute_stats`)
    OUT.example.nc       one example (2 inputs + 1 target) in the layout of
                         DeepMind's example datasets, for gc.load_model(...,
                         example=)
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.adapters.gencast import tiny
from gencast_control.adapters.gencast.assets import (GenCastModel,
                                                     NormalizationStats,
                                                     attention_type_for_backend,
                                                     load_checkpoint)
from gencast_control.adapters.gencast.predictor import wrap_predictor
from gencast_control.adapters.gencast.training_config import (
    GenCastArchitectureConfig, GenCastTrainingConfig, companion_paths)
from gencast_control.adapters.gencast.upstream import upstream
from gencast_control.configs import gencast_assets as assets_config
from gencast_control.core.checkpoint import atomic_write
from gencast_control.data import era5_batches
from gencast_control.data.era5_schema import (PROGRESS_FORCINGS,
                                              progress_forcings)
from gencast_control.data.example_stream import ExampleStream
from gencast_control.training import training_loop


def task_config(architecture: GenCastArchitectureConfig):
  """DeepMind's TaskConfig: the store's variables as inputs and targets,
  the date features as forcings, no static inputs."""
  gc = upstream()
  variables = (tuple(architecture.surface_variables)
               + tuple(architecture.atmospheric_variables))
  return gc.task.TaskConfig(
      input_variables=variables + PROGRESS_FORCINGS,
      target_variables=variables, forcing_variables=PROGRESS_FORCINGS,
      pressure_levels=tuple(architecture.levels),
      input_duration=f"{12 * architecture.history_length}h")


def new_model(architecture: GenCastArchitectureConfig,
              stats: NormalizationStats, grid_shape: tuple[int, int],
              backend: str | None = None,
              description: str = "GenCast trained by gencast-control"
              ) -> GenCastModel:
  """A GenCastModel of the architecture, without parameters."""
  gc = upstream()
  a = architecture
  denoiser = gc.denoiser.DenoiserArchitectureConfig(
      sparse_transformer_config=gc.denoiser.SparseTransformerConfig(
          attention_k_hop=a.attention_k_hop, d_model=a.latent_size,
          num_layers=a.num_layers, num_heads=a.num_heads,
          attention_type=attention_type_for_backend(backend),
          mask_type="full", ffw_hidden=4 * a.latent_size),
      mesh_size=a.mesh_size, latent_size=a.latent_size, hidden_layers=1,
      radius_query_fraction_edge_length=0.6)
  return GenCastModel(
      params=None, task_config=task_config(a),
      denoiser_architecture_config=denoiser,
      sampler_config=gc.gencast.SamplerConfig(
          num_noise_levels=a.num_noise_levels),
      noise_config=gc.gencast.NoiseConfig(),
      noise_encoder_config=gc.denoiser.NoiseEncoderConfig(
          num_frequencies=a.noise_frequencies,
          output_sizes=tuple(a.noise_output_sizes)),
      stats=stats, description=description, grid_shape=grid_shape)


# --- statistics ----------------------------------------------------------------

def compute_stats(store: xr.Dataset, variables: Sequence[str],
                  levels: Sequence[int], period: tuple[str, str],
                  step_hours: int = 12) -> NormalizationStats:
  """GenCast's four statistics of a store's period, in DeepMind's layout.

  mean_by_level / stddev_by_level / min_by_level: over time, latitude and
  longitude, per level; diffs_stddev_by_level: the std of the `step_hours`
  differences. The date features (PROGRESS_FORCINGS) get their mean and std
  over the period's times, as DeepMind's statistics hold them.
  """
  data = store[list(variables)].sel(time=slice(*period))
  if "level" in data.dims:
    data = data.sel(level=list(levels))
  step = np.timedelta64(step_hours, "h")
  times = data["time"].values
  data = data.sel(time=times[(times - times[0]) % step == np.timedelta64(0)])
  if data.sizes["time"] < 2:
    raise ValueError(f"the period {period} holds {data.sizes['time']} time(s)"
                     " of the store; statistics need at least 2")
  data = data.load().astype(np.float64)
  spatial = [d for d in ("time", "latitude", "longitude") if d in data.dims]
  diffs = data.diff("time")
  forcing = progress_forcings(data["time"].values,
                              np.asarray(data["longitude"].values))
  extra_mean = {k: float(np.mean(v)) for k, v in forcing.items()}
  extra_std = {k: float(np.std(v)) for k, v in forcing.items()}

  def finish(ds: xr.Dataset, extra: dict) -> xr.Dataset:
    ds = ds.drop_vars([c for c in ds.coords if c != "level"])
    for name, value in extra.items():
      ds[name] = ((), value)
    return ds.astype(np.float32)

  return NormalizationStats(
      mean_by_level=finish(data.mean(spatial), extra_mean),
      stddev_by_level=finish(data.std(spatial), extra_std),
      diffs_stddev_by_level=finish(diffs.std(spatial), extra_std),
      min_by_level=finish(data.min(spatial), {}))


def write_stats(stats: NormalizationStats, directory) -> Path:
  """The statistics as DeepMind publishes them: one NetCDF per file name."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  for name in assets_config.STATS_FILES:
    data = getattr(stats, name).to_netcdf()
    atomic_write(directory / f"{name}.nc", lambda f, d=data: f.write(d))
  return directory


# --- batches as arrays ------------------------------------------------------------

def batch_arrays(batch) -> dict:
  """GenCast's (inputs, targets, forcings) as {part: {variable: array}}."""
  parts = dict(zip(("inputs", "targets", "forcings"), batch))
  return {part: {name: np.asarray(ds[name].values, np.float32)
                 for name in ds.data_vars if "batch" in ds[name].dims}
          for part, ds in parts.items()}


def batch_templates(batch) -> dict:
  """{part: (coords, {variable: dims}, static variables)} of a batch."""
  out = {}
  for part, ds in zip(("inputs", "targets", "forcings"), batch):
    ds = ds.drop_vars("datetime", errors="ignore")
    out[part] = (ds.coords,
                 {n: ds[n].dims for n in ds.data_vars if "batch" in ds[n].dims},
                 {n: ds[n] for n in ds.data_vars if "batch" not in ds[n].dims})
  return out


def batch_datasets(arrays: dict, templates: dict) -> tuple:
  """(inputs, targets, forcings) xarray_jax Datasets from `batch_arrays`
  (traceable: the arrays may be JAX tracers)."""
  xj = upstream().xarray_jax
  out = []
  for part in ("inputs", "targets", "forcings"):
    coords, dims, static = templates[part]
    data_vars = {n: xj.Variable(dims[n], arrays[part][n]) for n in dims}
    data_vars.update(static)
    out.append(xj.Dataset(data_vars, coords=coords))
  return tuple(out)


# --- the loss ---------------------------------------------------------------------

def _weighted_loss_gencast():
  """gencast.GenCast whose loss takes the task's own per-variable weights."""
  gc = upstream()

  class WeightedLossGenCast(gc.gencast.GenCast):
    """DeepMind's GenCast; `loss` is theirs with configurable weights."""

    def __init__(self, *, variable_weights: dict, **kwargs):
      super().__init__(**kwargs)
      self._variable_weights = dict(variable_weights)

    def loss(self, inputs, targets, forcings=None):
      noise = self._noise_config
      dtype = gc.casting.infer_floating_dtype(targets)
      batch = inputs.sizes["batch"]
      sigma = gc.xarray_jax.DataArray(
          gc.samplers_utils.rho_inverse_cdf(
              min_value=noise.training_min_noise_level,
              max_value=noise.training_max_noise_level,
              rho=noise.training_noise_level_rho,
              cdf=jax.random.uniform(hk.next_rng_key(), (batch,), dtype)),
          dims=("batch",))
      noisy = targets + gc.samplers_utils.spherical_white_noise_like(
          targets) * sigma
      denoised = self._preconditioned_denoiser(inputs, noisy, sigma, forcings)
      loss, diagnostics = gc.losses.weighted_mse_per_level(
          denoised, targets, per_variable_weights=self._variable_weights)
      return loss * self._loss_weighting(sigma), diagnostics

  return WeightedLossGenCast


def loss_transform(model: GenCastModel, variable_weights: dict
                   ) -> hk.Transformed:
  """hk.transform of f(inputs, targets, forcings) -> (loss [batch],
  per-variable diagnostics), GenCast's training loss on physical data."""

  def loss(inputs, targets, forcings):
    core = _weighted_loss_gencast()(
        task_config=model.task_config,
        denoiser_architecture_config=model.denoiser_architecture_config,
        sampler_config=model.sampler_config, noise_config=model.noise_config,
        noise_encoder_config=model.noise_encoder_config,
        variable_weights=variable_weights)
    return wrap_predictor(core, model.stats).loss(inputs, targets, forcings)

  return hk.transform(loss)


# --- the store ----------------------------------------------------------------------

def example_times(store: xr.Dataset, period: tuple[str, str],
                  history_length: int, target_steps: int = 1,
                  step_hours: int = 12) -> np.ndarray:
  """The initialisation times t0 of a period with every frame t0 - (h-1)
  step .. t0 + target_steps step inside it."""
  times = np.asarray(store["time"].values, "datetime64[ns]")
  step = np.timedelta64(step_hours, "h")
  inside = times[(times >= np.datetime64(period[0]))
                 & (times < np.datetime64(period[1]) + np.timedelta64(1, "D"))]
  have = set(inside.tolist())
  ok = [t for t in inside
        if all((t + k * step).tolist() in have
               for k in range(-(history_length - 1), target_steps + 1))]
  if not ok:
    raise ValueError(f"the period {period} of the store holds no example of"
                     f" {history_length} inputs and {target_steps} target(s)"
                     f" {step_hours} h apart")
  return np.asarray(ok, "datetime64[ns]")


def reader(store: xr.Dataset, task, target_steps: int = 1):
  """read(times) -> GenCast's batch (task: DeepMind's TaskConfig) at these
  initialisation times."""

  def read(times):
    return era5_batches.to_gencast_batch(
        store, times, input_variables=task.input_variables,
        target_variables=task.target_variables,
        forcing_variables=task.forcing_variables,
        levels=tuple(task.pressure_levels),
        input_frames=_input_frames(task), target_steps=target_steps,
        require_poles=False, sst_land_threshold=None)

  return read


def _input_frames(task) -> int:
  """GenCast's input frames: its input duration in 12 h steps."""
  return int(pd.Timedelta(task.input_duration) / pd.Timedelta("12h"))


def example_dataset(batch) -> xr.Dataset:
  """One example in DeepMind's example-dataset layout (inputs and targets on
  one time axis relative to the first input, with `datetime`), from a
  batch of one."""
  inputs, targets, forcings = batch
  merged = xr.concat([inputs.drop_vars(list(forcings.data_vars),
                                       errors="ignore"),
                      targets], dim="time", data_vars="minimal",
                     coords="minimal", compat="override")
  merged = merged.assign_coords(time=merged["time"] - merged["time"][0])
  return merged


# --- training ------------------------------------------------------------------------

def train(model: GenCastModel, store: xr.Dataset, period: tuple[str, str],
          training: GenCastTrainingConfig, workdir=None,
          progress: bool = True, identity_extra=()) -> tuple[GenCastModel, list]:
  """Trains `model` (its params: the start, random or a checkpoint's) on the
  store's period. Returns (trained model, logged history)."""
  read = reader(store, model.task_config)
  times = example_times(store, period,
                        _input_frames(model.task_config))
  first = read(times[:1])
  templates = batch_templates(first)
  stream = ExampleStream(lambda t: batch_arrays(read(t)), times,
                         training.batch_size, prefetch=training.prefetch)
  transformed = loss_transform(model, dict(training.variable_weights))

  unwrap = upstream().xarray_jax.unwrap_data

  def loss_fn(params, key, arrays):
    inputs, targets, forcings = batch_datasets(arrays, templates)
    loss, diagnostics = transformed.apply(params, key, inputs, targets,
                                          forcings)
    metrics = {f"loss {name}": jnp.mean(unwrap(v))
               for name, v in diagnostics.items()}
    return jnp.mean(unwrap(loss)), metrics

  optimizer = training_loop.make_optimizer(training.learning_rate,
                                           training.num_steps)
  identity = training_loop.run_identity(
      training, (times.astype("int64"),), *identity_extra,
      _describe(model), frozen="")
  try:
    params, history = training_loop.train(
        loss_fn, model.params, optimizer, training.num_steps,
        jax.random.PRNGKey(training.seed + 1), workdir,
        training.checkpoint_every, training.log_every, "GenCast (EDM loss)",
        progress=progress, identity=identity, batches=stream,
        divergence_hint="Lower ardm_training.learning_rate (now"
        f" {training.learning_rate:g})")
  finally:
    stream.close()
  return dataclasses.replace(model, params=params), history


def _describe(model: GenCastModel) -> str:
  """The model's configs and statistics, for the run identity."""
  configs = {name: repr(getattr(model, name)) for name in (
      "task_config", "denoiser_architecture_config", "sampler_config",
      "noise_config", "noise_encoder_config")}
  stats = {name: getattr(model.stats, name).to_dict(data="list")
           for name in assets_config.STATS_FILES}
  return json.dumps({"configs": configs, "stats": stats}, sort_keys=True,
                    default=str)


def init_params(model: GenCastModel, batch, seed: int) -> GenCastModel:
  """Random parameters of `model`'s GenCast (the tree of gencast.GenCast)."""
  return tiny.init_params_from_batch(model, *batch, seed=seed)


def save_checkpoint(model: GenCastModel, path, description: str,
                    license_text: str = "trained by gencast-control") -> Path:
  """checkpoint.dump of a gencast.CheckPoint, written atomically."""
  gc = upstream()
  checkpoint = gc.gencast.CheckPoint(
      description=description, license=license_text,
      params=jax.device_get(model.params), task_config=model.task_config,
      denoiser_architecture_config=model.denoiser_architecture_config,
      sampler_config=model.sampler_config, noise_config=model.noise_config,
      noise_encoder_config=model.noise_encoder_config)
  atomic_write(path, lambda f: gc.checkpoint.dump(f, checkpoint))
  return Path(path)



def _store(config, data_dir) -> xr.Dataset:
  from gencast_control.data.era5_store import open_store
  pde = config.pde
  path = getattr(pde, "store", "") or str(Path(data_dir) / "heldsuarez.zarr")
  return open_store(path, timeout_s=pde.timeout_s)


def _starting_model(config, stats: NormalizationStats, grid_shape, init,
                    first_batch) -> GenCastModel:
  """The configured architecture with random parameters, or (init: a
  DeepMind CheckPoint) the checkpoint's architecture, task and parameters."""
  from gencast_control.adapters.gencast.assets import (
      with_attention_for_backend)
  if init is None:
    model = new_model(config.ardm, stats, grid_shape)
    return init_params(model, first_batch, config.ardm_training.seed)
  return GenCastModel(
      params=init.params, task_config=init.task_config,
      denoiser_architecture_config=with_attention_for_backend(
          init.denoiser_architecture_config),
      sampler_config=init.sampler_config, noise_config=init.noise_config,
      noise_encoder_config=init.noise_encoder_config, stats=stats,
      description=f"{init.description} fine-tuned by gencast-control",
      grid_shape=grid_shape)


def train_ardm_step(config, data_dir, out_path, workdir=None, init=None,
                    progress: bool = True) -> GenCastModel:
  """`train-ardm` for a GenCast config: statistics of the training period,
  a new (or `init`'s) GenCast trained on the store, the checkpoint, its
  statistics and an example written beside it (module doc)."""
  t0 = time.perf_counter()
  store = _store(config, data_dir)
  period = tuple(config.pde.train_period)
  checkpoint = None if init is None else load_checkpoint(init)
  task = (task_config(config.ardm) if checkpoint is None
          else checkpoint.task_config)
  stats = compute_stats(store, list(task.target_variables), task.pressure_levels, period,
                        config.pde.step_hours)
  grid = store.sizes["latitude"], store.sizes["longitude"]
  first = reader(store, task)(example_times(
      store, period, _input_frames(task))[:1])
  model = _starting_model(config, stats, grid, checkpoint, first)
  if progress:
    size = sum(int(np.size(x)) for x in jax.tree.leaves(model.params))
    print(f"GenCast: {size:,} parameters, mesh refined"
          f" {model.denoiser_architecture_config.mesh_size} times, statistics"
          f" of {period[0]} .. {period[1]}", flush=True)
  model, history = train(
      model, store, period, config.ardm_training, workdir, progress,
      identity_extra=(str(init or ""),))
  stats_dir, example_path = companion_paths(out_path)
  write_stats(stats, stats_dir)
  example = example_dataset(first)
  atomic_write(example_path, lambda f: f.write(example.to_netcdf()))
  losses = [r["loss"] for r in history if "loss" in r]
  description = (f"{model.description}; {config.name}, "
                 f"{config.ardm_training.num_steps} steps, final loss"
                 f" {losses[-1] if losses else float('nan'):.4g},"
                 f" {time.perf_counter() - t0:.0f} s")
  save_checkpoint(model, out_path, description)
  return model



def load_trained(path, sampling_noise_levels: int = 0):
  """A GenCast trained by `train_ardm_step` as a FrozenARDM (GenCastARDM),
  from the checkpoint and the statistics and example beside it; with
  `sampling_noise_levels` > 0 it samples with that many sub-steps."""
  from gencast_control.adapters.gencast.ardm import GenCastARDM
  from gencast_control.adapters.gencast.assets import load_model
  stats_dir, example_path = companion_paths(path)
  for companion in (stats_dir, example_path):
    if not companion.exists():
      raise FileNotFoundError(f"{companion} is missing: a GenCast checkpoint"
                              " of train-ardm keeps its statistics and"
                              " example beside it")
  model = load_model(path, stats_dir)
  if sampling_noise_levels:
    model = dataclasses.replace(model, sampler_config=dataclasses.replace(
        model.sampler_config, num_noise_levels=sampling_noise_levels))
  return GenCastARDM.from_example(model, xr.load_dataset(example_path))
