"""The accuracy-cost frontier: each method's cost to match the controller.

Every method runs over a range of budgets on the SAME held-out truth,
observations and keys as the benchmark, and initial ensembles drawn as its
(`evaluation.benchmark.method_program`; M members: the same as the
benchmark's where M is its ensemble size):

  controlled        at the sampler sub-steps it was trained with
  dps, sda, repaint the same frozen ARDM with 6, 12, 25 and 50 sampler
                    sub-steps per forecast step (--substeps)
  letkf, letks      the true-solver filters with 8, 16 and 32 members
                    (--members), radius and inflation tuned on validation
                    for that ensemble size where `filter_tuning` has them
                    ("untuned" in the table where not)

Accuracy is rmse.a (DAPPER's time mean of the spatial RMSE of the ensemble
mean after a burn-in of T // 5, `engine.score`). Cost is CPU time (the
process's, all threads) of the compiled program summed over the
trajectories, compilation excluded; every (method, budget) runs once per
round, rounds alternate the order (forward, then backward), and the table
gives the median over rounds. For every baseline it prints the cheapest
budget whose rmse.a is at most the controller's and that cost over the
controller's, or "never" with its best rmse.a. The table goes under the
provenance header to --out (and, with --publish, to
docs/results/frontier_CONFIG_START.md); the plot, rmse.a against CPU time
per regime, beside it.

Usage:
    python benchmarks/frontier.py --config ks --start cold --publish
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gencast_control.baselines import filters  # noqa: E402
from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.evaluation import (benchmark, engine,  # noqa: E402
                                        provenance)
from gencast_control.evaluation.plots import save_figure  # noqa: E402
from gencast_control.systems import pipeline  # noqa: E402
from gencast_control.systems.truth import (  # noqa: E402
    cold_ensembles, test_trajectories)

DIFFUSION = ("dps", "sda", "repaint")
SUBSTEPS = (6, 12, 25, 50)
MEMBERS = (8, 16, 32)


def with_substeps(ardm, num_steps: int):
  """The same frozen grid ARDM sampled with `num_steps` sub-steps."""
  sampler = dataclasses.replace(ardm.config.sampler, num_steps=num_steps)
  return type(ardm)(dataclasses.replace(ardm.config, sampler=sampler),
                    ardm.params, ardm.normalization, ardm.layout)


def cells(models, methods, substeps, members, ensemble_size):
  """[(method, budget label, models, ensemble size)] of the sweep."""
  native = models.ardm.config.sampler.num_steps
  out = [("controlled", f"{native} sub-steps", models, ensemble_size)]
  for method in methods:
    if method in DIFFUSION:
      for n in substeps:
        out.append((method, f"{n} sub-steps", dataclasses.replace(
            models, ardm=with_substeps(models.ardm, n)), ensemble_size))
    elif method in filters.FILTERS:
      out += [(method, f"{m} members", models, m) for m in members]
    else:
      raise ValueError(f"unknown method {method!r}; choose from"
                       f" {DIFFUSION + filters.METHODS}")
  return out


def sweep(config, models, truth, regime, start: str, cells_, rounds: int,
          seed: int, log) -> list[dict]:
  """rmse.a (first round) and the median CPU seconds of every cell."""
  h = models.ardm.history_length
  num_steps = truth.shape[1] - h
  burn_in = benchmark.default_burn_in(num_steps)
  key = jax.random.PRNGKey(seed)
  observations = engine.observe(config.regime(regime), truth, h, key)
  base = benchmark.baseline_options(config, models.controller_config.horizon,
                                    models.ardm)
  initial = {}
  rows = [dict(method=m, budget=b, cpu=[]) for m, b, _, _ in cells_]
  for r in range(rounds):
    order = range(len(cells_)) if r % 2 == 0 else reversed(range(len(cells_)))
    for i in order:
      method, budget, cell_models, members = cells_[i]
      if members not in initial:
        initial[members] = (truth[:, :h] if start == "truth" else
                            cold_ensembles(config, len(truth), members, h,
                                           seed))
      options, tuned = benchmark.filter_options(config, method, base, start,
                                                members, num_steps, regime)
      run = benchmark.run_method(method, cell_models, initial[members],
                                 observations, num_steps, key, members,
                                 {method: options})
      rows[i]["cpu"].append(run.cpu_seconds)
      if r == 0:
        s = engine.score(run.ensembles, truth[:, h - 1:], burn_in=burn_in)
        finite = bool(np.isfinite(run.ensembles).all())
        label = (benchmark.filter_label(method, options, tuned)
                 if method in benchmark.TUNED_FILTERS else method)
        rows[i].update(rmse_a=s["rmse_a"] if finite else float("inf"),
                       spread_a=s.get("spread_a"), members=members,
                       label=label)
      log(f"  {regime} round {r}: {method} {budget}: rmse.a"
          f" {rows[i]['rmse_a']:.4f} CPU {run.cpu_seconds:.2f} s")
  for row in rows:
    row["cpu_seconds"] = statistics.median(row.pop("cpu"))
  return rows


def cost_to_match(rows: list[dict]) -> dict[str, dict]:
  """Per baseline: the cheapest budget with rmse.a <= the controller's
  and its CPU time over the controller's (None: never reached), and the
  most CPU time it was given, over the controller's (a baseline that never
  reaches it needs more than that)."""
  ctrl = next(r for r in rows if r["method"] == "controlled")
  out = {}
  for method in dict.fromkeys(r["method"] for r in rows):
    if method == "controlled":
      continue
    mine = [r for r in rows if r["method"] == method]
    good = [r for r in mine if r["rmse_a"] <= ctrl["rmse_a"]]
    best = min(mine, key=lambda r: r["rmse_a"])
    cheapest = min(good, key=lambda r: r["cpu_seconds"]) if good else None
    out[method] = {
        "budget": cheapest and cheapest["budget"],
        "cost_ratio": (cheapest and cheapest["cpu_seconds"]
                       / ctrl["cpu_seconds"]),
        "best_rmse_a": best["rmse_a"], "best_budget": best["budget"],
        "max_cost_ratio": max(r["cpu_seconds"] for r in mine)
                          / ctrl["cpu_seconds"]}
  return out


def markdown(results: dict) -> str:
  s = results["setup"]
  lines = [f"# Accuracy-cost frontier: {s['config']} ({s['start']} start)", "",
           f"{s['num_trajectories']} held-out trajectories x {s['num_steps']}"
           f" steps, {s['ensemble_size']} members for the diffusion methods;"
           f" rmse.a over t = {s['burn_in'] + 1}..{s['num_steps']}; CPU time:"
           f" median of {s['rounds']} alternating rounds, compiled program,"
           f" summed over trajectories; total {results['total_seconds']:.0f}"
           " s.", ""]
  for regime, rows in results["regimes"].items():
    ctrl = next(r for r in rows if r["method"] == "controlled")
    lines += [f"## {regime}", "",
              "| method | budget | rmse.a | spread.a | CPU [s] |"
              " CPU / controller |", "|---|---|---|---|---|---|"]
    for r in rows:
      label = r["label"]
      spread = "-" if r["spread_a"] is None else f"{r['spread_a']:.4f}"
      lines.append(f"| {label} | {r['budget']} | {r['rmse_a']:.4f} |"
                   f" {spread} | {r['cpu_seconds']:.3f} |"
                   f" {r['cpu_seconds'] / ctrl['cpu_seconds']:.2f}x |")
    lines.append("")
    for method, m in results["cost_to_match"][regime].items():
      if m["budget"] is None:
        lines.append(f"- {method}: never reaches the controller's rmse.a"
                     f" {ctrl['rmse_a']:.4f} (best {m['best_rmse_a']:.4f} at"
                     f" {m['best_budget']}) with up to"
                     f" {m['max_cost_ratio']:.1f}x the controller's CPU"
                     " time.")
      else:
        lines.append(f"- {method}: reaches the controller's rmse.a"
                     f" {ctrl['rmse_a']:.4f} at {m['budget']}, for"
                     f" {m['cost_ratio']:.2f}x the controller's CPU time.")
    lines.append("")
  return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
  regimes = results["regimes"]
  fig, axes = plt.subplots(1, len(regimes), figsize=(5 * len(regimes), 4),
                           constrained_layout=True, squeeze=False)
  for ax, (regime, rows) in zip(axes[0], regimes.items()):
    for method in dict.fromkeys(r["method"] for r in rows):
      mine = [r for r in rows if r["method"] == method]
      ax.plot([r["cpu_seconds"] for r in mine], [r["rmse_a"] for r in mine],
              "o-" if len(mine) > 1 else "*", label=method,
              ms=12 if method == "controlled" else 5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("CPU time [s]")
    ax.set_ylabel("rmse.a")
    ax.set_title(regime)
    ax.legend(fontsize=8)
  return save_figure(fig, path, dpi=110)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="ks")
  parser.add_argument("--start", default="cold", choices=benchmark.STARTS)
  parser.add_argument("--regime", action="append",
                      help="default: random_10pct and stations_10pct")
  parser.add_argument("--method", action="append",
                      help="default: dps sda repaint letkf letks")
  parser.add_argument("--substeps", type=int, nargs="+", default=SUBSTEPS)
  parser.add_argument("--members", type=int, nargs="+", default=MEMBERS)
  parser.add_argument("--trajectories", type=int, default=2)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--ensemble-size", type=int, default=4)
  parser.add_argument("--rounds", type=int, default=2,
                      choices=range(1, 21), metavar="1..20")
  parser.add_argument("--seed", type=int, default=1)
  parser.add_argument("--out", default="results/frontier")
  provenance.add_publish_argument(parser, "frontier_CONFIG_START")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args(argv)
  t0 = time.perf_counter()
  config = load_config(args.config, [])
  if args.publish:  # before any work: finished tables are not replaced
    provenance.check_publish([provenance.publish_path(
        "frontier", config.name, args.start)], args.overwrite)
  config = dataclasses.replace(config, assimilation=dataclasses.replace(
      config.assimilation, num_trajectories=args.trajectories,
      num_steps=args.steps, ensemble_size=args.ensemble_size))
  regimes = args.regime or ["random_10pct", "stations_10pct"]
  for name in regimes:
    config.regime(name)
  models = benchmark.load_models(config,
                                 *pipeline.shipped_checkpoints(config.name))
  truth = test_trajectories(config).astype(np.float32)
  cells_ = cells(models, args.method or DIFFUSION + ("letkf", "letks"),
                 args.substeps, args.members, args.ensemble_size)
  results = {"setup": {"config": config.name, "start": args.start,
                       "num_trajectories": args.trajectories,
                       "num_steps": args.steps,
                       "ensemble_size": args.ensemble_size,
                       "burn_in": benchmark.default_burn_in(args.steps),
                       "rounds": args.rounds},
             "regimes": {}, "cost_to_match": {}}
  for regime in regimes:
    rows = sweep(config, models, truth, regime, args.start, cells_,
                 args.rounds, args.seed, print)
    results["regimes"][regime] = rows
    results["cost_to_match"][regime] = cost_to_match(rows)
  results["total_seconds"] = time.perf_counter() - t0
  name = f"frontier_{config.name}_{args.start}"
  command = " ".join(["python", "benchmarks/frontier.py"]
                     + list(sys.argv[1:] if argv is None else argv))
  paths = engine.write_report(args.out, name, results,
                              [{"regime": g, **r} for g, rows in
                               results["regimes"].items() for r in rows],
                              markdown(results), command)
  paths["plot"] = plot(results, Path(args.out) / f"{name}.png")
  if args.publish:
    paths["published"] = provenance.publish(
        provenance.publish_path("frontier", config.name, args.start),
        markdown(results), command)
  print(markdown(results))
  for path in paths.values():
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/frontier.py", main))
