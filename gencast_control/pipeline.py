"""The end-to-end steps behind the CLI: simulate, train, assimilate, evaluate.

Each step reads and writes files (trajectory splits, checkpoints, NetCDF), so
the CLI, the demo and the notebooks run the same code.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from gencast_control.core import config as config_lib
from gencast_control.data import trajectories
from gencast_control.evaluation import engine, metrics
from gencast_control.core.checkpoint import CheckpointError
from gencast_control.adapters.grid import (GridARDM, load_grid_ardm,
                                           save_grid_ardm)
from gencast_control.training.ardm_training import train_ardm
from gencast_control.core.assimilation import ensemble_program, ensemble_to_dataset
from gencast_control.core.controller import (bind_controller, load_controller,
                                             save_controller)
from gencast_control.training.controller_training import train_controller
from gencast_control.systems.experiment import (ExperimentConfig, get_system,
                                                spatial_dims, state_variables)
from gencast_control.core.observations import Observations
from gencast_control.core.regimes import ObservationRegime

PACKAGE_CHECKPOINTS = Path(__file__).parent / "checkpoints"


def shipped_checkpoints(name: str) -> tuple[Path, Path]:
  """Paths of the ARDM and controller checkpoints shipped for config `name`."""
  return (PACKAGE_CHECKPOINTS / f"{name}_ardm.npz",
          PACKAGE_CHECKPOINTS / f"{name}_controller.npz")


def simulate(config: ExperimentConfig, out_dir, fmt: str = "netcdf"):
  """Generates and writes train/validation/test trajectories.

  A data config with a `prepare(out_dir)` method (ERA5DataConfig and the
  simulated Held-Suarez store) first makes its source ready in out_dir.
  """
  from gencast_control.systems.experiment import simulate_splits
  prepare = getattr(config.pde, "prepare", None)
  if prepare is not None:
    config = dataclasses.replace(config, pde=prepare(out_dir))
  return trajectories.write_splits(simulate_splits(config), out_dir, fmt)


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


def load_test_window(config: ExperimentConfig, data_dir,
                     split: str = "test") -> np.ndarray:
  """The test split (or another) cut to config.assimilation's trajectories
  and length.

  Raises ValueError when the split is too short, instead of scoring fewer
  steps than the config asks for.
  """
  a = config.assimilation
  length = a.num_steps + config.ardm.history_length
  truth = load_split(config, data_dir, split)
  if truth.shape[1] < length:
    raise ValueError(
        f"the {split} split in {data_dir} holds {truth.shape[1]} times but"
        f" assimilation.num_steps={a.num_steps} needs {length} (history"
        f" {config.ardm.history_length} + steps); lower assimilation.num_steps"
        " or simulate longer trajectories (data.num_steps)")
  if truth.shape[0] < a.num_trajectories:
    print(f"note: the {split} split has {truth.shape[0]} trajectories, fewer"
          f" than assimilation.num_trajectories={a.num_trajectories}; using"
          " all of them")
  return truth[:a.num_trajectories, :length]


def spatial_weights(config: ExperimentConfig, data_dir,
                    split: str = "test") -> np.ndarray | None:
  """Area weights [lat, lon] for a lat/lon system, None for flat PDE grids.

  Latitude-weighted scores as in WeatherBench2 (metrics.area_weights on the
  split's `latitude` coordinate, broadcast over longitude).
  """
  if not get_system(config.system).latlon:
    return None
  ds = trajectories.open_trajectories(find_split(data_dir, split), load=False)
  if "latitude" not in ds.coords:
    raise ValueError(f"{find_split(data_dir, split)} has no latitude"
                     " coordinate; cannot weight scores by latitude")
  w = metrics.area_weights(ds["latitude"].values)
  return np.broadcast_to(w[:, None], tuple(config.ardm.state_shape[:2]))


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


@dataclasses.dataclass
class AssimilationResult:
  """Truth, observations and the two ensembles [K, M, T+1, *spatial, C]."""
  truth: np.ndarray
  observations: list[Observations]
  unguided: np.ndarray
  controlled: np.ndarray
  seconds_unguided: float
  seconds_controlled: float
  regime: ObservationRegime


def forecast_programs(ardm, controller, horizon: int, starts,
                      observations: list[Observations], num_steps: int,
                      key: jax.Array, ensemble_size: int
                      ) -> dict[str, Callable[[int], engine.Program]]:
  """{"unguided", "controlled"}: trajectory k -> its program (`engine.Program`)
  from starts[k] ([h, ...] or [M, h, ...]) with the engine's member key; the
  controlled rollout assimilates observations[k]."""
  return {
      "unguided": lambda k: ensemble_program(
          ardm, jnp.asarray(starts[k]), num_steps, engine.member_key(key, k),
          ensemble_size),
      "controlled": lambda k: ensemble_program(
          ardm, jnp.asarray(starts[k]), num_steps, engine.member_key(key, k),
          ensemble_size, observations[k], controller, horizon)}


def assimilate_trajectories(ardm: GridARDM, controller_config, controller_params,
                            truth: np.ndarray, regime: ObservationRegime,
                            ensemble_size: int, seed: int = 0,
                            controller=None, initial: np.ndarray | None = None
                            ) -> AssimilationResult:
  """Unguided forecast and controlled assimilation for each truth trajectory,
  with the keys and timing of `evaluation.engine`.

  Args:
    truth: [K, T+1, *spatial, C]; the first history_length states initialise
      every member, unless `initial` gives initial ensembles
      [K, M, h, *spatial, C] (a cold start).
    controller: the bound controller (`bind_controller`) to reuse across
      calls, so the compiled rollout is reused (default: bound here).
  Wall-clock is measured after compilation, summed over the K trajectories.
  """
  h = ardm.history_length
  if controller is None:
    controller = bind_controller(controller_config, ardm.periodic,
                                 controller_params)
  key = jax.random.PRNGKey(seed)
  truth = np.asarray(truth, np.float32)
  num_steps = truth.shape[1] - h
  observations = engine.observe(regime, truth, h, key)
  starts = truth[:, :h] if initial is None else np.asarray(initial)
  programs = forecast_programs(ardm, controller, controller_config.horizon,
                               starts, observations, num_steps, key,
                               ensemble_size)
  runs = {name: engine.run_programs(program(k) for k in range(len(truth)))
          for name, program in programs.items()}
  return AssimilationResult(
      truth=truth[:, h - 1:], observations=observations,
      unguided=runs["unguided"].ensembles,
      controlled=runs["controlled"].ensembles,
      seconds_unguided=runs["unguided"].seconds,
      seconds_controlled=runs["controlled"].seconds, regime=regime)


def score(result: AssimilationResult, weights: np.ndarray | None = None
          ) -> dict[str, dict[str, float]]:
  """`engine.score` of both ensembles (over t = 1..T: t = 0, the given
  initial state, is left out) plus their wall-clock.

  weights: optional [*spatial] weights of the spatial means (e.g.
    `spatial_weights`: latitude area weights on a lat/lon grid); None = uniform.
  """
  return {name: {**engine.score(getattr(result, name), result.truth, weights),
                 "seconds": getattr(result, f"seconds_{name}")}
          for name in ("unguided", "controlled")}


def result_dataset(config: ExperimentConfig, result: AssimilationResult,
                   trajectory: int = 0) -> xr.Dataset:
  """One trajectory's truth, observations and ensembles as xarray."""
  system = get_system(config.system)
  var = state_variables(config)
  unguided = ensemble_to_dataset(result.unguided[trajectory], var,
                                 system.spatial_dims)
  controlled = ensemble_to_dataset(result.controlled[trajectory], var,
                                   system.spatial_dims)
  truth = ensemble_to_dataset(result.truth[trajectory][None], var,
                              system.spatial_dims).isel(sample=0, drop=True)
  obs = result.observations[trajectory]
  observed = np.where(np.asarray(obs.mask) > 0, np.asarray(obs.values), np.nan)
  observed = ensemble_to_dataset(observed[None], var,
                                 system.spatial_dims).isel(sample=0, drop=True)
  out = xr.Dataset(attrs={"system": config.system,
                          "regime": result.regime.name})
  for v in var:
    out[f"{v}_truth"] = truth[v]
    out[f"{v}_observed"] = observed[v]
    out[f"{v}_unguided"] = unguided[v]
    out[f"{v}_controlled"] = controlled[v]
  return out
