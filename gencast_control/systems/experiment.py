"""Experiment configs and the data step of each system (`systems.registry`).

An experiment ties a system (PDE solver + dataset generator), a grid ARDM, its
pretraining, a controller, its training and the observation regimes together.
configs/NAME.py returns one ExperimentConfig from get_config().
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import xarray as xr

from gencast_control.core.config import require
from gencast_control.adapters.grid import GridARDMConfig
from gencast_control.adapters.grid_training import ARDMTrainingConfig
from gencast_control.core.controller import ControllerConfig
from gencast_control.training.controller_training import ControllerTrainingConfig
from gencast_control.core.regimes import ObservationRegime
from gencast_control.systems.registry import get_system


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


def state_variables(config: ExperimentConfig) -> tuple[str, ...]:
  """Channel names of the states: the system's, else the config's (ERA5's
  `channels`, a custom system's `variables`); () = "those of the data"."""
  pde = config.pde
  return (get_system(config.system).variables
          or tuple(getattr(pde, "variables", None)
                   or getattr(pde, "channels", None) or ()))


def spatial_dims(config: ExperimentConfig) -> tuple[str, ...] | None:
  """The grid's dims; None for a custom system that takes them from data."""
  return (get_system(config.system).spatial_dims
          or tuple(getattr(config.pde, "spatial_dims", None) or ()) or None)


def simulate_splits(config: ExperimentConfig) -> dict[str, xr.Dataset]:
  """Train/validation/test trajectories of the config's system: drawn from
  its generator, or taken from its source (`System.splits`; for ERA5 the
  store, where the counts are maxima and 0 = every window of the period)."""
  system = get_system(config.system)
  data = config.data
  if system.generate is None:
    return system.splits(config)
  key = jax.random.PRNGKey(data.seed)
  counts = {"train": data.num_train, "validation": data.num_validation,
            "test": data.num_test}
  return {
      split: system.generate(jax.random.fold_in(key, i), count,
                             data.num_steps, config.pde,
                             burn_in_steps=data.burn_in_steps)
      for i, (split, count) in enumerate(counts.items())
  }
