"""The DA benchmark: the controller against diffusion and Kalman baselines.

For every PDE config, observation regime and method of METHODS, on the SAME
held-out truth trajectories (`systems.truth.test_trajectories`, seeds
disjoint from training; with split "validation" the validation split's,
to compare candidate controllers without touching the test truth), the
SAME observations and the SAME PRNG keys as
`forecasts.assimilate_trajectories` (trajectory k: observations drawn with
fold_in(key, 2k), ensemble member m with fold_in(fold_in(key, 2k + 1), m)),
and the same number of sampler sub-steps:

  controlled      the learned controller: one causal rollout, no gradients
  unguided        the plain ARDM forecast
  dps, sda        gradient guidance through the frozen denoiser (baselines.py)
  repaint         replacement of the observed entries (baselines.py)
  enkf            stochastic EnKF with the true solver (enkf.py), untuned:
                  the project's old classical reference
  letkf, letks    the localised LETKF and the fixed-lag LETKS (lag H - 1,
                  the controller's preview) with the true solver
                  (`baselines.filters`), radius and inflation tuned on the
                  validation split per regime, start and ensemble size
                  (`baselines.filter_tuning`); "(untuned)" where not
  letkf_ardm,     the same two with the controller's frozen ARDM as their
  letks_ardm      model instead of the true solver (same-model filters: the
                  gap between them and the controller is the assimilation's,
                  not the model's), tuned the same way

Starts (`start`): "truth", every member starts from the true state (a twin
experiment's best case); "cold", member m of trajectory k starts from its own
random climatological state (`systems.truth.climatological_histories`), as
in real DA where the state is unknown. Every method gets the same initial
ensemble; the classical filters add their initial spread to it (from the
true state an unperturbed ensemble has no spread and never updates).

Scores (`engine.score` with the config's system): the pooled rmse, crps and
spread_skill, DAPPER's rmse_a / spread_a and the rank histogram over the
assimilated times t = B+1..T after a burn-in of B steps (default B = T // 5);
the curves rmse_per_time, crps_per_time, spread_per_time and
spread_skill_per_time over t = 0..T (and rmse_per_trajectory_time, one per
trajectory: `lead_evidence`); the system's spectrum_error,
physics_error (KS total variation, Kolmogorov enstrophy) and diverged
(members whose state RMS passes DIVERGENCE_FACTOR x the truth's, out of
K x M) of `diagnostics`. Beside them:

  seconds         wall-clock of the compiled program, summed over the
                  trajectories (compilation excluded: each program is
                  compiled ahead of time, then run once per trajectory)
  cpu_seconds     the process's CPU time over the same runs (all threads):
                  the work done, less sensitive than wall-clock to other
                  jobs sharing the cores
  control_size    controlled only: per sampler sub-step, the RMS of the
                  control's displacement (sigma_hat - sigma_next) u over
                  sigma_hat (first trajectory: one member, or the mean
                  over the members of an ensemble-aware controller)
  memory          XLA's estimate for the compiled program of one
                  trajectory's ensemble (argument + output + temp bytes of
                  `compiled.memory_analysis()`), not a measured peak

`run_benchmark` writes benchmark.csv, benchmark.json, benchmark.md (under
the provenance header: command, date, machine, versions, commit) and
plots; with `publish` (the command's --publish), each config's table also
goes to docs/results/benchmark_CONFIG.md (`publish_paths`).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.baselines import filter_tuning, filters
from gencast_control.baselines import guidance as baselines
from gencast_control.core import assimilation
from gencast_control.core.config import load_config
from gencast_control.core.controller import bind_controller
from gencast_control.core.observations import Observations
from gencast_control.evaluation import engine, plots, provenance
from gencast_control.evaluation.diagnostics import (DIVERGENCE_FACTOR,
                                                    physics_metric_name,
                                                    wavenumbers)
from gencast_control.systems import pipeline
from gencast_control.systems.experiment import ExperimentConfig
from gencast_control.systems.truth import (cold_ensembles, test_trajectories,
                                           validation_trajectories)

# controlled; unguided, dps, sda, repaint; enkf, letkf, letks, letkf_ardm,
# letks_ardm
METHODS = ("controlled",) + baselines.METHODS + filters.METHODS
# The filters with a true solver (the goals' classical reference), the same
# filters on the ARDM, and all those whose settings are tuned on validation.
PERFECT_MODEL_FILTERS = ("letkf", "letks")
SAME_MODEL_FILTERS = filters.ARDM_METHODS
TUNED_FILTERS = PERFECT_MODEL_FILTERS + SAME_MODEL_FILTERS
STARTS = ("truth", "cold")
# The truth a run scores against: the held-out test draws, or the validation
# split's (to compare candidate controllers without touching the test truth).
SPLITS = ("test", "validation")
GRADIENT_GUIDED = ("dps", "sda")
DEFAULT_CONFIGS = ("ks", "kolmogorov")


@dataclasses.dataclass(frozen=True)
class BenchmarkSize:
  """Held-out trajectories K, assimilated steps T and ensemble members M."""
  num_trajectories: int
  num_steps: int
  ensemble_size: int

  def __post_init__(self):
    for name, low in (("num_trajectories", 1), ("num_steps", 1),
                      ("ensemble_size", 2)):
      value = getattr(self, name)
      if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


# Quick mode: sized so that all shipped PDEs finish in well under 15 minutes
# on 2 CPU cores (see docs/benchmark.md for the measured time). Full mode
# uses each config's `assimilation` section (KS: 4 x 100 steps x 8 members).
QUICK = {"ks": BenchmarkSize(2, 50, 4),
         "kolmogorov": BenchmarkSize(1, 8, 4)}
MODES = ("quick", "full")


def benchmark_size(config: ExperimentConfig, mode: str) -> BenchmarkSize:
  if mode not in MODES:
    raise ValueError(f"unknown benchmark mode {mode!r}; choose one of {MODES}")
  a = config.assimilation
  full = BenchmarkSize(a.num_trajectories, a.num_steps,
                       max(2, a.ensemble_size))
  if mode == "full":
    return full
  quick = QUICK.get(config.name, full)
  return BenchmarkSize(min(quick.num_trajectories, full.num_trajectories),
                       min(quick.num_steps, full.num_steps),
                       min(quick.ensemble_size, full.ensemble_size))


# One scalar per gradient-guided baseline, tuned on the validation split (not
# the benchmark's test truth) with benchmarks/tune_baselines.py; mean
# validation RMSE over random_10pct and stations_10pct (2 trajectories x 50
# steps, 4 members), measured on 2 CPU cores (see docs/benchmark.md):
# SDA gamma 1 -> 0.744, 0.1 -> 0.650, 0.01 -> 0.469, 0.001 -> 0.519; DPS
# relaxation 0.25 -> 0.535, 0.5 (the default, kept) -> 0.471, 1 -> 0.550.
TUNED_OPTIONS = {"ks": {"sda": {"gamma": 0.01}}}


def baseline_options(config: ExperimentConfig, horizon: int = 1,
                     ardm=None) -> dict[str, dict]:
  """Per-method options: the baselines' defaults, updated by TUNED_OPTIONS
  for the config. The filters get the config's true solver, or (the
  same-model filters) `ardm` as their model; the LETKF and LETKS an initial
  spread of the default regime's observation-error std, the smoothers the
  lag H - 1 of a controller with preview H (their radius and inflation:
  `filter_options`)."""
  solver = {"pde_config": config.pde}
  spread = {**solver, "initial_std": float(np.mean(
      config.regime(config.assimilation.regime).noise_std))}
  options = {"dps": {}, "sda": {}, "repaint": {}, "unguided": {},
             "enkf": solver, "letkf": spread,
             "letks": {**spread, "lag": max(horizon - 1, 1)}}  # lag >= 1
  options["letkf_ardm"] = {"initial_std": spread["initial_std"],
                           "model": ardm}
  options["letks_ardm"] = {**options["letkf_ardm"],
                           "lag": options["letks"]["lag"]}
  for method, tuned in TUNED_OPTIONS.get(config.name, {}).items():
    options[method] = {**options[method], **tuned}
  return options


def filter_label(method: str, options: dict, tuned: bool) -> str:
  """The table's name of a tuned filter: "letkf (tuned)", "letks (tuned,
  lag 3)", "(untuned)" where no tuning was found for the setting."""
  notes = ["tuned" if tuned else "untuned"]
  if options.get("lag"):
    notes.append(f"lag {options['lag']}")
  return f"{method} ({', '.join(notes)})"


