"""The DA benchmark: the controller against diffusion and Kalman baselines.

For every PDE config, observation regime and method of METHODS, on the SAME
held-out truth trajectories (`systems.truth.test_trajectories`, seeds
disjoint from training), the SAME observations and the SAME PRNG keys as
`forecasts.assimilate_trajectories` (trajectory k: observations drawn with
fold_in(key, 2k), ensemble member m with fold_in(fold_in(key, 2k + 1), m)),
and the same number of sampler sub-steps:

  controlled      the learned controller: one causal rollout, no gradients
  unguided        the plain ARDM forecast
  dps, sda        gradient guidance through the frozen denoiser (baselines.py)
  repaint         replacement of the observed entries (baselines.py)
  enkf            stochastic EnKF with the true solver (enkf.py), untuned:
                  a classical reference, not a tuned LETKF

Starts (`start`): "truth", every member starts from the true state (a twin
experiment's best case); "cold", member m of trajectory k starts from its own
random climatological state (`systems.truth.climatological_histories`), as
in real DA where the state is unknown. Every method gets the same initial
ensemble.

Scores (over the assimilated times t = B+1..T after a burn-in of B steps, as
DAPPER's time-averaged analysis RMSE rmse.a; default B = T // 5), with the
estimators of `metrics`:

  rmse            RMSE of the ensemble mean over trajectories, times, space
  crps            fair CRPS (unbiased in the ensemble size)
  spread_skill    unbiased spread-skill ratio (1 = reliable)
  spectrum_error  mean |log10 E_ens(k) / E_truth(k)| over k > 0, E_ens the
                  member-averaged energy spectrum, averaged over times
  physics_error   relative error of a member's physics diagnostic, averaged
                  over members and times: KS total variation (sharpness),
                  Kolmogorov enstrophy (= that of the dissipation 2 nu Z);
                  the spectrum and the diagnostic of each system are
                  DIAGNOSTICS[system]
  seconds         wall-clock of the compiled program, summed over the
                  trajectories (compilation excluded: each program is
                  compiled ahead of time, then run once per trajectory)
  cpu_seconds     the process's CPU time over the same runs (all threads):
                  the work done, less sensitive than wall-clock to other
                  jobs sharing the cores
  diverged        members whose state RMS exceeds DIVERGENCE_FACTOR x the
                  truth's (or turns non-finite) at some time, out of K x M
  control_size    controlled only: per sampler sub-step, the RMS of the
                  control's displacement (sigma_hat - sigma_next) u over
                  sigma_hat (one member of the first trajectory)
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

from gencast_control.baselines import guidance as baselines
from gencast_control.core import assimilation
from gencast_control.core.config import load_config
from gencast_control.core.controller import bind_controller
from gencast_control.core.observations import Observations
from gencast_control.evaluation import engine, metrics, plots, provenance
from gencast_control.systems import pipeline
from gencast_control.systems.experiment import ExperimentConfig
from gencast_control.systems.truth import (climatological_histories,
                                           test_trajectories)

METHODS = ("controlled",) + baselines.METHODS  # unguided, dps, sda, repaint, enkf
STARTS = ("truth", "cold")
DIVERGENCE_FACTOR = 5.0
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


def baseline_options(config: ExperimentConfig) -> dict[str, dict]:
  """Per-method options: baselines.py's defaults, updated by TUNED_OPTIONS
  for the config; the EnKF gets the config's true solver."""
  options = {"dps": {}, "sda": {}, "repaint": {}, "unguided": {},
             "enkf": {"pde_config": config.pde}}
  for method, tuned in TUNED_OPTIONS.get(config.name, {}).items():
    options[method] = {**options[method], **tuned}
  return options


# ------------------------------------------------------------------ scores


@dataclasses.dataclass(frozen=True)
class Diagnostics:
  """What the benchmark measures of one system's forecasts beyond `engine`.

  spectrum(fields, pde_config) -> (k [K], E [..., C, K]): energy spectra of
    fields [..., *spatial, C].
  physics: (name, error(forecast, truth) -> relative error of a physical
    diagnostic, spatial axes removed).
  """
  spectrum: Callable[[np.ndarray, object], tuple[np.ndarray, np.ndarray]]
  physics: tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]


