"""Multi-device checks of sharded controller training, run in a subprocess.

XLA_FLAGS=--xla_force_host_platform_device_count=N only takes effect before
jax is imported, so tests/test_sharding.py runs this script with it set:

    python tests/sharding_worker.py WORKDIR CHECK [CHECK ...]

Checks: grads, resume, indivisible, timing, gencast, gencast_job. Prints one JSON line per check.
The model is a tiny KS-shaped grid ARDM with random weights.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gencast_control.training import sharding, training_loop  # noqa: E402
from gencast_control.adapters.grid import GridARDM, Normalization  # noqa: E402
from gencast_control.core.controller import ControllerConfig, init_controller  # noqa: E402
from gencast_control.training.controller_training import (  # noqa: E402
    ControllerTrainingConfig, channel_scale, controller_loss_fn,
    window_batches)
from gencast_control.core.networks import ConvNetConfig  # noqa: E402
from gencast_control.core.regimes import ObservationRegime  # noqa: E402
from gencast_control.adapters.grid import GridARDMConfig  # noqa: E402
from gencast_control.core.samplers import SamplerConfig  # noqa: E402

# A KS-shaped grid ARDM, smaller than tests/conftest.py's (compile time
# dominates here: 8 partitioned programs are compiled).
ARDM = GridARDMConfig(
    state_shape=(16, 1), periodic=(True,), history_length=1,
    network=ConvNetConfig(width=8, num_blocks=1, kernel_size=3,
                          dilations=(1,), embedding_size=8),
    sampler=SamplerConfig(method="euler", num_steps=2, sigma_max=10.0))

CONTROLLER = ControllerConfig(horizon=2, network=ConvNetConfig(
    width=8, num_blocks=1, kernel_size=3, dilations=(1,), embedding_size=8))
REGIMES = [ObservationRegime("random_25pct", fraction=0.25),
           ObservationRegime("every2_50pct", fraction=0.5, every=2)]
TRAINING = ControllerTrainingConfig(window=1, spinup=0, batch_size=8,
                                    num_steps=4, learning_rate=1e-2,
                                    control_cost=1e-2, checkpoint_every=2,
                                    log_every=1)


def setup():
  key = jax.random.PRNGKey(0)
  ardm = GridARDM(ARDM, GridARDM.init_params(ARDM, key),
                  Normalization(jnp.zeros(1), jnp.ones(1), jnp.full(1, 0.3)))
  data = np.random.default_rng(0).normal(size=(6, 8, 16, 1)).astype(
      np.float32)
  params = init_controller(CONTROLLER, ardm, key)
  # init_controller zero-initialises the output layer (u = 0); perturb all
  # weights so every gradient is non-trivial.
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(treedef, [
      x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
  return ardm, data, params


def problem(ardm, data, mesh):
  """(loss_fn, batches) of controller training on `data`."""
  h = ardm.history_length
  return (controller_loss_fn(ardm, channel_scale(data), REGIMES, CONTROLLER,
                             TRAINING, mesh),
          window_batches(data, None, TRAINING.batch_size, TRAINING.members,
                         h + TRAINING.spinup + TRAINING.window, h))


def loss_and_grads(ardm, data, params, mesh):
  loss_fn, batches = problem(ardm, data, mesh)
  key = jax.random.PRNGKey(3)
  batch = batches(key)
  if mesh is not None:
    batch, params = sharding.replicate((batch, params), mesh)
  step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True)).lower(
      params, key, batch).compile()
  (loss, _), grads = step(params, key, batch)
  return float(loss), grads, step.as_text()


def check_grads(ardm, data, params):
  loss1, grads1, _ = loss_and_grads(ardm, data, params, None)
  out = {"loss_1": loss1}
  for n in (8,):
    loss_n, grads_n, hlo = loss_and_grads(ardm, data, params,
                                          sharding.make_mesh(n))
    diffs = jax.tree.leaves(jax.tree.map(
        lambda a, b: float(jnp.max(jnp.abs(a - b))), grads1, grads_n))
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads1))
    out[f"loss_{n}"] = loss_n
    out[f"grad_max_abs_diff_{n}"] = max(diffs)
    out["grad_max_abs"] = scale
    out[f"grad_devices_{n}"] = len(jax.tree.leaves(grads_n)[0].devices())
    out[f"all_reduce_{n}"] = "all-reduce" in hlo
  return out


_PROBLEMS = {}


def run_training(ardm, data, params, mesh, num_steps, workdir):
  # One loss and optimizer per mesh: the training step then compiles once
  # for the full, the interrupted and the resumed run (training_loop caches).
  if mesh not in _PROBLEMS:
    _PROBLEMS[mesh] = problem(ardm, data, mesh) + (
        training_loop.make_optimizer(TRAINING.learning_rate,
                                     TRAINING.num_steps),)
  loss_fn, batches, optimizer = _PROBLEMS[mesh]
  return training_loop.train(loss_fn, params, optimizer, num_steps,
                             jax.random.PRNGKey(5), workdir,
                             TRAINING.checkpoint_every, TRAINING.log_every,
                             progress=False, mesh=mesh, batches=batches)


def check_resume(ardm, data, params, workdir):
  mesh = sharding.make_mesh(8)
  full, _ = run_training(ardm, data, params, mesh, 4, workdir / "full")
  run_training(ardm, data, params, mesh, 2, workdir / "parts")
  optimizer = training_loop.make_optimizer(TRAINING.learning_rate,
                                           TRAINING.num_steps)
  restored, _ = training_loop.initial_state(
      params, optimizer, jax.random.PRNGKey(5),
      workdir / "parts" / "state.npz", mesh)
  shardings = [leaf.sharding for leaf in jax.tree.leaves(restored)]
  resumed, history = run_training(ardm, data, params, mesh, 4,
                                  workdir / "parts")
  diff = max(jax.tree.leaves(jax.tree.map(
      lambda a, b: float(jnp.max(jnp.abs(a - b))), full, resumed)))
  moved = max(jax.tree.leaves(jax.tree.map(
      lambda a, b: float(jnp.max(jnp.abs(a - b))), full, params)))
  return {
      "restored_step": int(restored["step"]),
      "restored_replicated": all(
          s == sharding.replicated(mesh) and s.is_fully_replicated
          for s in shardings),
      "restored_devices": min(len(s.device_set) for s in shardings),
      "resumed_steps": [h["step"] for h in history
                        if h["step"] > int(restored["step"])],
      "params_max_abs_diff": diff, "params_moved": moved,
      "params_devices": len(jax.tree.leaves(resumed)[0].devices())}


def check_indivisible():
  out = {}
  mesh = sharding.make_mesh(8, sample=2)
  out["mesh_shape"] = dict(mesh.shape)
  try:
    sharding.check_batch_size(4, mesh)
  except ValueError as e:
    out["4_on_4x2"] = str(e)
  for batch, devices in ((6, 4), (12, 8)):
    training = ControllerTrainingConfig(batch_size=batch, shard_batch=True,
                                        num_devices=devices)
    try:
      training.mesh()
      out[f"{batch}_on_{devices}"] = None
    except ValueError as e:
      out[f"{batch}_on_{devices}"] = str(e)
  return out


def check_timing(ardm, data, params, repeats=5):
  """Seconds per value_and_grad step after compilation, 1 vs 8 devices."""
  out = {}
  for n in (1, 8):
    mesh = None if n == 1 else sharding.make_mesh(n)
    loss_fn, batches = problem(ardm, data, mesh)
    batch = batches(jax.random.PRNGKey(0))
    p = params
    if mesh is not None:
      p, batch = sharding.replicate((params, batch), mesh)
    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    jax.block_until_ready(step(p, jax.random.PRNGKey(0), batch))
    t0 = time.perf_counter()
    for i in range(repeats):
      jax.block_until_ready(step(p, jax.random.PRNGKey(i + 1), batch))
    out[f"seconds_per_step_{n}"] = (time.perf_counter() - t0) / repeats
  return out


def check_gencast(devices=2, num_steps=2):
  """Tiny GenCast controller training: sharded over 2 devices vs one."""
  import dataclasses
  import xarray as xr
  from gencast_control.adapters.gencast import tiny
  from gencast_control.adapters.gencast.ardm import GenCastARDM
  from gencast_control.training.controller_training import train_controller
  model, example = tiny.offline_assets(num_steps=1, seed=0, example_seed=1)
  model = dataclasses.replace(model, sampler_config=dataclasses.replace(
      model.sampler_config, num_noise_levels=3))
  inputs, targets, forcings = tiny.split_example(model.task_config, example,
                                                 1)
  two = lambda ds: xr.concat([ds, ds + 0.01 * (ds - ds.mean())], "batch") \
      if "batch" in ds.dims else ds
  inputs, targets, forcings = two(inputs), two(targets), two(forcings)
  ardm = GenCastARDM(model, inputs, targets, forcings)
  states, context = ardm.trajectories(inputs, targets, forcings)
  regimes = ardm.in_physical_units(
      [ObservationRegime("half", fraction=0.5, noise_std=0.1)])
  config = ControllerConfig(horizon=1, network=ConvNetConfig(
      width=8, num_blocks=1, kernel_size=3, dilations=(1,), embedding_size=8))
  out = {}
  for shard in (False, True):
    training = ControllerTrainingConfig(
        objective="state", members=2, window=1, spinup=0, cold_fraction=0.0,
        batch_size=2, num_steps=num_steps, learning_rate=1e-2,
        control_cost=1e-3, log_every=1, shard_batch=shard,
        num_devices=devices)
    params, history = train_controller(ardm, states, regimes, config,
                                       training, progress=False,
                                       context=context)
    out[f"loss_{int(shard)}"] = [h["loss"] for h in history]
    out[f"params_{int(shard)}"] = params
  p0, p1 = out.pop("params_0"), out.pop("params_1")
  out["params_max_abs_diff"] = max(jax.tree.leaves(jax.tree.map(
      lambda a, b: float(jnp.max(jnp.abs(a - b))), p0, p1)))
  out["params_devices"] = len(jax.tree.leaves(p1)[0].devices())
  return out


def check_gencast_job(workdir):
  """The cloud job (`gencast-control train-controller --config
  gencast_1deg_train`) on the tiny GenCast, batch over 2 devices."""
  from gencast_control import cli
  out = workdir / "job" / "controller.npz"
  rc = cli.main(["train-controller", "--config", "gencast_1deg_train",
                 "--tiny", "--out", str(out), "--devices", "2",
                 "--set", "controller_training.num_steps=2",
                 "--set", "controller_training.batch_size=2",
                 "--set", "num_examples=4",
                 "--set", "controller_training.log_every=1"])
  work = out.with_suffix(".work")
  log = [json.loads(line)
         for line in (work / "log.jsonl").read_text().splitlines()]
  return {"rc": rc, "controller": out.is_file(),
          "state": (work / "state.npz").is_file(),
          "steps": [r["step"] for r in log if "loss" in r]}


def main(argv):
  workdir, checks = Path(argv[0]), argv[1:]
  # Identical programs (each train() call jits its own step) compile once.
  jax.config.update("jax_compilation_cache_dir", str(workdir / "jit_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  ardm, data, params = setup()
  print(json.dumps({"devices": jax.device_count()}), flush=True)
  for check in checks:
    t0 = time.perf_counter()
    if check == "grads":
      result = check_grads(ardm, data, params)
    elif check == "resume":
      result = check_resume(ardm, data, params, workdir)
    elif check == "indivisible":
      result = check_indivisible()
    elif check == "gencast":
      result = check_gencast()
    elif check == "gencast_job":
      result = check_gencast_job(workdir)
    elif check == "timing":
      result = check_timing(ardm, data, params)
    else:
      raise ValueError(f"unknown check {check!r}")
    result["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps({check: result}), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