def filter_options(config: ExperimentConfig, method: str, options: dict,
                   start: str, ensemble_size: int, num_steps: int,
                   regime: str) -> tuple[dict, bool]:
  """(options, tuned): a method's options with the radius and inflation
  tuned on validation for this setting (`filter_tuning.tuned_options`: the
  same start, M, T, regime, lag and initial spread) where there are some;
  tuned False where not (the defaults then run)."""
  base = options.get(method, {})
  if method not in TUNED_FILTERS:
    return base, False
  tuned = filter_tuning.tuned_options(config.name, method, start,
                                      ensemble_size, num_steps, regime, base)
  return {**base, **(tuned or {})}, tuned is not None


# ------------------------------------------------------------------ scores


def default_burn_in(num_steps: int) -> int:
  return num_steps // 5


def score_ensemble(ensemble: np.ndarray, truth: np.ndarray,
                   config: ExperimentConfig, burn_in: int = 0) -> dict:
  """`engine.score` of ensembles [K, M, T+1, *spatial, C] against truth
  [K, T+1, ...] over times burn_in+1..T, with the config's system's
  spectrum, physics and divergence scores (`diagnostics`)."""
  return engine.score(ensemble, truth, burn_in=burn_in, system=config.system,
                      pde_config=config.pde)


# --------------------------------------------------------------- programs