# By system name (`systems.registry`); add one to benchmark a system of yours.
DIAGNOSTICS = {
    "ks": Diagnostics(  # fields [..., X, C]
        lambda f, pde: metrics.energy_spectrum_1d(
            f, axis=-2, domain_length=pde.domain_length),
        ("total_variation",
         lambda f, t: metrics.total_variation_error(f, t, axis=-2))),
    "kolmogorov": Diagnostics(  # fields [..., X, Y, C], 2 pi periodic
        lambda f, pde: metrics.energy_spectrum_2d(
            f, axes=(-3, -2), domain_length=2 * np.pi),
        ("enstrophy",
         lambda f, t: metrics.enstrophy_error(f, t, axes=(-3, -2)))),
}


def diagnostics(config: ExperimentConfig) -> Diagnostics:
  if config.system not in DIAGNOSTICS:
    raise ValueError(f"the benchmark has no spectrum or physics diagnostic"
                     f" for system {config.system!r} (DIAGNOSTICS has"
                     f" {', '.join(DIAGNOSTICS)})")
  return DIAGNOSTICS[config.system]


def wavenumbers(config: ExperimentConfig) -> np.ndarray:
  """The wavenumbers of the system's spectra on the config's grid."""
  zeros = np.zeros(tuple(config.ardm.state_shape[:-1]) + (1,))
  return diagnostics(config).spectrum(zeros, config.pde)[0]


def physics_metric_name(config: ExperimentConfig) -> str:
  return diagnostics(config).physics[0]


def default_burn_in(num_steps: int) -> int:
  return num_steps // 5


def count_diverged(ensemble: np.ndarray, truth: np.ndarray) -> int:
  """Members [K, M, T+1, ...] whose spatial RMS exceeds DIVERGENCE_FACTOR x
  the truth's RMS over the whole run, or is non-finite, at some time."""
  spatial = tuple(range(3, ensemble.ndim))
  size = np.sqrt(np.mean(np.asarray(ensemble, np.float64)**2, axis=spatial))
  limit = DIVERGENCE_FACTOR * np.sqrt(np.mean(np.asarray(truth,
                                                         np.float64)**2))
  bad = ~np.isfinite(size) | (size > limit)
  return int(np.sum(np.any(bad, axis=-1)))


def score_ensemble(ensemble: np.ndarray, truth: np.ndarray,
                   config: ExperimentConfig, burn_in: int = 0) -> dict:
  """`engine.score` of ensembles [K, M, T+1, *spatial, C] against truth
  [K, T+1, ...] over times burn_in+1..T, plus the system's spectrum and
  physics errors, the divergence count and the mean spectra (see the module
  docstring)."""
  out = engine.score(ensemble, truth, burn_in=burn_in)
  measure = diagnostics(config)
  first = burn_in + 1
  ens = np.moveaxis(np.asarray(ensemble, np.float64)[:, :, first:], 1, 0)
  tru = np.asarray(truth, np.float64)[:, first:]  # ens: [M, K, T', ...]
  physics = measure.physics[1](ens, np.broadcast_to(tru, ens.shape))
  ens_spectrum = measure.spectrum(ens, config.pde)[1].mean(0)  # [K, T, C, k]
  truth_spectrum = measure.spectrum(tru, config.pde)[1]
  return {
      **out,
      "spectrum_error": float(np.mean(metrics.spectrum_error(
          ens_spectrum, truth_spectrum))),
      "physics_error": float(np.mean(physics)),
      "diverged": count_diverged(ensemble, truth),
      "spectrum": ens_spectrum.mean(axis=(0, 1, 2)).tolist(),
      "truth_spectrum": truth_spectrum.mean(axis=(0, 1, 2)).tolist(),
  }


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
  return baselines.baseline_program(
      method, models.ardm if method != "enkf" else None, history,
      observations, num_steps, key, ensemble_size, **options.get(method, {}))


