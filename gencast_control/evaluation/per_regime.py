"""Evaluation of a controller against the unguided ARDM over observation regimes.

For each regime, both methods share the truth, observations and PRNG keys,
and are run, timed and scored by `evaluation.engine` (scores over t = 1..T);
on systems with a true solver the classical filters of `baselines.filters`
(the tuned LETKF and LETKS, the untuned EnKF, and the LETKF and LETKS on
the same ARDM) can run beside them on the same observations and keys
(`methods`, the command's --method).
Results are a JSON-able dict and evaluation.{json,csv,md} plus an
error-vs-time plot; the markdown carries the provenance header
(`provenance`) and, with --publish, also goes to docs/results/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from gencast_control.baselines import filters
from gencast_control.evaluation import benchmark, engine, forecasts, plots
from gencast_control.systems.experiment import ExperimentConfig


def evaluate_regimes(config: ExperimentConfig, ardm, controller_config,
                     controller_params, truth: np.ndarray,
                     regimes: Sequence[str], ensemble_size: int,
                     seed: int = 1, weights: np.ndarray | None = None,
                     methods: Sequence[str] = ()) -> dict[str, dict]:
  """{regime: {method: scores}} (`forecasts.score`: the engine's scores,
  the per-lead-time curves over t = 0..T and the system's diagnostics).

  weights: optional [*spatial] weights of the spatial means (latitude area
    weights for ERA5, `forecasts.spatial_weights`); None = uniform.
  methods: classical filters to run as well (`filters.METHODS`), with the
    benchmark's options (`benchmark.filter_options`: true start, this
    ensemble size).
  """
  unknown = sorted(set(methods) - set(filters.METHODS))
  if unknown:
    raise ValueError(f"unknown method(s) {unknown}; evaluate runs the"
                     " controller, the unguided forecast and"
                     f" {filters.METHODS}")
  options = (benchmark.baseline_options(config, controller_config.horizon,
                                        ardm) if methods else {})
  out = {}
  for name in regimes:
    result = forecasts.assimilate_trajectories(
        ardm, controller_config, controller_params, truth,
        config.regime(name), ensemble_size, seed)
    out[name] = forecasts.score(result, weights, config.system, config.pde)
    for method in methods:
      out[name][method] = filter_scores(
          config, method, options, result, ensemble_size, seed, weights)
  return out


def filter_scores(config: ExperimentConfig, method: str, options: dict,
                  result: forecasts.AssimilationResult, ensemble_size: int,
                  seed: int, weights: np.ndarray | None) -> dict:
  """A classical filter's scores on the truth, observations and member keys
  of `result` (from the true state)."""
  method_options, tuned = benchmark.filter_options(
      config, method, options, "truth", ensemble_size,
      result.truth.shape[1] - 1, result.regime.name)
  run = benchmark.run_method(method, None, result.truth[:, :1],
                             result.observations, result.truth.shape[1] - 1,
                             jax.random.PRNGKey(seed), ensemble_size,
                             {method: method_options})
  scores = engine.score(run.ensembles, result.truth, weights,
                        system=config.system, pde_config=config.pde)
  scores["seconds"] = run.seconds  # as the two forecasts' (wall-clock)
  if method in benchmark.TUNED_FILTERS:
    scores["label"] = benchmark.filter_label(method, method_options, tuned)
  return scores


def markdown_table(rows: dict[str, dict]) -> str:
  """The table of {regime: {method: scores}} (`engine.report_markdown`),
  ratios to the controller."""
  return engine.report_markdown(engine.report_rows(rows))


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
      out_dir, "evaluation", rows, engine.report_rows(rows),
      (note.strip() + "\n\n" if note.strip() else "") + markdown_table(rows),
      command, title, publish)
  curves = {f"{name} {method}": np.asarray(s[method]["rmse_per_time"])
            for name, s in rows.items() for method in s}
  paths["plot"] = plots.plot_error_vs_time(
      curves, Path(out_dir) / "rmse_vs_time.png", "RMSE of the ensemble mean")
  return paths