@dataclasses.dataclass
class Models:
  """A config's frozen ARDM and its bound controller."""
  ardm: object
  controller_config: object
  controller: Callable


def load_models(config, ardm_path, controller_path) -> Models:
  """The checkpoints, checked against the config (pipeline.load_checkpoints)."""
  ardm, controller_config, params, _, _ = pipeline.load_checkpoints(
      config, ardm_path, controller_path)
  return Models(ardm, controller_config,
                bind_controller(controller_config, ardm.periodic, params))


def method_program(method: str, models: Models, history: jax.Array,
                   observations: Observations, num_steps: int, key: jax.Array,
                   ensemble_size: int, options: dict):
  """(jitted program, arguments) whose value is the method's ensemble."""
  if method == "controlled":
    return assimilation.ensemble_program(
        models.ardm, history, num_steps, key, ensemble_size, observations,
        models.controller, models.controller_config.horizon)
  if method in filters.FILTERS:
    return filters.filter_program(method, history, observations, num_steps,
                                  key, ensemble_size,
                                  **options.get(method, {}))
  return baselines.baseline_program(
      method, models.ardm, history, observations, num_steps, key,
      ensemble_size, **options.get(method, {}))


def run_method(method: str, models: Models | None, starts, observations,
               num_steps: int, key: jax.Array, ensemble_size: int,
               options: dict) -> engine.MethodRun:
  """The method on every trajectory k (from starts[k], with observations[k]
  and the engine's member key), run and timed by `engine.run_programs`;
  models may be None for a classical filter with the true solver."""
  return engine.run_programs(
      method_program(method, models, jnp.asarray(starts[k]), observations[k],
                     num_steps, engine.member_key(key, k), ensemble_size,
                     options)
      for k in range(len(observations)))


def control_sizes(models: Models, history: jax.Array,
                  observations: Observations, num_steps: int,
                  key: jax.Array, ensemble_size: int = 2) -> list[float]:
  """Per sub-step RMS of (sigma_hat - sigma_next) u / sigma_hat over one
  controlled ensemble rollout (members stepped together, as an
  ensemble-aware controller needs), sqrt(2 e_s / T) from the sampler's
  energies e_s, averaged over the members. history: [h, ...] shared by
  `ensemble_size` members, or an initial ensemble [M, h, ...]."""
  ardm = models.ardm
  history = jnp.asarray(history, jnp.float32)
  shared = history.ndim == len(ardm.state_shape) + 1
  members = ensemble_size if shared else history.shape[0]
  histories = assimilation.member_histories(
      history, members, (ardm.history_length,) + tuple(ardm.state_shape))
  run = jax.jit(lambda h, o: assimilation.ensemble_states(
      ardm, h, num_steps, assimilation.member_keys(key, members), o,
      models.controller, models.controller_config.horizon)[1])
  e = np.asarray(run(histories, observations)).reshape(members, -1)
  return np.sqrt(2.0 * e.mean(axis=0) / num_steps).tolist()


def run_cell(method, models, history, observations, num_steps, key,
             ensemble_size, options):
  """One method on one trajectory: (ensemble, wall-clock seconds, CPU
  seconds, memory) of `engine.run_program`."""
  return engine.run_program(method_program(
      method, models, history, observations, num_steps, key, ensemble_size,
      options))


# ------------------------------------------------------------- benchmark


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    raise ValueError(f"unknown method(s) {unknown}; choose from {METHODS}")
  if not methods:
    raise ValueError("no methods given")
  return tuple(dict.fromkeys(methods))