def control_sizes(models: Models, history: jax.Array,
                  observations: Observations, num_steps: int,
                  key: jax.Array) -> list[float]:
  """Per sub-step RMS of (sigma_hat - sigma_next) u / sigma_hat over one
  controlled rollout: sqrt(2 e_s / T) from the sampler's energies e_s."""
  history = jnp.asarray(history, jnp.float32)
  if history.ndim == len(models.ardm.state_shape) + 2:
    history = history[0]  # an initial ensemble: its first member

  @jax.jit
  def energies(history, observations):
    return assimilation.rollout(models.ardm, history, num_steps, key,
                                observations, models.controller,
                                models.controller_config.horizon)[1]

  e = np.atleast_1d(np.asarray(energies(history, observations)))
  return np.sqrt(2.0 * e / num_steps).tolist()


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
  options = baseline_options(config) if options is None else options
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
      run = engine.run_programs(
          method_program(method, models, jnp.asarray(starts[k]),
                         observations[k], num_steps, engine.member_key(key, k),
                         ensemble_size, options)
          for k in range(len(truth)))
      ensembles, seconds, cpu_seconds = (run.ensembles, run.seconds,
                                         run.cpu_seconds)
      if not np.isfinite(ensembles).all():
        log(f"  warning: {method} produced NaN/inf on {regime.name}")
      scores = score_ensemble(ensembles, truth[:, h - 1:], config, burn_in)
      scores.update(seconds=seconds, cpu_seconds=cpu_seconds,
                    memory=run.memory)
      if method == "controlled":
        scores["control_size"] = control_sizes(
            models, jnp.asarray(starts[0]), observations[0], num_steps,
            engine.member_key(key, 0))
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


def ratios(rows: dict, method: str, clock: str = "seconds"
           ) -> tuple[float | None, float | None]:
  """(RMSE method / controller, time method / controller), None without a
  controller row; clock: "seconds" (wall) or "cpu_seconds"."""
  if "controlled" not in rows:
    return None, None
  c, m = rows["controlled"], rows[method]
  return engine.ratio(m["rmse"], c["rmse"]), engine.ratio(m[clock], c[clock])


DIFFUSION_METHODS = ("controlled", "unguided", "dps", "sda", "repaint")


def goal_summary(regimes: dict) -> dict:
  """The headline checks, from the measured table: per check the regimes
  that pass it (and, for ratios, the value per regime)."""
  summary = {}
  with_controller = {r: rows for r, rows in regimes.items()
                     if "controlled" in rows}

  def passing(check):
    names = [r for r, rows in with_controller.items() if check(rows)]
    return {"regimes": names, "count": len(names), "of": len(with_controller)}

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
  if all("enkf" in rows for rows in with_controller.values()):
    summary["rmse_vs_enkf"] = {
        r: rows["controlled"]["rmse"] / rows["enkf"]["rmse"]
        for r, rows in with_controller.items()}
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
  """One flat row per (config, regime, method)."""
  out = []
  for name, result in results["configs"].items():
    setup = result["setup"]
    for regime, rows in result["regimes"].items():
      for method, s in rows.items():
        rmse_ratio, time_ratio = ratios(rows, method)
        cpu_ratio = ratios(rows, method, "cpu_seconds")[1]
        memory = s.get("memory") or {}
        out.append({
            "config": name, "start": setup.get("start", "truth"),
            "burn_in": setup.get("burn_in", 0), "regime": regime,
            "method": method,
            "rmse": s["rmse"], "rmse_vs_controlled": rmse_ratio,
            "seconds": s["seconds"], "seconds_vs_controlled": time_ratio,
            "cpu_seconds": s["cpu_seconds"],
            "cpu_seconds_vs_controlled": cpu_ratio,
            "crps": s["crps"], "spread_skill": s["spread_skill"],
            "spectrum_error": s["spectrum_error"],
            "physics_metric": setup["physics_metric"],
            "physics_error": s["physics_error"],
            "diverged": s.get("diverged"),
            "memory_bytes": memory.get("total"),
            "memory_argument_bytes": memory.get("argument"),
            "memory_output_bytes": memory.get("output"),
            "memory_temp_bytes": memory.get("temp"),
            **{k: setup[k] for k in ("num_trajectories", "num_steps",
                                     "ensemble_size", "sampler_substeps")}})
  return out


