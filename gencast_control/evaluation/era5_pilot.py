"""The ERA5 pilot evaluation: controller vs unguided ARDM vs DPS per regime.

For each observation regime and test trajectory, the methods share the
truth, the observations, the initial ensemble and the PRNG key of the
members; they are run, timed (compiled ahead of time, run once) and scored
by `evaluation.engine`, like the demo and the benchmark. Starts: "truth"
(every member starts from the true state) or "cold" (member m of trajectory
k starts from its own random climatological state: a state of the
validation split, or for the simulated Held-Suarez store one of the
validation member's model states). On the Held-Suarez store a fourth
method, "letkf", is the perfect-model reference: a localised ensemble
transform Kalman filter with dinosaur, the model that made the truth, as
its model (`baselines.perfect_model`), from the same cold start.

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

from pathlib import Path
from typing import Sequence

import jax
import numpy as np
import tqdm

from gencast_control.baselines.perfect_model import PerfectModelFilter
from gencast_control.core.ardm import FrozenARDM
from gencast_control.core.controller import bind_controller
from gencast_control.core.regimes import ObservationRegime
from gencast_control.data import trajectories
from gencast_control.data.era5_trajectories import channel_stds
from gencast_control.evaluation import (engine, forecasts, metrics, plots,
                                        provenance)
from gencast_control.systems import pipeline
from gencast_control.systems.experiment import (ExperimentConfig, get_system,
                                                state_variables)
from gencast_control.systems.truth import (climatological_start,
                                           load_test_window)

METHODS = ("unguided", "controlled", "dps", "letkf")
STARTS = ("cold", "truth")
SPLITS = ("test", "validation")


def evaluate_pilot(config: ExperimentConfig, ardm: FrozenARDM,
                   controller_config, controller_params, truth: np.ndarray,
                   latitude: np.ndarray, channel_std: np.ndarray,
                   regimes: Sequence[ObservationRegime], ensemble_size: int,
                   seed: int = 1, keep_ensembles: bool = False,
                   initial: np.ndarray | None = None,
                   reference=None,
                   methods: Sequence[str] = METHODS,
                   progress: bool = False, contexts=None) -> dict[str, dict]:
  """{regime: {method: scores}} for unguided, controlled, DPS (and LETKF),
  run, timed and scored by `evaluation.engine` (its keys: every method sees
  the same observations, initial ensemble and member keys).

  Args:
    truth: [K, T+h, lat, lon, C] standardised test trajectories.
    latitude: [lat] degrees, ascending (the split's coordinate).
    channel_std: [C] physical std per channel (for physical-unit scores).
    regimes: in the states' units (`pipeline.regimes_in_state_units`).
    initial: [K, M, h, lat, lon, C] initial ensembles (a cold start), or
      None: every member starts from the truth.
    reference: optional callable (k, observations, num_steps) -> program
      (`engine.Program`) of the perfect-model LETKF from trajectory k's cold
      start, an ensemble [M, T+1, lat, lon, C].
    keep_ensembles: also return the ensembles, truth and observations under
      "_arrays".
    methods: the methods to run (of METHODS; "unguided", the reference of
      the time ratios, always runs; "letkf" needs `reference`).
    progress: a progress bar over regimes x methods (stderr).
    contexts: the ARDM's per-step context of each trajectory (leaves [K,
      h + T, ...]; GenCast's forcings, `pipeline.split_context`), or None.
  """
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise ValueError(f"unknown pilot method(s) {unknown}; choose from"
                     f" {METHODS}")
  channels = state_variables(config)
  h = ardm.history_length
  truth = np.asarray(truth, np.float32)
  num_steps = truth.shape[1] - h
  starts = truth[:, :h] if initial is None else np.asarray(initial,
                                                           np.float32)
  controller = bind_controller(controller_config, ardm.periodic,
                               controller_params)  # one compile for all
  weights = np.broadcast_to(metrics.area_weights(latitude)[:, None],
                            truth.shape[2:4])
  key = jax.random.PRNGKey(seed)
  chosen = [m for m in METHODS if (m == "unguided" or m in methods)
            and (m != "letkf" or reference is not None)]
  bar = tqdm.tqdm(total=len(regimes) * len(chosen), desc="pilot",
                  disable=not progress)
  rows = {}
  for regime in regimes:
    observations = engine.observe(regime, truth, h, key)
    programs = forecasts.forecast_programs(
        ardm, controller, controller_config.horizon, starts, observations,
        num_steps, key, ensemble_size, contexts)
    programs["dps"] = forecasts.baseline_programs(
        "dps", ardm, starts, observations, num_steps, key, ensemble_size,
        contexts)
    if reference is not None:
      programs["letkf"] = lambda k: reference(k, observations[k], num_steps)
    runs = {}
    for method in chosen:
      bar.set_postfix_str(f"{regime.name}: {method}")
      runs[method] = engine.run_programs(programs[method](k)
                                         for k in range(len(truth)))
      bar.update()
    rows[regime.name] = {
        method: {**engine.score(run.ensembles, truth[:, h - 1:], weights,
                                channels=channels, channel_std=channel_std,
                                system=config.system, pde_config=config.pde),
                 "seconds": run.seconds, "cpu_seconds": run.cpu_seconds}
        for method, run in runs.items()}
    if keep_ensembles:
      rows[regime.name]["_arrays"] = dict(
          {m: run.ensembles for m, run in runs.items()},
          truth=truth[:, h - 1:], observations=observations)
  bar.close()
  return rows


def _methods(by_method: dict) -> list[str]:
  return [m for m in METHODS if m in by_method]


def report_rows(rows: dict[str, dict]) -> list[dict]:
  """`engine.report_rows` with ratios to the unguided rollout: pooled and
  per-channel physical scores, wall-clock and CPU time."""
  return engine.report_rows(rows, reference="unguided")


def markdown_table(rows: dict[str, dict]) -> str:
  """The engine's table (`engine.report_markdown`) of `report_rows`, ratios
  to the unguided rollout, plus the per-channel physical RMSE."""
  table = report_rows(rows)
  channels = [k for k in table[0] if k.startswith("rmse ")]
  return engine.report_markdown(table, engine.TABLE_COLUMNS + tuple(channels),
                                reference="unguided")


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


# The files write_pilot writes (glob patterns).
OUTPUT_FILES = ("pilot.json", "pilot.csv", "pilot.md",
                "pilot_rmse_vs_time.png", "pilot_map_*.png")


def publish_path(config_name: str, start: str = "cold",
                 split: str = "test") -> Path:
  """docs/results/pilot_CONFIG[_START][_SPLIT].md of the checkout: the
  start and split named where they are not the defaults (cold, test)."""
  return provenance.publish_path(
      "pilot", config_name, *([start] if start != "cold" else []),
      *([split] if split != "test" else []))


def write_pilot(rows: dict[str, dict], out_dir,
                channels: Sequence[str] = (),
                command: str | Sequence[str] | None = None,
                title: str | None = None, note: str = "",
                publish=None) -> dict[str, Path]:
  """Writes pilot.json, .csv, .md, an RMSE-vs-lead-time plot and, where the
  ensembles were kept, one map per regime (`plot_maps`, first channel).

  The markdown: `note` (a line on the setup), then the table, under the
  provenance header naming `command` (engine.write_report); with `publish`
  (a docs/results/ path, `publish_path`) the markdown also goes there.
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  clean = {r: {m: s for m, s in by.items() if m in METHODS}
           for r, by in rows.items()}
  paths = engine.write_report(
      out_dir, "pilot", clean, report_rows(clean),
      (note.strip() + "\n\n" if note.strip() else "")
      + markdown_table(clean), command, title, publish)
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
  return PerfectModelFilter(
      simulation, states, channels,
      np.asarray([ds[c].attrs[MEAN_ATTR] for c in channels]),
      channel_stds(ds, channels), config.pde.reference)


