"""Tunes the LETKF's and the LETKS's radius and inflation on VALIDATION data.

The filters with the true solver ("letkf", "letks") and with the shipped
ARDM as their model ("letkf_ardm", "letks_ardm": `baselines.filters`).

For each config, benchmark mode (its K trajectories x T steps x M members),
start ("truth": members at the true state plus the initial spread; "cold":
climatological states), observation regime and method, every (localisation
radius, inflation) of the grid is run on validation trajectories
(`systems.truth.validation_trajectories`, the validation split's key: never
the benchmark's test truth; cold starts from climatological states of a seed
the benchmark does not use) and scored by rmse.a, DAPPER's time-mean
analysis RMSE after a burn-in of T // 5 (`engine.score`); a run that
diverges scores inf. Where the best point lies on an end of the grid, the
grid is extended past it (`filter_tuning.grid_search`, at most --extend
times); --refine extends the recorded grids of settings already tuned,
reusing their scores. The best pair of each setting, with the whole grid's
scores and this command's provenance, is merged into
`baselines.filter_tuning.TUNED_FILE`, which the benchmark reads. Settings
already in the file are kept unless --replace: finished tuning is never
overwritten silently. --publish writes the table to
docs/results/tuning_filters_CONFIG.md.

Usage:
    python benchmarks/tune_filters.py --config ks --mode quick --mode full
    python benchmarks/tune_filters.py --config kolmogorov --mode quick \\
        --radius 3 6 --inflation 1.05 1.2 1.5
    python benchmarks/tune_filters.py --config kolmogorov --refine --publish
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from gencast_control.baselines import filter_tuning, filters  # noqa: E402
from gencast_control.core.checkpoint import atomic_write  # noqa: E402
from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.evaluation import (benchmark, engine,  # noqa: E402
                                        provenance)
from gencast_control.systems.truth import (  # noqa: E402
    cold_ensembles, validation_trajectories)

# Grids in grid points and multiplicative factors; per system, the radius
# spans a fraction of the domain (KS: 128 points, Kolmogorov: 64^2).
DEFAULT_GRIDS = {
    "ks": {"radius": (1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
           "inflation": (1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0)},
    "kolmogorov": {"radius": (1.0, 1.5, 2.0, 3.0, 6.0),
                   "inflation": (1.02, 1.05, 1.2, 1.5)},
}
OBSERVATION_SEED = 1001  # the benchmark draws with seed 1
COLD_SEED = 1002


def tune_setting(config, method: str, truth: np.ndarray, initial,
                 observations, options: dict, grid: dict,
                 ensemble_size: int, max_extensions: int,
                 scored=()) -> dict:
  """The grid's validation rmse.a, followed outward at its edges
  (`filter_tuning.grid_search`), and the best point."""
  h = config.ardm.history_length
  num_steps = truth.shape[1] - h
  burn_in = benchmark.default_burn_in(num_steps)
  key = jax.random.PRNGKey(OBSERVATION_SEED)

  def evaluate(radius, inflation):
    run = engine.run_programs(
        filters.filter_program(
            method, truth[k, :h] if initial is None else initial[k],
            observations[k], num_steps, engine.member_key(key, k),
            ensemble_size, **options, localization_radius=radius,
            inflation=inflation)
        for k in range(len(truth)))
    s = engine.score(run.ensembles, truth[:, h - 1:], burn_in=burn_in)
    finite = np.isfinite(run.ensembles).all() and np.isfinite(s["rmse_a"])
    return {"rmse_a": s["rmse_a"] if finite else None,
            "spread_a": s.get("spread_a") if finite else None,
            "cpu_seconds": run.cpu_seconds}

  try:
    search = filter_tuning.grid_search(
        evaluate, grid["radius"], grid["inflation"],
        radius_max=float(max(truth.shape[2:])),
        max_extensions=max_extensions, scored=scored)
  except ValueError as e:
    raise ValueError(f"{method}: {e}") from None
  return {**search, "burn_in": burn_in,
          "options": filter_tuning.fixed_options(options)}


def markdown(config_name: str, entries: dict) -> str:
  lines = [f"# LETKF / LETKS tuning on validation: {config_name}", "",
           "Each row: the (radius, inflation) of the grid with the lowest"
           " validation rmse.a (DAPPER's time-mean analysis RMSE after a"
           " burn-in of T // 5); the benchmark runs these on the test truth."
           " Radius in grid points (Gaspari-Cohn half-width). Where the best"
           " point lay on an end of the grid, the grid was extended past it"
           " (radius halved or doubled; inflation's excess over 1 halved, or"
           " 1 from 1.05 or less, or doubled, by 0.05 at least) until it did"
           " not, at most --extend times per run; `edge` names an end the"
           " best point still lies on (-: none, or only an axis's natural"
           " end: radius 0.5 or the domain's side, inflation 1; ?: not"
           " checked, tuned before the check existed).",
           "", "| method | start | M | regime | K x T | radius | inflation |"
           " rmse.a | spread.a | grid points | worst rmse.a | edge |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for key, e in sorted(entries.items()):
    method, start, members, _, regime = key.split("/")
    b = e["best"]
    worst = max((s["rmse_a"] for s in e["grid"]), key=lambda v: (
        v is None, v or 0.0))
    edge = ("?" if "at_edge" not in e else ", ".join(
        f"{'radius' if f == 'localization_radius' else f} {side}"
        for f, side in e["at_edge"]) or "-")
    lines.append(
        f"| {method} | {start} | {members[1:]} | {regime} |"
        f" {e['validation']['num_trajectories']} x"
        f" {e['validation']['num_steps']} |"
        f" {b['localization_radius']:g} | {b['inflation']:g} |"
        f" {b['rmse_a']:.4f} |"
        f" {'-' if b['spread_a'] is None else format(b['spread_a'], '.4f')} |"
        f" {len(e['grid'])} |"
        f" {'diverged' if worst is None else format(worst, '.4g')} |"
        f" {edge} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="ks")
  parser.add_argument("--mode", action="append", choices=benchmark.MODES,
                      help="benchmark sizes to tune for (default quick)")
  parser.add_argument("--method", action="append",
                      choices=benchmark.TUNED_FILTERS)
  parser.add_argument("--start", action="append", choices=benchmark.STARTS)
  parser.add_argument("--regime", action="append")
  parser.add_argument("--members", type=int, nargs="+",
                      help="ensemble sizes to tune for instead of the"
                      " mode's (e.g. the frontier's 8 16 32)")
  parser.add_argument("--radius", type=float, nargs="+")
  parser.add_argument("--inflation", type=float, nargs="+")
  parser.add_argument("--extend", type=int, default=3, metavar="N",
                      help="extend the grid outward at most N times where"
                      " the best point lies on its edge (default 3; 0: the"
                      " grid as given)")
  parser.add_argument("--replace", action="store_true",
                      help="replace settings already tuned")
  parser.add_argument("--refine", action="store_true",
                      help="settings already tuned: extend their recorded"
                      " grid (and --radius/--inflation) at its edges,"
                      " reusing its scores once its best point reproduces;"
                      " settings not yet tuned are tuned from the grid")
  parser.add_argument("--out", default=str(filter_tuning.TUNED_FILE))
  provenance.add_publish_argument(parser, "tuning_filters_CONFIG")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args(argv)
  if args.extend < 0:
    parser.error(f"--extend must be >= 0, got {args.extend}")
  if args.refine and args.replace:
    parser.error("--refine extends recorded grids, --replace discards"
                 " them: give one")
  config = load_config(args.config, [])
  publish = None
  if args.publish:  # before any work: a finished table is not replaced
    publish = provenance.publish_path("tuning_filters", config.name)
    provenance.check_publish([publish], args.overwrite)
  grid = dict(DEFAULT_GRIDS.get(config.name, DEFAULT_GRIDS["ks"]))
  grid["radius"] = tuple(args.radius or grid["radius"])
  grid["inflation"] = tuple(args.inflation or grid["inflation"])
  regimes = args.regime or [r.name for r in config.regimes]
  methods = args.method or list(benchmark.TUNED_FILTERS)
  starts = args.start or list(benchmark.STARTS)
  command = " ".join(["python", "benchmarks/tune_filters.py"]
                     + list(sys.argv[1:] if argv is None else argv))
  commit = provenance.git_commit()  # before this run writes the tuned file
  existing = {}
  if os.path.exists(args.out):
    with open(args.out) as f:
      existing = json.load(f)
  section = existing.setdefault("configs", {}).setdefault(config.name, {})

  def save():  # after every setting: finished tuning survives a crash
    atomic_write(args.out, lambda f: f.write(
        json.dumps(existing, indent=1, sort_keys=True).encode()))

  models = benchmark.load_models(
      config, *benchmark.pipeline.shipped_checkpoints(config.name))
  options = benchmark.baseline_options(
      config, models.controller_config.horizon, models.ardm)
  h = config.ardm.history_length
  sizes = [(mode, m) for mode in args.mode or ["quick"]
           for m in args.members
           or [benchmark.benchmark_size(config, mode).ensemble_size]]
  for mode, m in sizes:
    size = benchmark.benchmark_size(config, mode)
    k, t = size.num_trajectories, size.num_steps
    truth = validation_trajectories(config, k, t).astype(np.float32)
    for start in starts:
      initial = (None if start == "truth"
                 else cold_ensembles(config, k, m, h, COLD_SEED))
      for regime in regimes:
        observations = engine.observe(config.regime(regime), truth, h,
                                      jax.random.PRNGKey(OBSERVATION_SEED))
        for method in methods:
          key = filter_tuning.entry_key(method, start, m, t, regime)
          old = section.get(key)
          refine = (args.refine and old is not None and old["options"]
                    == filter_tuning.fixed_options(options[method])
                    and old["validation"]["num_trajectories"] == k)
          if old is not None and not (args.replace or refine):
            print(f"{key}: tuned already (keep; --replace to redo, --refine"
                  " to extend)" if not args.refine else f"{key}: tuned with"
                  " other options or another validation size than this run"
                  " has, so not extended (keep; --replace to retune)")
            continue
          t0 = time.perf_counter()
          entry = tune_setting(
              config, method, truth, initial, observations, options[method],
              {"radius": args.radius or (), "inflation": args.inflation or ()}
              if refine else grid, m, args.extend,
              scored=old["grid"] if refine else ())
          if refine and len(entry["grid"]) == len(old["grid"]):
            print(f"{key}: nothing to extend (keep)" if not entry["at_edge"]
                  else f"{key}: best point on the edge {entry['at_edge']},"
                  f" not extended (--extend {args.extend})")
            if old.get("at_edge") != entry["at_edge"]:  # nothing new was run
              old["at_edge"] = entry["at_edge"]
              save()
            continue
          if refine:  # the points reused, and the chain of earlier runs
            entry["reused"] = {"points": len(old["grid"]), **{
                f: old.get(f) for f in ("command", "commit", "date",
                                        "reused")}}
          entry.update(validation={"num_trajectories": k, "num_steps": t,
                                   "ensemble_size": m, "mode": mode},
                       max_extensions=args.extend,
                       command=command,
                       date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       commit=commit)
          section[key] = entry
          b = entry["best"]
          edge = f", at edge {entry['at_edge']}" if entry["at_edge"] else ""
          print(f"{key}: radius {b['localization_radius']:g} inflation"
                f" {b['inflation']:g} rmse.a {b['rmse_a']:.4f},"
                f" {len(entry['grid'])} points{edge}"
                f" ({time.perf_counter() - t0:.0f} s)", flush=True)
          save()
  if publish:
    text = markdown(config.name, section)
    print(f"wrote {provenance.publish(publish, text, command, commit=commit)}")
  return 0


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/tune_filters.py", main))
