"""Small GenCast configurations and synthetic GenCast-format data.

`tiny_model` builds a randomly initialised GenCast on a 10 deg equiangular grid
with poles (19 x 36, the smallest grid on which GenCast's spherical-harmonic
noise is defined), a mesh refined twice, latent size 32 and 2 transformer
layers; it builds and samples in seconds on a CPU. `mini_1deg_model` is the
architecture of DeepMind's `GenCast 1p0deg Mini <2019` (mesh refined 4 times,
latent 512, 16 transformer layers, 181 x 360 grid) with random weights, for
accelerator benchmarks. `synthetic_example` writes data in the layout of
DeepMind's example datasets (dims batch, time, lat, lon, level; a `datetime`
coordinate), so the real `data_utils.extract_inputs_targets_forcings` runs on it.
`offline_assets` pairs the two as the offline stand-in for `load_model` +
`load_example` (used by the tests and colab/gencast.ipynb).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from gencast_control.adapters.gencast.assets import (GenCastModel,
                                                     NormalizationStats,
                                                     attention_type_for_backend)
from gencast_control.adapters.gencast.upstream import upstream
from gencast_control.configs import gencast_assets as assets_config

TINY_SURFACE = ("2m_temperature", "sea_surface_temperature",
                "total_precipitation_12hr")
TINY_ATMOSPHERIC = ("temperature", "geopotential")
TINY_LEVELS = (500, 850)
STATIC = ("geopotential_at_surface", "land_sea_mask")
GENERATED_FORCINGS = ("year_progress_sin", "year_progress_cos",
                      "day_progress_sin", "day_progress_cos")

# Rough physical scales (mean, std, std of 12 h differences).
_SCALES = {
    "2m_temperature": (280.0, 20.0, 3.0),
    "sea_surface_temperature": (290.0, 8.0, 0.5),
    "total_precipitation_12hr": (0.001, 0.003, 0.003),
    "temperature": (250.0, 15.0, 2.0),
    "geopotential": (50000.0, 5000.0, 500.0),
    "geopotential_at_surface": (3000.0, 6000.0, 1.0),
    "land_sea_mask": (0.3, 0.45, 1.0),
}


def tiny_task_config():
  """A GenCast task with 3 surface + 2 atmospheric variables on 2 levels."""
  gc = upstream()
  return gc.task.TaskConfig(
      input_variables=("2m_temperature", "sea_surface_temperature")
      + TINY_ATMOSPHERIC + GENERATED_FORCINGS + STATIC,
      target_variables=TINY_SURFACE + TINY_ATMOSPHERIC,
      forcing_variables=GENERATED_FORCINGS,
      pressure_levels=TINY_LEVELS,
      input_duration="24h")


def grid(resolution_deg: float) -> tuple[np.ndarray, np.ndarray]:
  """Equiangular (lat ascending, with poles) and lon [0, 360) grids."""
  nlat = int(round(180 / resolution_deg)) + 1
  nlon = int(round(360 / resolution_deg))
  return (np.linspace(-90.0, 90.0, nlat).astype(np.float32),
          (np.arange(nlon) * resolution_deg).astype(np.float32))


def tiny_model(seed: int = 0, backend: str | None = None,
               latent_size: int = 32, num_layers: int = 2,
               mesh_size: int = 2, init: bool = True) -> GenCastModel:
  """A random tiny GenCast (10 deg grid) with synthetic statistics.

  init=False leaves params None (for abstract shape evaluation).
  """
  gc = upstream()
  task = tiny_task_config()
  architecture = gc.denoiser.DenoiserArchitectureConfig(
      sparse_transformer_config=gc.denoiser.SparseTransformerConfig(
          attention_k_hop=4, d_model=latent_size, num_layers=num_layers,
          num_heads=4, attention_type=attention_type_for_backend(backend),
          mask_type="full", ffw_hidden=2 * latent_size),
      mesh_size=mesh_size, latent_size=latent_size, hidden_layers=1,
      radius_query_fraction_edge_length=0.6)
  noise_encoder = gc.denoiser.NoiseEncoderConfig(num_frequencies=8,
                                                output_sizes=(16, 8))
  model = GenCastModel(
      params=None, task_config=task,
      denoiser_architecture_config=architecture,
      sampler_config=gc.gencast.SamplerConfig(),
      noise_config=gc.gencast.NoiseConfig(),
      noise_encoder_config=noise_encoder,
      stats=synthetic_stats(task), description="tiny random GenCast",
      grid_shape=(19, 36))
  if not init:
    return model
  return init_params(model, synthetic_example(task, 10.0, num_steps=1),
                     seed)


def offline_assets(num_steps: int, seed: int = 0, example_seed: int = 1
                   ) -> tuple[GenCastModel, xr.Dataset]:
  """(tiny random GenCast, generated example of 2 + num_steps times).

  The no-network stand-in for `load_model(...)` and `load_example(...)`:
  the same xarray layout as DeepMind's example datasets, on the 10 deg grid.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  model = tiny_model(seed=seed)
  return model, synthetic_example(model.task_config, 10.0,
                                  num_steps=num_steps, seed=example_seed)


