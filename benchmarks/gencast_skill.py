"""Benchmark: a trained GenCast's own forecast skill, before it is steered.

Unguided forecasts from the true state at K test initial times of the
Held-Suarez store, 12 h to T x 12 h ahead, of

  * GenCast (`train-ardm --config heldsuarez_gencast`), M members, from its
    two input frames t0 - 12 h, t0, with its date forcings;
  * the conv ARDM of the Held-Suarez pilot (`train-ardm --config
    heldsuarez`), M members from t0;
  * persistence (x_t = x_{t0});
  * climatology (the training split's mean state, per grid point),

scored on the channels both models predict (z500, t850, u250, v850, surface
pressure) against the truth, in physical units, latitude-weighted
(`metrics.area_weights`), pooled over the K initial times:

    RMSE_{c,l}  = sqrt( sum_{k,i,j} w_i (xbar_{klijc} - y_{klijc})^2 / (K sum_{i,j} w_i) ),
    CRPS_{c,l}  = fair CRPS (`metrics.crps_fair`), MAE for the deterministic
                  forecasts (the CRPS of a point forecast),
    SSR_{c,l}   = spread / skill (`metrics.spread_skill_ratio`, ensembles).

The ensemble-mean RMSE is the plain one (not debiased), as the pilot's.
--publish writes the table to docs/results/gencast_skill_heldsuarez.md under
the provenance header (command, machine, versions, commit).

Usage:
    python benchmarks/gencast_skill.py --data data/hsgc \\
        --ardm runs/hsgc/gencast.npz --conv-data data/hs \\
        --conv-ardm runs/hs/ardm.npz [--trajectories 4 --members 4]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.assimilation import ensemble_rollout
from gencast_control.core.checkpoint import atomic_write
from gencast_control.core.config import load_config
from gencast_control.data import trajectories
from gencast_control.data.era5_trajectories import MEAN_ATTR, channel_stds
from gencast_control.evaluation import engine, metrics, provenance
from gencast_control.evaluation.forecasts import trajectory_context
from gencast_control.systems import pipeline
from gencast_control.systems.experiment import state_variables
from gencast_control.systems.truth import load_test_window

LEADS = (1, 2, 6, 10, 14, 20)  # steps of 12 h: 12 h, 1, 3, 5, 7, 10 days
METHODS = ("gencast", "conv ardm", "persistence", "climatology")


def _units(data_dir, channels):
  """(mean, std) [C] of the split's standardisation."""
  ds = trajectories.open_trajectories(pipeline.find_split(data_dir, "train"),
                                      load=False)
  return (np.asarray([ds[c].attrs[MEAN_ATTR] for c in channels]),
          channel_stds(ds, channels))


def forecasts(args) -> tuple[dict, np.ndarray, np.ndarray, list[str], dict]:
  """{method: [K, M, T+1, lat, lon, C] physical}, truth [K, T+1, ...],
  latitudes, the common channels and each method's seconds."""
  overrides = [f"assimilation.num_steps={args.steps}",
               f"assimilation.num_trajectories={args.trajectories}"]
  config = load_config(args.config, args.set + overrides)
  conv_config = load_config(args.conv_config, args.conv_set + overrides)
  gencast, *_ = pipeline.load_checkpoints(config, args.ardm,
                                          data_dir=args.data)
  conv, *_ = pipeline.load_checkpoints(conv_config, args.conv_ardm,
                                       data_dir=args.conv_data)
  channels = list(state_variables(config))
  common = [c for c in state_variables(conv_config) if c in channels]
  mean, std = _units(args.data, channels)
  conv_mean, conv_std = _units(args.conv_data, common)
  h = gencast.history_length
  truth = load_test_window(config, args.data)  # [K, h + T, ...] std. units
  contexts = pipeline.split_context(gencast, args.data, "test",
                                    *truth.shape[:2])
  key = jax.random.PRNGKey(args.seed)
  physical = lambda x: mean + std * x
  index = [channels.index(c) for c in common]
  out, seconds = {}, {}
  start = time.perf_counter()
  runs = []
  for k in range(len(truth)):
    context = trajectory_context(contexts, k)
    runs.append(np.asarray(ensemble_rollout(
        gencast, jnp.asarray(truth[k, :h]), args.steps,
        engine.member_key(key, k), args.members, context=context,
        progress=f"GenCast {k + 1}/{len(truth)}")))
  seconds["gencast"] = time.perf_counter() - start
  out["gencast"] = physical(np.stack(runs))[..., index]
  start = time.perf_counter()
  runs = []
  for k in range(len(truth)):
    # The conv ARDM in its own split's units, from the same state t0.
    t0 = physical(truth[k, h - 1])[..., index]
    runs.append(np.asarray(ensemble_rollout(
        conv, jnp.asarray(((t0 - conv_mean) / conv_std)[None], jnp.float32),
        args.steps, engine.member_key(key, k), args.members)))
  seconds["conv ardm"] = time.perf_counter() - start
  out["conv ardm"] = conv_mean + conv_std * np.stack(runs)
  verifying = physical(truth[:, h - 1:])[..., index]
  out["persistence"] = np.broadcast_to(verifying[:, None, :1],
                                       out["gencast"].shape[:1] + (1,)
                                       + verifying.shape[1:])
  train = pipeline.load_split(config, args.data, "train")
  climate = physical(train.mean(axis=(0, 1)))[..., index]
  out["climatology"] = np.broadcast_to(climate, out["persistence"].shape)
  seconds["persistence"] = seconds["climatology"] = 0.0
  latitude = np.asarray(trajectories.open_trajectories(
      pipeline.find_split(args.data, "test"), load=False)["latitude"].values)
  return out, verifying, latitude, common, seconds


