"""Evaluation of a controller against the unguided ARDM over observation regimes.

For each regime, both methods share the truth, observations and PRNG keys,
and are run, timed and scored by `evaluation.engine` (scores over t = 1..T).
Results are a JSON-able dict and evaluation.{json,csv,md} plus an
error-vs-time plot; the markdown carries the provenance header
(`provenance`) and, with --publish, also goes to docs/results/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from gencast_control.evaluation import engine, forecasts, plots
from gencast_control.systems.experiment import ExperimentConfig

METHODS = ("unguided", "controlled")


def evaluate_regimes(config: ExperimentConfig, ardm, controller_config,
                     controller_params, truth: np.ndarray,
                     regimes: Sequence[str], ensemble_size: int,
                     seed: int = 1, weights: np.ndarray | None = None
                     ) -> dict[str, dict]:
  """{regime: {method: scores}} (`forecasts.score`, with the RMSE curve over
  t = 0..T).

  weights: optional [*spatial] weights of the spatial means (latitude area
    weights for ERA5, `forecasts.spatial_weights`); None = uniform.
  """
  return {name: forecasts.score(forecasts.assimilate_trajectories(
              ardm, controller_config, controller_params, truth,
              config.regime(name), ensemble_size, seed), weights)
          for name in regimes}


def flat_rows(rows: dict[str, dict]) -> list[dict]:
  """One row per (regime, method) with its ratios to the controller."""
  out = []
  for name, by_method in rows.items():
    c = by_method["controlled"]
    for method in METHODS:
      s = by_method[method]
      out.append({"regime": name, "method": method, "rmse": s["rmse"],
                  "rmse_vs_controlled": engine.ratio(s["rmse"], c["rmse"]),
                  "crps": s["crps"], "spread_skill": s["spread_skill"],
                  "seconds": s["seconds"],
                  "seconds_vs_controlled": engine.ratio(s["seconds"],
                                                        c["seconds"])})
  return out


def markdown_table(rows: dict[str, dict]) -> str:
  return engine.markdown_table(
      ("regime", "RMSE unguided", "RMSE controlled", "RMSE ratio",
       "time unguided [s]", "time controlled [s]", "time ratio"),
      ((name, f"{s['unguided']['rmse']:.4f}", f"{s['controlled']['rmse']:.4f}",
        f"{s['unguided']['rmse'] / s['controlled']['rmse']:.1f}x",
        f"{s['unguided']['seconds']:.3f}", f"{s['controlled']['seconds']:.3f}",
        f"{s['controlled']['seconds'] / s['unguided']['seconds']:.2f}x")
       for name, s in rows.items()))


def publish_path(config_name: str):
  """docs/results/evaluate_CONFIG.md of the checkout."""
  from gencast_control.evaluation import provenance
  return provenance.publish_path("evaluate", config_name)


# The files write_evaluation writes.
OUTPUT_FILES = ("evaluation.json", "evaluation.csv", "evaluation.md",
                "rmse_vs_time.png")


def write_evaluation(rows: dict[str, dict], out_dir,
                     command: str | Sequence[str] | None = None,
                     title: str | None = None, note: str = "",
                     publish=None) -> dict[str, Path]:
  """Writes evaluation.json, .csv, .md and one error-vs-time plot.

  The markdown: `note` (a line on the setup), then the table, under the
  provenance header naming `command` (engine.write_report); with `publish`
  (a docs/results/ path, `publish_path`) the markdown also goes there.
  """
  paths = engine.write_report(
      out_dir, "evaluation", rows, flat_rows(rows),
      (note.strip() + "\n\n" if note.strip() else "") + markdown_table(rows),
      command, title, publish)
  curves = {f"{name} {method}": np.asarray(s[method]["rmse_per_time"])
            for name, s in rows.items() for method in METHODS}
  paths["plot"] = plots.plot_error_vs_time(
      curves, Path(out_dir) / "rmse_vs_time.png", "RMSE of the ensemble mean")
  return paths
