"""The ERA5 pilot evaluation: controller vs unguided ARDM vs DPS per regime.

For each observation regime and test trajectory, the methods share the
truth, the observations, the initial ensemble and the PRNG key of the
members (`pipeline.assimilate_trajectories` for unguided/controlled,
`baselines.assimilate_baseline("dps")` with the same key). Starts: "truth"
(every member starts from the true state) or "cold" (member m of trajectory
k starts from its own random climatological state: a state of the
validation split, or for the simulated Held-Suarez store one of the
validation member's model states). On the Held-Suarez store a fourth
method, "letkf", is the perfect-model reference: a localised ensemble
transform Kalman filter with dinosaur, the model that made the truth, as
its model (`systems.held_suarez.PerfectModelFilter`), from the same cold start.

Scores follow WeatherBench2 (Rasp et al. 2024) on the lat/lon grid, over lead
times t = 1..T (t = 0 is the initial state), with w_i the cell-area latitude
weights (`metrics.area_weights`, mean 1):

    RMSE_c = sqrt( sum_{k,t,i,j} w_i (xbar_{ktijc} - y_{ktijc})^2
                   / sum_{k,t,i,j} w_i ),        xbar = ensemble mean,
    CRPS_c = weighted mean of the fair CRPS (Ferro 2014; `metrics.crps_fair`).

Headline `rmse` / `crps` pool all channels in standardised units (the data
step divides channel c by its training std s_c); `per_channel` gives
RMSE_c and CRPS_c in physical units (times s_c).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control import pipeline

from gencast_control.data import trajectories

from gencast_control.evaluation import metrics, plots
from gencast_control.adapters.grid import GridARDM
from gencast_control.baselines.guidance import assimilate_baseline
from gencast_control.core.checkpoint import atomic_write, write_json
from gencast_control.core.controller import bind_controller
from gencast_control.data.era5_trajectories import channel_stds
from gencast_control.systems.experiment import ExperimentConfig, state_variables
from gencast_control.core.regimes import ObservationRegime

METHODS = ("unguided", "controlled", "dps", "letkf")
STARTS = ("cold", "truth")


def _timed(fn):
  fn().block_until_ready()  # compile
  t0 = time.perf_counter()
  out = fn().block_until_ready()
  return np.asarray(out), time.perf_counter() - t0


def score_latlon(ensemble: np.ndarray, truth: np.ndarray,
                 latitude: np.ndarray, channel_std: np.ndarray,
                 channels: Sequence[str]) -> dict:
  """Latitude-weighted scores of ensembles [K, M, T+1, lat, lon, C] (t >= 1)."""
  ens = np.asarray(ensemble, np.float64)[:, :, 1:]
  truth = np.asarray(truth, np.float64)[:, 1:]
  w = metrics.area_weights(latitude)[:, None, None]  # [lat, 1, 1]
  mean = ens.mean(axis=1)
  members = np.moveaxis(ens, 1, 0)
  per_point = (0, 1, 2, 3)  # trajectory, time, lat, lon
  rmse_c = metrics.rmse(mean, truth, weights=w, axes=per_point)
  crps_c = metrics.crps_fair(members, truth, weights=w, axes=per_point)
  std = np.asarray(channel_std, np.float64)
  return {
      "rmse": float(metrics.rmse(mean, truth, weights=w)),
      "crps": float(metrics.crps_fair(members, truth, weights=w)),
      "spread_skill": float(metrics.spread_skill_ratio(members, truth,
                                                       weights=w)),
      "rmse_per_time": metrics.rmse(mean, truth, weights=w,
                                    axes=(0, 2, 3, 4)).tolist(),
      "per_channel": {c: {"rmse": float(rmse_c[i] * std[i]),
                          "crps": float(crps_c[i] * std[i])}
                      for i, c in enumerate(channels)},
  }


def evaluate_pilot(config: ExperimentConfig, ardm: GridARDM,
                   controller_config, controller_params, truth: np.ndarray,
                   latitude: np.ndarray, channel_std: np.ndarray,
                   regimes: Sequence[ObservationRegime], ensemble_size: int,
                   seed: int = 1, keep_ensembles: bool = False,
                   initial: np.ndarray | None = None,
                   reference=None) -> dict[str, dict]:
  """{regime: {method: scores}} for unguided, controlled, DPS (and LETKF).

  Args:
    truth: [K, T+h, lat, lon, C] standardised test trajectories.
    latitude: [lat] degrees, ascending (the split's coordinate).
    channel_std: [C] physical std per channel (for physical-unit scores).
    regimes: in the states' units (`pipeline.regimes_in_state_units`).
    initial: [K, M, h, lat, lon, C] initial ensembles (a cold start), or
      None: every member starts from the truth.
    reference: optional callable (k, observations, num_steps) -> [M, T+1,
      lat, lon, C], the perfect-model LETKF from trajectory k's cold start.
    keep_ensembles: also return the ensembles, truth and observations under
      "_arrays".
  """
  channels = state_variables(config)
  h = ardm.history_length
  num_steps = truth.shape[1] - h
  controller = bind_controller(controller_config, ardm.periodic,
                               controller_params)  # one compile for all
  rows = {}
  for regime in regimes:
    result = pipeline.assimilate_trajectories(
        ardm, controller_config, controller_params, truth, regime,
        ensemble_size, seed, controller, initial=initial)
    key = jax.random.PRNGKey(seed)
    ensembles = {"unguided": result.unguided, "controlled": result.controlled}
    seconds = {"unguided": result.seconds_unguided,
               "controlled": result.seconds_controlled}
    runs = {"dps": lambda k, traj: assimilate_baseline(
        "dps", ardm, jnp.asarray(traj[:h] if initial is None else initial[k]),
        result.observations[k], num_steps, jax.random.fold_in(key, 2 * k + 1),
        ensemble_size)}
    if reference is not None:
      runs["letkf"] = lambda k, traj: reference(k, result.observations[k],
                                                num_steps)
    for method, run in runs.items():
      outputs, seconds[method] = [], 0.0
      for k, traj in enumerate(np.asarray(truth, np.float32)):
        out, sec = _timed(lambda: run(k, traj))
        outputs.append(out)
        seconds[method] += sec
      ensembles[method] = np.stack(outputs)
    rows[regime.name] = {}
    for method in ensembles:
      scores = score_latlon(ensembles[method], result.truth, latitude,
                            channel_std, channels)
      scores["seconds"] = seconds[method]
      rows[regime.name][method] = scores
    if keep_ensembles:
      rows[regime.name]["_arrays"] = dict(
          ensembles, truth=result.truth, observations=result.observations)
  return rows


def _methods(by_method: dict) -> list[str]:
  return [m for m in METHODS if m in by_method]


def markdown_table(rows: dict[str, dict]) -> str:
  """One line per (regime, method): pooled and per-channel physical scores,
  wall-clock and its ratio to the unguided rollout."""
  first = next(iter(rows.values()))
  channels = list(first["unguided"]["per_channel"])
  lines = ["| regime | method | RMSE (std. units) | CRPS (std. units) | "
           + " | ".join(f"RMSE {c}" for c in channels)
           + " | time [s] | time / unguided |",
           "|---" * (6 + len(channels)) + "|"]
  for name, by_method in rows.items():
    base = by_method["unguided"]["seconds"]
    for method in _methods(by_method):
      s = by_method[method]
      ratio = s["seconds"] / base if base > 0 else float("nan")
      lines.append(
          f"| {name} | {method} | {s['rmse']:.4f} | {s['crps']:.4f} | "
          + " | ".join(f"{s['per_channel'][c]['rmse']:.4g}" for c in channels)
          + f" | {s['seconds']:.3f} | {ratio:.2f} |")
  return "\n".join(lines)


def plot_maps(arrays: dict, regime: str, channel: int, channel_name: str,
              path, trajectory: int = 0, time: int = -1) -> Path:
  """Truth, observations, each method's ensemble mean and its |error| for
  one channel at one lead time, as lat/lon maps (standardised units)."""
  truth = arrays["truth"][trajectory, time, ..., channel]
  obs = arrays["observations"][trajectory]
  t = time % arrays["truth"].shape[1]
  observed = np.asarray(obs.mask)[t, ..., channel] > 0
  panels = {"truth": truth,
            "observations": np.where(observed, np.asarray(obs.values)[
                t, ..., channel], np.nan)}
  means = {m: arrays[m][trajectory].mean(0)[time, ..., channel]
           for m in METHODS if m in arrays}
  panels.update(means)
  panels.update({f"|{m} - truth|": np.abs(v - truth) for m, v in means.items()})
  return plots.plot_fields(panels, path, f"{regime}: {channel_name}, lead"
                           f" step {t}", columns=len(means) + 2)


def write_pilot(rows: dict[str, dict], out_dir,
                channels: Sequence[str] = ()) -> dict[str, Path]:
  """Writes pilot.json, pilot.md, an RMSE-vs-lead-time plot and, where the
  ensembles were kept, one map per regime (`plot_maps`, first channel)."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  clean = {r: {m: s for m, s in by.items() if m in METHODS}
           for r, by in rows.items()}
  paths = {
      "json": write_json(out_dir / "pilot.json", clean),
      "markdown": atomic_write(out_dir / "pilot.md", lambda f: f.write(
          markdown_table(clean).encode())),
  }
  curves = {f"{r} {m}": np.asarray(s["rmse_per_time"])
            for r, by in clean.items() for m, s in by.items()}
  paths["plot"] = plots.plot_error_vs_time(
      curves, out_dir / "pilot_rmse_vs_time.png",
      "latitude-weighted RMSE of the ensemble mean (std. units)")
  for regime, by in rows.items():
    if "_arrays" in by:
      paths[f"map {regime}"] = plot_maps(
          by["_arrays"], regime, 0, channels[0] if channels else "channel 0",
          out_dir / f"pilot_map_{regime}.png")
  return paths


