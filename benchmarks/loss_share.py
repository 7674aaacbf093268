"""Where the controller's training gradient comes from, by start and lead.

The harm probe (benchmarks/harm_probe.py) shows the controller acting from
the true state as if the background were poor. This script measures whether
the training objective can see that case at all: it draws training examples
exactly as `controller_training.example_cost` does (members from the true
state or, with probability cold_fraction, from a cold start; k ~ U{0..spinup}
spin-up steps; a window of L steps), on VALIDATION trajectories, and takes
each example's cost and gradient for the given controller. Per group of
examples (cold start; true start by the window's first lead) it reports

  mean score     the example's window score (fair CRPS for "state")
  loss share     the group's share of the batch's summed cost
  descent share  the group's share of the mean gradient g: (1/N) sum_i
                 <g_i, g> / |g|^2 over the group's examples (sums to 1)

for the plain mean of the costs (`relative_cost=False`) and for the mean of
their logs (`relative_cost=True`, gradient g_i / cost_i): the same examples
and per-example gradients, two weightings. The table goes under the
provenance header to --out and, with --publish, to
docs/results/loss_share_CONFIG.md.

Usage:
    python benchmarks/loss_share.py --config ks --publish
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
import numpy as np  # noqa: E402

from gencast_control.core.config import load_config  # noqa: E402
from gencast_control.evaluation import provenance  # noqa: E402
from gencast_control.systems import pipeline  # noqa: E402
from gencast_control.systems.truth import validation_trajectories  # noqa: E402
from gencast_control.training.controller_training import (  # noqa: E402
    RELATIVE_FLOOR, channel_scale, example_cost_fn, window_batches)

SEED = 11


def example_gradients(config, ardm, params, data, num_examples: int,
                      chunk: int) -> dict:
  """Cost, score, start and flattened gradient of each drawn example."""
  training = dataclasses.replace(config.controller_training,
                                 relative_cost=False)
  h = ardm.history_length
  batches = window_batches(data, None, chunk, training.members,
                           h + training.spinup + training.window, h)
  cost = example_cost_fn(ardm, channel_scale(data),
                         config.training_regimes(), config.controller,
                         training)

  grads = jax.jit(jax.vmap(jax.value_and_grad(cost, has_aux=True),
                           in_axes=(None, 0, 0, 0)))
  flat = jax.vmap(lambda g: ravel_pytree(g)[0])
  out = {"cost": [], "score": [], "cold": [], "first_lead": [], "grad": []}
  key = jax.random.PRNGKey(SEED)
  for i in range(-(-num_examples // chunk)):
    k_batch, k_examples = jax.random.split(jax.random.fold_in(key, i))
    windows, cold, _ = batches(k_batch)
    (c, parts), g = grads(params, jnp.asarray(windows), jnp.asarray(cold),
                          jax.random.split(k_examples, chunk))
    out["cost"].append(np.asarray(c))
    out["grad"].append(np.asarray(flat(g)))
    for name in ("score", "cold", "first_lead"):
      out[name].append(np.asarray(parts[name]))
    print(f"examples {(i + 1) * chunk}", flush=True)
  return {k: np.concatenate(v)[:num_examples] for k, v in out.items()}


def groups(examples: dict, window: int, spinup: int) -> dict:
  """Masks of the cold starts and of the true starts by window lead."""
  lead, cold = examples["first_lead"], examples["cold"].astype(bool)
  out = {"cold start": cold}
  for first in range(1, spinup + 2, window):
    last = min(first + window - 1, spinup + 1)
    leads = f"{first}-{last}" if last > first else f"{first}"
    out[f"true start, window from t = {leads}"] = (
        ~cold & (lead >= first) & (lead <= last))
  return out


def descent_shares(examples: dict, masks: dict, relative: bool) -> dict:
  """Per group: its share of the mean gradient (the groups sum to 1)."""
  cost, grad = examples["cost"], examples["grad"]
  if relative:
    grad = grad / (cost + RELATIVE_FLOOR)[:, None]
  mean = grad.mean(0)
  along = grad @ mean / (mean @ mean) / len(cost)
  return {name: float(along[m].sum()) for name, m in masks.items()}


def markdown(config_name: str, examples: dict, masks: dict,
             setup: dict) -> str:
  of_costs = descent_shares(examples, masks, relative=False)
  of_logs = descent_shares(examples, masks, relative=True)
  cost = examples["cost"]
  lines = [f"# Where the controller's training gradient comes from"
           f" ({config_name})", "",
           f"{setup['examples']} training examples drawn as"
           " `controller_training.example_cost` draws them, on validation"
           " trajectories, for the controller"
           f" `{setup['controller']}`. Descent share: the group's part of"
           " the mean gradient, (1/N) sum <g_i, g> / |g|^2 over its examples"
           " (the groups sum to 1), for the mean of the costs and for the"
           " mean of their logs (`relative_cost`).", "",
           "| examples | count | mean score | loss share | descent share,"
           " mean of costs | descent share, mean of log costs |",
           "|---|---|---|---|---|---|"]
  for name, m in masks.items():
    if m.any():
      lines.append(
          f"| {name} | {int(m.sum())} | {examples['score'][m].mean():.4f} |"
          f" {cost[m].sum() / cost.sum():.3f} | {of_costs[name]:.3f} |"
          f" {of_logs[name]:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="ks")
  parser.add_argument("--controller", help="default: the shipped one")
  parser.add_argument("--set", action="append", default=[],
                      metavar="FIELD=VALUE", help="config override")
  parser.add_argument("--examples", type=int, default=64)
  parser.add_argument("--chunk", type=int, default=8,
                      help="examples per compiled batch")
  parser.add_argument("--trajectories", type=int, default=4,
                      help="validation trajectories the windows come from")
  parser.add_argument("--out", default="results/loss_share.md")
  provenance.add_publish_argument(parser, "loss_share_CONFIG")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args(argv)
  config = load_config(args.config, args.set)
  if args.publish:  # before any work: finished tables are not replaced
    provenance.check_publish([provenance.publish_path(
        "loss_share", config.name)], args.overwrite)
  ardm_path, shipped = pipeline.shipped_checkpoints(config.name)
  controller_path = args.controller or shipped
  ardm, _, params, _, _ = pipeline.load_checkpoints(config, ardm_path,
                                                    controller_path)
  training = config.controller_training
  data = validation_trajectories(
      config, args.trajectories,
      2 * (training.spinup + training.window)).astype(np.float32)
  examples = example_gradients(config, ardm, params, data, args.examples,
                               args.chunk)
  masks = groups(examples, training.window, training.spinup)
  setup = {"examples": args.examples,
           "controller": f"{os.path.basename(controller_path)}, sha256"
           f" {provenance.file_digest(controller_path)}"}
  text = markdown(config.name, examples, masks, setup)
  command = " ".join(["python", "benchmarks/loss_share.py"]
                     + list(sys.argv[1:] if argv is None else argv))
  provenance.write_table(text, command, args.out, provenance.publish_path(
      "loss_share", config.name) if args.publish else None)
  return 0


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/loss_share.py", main))
