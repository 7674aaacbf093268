"""Loading DeepMind's GenCast: checkpoints, normalisation statistics, attention.

A GenCast checkpoint is DeepMind's `checkpoint.load(f, gencast.CheckPoint)`
file (`GenCast 1p0deg Mini <2019.npz`, `GenCast 1p0deg <2019.npz`,
`GenCast 0p25deg <2019.npz`): params, task_config, denoiser_architecture_config,
sampler_config, noise_config, noise_encoder_config. The statistics are four
NetCDF files (diffs_stddev_by_level, mean_by_level, stddev_by_level,
min_by_level). Both are read from local files or, when asked, from the public
bucket (configs/gencast_assets.py) anonymously through gcsfs with a deadline.

Attention: splash attention is a TPU-only Pallas kernel; elsewhere the
algebraically equivalent `triblockdiag_mha` with mask_type "full" is used, as
DeepMind's docs/cloud_vm_setup.md prescribes for GPUs.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import jax
import xarray as xr

from gencast_control.adapters.gencast.upstream import upstream
from gencast_control.configs import gencast_assets as assets_config


class AssetUnavailableError(OSError):
  """A GenCast asset cannot be read (missing file, offline, timeout)."""


@dataclasses.dataclass(frozen=True)
class NormalizationStats:
  """GenCast's normalisation statistics (xarray Datasets, per variable/level)."""
  diffs_stddev_by_level: xr.Dataset
  mean_by_level: xr.Dataset
  stddev_by_level: xr.Dataset
  min_by_level: xr.Dataset

  def check_covers(self, task_config) -> None:
    """ValueError naming the statistics a task needs but that are missing.

    Targets need mean/stddev (predictions and observations are normalised
    with them); targets that are also inputs need diffs_stddev (GenCast
    predicts their normalised 12 h residual); sea_surface_temperature needs
    min_by_level (its NaNs over land are filled with it). Other inputs without
    statistics are passed through unnormalised with a warning, as upstream.
    """
    targets = set(task_config.target_variables)
    needs = {
        "mean_by_level": targets, "stddev_by_level": targets,
        "diffs_stddev_by_level": targets & set(task_config.input_variables),
        "min_by_level": {"sea_surface_temperature"} & set(
            task_config.input_variables),
    }
    for name, variables in needs.items():
      missing = sorted(set(variables) - set(getattr(self, name).data_vars))
      if missing:
        raise ValueError(f"normalisation statistics {name} lack variables"
                         f" {missing}")


@dataclasses.dataclass(frozen=True)
class GenCastModel:
  """A frozen GenCast: parameters, DeepMind's configs and the statistics.

  The config objects are DeepMind's (chex dataclasses); `params` is the haiku
  parameter tree of `gencast.GenCast` (frozen: never trained here).
  """
  params: Any
  task_config: Any
  denoiser_architecture_config: Any
  sampler_config: Any
  noise_config: Any
  noise_encoder_config: Any
  stats: NormalizationStats
  description: str = ""
  grid_shape: tuple[int, int] | None = None  # (lat, lon) trained on, if known

  def __post_init__(self):
    self.stats.check_covers(self.task_config)

  @property
  def attention_type(self) -> str:
    return self.denoiser_architecture_config.sparse_transformer_config.attention_type


def attention_type_for_backend(backend: str | None = None) -> str:
  """splash_mha on TPU, triblockdiag_mha on CPU/GPU (splash is TPU-only)."""
  backend = backend or jax.default_backend()
  return "splash_mha" if backend == "tpu" else "triblockdiag_mha"


def with_attention_for_backend(architecture_config, backend: str | None = None):
  """A copy of a DenoiserArchitectureConfig with the backend's attention."""
  attention = attention_type_for_backend(backend)
  transformer = dataclasses.replace(
      architecture_config.sparse_transformer_config, attention_type=attention,
      mask_type="lazy" if attention == "splash_mha" else "full")
  return dataclasses.replace(architecture_config,
                             sparse_transformer_config=transformer)


def _read_gcs(path: str, timeout_s: float) -> bytes:
  """Reads a public gs:// object anonymously; fails after `timeout_s`."""
  result: dict[str, Any] = {}

  def target():
    try:
      import gcsfs  # pylint: disable=import-outside-toplevel
      fs = gcsfs.GCSFileSystem(token="anon", requests_timeout=timeout_s,
                               retries=1)
      with fs.open(path, "rb") as f:
        result["data"] = f.read()
    except BaseException as e:  # reported to the caller below
      result["error"] = e

  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  thread.join(timeout_s)
  if thread.is_alive():
    raise AssetUnavailableError(
        f"timed out after {timeout_s:g} s reading {path!r}: the network may be"
        " unreachable (download the file and pass its local path instead)")
  if "error" in result:
    raise AssetUnavailableError(
        f"cannot read {path!r} from the public bucket (offline?):"
        f" {type(result['error']).__name__}: {result['error']}"
    ) from result["error"]
  return result["data"]


def read_asset(path: str | os.PathLike, timeout_s: float = 60.0) -> bytes:
  """Bytes of a local file or of a gs:// object (anonymous, with deadline)."""
  if timeout_s <= 0:
    raise ValueError(f"timeout_s must be positive, got {timeout_s}")
  path = str(path)
  if path.startswith("gs://"):
    return _read_gcs(path, timeout_s)
  if not Path(path).is_file():
    raise AssetUnavailableError(f"GenCast asset {path!r} does not exist")
  return Path(path).read_bytes()


