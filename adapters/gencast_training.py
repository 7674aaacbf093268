"""Training the GenCast controller through controlled GenCast rollouts.

Srivastava et al. 2025 (arXiv 2510.06637), with GenCast (Price et al. 2024) as
the frozen ARDM: from examples (inputs, L target steps, forcings) roll the
controlled GenCast over the L steps, step n seeing the preview of observation
times n+1..n+H, and minimise

    J(psi) = sum_{j=1..L} ||M_j (x_j - y_j) / sigma_obs||^2 / |M|
             + lambda * sum_{n, s} mean(u_{n,s}^2),

the masked misfit normalised by the number |M| of observed entries plus the
control energy. Gradients flow through every DPM-Solver++ sub-step, both
denoiser calls and the frozen GenCast into psi only (GenCast's parameters are
an argument of the loss, never differentiated); each sub-step is
rematerialised with hk.remat.

Observations are drawn inside the loss from the true targets with the
project's observation regimes (gencast_control.regimes) applied to the
*normalised* state, so a regime's noise_std is a fraction of each channel's
climatological standard deviation; values and sigma_obs are then mapped back
to physical units per channel.

Memory with remat. hk.remat wraps each sub-step's update (both denoiser
calls and the controller), so the backward pass keeps about one to three
[B, lat, lon, C] arrays per sub-step (the sub-step state, the loop carry)
and recomputes one sub-step at a time. Measured with XLA's memory analysis on
the tiny GenCast (19 x 36, window 1): 14.8 MiB of temporaries with remat,
356 MiB without (24x less). Estimated for DeepMind's task (C = 84, N = 20
sub-steps, float32), per example and forecast step:

    saved per sub-step: 1 deg (65,160 points): 21 MiB per array,
                        ~1.2 GiB over 20 sub-steps (3 arrays each);
                        0.25 deg (1,038,240 points): 333 MiB per array,
                        ~20 GiB over 20 sub-steps;
    transient (one sub-step recomputed): the controller features (212 MiB at
                        1 deg, 3.3 GiB at 0.25 deg for H = 2) plus one
                        backward pass of two GenCast denoiser calls, roughly
                        twice GenCast's inference footprint (DeepMind's GPU
                        figures: ~16 GB at 1 deg, ~60 GB at 0.25 deg).

So 1 deg trains on one 80 GB accelerator for small window x batch, while
0.25 deg needs its saved states and the denoiser backward sharded over
devices. These totals are estimates: no accelerator was available to measure
them (benchmarks/gencast_step.py --grad reports the peak where one is).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
import xarray as xr

from gencast_control import checkpoint as checkpoint_lib
from gencast_control import sharding, training_loop
from gencast_control.adapters.gencast_assets import GenCastModel
from gencast_control.adapters.gencast_channels import (ChannelLayout,
                                                       ChannelStats, check_call)
from gencast_control.adapters.gencast_controller import (
    controller_transform, init_controller_params)
from gencast_control.adapters.gencast_training_config import (
    GenCastControllerTrainingConfig)
from gencast_control.adapters.gencast_predictor import (forward_transform,
                                                        next_inputs,
                                                        stack_conditioning)
from gencast_control.adapters.gencast_upstream import upstream
from gencast_control.controller import ControllerConfig
from gencast_control.observations import Observations, Preview
from gencast_control.regimes import ObservationRegime, sample_observations


def shard_examples(datasets, mesh: jax.sharding.Mesh):
  """Places xarray data on the mesh: the `batch` dim split, the rest copied.

  Every process must pass the same (global) batch; each keeps its devices'
  part (jax.make_array_from_callback).
  """
  spec = lambda dims: jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(
          *[sharding.AXES if d == "batch" else None for d in dims]))

  def put(array, dims):
    value = np.asarray(array)
    return jax.make_array_from_callback(
        value.shape, spec(dims or ()), lambda index: value[index])

  return upstream().xarray_jax.tree_map_with_dims(put, datasets)


def batched_preview(observations: Observations, step, horizon: int) -> Preview:
  """Preview of step n for a batched stream [B, T+1, lat, lon, C]."""
  one = lambda v, m, s: Observations(v, m, s).preview(step, horizon)
  preview = jax.vmap(one)(observations.values, observations.mask,
                          observations.noise_std)
  return preview._replace(offsets=preview.offsets[0])


def masked_misfit(states: jax.Array, observations: Observations) -> jax.Array:
  """sum ||M (x - y) / sigma_obs||^2 / |M| over times 1..L (NaN-safe).

  states: [B, L, lat, lon, C] at times 1..L; observations over times 0..L.
  Unobserved entries (where the prediction may be NaN, e.g. sea surface
  temperature over land) contribute exactly 0.
  """
  values, mask = observations.values[:, 1:], observations.mask[:, 1:]
  noise_std = observations.noise_std[:, 1:]
  residual = jnp.where(mask > 0, (states - values) / noise_std, 0.0)
  return jnp.sum(residual**2) / jnp.maximum(jnp.sum(mask), 1.0)


def observe_targets(regimes: Sequence[ObservationRegime], key: jax.Array,
                    truth: jax.Array, channel_stats: ChannelStats
                    ) -> Observations:
  """Observations [B, L+1, lat, lon, C] of truth [B, L, ...] (time 0 unseen).

  Each example draws one regime and phase; regimes act on normalised values.
  noise_std is per entry [B, L+1, lat, lon, C] (physical units).
  """
  valid = jnp.isfinite(truth)
  norm = jnp.where(valid, channel_stats.normalize(truth), 0.0)
  norm = jnp.concatenate([jnp.zeros_like(norm[:, :1]), norm], axis=1)
  valid = jnp.concatenate([jnp.zeros_like(valid[:, :1]), valid], axis=1)
  batch = truth.shape[0]
  k_choice, k_phase, k_obs = jax.random.split(key, 3)
  choice = jax.random.randint(k_choice, (batch,), 0, len(regimes))
  phase = jax.random.randint(k_phase, (batch,), 0,
                             max(r.every for r in regimes))
  observed = jax.vmap(
      lambda k, x, p, c: sample_observations(list(regimes), k, x, p, c))(
          jax.random.split(k_obs, batch), norm, phase, choice)
  mask = observed.mask * valid
  values = jnp.where(mask > 0, observed.values * channel_stats.std
                     + channel_stats.mean, 0.0)
  std = observed.noise_std  # [B] or, heteroscedastic, [B, L+1, ...]
  std = std.reshape(std.shape + (1,) * (values.ndim - std.ndim))
  noise_std = jnp.broadcast_to(std * channel_stats.std, values.shape)
  return Observations(values=values, mask=mask, noise_std=noise_std)


def controlled_window(model: GenCastModel, gencast_params, controller_apply,
                      controller_params, rng: jax.Array, inputs: xr.Dataset,
                      targets_template: xr.Dataset, forcings: xr.Dataset,
                      observations: Observations, horizon: int,
                      remat: bool = True):
  """Controlled rollout over targets_template's L times (traceable).

  Step n draws with the key split as in upstream's rollout and sees the
  preview of observation times n+1..n+H.

  Returns:
    (states [B, L, lat, lon, C] physical, total control energy).
  """
  transform = forward_transform(model, controller_apply, remat=remat)
  layout = ChannelLayout.from_template(targets_template)
  num_steps = targets_template.sizes["time"]
  first = targets_template.coords["time"].values[:1]
  states, energy, current = [], jnp.zeros(()), inputs
  for n in range(num_steps):
    template = xr.zeros_like(targets_template.isel(time=slice(n, n + 1))
                             ).assign_coords(time=first)
    step_forcings = forcings.isel(time=slice(n, n + 1)).assign_coords(
        time=first)
    rng, step_rng = jax.random.split(rng)
    preview = batched_preview(observations, n, horizon)
    (prediction, step_energy), _ = transform.apply(
        gencast_params, {}, step_rng, current, template, step_forcings,
        controller_params, preview)
    states.append(jnp.asarray(layout.stack(prediction)))
    energy = energy + step_energy
    if n + 1 < num_steps:
      current = next_inputs(current, prediction, step_forcings)
  return jnp.stack(states, axis=1), energy


def controller_loss(model: GenCastModel, gencast_params, controller_config,
                    controller_params, rng, inputs, targets, forcings,
                    regimes: Sequence[ObservationRegime],
                    control_cost: float, remat: bool = True):
  """J(psi) of one batch; returns (loss, {"misfit", "energy"})."""
  layout = ChannelLayout.from_template(targets)
  channel_stats = ChannelStats.create(layout, model.stats,
                                      model.task_config.input_variables)
  k_obs, k_roll = jax.random.split(rng)
  truth = jnp.asarray(layout.stack(targets, leading=("batch", "time")))
  observations = observe_targets(regimes, k_obs, truth, channel_stats)
  states, energy = controlled_window(
      model, gencast_params, controller_transform(controller_config).apply,
      controller_params, k_roll, inputs, targets, forcings, observations,
      controller_config.horizon, remat)
  misfit = masked_misfit(states, observations)
  return misfit + control_cost * energy, {"misfit": misfit, "energy": energy}


def _take(dataset: xr.Dataset, index: np.ndarray) -> xr.Dataset:
  return dataset.isel(batch=index) if "batch" in dataset.dims else dataset


def train_controller(model: GenCastModel, inputs: xr.Dataset,
                     targets: xr.Dataset, forcings: xr.Dataset,
                     regimes: Sequence[ObservationRegime],
                     controller_config: ControllerConfig,
                     training: GenCastControllerTrainingConfig,
                     workdir: str | Path | None = None, params=None,
                     progress: bool = True):
  """Trains u_psi on N examples; GenCast stays frozen.

  Args:
    inputs, targets, forcings: GenCast's datasets with a batch dim of N
      examples and `training.window` target times (e.g. from
      data_utils.extract_inputs_targets_forcings).
    regimes: observing systems, one drawn per example.
    workdir: if given, a resumable training state (state.npz) and a JSON-lines
      log (log.jsonl) live there.

  Returns:
    (controller params, history of logged metrics).
  """
  check_call(inputs, targets.isel(time=[0]), forcings.isel(time=[0]),
             model.task_config)
  if targets.sizes["time"] != training.window:
    raise ValueError(f"targets have {targets.sizes['time']} times, the"
                     f" training window is {training.window}")
  if not regimes:
    raise ValueError("train_controller needs at least one observation regime")
  num_examples = inputs.sizes["batch"]
  if training.batch_size > num_examples:
    raise ValueError(f"batch_size {training.batch_size} exceeds the"
                     f" {num_examples} examples")
  mesh = training.mesh()
  key = jax.random.PRNGKey(training.seed)
  if params is None:
    layout = ChannelLayout.from_template(targets)
    conditioning = stack_conditioning(inputs.isel(batch=[0]),
                                      forcings.isel(batch=[0], time=[0]))
    params = init_controller_params(controller_config, layout,
                                    conditioning.shape[-1], key)
  optimizer = training_loop.make_optimizer(
      training.learning_rate, training.num_steps,
      warmup_steps=max(training.num_steps // 10, 1))
  state_path = log_path = None
  if workdir is not None:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state_path, log_path = workdir / "state.npz", workdir / "log.jsonl"
  state, _ = training_loop.initial_state(params, optimizer,
                                         jax.random.fold_in(key, 1),
                                         state_path, mesh)
  gencast_params = model.params
  jit_kwargs = {}
  if mesh is not None:
    gencast_params = sharding.replicate(model.params, mesh)
    jit_kwargs = dict(out_shardings=sharding.replicated(mesh))
  primary = sharding.is_primary()

  def loss_fn(controller_params, gencast_params, rng, i, t, f):
    return controller_loss(model, gencast_params, controller_config,
                           controller_params, rng, i, t, f, regimes,
                           training.control_cost, training.remat)

  @functools.partial(jax.jit, **jit_kwargs)
  def update(state, gencast_params, i, t, f):
    rng = jax.random.fold_in(state["key"], state["step"])
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], gencast_params, rng, i, t, f)
    updates, opt_state = optimizer.update(grads, state["opt_state"],
                                          state["params"])
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return dict(state, params=optax.apply_updates(state["params"], updates),
                opt_state=opt_state, step=state["step"] + 1), metrics

  def save():
    if state_path is not None and primary:
      checkpoint_lib.save_training_state(state_path, state,
                                         {"what": "gencast controller"})

  history: list[dict[str, Any]] = []
  start = int(state["step"])
  t0 = time.perf_counter()
  bar = tqdm.trange(start, training.num_steps, disable=not progress,
                    desc="GenCast controller", initial=start,
                    total=training.num_steps)
  for step in bar:
    index = np.random.default_rng([training.seed, step]).choice(
        num_examples, training.batch_size, replace=False)
    batch = (_take(inputs, index), _take(targets, index),
             _take(forcings, index))
    if mesh is not None:
      batch = shard_examples(batch, mesh)
    state, metrics = update(state, gencast_params, *batch)
    if (step + 1) % training.log_every == 0 or step + 1 == training.num_steps:
      record = {k: float(v) for k, v in metrics.items()}
      record.update(step=step + 1, seconds=round(time.perf_counter() - t0, 2))
      if not np.isfinite(record["loss"]):
        save()
        raise FloatingPointError(
            f"GenCast controller loss became {record['loss']} at step"
            f" {step + 1}")
      history.append(record)
      bar.set_postfix(loss=f"{record['loss']:.4g}")
      if log_path is not None and primary:
        with open(log_path, "a") as f:
          f.write(json.dumps(record) + "\n")
    if (step + 1) % training.checkpoint_every == 0:
      save()
  save()
  return state["params"], history
