"""The ERA5 pilot evaluation: controller vs unguided ARDM vs DPS per density.

For each observation regime (density) and test trajectory, the three methods
share the truth, the observations and the PRNG key of the ensemble members
(`pipeline.assimilate_trajectories` for unguided/controlled,
`baselines.assimilate_baseline("dps")` with the same key). Scores follow
WeatherBench2 (Rasp et al. 2024) on the lat/lon grid, over lead times
t = 1..T (t = 0 is the shared initial state), with w_i the cell-area latitude
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

from gencast_control import metrics, pipeline, plots, trajectories
from gencast_control.adapters.grid import GridARDM
from gencast_control.baselines import assimilate_baseline
from gencast_control.checkpoint import atomic_write, write_json
from gencast_control.controller import bind_controller
from gencast_control.era5_trajectories import channel_stds
from gencast_control.experiment import ExperimentConfig, state_variables

METHODS = ("unguided", "controlled", "dps")


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
                   regimes: Sequence[str], ensemble_size: int, seed: int = 1,
                   keep_ensembles: bool = False) -> dict[str, dict]:
  """{regime: {method: scores}} for unguided, controlled and DPS.

  Args:
    truth: [K, T+h, lat, lon, C] standardised test trajectories.
    latitude: [lat] degrees, ascending (the split's coordinate).
    channel_std: [C] physical std per channel (for physical-unit scores).
    keep_ensembles: also return the ensembles and truth under "_arrays".
  """
  channels = state_variables(config)
  h = ardm.history_length
  num_steps = truth.shape[1] - h
  controller = bind_controller(controller_config, ardm.periodic,
                               controller_params)  # one compile for all
  rows = {}
  for name in regimes:
    regime = config.regime(name)
    result = pipeline.assimilate_trajectories(
        ardm, controller_config, controller_params, truth, regime,
        ensemble_size, seed, controller)
    key = jax.random.PRNGKey(seed)
    dps, dps_seconds = [], 0.0
    for k, traj in enumerate(np.asarray(truth, np.float32)):
      out, sec = _timed(lambda: assimilate_baseline(
          "dps", ardm, jnp.asarray(traj[:h]), result.observations[k],
          num_steps, jax.random.fold_in(key, 2 * k + 1), ensemble_size))
      dps.append(out)
      dps_seconds += sec
    ensembles = {"unguided": result.unguided, "controlled": result.controlled,
                 "dps": np.stack(dps)}
    seconds = {"unguided": result.seconds_unguided,
               "controlled": result.seconds_controlled, "dps": dps_seconds}
    rows[name] = {}
    for method in METHODS:
      scores = score_latlon(ensembles[method], result.truth, latitude,
                            channel_std, channels)
      scores["seconds"] = seconds[method]
      rows[name][method] = scores
    if keep_ensembles:
      rows[name]["_arrays"] = dict(ensembles, truth=result.truth)
  return rows


def markdown_table(rows: dict[str, dict]) -> str:
  """One line per (regime, method): pooled and per-channel physical scores."""
  first = next(iter(rows.values()))
  channels = list(first["unguided"]["per_channel"])
  lines = ["| regime | method | RMSE (std. units) | CRPS (std. units) | "
           + " | ".join(f"RMSE {c}" for c in channels) + " | time [s] |",
           "|---" * (5 + len(channels)) + "|"]
  for name, by_method in rows.items():
    for method in METHODS:
      s = by_method[method]
      lines.append(
          f"| {name} | {method} | {s['rmse']:.4f} | {s['crps']:.4f} | "
          + " | ".join(f"{s['per_channel'][c]['rmse']:.4g}" for c in channels)
          + f" | {s['seconds']:.3f} |")
  return "\n".join(lines)


def write_pilot(rows: dict[str, dict], out_dir) -> dict[str, Path]:
  """Writes pilot.json, pilot.md and an RMSE-vs-lead-time plot."""
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
  return paths


def run_pilot(config: ExperimentConfig, data_dir, ardm_path, controller_path,
              out_dir, regimes: Sequence[str] | None = None,
              keep_ensembles: bool = False) -> dict:
  """Loads the test split and checkpoints, evaluates, writes the results."""
  if config.system != "era5":
    raise ValueError(f"the pilot evaluation needs an ERA5 config (system"
                     f" 'era5'), got system {config.system!r}")
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
  rows = evaluate_pilot(config, ardm, controller_config, params, truth,
                        ds["latitude"].values, channel_stds(ds, channels),
                        regimes or [r.name for r in config.regimes],
                        a.ensemble_size, a.seed + 1, keep_ensembles)
  print(markdown_table({r: {m: by[m] for m in METHODS}
                        for r, by in rows.items()}))
  for path in write_pilot(rows, out_dir).values():
    print(f"wrote {path}")
  return rows
