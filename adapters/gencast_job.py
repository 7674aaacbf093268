"""The GenCast controller training job (one host or many, any accelerator).

    python -m gencast_control.adapters.gencast_job --config gencast_1deg_train \
        --out runs/gencast_1deg [--set training.num_steps=500] [--distributed]

Steps: join the multi-host job if asked (sharding.initialize_distributed),
load GenCast (weights + statistics), draw `num_examples` initialisation times
from the WeatherBench2 store and build GenCast batches from them (held in host
memory), train the controller on GenCast as a FrozenARDM with the batch split
over all devices (controller_training.train_controller, shard_batch), and
write

    OUT/work/state.npz, OUT/work/log.jsonl   resumable state, losses
    OUT/controller.npz                       the trained controller

Running the same command again resumes from OUT/work/state.npz. With several
hosts, OUT must be a folder every host sees (e.g. a shared filesystem); only
process 0 writes. `--tiny` replaces GenCast and ERA5 by the tiny random
GenCast and a synthetic example (no network): a smoke test of the job.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np


def _config(args):
  from gencast_control.core.config import load_config
  return load_config(args.config, args.set)


def draw_init_times(times: np.ndarray, years: tuple[int, int], count: int,
                    window: int, seed: int) -> np.ndarray:
  """`count` distinct 00/12 UTC times t0 of `years` with t0-12h..t0+L*12h."""
  times = np.asarray(times, "datetime64[h]")
  available = set(times.tolist())
  half_day = np.timedelta64(12, "h")
  year = times.astype("datetime64[Y]").astype(int) + 1970
  hour = (times - times.astype("datetime64[D]")).astype(int)
  ok = [t for t, y, h in zip(times, year, hour)
        if years[0] <= y <= years[1] and h in (0, 12)
        and all((t + k * half_day).tolist() in available
                for k in range(-1, window + 1))]
  if len(ok) < count:
    raise ValueError(f"the store has {len(ok)} usable initialisation times in"
                     f" {years[0]}-{years[1]}, {count} examples were asked for")
  rng = np.random.default_rng(seed)
  return np.sort(np.asarray(ok)[rng.choice(len(ok), count, replace=False)])


def load_examples(config, model):
  """(inputs, targets, forcings) with a batch dim of num_examples."""
  from gencast_control.data.era5_batches import to_gencast_batch
  from gencast_control.data.era5_store import open_store
  task = model.task_config
  store = open_store(config.store, timeout_s=config.timeout_s)
  inits = draw_init_times(store["time"].values, config.years,
                          config.num_examples, config.training.window,
                          config.example_seed)
  return to_gencast_batch(
      store, inits, input_variables=task.input_variables,
      target_variables=task.target_variables,
      forcing_variables=task.forcing_variables,
      levels=config.levels or tuple(task.pressure_levels),
      target_steps=config.training.window)


def tiny_assets(config):
  """The tiny random GenCast and synthetic examples (offline smoke test)."""
  from gencast_control.adapters import gencast_tiny as tiny
  model = tiny.tiny_model(seed=0)
  example = tiny.synthetic_example(model.task_config, 10.0,
                                   num_steps=config.training.window,
                                   batch=config.num_examples, seed=1)
  return model, tiny.split_example(model.task_config, example,
                                   config.training.window)


def run(config, out: str | Path, tiny: bool = False, progress: bool = True):
  """Trains and saves the controller; returns the path of controller.npz."""
  import jax
  from gencast_control.training import sharding
  from gencast_control.adapters import gencast_assets
  from gencast_control.adapters.gencast_ardm import GenCastARDM
  from gencast_control.core.controller import save_controller
  from gencast_control.training.controller_training import train_controller
  out = Path(out)
  t0 = time.perf_counter()
  if tiny:
    model, (inputs, targets, forcings) = tiny_assets(config)
  else:
    model = gencast_assets.load_model(
        config.checkpoint, config.stats,
        config.backend or jax.default_backend(), config.timeout_s)
    inputs, targets, forcings = load_examples(config, model)
  training = config.training
  print(f"{jax.process_count()} process(es), {jax.device_count()} device(s)"
        f" ({jax.default_backend()}); {inputs.sizes['batch']} examples,"
        f" batch {training.batch_size}, sharded={training.shard_batch};"
        f" data ready in {time.perf_counter() - t0:.0f} s", flush=True)
  ardm = GenCastARDM(model, inputs, targets, forcings)
  states, context = ardm.trajectories(inputs, targets, forcings)
  params, history = train_controller(
      ardm, states, ardm.in_physical_units(config.regimes), config.controller,
      training, workdir=out / "work", progress=progress, context=context)
  path = out / "controller.npz"
  if sharding.is_primary():
    save_controller(path, jax.device_get(params), config.controller, ardm, {
        "job": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "tiny": tiny,
        "final_loss": history[-1]["loss"] if history else None})
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m gencast_control.adapters.gencast_job",
      description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="gencast_1deg_train",
                      help="built-in config name or .py path (default:"
                      " %(default)s)")
  parser.add_argument("--set", action="append", default=[],
                      metavar="FIELD=VALUE",
                      help="override a field, e.g. --set"
                      " training.num_steps=100 (repeatable)")
  parser.add_argument("--out", required=True,
                      help="run folder (work/ state, controller.npz)")
  parser.add_argument("--distributed", action="store_true",
                      help="join a multi-host job first"
                      " (jax.distributed.initialize, cluster auto-detection)")
  parser.add_argument("--tiny", action="store_true",
                      help="offline smoke test: tiny random GenCast and"
                      " synthetic examples instead of the real assets")
  args = parser.parse_args(argv)
  from gencast_control.training import sharding
  if args.distributed:
    sharding.initialize_distributed(force=True)
  try:
    path = run(_config(args), args.out, tiny=args.tiny)
  except (ValueError, FileNotFoundError, OSError) as e:
    print(f"gencast_job: error: {e}", file=sys.stderr)
    return 2
  if sharding.is_primary():
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
