"""Benchmark: the controlled rollout's wall-clock over the unguided one.

The evaluation engine (demo, evaluate, benchmark, pilot) times each method's
program once per trajectory. On a shared or throttled CPU one run varies by
10-20 %, as much as the controller costs, so its "time / unguided" column
cannot settle a cost goal. This benchmark compiles the unguided and the
controlled ensemble rollouts of one test trajectory (the config's ensemble
size and number of steps, its default regime's observations), runs them
alternately `--repeats` times each and prints, side by side, the median of
the per-round ratios and the ratio of the fastest runs.

Usage:
    python benchmarks/rollout_cost.py --config heldsuarez --data data/hs \\
        --ardm runs/hs/ardm.npz --controller runs/hs/controller.npz
    python benchmarks/rollout_cost.py --config ks --data data/ks \\
        --ardm ks --controller ks             # the shipped KS checkpoints
"""

import argparse
import statistics
import time

import jax

from gencast_control.api import checkpoint_path
from gencast_control.core.config import load_config
from gencast_control.core.controller import bind_controller
from gencast_control.evaluation import engine, forecasts
from gencast_control.systems import pipeline
from gencast_control.systems.experiment import state_variables
from gencast_control.systems.truth import load_test_window


def measure(config, data_dir, ardm_path, controller_path, repeats: int,
            seed: int = 0) -> dict:
  """Round-robin wall-clock of the unguided and controlled programs."""
  ardm, controller_config, params, _, _ = pipeline.load_checkpoints(
      config, ardm_path, controller_path)
  truth = load_test_window(config, data_dir)[:1]
  a = config.assimilation
  regime, = pipeline.regimes_in_state_units(
      [config.regime(a.regime)], data_dir, state_variables(config))
  key = jax.random.PRNGKey(seed)
  h = ardm.history_length
  observations = engine.observe(regime, truth, h, key)
  controller = bind_controller(controller_config, ardm.periodic, params)
  programs = forecasts.forecast_programs(
      ardm, controller, controller_config.horizon, truth[:, :h], observations,
      a.num_steps, key, a.ensemble_size)
  compiled = {}
  for method, program in programs.items():
    function, arguments = program(0)
    compiled[method] = (function.lower(*arguments).compile(), arguments)
    jax.block_until_ready(compiled[method][0](*arguments))  # warm
  times = {method: [] for method in compiled}
  for _ in range(repeats):
    for method, (function, arguments) in compiled.items():
      start = time.perf_counter()
      jax.block_until_ready(function(*arguments))
      times[method].append(time.perf_counter() - start)
  ratios = [c / u for c, u in zip(times["controlled"], times["unguided"])]
  return {"unguided_median_s": statistics.median(times["unguided"]),
          "controlled_median_s": statistics.median(times["controlled"]),
          "ratio_median": statistics.median(ratios),
          "ratio_of_fastest": min(times["controlled"])
          / min(times["unguided"]),
          "repeats": repeats, "ensemble_size": a.ensemble_size,
          "num_steps": a.num_steps, "regime": a.regime}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--data", required=True, help="folder with the test"
                      " split")
  parser.add_argument("--ardm", required=True)
  parser.add_argument("--controller", required=True)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--set", action="append", default=[],
                      metavar="KEY=VALUE")
  args = parser.parse_args()
  config = load_config(args.config, args.set)
  result = measure(config, args.data,
                   checkpoint_path(args.ardm, "ardm"),
                   checkpoint_path(args.controller, "controller"),
                   args.repeats)
  device = jax.devices()[0]
  print(f"{args.config}: {result['ensemble_size']} members x"
        f" {result['num_steps']} steps, regime {result['regime']},"
        f" {device.platform} x{jax.device_count()} (jax {jax.__version__})")
  print(f"  unguided   median {result['unguided_median_s']:.3f} s")
  print(f"  controlled median {result['controlled_median_s']:.3f} s")
  print(f"controlled / unguided = {result['ratio_median']:.3f}x median of"
        f" {args.repeats} rounds, {result['ratio_of_fastest']:.3f}x fastest"
        " runs")


if __name__ == "__main__":
  main()
