"""Benchmark: the controlled rollout's wall-clock over the unguided and DPS's.

The evaluation engine (demo, evaluate, benchmark, pilot) times each method's
program once per trajectory. On a shared or throttled CPU one run varies by
10-20 %, as much as the controller costs, so its "time / unguided" column
cannot settle a cost goal. This benchmark compiles the unguided and the
controlled ensemble rollouts and the DPS-guided one (the same frozen ARDM,
`baselines.guidance`) of one test trajectory (the config's ensemble size
and number of steps, its default regime's observations), runs them
alternately `--repeats` times each and prints, side by side, the median of
the per-round ratios controlled / unguided and DPS / controlled and the
ratios of the fastest runs, as a markdown table
under the provenance header (command, date, machine, versions, commit);
--publish also writes it to docs/results/rollout_cost_CONFIG.md.

Usage:
    python benchmarks/rollout_cost.py --publish   # KS, shipped checkpoints,
                                                  # a trajectory from the solver
    python benchmarks/rollout_cost.py --config heldsuarez --data data/hs \\
        --ardm runs/hs/ardm.npz --controller runs/hs/controller.npz
    python benchmarks/rollout_cost.py --config ks --data data/ks \\
        --ardm ks --controller ks             # the shipped KS checkpoints
"""

import argparse
import statistics
import sys
import time

import jax

from gencast_control.api import checkpoint_path
from gencast_control.core.config import load_config
from gencast_control.core.controller import bind_controller
from gencast_control.evaluation import engine, forecasts, provenance
from gencast_control.systems import pipeline
from gencast_control.systems.experiment import state_variables
from gencast_control.systems.truth import load_test_window, test_trajectories


def measure(config, data_dir, ardm_path, controller_path, repeats: int,
            seed: int = 0) -> dict:
  """Round-robin wall-clock of the unguided and controlled programs on the
  first test trajectory (of data_dir's test split; None: drawn from the
  config's solver)."""
  ardm, controller_config, params, _, _ = pipeline.load_checkpoints(
      config, ardm_path, controller_path, data_dir=data_dir)
  a = config.assimilation
  contexts = None
  if data_dir is None:
    truth = test_trajectories(config)[:1]
    regime = config.regime(a.regime)
  else:
    truth = load_test_window(config, data_dir)[:1]
    regime, = pipeline.regimes_in_state_units(
        [config.regime(a.regime)], data_dir, state_variables(config))
    contexts = pipeline.split_context(ardm, data_dir, "test",
                                      *truth.shape[:2])
  key = jax.random.PRNGKey(seed)
  h = ardm.history_length
  observations = engine.observe(regime, truth, h, key)
  controller = bind_controller(controller_config, ardm.periodic, params)
  programs = forecasts.forecast_programs(
      ardm, controller, controller_config.horizon, truth[:, :h], observations,
      a.num_steps, key, a.ensemble_size, contexts)
  programs["dps"] = forecasts.baseline_programs(
      "dps", ardm, truth[:, :h], observations, a.num_steps, key,
      a.ensemble_size, contexts)
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
  dps = [d / c for d, c in zip(times["dps"], times["controlled"])]
  return {"unguided_median_s": statistics.median(times["unguided"]),
          "controlled_median_s": statistics.median(times["controlled"]),
          "dps_median_s": statistics.median(times["dps"]),
          "ratio_median": statistics.median(ratios),
          "dps_ratio_median": statistics.median(dps),
          "unguided_fastest_s": min(times["unguided"]),
          "controlled_fastest_s": min(times["controlled"]),
          "dps_fastest_s": min(times["dps"]),
          "ratio_of_fastest": min(times["controlled"])
          / min(times["unguided"]),
          "dps_ratio_of_fastest": min(times["dps"])
          / min(times["controlled"]),
          "repeats": repeats, "ensemble_size": a.ensemble_size,
          "num_steps": a.num_steps, "regime": a.regime}


def markdown(config_name: str, result: dict) -> str:
  """The result as a titled markdown table."""
  return "\n".join([
      f"# Controlled vs unguided rollout cost: {config_name}", "",
      f"One test trajectory, {result['ensemble_size']} members x"
      f" {result['num_steps']} steps, regime {result['regime']}; the"
      " programs compiled once, then run alternately"
      f" {result['repeats']} times each (wall-clock).", "",
      engine.markdown_table(
          ["rollout", "median [s]", "fastest [s]"],
          [["unguided", f"{result['unguided_median_s']:.3f}",
            f"{result['unguided_fastest_s']:.3f}"],
           ["controlled", f"{result['controlled_median_s']:.3f}",
            f"{result['controlled_fastest_s']:.3f}"],
           ["dps", f"{result['dps_median_s']:.3f}",
            f"{result['dps_fastest_s']:.3f}"]]), "",
      f"Controlled / unguided: **{result['ratio_median']:.3f}x** (median of"
      f" the {result['repeats']} per-round ratios),"
      f" {result['ratio_of_fastest']:.3f}x (ratio of the fastest runs).", "",
      f"DPS / controlled: **{result['dps_ratio_median']:.3f}x** (median of"
      f" the per-round ratios), {result['dps_ratio_of_fastest']:.3f}x (ratio"
      " of the fastest runs)."])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="ks")
  parser.add_argument("--data", help="folder with the test split (default:"
                      " a trajectory drawn from the config's solver)")
  parser.add_argument("--ardm", help="checkpoint path or shipped name"
                      " (default: the config's shipped one)")
  parser.add_argument("--controller", help="checkpoint path or shipped name"
                      " (default: the config's shipped one)")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--set", action="append", default=[],
                      metavar="KEY=VALUE")
  provenance.add_publish_argument(parser, "rollout_cost_CONFIG")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args(argv)
  config = load_config(args.config, args.set)
  publish = None
  if args.publish:
    publish = provenance.publish_path("rollout_cost", config.name)
    provenance.check_publish([publish], args.overwrite)
  result = measure(config, args.data,
                   checkpoint_path(args.ardm or config.name, "ardm"),
                   checkpoint_path(args.controller or config.name,
                                   "controller"),
                   args.repeats)
  command = ["benchmarks/rollout_cost.py"] + list(
      sys.argv[1:] if argv is None else argv)
  text = provenance.with_header(markdown(config.name, result), command)
  print(text)
  if publish is not None:
    provenance.publish(publish, markdown(config.name, result), command)
    print(f"wrote {publish}")


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/rollout_cost.py", main))
