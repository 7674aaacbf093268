"""The learned controller u_psi (Srivastava et al. 2025, arXiv 2510.06637).

At sub-step s of forecast step n the controller maps

    (z_hat_s, sigma_hat_s, D_theta(z_hat_s), x_{n-h+1..n}, {(y_j, M_j, Delta_j)}_{j=n+1}^{n+H})

to an additive control u_s in the sampler's variable. Observations enter as grid
channels: the lifted values M_j y_j, the masks M_j and the innovations
M_j (y_j - x_hat_{n+1}) against the current denoised estimate, for every frame of
the lookahead horizon H; the frame offsets Delta_j / H and the noise level enter
the FiLM embedding. The output layer is zero-initialised, so a freshly
initialised controller is exactly the pretrained sampler (u = 0).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from gencast_control.ardm import ControllerFn, ControllerInputs, FrozenARDM
from gencast_control.networks import ConvNet, ConvNetConfig, fourier_embedding
from gencast_control.observations import Preview


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
  """Architecture of u_psi.

  Attributes:
    horizon: lookahead horizon H (observation frames n+1..n+H in the preview).
    network: the conv net.
  """
  horizon: int = 2
  network: ConvNetConfig = ConvNetConfig(
      width=24, num_blocks=2, kernel_size=5, dilations=(1, 4),
      embedding_size=32)


def controller_features(inputs: ControllerInputs) -> jax.Array:
  """Stacks the grid inputs as channels [*spatial, F]."""
  preview = inputs.preview
  horizon = preview.values.shape[0]
  innovation = preview.mask * (preview.values - inputs.denoised[None])

  def frames_to_channels(x):  # [H, *spatial, C] -> [*spatial, H*C]
    x = jnp.moveaxis(x, 0, -2)
    return x.reshape(x.shape[:-2] + (horizon * x.shape[-1],))

  return jnp.concatenate([
      inputs.state, inputs.denoised, inputs.conditioning,
      frames_to_channels(preview.values), frames_to_channels(preview.mask),
      frames_to_channels(innovation)
  ], axis=-1)


class Controller(hk.Module):
  """u_psi on a channel-last grid; output has the shape of inputs.state."""

  def __init__(self, config: ControllerConfig, periodic: Sequence[bool],
               name: str = "controller"):
    super().__init__(name=name)
    self._config = config
    self._periodic = tuple(periodic)

  def __call__(self, inputs: ControllerInputs) -> jax.Array:
    horizon = self._config.horizon
    if inputs.preview.values.shape[0] != horizon:
      raise ValueError(f"preview has {inputs.preview.values.shape[0]} frames,"
                       f" the controller expects horizon {horizon}")
    size = self._config.network.embedding_size
    embedding = jnp.concatenate([
        fourier_embedding(jnp.log(inputs.sigma) / 4.0, size),
        inputs.preview.offsets / horizon
    ])
    net = ConvNet(self._config.network, inputs.state.shape[-1],
                  self._periodic, zero_output=True, name="net")
    return net(controller_features(inputs), embedding)


def make_controller(config: ControllerConfig,
                    periodic: Sequence[bool]) -> hk.Transformed:
  """A haiku transform of u_psi: apply(params, inputs) -> u."""
  return hk.without_apply_rng(
      hk.transform(lambda inputs: Controller(config, periodic)(inputs)))


def init_controller(config: ControllerConfig, ardm: FrozenARDM,
                    key: jax.Array) -> hk.Params:
  """Initial parameters for u_psi on `ardm`'s grid (u = 0 by construction)."""
  spatial = ardm.state_shape[:-1]
  channels = ardm.state_shape[-1]
  zeros = jnp.zeros(ardm.state_shape, jnp.float32)
  frames = jnp.zeros((config.horizon,) + tuple(ardm.state_shape), jnp.float32)
  dummy = ControllerInputs(
      state=zeros, denoised=zeros, sigma=jnp.ones(()),
      conditioning=jnp.zeros(tuple(spatial) + (ardm.history_length * channels,)),
      preview=Preview(frames, frames,
                      jnp.arange(1, config.horizon + 1, dtype=jnp.float32)))
  return make_controller(config, ardm.periodic).init(key, dummy)


def bind_controller(config: ControllerConfig, periodic: Sequence[bool],
                    params: hk.Params) -> ControllerFn:
  """u_psi with its parameters bound, as the ARDM's `controller` argument."""
  apply = make_controller(config, periodic).apply
  return lambda inputs: apply(params, inputs)


def save_controller(path, params: hk.Params, config: ControllerConfig,
                    ardm: FrozenARDM, metadata: dict | None = None):
  """Saves u_psi with its config and the fingerprint of the ARDM it steers."""
  from gencast_control import checkpoint, config as config_lib
  meta = dict(metadata or {}, kind="controller",
              config=config_lib.to_dict(config),
              ardm_fingerprint=ardm.fingerprint,
              state_shape=list(ardm.state_shape))
  return checkpoint.save_checkpoint(path, params, meta)


def load_controller(path, ardm: FrozenARDM):
  """Loads (config, params, metadata) and checks it was trained for `ardm`."""
  from gencast_control import checkpoint, config as config_lib
  params, meta = checkpoint.load_checkpoint(path, expected_kind="controller")
  if meta.get("ardm_fingerprint") != ardm.fingerprint:
    raise checkpoint.CheckpointError(
        f"controller {path} was trained for ARDM {meta.get('ardm_fingerprint')}"
        f" but is being used with ARDM {ardm.fingerprint} (state shape"
        f" {ardm.state_shape}); retrain it for this model")
  try:
    config = config_lib.from_dict(ControllerConfig, meta["config"])
  except (KeyError, TypeError, ValueError) as e:
    raise checkpoint.CheckpointError(
        f"controller checkpoint {path} has invalid metadata: {e}") from e
  return config, params, meta
