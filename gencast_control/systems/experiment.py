"""Experiment configs and the registry of built-in dynamical systems.

An experiment ties a system (PDE solver + dataset generator), a grid ARDM, its
pretraining, a controller, its training and the observation regimes together.
configs/NAME.py returns one ExperimentConfig from get_config().
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import xarray as xr

from gencast_control.core.config import require
from gencast_control.adapters.grid import GridARDMConfig
from gencast_control.training.ardm_training import ARDMTrainingConfig
from gencast_control.core.controller import ControllerConfig
from gencast_control.training.controller_training import ControllerTrainingConfig
from gencast_control.core.regimes import ObservationRegime


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Trajectory counts per split, length and burn-in (model steps)."""
  num_train: int = 64
  num_validation: int = 8
  num_test: int = 8
  num_steps: int = 200
  burn_in_steps: int = 200
  seed: int = 0

  def __post_init__(self):
    require(self, positive=("num_steps",),  # counts 0: ERA5's "every window"
            nonnegative=("num_train", "num_validation", "num_test",
                         "burn_in_steps"))


@dataclasses.dataclass(frozen=True)
class AssimilationConfig:
  """The assimilation run of `demo` / `assimilate` / `evaluate`."""
  regime: str = "random_10pct"
  num_steps: int = 100
  ensemble_size: int = 8
  num_trajectories: int = 4
  seed: int = 0

  def __post_init__(self):
    require(self, positive=("num_steps", "ensemble_size", "num_trajectories"))


@dataclasses.dataclass(frozen=True)
class CustomDataConfig:
  """Your own trajectories (system "custom"): the names come from the data.

  Attributes:
    variables: the state's channels, in order (default: every data variable
      of the train split).
    spatial_dims: the grid's dims (default: those of the first variable
      after trajectory and time).
    model_dt: time between two consecutive states (one ARDM step).
  """
  variables: tuple[str, ...] = ()
  spatial_dims: tuple[str, ...] = ()
  model_dt: float = 1.0


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  name: str
  system: str
  pde: Any
  data: DataConfig
  ardm: GridARDMConfig
  ardm_training: ARDMTrainingConfig
  controller: ControllerConfig
  controller_training: ControllerTrainingConfig
  regimes: tuple[ObservationRegime, ...]
  train_regimes: tuple[str, ...]
  assimilation: AssimilationConfig

  def regime(self, name: str) -> ObservationRegime:
    for regime in self.regimes:
      if regime.name == name:
        return regime
    raise ValueError(f"unknown observation regime {name!r}; this config has"
                     f" {[r.name for r in self.regimes]}")

  def training_regimes(self) -> list[ObservationRegime]:
    return [self.regime(name) for name in self.train_regimes]


@dataclasses.dataclass(frozen=True)
class System:
  """A built-in dynamical system.

  generate(key, num_trajectories, num_steps, pde_config, burn_in_steps) returns
  an xarray Dataset with dims (trajectory, time, *spatial_dims). Data-driven
  systems (ERA5) have no generator and take their variables from the config
  (see `state_variables`).
  """
  name: str
  variables: tuple[str, ...]
  spatial_dims: tuple[str, ...]
  generate: Callable[..., xr.Dataset] | None


def get_system(name: str) -> System:
  """Looks up a built-in system (imports its solver lazily)."""
  if name == "ks":
    from gencast_control.systems import ks
    return System("ks", ("u",), ("x",), ks.generate_ks_dataset)
  if name == "kolmogorov":
    from gencast_control.systems import kolmogorov
    return System("kolmogorov", ("vorticity",), ("x", "y"),
                  kolmogorov.generate_kolmogorov_dataset)
  if name == "era5":
    return System("era5", (), ("latitude", "longitude"), None)
  if name == "custom":
    return System("custom", (), (), None)
  raise ValueError(f"unknown system {name!r}; built-in: ks, kolmogorov,"
                   " era5, custom")


def state_variables(config: ExperimentConfig) -> tuple[str, ...]:
  """Channel names of the states: the system's, or the config's ERA5
  channels; for a custom system the config's, or () = "those of the data"."""
  if config.system == "custom":
    return tuple(getattr(config.pde, "variables", ()) or ())
  return get_system(config.system).variables or tuple(config.pde.channels)


def spatial_dims(config: ExperimentConfig) -> tuple[str, ...] | None:
  """The grid's dims; None for a custom system that takes them from data."""
  if config.system == "custom":
    return tuple(getattr(config.pde, "spatial_dims", ()) or ()) or None
  return get_system(config.system).spatial_dims


def simulate_splits(config: ExperimentConfig) -> dict[str, xr.Dataset]:
  """Generates train/validation/test trajectories of the config's system.

  For ERA5 the splits are read from the store instead (era5_trajectories;
  the counts are maxima, 0 = every window of the period).
  """
  system = get_system(config.system)
  data = config.data
  key = jax.random.PRNGKey(data.seed)
  counts = {"train": data.num_train, "validation": data.num_validation,
            "test": data.num_test}
  if config.system == "custom":
    raise ValueError("system 'custom' brings its own data: write"
                     " train/validation/test splits (see the README, Bring"
                     " your own data) instead of simulating")
  if system.generate is None:
    from gencast_control.data import era5_trajectories
    return era5_trajectories.extract_splits(config.pde, data.num_steps, counts,
                                            config.ardm.state_shape)
  return {
      split: system.generate(jax.random.fold_in(key, i), count,
                             data.num_steps, config.pde,
                             burn_in_steps=data.burn_in_steps)
      for i, (split, count) in enumerate(counts.items())
  }