def run_pilot(config: ExperimentConfig, data_dir, ardm_path, controller_path,
              out_dir, regimes: Sequence[str] | None = None,
              keep_ensembles: bool = False, start: str = "cold",
              split: str = "test",
              methods: Sequence[str] | None = None,
              command: str | Sequence[str] | None = None,
              publish=None) -> dict:
  """Loads a split (the test split; "validation" to choose settings
  without touching the test data) and the checkpoints, evaluates, writes
  the results (`write_pilot`; command: named in the markdown's provenance
  header, default sys.argv; publish: a docs/results/ path for the table
  too, `publish_path`)."""
  if not get_system(config.system).latlon:
    raise ValueError(f"the pilot evaluation needs a lat/lon config (system"
                     f" 'era5'), got system {config.system!r}")
  if start not in STARTS:
    raise ValueError(f"unknown start {start!r}; use one of {STARTS}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
  ardm, controller_config, params, _, _ = pipeline.load_checkpoints(
      config, ardm_path, controller_path, data_dir=data_dir)
  a = config.assimilation
  truth = load_test_window(config, data_dir, split)
  contexts = pipeline.split_context(ardm, data_dir, split, *truth.shape[:2])
  ds = trajectories.open_trajectories(pipeline.find_split(data_dir, split),
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
      reference = lambda k, obs, n: model.program(index[k, :members], obs, n,
                                                  step_hours)
  rows = evaluate_pilot(config, ardm, controller_config, params, truth,
                        ds["latitude"].values, channel_stds(ds, channels),
                        chosen, a.ensemble_size, a.seed + 1, True, initial,
                        reference, methods or METHODS, progress=True,
                        contexts=contexts)
  print(markdown_table({r: {m: by[m] for m in _methods(by)}
                        for r, by in rows.items()}))
  steps = truth.shape[1] - ardm.history_length
  note = (f"{truth.shape[0]} {split} trajectories x {steps} steps,"
          f" {a.ensemble_size} members, {start} start; latitude-weighted"
          f" scores over t = 1..{steps}; channels {', '.join(channels)}.")
  title = f"Pilot: {config.name} ({split} split, {start} start)"
  for path in write_pilot(rows, out_dir, channels, command, title, note,
                          publish).values():
    print(f"wrote {path}")
  if not keep_ensembles:
    for by in rows.values():
      by.pop("_arrays")
  return rows
