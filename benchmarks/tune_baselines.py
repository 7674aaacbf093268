"""Tunes one scalar of a gradient-guided baseline on the VALIDATION split.

For fairness the DA benchmark lets DPS and SDA use one tuned scalar each
(DPS: `relaxation`, SDA: `gamma`), chosen by the RMSE of the ensemble mean on
validation trajectories (the key of `experiment.simulate_splits`'s
"validation" split, never the benchmark's held-out test truth), averaged over
two regimes. The chosen values live in `benchmark.TUNED_OPTIONS`.

Usage:
    python benchmarks/tune_baselines.py sda gamma 1 0.1 0.01 0.001
    python benchmarks/tune_baselines.py dps relaxation 0.25 0.5 1
"""

import argparse
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gencast_control.evaluation import benchmark
from gencast_control.baselines.guidance import assimilate_baseline  # noqa: E402
from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.systems import pipeline  # noqa: E402
from gencast_control.systems.experiment import get_system  # noqa: E402
from gencast_control.core.regimes import sample_observations  # noqa: E402
from gencast_control.data.trajectories import trajectories_to_array  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("method", choices=("dps", "sda"))
  parser.add_argument("option", help="the scalar, e.g. gamma or relaxation")
  parser.add_argument("values", type=float, nargs="+")
  parser.add_argument("--config", default="ks")
  parser.add_argument("--regime", action="append",
                      help="default: random_10pct and stations_10pct")
  parser.add_argument("--trajectories", type=int, default=2)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--members", type=int, default=4)
  args = parser.parse_args()
  config = load_config(args.config, [])
  models = benchmark.load_models(config, *pipeline.shipped_checkpoints(config.name))
  system = get_system(config.system)
  validation_key = jax.random.fold_in(jax.random.PRNGKey(config.data.seed), 1)
  truth = trajectories_to_array(system.generate(
      validation_key, args.trajectories, args.steps, config.pde,
      burn_in_steps=config.data.burn_in_steps), system.variables)
  key = jax.random.PRNGKey(7)
  regimes = args.regime or ["random_10pct", "stations_10pct"]
  for value in args.values:
    scores = []
    for regime in regimes:
      errors = []
      for k, traj in enumerate(truth):
        obs = sample_observations(config.regime(regime),
                                  jax.random.fold_in(key, 2 * k),
                                  jnp.asarray(traj))
        ens = np.asarray(assimilate_baseline(
            args.method, models.ardm, traj[:1], obs, args.steps,
            jax.random.fold_in(key, 2 * k + 1), args.members,
            **{args.option: value}))
        errors.append(np.mean((ens.mean(0)[1:] - traj[1:])**2))
      scores.append(float(np.sqrt(np.mean(errors))))
      print(f"{args.method} {args.option}={value:g} {regime}: validation"
            f" RMSE {scores[-1]:.4f}", flush=True)
    print(f"{args.method} {args.option}={value:g}: mean validation RMSE"
          f" {np.mean(scores):.4f}", flush=True)


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/tune_baselines.py", main))
