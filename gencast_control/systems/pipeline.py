"""The experiment's files: simulate, load the splits, train, load checkpoints.

Each step reads and writes files (trajectory splits data_dir/{train,
validation,test}.{nc,zarr}, checkpoints), so the CLI, the demo, the
evaluation and the notebooks run the same code. The truths and cold starts
an evaluation runs from are in `truth`.

Splits are read by name and coordinate, never by position (`load_split`):
train-ardm reads the state's layout off the train split (the variables in
channel order, the grid's coordinates, the time step of its regular time
axis) and records it in the ARDM checkpoint; later reads align to the
checkpoint's layout, so a split with its variables in another order or a
coordinate running the other way gives the same states, and one on another
grid or at another time step is refused naming the file.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from gencast_control.adapters.grid import (GridARDM, load_grid_ardm,
                                           save_grid_ardm)
from gencast_control.adapters.grid_training import train_ardm
from gencast_control.core import config as config_lib
from gencast_control.core import times as time_lib
from gencast_control.core.times import format_step, same_step
from gencast_control.core.checkpoint import CheckpointError
from gencast_control.core.ardm import FrozenARDM
from gencast_control.core.layout import StateLayout
from gencast_control.core.plugins import is_plugin_spec, plugin_model
from gencast_control.core.controller import (load_controller,
                                             load_warm_start, save_controller)
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


def config_time_step(config: ExperimentConfig) -> tuple[str, float] | None:
  """(field, value) of the config's model step in the data's time units:
  pde.model_dt (the PDEs, your own data) or pde.step_hours (ERA5, whose
  splits count time in hours); None for a config without one."""
  for field in ("model_dt", "step_hours"):
    value = getattr(config.pde, field, None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return f"pde.{field}", float(value)
  return None


def _as_step(step):
  """np.float64, or np.timedelta64[ns] for dates."""
  if isinstance(step, np.timedelta64):  # (an np.integer subclass)
    return np.timedelta64(step, "ns")
  return time_lib.as_timestep(float(step), "the data's time step")


def _is_sphere(dims, coords, periodic) -> bool:
  """(lat, lon) in degrees, periodic in longitude only."""
  if len(dims) != 2 or tuple(periodic) != (False, True):
    return False
  if (dims[0].lower() not in ("lat", "latitude")
      or dims[1].lower() not in ("lon", "longitude")):
    return False
  lat, lon = coords
  return bool(lat[0] >= -90.0 and lat[-1] <= 90.0
              and lon[-1] - lon[0] < 360.0)


def data_layout(config: ExperimentConfig, ds, where) -> StateLayout | None:
  """The layout of the states of a trajectory split, to record in the ARDM
  trained on it: the config's variables (default: the split's) in channel
  order, the grid's dims with their coordinates (ascending: a split whose
  coordinate runs the other way is reindexed), the config's periodicity and
  the step of the split's time axis (checked regular; ValueError naming
  the file and both steps where the config's model step differs). None where
  a spatial dim has no coordinate: the grid is then unknown and the model's
  layout comes from the user's initial state, as for older checkpoints."""
  variables = state_variables(config) or None
  try:
    dims = trajectories.validate_trajectories(ds, variables,
                                              spatial_dims(config))
  except trajectories.TrajectoryDatasetError as e:
    raise trajectories.TrajectoryDatasetError(f"{where}: {e}") from None
  variables = tuple(variables or ds.data_vars)
  step = trajectories.time_step(ds, str(where))
  expected = config_time_step(config)
  if step is None:
    step = expected[1] if expected is not None else 1.0
  elif expected is not None and same_step(step, expected[1]) is False:
    field, value = expected
    raise ValueError(
        f"{where}: its states are {format_step(step)} apart but the config's"
        f" {field} is {value:g}: give --set {field}={format_step(step)}, or"
        " data at the config's step")
  if any(d not in ds.coords for d in dims):
    return None
  coords = []
  for d in dims:
    c = np.asarray(ds[d].values)
    if c.dtype.kind not in "iuf" or not np.isfinite(c).all():
      raise ValueError(f"{where}: the {d!r} coordinate must be finite"
                       f" numbers, got dtype {c.dtype}")
    c = np.sort(c.astype(np.float64))
    if c.size > 1 and not (np.diff(c) > 0).all():
      i = int(np.argmax(np.diff(c) <= 0))
      raise ValueError(f"{where}: the {d!r} coordinate repeats {c[i]:g}")
    coords.append(c)
  periodic = tuple(bool(p) for p in config.ardm.periodic)
  if len(periodic) != len(dims):
    raise ValueError(f"{where}: the states have spatial dims {dims} but the"
                     f" config's ARDM has {len(periodic)}"
                     f" (ardm.periodic={periodic})")
  return StateLayout(variables, ((),) * len(variables), dims, tuple(coords),
                     periodic, _as_step(step),
                     sphere=_is_sphere(dims, coords, periodic))