def benchmark_config(config: ExperimentConfig, models: Models,
                     truth: np.ndarray, regimes: Sequence[str],
                     methods: Sequence[str], ensemble_size: int,
                     seed: int = 1, options: dict | None = None,
                     log: Callable[[str], None] = print,
                     initial: np.ndarray | None = None,
                     burn_in: int | None = None) -> dict:
  """Runs every method on every regime; returns {"regimes": {regime:
  {method: scores}}, "examples": ...} (see `score_ensemble`).

  truth: [K, T + h, *spatial, C]; the first h = history_length states are the
  initial history, T = the assimilated steps.
  initial: optional initial ensembles [K, M, h, *spatial, C] (a cold start);
  default: every member starts from the truth's first h states.
  burn_in: steps left out of the scores (default T // 5).
  """
  methods = check_methods(methods)
  regime_objects = [config.regime(name) for name in regimes]
  options = (baseline_options(config, models.controller_config.horizon,
                              models.ardm)
             if options is None else options)
  start = "truth" if initial is None else "cold"
  h = models.ardm.history_length
  num_steps = truth.shape[1] - h
  burn_in = default_burn_in(num_steps) if burn_in is None else burn_in
  key = jax.random.PRNGKey(seed)
  starts = [traj[:h] for traj in truth] if initial is None else list(initial)
  truth = np.asarray(truth, np.float32)
  out = {"regimes": {}, "examples": {}}
  for regime in regime_objects:
    observations = engine.observe(regime, truth, h, key)
    rows = {}
    for method in methods:
      method_options, tuned = filter_options(config, method, options, start,
                                             ensemble_size, num_steps,
                                             regime.name)
      run = run_method(method, models, starts, observations, num_steps, key,
                       ensemble_size, {method: method_options})
      ensembles, seconds, cpu_seconds = (run.ensembles, run.seconds,
                                         run.cpu_seconds)
      if not np.isfinite(ensembles).all():
        log(f"  warning: {method} produced NaN/inf on {regime.name}")
      scores = score_ensemble(ensembles, truth[:, h - 1:], config, burn_in)
      scores.update(seconds=seconds, cpu_seconds=cpu_seconds,
                    memory=run.memory)
      if method in filters.FILTERS:
        scores["options"] = {k: v for k, v in method_options.items()
                             if k not in ("pde_config", "model")}
      if method in TUNED_FILTERS:
        scores["tuned"] = tuned
        scores["label"] = filter_label(method, method_options, tuned)
      if method == "controlled":
        scores["control_size"] = control_sizes(
            models, jnp.asarray(starts[0]), observations[0], num_steps,
            engine.member_key(key, 0), ensemble_size)
      rows[method] = scores
      log(f"  {config.name} {regime.name:<16} {method:<11} RMSE"
          f" {scores['rmse']:.4f}  {seconds:8.3f} s  (CPU {cpu_seconds:.2f} s)")
      # Example fields: the first trajectory's ensemble mean.
      out["examples"].setdefault(regime.name, {})[method] = (
          ensembles[0].mean(0)[..., 0])
    first = np.asarray(observations[0].mask[..., 0]) > 0
    out["examples"][regime.name]["truth"] = truth[0, h - 1:, ..., 0]
    out["examples"][regime.name]["observed"] = np.where(
        first, np.asarray(observations[0].values[..., 0]), np.nan)
    out["regimes"][regime.name] = rows
  return out


# ---------------------------------------------------------------- reports


DIFFUSION_METHODS = ("controlled", "unguided", "dps", "sda", "repaint")


def worst_lead(rows: dict) -> tuple[int, float]:
  """(t, ratio): the lead time t >= 1 where the controller's RMSE curve is
  highest over the unguided forecast's, and that ratio."""
  c = np.asarray(rows["controlled"]["rmse_per_time"][1:])
  u = np.asarray(rows["unguided"]["rmse_per_time"][1:])
  ratio = c / np.maximum(u, 1e-12)
  t = int(np.argmax(ratio))
  return t + 1, float(ratio[t])


# Trajectories needed before the worst lead's bootstrap interval is printed.
MIN_TRAJECTORIES_FOR_INTERVAL = 5


def lead_evidence(rows: dict, t: int, resamples: int = 4000,
                  seed: int = 0) -> dict | None:
  """How firm the controller's RMSE ratio to the unguided forecast's is at
  lead t, from the per-trajectory curves (`rmse_per_trajectory_time`):
  {"above": trajectories where the controller's RMSE is the higher, "of": K,
  "interval": the 5 % and 95 % quantiles of the ratio sqrt(<e_c^2>_k /
  <e_u^2>_k) over `resamples` paired bootstrap resamples of the K
  trajectories (Efron & Tibshirani 1993; None below
  MIN_TRAJECTORIES_FOR_INTERVAL trajectories or where one is not finite)};
  None without the curves. The worst of many leads is biased high: read it
  with its interval."""
  curves = [rows[m].get("rmse_per_trajectory_time")
            for m in ("controlled", "unguided")]
  if any(c is None for c in curves):
    return None
  c, u = (np.asarray(x, np.float64)[:, t]**2 for x in curves)
  k = len(c)
  interval = None  # none either where a trajectory diverged (not finite)
  if (k >= MIN_TRAJECTORIES_FOR_INTERVAL and np.isfinite(c).all()
      and np.isfinite(u).all()):
    draws = np.random.default_rng(seed).integers(0, k, (resamples, k))
    ratios = np.sqrt(c[draws].mean(1) / np.maximum(u[draws].mean(1), 1e-24))
    interval = [float(q) for q in np.quantile(ratios, [0.05, 0.95])]
  return {"above": int(np.sum(c > u)), "of": k, "interval": interval}


def best_classical(rows: dict, methods=PERFECT_MODEL_FILTERS) -> str:
  """The tuned filter of `methods` (default: the perfect-model LETKF and
  LETKS) with the lowest rmse.a in rows."""
  return min((m for m in methods if rows.get(m, {}).get("tuned")),
             key=lambda m: rows[m]["rmse_a"])


