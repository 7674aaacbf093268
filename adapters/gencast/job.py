"""GenCast's controller training: its config class and its data step.

    gencast-control train-controller --config gencast_1deg_train \
        --out runs/gencast_1deg/controller.npz [--distributed] [--tiny] \
        [--set controller_training.num_steps=500]

`gencast-control train-controller` trains GenCast's controller when its
config is a GenCastJobConfig (configs/gencast_1deg_train.py): this module
loads GenCast (weights + statistics, `checkpoint`, `stats`), draws
`num_examples` initialisation times from the WeatherBench2 store, and trains
the controller on GenCast as a FrozenARDM through the project's one
controller training (controller_training.train_controller), the batch split
over all devices with `controller_training.shard_batch`. The examples are
not held in memory: each step's GenCast batches are read from the (lazily
opened) store when needed, the next step's on a background thread while the
current one runs (data.example_stream.ExampleStream), and with several
hosts each reads only its own shard of the initialisation times and its
part of each batch. It writes

    OUT                 the trained controller (controller.npz)
    WORKDIR (OUT.work)  state.npz (resumable), log.jsonl, TensorBoard events

Running the same command again resumes from WORKDIR/state.npz. With several
hosts (`--distributed`), OUT must be on storage every host sees; only process
0 writes. `--tiny` replaces GenCast and ERA5 by the tiny random GenCast and
synthetic examples (no network; in memory, read through the same stream): a
smoke test of the job.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from gencast_control.core.controller import ControllerConfig
from gencast_control.core.regimes import ObservationRegime
from gencast_control.training.controller_training import (
    ControllerTrainingConfig)


@dataclasses.dataclass(frozen=True)
class GenCastJobConfig:
  """Controller training through GenCast (configs/gencast_1deg_train.py).

  Attributes:
    checkpoint: GenCast weights: a name of configs/gencast_assets.CHECKPOINTS,
      a local file or a gs:// path.
    store: WeatherBench2 store (registry name or path) for the examples.
    years: inclusive range of initialisation years of the examples.
    num_examples: initialisation times drawn (once, seeded); each training
      step reads its batch of them from the store (ExampleStream).
    controller, controller_training: u_psi and its training, as in a grid
      ExperimentConfig.
    regimes: observing systems, one drawn per example; noise_std is a
      fraction of each channel's climatological std (GenCast's statistics),
      turned into physical units by GenCastARDM.in_physical_units.
    stats: "bucket" (DeepMind's statistics) or a local folder of the four
      NetCDF files.
    example_seed: seed of the drawn initialisation times.
    levels: pressure levels (None: the checkpoint's task config levels).
    backend: attention backend ("tpu": splash, else triblockdiag); None: the
      platform JAX runs on.
    timeout_s: deadline of each network read.
  """
  checkpoint: str
  store: str
  years: tuple[int, int]
  num_examples: int
  controller: ControllerConfig
  controller_training: ControllerTrainingConfig
  regimes: tuple[ObservationRegime, ...]
  stats: str = "bucket"
  example_seed: int = 0
  levels: tuple[int, ...] | None = None
  backend: str | None = None
  timeout_s: float = 600.0


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


def target_steps(config) -> int:
  """12 h targets per example: the spin-up and the window."""
  return config.controller_training.spinup + config.controller_training.window


def era5_examples(config, model):
  """(init times, read, identity) of the job's examples in the store.

  The store is opened lazily (only the frames asked for are read);
  read(times) -> GenCast's (inputs, targets, forcings) of those
  initialisation times (a batch dim), with target_steps(config) targets, in
  DeepMind's layout;
  identity: what defines the examples (store, levels, times).
  """
  from gencast_control.data import era5_batches
  from gencast_control.data.era5_store import open_store
  task, steps = model.task_config, target_steps(config)
  levels = config.levels or tuple(task.pressure_levels)
  store = open_store(config.store, timeout_s=config.timeout_s)
  inits = draw_init_times(store["time"].values, config.years,
                          config.num_examples, steps, config.example_seed)

  def read(times):
    batch = era5_batches.to_gencast_batch(
        store, times, input_variables=task.input_variables,
        target_variables=task.target_variables,
        forcing_variables=task.forcing_variables, levels=levels,
        target_steps=steps)
    # DeepMind's layout (data_utils) has no `datetime` coordinate; GenCast's
    # forcings already carry what it says.
    return tuple(part.drop_vars("datetime", errors="ignore")
                 for part in batch)

  identity = {"store": config.store, "levels": list(levels),
              "target_steps": steps, "init_times": inits}
  return inits, read, identity


def tiny_assets(config):
  """The tiny random GenCast and synthetic examples (offline smoke test):
  (model, (times, read, identity)) as era5_examples, the examples in memory
  and their times their indices."""
  from gencast_control.adapters.gencast import tiny
  model, steps = tiny.tiny_model(seed=0), target_steps(config)
  example = tiny.synthetic_example(model.task_config, 10.0, num_steps=steps,
                                   batch=config.num_examples, seed=1)
  examples = tiny.split_example(model.task_config, example, steps)

  def read(index):
    return tuple(part.isel(batch=np.asarray(index)) for part in examples)

  identity = {"tiny": "synthetic_example(seed=1)", "target_steps": steps,
              "num_examples": config.num_examples}
  return model, (np.arange(config.num_examples), read, identity)


def train_controller_step(config: GenCastJobConfig, out_path, workdir,
                          tiny: bool = False, progress: bool = True) -> Path:
  """Trains GenCast's controller and saves it to out_path (on process 0).

  Resumes from workdir/state.npz; returns out_path.
  """
  import jax
  from gencast_control.training import sharding
  from gencast_control.adapters.gencast import assets as gencast_assets
  from gencast_control.adapters.gencast.ardm import GenCastARDM
  from gencast_control.core.controller import load_warm_start, save_controller
  from gencast_control.data.example_stream import ExampleStream
  from gencast_control.training.controller_training import train_controller
  t0 = time.perf_counter()
  if tiny:
    model, (times, read, identity) = tiny_assets(config)
  else:
    model = gencast_assets.load_model(
        config.checkpoint, config.stats,
        config.backend or jax.default_backend(), config.timeout_s)
    times, read, identity = era5_examples(config, model)
  training = config.controller_training
  ardm = GenCastARDM(model, *read(times[:1]))  # the examples' structure
  # Each process reads its shard of the examples when the batch is split
  # over the processes' devices; without a mesh each reads whole batches.
  shard = {} if training.shard_batch else {"process_index": 0,
                                           "process_count": 1}
  stream = ExampleStream(lambda t: ardm.trajectories(*read(t)), times,
                         training.batch_size, **shard)
  if sharding.is_primary():
    print(f"{jax.process_count()} process(es), {jax.device_count()} device(s)"
          f" ({jax.default_backend()}); {len(times)} examples streamed,"
          f" batch {training.batch_size} ({stream.local_batch} read per"
          f" process), sharded={training.shard_batch}; model ready in"
          f" {time.perf_counter() - t0:.0f} s", flush=True)
  initial = (load_warm_start(training.warm_start, config.controller, ardm)
             if training.warm_start else None)
  try:
    params, history = train_controller(
        ardm, None, ardm.in_physical_units(config.regimes), config.controller,
        training, workdir=workdir, progress=progress, params=initial,
        batches=stream, scale=ardm.channel_std, data_identity=identity)
  finally:
    stream.close()
  losses = [r["loss"] for r in history if "loss" in r]
  if sharding.is_primary():
    save_controller(out_path, jax.device_get(params), config.controller, ardm,
                    {"job": json.loads(json.dumps(dataclasses.asdict(config),
                                                  default=str)),
                     "tiny": tiny,
                     "final_loss": losses[-1] if losses else None})
  return Path(out_path)
