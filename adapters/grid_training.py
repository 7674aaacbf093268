"""Pretraining a grid ARDM with the EDM denoising loss.

For training pairs (x_{n-h+1..n}, x_{n+1}) with z_0 = (x_{n+1} - x_n) / r
(Karras et al. 2022, Sec. 5, sigma_data = 1):

    L(theta) = E_{sigma, eps} [ lambda(sigma) || D_theta(z_0 + sigma eps, sigma) - z_0 ||^2 ],
    log sigma ~ N(P_mean, P_std^2),   lambda(sigma) = (sigma^2 + 1) / sigma^2.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.config import require
from gencast_control.training import training_loop
from gencast_control.adapters.grid import GridARDM, GridARDMConfig, Normalization


@dataclasses.dataclass(frozen=True)
class ARDMTrainingConfig:
  num_steps: int = 3000
  batch_size: int = 32
  learning_rate: float = 2e-3
  p_mean: float = -1.2
  p_std: float = 1.2
  seed: int = 0
  checkpoint_every: int = 250
  log_every: int = 25

  def __post_init__(self):
    require(self, positive=("num_steps", "batch_size", "learning_rate",
                            "p_std", "checkpoint_every", "log_every"))


def sample_pairs(data: jax.Array, key: jax.Array, batch_size: int,
                 history_length: int):
  """Random (history [B, h, *spatial, C], next [B, *spatial, C]) from
  trajectories [N, T, *spatial, C]."""
  num_traj, num_times = data.shape[:2]
  k1, k2 = jax.random.split(key)
  traj = jax.random.randint(k1, (batch_size,), 0, num_traj)
  t = jax.random.randint(k2, (batch_size,), history_length - 1, num_times - 1)
  offsets = jnp.arange(-history_length + 1, 2)
  window = data[traj[:, None], t[:, None] + offsets[None, :]]
  return window[:, :-1], window[:, -1]


def edm_loss(ardm: GridARDM, params, history, target, key, p_mean, p_std):
  """The weighted EDM loss on a batch."""
  k1, k2 = jax.random.split(key)
  batch = target.shape[0]
  z0 = (target - history[:, -1]) / ardm.normalization.residual_std
  sigma = jnp.exp(p_mean + p_std * jax.random.normal(k1, (batch,)))
  sigma_b = sigma.reshape((batch,) + (1,) * (z0.ndim - 1))
  noisy = z0 + sigma_b * jax.random.normal(k2, z0.shape)
  cond = jax.vmap(ardm.conditioning)(history)
  denoised = jax.vmap(lambda z, s, c: ardm.denoise(z, s, c, params))(
      noisy, sigma, cond)
  weight = (sigma_b**2 + 1.0) / sigma_b**2
  return jnp.mean(weight * (denoised - z0)**2)


def train_ardm(train_data: np.ndarray, config: GridARDMConfig,
               training: ARDMTrainingConfig, workdir=None,
               progress: bool = True):
  """Trains a grid ARDM on trajectories [N, T, *spatial, C].

  Returns:
    (GridARDM, history of logged metrics).
  """
  train_data = np.asarray(train_data, np.float32)
  expected = tuple(config.state_shape)
  if train_data.ndim != len(expected) + 2 or train_data.shape[2:] != expected:
    raise ValueError(f"training data must have shape [trajectory, time,"
                     f" {expected}], got {train_data.shape}")
  if train_data.shape[1] < config.history_length + 1:
    raise ValueError("trajectories are too short for history_length"
                     f" {config.history_length}")
  if not np.isfinite(train_data).all():
    raise ValueError("training data contains NaN or inf")
  normalization = Normalization.from_trajectories(train_data)
  key = jax.random.PRNGKey(training.seed)
  params = GridARDM.init_params(config, key)
  ardm = GridARDM(config, params, normalization)
  data = jnp.asarray(train_data)

  def loss_fn(params, key):
    k1, k2 = jax.random.split(key)
    history, target = sample_pairs(data, k1, training.batch_size,
                                   config.history_length)
    loss = edm_loss(ardm, params, history, target, k2, training.p_mean,
                    training.p_std)
    return loss, {}

  optimizer = training_loop.make_optimizer(training.learning_rate,
                                           training.num_steps)
  params, history = training_loop.train(
      loss_fn, params, optimizer, training.num_steps,
      jax.random.fold_in(key, 1), workdir, training.checkpoint_every,
      training.log_every, "ARDM (EDM loss)", progress=progress,
      identity=training_loop.run_identity(
          training, train_data, dataclasses.asdict(config)),
      divergence_hint="Lower ardm_training.learning_rate (now"
      f" {training.learning_rate:g})")
  return GridARDM(config, params, normalization), history