def load_split(config: ExperimentConfig, data_dir, split: str,
               layout: StateLayout | None = None) -> np.ndarray:
  """Loads and validates a split as [trajectory, time, *spatial, C].

  layout: the ARDM's (recorded in its checkpoint): the variables are taken
  by name in its channel order, the grid is aligned to its coordinates
  (reindexed where only the order differs, refused otherwise) and the time
  axis must be regular at its step. Default: the layout read off the split
  (`data_layout`). Every error names the file.
  """
  path = find_split(data_dir, split)
  return split_states(config, trajectories.open_trajectories(path), path,
                      layout)


def split_states(config: ExperimentConfig, ds, path,
                 layout: StateLayout | None = None) -> np.ndarray:
  """[trajectory, time, *spatial, C] of the split `ds` read from `path`
  (load_split)."""
  if layout is None:
    layout = data_layout(config, ds, path)
  else:
    try:
      trajectories.validate_trajectories(ds, layout.variables, layout.dims)
    except trajectories.TrajectoryDatasetError as e:
      raise trajectories.TrajectoryDatasetError(f"{path}: {e}") from None
    step = trajectories.time_step(ds, str(path))
    if step is not None and not same_step(step, layout.timestep):
      raise ValueError(
          f"{path}: its states are {format_step(step)} apart but the ARDM"
          f" steps {format_step(layout.timestep)} (the model_dt it was"
          " trained with)")
  if layout is None:  # no spatial coordinates: the variables by name only
    array = trajectories.trajectories_to_array(
        ds, state_variables(config) or None)
  else:
    array = layout.stack(ds, ("trajectory", "time"), str(path))
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


def split_context(ardm: FrozenARDM, data_dir, split: str,
                  num_trajectories: int | None = None,
                  length: int | None = None):
  """The model's per-step context (`FrozenARDM.context_for`) of the first
  `num_trajectories` trajectories of a split over their first `length`
  times (default: all), leaves [N, T, ...], or None for a model without
  one. A trajectory's dates are its `start_time` plus its `time` offsets
  (hours), as the ERA5 / Held-Suarez data step writes them."""
  path = find_split(data_dir, split)
  ds = trajectories.open_trajectories(path, load=False)
  if "start_time" not in ds.coords:
    probe = ardm.context_for(np.zeros(ardm.history_length + 1))
    if probe is None:
      return None
    raise ValueError(f"{path} has no start_time coordinate: the model's"
                     " context needs the dates of the states")
  hours = np.asarray(ds["time"].values, np.float64)[:length]
  offsets = (hours * 3600).astype("int64").astype("timedelta64[s]")
  starts = np.asarray(ds["start_time"].values,
                      "datetime64[ns]")[:num_trajectories]
  contexts = [ardm.context_for(start + offsets) for start in starts]
  if contexts[0] is None:
    return None
  return jax.tree.map(lambda *leaves: np.stack(leaves), *contexts)


def load_gencast(config: ExperimentConfig, ardm_path, data_dir):
  """The GenCast of a GenCast config's train-ardm, in the standardised units
  of the splits in data_dir (core.standardised; the splits' layout, mean
  and std), sampling with the config's `ardm.sampling_noise_levels`."""
  from gencast_control.adapters.gencast.training import load_trained
  from gencast_control.core.standardised import StandardisedARDM
  from gencast_control.data.era5_trajectories import MEAN_ATTR, channel_stds
  inner = load_trained(ardm_path, config.ardm.sampling_noise_levels)
  path = find_split(data_dir, "train")
  ds = trajectories.open_trajectories(path, load=False)
  layout = data_layout(config, ds, path)
  names = tuple(inner.channel_layout.channel_names)
  if tuple(layout.variables) != names:
    raise ValueError(f"{path} holds the channels {list(layout.variables)} but"
                     f" {ardm_path} predicts {list(names)}, in this order")
  mean = [ds[name].attrs[MEAN_ATTR] for name in names]
  return StandardisedARDM(inner, mean, channel_stds(ds, names), layout)