def mini_1deg_architecture(backend: str | None = None):
  """DenoiserArchitectureConfig of `GenCast 1p0deg Mini <2019`.

  As DeepMind's demo builds a random 1 deg model: mesh refined 4 times,
  latent/d_model 512, 4 heads, 16 transformer layers, 16-hop attention.
  """
  gc = upstream()
  attention = attention_type_for_backend(backend)
  return gc.denoiser.DenoiserArchitectureConfig(
      sparse_transformer_config=gc.denoiser.SparseTransformerConfig(
          attention_k_hop=16, d_model=512, num_heads=4,
          attention_type=attention,
          mask_type="lazy" if attention == "splash_mha" else "full"),
      mesh_size=4, latent_size=512)


def mini_1deg_model(seed: int = 0, backend: str | None = None,
                    init: bool = True) -> GenCastModel:
  """The `GenCast 1p0deg Mini <2019` architecture with random weights."""
  gc = upstream()
  task = gc.gencast.TASK
  architecture = mini_1deg_architecture(backend)
  model = GenCastModel(
      params=None, task_config=task,
      denoiser_architecture_config=architecture,
      sampler_config=gc.gencast.SamplerConfig(),
      noise_config=gc.gencast.NoiseConfig(),
      noise_encoder_config=gc.denoiser.NoiseEncoderConfig(),
      stats=synthetic_stats(task), description="GenCast 1p0deg Mini, random",
      grid_shape=(181, 360))
  if not init:
    return model
  return init_params(model, synthetic_example(task, 1.0, num_steps=1), seed)


def init_params(model: GenCastModel, example: xr.Dataset,
                seed: int = 0) -> GenCastModel:
  """Random GenCast parameters from one call of its (wrapped) denoiser.

  The parameter tree is that of gencast.GenCast (its modules are built in
  GenCast.__init__). Upstream's sampler cannot be initialised itself: its
  unrolled first step calls `.astype` on a Python bool, and its loss needs
  the full GenCast variable set.
  """
  return init_params_from_batch(
      model, *split_example(model.task_config, example, 1), seed=seed)


def init_params_from_batch(model: GenCastModel, inputs: xr.Dataset,
                           targets: xr.Dataset, forcings: xr.Dataset,
                           seed: int = 0) -> GenCastModel:
  """`init_params` from GenCast's (inputs, targets, forcings) of one step."""
  gc = upstream()

  def one_denoiser_call(inputs, targets, forcings):
    core = gc.gencast.GenCast(
        task_config=model.task_config,
        denoiser_architecture_config=model.denoiser_architecture_config,
        sampler_config=model.sampler_config, noise_config=model.noise_config,
        noise_encoder_config=model.noise_encoder_config)
    stats = model.stats
    norm = lambda ds: gc.normalization.normalize(
        ds, stats.stddev_by_level, stats.mean_by_level)
    levels = gc.xarray_jax.DataArray(
        jnp.ones((inputs.sizes["batch"],)), dims=("batch",))
    return core._preconditioned_denoiser(  # pylint: disable=protected-access
        norm(inputs.fillna(0.0)), xr.zeros_like(targets), levels,
        norm(forcings))

  params = jax.jit(hk.transform(one_denoiser_call).init)(
      jax.random.PRNGKey(seed), inputs, targets, forcings)
  return dataclasses.replace(model, params=params)


def split_example(task_config, example: xr.Dataset, num_steps: int):
  """(inputs, targets, forcings) of the first `num_steps` 12 h targets."""
  gc = upstream()
  return gc.data_utils.extract_inputs_targets_forcings(
      example, target_lead_times=slice("12h", f"{12 * num_steps}h"),
      **dataclasses.asdict(task_config))


def synthetic_stats(task_config) -> NormalizationStats:
  """Per-variable (and per-level) statistics with physical magnitudes."""
  names = set(task_config.input_variables) | set(
      task_config.target_variables) | set(task_config.forcing_variables)
  levels = np.asarray(task_config.pressure_levels)
  atmospheric = set(upstream().variables.ALL_ATMOSPHERIC_VARS)

  def dataset(index: int, default: float) -> xr.Dataset:
    data = {}
    for name in sorted(names):
      value = _SCALES.get(name, (0.0, 1.0, 1.0))[index] if (
          name in _SCALES) else default
      if name in atmospheric:
        # Levels differ a little so that channel bookkeeping is checked.
        data[name] = ("level", value * (1.0 + 0.01 * np.arange(len(levels))))
      else:
        data[name] = ((), np.float32(value))
    return xr.Dataset(data, coords={"level": levels}).astype(np.float32)

  mean = dataset(0, 0.0)
  std = dataset(1, 1.0)
  diffs = dataset(2, 1.0)
  minimum = mean - 3 * std
  return NormalizationStats(diffs_stddev_by_level=diffs, mean_by_level=mean,
                            stddev_by_level=std, min_by_level=minimum)


