"""DA benchmark: the controller against unguided, DPS, SDA, RePaint and EnKF.

A thin entry point to `gencast_control.benchmark` (the same code as
`gencast-control benchmark`): runs every method on the same held-out truth,
observations, PRNG keys and sampler sub-steps for every regime of every config
with checkpoints, writes benchmark.csv/.json/.md and plots to --out, and prints
side by side, per regime, each baseline's RMSE and wall-clock relative to the
controller (RMSE ratio > 1: the controller is more accurate; time ratio > 1:
the controller is faster).

Usage:
    python benchmarks/da_benchmark.py [--mode quick|full] [--config ks]
        [--method dps --method enkf] [--regime random_10pct] [--out DIR]
"""

import argparse
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from gencast_control import benchmark  # noqa: E402


def side_by_side(results: dict) -> str:
  lines = []
  for name, result in results["configs"].items():
    regimes = result["regimes"]
    methods = [m for m in next(iter(regimes.values())) if m != "controlled"]
    lines += [f"{name}: method RMSE / controller RMSE  (method time /"
              " controller time)",
              f"{'regime':<16}" + "".join(f"{m:>20}" for m in methods)]
    for regime, rows in regimes.items():
      cells = []
      for m in methods:
        rmse, seconds = benchmark.ratios(rows, m)
        cells.append("-" if rmse is None else
                     f"{rmse:.2f}x ({seconds:.2f}x)")
      lines.append(f"{regime:<16}" + "".join(f"{c:>20}" for c in cells))
    lines.append("")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", action="append")
  parser.add_argument("--mode", choices=benchmark.MODES, default="quick")
  parser.add_argument("--method", action="append")
  parser.add_argument("--regime", action="append")
  parser.add_argument("--out", default="results/benchmark")
  args = parser.parse_args()
  results = benchmark.run_benchmark(
      args.out, args.config, args.mode, args.method or benchmark.METHODS,
      args.regime)
  print(side_by_side(results))
  print(f"tables and plots in {args.out}")


if __name__ == "__main__":
  main()