def climatological_start(config: ExperimentConfig, data_dir, count: int,
                         ensemble_size: int, history_length: int,
                         seed: int, reference=None
                         ) -> tuple[np.ndarray, np.ndarray | None]:
  """Cold-start ensembles [K, M, h, lat, lon, C] and their source indices.

  With a perfect-model filter (`reference`, Held-Suarez) the states are its
  stored validation-member model states (index [K, max(M, M_letkf)] into
  them, h = 1; the ensembles are the first M); otherwise random windows of h
  consecutive validation-split states (index None).
  """
  rng = np.random.default_rng(seed)
  if reference is not None:
    if history_length != 1:
      raise ValueError("the perfect-model cold start needs an ARDM with"
                       f" history_length 1, got {history_length}")
    size = max(ensemble_size, reference.options.ensemble_size)
    index = rng.integers(0, reference.num_states, (count, size))
    states = reference.initial_channels(index[:, :ensemble_size].ravel())
    return (states.reshape((count, ensemble_size, 1) + states.shape[1:]),
            index)
  validation = pipeline.load_split(config, data_dir, "validation")
  traj = rng.integers(0, validation.shape[0], (count, ensemble_size))
  first = rng.integers(0, validation.shape[1] - history_length + 1,
                       (count, ensemble_size))
  states = np.stack([validation[i, t:t + history_length]
                     for i, t in zip(traj.ravel(), first.ravel())])
  return states.reshape((count, ensemble_size) + states.shape[1:]), None