def synthetic_example(task_config, resolution_deg: float = 10.0,
                      num_steps: int = 1, batch: int = 1, seed: int = 0,
                      start: str = "2019-03-29T00:00") -> xr.Dataset:
  """A smooth random example in DeepMind's example-dataset layout.

  Fields are the statistics' means plus a few large-scale waves that drift in
  longitude over time (so that 12 h differences are non-trivial), with NaN sea
  surface temperature over "land", as in ERA5.
  """
  rng = np.random.default_rng(seed)
  lat, lon = grid(resolution_deg)
  num_times = 2 + num_steps
  times = pd.to_timedelta(np.arange(num_times) * 12, unit="h")
  datetime = (np.datetime64(start) + times.values).astype("datetime64[ns]")
  levels = np.asarray(task_config.pressure_levels)
  la, lo = np.deg2rad(lat)[:, None], np.deg2rad(lon)[None, :]
  land = ((np.sin(3 * lo + 1.0) * np.cos(2 * la)) > 0.3).astype(np.float32)
  atmospheric = set(upstream().variables.ALL_ATMOSPHERIC_VARS)
  names = (set(task_config.input_variables) | set(task_config.target_variables)
           ) - set(GENERATED_FORCINGS) - set(STATIC)

  def field(name, extra_shape=()):
    mean, std, diff = _SCALES.get(name, (0.0, 1.0, 1.0))
    shape = (batch, num_times) + extra_shape + (lat.size, lon.size)
    out = np.zeros(shape, np.float32)
    for _ in range(3):
      k, m = rng.integers(1, 4), rng.integers(0, 3)
      phase = rng.uniform(0, 2 * np.pi, (batch,) + extra_shape)
      speed = rng.uniform(0.2, 0.6) * diff / std
      for t in range(num_times):
        ph = phase[(...,) + (None,) * 2] + speed * t
        out[:, t] += (np.cos(m * la) * np.sin(k * lo + ph)).astype(np.float32)
    return mean + std * 0.5 * out

  data = {}
  for name in sorted(names):
    if name in atmospheric:
      data[name] = (("batch", "time", "level", "lat", "lon"),
                    field(name, (len(levels),)))
    else:
      values = field(name)
      if name == "sea_surface_temperature":
        values = np.where(land > 0, np.nan, values).astype(np.float32)
      if name == "total_precipitation_12hr":
        values = np.abs(values - _SCALES[name][0]).astype(np.float32)
      data[name] = (("batch", "time", "lat", "lon"), values)
  data["land_sea_mask"] = (("lat", "lon"), land)
  data["geopotential_at_surface"] = (
      ("lat", "lon"), (3000.0 * land * (1 + np.cos(la) * np.ones_like(lo))
                       ).astype(np.float32))
  return xr.Dataset(
      data, coords={"lat": lat, "lon": lon, "level": levels, "time": times,
                    "datetime": (("batch", "time"),
                                 np.broadcast_to(datetime, (batch, num_times)))})


def write_assets(model: GenCastModel, example: xr.Dataset, directory
                 ) -> tuple[Path, Path, Path]:
  """Writes a model and an example as DeepMind publishes them: the
  checkpoint (checkpoint.dump of a gencast.CheckPoint), the statistics folder
  (one NetCDF per STATS_FILES entry) and the example NetCDF. Returns their
  paths, for `load_model(checkpoint, stats=, example=)` offline."""
  gc = upstream()
  directory = Path(directory)
  stats_dir = directory / "stats"
  stats_dir.mkdir(parents=True, exist_ok=True)
  checkpoint = gc.gencast.CheckPoint(
      description=model.description, license="test only",
      params=jax.device_get(model.params), task_config=model.task_config,
      denoiser_architecture_config=model.denoiser_architecture_config,
      sampler_config=model.sampler_config, noise_config=model.noise_config,
      noise_encoder_config=model.noise_encoder_config)
  path = directory / "gencast_tiny_10deg.npz"
  with open(path, "wb") as f:
    gc.checkpoint.dump(f, checkpoint)
  for name in assets_config.STATS_FILES:
    getattr(model.stats, name).to_netcdf(stats_dir / f"{name}.nc")
  example_path = directory / "example.nc"
  example.to_netcdf(example_path)
  return path, stats_dir, example_path
