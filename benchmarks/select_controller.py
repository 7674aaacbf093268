"""Candidate controllers side by side on the VALIDATION split: how one is chosen.

Runs `gencast-control benchmark --split validation --method controlled
unguided` for every candidate, from the true state and from a cold start (the
benchmark's sizes, keys and observations; the test truth is never used), and
writes one table: per candidate, start and regime the controller's rmse.a,
fair CRPS and spread/skill, and its worst RMSE ratio to the unguided forecast
over the lead times; then per candidate and start the mean rmse.a and CRPS
over the regimes, the regimes with spread/skill in [0.7, 1.3] and those at or
below the unguided forecast at every lead (the README's goals). The table
goes under the provenance header to --out and, with --publish, to
docs/results/select_controller_CONFIG.md.

A candidate is NAME=CHECKPOINT, optionally followed by config overrides the
checkpoint was trained with (comma-separated FIELD=VALUE); "shipped" alone is
the shipped controller. Every candidate steers the shipped ARDM:

    python benchmarks/select_controller.py --config ks --candidate shipped \
        --candidate perturbed=ks_pert.npz,controller.perturbed_observations=True
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.evaluation import benchmark, provenance  # noqa: E402
from gencast_control.systems import pipeline  # noqa: E402


def parse_candidate(text: str) -> tuple[str, str | None, list[str]]:
  """'NAME[=CHECKPOINT[,FIELD=VALUE...]]' -> (name, checkpoint, overrides)."""
  name, _, rest = text.partition("=")
  if not name or (rest == "" and name != "shipped"):
    raise ValueError(f"--candidate {text!r}: give NAME=CHECKPOINT[,FIELD="
                     "VALUE...] (or 'shipped')")
  path, *overrides = rest.split(",") if rest else [None]
  if path is not None and not Path(path).is_file():
    raise ValueError(f"--candidate {name}: no checkpoint at {path}")
  return name, path, overrides


def run_candidate(config_name: str, path: str | None, overrides: list[str],
                  start: str, regimes, size: dict, work: Path) -> dict:
  """The benchmark's result of one candidate and start on validation:
  {"setup", "regimes", "goals"} (`benchmark.run_benchmark`)."""
  name = load_config(config_name, overrides).name
  ardm, shipped = pipeline.shipped_checkpoints(name)
  folder = work / "checkpoints"
  folder.mkdir(parents=True, exist_ok=True)
  for kind, source in (("ardm", ardm), ("controller", path or shipped)):
    link = folder / f"{name}_{kind}.npz"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(source).resolve())
  results = benchmark.run_benchmark(
      work / start, [config_name], methods=("controlled", "unguided"),
      regimes=regimes, overrides=overrides, checkpoints_dir=folder,
      size=size, start=start, split="validation", log=lambda _: None)
  return results["configs"][name]


def markdown(results: dict[str, dict[str, dict]], setup: str) -> str:
  lines = [setup, "",
           "| candidate | start | regime | rmse.a | CRPS | spread/skill |"
           " worst lead / unguided |", "|---|---|---|---|---|---|---|"]
  summary = ["", "| candidate | start | mean rmse.a | mean CRPS |"
             " spread/skill in [0.7, 1.3] | <= unguided at every lead |",
             "|---|---|---|---|---|---|"]
  for name, starts in results.items():
    for start, regimes in starts.items():
      calibrated, harmless = 0, 0
      for regime, rows in regimes.items():
        c = rows["controlled"]
        t, ratio = benchmark.worst_lead(rows)
        calibrated += 0.7 <= c["spread_skill"] <= 1.3
        harmless += ratio <= 1.0
        lines.append(f"| {name} | {start} | {regime} | {c['rmse_a']:.4f} |"
                     f" {c['crps']:.4f} | {c['spread_skill']:.2f} |"
                     f" {ratio:.3f} (t = {t}) |")
      rmse_a = np.mean([r["controlled"]["rmse_a"] for r in regimes.values()])
      crps = np.mean([r["controlled"]["crps"] for r in regimes.values()])
      summary.append(f"| {name} | {start} | {rmse_a:.4f} | {crps:.4f} |"
                     f" {calibrated} of {len(regimes)} | {harmless} of"
                     f" {len(regimes)} |")
  return "\n".join(lines + summary) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="ks")
  parser.add_argument("--candidate", action="append", required=True,
                      help="NAME=CHECKPOINT[,FIELD=VALUE...] or 'shipped'"
                      " (repeatable)")
  parser.add_argument("--regime", action="append",
                      help="default: all of the config's")
  parser.add_argument("--start", action="append", choices=benchmark.STARTS,
                      help="default: both")
  parser.add_argument("--trajectories", type=int)
  parser.add_argument("--steps", type=int)
  parser.add_argument("--members", type=int)
  parser.add_argument("--out", default="results/select_controller.md")
  provenance.add_publish_argument(parser, "select_controller_CONFIG")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args(argv)
  try:
    candidates = [parse_candidate(c) for c in args.candidate]
  except ValueError as e:
    parser.error(str(e))
  config = load_config(args.config, [])
  publish = (provenance.publish_path("select_controller", config.name)
             if args.publish else None)
  if publish:  # before any work: finished tables are not replaced
    provenance.check_publish([publish], args.overwrite)
  size = {k: v for k, v in (("num_trajectories", args.trajectories),
                            ("num_steps", args.steps),
                            ("ensemble_size", args.members)) if v is not None}
  results = {}
  with tempfile.TemporaryDirectory() as work:
    for name, path, overrides in candidates:
      results[name] = {}
      for start in args.start or benchmark.STARTS:
        result = run_candidate(args.config, path, overrides, start,
                               args.regime, size, Path(work) / name)
        results[name][start] = result["regimes"]
        print(f"{name}, {start} start: done", flush=True)
  sizes = result["setup"]  # every run has the same sizes
  steps = sizes["num_steps"]

  def described(name, path, overrides):
    path = path or pipeline.shipped_checkpoints(config.name)[1]
    return (f"{name} = {Path(path).name} (sha256"
            f" {provenance.file_digest(path)}"
            + "".join(f", {o}" for o in overrides) + ")")

  setup = (f"{sizes['num_trajectories']} validation-split trajectories x"
           f" {steps} steps, {sizes['ensemble_size']} members (the"
           f" benchmark's quick sizes unless overridden); scores over t ="
           f" {benchmark.default_burn_in(steps) + 1}..{steps}, the worst"
           f" lead over t = 1..{steps}. Candidates: "
           + "; ".join(described(*c) for c in candidates) + ".")
  command = " ".join(["python", "benchmarks/select_controller.py"]
                     + list(sys.argv[1:] if argv is None else argv))
  title = f"# Controller selection on validation: {config.name}\n\n"
  provenance.write_table(title + markdown(results, setup), command, args.out,
                         publish)
  return 0


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/select_controller.py", main))
