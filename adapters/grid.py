"""Grid ARDM: the project's own haiku diffusion forecaster on regular grids.

Used for the built-in PDEs (KS 1-D, Kolmogorov 2-D) and the ERA5 pilot. The
sampler's variable is the normalised residual z = (x_{n+1} - x_n) / r with r the
per-channel standard deviation of one-step increments (as in GenCast, Price et
al. 2024). The denoiser uses the EDM preconditioning (Karras et al. 2022, eq. 7),

    D(z, sigma) = c_skip z + c_out F_theta(c_in z, c_noise; x_n..x_{n-h+1}),
    c_skip = sd^2/(sigma^2+sd^2), c_out = sigma sd/sqrt(sigma^2+sd^2),
    c_in = 1/sqrt(sigma^2+sd^2), c_noise = log(sigma)/4,   sd = 1.

A checkpoint written by `train-ardm` also records the state's layout (metadata
"state": the variable names in channel order, the spatial dims and their
coordinates, the time step model_dt, read off the training data), so every
input is aligned to the model's own names, grid and step
(gencast_control.core.layout). Checkpoints without it (written before) have
`layout` None: the grid and step then come from the user's initial state and
the config, as before.
"""

from __future__ import annotations

import dataclasses
import functools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from gencast_control.core import times as time_lib
from gencast_control.core.config import require
from gencast_control.core.ardm import (ControllerInputs, FrozenARDM,
                                       GuidanceInputs, model_fingerprint)
from gencast_control.core.networks import ConvNet, ConvNetConfig, fourier_embedding
from gencast_control.core.layout import StateLayout
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
  """A frozen grid ARDM: config + parameters + normalisation, and the
  state's layout (names, grid, step) where it is known."""

  def __init__(self, config: GridARDMConfig, params: hk.Params,
               normalization: Normalization,
               layout: StateLayout | None = None):
    self.config = config
    self.params = jax.tree.map(jnp.asarray, params)
    self.normalization = normalization
    self._network = _denoiser_network(config)
    if layout is not None:
      check_layout(layout, config)
    self._layout = layout

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
    # config and parameters only: recording the layout in an older
    # checkpoint keeps its fingerprint (and the controllers trained for it)
    return model_fingerprint("grid", [self.config], self.params)

  @property
  def layout(self) -> StateLayout | None:
    """The variables, grid and time step the model was trained on (from its
    checkpoint), or None for a checkpoint that does not record them."""
    return self._layout

  def with_layout(self, layout: StateLayout | None) -> "GridARDM":
    """The same model with `layout` (checked against the config)."""
    return GridARDM(self.config, self.params, self.normalization, layout)

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
    norm_preview = preview.in_units(self.normalize, self.normalization.std)

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


def check_layout(layout: StateLayout, config: GridARDMConfig) -> None:
  """ValueError unless `layout` describes states of config's shape and
  periodicity, one single-level channel per variable, with distinct names
  and strictly ascending, finite coordinates."""
  if not isinstance(layout, StateLayout):
    raise ValueError(f"layout must be a StateLayout, got"
                     f" {type(layout).__name__}")
  if layout.shape != tuple(config.state_shape):
    raise ValueError(f"the layout's variables {list(layout.variables)} on"
                     f" dims {list(layout.dims)} give states of shape"
                     f" {layout.shape}; the ARDM's are"
                     f" {tuple(config.state_shape)}")
  if any(layout.levels):
    raise ValueError("a grid ARDM's variables are single fields (no levels)")
  if len(set(layout.variables)) != len(layout.variables):
    raise ValueError(f"the layout repeats a variable: {list(layout.variables)}")
  if len(set(layout.dims)) != len(layout.dims):
    raise ValueError(f"the layout repeats a dim: {list(layout.dims)}")
  if tuple(layout.periodic) != tuple(config.periodic):
    raise ValueError(f"the layout's periodic {layout.periodic} is not the"
                     f" ARDM's {tuple(config.periodic)}")
  for d, c in zip(layout.dims, layout.coords):
    c = np.asarray(c)
    if c.ndim != 1 or not np.isfinite(c).all() or (
        c.size > 1 and not (np.diff(c) > 0).all()):
      raise ValueError(f"the layout's {d!r} coordinate must be finite and"
                       " strictly ascending")
  step = layout.timestep
  if not (isinstance(step, np.timedelta64)
          and step > np.timedelta64(0, "ns")):
    time_lib.as_timestep(step, "the layout's time step")


def layout_to_dict(layout: StateLayout) -> dict:
  """The checkpoint's "state" metadata: JSON numbers and strings (floats
  round-trip exactly; a timedelta step as text such as "0 days 12:00:00")."""
  step = layout.timestep
  return {
      "variables": list(layout.variables),
      "dims": list(layout.dims),
      "coords": {d: [float(x) for x in c]
                 for d, c in zip(layout.dims, layout.coords)},
      "model_dt": (str(pd.Timedelta(step)) if isinstance(step, np.timedelta64)
                   else float(step)),
      "sphere": bool(layout.sphere),
  }


def layout_from_dict(state: dict, config: GridARDMConfig) -> StateLayout:
  """Inverse of layout_to_dict (periodic from the config); checked."""
  variables = tuple(str(v) for v in state["variables"])
  dims = tuple(str(d) for d in state["dims"])
  step = state["model_dt"]
  layout = StateLayout(
      variables=variables, levels=((),) * len(variables), dims=dims,
      coords=tuple(np.asarray(state["coords"][d], np.float64) for d in dims),
      periodic=tuple(bool(p) for p in config.periodic),
      timestep=time_lib.as_timestep(step, "model_dt"),
      sphere=bool(state.get("sphere", False)))
  check_layout(layout, config)
  return layout


def save_grid_ardm(path, ardm: GridARDM, metadata: dict | None = None):
  """Saves a grid ARDM as a self-describing checkpoint (kind "grid_ardm");
  its layout, where known, as the metadata "state"."""
  from gencast_control.core import checkpoint, config as config_lib
  meta = dict(metadata or {}, kind="grid_ardm",
              config=config_lib.to_dict(ardm.config),
              normalization={k: np.asarray(v).tolist() for k, v in
                             dataclasses.asdict(ardm.normalization).items()},
              fingerprint=ardm.fingerprint)
  meta.pop("state", None)
  if ardm.layout is not None:
    meta["state"] = layout_to_dict(ardm.layout)
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
  layout = None
  if meta.get("state") is not None:  # checkpoints before it have none
    try:
      layout = layout_from_dict(meta["state"], config)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
      raise checkpoint.CheckpointError(
          f"grid ARDM checkpoint {path} has an invalid state layout"
          f" (metadata 'state'): {e}") from e
  checkpoint.check_params(path, params, jax.eval_shape(
      lambda: GridARDM.init_params(config, jax.random.PRNGKey(0))))
  ardm = GridARDM(config, params, normalization, layout)
  if meta.get("fingerprint") not in (None, ardm.fingerprint):
    raise checkpoint.CheckpointError(
        f"grid ARDM checkpoint {path} is corrupt: parameter fingerprint"
        f" {ardm.fingerprint} does not match the recorded"
        f" {meta['fingerprint']}")
  return ardm, meta