def _fmt(x, spec=".4f", suffix=""):
  return "-" if x is None else f"{x:{spec}}{suffix}"


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
              f"{s['num_trajectories']} held-out trajectories x"
              f" {s['num_steps']} steps, {s['ensemble_size']} members,"
              f" {s['sampler_substeps']} sampler sub-steps per step; start:"
              f" {s.get('start', 'truth')}; scores over t ="
              f" {s.get('burn_in', 0) + 1}..{s['num_steps']} (burn-in"
              f" {s.get('burn_in', 0)}); physics: relative"
              f" {s['physics_metric']} error; diverged: members out of"
              f" {s['num_trajectories'] * s['ensemble_size']} whose RMS"
              f" passed {DIVERGENCE_FACTOR:g}x the truth's.", "",
              "| regime | method | RMSE | RMSE / ctrl | time [s] |"
              " time / ctrl | CPU time / ctrl | CRPS | spread/skill |"
              " spectrum err | physics err | diverged | XLA mem [MiB] |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for regime, rows in result["regimes"].items():
      for method, m in rows.items():
        r_ratio, t_ratio = ratios(rows, method)
        c_ratio = ratios(rows, method, "cpu_seconds")[1]
        memory = (m.get("memory") or {}).get("total")
        label = "enkf (untuned)" if method == "enkf" else method
        lines.append(
            f"| {regime} | {label} | {m['rmse']:.4f} |"
            f" {_fmt(r_ratio, '.2f', 'x')} | {m['seconds']:.3f} |"
            f" {_fmt(t_ratio, '.2f', 'x')} | {_fmt(c_ratio, '.2f', 'x')} |"
            f" {m['crps']:.4f} |"
            f" {m['spread_skill']:.2f} | {m['spectrum_error']:.3f} |"
            f" {m['physics_error']:.3f} | {m.get('diverged', '-')} |"
            f" {_fmt(None if memory is None else memory / 2**20, '.1f')} |")
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


# The files run_benchmark writes (glob patterns; the plots are named by
# config and regime).
OUTPUT_FILES = ("benchmark.json", "benchmark.csv", "benchmark.md",
                "*_rmse_vs_time_*.png", "*_spectra.png", "*_fields.png")


def write_plots(name: str, result: dict, examples: dict, config,
                out_dir: Path) -> list[Path]:
  """Error vs time per regime, spectra per regime, example fields."""
  paths = []
  k = wavenumbers(config)
  spectra = {}
  for regime, rows in result["regimes"].items():
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
                  mode: str = "quick", start: str = "truth"
                  ) -> dict[str, Path]:
  """{config name: docs/results/benchmark_NAME[_MODE][_START].md}: the mode
  and start named where they are not the defaults (quick, truth)."""
  out = {}
  for name in dict.fromkeys(names or DEFAULT_CONFIGS):
    config_name = load_config(name, list(overrides)).name
    out[config_name] = provenance.publish_path(
        "benchmark", config_name, *([mode] if mode != "quick" else []),
        *([start] if start != "truth" else []))
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
                  burn_in: int | None = None,
                  command: str | Sequence[str] | None = None,
                  publish: dict[str, Path] | None = None) -> dict:
  """The benchmark end to end; returns the results written to out_dir.

  size: optional overrides of the mode's BenchmarkSize fields.
  start: "truth" or "cold" (module docstring); burn_in: steps left out of
  the scores (default T // 5).
  command: the command line named in the markdown's provenance header
    (default sys.argv).
  publish: {config name: path} (`publish_paths`): each benchmarked config's
    table, under the header, also goes there.
  """
  t_start = time.perf_counter()
  methods = check_methods(methods)
  if start not in STARTS:
    raise ValueError(f"unknown start {start!r}; choose one of {STARTS}")
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
    truth = test_trajectories(config)
    log(f"{config.name}: {sz.num_trajectories} held-out trajectories x"
        f" {sz.num_steps} steps ({time.perf_counter() - t0:.1f} s to"
        f" simulate), {sz.ensemble_size} members")
    names = list(regimes or [r.name for r in config.regimes])
    h = models.ardm.history_length
    initial = None
    if start == "cold":
      k, m = sz.num_trajectories, sz.ensemble_size
      initial = climatological_histories(config, k * m, h, seed).reshape(
          (k, m, h) + tuple(models.ardm.state_shape))
    steps_burn_in = default_burn_in(sz.num_steps) if burn_in is None else burn_in
    out = benchmark_config(config, models, truth, names, methods,
                           sz.ensemble_size, seed, log=log, initial=initial,
                           burn_in=steps_burn_in)
    result = {
        "setup": {**dataclasses.asdict(sz), "start": start,
                  "burn_in": steps_burn_in,
                  "sampler_substeps": models.ardm.config.sampler.num_steps,
                  "physics_metric": physics_metric_name(config),
                  "ardm": str(ardm_path), "controller": str(controller_path),
                  "baseline_options": {
                      m: {k: repr(v) for k, v in o.items()}
                      for m, o in baseline_options(config).items()},
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
          f"DA benchmark: {name} ({mode} mode, {start} start)"))
  paths += plot_paths
  results["paths"] = [str(p) for p in paths]
  return results
