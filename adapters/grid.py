"""Grid ARDM: the project's own haiku diffusion forecaster on regular grids.

Used for the built-in PDEs (KS 1-D, Kolmogorov 2-D) and the ERA5 pilot. The
sampler's variable is the normalised residual z = (x_{n+1} - x_n) / r with r the
per-channel standard deviation of one-step increments (as in GenCast, Price et
al. 2024). The denoiser uses the EDM preconditioning (Karras et al. 2022, eq. 7),

    D(z, sigma) = c_skip z + c_out F_theta(c_in z, c_noise; x_n..x_{n-h+1}),
    c_skip = sd^2/(sigma^2+sd^2), c_out = sigma sd/sqrt(sigma^2+sd^2),
    c_in = 1/sqrt(sigma^2+sd^2), c_noise = log(sigma)/4,   sd = 1.
"""

from __future__ import annotations

import dataclasses
import functools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.config import require
from gencast_control.core.ardm import (ControllerInputs, FrozenARDM,
                                       GuidanceInputs, model_fingerprint)
from gencast_control.core.networks import ConvNet, ConvNetConfig, fourier_embedding
from gencast_control.core.observations import Preview
from gencast_control.core.samplers import (SamplerConfig, noise_levels,
                                           sample, solver_move)


@dataclasses.dataclass(frozen=True)
class GridARDMConfig:
  """Architecture of a grid ARDM.

  Attributes:
    state_shape: [*spatial, C] of one state.
    periodic: periodicity of each spatial axis.
    history_length: number of past states conditioned on.
    network: the denoiser network F_theta.
    sampler: the diffusion sampler of one forecast step.
  """
  state_shape: tuple[int, ...] = (128, 1)
  periodic: tuple[bool, ...] = (True,)
  history_length: int = 1
  network: ConvNetConfig = ConvNetConfig()
  sampler: SamplerConfig = SamplerConfig()

  def __post_init__(self):
    require(self, positive=("history_length",))
    if len(self.state_shape) < 2 or min(self.state_shape) < 1:
      raise ValueError(f"GridARDMConfig.state_shape must be (*spatial, C)"
                       f" with sizes >= 1, got {self.state_shape!r}")
    if len(self.periodic) != len(self.state_shape) - 1:
      raise ValueError(f"periodic {self.periodic} needs one flag per spatial"
                       f" axis of state_shape {self.state_shape}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Normalization:
  """Per-channel statistics: state mean/std and one-step increment std."""
  mean: jax.Array
  std: jax.Array
  residual_std: jax.Array

  @classmethod
  def from_trajectories(cls, array: np.ndarray) -> "Normalization":
    """From [trajectory, time, *spatial, C] training data."""
    axes = tuple(range(array.ndim - 1))
    increments = np.diff(array, axis=1)
    return cls(mean=jnp.asarray(array.mean(axes), jnp.float32),
               std=jnp.asarray(array.std(axes) + 1e-6, jnp.float32),
               residual_std=jnp.asarray(increments.std(axes) + 1e-6,
                                        jnp.float32))


def _denoiser_network(config: GridARDMConfig):
  channels = config.state_shape[-1]

  def network(scaled_z, c_noise, conditioning):
    net = ConvNet(config.network, channels, config.periodic, name="denoiser")
    embedding = fourier_embedding(c_noise, config.network.embedding_size)
    return net(jnp.concatenate([scaled_z, conditioning], axis=-1), embedding)

  return hk.without_apply_rng(hk.transform(network))


def edm_denoise(network_apply, params, z, sigma, conditioning):
  """EDM-preconditioned D(z, sigma) with sigma_data = 1."""
  c_skip = 1.0 / (sigma**2 + 1.0)
  c_out = sigma / jnp.sqrt(sigma**2 + 1.0)
  c_in = 1.0 / jnp.sqrt(sigma**2 + 1.0)
  c_noise = jnp.log(sigma) / 4.0
  return c_skip * z + c_out * network_apply(params, c_in * z, c_noise,
                                            conditioning)


class GridARDM(FrozenARDM):
  """A frozen grid ARDM: config + parameters + normalisation."""

  def __init__(self, config: GridARDMConfig, params: hk.Params,
               normalization: Normalization):
    self.config = config
    self.params = jax.tree.map(jnp.asarray, params)
    self.normalization = normalization
    self._network = _denoiser_network(config)

  @staticmethod
  def init_params(config: GridARDMConfig, key: jax.Array) -> hk.Params:
    spatial = config.state_shape[:-1]
    channels = config.state_shape[-1]
    # jit: one compiled program instead of one per op of an eager init.
    return jax.jit(_denoiser_network(config).init)(
        key, jnp.zeros(config.state_shape), jnp.zeros(()),
        jnp.zeros(tuple(spatial) + (config.history_length * channels,)))

  @property
  def state_shape(self):
    return tuple(self.config.state_shape)

  @property
  def history_length(self):
    return self.config.history_length

  @property
  def periodic(self):
    return tuple(self.config.periodic)

  @functools.cached_property
  def fingerprint(self) -> str:
    return model_fingerprint("grid", [self.config], self.params)

  def normalize(self, x: jax.Array) -> jax.Array:
    return (x - self.normalization.mean) / self.normalization.std

  def conditioning(self, history: jax.Array) -> jax.Array:
    """[h, *spatial, C] physical -> [*spatial, h*C] normalised channels."""
    h = self.normalize(history)
    h = jnp.moveaxis(h, 0, -2)
    return h.reshape(h.shape[:-2] + (-1,))

  def denoise(self, z: jax.Array, sigma: jax.Array,
              conditioning: jax.Array, params: hk.Params | None = None):
    """D_theta(z, sigma | conditioning) in the residual variable."""
    params = self.params if params is None else params
    return edm_denoise(self._network.apply, params, z, sigma, conditioning)

  def to_state(self, z: jax.Array, last: jax.Array) -> jax.Array:
    """Residual variable -> physical next state x_{n+1} = x_n + r z."""
    return last + self.normalization.residual_std * z

  def _control_fn(self, controller, preview, conditioning, last):
    """The sampler's u(z_hat, sigma_hat, denoised, s) from u_psi."""
    if preview is None:
      raise ValueError("a controlled step needs a preview of observations")
    norm_preview = Preview(values=preview.mask * self.normalize(preview.values),
                           mask=preview.mask, offsets=preview.offsets,
                           error_std=preview.error_std
                           / self.normalization.std)

    # The step's encoding (conditioning and preview only) is computed once,
    # outside the sampler's sub-step loop, for controllers that split.
    encoding = (controller.encode(conditioning, norm_preview)
                if hasattr(controller, "encode") else None)

    def control(z_hat, sigma_hat, denoised, s):
      del s
      estimate = self.normalize(self.to_state(denoised, last))
      inputs = ControllerInputs(z_hat, estimate, sigma_hat, conditioning,
                                norm_preview)
      if encoding is None:
        return controller(inputs)
      return controller.head(encoding, inputs)

    return control

  def _guidance_fn(self, guidance, denoise, last):
    """The sampler's u(z_hat, sigma_hat, denoised, s) from a guidance rule."""
    config = self.config.sampler
    sigmas = jnp.asarray(noise_levels(config))
    r = self.normalization.residual_std

    def move(z_hat, denoised, sigma_hat, sigma_next):
      return jax.lax.cond(
          sigma_next > 0,
          lambda: solver_move(config.method, denoise, z_hat, denoised,
                              sigma_hat, jnp.maximum(sigma_next, 1e-12)),
          lambda: denoised)

    def control(z_hat, sigma_hat, denoised, s):
      sigma_next = sigmas[s + 1]
      return guidance(GuidanceInputs(
          state=z_hat, sigma=sigma_hat, sigma_next=sigma_next,
          denoised=denoised, substep=s,
          estimate=lambda z: self.to_state(denoise(z, sigma_hat), last),
          to_variable=lambda x: (x - last) / r,
          move=lambda z, d: move(z, d, sigma_hat, sigma_next), scale=r))

    return control

  def step(self, history, key, preview=None, controller=None, remat=False,
           context=None, guidance=None):
    del context  # the grid ARDM conditions on past states only
    if history.shape != (self.history_length,) + self.state_shape:
      raise ValueError(
          f"history must have shape {(self.history_length,) + self.state_shape}"
          f" (history_length, *state_shape), got {history.shape}")
    conditioning = self.conditioning(history)
    last = history[-1]
    denoise = lambda z, sigma: self.denoise(z, sigma, conditioning)
    control = None
    if controller is not None and guidance is not None:
      raise ValueError("a step takes a controller or a guidance rule, not"
                       " both")
    if controller is not None:
      control = self._control_fn(controller, preview, conditioning, last)
    if guidance is not None:
      control = self._guidance_fn(guidance, denoise, last)
    z, energy = sample(denoise, key, self.state_shape, self.config.sampler,
                       control=control, remat=remat)
    return self.to_state(z, last), energy


def save_grid_ardm(path, ardm: GridARDM, metadata: dict | None = None):
  """Saves a grid ARDM as a self-describing checkpoint (kind "grid_ardm")."""
  from gencast_control.core import checkpoint, config as config_lib
  meta = dict(metadata or {}, kind="grid_ardm",
              config=config_lib.to_dict(ardm.config),
              normalization={k: np.asarray(v).tolist() for k, v in
                             dataclasses.asdict(ardm.normalization).items()},
              fingerprint=ardm.fingerprint)
  return checkpoint.save_checkpoint(path, ardm.params, meta)


def load_grid_ardm(path) -> tuple[GridARDM, dict]:
  """Loads (GridARDM, metadata); verifies the parameters' fingerprint."""
  from gencast_control.core import checkpoint, config as config_lib
  params, meta = checkpoint.load_checkpoint(path, expected_kind="grid_ardm")
  try:
    config = config_lib.from_dict(GridARDMConfig, meta["config"])
    normalization = Normalization(**{
        k: jnp.asarray(v, jnp.float32)
        for k, v in meta["normalization"].items()})
  except (KeyError, TypeError, ValueError) as e:
    raise checkpoint.CheckpointError(
        f"grid ARDM checkpoint {path} has invalid metadata: {e}") from e
  checkpoint.check_params(path, params, jax.eval_shape(
      lambda: GridARDM.init_params(config, jax.random.PRNGKey(0))))
  ardm = GridARDM(config, params, normalization)
  if meta.get("fingerprint") not in (None, ardm.fingerprint):
    raise checkpoint.CheckpointError(
        f"grid ARDM checkpoint {path} is corrupt: parameter fingerprint"
        f" {ardm.fingerprint} does not match the recorded"
        f" {meta['fingerprint']}")
  return ardm, meta