def goal_summary(regimes: dict) -> dict:
  """The headline checks, from the measured table: per check the regimes
  that pass it (and, for ratios, the value per regime)."""
  summary = {}
  with_controller = {r: rows for r, rows in regimes.items()
                     if "controlled" in rows}

  def counted(names):
    return {"regimes": names, "count": len(names), "of": len(with_controller)}

  def passing(check):
    return counted([r for r, rows in with_controller.items() if check(rows)])

  def best_diffusion(score):
    def check(rows):
      diffusion = [m for m in DIFFUSION_METHODS if m in rows]
      return min(diffusion, key=lambda m: rows[m][score]) == "controlled"
    return check

  if with_controller and any(len(rows) > 1 for rows in
                             with_controller.values()):
    summary["controller_lowest_rmse"] = passing(
        lambda rows: min(rows, key=lambda m: rows[m]["rmse"]) == "controlled")
    summary["controller_best_diffusion_rmse"] = passing(best_diffusion("rmse"))
    summary["controller_best_diffusion_crps"] = passing(best_diffusion("crps"))
  if all("unguided" in rows for rows in with_controller.values()):
    summary["controller_not_worse_than_unguided"] = passing(
        lambda rows: rows["controlled"]["rmse"] <= rows["unguided"]["rmse"])
    summary["cpu_time_vs_unguided"] = {
        r: rows["controlled"]["cpu_seconds"] / rows["unguided"]["cpu_seconds"]
        for r, rows in with_controller.items()}
  summary["controller_calibrated"] = passing(
      lambda rows: 0.7 <= rows["controlled"]["spread_skill"] <= 1.3)
  if all("unguided" in rows for rows in with_controller.values()):
    worst = {r: worst_lead(rows) for r, rows in with_controller.items()}
    summary["controller_not_worse_at_any_lead"] = counted(
        [r for r, (_, ratio) in worst.items() if ratio <= 1.0])
    summary["worst_lead_vs_unguided"] = worst
    evidence = {r: lead_evidence(rows, worst[r][0])
                for r, rows in with_controller.items()}
    if all(e is not None for e in evidence.values()):
      summary["worst_lead_evidence"] = evidence
  if all("enkf" in rows for rows in with_controller.values()):
    summary["rmse_vs_enkf"] = {
        r: rows["controlled"]["rmse"] / rows["enkf"]["rmse"]
        for r, rows in with_controller.items()}
  for methods, suffix in ((PERFECT_MODEL_FILTERS, "classical"),
                          (SAME_MODEL_FILTERS, "same_model")):
    if not with_controller or not all(
        any(rows.get(m, {}).get("tuned") for m in methods)
        for rows in with_controller.values()):
      continue
    best = {r: best_classical(rows, methods)
            for r, rows in with_controller.items()}
    ratio = {r: rows["controlled"]["rmse_a"] / rows[best[r]]["rmse_a"]
             for r, rows in with_controller.items()}
    summary[f"rmse_a_vs_best_{suffix}"] = {
        r: {"method": best[r], "ratio": ratio[r]} for r in with_controller}
    summary[f"controller_beats_{suffix}"] = counted(
        [r for r in with_controller if ratio[r] < 1.0])
    if suffix == "classical":
      summary["controller_within_1.2x_classical"] = counted(
          [r for r in with_controller if ratio[r] <= 1.2])
  if "rmse_a_vs_best_classical" in summary and (
      "rmse_a_vs_best_same_model" in summary):
    # the best filter on the learned model against the best on the true one
    summary["same_model_vs_classical"] = {}
    for r, rows in with_controller.items():
      same, perfect = (summary[f"rmse_a_vs_best_{s}"][r]["method"]
                       for s in ("same_model", "classical"))
      summary["same_model_vs_classical"][r] = {
          "method": f"{same} / {perfect}",
          "ratio": rows[same]["rmse_a"] / rows[perfect]["rmse_a"]}
  for clock, label in (("seconds", ""), ("cpu_seconds", "_cpu")):
    speed = {}
    for r, rows in with_controller.items():
      guided = [rows[m][clock] for m in GRADIENT_GUIDED if m in rows]
      if guided:
        speed[r] = min(guided) / rows["controlled"][clock]
    if speed:
      summary[f"speedup_vs_fastest_gradient_guided{label}"] = speed
  return summary


def table_rows(results: dict) -> list[dict]:
  """One flat row per (config, regime, method): the config's setup and
  `engine.report_rows` (ratios to the controller)."""
  out = []
  for name, result in results["configs"].items():
    setup = result["setup"]
    sizes = {k: setup[k] for k in ("num_trajectories", "num_steps",
                                   "ensemble_size", "sampler_substeps")}
    out += [{"config": name, "start": setup.get("start", "truth"),
             "burn_in": setup.get("burn_in", 0), **row,
             "physics_metric": setup.get("physics_metric"), **sizes}
            for row in engine.report_rows(result["regimes"])]
  return out


_TRUTH_LABEL = {"test": "held-out", "validation": "validation-split"}