def _perfect_model(config: ExperimentConfig, data_dir, ds):
  """The Held-Suarez LETKF for a config on the simulated store, else None."""
  simulation = getattr(config.pde, "simulation", None)
  if simulation is None:
    return None
  from gencast_control.data.era5_trajectories import MEAN_ATTR
  from gencast_control.systems import held_suarez
  store = config.pde.store or Path(data_dir) / "heldsuarez.zarr"
  states = held_suarez.states_path(store)
  if not states.exists():
    raise FileNotFoundError(
        f"{states} (the model states of the Held-Suarez validation member)"
        " is missing: rerun `gencast-control simulate --config heldsuarez`")
  channels = state_variables(config)
  return held_suarez.PerfectModelFilter(
      simulation, states, channels,
      np.asarray([ds[c].attrs[MEAN_ATTR] for c in channels]),
      channel_stds(ds, channels), config.pde.reference)


def run_pilot(config: ExperimentConfig, data_dir, ardm_path, controller_path,
              out_dir, regimes: Sequence[str] | None = None,
              keep_ensembles: bool = False, start: str = "cold") -> dict:
  """Loads the test split and checkpoints, evaluates, writes the results."""
  if config.system != "era5":
    raise ValueError(f"the pilot evaluation needs an ERA5 config (system"
                     f" 'era5'), got system {config.system!r}")
  if start not in STARTS:
    raise ValueError(f"unknown start {start!r}; use one of {STARTS}")
  ardm, controller_config, params, _, _ = pipeline.load_checkpoints(
      config, ardm_path, controller_path)
  a = config.assimilation
  length = a.num_steps + ardm.history_length
  truth = pipeline.load_split(config, data_dir, "test")
  if truth.shape[1] < length:
    raise ValueError(
        f"test trajectories hold {truth.shape[1]} states but"
        f" assimilation.num_steps = {a.num_steps} needs {length}; lower it or"
        " extract longer trajectories (data.num_steps)")
  truth = truth[:a.num_trajectories, :length]
  ds = trajectories.open_trajectories(pipeline.find_split(data_dir, "test"),
                                      load=False)
  channels = state_variables(config)
  chosen = pipeline.regimes_in_state_units(
      [config.regime(r) for r in regimes or [r.name for r in config.regimes]],
      data_dir, channels)
  initial = reference = None
  if start == "cold":
    model = _perfect_model(config, data_dir, ds)
    initial, index = climatological_start(
        config, data_dir, truth.shape[0], a.ensemble_size,
        ardm.history_length, a.seed + 2, model)
    if model is not None:
      step_hours = float(config.pde.step_hours)
      members = model.options.ensemble_size
      reference = lambda k, obs, n: model.run(index[k, :members], obs, n,
                                              step_hours)
  rows = evaluate_pilot(config, ardm, controller_config, params, truth,
                        ds["latitude"].values, channel_stds(ds, channels),
                        chosen, a.ensemble_size, a.seed + 1, True, initial,
                        reference)
  print(markdown_table({r: {m: by[m] for m in _methods(by)}
                        for r, by in rows.items()}))
  for path in write_pilot(rows, out_dir, channels).values():
    print(f"wrote {path}")
  if not keep_ensembles:
    for by in rows.values():
      by.pop("_arrays")
  return rows
