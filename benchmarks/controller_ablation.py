"""Ablation of the controller's training: objective x horizon x on-policy.

Trains one KS controller per variant against the same frozen ARDM, with the
same (short) budget, data and seed, then scores each on the VALIDATION split
(never the benchmark's test truth) from a cold start: members begin at
independent climatological states (systems.truth.climatological_histories),
and scores leave out a burn-in. The unguided forecast is scored beside them.
Training is resumable: a variant whose checkpoint exists is not retrained.

The markdown table carries the provenance header (command, date, machine,
versions, commit of the invocation that wrote it; variants scored by an
earlier invocation into the same --out are kept); --publish also writes it
to docs/results/controller_ablation.md.

Usage:
    gencast-control simulate --config ks --out data/ks
    python benchmarks/controller_ablation.py --data data/ks --out results/ablation
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from gencast_control.evaluation import benchmark, provenance
from gencast_control.core.checkpoint import atomic_write, write_json  # noqa: E402
from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.core.controller import load_controller  # noqa: E402
from gencast_control.systems import pipeline  # noqa: E402
from gencast_control.systems.truth import climatological_histories  # noqa: E402

# name -> --set overrides on top of configs/ks.py (the shipped default is
# "state, H=4, on-policy").
VARIANTS = {
    "state_H4_onpolicy": [],
    # one member has no ensemble spread: without the spread gate and gain
    "observations_H4_onpolicy": ["controller_training.objective=observations",
                                 "controller_training.members=1",
                                 "controller.spread_gate=False",
                                 "controller.ensemble_gain=False"],
    "heldout_H4_onpolicy": ["controller_training.objective=heldout"],
    # The recipe for observation-only data: pretrain `state` on simulations,
    # then fine-tune on held-out observations (200 + 200 steps).
    "heldout_H4_warm_start": [
        "controller_training.objective=heldout",
        "controller_training.warm_start={out}/state_H4_onpolicy/"
        "ks_controller.npz"],
    "state_H2_onpolicy": ["controller.horizon=2"],
    "state_H4_unguided_spinup": ["controller_training.on_policy=False"],
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", required=True, help="simulated KS splits")
  parser.add_argument("--out", default="results/ablation")
  parser.add_argument("--ardm", default=str(
      pipeline.shipped_checkpoints("ks")[0]))
  parser.add_argument("--train-steps", type=int, default=200)
  parser.add_argument("--variant", action="append", choices=list(VARIANTS))
  parser.add_argument("--regime", action="append",
                      help="default: stations_10pct, every4_25pct,"
                      " random_10pct")
  parser.add_argument("--trajectories", type=int, default=2)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--members", type=int, default=4)
  parser.add_argument("--burn-in", type=int, default=20)
  provenance.add_publish_argument(parser, "controller_ablation")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args()
  publish = None
  if args.publish:
    publish = provenance.publish_path("controller_ablation")
    provenance.check_publish([publish], args.overwrite)
  regimes = args.regime or ["stations_10pct", "every4_25pct", "random_10pct"]
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  budget = [f"controller_training.num_steps={args.train_steps}",
            "controller_training.validate_every=0"]
  results = {"train_steps": args.train_steps, "regimes": regimes,
             "start": "cold", "burn_in": args.burn_in,
             "trajectories": args.trajectories, "steps": args.steps,
             "members": args.members, "variants": {}}
  previous = _load_previous(out / "ablation.json", results)
  if previous:  # variants run by an earlier invocation with the same settings
    results = previous
  for name in args.variant or list(VARIANTS):
    overrides = [o.format(out=out) for o in VARIANTS[name]]
    config = load_config("ks", budget + overrides)
    path = out / name / "ks_controller.npz"
    t0 = time.perf_counter()
    if not path.exists():
      pipeline.train_controller_step(config, args.ardm, args.data, path,
                                     out / name / "work", progress=False)
    train_seconds = time.perf_counter() - t0
    models = benchmark.load_models(config, args.ardm, path)
    meta = load_controller(path, models.ardm)[2]
    h = models.ardm.history_length
    truth = pipeline.load_split(config, args.data, "validation")[
        :args.trajectories, :h + args.steps]
    initial = climatological_histories(
        config, args.trajectories * args.members, h).reshape(
            (args.trajectories, args.members, h)
            + tuple(models.ardm.state_shape))
    methods = ["controlled"] + (["unguided"] if "unguided" not in results
                                else [])
    scores = benchmark.benchmark_config(
        config, models, truth, regimes, methods, args.members,
        initial=initial, burn_in=args.burn_in)["regimes"]
    if "unguided" in methods:
      results["unguided"] = {r: _summary(s["unguided"])
                             for r, s in scores.items()}
    results["variants"][name] = {
        "overrides": overrides, "train_seconds": round(train_seconds),
        "final_training_score": meta.get("final_score"),
        "regimes": {r: _summary(s["controlled"]) for r, s in scores.items()}}
    print(f"{name}: " + ", ".join(
        f"{r} RMSE {s['controlled']['rmse']:.3f}" for r, s in scores.items()))
  write_json(out / "ablation.json", results)
  text = provenance.with_header(markdown(results), sys.argv)
  atomic_write(out / "ablation.md", lambda f: f.write(text.encode()))
  if publish is not None:
    atomic_write(publish, lambda f: f.write(text.encode()))
  print(text)


def _load_previous(path: Path, settings: dict) -> dict | None:
  """An earlier ablation.json, if it was scored with the same settings."""
  if not path.exists():
    return None
  previous = json.loads(path.read_text())
  same = all(previous.get(k) == settings[k]
             for k in settings if k != "variants")
  if not same:
    raise ValueError(f"{path} was written with other settings; use another"
                     " --out or delete it")
  return previous


def _summary(s):
  return {k: s[k] for k in ("rmse", "crps", "spread_skill", "diverged")}


def markdown(results) -> str:
  regimes = results["regimes"]
  lines = ["# Controller ablation: objective x horizon x on-policy (KS)", "",
           f"Validation split, cold start, burn-in {results['burn_in']};"
           f" {results['train_steps']} training steps per variant."
           " RMSE / CRPS / spread-skill per regime; last logged training"
           " score (for `observations`: the in-sample misfit in units of the"
           " noise variance, which the truth scores 1.0 on).", "",
           "| variant | " + " | ".join(regimes) + " | training score |",
           "|---" * (len(regimes) + 2) + "|"]
  rows = dict(results["variants"])
  if "unguided" in results:
    rows = {"unguided forecast": {"regimes": results["unguided"]}, **rows}
  for name, v in rows.items():
    cells = [f"{v['regimes'][r]['rmse']:.3f} / {v['regimes'][r]['crps']:.3f}"
             f" / {v['regimes'][r]['spread_skill']:.2f}" for r in regimes]
    score = v.get("final_training_score")
    lines.append(f"| {name} | " + " | ".join(cells)
                 + f" | {'-' if score is None else f'{score:.3f}'} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  np.set_printoptions(precision=3)
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/controller_ablation.py", main))