def scores(out: dict, truth: np.ndarray, latitude: np.ndarray,
           channels: list[str]) -> dict:
  """{method: {channel: {lead: {rmse, crps, ssr}}}} (module docstring)."""
  weights = np.broadcast_to(metrics.area_weights(latitude)[:, None],
                            truth.shape[2:4])
  table = {}
  for method, ensembles in out.items():
    table[method] = {}
    for c, channel in enumerate(channels):
      rows = {}
      for lead in LEADS:
        if lead >= truth.shape[1]:
          continue
        y = truth[:, lead, ..., c]  # [K, lat, lon]
        ens = np.moveaxis(ensembles[:, :, lead, ..., c], 1, 0)  # [M, K, ...]
        w = np.broadcast_to(weights, y.shape)
        members = ens.shape[0]
        rows[lead] = {
            "rmse": float(metrics.rmse(ens.mean(0), y, w)),
            "crps": float(metrics.crps_fair(ens, y, w) if members > 1 else
                          np.sum(w * np.abs(ens[0] - y)) / np.sum(w)),
            "ssr": (float(metrics.spread_skill_ratio(ens, y, w))
                    if members > 1 else None)}
      table[method][channel] = rows
  return table


def markdown(table: dict, channels: list[str], seconds: dict, args) -> str:
  lines = [
      "# GenCast trained on Held-Suarez: its unguided skill", "",
      f"{args.trajectories} test initial times, {args.members} members for"
      " the two models, from the true state; latitude-weighted scores in"
      " physical units per lead time (12 h steps). GenCast samples with the"
      " config's sub-steps (`ardm.sampling_noise_levels`). CRPS of the"
      " deterministic forecasts is their MAE; SSR = spread / skill.", ""]
  titles = {"rmse": ("RMSE of the ensemble mean", ".4g"),
            "crps": ("CRPS (MAE for the deterministic forecasts)", ".4g"),
            "ssr": ("Spread / skill (ensembles)", ".2f")}
  for key, (title, fmt) in titles.items():
    lines += [f"## {title}", ""]
    rows = []
    for channel in channels:
      for method in METHODS:
        by_lead = table[method][channel]
        values = [by_lead.get(l, {}).get(key) for l in LEADS]
        if key == "ssr" and all(v is None for v in values):
          continue
        rows.append([channel, method] + ["" if v is None else format(v, fmt)
                                         for v in values])
    lines += [engine.markdown_table(
        ["channel", "method"] + [f"{12 * l} h" for l in LEADS], rows), ""]
  lines.append("Wall-clock of the forecasts: " + ", ".join(
      f"{m} {s:.0f} s" for m, s in seconds.items() if s) + ".")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="heldsuarez_gencast")
  parser.add_argument("--data", required=True, help="the GenCast config's"
                      " splits (simulate --config heldsuarez_gencast)")
  parser.add_argument("--ardm", required=True, help="the trained GenCast")
  parser.add_argument("--conv-config", default="heldsuarez")
  parser.add_argument("--conv-data", required=True,
                      help="the conv ARDM's splits")
  parser.add_argument("--conv-ardm", required=True)
  parser.add_argument("--trajectories", type=int, default=4)
  parser.add_argument("--members", type=int, default=4)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--set", action="append", default=[])
  parser.add_argument("--conv-set", action="append", default=[])
  parser.add_argument("--out", default="results/gencast_skill")
  provenance.add_publish_argument(parser, "gencast_skill_heldsuarez")
  provenance.add_overwrite_argument(parser)
  args = parser.parse_args(argv)
  publish = None
  if args.publish:
    publish = provenance.publish_path("gencast_skill", "heldsuarez")
    provenance.check_publish([publish], args.overwrite)
  out, truth, latitude, channels, seconds = forecasts(args)
  table = scores(out, truth, latitude, channels)
  command = ["benchmarks/gencast_skill.py"] + list(
      sys.argv[1:] if argv is None else argv)
  text = markdown(table, channels, seconds, args)
  print(provenance.with_header(text, command))
  folder = Path(args.out)
  folder.mkdir(parents=True, exist_ok=True)
  atomic_write(folder / "gencast_skill.json", lambda f: f.write(json.dumps(
      {"scores": table, "seconds": seconds}, indent=1).encode()))
  atomic_write(folder / "gencast_skill.md", lambda f: f.write(
      provenance.with_header(text, command).encode()))
  if publish is not None:
    provenance.publish(publish, text, command)
    print(f"wrote {publish}")


if __name__ == "__main__":
  from gencast_control.cli import report_errors
  sys.exit(report_errors("benchmarks/gencast_skill.py", main))