def markdown_report(results: dict) -> str:
  machine = results["machine"]
  lines = [f"# DA benchmark ({results['mode']} mode)", "",
           f"Machine: {machine['device']}, {machine['cpu_cores']} CPU cores,"
           f" JAX {machine['jax']}; load average at start"
           f" {machine.get('load_average_1min')}, at end"
           f" {results.get('load_average_end')};"
           f" total {results['total_seconds']:.0f} s."
           " Times: compiled program, summed over trajectories. Memory:"
           " XLA's estimate (argument + output + temp) for one trajectory's"
           " ensemble, not a measured peak.", ""]
  for name, result in results["configs"].items():
    s = result["setup"]
    lines += [f"## {name}", "",
              f"{s['num_trajectories']}"
              f" {_TRUTH_LABEL[s.get('split', 'test')]} trajectories x"
              f" {s['num_steps']} steps, {s['ensemble_size']} members,"
              f" {s['sampler_substeps']} sampler sub-steps per step; start:"
              f" {s.get('start', 'truth')}; scores over t ="
              f" {s.get('burn_in', 0) + 1}..{s['num_steps']} (burn-in"
              f" {s.get('burn_in', 0)}); physics: relative"
              f" {s['physics_metric']} error; diverged: members out of"
              f" {s['num_trajectories'] * s['ensemble_size']} whose RMS"
              f" passed {DIVERGENCE_FACTOR:g}x the truth's.", "",
              engine.report_markdown(engine.report_rows(result["regimes"]))]
    goals = result["goals"]
    lines.append("")
    sizes = {r: rows["controlled"]["control_size"]
             for r, rows in result["regimes"].items()
             if "control_size" in rows.get("controlled", {})}
    if sizes:
      lines.append("Control size per sampler sub-step, RMS of (sigma_hat -"
                   " sigma_next) u / sigma_hat: " + "; ".join(
                       f"{r} " + " ".join(f"{v:.3f}" for v in sz)
                       for r, sz in sizes.items()) + ".")
    for key, label in (
        ("controller_lowest_rmse", "Controller lowest RMSE of all methods"),
        ("controller_best_diffusion_rmse",
         "Controller lowest RMSE among the diffusion methods"),
        ("controller_best_diffusion_crps",
         "Controller lowest CRPS among the diffusion methods"),
        ("controller_not_worse_than_unguided",
         "Controller RMSE <= the unguided forecast's"),
        ("controller_not_worse_at_any_lead",
         "Controller RMSE <= the unguided forecast's at every lead time"),
        ("controller_beats_classical",
         "Controller rmse.a below the best tuned LETKF/LETKS's"),
        ("controller_within_1.2x_classical",
         "Controller rmse.a within 1.2x the best tuned LETKF/LETKS's"),
        ("controller_beats_same_model",
         "Controller rmse.a below the best tuned LETKF/LETKS's on the same"
         " ARDM"),
        ("controller_calibrated", "Controller spread/skill in [0.7, 1.3]")):
      if key in goals:
        g = goals[key]
        lines.append(f"{label}: {g['count']} of {g['of']} regimes"
                     f" ({', '.join(g['regimes']) or 'none'}).")
    for key, label in (("rmse_vs_enkf", "Controller RMSE / untuned EnKF RMSE"),
                       ("cpu_time_vs_unguided",
                        "Controller CPU time / unguided CPU time")):
      if key in goals:
        lines.append(f"{label}: " + ", ".join(
            f"{r} {v:.2f}x" for r, v in goals[key].items()) + ".")
    if "worst_lead_vs_unguided" in goals:
      evidence = goals.get("worst_lead_evidence", {})
      lines.append("Worst lead time, controller RMSE / unguided RMSE: "
                   + ", ".join(f"{r} {v:.2f}x at t = {t}"
                               + _evidence_note(evidence.get(r))
                               for r, (t, v)
                               in goals["worst_lead_vs_unguided"].items())
                   + ".")
      if evidence:
        lines.append(
            "In brackets: the trajectories where the controller's RMSE is"
            " the higher at that lead and, from"
            f" {MIN_TRAJECTORIES_FOR_INTERVAL} trajectories, the 90 % paired"
            " bootstrap interval of the ratio over them (the worst of many"
            " leads is biased high).")
    for key, label in (
        ("rmse_a_vs_best_classical",
         "Controller rmse.a / best tuned classical rmse.a"),
        ("rmse_a_vs_best_same_model",
         "Controller rmse.a / best tuned same-model filter rmse.a"),
        ("same_model_vs_classical", "Best tuned same-model filter rmse.a /"
         " best tuned classical rmse.a (the filters on the ARDM against the"
         " filters on the true solver)")):
      if key in goals:
        lines.append(f"{label}: "
                     + ", ".join(f"{r} {v['ratio']:.2f}x ({v['method']})"
                                 for r, v in goals[key].items()) + ".")
    for label, name in (("wall-clock", ""), ("CPU time", "_cpu")):
      speed = goals.get(f"speedup_vs_fastest_gradient_guided{name}")
      if speed:
        lines.append(f"Fastest gradient-guided baseline (DPS/SDA) {label} /"
                     " controller's: " + ", ".join(
                         f"{r} {v:.1f}x" for r, v in speed.items()) + ".")
    lines.append("")
  for name in results.get("skipped", {}):
    lines.append(f"Skipped {name}: {results['skipped'][name]}")
  return "\n".join(lines).rstrip() + "\n"


