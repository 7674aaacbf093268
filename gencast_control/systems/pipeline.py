"""The experiment's files: simulate, load the splits, train, load checkpoints.

Each step reads and writes files (trajectory splits data_dir/{train,
validation,test}.{nc,zarr}, checkpoints), so the CLI, the demo, the
evaluation and the notebooks run the same code. The truths and cold starts
an evaluation runs from are in `truth`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from gencast_control.adapters.grid import (GridARDM, load_grid_ardm,
                                           save_grid_ardm)
from gencast_control.adapters.grid_training import train_ardm
from gencast_control.core import config as config_lib
from gencast_control.core.checkpoint import CheckpointError
from gencast_control.core.controller import load_controller, save_controller
from gencast_control.core.regimes import ObservationRegime
from gencast_control.data import trajectories
from gencast_control.systems.experiment import (ExperimentConfig,
                                                simulate_splits, spatial_dims,
                                                state_variables)
from gencast_control.training.controller_training import train_controller

PACKAGE_CHECKPOINTS = Path(__file__).parents[1] / "checkpoints"


def shipped_checkpoints(name: str) -> tuple[Path, Path]:
  """Paths of the ARDM and controller checkpoints shipped for config `name`."""
  return (PACKAGE_CHECKPOINTS / f"{name}_ardm.npz",
          PACKAGE_CHECKPOINTS / f"{name}_controller.npz")


def simulate(config: ExperimentConfig, out_dir, fmt: str = "netcdf"):
  """Generates and writes train/validation/test trajectories.

  A data config with a `prepare(out_dir)` method (ERA5DataConfig and the
  simulated Held-Suarez store) first makes its source ready in out_dir.
  """
  prepare = getattr(config.pde, "prepare", None)
  if prepare is not None:
    config = dataclasses.replace(config, pde=prepare(out_dir))
  return trajectories.write_splits(simulate_splits(config), out_dir, fmt)


def find_split(data_dir, split: str) -> Path:
  """data_dir/split.nc or data_dir/split.zarr."""
  for suffix in (".nc", ".zarr"):
    path = Path(data_dir) / f"{split}{suffix}"
    if path.exists():
      return path
  raise FileNotFoundError(
      f"no {split}.nc or {split}.zarr in {data_dir}: run `gencast-control"
      " simulate` first or point --data at your own trajectory splits")


def load_split(config: ExperimentConfig, data_dir, split: str) -> np.ndarray:
  """Loads and validates a split as [trajectory, time, *spatial, C]."""
  variables = state_variables(config) or None  # None: the data's
  path = find_split(data_dir, split)
  ds = trajectories.open_trajectories(path)
  trajectories.validate_trajectories(ds, variables, spatial_dims(config))
  array = trajectories.trajectories_to_array(ds, variables)
  if tuple(array.shape[2:]) != tuple(config.ardm.state_shape):
    raise ValueError(
        f"{path}: states have shape {array.shape[2:]} but the config's ARDM"
        f" expects {tuple(config.ardm.state_shape)}")
  return array


def regimes_in_state_units(regimes, data_dir, channels
                           ) -> list[ObservationRegime]:
  """The regimes with physical per-channel noise (noise_units "physical")
  converted to the standardised units of the data in data_dir, using the
  channel stds the ERA5 data step stored on the train split."""
  regimes = list(regimes)
  if all(r.noise_units == "state" for r in regimes):
    return regimes
  from gencast_control.data.era5_trajectories import channel_stds
  ds = trajectories.open_trajectories(find_split(data_dir, "train"),
                                      load=False)
  std = channel_stds(ds, list(channels) or list(ds.data_vars))
  return [r.in_state_units(std) for r in regimes]


def load_checkpoints(config: ExperimentConfig, ardm_path,
                     controller_path=None):
  """(ARDM, controller config, params, ARDM metadata, controller metadata).

  Checks that the checkpoints are for the config's system and that the
  config's `ardm` and `controller` sections are the checkpoints' (they fix
  the architecture and the sampler the controller was trained with), so a
  result is never labelled with settings it did not use.
  """
  ardm, ardm_meta = load_grid_ardm(ardm_path)
  _check_sections(config, "ardm", ardm.config, ardm_meta, ardm_path)
  if controller_path is None:
    return ardm, None, None, ardm_meta, None
  controller_config, params, meta = load_controller(controller_path, ardm)
  _check_sections(config, "controller", controller_config, meta,
                  controller_path)
  return ardm, controller_config, params, ardm_meta, meta


def _check_sections(config, section, checkpoint_config, meta, path):
  system = meta.get("system")
  if system is not None and system != config.system:
    raise CheckpointError(
        f"{path} is a checkpoint for system {system!r}, but config"
        f" {config.name!r} is for {config.system!r}: use --config {system} or"
        " that system's checkpoints")
  differ = config_lib.differences(getattr(config, section), checkpoint_config,
                                  section)
  if differ:
    field, ours, theirs = differ[0]
    more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
    raise CheckpointError(
        f"the config sets {field}={ours!r} but {path} was trained with"
        f" {theirs!r}{more}: the checkpoint fixes the `{section}` section;"
        " drop the override or retrain (e.g. demo --retrain)")


def train_ardm_step(config: ExperimentConfig, data_dir, out_path,
                    workdir=None, progress: bool = True) -> GridARDM:
  """Pretrains the ARDM on the train split and saves its checkpoint."""
  data = load_split(config, data_dir, "train")
  t0 = time.perf_counter()
  ardm, history = train_ardm(data, config.ardm, config.ardm_training, workdir,
                             progress)
  save_grid_ardm(out_path, ardm, {
      "system": config.system, "experiment": config_lib.to_dict(config),
      "train_seconds": round(time.perf_counter() - t0, 1),
      "final_loss": next((r["loss"] for r in reversed(history)
                          if "loss" in r), None),
      "training_events": [r for r in history if "event" in r]})
  return ardm


def train_controller_step(config: ExperimentConfig, ardm_path, data_dir,
                          out_path, workdir=None, progress: bool = True):
  """Trains the controller against a saved ARDM and saves its checkpoint."""
  ardm = load_checkpoints(config, ardm_path)[0]
  data = load_split(config, data_dir, "train")
  validation = None
  if config.controller_training.validate_every > 0:
    validation = load_split(config, data_dir, "validation")
  initial = None
  if config.controller_training.warm_start:
    warm_config, initial, _ = load_controller(
        config.controller_training.warm_start, ardm)
    if warm_config != config.controller:
      raise ValueError(
          f"warm_start {config.controller_training.warm_start} has another"
          " controller architecture than the config's `controller` section")
  t0 = time.perf_counter()
  regimes = regimes_in_state_units(config.training_regimes(), data_dir,
                                   state_variables(config))
  params, history = train_controller(ardm, data, regimes,
                                     config.controller,
                                     config.controller_training, workdir,
                                     progress, params=initial,
                                     validation_data=validation)
  losses = [r for r in history if "score" in r]
  validated = [r for r in history if "validation_crps" in r]
  save_controller(out_path, params, config.controller, ardm, {
      "system": config.system, "regimes": list(config.train_regimes),
      "experiment": config_lib.to_dict(config),
      "objective": config.controller_training.objective,
      "train_seconds": round(time.perf_counter() - t0, 1),
      "final_score": losses[-1]["score"] if losses else None,
      "best_validation": (min(validated, key=lambda r: r["validation_crps"])
                          if validated else None),
      "training_events": [r for r in history if "event" in r]})
  return params
