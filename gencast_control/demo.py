"""The main job: KS assimilation with the shipped ARDM and controller.

Generates unseen truth trajectories with the KS solver, observes them under the
sparse regime, and compares the unguided ARDM forecast with the controlled
rollout (one causal pass, no gradients at inference), scored by
`evaluation.engine`. Writes metrics.{json,csv,md}, a plot, the NetCDF result
and the config to the results folder.
"""

from __future__ import annotations

import time
from pathlib import Path

from gencast_control.core import config as config_lib
from gencast_control.core.checkpoint import atomic_write, check_output, write_json
from gencast_control.evaluation import engine, forecasts, plots
from gencast_control.systems import pipeline
from gencast_control.systems.experiment import ExperimentConfig, state_variables
from gencast_control.systems.truth import test_trajectories

# The files run_demo writes into its results folder.
OUTPUT_FILES = ("assimilation.nc", "assimilation.png", "metrics.json",
                "metrics.csv", "metrics.md", "config.json")


def build_checkpoints(config: ExperimentConfig, out_dir,
                      progress: bool = True) -> tuple[Path, Path]:
  """Rebuilds the ARDM and controller from scratch: simulate, train, train."""
  out_dir = Path(out_dir)
  data_dir = out_dir / "data"
  ardm_path = out_dir / f"{config.name}_ardm.npz"
  controller_path = out_dir / f"{config.name}_controller.npz"
  t0 = time.perf_counter()
  pipeline.simulate(config, data_dir)
  print(f"simulated trajectories in {time.perf_counter() - t0:.0f} s")
  pipeline.train_ardm_step(config, data_dir, ardm_path,
                           out_dir / "work_ardm", progress)
  print(f"trained ARDM, total {time.perf_counter() - t0:.0f} s")
  pipeline.train_controller_step(config, ardm_path, data_dir, controller_path,
                                 out_dir / "work_controller", progress)
  print(f"trained controller, total {time.perf_counter() - t0:.0f} s")
  return ardm_path, controller_path


def run_demo(config: ExperimentConfig, out_dir="results/demo",
             retrain: bool = False, checkpoints=None) -> dict:
  """Runs the demo; returns the scores. `checkpoints` = (ardm, controller)."""
  out_dir = check_output(out_dir, "folder")  # before any work
  out_dir.mkdir(parents=True, exist_ok=True)
  t_start = time.perf_counter()
  if retrain:
    checkpoints = build_checkpoints(config, out_dir / "retrained")
  ardm_path, controller_path = checkpoints or pipeline.shipped_checkpoints(
      config.name)
  ardm, controller_config, params, _, _ = pipeline.load_checkpoints(
      config, ardm_path, controller_path)
  truth = test_trajectories(config)
  regime = config.regime(config.assimilation.regime)
  result = forecasts.assimilate_trajectories(
      ardm, controller_config, params, truth, regime,
      config.assimilation.ensemble_size, config.assimilation.seed)
  scores = forecasts.score(result, system=config.system,
                           pde_config=config.pde)
  rows = engine.report_rows({regime.name: scores})
  table = engine.report_markdown(rows)
  print(f"regime: {regime.name}\n{table}")

  ds = forecasts.result_dataset(config, result)
  nc_path = out_dir / "assimilation.nc"
  atomic_write(nc_path, lambda f: f.write(ds.to_netcdf()))
  plot_path = plots.plot_assimilation(ds, state_variables(config)[0],
                                      out_dir / "assimilation.png")
  summary = {"scores": scores, "regime": regime.name,
             "ardm": str(ardm_path), "controller": str(controller_path),
             "total_seconds": round(time.perf_counter() - t_start, 1)}
  paths = engine.write_report(out_dir, "metrics", summary, rows, table)
  write_json(out_dir / "config.json", config_lib.to_dict(config))
  print(f"wrote {nc_path}, {plot_path}, {paths['json']}, {paths['markdown']}")
  return summary
