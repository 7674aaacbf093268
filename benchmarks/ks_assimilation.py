"""Benchmark: controlled rollout vs unguided ARDM forecast on held-out KS.

Measured side by side in one run, on the same truth trajectories, observations
and PRNG keys, after compilation:

* wall-clock(controlled rollout) / wall-clock(unguided rollout)  (goal <= 1.2x)
* RMSE(unguided) / RMSE(controlled) of the ensemble mean       (goal >= 5x)

Usage:
    python benchmarks/ks_assimilation.py [--regime random_10pct] [--trajectories 8]
"""

import argparse
import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

from gencast_control import evaluation, pipeline  # noqa: E402
from gencast_control.adapters.grid import load_grid_ardm  # noqa: E402
from gencast_control.config import load_config  # noqa: E402
from gencast_control.controller import load_controller  # noqa: E402
from gencast_control.demo import test_trajectories  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="ks")
  parser.add_argument("--regime", action="append",
                      help="regime name(s); default: all of the config's")
  parser.add_argument("--trajectories", type=int, default=8)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--ensemble", type=int, default=8)
  parser.add_argument("--json", help="also write the results here")
  args = parser.parse_args()
  config = load_config(args.config, [
      f"assimilation.num_trajectories={args.trajectories}",
      f"assimilation.num_steps={args.steps}",
      f"assimilation.ensemble_size={args.ensemble}"])
  ardm_path, controller_path = pipeline.shipped_checkpoints(config.name)
  ardm, _ = load_grid_ardm(ardm_path)
  controller_config, params, _ = load_controller(controller_path, ardm)
  truth = test_trajectories(config)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()};"
        f" {args.trajectories} held-out trajectories x {args.steps} steps,"
        f" ensemble {args.ensemble}, sampler"
        f" {config.ardm.sampler.method} x{config.ardm.sampler.num_steps}")
  regimes = args.regime or [r.name for r in config.regimes]
  rows = evaluation.evaluate_regimes(config, ardm, controller_config, params,
                                     truth, regimes, args.ensemble, seed=1)
  print(evaluation.markdown_table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
