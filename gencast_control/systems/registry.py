"""The System protocol and the registry of dynamical systems.

A `System` tells the drivers (simulate, demo, benchmark, evaluate, pilot,
the EnKF) what one dynamical system is, so none of them branches on which
system it runs (how its forecasts are measured and drawn is evaluation's:
`evaluation.diagnostics.DIAGNOSTICS`, `evaluation.plots.plot_assimilation`):

  variables, spatial_dims   the state's channels (() = from the config or
                            the data) and the grid's dims
  config_type               the class of its `pde` config section
  generate(key, n, steps, pde_config, burn_in_steps) -> xr.Dataset
                            trajectories [trajectory, time, *spatial]
                            (None: data-driven, e.g. ERA5, custom)
  splits(config)            train/validation/test from an external source
                            (ERA5: the store) when there is no generator
  model_step(x, pde_config) the true solver's step of states [B, *spatial,
                            C] (traceable): the EnKF's model
  solver_state_shape(pde_config)
                            [*spatial, C] of the states model_step takes
  latlon                    scores are latitude-area weighted

Built-in entries: ks, kolmogorov, era5 (also the simulated Held-Suarez
store) and custom (your own trajectories). `register_system` adds one.
Factories import their solvers lazily, so looking a system up is cheap.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import xarray as xr


@dataclasses.dataclass(frozen=True)
class System:
  """One dynamical system (module docstring for the fields)."""
  name: str
  variables: tuple[str, ...]
  spatial_dims: tuple[str, ...]
  config_type: type | None = None
  generate: Callable[..., xr.Dataset] | None = None
  splits: Callable[[Any], dict[str, xr.Dataset]] | None = None
  model_step: Callable[[Any, Any], Any] | None = None
  solver_state_shape: Callable[[Any], tuple[int, ...]] | None = None
  latlon: bool = False


def _ks() -> System:
  from gencast_control.systems import ks
  return System(
      "ks", ("u",), ("x",), ks.KSConfig, generate=ks.generate_ks_dataset,
      model_step=ks.ks_state_step, solver_state_shape=ks.state_shape)


def _kolmogorov() -> System:
  from gencast_control.systems import kolmogorov
  return System(
      "kolmogorov", ("vorticity",), ("x", "y"), kolmogorov.KolmogorovConfig,
      generate=kolmogorov.generate_kolmogorov_dataset,
      model_step=kolmogorov.kolmogorov_state_step,
      solver_state_shape=kolmogorov.state_shape)


def _era5() -> System:
  from gencast_control.data import era5_trajectories
  from gencast_control.data.era5_trajectories import ERA5DataConfig

  def splits(config):
    data = config.data
    return era5_trajectories.extract_splits(
        config.pde, data.num_steps,
        {"train": data.num_train, "validation": data.num_validation,
         "test": data.num_test}, config.ardm.state_shape)

  return System("era5", (), ("latitude", "longitude"), ERA5DataConfig,
                splits=splits, latlon=True)


def _custom() -> System:
  def splits(config):
    del config
    raise ValueError("system 'custom' brings its own data: write"
                     " train/validation/test splits (see"
                     " docs/own_observations.md, Bring your own data) instead"
                     " of simulating")

  return System("custom", (), (), splits=splits)


_FACTORIES: dict[str, Callable[[], System]] = {
    "ks": _ks, "kolmogorov": _kolmogorov, "era5": _era5, "custom": _custom}


def register_system(name: str, factory: Callable[[], System]) -> None:
  """Adds (or replaces) a system; `factory()` builds its System."""
  _FACTORIES[name] = factory


def get_system(name: str) -> System:
  """The registered system `name`."""
  if name not in _FACTORIES:
    raise ValueError(f"unknown system {name!r}; registered:"
                     f" {', '.join(_FACTORIES)}")
  return _FACTORIES[name]()


def system_for_config(pde_config: Any) -> System:
  """The system whose `config_type` the pde config is an instance of."""
  for name in _FACTORIES:
    system = get_system(name)
    if system.config_type is not None and isinstance(pde_config,
                                                     system.config_type):
      return system
  raise ValueError(f"no registered system takes a"
                   f" {type(pde_config).__name__} config")
