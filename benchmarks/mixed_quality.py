"""Does the controller use each observation's error std? A network of mixed
quality, assimilated with the stated stds and with one std for all.

On the benchmark's held-out truth (`benchmark.py`: same trajectories, the
same observations of a heteroscedastic regime, the same keys, a cold start),
each method assimilates the same observation values twice:

  stated stds   every station's own sigma_obs (what the regime drew)
  one std       every observation told sigma_rms, the RMS of the stations'
                sigma_obs over the run: what a pipeline that knows only the
                network's average quality would pass

The controller is the config's shipped one (or --controller); DPS (which
weights its misfit by 1 / sigma_obs^2) is the reference; the unguided
forecast uses no observations. A controller that weighs observations by
their quality scores better with the stated stds. --blind-controller scores
a controller trained without the error-std channel beside them.

The markdown table carries the provenance header (command, date, machine,
versions, commit); --publish also writes it to
docs/results/mixed_quality_CONFIG.md.

Usage:
    python benchmarks/mixed_quality.py --config ks --out results/mixed_ks
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gencast_control.evaluation import (  # noqa: E402
    benchmark, engine, provenance)
from gencast_control.core.checkpoint import (  # noqa: E402
    atomic_write, write_json)
from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.core.controller import (  # noqa: E402
    bind_controller, load_controller)
from gencast_control.systems import pipeline  # noqa: E402
from gencast_control.systems.truth import (  # noqa: E402
    climatological_histories, test_trajectories)


def one_std(observations):
  """The same observations, each told the RMS of the stated stds."""
  mask = np.asarray(observations.mask) > 0
  rms = np.sqrt(np.mean(np.asarray(observations.entry_std())[mask]**2))
  return dataclasses.replace(observations, noise_std=jnp.float32(rms)), rms


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="ks")
  parser.add_argument("--regime", default=None,
                      help="default: the config's heteroscedastic regime")
  parser.add_argument("--controller", default=None)
  parser.add_argument("--blind-controller", default=None,
                      help="a controller trained without the error-std"
                      " channel (e.g. an earlier shipped one)")
  parser.add_argument("--out", default="results/mixed_quality")
  provenance.add_publish_argument(parser, "mixed_quality_CONFIG")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args()
  config = load_config(args.config)
  publish = None
  if args.publish:
    publish = provenance.publish_path("mixed_quality", config.name)
    provenance.check_publish([publish], args.overwrite)
  regime = (config.regime(args.regime) if args.regime else next(
      r for r in config.regimes if r.noise_std_max is not None))
  ardm_path, controller_path = pipeline.shipped_checkpoints(config.name)
  models = benchmark.load_models(config, ardm_path,
                                 args.controller or controller_path)
  controllers = {"controlled": models}
  if args.blind_controller:  # an earlier controller: its own architecture
    blind, params, _ = load_controller(args.blind_controller, models.ardm)
    if blind.error_std_channel:
      raise ValueError(f"--blind-controller {args.blind_controller} was"
                       " trained with the error-std channel: give one"
                       " trained without it")
    controllers["controlled_blind"] = benchmark.Models(
        models.ardm, blind,
        bind_controller(blind, models.ardm.periodic, params))
  h = models.ardm.history_length
  truth = np.asarray(test_trajectories(config), np.float32)
  k, m = truth.shape[0], config.assimilation.ensemble_size
  seed = 1  # the benchmark's default: the same cold start, observations, keys
  initial = climatological_histories(config, k * m, h, seed).reshape(
      (k, m, h) + truth.shape[2:])
  key = jax.random.PRNGKey(seed)
  num_steps = truth.shape[1] - h
  burn_in = benchmark.default_burn_in(num_steps)
  options = benchmark.baseline_options(config)
  stated = engine.observe(regime, truth, h, key)
  told = [one_std(o) for o in stated]
  rows = {}
  start = time.time()
  for name, method, models_ in (
      [(n, "controlled", c) for n, c in controllers.items()]
      + [("dps", "dps", models), ("unguided", "unguided", models)]):
    for label, streams in (("stated stds", stated),
                           ("one std", [o for o, _ in told])):
      if label == "one std" and name in ("unguided", "controlled_blind"):
        continue  # they do not use the error stds
      ensembles = np.stack([benchmark.run_cell(
          method, models_, jnp.asarray(initial[i]), streams[i], num_steps,
          engine.member_key(key, i), m, options)[0]
                            for i in range(k)])
      scores = benchmark.score_ensemble(ensembles, truth[:, h - 1:], config,
                                        burn_in)
      rows[name if name == "unguided" else f"{name}, {label}"] = {
          s: scores[s] for s in
                                  ("rmse", "crps", "spread_skill")}
      print(f"{name:<17} {label:<12} RMSE {scores['rmse']:.4f}  CRPS"
            f" {scores['crps']:.4f}  spread/skill"
            f" {scores['spread_skill']:.3f}", flush=True)
  stds = np.concatenate([np.asarray(o.entry_std())[np.asarray(o.mask) > 0]
                         for o in stated])
  result = {"config": config.name, "regime": dataclasses.asdict(regime),
            "trajectories": k, "steps": num_steps, "members": m,
            "burn_in": burn_in, "start": "cold",
            "one_std": [float(r) for _, r in told],
            "stated_std_range": [float(stds.min()), float(stds.max())],
            "seconds": time.time() - start, "rows": rows}
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  write_json(out / "mixed_quality.json", result)
  lines = [f"# Mixed-quality observations: {config.name}", "",
           f"{config.name}, {regime.name} (sigma_obs {stds.min():.3g} to"
           f" {stds.max():.3g}; one std = {np.mean(result['one_std']):.3g}),"
           f" cold start, {k} x {num_steps} steps x {m} members:", "",
           "| method, error stds given | RMSE | CRPS | spread/skill |",
           "|---|---|---|---|"]
  lines += [f"| {n} | {r['rmse']:.4f} | {r['crps']:.4f} |"
            f" {r['spread_skill']:.3f} |" for n, r in rows.items()]
  text = provenance.with_header("\n".join(lines), sys.argv)
  atomic_write(out / "mixed_quality.md", lambda f: f.write(text.encode()))
  if publish is not None:
    atomic_write(publish, lambda f: f.write(text.encode()))
  print(text)
  print(json.dumps({"seconds": round(result["seconds"], 1)}))


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/mixed_quality.py", main))
