"""Forecasts of the controller and the unguided ARDM, run and scored alike.

For each truth trajectory both ensembles start from the same states, see
the same observations and member keys (`engine.observe`,
`engine.member_key`), and are timed and scored by the engine; the demo,
`evaluate`, the pilot and the benchmarks call these.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from gencast_control.baselines.guidance import baseline_program
from gencast_control.core.ardm import FrozenARDM
from gencast_control.core.assimilation import (ensemble_program,
                                               ensemble_to_dataset)
from gencast_control.core.controller import bind_controller
from gencast_control.core.observations import Observations
from gencast_control.core.regimes import ObservationRegime
from gencast_control.data import trajectories
from gencast_control.evaluation import engine, metrics
from gencast_control.systems.experiment import (ExperimentConfig, get_system,
                                                state_variables)
from gencast_control.systems.pipeline import find_split


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
                      key: jax.Array, ensemble_size: int, contexts=None
                      ) -> dict[str, Callable[[int], engine.Program]]:
  """{"unguided", "controlled"}: trajectory k -> its program (`engine.Program`)
  from starts[k] ([h, ...] or [M, h, ...]) with the engine's member key; the
  controlled rollout assimilates observations[k]. contexts: the model's
  per-step context of each trajectory (leaves [K, h + T, ...]; GenCast's
  forcings), or None."""
  return {
      "unguided": lambda k: ensemble_program(
          ardm, jnp.asarray(starts[k]), num_steps, engine.member_key(key, k),
          ensemble_size, context=trajectory_context(contexts, k)),
      "controlled": lambda k: ensemble_program(
          ardm, jnp.asarray(starts[k]), num_steps, engine.member_key(key, k),
          ensemble_size, observations[k], controller, horizon,
          context=trajectory_context(contexts, k))}


def baseline_programs(method: str, ardm, starts,
                      observations: list[Observations], num_steps: int,
                      key: jax.Array, ensemble_size: int, contexts=None
                      ) -> Callable[[int], engine.Program]:
  """Trajectory k -> the program of a guidance baseline (e.g. "dps",
  `baselines.guidance`) from starts[k], guided by observations[k], with the
  engine's member key: the same inputs as `forecast_programs`'."""
  return lambda k: baseline_program(
      method, ardm, starts[k], observations[k], num_steps,
      engine.member_key(key, k), ensemble_size,
      context=trajectory_context(contexts, k))


def trajectory_context(contexts, k: int):
  """Trajectory k's context (leaves [h + T, ...]) of contexts with leaves
  [K, h + T, ...], or None."""
  return None if contexts is None else jax.tree.map(
      lambda c: jnp.asarray(c[k]), contexts)


def assimilate_trajectories(ardm: FrozenARDM, controller_config,
                            controller_params, truth: np.ndarray,
                            regime: ObservationRegime,
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


def score(result: AssimilationResult, weights: np.ndarray | None = None,
          system: str | None = None, pde_config=None
          ) -> dict[str, dict[str, float]]:
  """`engine.score` of both ensembles (over t = 1..T: t = 0, the given
  initial state, is left out) plus their wall-clock.

  weights: optional [*spatial] weights of the spatial means (e.g.
    `spatial_weights`: latitude area weights on a lat/lon grid); None = uniform.
  system, pde_config: the config's system and pde section, for the system's
    spectrum, physics and divergence scores (`diagnostics`; none for ERA5).
  """
  return {name: {**engine.score(getattr(result, name), result.truth, weights,
                                system=system, pde_config=pde_config),
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


def spatial_weights(config: ExperimentConfig, data_dir,
                    split: str = "test") -> np.ndarray | None:
  """Area weights [lat, lon] for a lat/lon system, None for flat PDE grids.

  Latitude-weighted scores as in WeatherBench2 (metrics.area_weights on the
  split's `latitude` coordinate, broadcast over longitude).
  """
  if not get_system(config.system).latlon:
    return None
  path = find_split(data_dir, split)
  ds = trajectories.open_trajectories(path, load=False)
  if "latitude" not in ds.coords:
    raise ValueError(f"{path} has no latitude coordinate; cannot weight"
                     " scores by latitude")
  w = metrics.area_weights(ds["latitude"].values)
  return np.broadcast_to(w[:, None], tuple(config.ardm.state_shape[:2]))
