"""Evaluation of a controller against the unguided ARDM over observation regimes.

For each regime, the same truth trajectories, observations and PRNG keys are
used for both methods; wall-clock is measured after compilation. Results are a
JSON-able dict, a markdown table and an error-vs-time plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from gencast_control import pipeline

from gencast_control.evaluation import metrics, plots
from gencast_control.core.checkpoint import atomic_write, write_json
from gencast_control.systems.experiment import ExperimentConfig


def evaluate_regimes(config: ExperimentConfig, ardm, controller_config,
                     controller_params, truth: np.ndarray,
                     regimes: Sequence[str], ensemble_size: int,
                     seed: int = 1, weights: np.ndarray | None = None
                     ) -> dict[str, dict]:
  """Scores both methods per regime; adds per-time RMSE curves.

  weights: optional [*spatial] weights of the spatial means (latitude area
    weights for ERA5, `pipeline.spatial_weights`); None = uniform.
  """
  rows = {}
  for name in regimes:
    result = pipeline.assimilate_trajectories(
        ardm, controller_config, controller_params, truth,
        config.regime(name), ensemble_size, seed)
    scores = pipeline.score(result, weights)
    w = None if weights is None else np.asarray(weights)[..., None]
    for method in ("unguided", "controlled"):
      scores[method]["rmse_per_time"] = metrics.rmse(  # t = 1..T
          getattr(result, method)[:, :, 1:].mean(axis=1),
          result.truth[:, 1:], weights=w,
          axes=(0,) + tuple(range(2, result.truth.ndim))).tolist()
    rows[name] = scores
  return rows


def markdown_table(rows: dict[str, dict]) -> str:
  lines = ["| regime | RMSE unguided | RMSE controlled | RMSE ratio |"
           " time unguided [s] | time controlled [s] | time ratio |",
           "|---|---|---|---|---|---|---|"]
  for name, s in rows.items():
    u, c = s["unguided"], s["controlled"]
    lines.append(f"| {name} | {u['rmse']:.4f} | {c['rmse']:.4f} |"
                 f" {u['rmse'] / c['rmse']:.1f}x | {u['seconds']:.3f} |"
                 f" {c['seconds']:.3f} | {c['seconds'] / u['seconds']:.2f}x |")
  return "\n".join(lines)


def write_evaluation(rows: dict[str, dict], out_dir) -> dict[str, Path]:
  """Writes evaluation.json, evaluation.md and one error-vs-time plot."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {
      "json": write_json(out_dir / "evaluation.json", rows),
      "markdown": atomic_write(out_dir / "evaluation.md",
                               lambda f: f.write(markdown_table(rows)
                                                 .encode())),
  }
  curves = {f"{name} {method}": np.asarray(s[method]["rmse_per_time"])
            for name, s in rows.items()
            for method in ("unguided", "controlled")}
  paths["plot"] = plots.plot_error_vs_time(
      curves, out_dir / "rmse_vs_time.png", "RMSE of the ensemble mean")
  return paths
