"""Settings of controller training through GenCast.

Kept apart from `gencast_training` so that configs (e.g.
configs/gencast_1deg_train.py) load without DeepMind's package.
"""

from __future__ import annotations

import dataclasses

import jax

from gencast_control import sharding


@dataclasses.dataclass(frozen=True)
class GenCastControllerTrainingConfig:
  """Attributes:
    window: forecast steps L per example (12 h each).
    batch_size: examples per optimisation step.
    num_steps: optimisation steps.
    learning_rate: peak AdamW learning rate (warm-up, cosine decay, clipping).
    control_cost: lambda, weight of the control energy.
    remat: rematerialise each sampler sub-step in the backward pass.
    seed: PRNG seed (batches, observations, sampler noise).
    log_every, checkpoint_every: in optimisation steps.
    shard_batch: split each batch's `batch` dim over a device mesh
      (gencast_control.sharding; GenCast and controller parameters and the
      optimiser state replicated); batch_size must be a multiple of the
      number of devices used. Multi-host jobs call
      sharding.initialize_distributed() first.
    num_devices: devices in the mesh when shard_batch (0: all devices).
  """
  window: int = 1
  batch_size: int = 1
  num_steps: int = 100
  learning_rate: float = 1e-3
  control_cost: float = 1e-3
  remat: bool = True
  seed: int = 0
  log_every: int = 10
  checkpoint_every: int = 50
  shard_batch: bool = False
  num_devices: int = 0

  def mesh(self) -> jax.sharding.Mesh | None:
    """The device mesh of a sharded run (None unless shard_batch)."""
    return sharding.training_mesh(self.shard_batch, self.num_devices,
                                  self.batch_size)