def load_checkpoints(config: ExperimentConfig, ardm_path,
                     controller_path=None, check_time_step: bool = True,
                     data_dir=None):
  """(ARDM, controller config, params, ARDM metadata, controller metadata).

  ardm_path: a grid ARDM checkpoint, or a model of one's own
  ("module:factory", core.plugins), or for a GenCast config its train-ardm
  checkpoint (then data_dir, the splits' folder, is needed: `load_gencast`).

  Checks that the checkpoints are for the config's system and that the
  config's `ardm` and `controller` sections are the checkpoints' (they fix
  the architecture and the sampler the controller was trained with), so a
  result is never labelled with settings it did not use.
  check_time_step: also that the config's model step (pde.model_dt) is the
  one the ARDM was trained with, where its checkpoint records it: the
  commands that simulate or read truths at the config's step need it;
  `assimilate` takes the checkpoint's step and passes False.
  """
  if is_gencast_config(config):
    if data_dir is None:
      raise ValueError(
          f"the GenCast config {config.name!r} runs through train-ardm,"
          " train-controller, pilot, benchmarks/gencast_skill.py and"
          " benchmarks/rollout_cost.py, which read GenCast's units from the"
          " data folder (--data); this command does not run it")
    ardm, ardm_meta = load_gencast(config, ardm_path, data_dir), {}
  elif is_plugin_spec(ardm_path):  # a model of one's own: no grid config
    ardm, ardm_meta = plugin_model(ardm_path), {}
  else:
    ardm, ardm_meta = load_grid_ardm(ardm_path)
    _check_sections(config, "ardm", ardm.config, ardm_meta, ardm_path)
    if check_time_step:
      _check_time_step(config, ardm, ardm_path)
  if controller_path is None:
    return ardm, None, None, ardm_meta, None
  controller_config, params, meta = load_controller(controller_path, ardm)
  if ardm_meta:  # the config describes the grid models, not one's own
    _check_sections(config, "controller", controller_config, meta,
                    controller_path)
  return ardm, controller_config, params, ardm_meta, meta


def _check_time_step(config, ardm: GridARDM, path):
  expected = config_time_step(config)
  if ardm.layout is None or expected is None:
    return
  field, value = expected
  if same_step(value, ardm.layout.timestep) is False:
    raise CheckpointError(
        f"the config sets {field}={value:g} but {path} was trained with"
        f" model_dt {format_step(ardm.layout.timestep)}: --set"
        f" {field}={format_step(ardm.layout.timestep)} or use a checkpoint"
        " trained at the config's step")


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


def is_gencast_config(config: ExperimentConfig) -> bool:
  """Whether the config's ARDM is DeepMind's GenCast (configs/
  heldsuarez_gencast.py) rather than a grid ARDM."""
  from gencast_control.adapters.gencast.training_config import (
      GenCastArchitectureConfig)
  return isinstance(config.ardm, GenCastArchitectureConfig)


def train_ardm_step(config: ExperimentConfig, data_dir, out_path,
                    workdir=None, progress: bool = True, init=None):
  """Pretrains the ARDM on the train split and saves its checkpoint, with
  the split's layout (`data_layout`: variables, grid, time step).

  A GenCast config trains DeepMind's GenCast on the config's store instead
  (adapters/gencast/training.py), from random weights or, with `init`, from
  a GenCast checkpoint (fine-tuning)."""
  if is_gencast_config(config):
    from gencast_control.adapters.gencast import training as gencast_training
    return gencast_training.train_ardm_step(config, data_dir, out_path,
                                            workdir, init, progress)
  if init is not None:
    raise ValueError(f"--init fine-tunes a GenCast checkpoint; the config"
                     f" {config.name!r} trains a grid ARDM")
  path = find_split(data_dir, "train")
  ds = trajectories.open_trajectories(path)
  layout = data_layout(config, ds, path)
  data = split_states(config, ds, path, layout)
  del ds
  t0 = time.perf_counter()
  ardm, history = train_ardm(data, config.ardm, config.ardm_training, workdir,
                             progress)
  ardm = ardm.with_layout(layout)
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
  ardm = load_checkpoints(config, ardm_path, data_dir=data_dir)[0]
  data = load_split(config, data_dir, "train", ardm.layout)
  validation = None
  if config.controller_training.validate_every > 0:
    validation = load_split(config, data_dir, "validation", ardm.layout)
  initial = None
  if config.controller_training.warm_start:
    initial = load_warm_start(config.controller_training.warm_start,
                              config.controller, ardm)
  t0 = time.perf_counter()
  regimes = regimes_in_state_units(config.training_regimes(), data_dir,
                                   state_variables(config))
  params, history = train_controller(
      ardm, data, regimes, config.controller, config.controller_training,
      workdir, progress, params=initial, validation_data=validation,
      context=split_context(ardm, data_dir, "train"),
      validation_context=(None if validation is None else
                          split_context(ardm, data_dir, "validation")))
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