def load_checkpoint(source: str | os.PathLike, timeout_s: float = 60.0):
  """DeepMind's GenCast CheckPoint from a local .npz, a gs:// path or a name.

  Args:
    source: a local file, a gs:// path, or a registered name of
      configs/gencast_assets.CHECKPOINTS ("1p0deg_mini", "1p0deg", "0p25deg").
    timeout_s: deadline for a network read.
  """
  gc = upstream()
  if str(source) in assets_config.CHECKPOINTS:
    source = assets_config.checkpoint_path(str(source))
  data = read_asset(source, timeout_s)
  try:
    return gc.checkpoint.load(io.BytesIO(data), gc.gencast.CheckPoint)
  except (ValueError, KeyError, TypeError, OSError, AssertionError) as e:
    raise ValueError(
        f"{source!s} is not a GenCast checkpoint readable by"
        f" checkpoint.load(f, gencast.CheckPoint): {type(e).__name__}: {e}"
    ) from e


def _load_netcdf(path: str, what: str = "statistics") -> xr.Dataset:
  try:
    return xr.load_dataset(path)
  except (ValueError, OSError) as e:
    raise ValueError(f"{path} is not a NetCDF {what} file: {e}") from e


def _netcdf_from_bytes(data: bytes, origin: str,
                       what: str = "statistics") -> xr.Dataset:
  """Loads NetCDF bytes through a temporary file (any installed engine)."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "data.nc")
    with open(path, "wb") as f:
      f.write(data)
    try:
      return xr.load_dataset(path)
    except (ValueError, OSError) as e:
      raise ValueError(f"{origin} is not a NetCDF {what} file: {e}") from e


def load_stats(source: str | os.PathLike = "bucket",
               timeout_s: float = 60.0) -> NormalizationStats:
  """The four statistics files from a local directory or the bucket.

  Args:
    source: a directory holding `<name>.nc` for each of
      configs/gencast_assets.STATS_FILES, "bucket" for the public bucket, or a
      gs:// prefix of such a directory.
  """
  source = str(source)
  if source == "bucket":
    source = f"{assets_config.BUCKET}/stats"
  datasets = {}
  for name in assets_config.STATS_FILES:
    if source.startswith("gs://"):
      path = f"{source.rstrip('/')}/{name}.nc"
      datasets[name] = _netcdf_from_bytes(read_asset(path, timeout_s), path)
    else:
      path = os.path.join(source, f"{name}.nc")
      if not Path(path).is_file():
        raise AssetUnavailableError(f"GenCast statistics {path!r} do not exist")
      datasets[name] = _load_netcdf(path)
  return NormalizationStats(**datasets)


def load_example(source: str | os.PathLike,
                 timeout_s: float = 300.0) -> xr.Dataset:
  """One of DeepMind's example datasets, loaded into memory.

  Dims batch, time (12 h timedeltas), lat (ascending), lon, level, with a
  `datetime` coordinate: the input of `data_utils.
  extract_inputs_targets_forcings`, as in DeepMind's gencast_mini_demo.

  Args:
    source: a local NetCDF file, a gs:// path, or a registered name of
      configs/gencast_assets.EXAMPLE_DATASETS.
    timeout_s: deadline for the network read (the 30-step 1 deg example is
      several hundred MB).
  """
  source = str(source)
  if source in assets_config.EXAMPLE_DATASETS:
    source = assets_config.example_dataset_path(source)
  if source.startswith("gs://"):
    return _netcdf_from_bytes(read_asset(source, timeout_s), source,
                              "GenCast example")
  if not Path(source).is_file():
    raise AssetUnavailableError(f"GenCast example {source!r} does not exist")
  return _load_netcdf(source, "GenCast example")


def grid_shape_from_name(name: str) -> tuple[int, int] | None:
  """(lat, lon) of GenCast's grid named in a checkpoint name or description."""
  text = name.lower().replace(" ", "")
  if "0p25deg" in text or "0.25deg" in text:
    return (721, 1440)
  if "1p0deg" in text or "1.0deg" in text or "1deg" in text:
    return (181, 360)
  return None


def model_from_checkpoint(checkpoint, stats: NormalizationStats,
                          backend: str | None = None,
                          grid_shape: tuple[int, int] | None = None
                          ) -> GenCastModel:
  """A GenCastModel from a loaded CheckPoint, attention set for `backend`.

  grid_shape defaults to the grid named in the checkpoint's description.
  """
  if grid_shape is None:
    grid_shape = grid_shape_from_name(str(checkpoint.description))
  return GenCastModel(
      params=checkpoint.params, task_config=checkpoint.task_config,
      denoiser_architecture_config=with_attention_for_backend(
          checkpoint.denoiser_architecture_config, backend),
      sampler_config=checkpoint.sampler_config,
      noise_config=checkpoint.noise_config,
      noise_encoder_config=checkpoint.noise_encoder_config,
      stats=stats, description=str(checkpoint.description),
      grid_shape=grid_shape)


def load_model(checkpoint: str | os.PathLike, stats: str | os.PathLike = "bucket",
               backend: str | None = None,
               timeout_s: float = 60.0) -> GenCastModel:
  """Loads a GenCast checkpoint and its statistics (local or bucket).

  The grid the model was trained on is taken from the checkpoint's name
  ("... 1p0deg ..." -> 181 x 360, "... 0p25deg ..." -> 721 x 1440) or its
  description, and checked against the data of every call.
  """
  name = str(checkpoint)
  if name in assets_config.CHECKPOINTS:
    name = assets_config.CHECKPOINTS[name]
  loaded = load_checkpoint(checkpoint, timeout_s)
  return model_from_checkpoint(
      loaded, load_stats(stats, timeout_s), backend,
      grid_shape_from_name(name) or grid_shape_from_name(
          str(loaded.description)))