def _evidence_note(evidence: dict | None) -> str:
  if evidence is None:
    return ""
  note = f"higher in {evidence['above']} of {evidence['of']} trajectories"
  if evidence["interval"]:
    low, high = evidence["interval"]
    note += f"; {low:.2f}-{high:.2f}x"
  return f" ({note})"


# The files run_benchmark writes (glob patterns; the plots are named by
# config and regime).
OUTPUT_FILES = ("benchmark.json", "benchmark.csv", "benchmark.md",
                "*_rmse_vs_time_*.png", "*_spectra.png",
                "*_rank_histogram.png", "*_fields.png")


def write_plots(name: str, result: dict, examples: dict, config,
                out_dir: Path) -> list[Path]:
  """Error vs time per regime, spectra and rank histograms per regime,
  example fields."""
  paths = []
  k = wavenumbers(config)
  spectra, ranks = {}, {}
  for regime, rows in result["regimes"].items():
    ranks[regime] = {m: np.asarray(s["rank_histogram"])
                     for m, s in rows.items()
                     if s.get("rank_histogram") is not None}
    curves = {m: np.asarray(s["rmse_per_time"]) for m, s in rows.items()}
    paths.append(plots.plot_error_vs_time(
        curves, out_dir / f"{name}_rmse_vs_time_{regime}.png",
        f"{name}, {regime}: RMSE of the ensemble mean"))
    first = next(iter(rows.values()))
    spectra[regime] = {"truth": (k, np.asarray(first["truth_spectrum"]))}
    spectra[regime].update({m: (k, np.asarray(s["spectrum"]))
                            for m, s in rows.items()})
  paths.append(plots.plot_spectra(spectra, out_dir / f"{name}_spectra.png",
                                  f"{name}: energy spectra (member mean)"))
  paths.append(plots.plot_rank_histograms(
      ranks, out_dir / f"{name}_rank_histogram.png",
      f"{name}: rank histograms of the truth"))
  regime = (config.assimilation.regime if config.assimilation.regime in
            examples else next(iter(examples)))
  fields = examples[regime]
  one_d = fields["truth"].ndim == 2  # [T+1, X]: drawn as space x time
  pick = (lambda a: a) if one_d else (lambda a: a[-1].T)  # last time
  panels = {"truth": pick(fields["truth"]),
            "observed": pick(fields["observed"])}
  methods = [m for m in fields if m not in ("truth", "observed")]
  panels.update({m: pick(fields[m]) for m in methods})
  panels.update({f"|{m} - truth|": np.abs(pick(fields[m])
                                           - pick(fields["truth"]))
                 for m in methods})
  paths.append(plots.plot_fields(
      panels, out_dir / f"{name}_fields.png",
      f"{name}, {regime}: trajectory 0, ensemble means"
      + ("" if one_d else ", last time")))
  return paths


def machine_info() -> dict:
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count()
  device = jax.devices()[0]
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  return {"device": f"{device.platform} ({device.device_kind})",
          "cpu_cores": cores, "jax": jax.__version__,
          "python": platform.python_version(),
          "load_average_1min": None if load is None else round(load[0], 1)}


def publish_paths(names: Sequence[str] | None, overrides: Sequence[str],
                  mode: str = "quick", start: str = "truth",
                  split: str = "test") -> dict[str, Path]:
  """{config name: docs/results/benchmark_NAME[_MODE][_START][_SPLIT].md}:
  the mode, start and split named where they are not the defaults (quick,
  truth, test)."""
  out = {}
  for name in dict.fromkeys(names or DEFAULT_CONFIGS):
    config_name = load_config(name, list(overrides)).name
    out[config_name] = provenance.publish_path(
        "benchmark", config_name, *([mode] if mode != "quick" else []),
        *([start] if start != "truth" else []),
        *([split] if split != "test" else []))
  return out


