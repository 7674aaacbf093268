"""Why the controller harms a good background: what it does from the true state.

On VALIDATION trajectories (the validation split's key; the benchmark's test
truth is never used), every member starts at the true state and the RMSE of
the ensemble mean is taken per lead time for

  unguided              the plain ARDM forecast
  controlled            the controller with the regime's observations
  obs hidden            the controller with every observation masked out:
                        what it does without any information
  noise-free obs        the controller with the observations' values
                        replaced by the truth (same mask, same stated std):
                        what fitting the observation noise costs

beside the control size per sampler sub-step (RMS of (sigma_hat -
sigma_next) u / sigma_hat, `benchmark.control_sizes`) from the true state
and from a cold start. The table goes under the provenance header to --out
and, with --publish, to docs/results/harm_probe_CONFIG.md.

Usage:
    python benchmarks/harm_probe.py --config ks --publish
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.core.observations import Observations  # noqa: E402
from gencast_control.evaluation import (benchmark, engine,  # noqa: E402
                                        provenance)
from gencast_control.systems import pipeline  # noqa: E402
from gencast_control.systems.truth import (  # noqa: E402
    climatological_histories, validation_trajectories)

LEADS = (1, 2, 5, 10, 20, 30)
SEED = 5


def probe(config, models, truth, regime: str, members: int) -> dict:
  """Per-lead RMSE curves of the four runs and the control sizes."""
  h = models.ardm.history_length
  steps = truth.shape[1] - h
  key = jax.random.PRNGKey(SEED)
  observed = engine.observe(config.regime(regime), truth, h, key)
  hidden = [Observations.from_arrays(
      np.asarray(o.values), np.zeros_like(np.asarray(o.mask)), 1.0)
      for o in observed]
  exact = [dataclasses.replace(o, values=jnp.asarray(truth[k, h - 1:]))
           for k, o in enumerate(observed)]
  starts = [t[:h] for t in truth]

  def curve(method, observations):
    run = benchmark.run_method(method, models, starts, observations, steps,
                               key, members, {})
    return engine.score(run.ensembles, truth[:, h - 1:])["rmse_per_time"]

  cold = climatological_histories(config, members, h, SEED)
  return {
      "curves": {"unguided": curve("unguided", observed),
                 "controlled": curve("controlled", observed),
                 "obs hidden": curve("controlled", hidden),
                 "noise-free obs": curve("controlled", exact)},
      "control_size": {
          "true start": benchmark.control_sizes(
              models, jnp.asarray(starts[0]), observed[0], steps,
              engine.member_key(key, 0), members),
          "cold start": benchmark.control_sizes(
              models, jnp.asarray(cold), observed[0], steps,
              engine.member_key(key, 0))}}


def markdown(config_name: str, results: dict, setup: dict) -> str:
  leads = [t for t in LEADS if t <= setup["num_steps"]]
  lines = [f"# From the true state: what the controller does ({config_name})",
           "", f"{setup['num_trajectories']} validation trajectories x"
           f" {setup['num_steps']} steps, {setup['ensemble_size']} members,"
           " every member at the true state; RMSE of the ensemble mean per"
           " lead time t. Control size: RMS of (sigma_hat - sigma_next) u /"
           " sigma_hat per sampler sub-step (first trajectory, mean over the"
           " members).", "",
           "| regime | run | " + " | ".join(f"t = {t}" for t in leads)
           + " |", "|---|---|" + "---|" * len(leads)]
  for regime, r in results.items():
    for run, curve in r["curves"].items():
      lines.append(f"| {regime} | {run} | "
                   + " | ".join(f"{curve[t]:.3f}" for t in leads) + " |")
  lines += ["", "| regime | start | control size per sub-step |",
            "|---|---|---|"]
  for regime, r in results.items():
    for start, sizes in r["control_size"].items():
      lines.append(f"| {regime} | {start} | "
                   + " ".join(f"{v:.3f}" for v in sizes) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="ks")
  parser.add_argument("--controller", help="default: the shipped one")
  parser.add_argument("--set", action="append", default=[],
                      metavar="FIELD=VALUE",
                      help="config override, e.g. controller.spread_gate=True"
                      " for a --controller trained with it")
  parser.add_argument("--regime", action="append",
                      help="default: all of the config's")
  parser.add_argument("--trajectories", type=int, default=2)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--members", type=int, default=4)
  parser.add_argument("--out", default="results/harm_probe.md")
  provenance.add_publish_argument(parser, "harm_probe_CONFIG")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args(argv)
  config = load_config(args.config, args.set)
  if args.publish:  # before any work: finished tables are not replaced
    provenance.check_publish([provenance.publish_path(
        "harm_probe", config.name)], args.overwrite)
  ardm, controller = pipeline.shipped_checkpoints(config.name)
  models = benchmark.load_models(config, ardm, args.controller or controller)
  truth = validation_trajectories(config, args.trajectories,
                                  args.steps).astype(np.float32)
  regimes = args.regime or [r.name for r in config.regimes]
  results = {}
  for regime in regimes:
    results[regime] = probe(config, models, truth, regime, args.members)
    print(f"{regime}: done", flush=True)
  setup = {"num_trajectories": args.trajectories, "num_steps": args.steps,
           "ensemble_size": args.members}
  text = markdown(config.name, results, setup)
  command = " ".join(["python", "benchmarks/harm_probe.py"]
                     + list(sys.argv[1:] if argv is None else argv))
  provenance.write_table(text, command, args.out, provenance.publish_path(
      "harm_probe", config.name) if args.publish else None)
  return 0


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/harm_probe.py", main))
