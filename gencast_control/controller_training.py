"""Training the controller by entropy-regularised stochastic optimal control.

Srivastava et al. 2025 (arXiv 2510.06637): from states x_0 drawn from training
trajectories, roll the controlled ARDM over a window of L forecast steps with
the preview buffer of each step, and minimise

    J(psi) = E[ sum_{j=1..L} ||M_j (x_j - y_j)||^2 / sigma_obs^2 / |M|
                + lambda * sum_{n, s} mean(u_{n,s}^2) ],

the masked observation misfit (normalised by the number |M| of observed
entries) plus the control energy, which for Gaussian sub-step transitions is
(up to scale) the KL divergence to the uncontrolled ARDM. Gradients flow
through every sampler sub-step and the frozen denoiser into psi only; the
sub-steps are rematerialised (jax.checkpoint) so memory stays bounded.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control import sharding, training_loop
from gencast_control.ardm import FrozenARDM
from gencast_control.assimilation import rollout
from gencast_control.controller import (ControllerConfig, bind_controller,
                                        init_controller)
from gencast_control.observations import Observations
from gencast_control.regimes import ObservationRegime, sample_observations


@dataclasses.dataclass(frozen=True)
class ControllerTrainingConfig:
  """Attributes:
    window: forecast steps L rolled out per training example.
    spinup: maximum number of unguided ARDM steps run (without gradient) from
      the true state before the controlled window, drawn uniformly in
      0..spinup per example, so training starts from states carrying
      realistic forecast errors rather than from the truth.
    holdout_fraction: fraction of the observations hidden from the preview and
      used only in the misfit. Scoring on observations the controller did not
      see keeps it from fitting their noise (whose misfit would otherwise
      drop below the noise floor); 0 scores on the previewed observations.
    control_cost: lambda, weight of the control energy.
    regimes: observation regimes sampled uniformly per example (by name,
      resolved by the caller).
    shard_batch: split each batch over a device mesh (gencast_control.sharding:
      axis "batch", parameters replicated); batch_size must be a multiple of
      the number of devices used. Multi-host jobs call
      sharding.initialize_distributed() first.
    num_devices: devices in the mesh when shard_batch (0: all devices).
  """
  window: int = 4
  spinup: int = 8
  holdout_fraction: float = 0.0
  batch_size: int = 8
  num_steps: int = 400
  learning_rate: float = 1e-3
  control_cost: float = 1e-3
  seed: int = 0
  checkpoint_every: int = 50
  log_every: int = 10
  shard_batch: bool = False
  num_devices: int = 0

  def mesh(self) -> jax.sharding.Mesh | None:
    """The device mesh of a sharded run (None unless shard_batch)."""
    return sharding.training_mesh(self.shard_batch, self.num_devices,
                                  self.batch_size)


def sample_windows(data: jax.Array, key: jax.Array, batch_size: int,
                   history_length: int, window: int) -> jax.Array:
  """Random windows [B, h + L, *spatial, C] of trajectories [N, T, ...]."""
  num_traj, num_times = data.shape[:2]
  length = history_length + window
  if num_times < length:
    raise ValueError(f"trajectories have {num_times} times, training windows"
                     f" need {length}")
  k1, k2 = jax.random.split(key)
  traj = jax.random.randint(k1, (batch_size,), 0, num_traj)
  t0 = jax.random.randint(k2, (batch_size,), 0, num_times - length + 1)
  return data[traj[:, None], t0[:, None] + jnp.arange(length)[None, :]]


def spun_up_window(ardm: FrozenARDM, truth_window: jax.Array, spinup: int,
                   window: int, key: jax.Array):
  """(history, truth [L+1]) after k ~ U{0..spinup} unguided steps.

  truth_window has h + spinup + L states; the history is the unguided
  forecast started from the true states, so it carries forecast errors.
  """
  h = ardm.history_length
  if spinup == 0:
    return truth_window[:h], truth_window[h - 1:]
  k_len, k_roll = jax.random.split(key)
  steps = jax.random.randint(k_len, (), 0, spinup + 1)
  states, _ = rollout(ardm, truth_window[:h], spinup, k_roll)
  states = jax.lax.stop_gradient(
      jnp.concatenate([truth_window[:h - 1], states]))
  history = jax.lax.dynamic_slice_in_dim(states, steps, h)
  truth = jax.lax.dynamic_slice_in_dim(truth_window, steps + h - 1,
                                       window + 1)
  return history, truth


def split_observations(observations: Observations, key: jax.Array,
                       holdout_fraction: float
                       ) -> tuple[Observations, Observations]:
  """Partitions observed entries into (shown, held out) at random."""
  hidden = jax.random.bernoulli(key, holdout_fraction,
                                observations.mask.shape)
  shown = observations.mask * (1.0 - hidden)
  held_out = observations.mask - shown
  return (dataclasses.replace(observations, mask=shown,
                              values=observations.values * shown),
          dataclasses.replace(observations, mask=held_out,
                              values=observations.values * held_out))


def window_cost(ardm: FrozenARDM, controller, horizon: int,
                regimes: list[ObservationRegime], truth_window: jax.Array,
                key: jax.Array, control_cost: float, spinup: int = 0,
                holdout_fraction: float = 0.0):
  """Misfit + lambda * energy of one controlled window under a random regime.

  truth_window: [h + spinup + L, *spatial, C] true states.
  """
  k_spin, k_obs, k_phase, k_choice, k_roll, k_hold = jax.random.split(key, 6)
  window = truth_window.shape[0] - ardm.history_length - spinup
  history, truth = spun_up_window(ardm, truth_window, spinup, window, k_spin)
  choice = jax.random.randint(k_choice, (), 0, len(regimes))
  phase = jax.random.randint(k_phase, (), 0, max(r.every for r in regimes))
  observations = sample_observations(regimes, k_obs, truth, phase, choice)
  scored = observations
  if holdout_fraction > 0:
    observations, scored = split_observations(observations, k_hold,
                                              holdout_fraction)
  states, energy = rollout(ardm, history, window, k_roll, observations,
                           controller, horizon, remat=True)
  misfit = scored.misfit(states[1:], slice(1, None))
  return misfit + control_cost * energy, (misfit, energy)


def controller_loss_fn(ardm: FrozenARDM, data: jax.Array,
                       regimes: list[ObservationRegime],
                       config: ControllerConfig,
                       training: ControllerTrainingConfig,
                       mesh: jax.sharding.Mesh | None = None):
  """loss_fn(params, key) -> (mean window cost, metrics) of one random batch.

  With a mesh, the batch's windows and keys are sharded over it (the vmapped
  rollout then runs data-parallel; the mean becomes an all-reduce).
  """
  if mesh is not None:
    sharding.check_batch_size(training.batch_size, mesh)

  def loss_fn(params, key):
    controller = bind_controller(config, ardm.periodic, params)
    k_data, k_cost = jax.random.split(key)
    windows = sample_windows(data, k_data, training.batch_size,
                             ardm.history_length,
                             training.spinup + training.window)
    keys = jax.random.split(k_cost, training.batch_size)
    if mesh is not None:
      windows, keys = sharding.constrain_batch((windows, keys), mesh)
    example = lambda w, k: window_cost(ardm, controller, config.horizon,
                                       regimes, w, k, training.control_cost,
                                       training.spinup,
                                       training.holdout_fraction)
    costs, (misfit, energy) = jax.vmap(example)(windows, keys)
    return jnp.mean(costs), {"misfit": jnp.mean(misfit),
                             "energy": jnp.mean(energy)}

  return loss_fn


def train_controller(ardm: FrozenARDM, train_data: np.ndarray,
                     regimes: list[ObservationRegime],
                     config: ControllerConfig,
                     training: ControllerTrainingConfig, workdir=None,
                     progress: bool = True, params=None):
  """Trains u_psi on trajectories [N, T, *spatial, C]; ARDM stays frozen.

  Each example picks one of `regimes` at random, so one controller serves
  several observing systems. With training.shard_batch the batch is split
  over all (or num_devices) devices; the data and parameters are replicated.

  Returns:
    (controller params, history of logged metrics).
  """
  train_data = np.asarray(train_data, np.float32)
  if tuple(train_data.shape[2:]) != tuple(ardm.state_shape):
    raise ValueError(f"training data states {train_data.shape[2:]} do not"
                     f" match the ARDM state shape {ardm.state_shape}")
  if not regimes:
    raise ValueError("train_controller needs at least one observation regime")
  mesh = training.mesh()
  key = jax.random.PRNGKey(training.seed)
  if params is None:
    params = init_controller(config, ardm, key)
  data = (jnp.asarray(train_data) if mesh is None
          else sharding.replicate(train_data, mesh))
  loss_fn = controller_loss_fn(ardm, data, regimes, config, training, mesh)
  optimizer = training_loop.make_optimizer(training.learning_rate,
                                           training.num_steps)
  return training_loop.train(
      loss_fn, params, optimizer, training.num_steps,
      jax.random.fold_in(key, 1), workdir, training.checkpoint_every,
      training.log_every, "controller (SOC loss)", progress=progress,
      mesh=mesh)