def resolve_configs(names: Sequence[str] | None, overrides: Sequence[str],
                    checkpoints_dir=None, log: Callable[[str], None] = print
                    ) -> tuple[list[tuple[ExperimentConfig, Path, Path]],
                               dict[str, str]]:
  """Loads the configs and finds their checkpoints; a config without
  checkpoints is skipped with a note (an error when no config is left)."""
  names = list(names or DEFAULT_CONFIGS)
  found, skipped = [], {}
  for name in dict.fromkeys(names):
    config = load_config(name, list(overrides))
    if checkpoints_dir is not None:
      paths = (Path(checkpoints_dir) / f"{config.name}_ardm.npz",
               Path(checkpoints_dir) / f"{config.name}_controller.npz")
    else:
      paths = pipeline.shipped_checkpoints(config.name)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
      skipped[config.name] = f"no checkpoints ({', '.join(missing)})"
      log(f"note: skipping {config.name}: {skipped[config.name]}")
      continue
    found.append((config, *paths))
  if not found:
    raise ValueError("no config with checkpoints to benchmark: "
                     + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
  return found, skipped


def run_benchmark(out_dir, configs: Sequence[str] | None = None,
                  mode: str = "quick", methods: Sequence[str] = METHODS,
                  regimes: Sequence[str] | None = None,
                  overrides: Sequence[str] = (), checkpoints_dir=None,
                  size: dict | None = None, seed: int = 1,
                  log: Callable[[str], None] = print, start: str = "truth",
                  burn_in: int | None = None, split: str = "test",
                  command: str | Sequence[str] | None = None,
                  publish: dict[str, Path] | None = None) -> dict:
  """The benchmark end to end; returns the results written to out_dir.

  size: optional overrides of the mode's BenchmarkSize fields.
  start: "truth" or "cold" (module docstring); burn_in: steps left out of
  the scores (default T // 5); split: the truth, "test" (held out) or
  "validation" (`SPLITS`).
  command: the command line named in the markdown's provenance header
    (default sys.argv).
  publish: {config name: path} (`publish_paths`): each benchmarked config's
    table, under the header, also goes there.
  """
  t_start = time.perf_counter()
  methods = check_methods(methods)
  if start not in STARTS:
    raise ValueError(f"unknown start {start!r}; choose one of {STARTS}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
  if burn_in is not None and burn_in < 0:
    raise ValueError(f"burn_in must be >= 0, got {burn_in}")
  if mode not in MODES:
    raise ValueError(f"unknown benchmark mode {mode!r}; choose one of {MODES}")
  if size:  # validate the overrides before any work
    BenchmarkSize(**{**dataclasses.asdict(BenchmarkSize(1, 1, 2)), **size})
  found, skipped = resolve_configs(configs, overrides, checkpoints_dir, log)
  for config, _, _ in found:  # fail fast on bad names, before any run
    for name in regimes or ():
      config.regime(name)
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  results = {"mode": mode, "start": start, "machine": machine_info(),
             "methods": methods, "configs": {}, "skipped": skipped}
  plot_paths = []
  for config, ardm_path, controller_path in found:
    sz = dataclasses.replace(benchmark_size(config, mode), **(size or {}))
    config = dataclasses.replace(config, assimilation=dataclasses.replace(
        config.assimilation, num_trajectories=sz.num_trajectories,
        num_steps=sz.num_steps, ensemble_size=sz.ensemble_size))
    models = load_models(config, ardm_path, controller_path)
    t0 = time.perf_counter()
    truth = (test_trajectories(config) if split == "test" else
             validation_trajectories(config, sz.num_trajectories,
                                     sz.num_steps))
    log(f"{config.name}: {sz.num_trajectories} {_TRUTH_LABEL[split]}"
        " trajectories x"
        f" {sz.num_steps} steps ({time.perf_counter() - t0:.1f} s to"
        f" simulate), {sz.ensemble_size} members")
    names = list(regimes or [r.name for r in config.regimes])
    h = models.ardm.history_length
    initial = None
    if start == "cold":
      k, m = sz.num_trajectories, sz.ensemble_size
      initial = cold_ensembles(config, k, m, h, seed)
    steps_burn_in = default_burn_in(sz.num_steps) if burn_in is None else burn_in
    out = benchmark_config(config, models, truth, names, methods,
                           sz.ensemble_size, seed, log=log, initial=initial,
                           burn_in=steps_burn_in)
    result = {
        "setup": {**dataclasses.asdict(sz), "start": start, "split": split,
                  "burn_in": steps_burn_in,
                  "sampler_substeps": models.ardm.config.sampler.num_steps,
                  "physics_metric": physics_metric_name(config),
                  "ardm": str(ardm_path), "controller": str(controller_path),
                  "baseline_options": {
                      m: {k: repr(v) for k, v in o.items() if k != "model"}
                      for m, o in baseline_options(
                          config, models.controller_config.horizon).items()},
                  "seconds": round(time.perf_counter() - t0, 1)},
        "regimes": out["regimes"]}
    result["goals"] = goal_summary(out["regimes"])
    results["configs"][config.name] = result
    plot_paths += write_plots(config.name, result, out["examples"], config,
                              out_dir)
  results["total_seconds"] = round(time.perf_counter() - t_start, 1)
  results["load_average_end"] = machine_info()["load_average_1min"]
  paths = list(engine.write_report(out_dir, "benchmark", results,
                                   table_rows(results),
                                   markdown_report(results),
                                   command).values())
  for name, result in results["configs"].items():
    if publish and name in publish:
      one = {**results, "configs": {name: result}, "skipped": {}}
      paths.append(provenance.publish(
          publish[name], markdown_report(one), command,
          f"DA benchmark: {name} ({mode} mode, {start} start"
          + ("" if split == "test" else f", {split} split") + ")"))
  paths += plot_paths
  results["paths"] = [str(p) for p in paths]
  return results
