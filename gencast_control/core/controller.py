"""The learned controller u_psi (Srivastava et al. 2025, arXiv 2510.06637).

At sub-step s of forecast step n the controller maps

    (z_hat_s, sigma_hat_s, D_theta(z_hat_s), x_{n-h+1..n}, {(y_j, M_j, Delta_j)}_{j=n+1}^{n+H})

to an additive control u_s in the sampler's variable. It has two parts:

* the encoder E_psi(x_{n-h+1..n}, {M_j y_j, M_j, M_j log sigma_j}_j) -> c_n,
  a conv net over the conditioning and the lifted observations M_j y_j, masks
  M_j and log error stds (normalised units) of every frame of the lookahead
  horizon H (FiLM on the offsets Delta_j / H). None of it depends on the
  sub-step, so it runs once per forecast step;
* the head h_psi(c_n, z_hat_s, x_hat_s, {d_j, g_j d_j}_j; sigma_hat_s) -> u_s,
  a small conv net with FiLM on the noise level, run at every sub-step;
  x_hat_s is the denoised estimate of x_{n+1}, d_j = M_j (y_j - x_hat_s) its
  innovations and g_j = b^2 / (b^2 + sigma_j^2) a Kalman-like gain of each
  observation, with a learnt background std b (in normalised units), so an
  observation's weight falls with its error std sigma_j.

The head's output layer is zero-initialised, so a freshly initialised
controller is exactly the pretrained sampler (u = 0).

With `spread_gate` the controller is ensemble-aware: the members of an
ensemble are stepped together and each sees the spread s_n (standard
deviation over the members) of their latest state x_n, in normalised units;
the control is gated pointwise,

    u_s <- 2 sigmoid(g_psi(log(s_n + eps), log(<s_n> + eps))) * u_s,

with g_psi a zero-initialised convolution, one filter per channel over that
channel's two features (<s_n>: the spatial mean), so a gate added to a
trained controller starts as that controller (gate 1). The
family contains the Kalman-like gain 2 s^2 / (s^2 + b^2) = 2 sigmoid(2 log s
- 2 log b): a confident ensemble (small spread, e.g. started from the truth)
can learn to leave a good background alone, where a member steered alone
cannot tell a good background from a poor one (docs/method.md). It needs an
ensemble of at least two members.

The gate scales all of u alike, whatever the observations' error stds, and
the head's gain uses one learnt b for every background. With
`ensemble_gain` the head also sees the innovations weighted by the gain of
the ensemble's own background std,

    g^e_j d_j,   g^e_j = s_n^2 / (s_n^2 + sigma_j^2)

(pointwise; the Kalman gain of a scalar background error s_n), which falls
where the ensemble is confident *and* the observation noisy: a product of a
spread gate and a sigma-dependent head cannot represent it. Its weights in
the head's input convolution start at zero, so a controller fine-tuned into
it starts as that controller (`extend_params`).

With `zero_without_observations` the control is the difference

    u_s = h_psi(c_n, inputs_s) - h_psi(c_n^0, inputs_s^0),

c_n^0 and inputs_s^0 the same with the preview emptied (no values, masks or
innovations): u = 0 exactly wherever nothing is observed in the horizon, and
what the controller does is a response to the observations only. (Measured
on KS from the true state, a controller without it moved the forecast as far
from the truth with every observation hidden as with them: docs/method.md.)

With `perturbed_observations` each member m of an ensemble sees its own copy
of every observation, y_j + eps_{m,j} with eps_{m,j} ~ N(0, sigma_j^2) drawn
once per member and observation time (the perturbed observations of the
stochastic EnKF, Burgers et al. 1998): members started together, e.g. on the
truth, no longer agree wherever the observations are noisy, so the spread can
account for the observation error (`gencast_control.core.assimilation`). In
training, the spin-up and the window of an example are separate rollouts
with their own keys, so a frame previewed in both is perturbed afresh.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.ardm import ControllerInputs, FrozenARDM
from gencast_control.core.networks import (ConvNet, ConvNetConfig,
                                           fourier_embedding, pad_spatial)
from gencast_control.core.observations import Preview


# Initial background std b of the head's gain, in normalised units (about the
# error of an assimilating ensemble mean: a quarter of the field's std).
INITIAL_BACKGROUND_STD = 0.25


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
  """Architecture of u_psi.

  Attributes:
    horizon: lookahead horizon H (observation frames n+1..n+H in the preview);
      at least the longest gap between observation times it must bridge.
    network: the per-step encoder E_psi.
    encoding_channels: channels of the encoding c_n.
    error_std_channel: give the encoder each observation's log error std and
      the head its gain-weighted innovations, so one controller serves
      networks of mixed quality (False: controllers saved before it existed,
      which see values, masks and innovations only).
    head: the per-sub-step head h_psi (keep it small: it runs S times per
      forecast step).
    head_pointwise_input: the head mixes its many input channels with a
      1 x 1 convolution before its spatial block (on a 32 x 64 grid with
      46 inputs it ran 3.6x faster; False: controllers saved before it
      existed, whose head's input convolution has the head's kernel size).
    zero_without_observations: u is the head's output minus its output
      with the preview emptied (module docstring), so no observation means
      no control. The parameters are the same as without it (a controller
      can be fine-tuned into it); the encoder and the head run twice.
    spread_gate: gate u by the ensemble's spread (module docstring); its
      parameters are added to the others, so a controller without it can be
      fine-tuned into it (`extend_params`).
    perturbed_observations: each member sees its own perturbed copy of the
      observations (module docstring); no parameters of its own.
    ensemble_gain: the head also sees the innovations weighted by the
      ensemble-spread gain (module docstring); needs the ensemble's spread,
      like `spread_gate`.
  """
  horizon: int = 2
  network: ConvNetConfig = ConvNetConfig(
      width=24, num_blocks=2, kernel_size=5, dilations=(1, 4),
      embedding_size=32)
  encoding_channels: int = 16
  error_std_channel: bool = True
  head: ConvNetConfig = ConvNetConfig(
      width=16, num_blocks=1, kernel_size=3, dilations=(1,),
      embedding_size=16)
  head_pointwise_input: bool = False
  zero_without_observations: bool = False
  spread_gate: bool = False
  perturbed_observations: bool = False
  ensemble_gain: bool = False

  def __post_init__(self):
    if self.horizon < 1:
      raise ValueError(f"controller horizon must be >= 1, got {self.horizon}")
    if self.encoding_channels < 1:
      raise ValueError("controller encoding_channels must be >= 1, got"
                       f" {self.encoding_channels}")


def _frames_to_channels(x: jax.Array) -> jax.Array:
  """[H, *spatial, C] -> [*spatial, H*C]."""
  x = jnp.moveaxis(x, 0, -2)
  return x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))


def step_features(conditioning: jax.Array, preview: Preview,
                  error_std_channel: bool = True) -> jax.Array:
  """The encoder's grid inputs [*spatial, F]: conditioning, M_j y_j, M_j and
  M_j log sigma_j."""
  features = [conditioning, _frames_to_channels(preview.values),
              _frames_to_channels(preview.mask)]
  if error_std_channel:
    observed = preview.mask > 0
    log_std = jnp.log(jnp.where(observed, preview.error_std, 1.0))
    features.append(_frames_to_channels(jnp.where(observed, log_std, 0.0)))
  return jnp.concatenate(features, axis=-1)


def empty_preview(preview: Preview) -> Preview:
  """The preview with nothing observed (values 0, masks 0, error stds 1)."""
  return preview._replace(values=jnp.zeros_like(preview.values),
                          mask=jnp.zeros_like(preview.mask),
                          error_std=jnp.ones_like(preview.error_std))


# eps of the spread gate's log(s + eps), in normalised units.
SPREAD_FLOOR = 1e-3


def spread_features(spread: jax.Array) -> jax.Array:
  """The spread gate's inputs [*spatial, 2C]: per channel c, the pair
  log(s_c + eps), log(<s_c> + eps), <s_c> the spatial mean of s_c. Where s
  is not finite (a channel the model leaves undefined at some points or
  times, e.g. GenCast's sea-surface temperature over land, its
  precipitation at the input times) it reads as 1, the field's own std (no
  information), and <s_c> is the mean over the finite entries (1 if none)."""
  axes = tuple(range(spread.ndim - 1))
  finite = jnp.isfinite(spread)
  count = jnp.sum(finite, axis=axes)
  total = jnp.sum(jnp.where(finite, spread, 0.0), axis=axes)
  mean = jnp.where(count > 0, total / jnp.maximum(count, 1), 1.0)
  pair = jnp.stack([jnp.where(finite, spread, 1.0),
                    jnp.broadcast_to(mean, spread.shape)], axis=-1)
  return jnp.log(pair.reshape(spread.shape[:-1] + (-1,)) + SPREAD_FLOOR)


def kalman_gain(background_std: jax.Array,
                error_std: jax.Array) -> jax.Array:
  """b^2 / (b^2 + sigma^2): the weight of an observation of error std sigma
  on a background of error std b (scalar, per point)."""
  return background_std**2 / (background_std**2 + error_std**2)


def substep_features(encoding: jax.Array, inputs: ControllerInputs,
                     background_std: jax.Array | None = None,
                     ensemble_gain: bool = False) -> jax.Array:
  """The head's grid inputs: c_n, z_hat, x_hat, the innovations d_j and,
  given a background std b, the gain-weighted innovations g_j d_j; with
  ensemble_gain, last, the innovations weighted by the gain of the
  ensemble's spread s_n (0 where s_n is not finite: no information)."""
  preview = inputs.preview
  innovation = preview.mask * (preview.values - inputs.denoised[None])
  features = [encoding, inputs.state, inputs.denoised,
              _frames_to_channels(innovation)]
  if background_std is not None:
    gain = kalman_gain(background_std, preview.error_std)
    features.append(_frames_to_channels(gain * innovation))
  if ensemble_gain:  # error_std is 0 where nothing is observed
    spread = _require_spread(preview.ensemble_spread)
    spread = jnp.where(jnp.isfinite(spread), spread, 0.0)
    error_std = jnp.where(preview.mask > 0, preview.error_std, 1.0)
    gain = kalman_gain(spread[None], error_std)
    features.append(_frames_to_channels(gain * innovation))
  return jnp.concatenate(features, axis=-1)


def _require_spread(spread: jax.Array | None) -> jax.Array:
  if spread is None:
    raise ValueError(
        "this controller is ensemble-aware (spread_gate or ensemble_gain) and"
        " needs the ensemble's spread: run it in an ensemble of at least 2"
        " members (assimilation.ensemble_rollout); an adapter that converts"
        " the preview must keep it (Preview.in_units)")
  return spread


class Controller(hk.Module):
  """u_psi on a channel-last grid; output has the shape of inputs.state."""

  def __init__(self, config: ControllerConfig, periodic: Sequence[bool],
               name: str = "controller"):
    super().__init__(name=name)
    self._config = config
    self._periodic = tuple(periodic)

  def encode(self, conditioning: jax.Array, preview: Preview) -> jax.Array:
    """c_n [*spatial, encoding_channels], once per forecast step; with
    zero_without_observations, [2, *spatial, encoding_channels]: c_n and
    c_n^0 of the emptied preview."""
    horizon = self._config.horizon
    if preview.values.shape[0] != horizon:
      raise ValueError(f"preview has {preview.values.shape[0]} frames,"
                       f" the controller expects horizon {horizon}")
    net = ConvNet(self._config.network, self._config.encoding_channels,
                  self._periodic, name="net")
    encode = lambda p: net(step_features(conditioning, p,
                                         self._config.error_std_channel),
                           preview.offsets / horizon)
    if not self._config.zero_without_observations:
      return encode(preview)
    return jnp.stack([encode(preview), encode(empty_preview(preview))])

  def head(self, encoding: jax.Array, inputs: ControllerInputs) -> jax.Array:
    """u_s from c_n and the sub-step's inputs (FiLM on log sigma_hat)."""
    size = self._config.head.embedding_size
    net = ConvNet(self._config.head, inputs.state.shape[-1], self._periodic,
                  zero_output=True,
                  pointwise_input=self._config.head_pointwise_input,
                  name="head")
    background_std = None
    if self._config.error_std_channel:
      background_std = jnp.exp(hk.get_parameter(
          "log_background_std", (), init=hk.initializers.Constant(
              np.log(INITIAL_BACKGROUND_STD))))
    noise_level = fourier_embedding(jnp.log(inputs.sigma) / 4.0, size)
    head = lambda c, i: net(
        substep_features(c, i, background_std, self._config.ensemble_gain),
        noise_level)
    if not self._config.zero_without_observations:
      u = head(encoding, inputs)
    else:
      empty = inputs._replace(preview=empty_preview(inputs.preview))
      u = head(encoding[0], inputs) - head(encoding[1], empty)
    if self._config.spread_gate:
      u = u * self.spread_gate(inputs.preview.ensemble_spread)
    return u

  def spread_gate(self, spread: jax.Array | None) -> jax.Array:
    """2 sigmoid(g_psi(log spread features)), 1 at initialisation."""
    spread = _require_spread(spread)
    kernel = self._config.network.kernel_size
    # One small filter per channel over its own two features (grouped).
    conv = hk.ConvND(len(self._periodic), spread.shape[-1], kernel,
                     padding="VALID", w_init=jnp.zeros,
                     feature_group_count=spread.shape[-1], name="spread_gate")
    features = pad_spatial(spread_features(spread), (kernel - 1) // 2,
                           self._periodic)
    return 2.0 * jax.nn.sigmoid(conv(features))

  def __call__(self, inputs: ControllerInputs) -> jax.Array:
    return self.head(self.encode(inputs.conditioning, inputs.preview), inputs)


def make_controller(config: ControllerConfig,
                    periodic: Sequence[bool]) -> hk.Transformed:
  """A haiku transform of u_psi: apply(params, inputs) -> u."""
  return hk.without_apply_rng(
      hk.transform(lambda inputs: Controller(config, periodic)(inputs)))


def _controller_parts(config: ControllerConfig, periodic: Sequence[bool]):
  """(encode_apply, head_apply) sharing make_controller's parameters."""

  def parts():
    controller = Controller(config, periodic)
    return controller, (controller.encode, controller.head)

  transformed = hk.without_apply_rng(hk.multi_transform(parts))
  return transformed.apply


def init_controller(config: ControllerConfig, ardm: FrozenARDM,
                    key: jax.Array) -> hk.Params:
  """Initial parameters for u_psi on `ardm`'s grid (u = 0 by construction)."""
  spatial = ardm.state_shape[:-1]
  zeros = jnp.zeros(ardm.state_shape, jnp.float32)
  frames = jnp.zeros((config.horizon,) + tuple(ardm.state_shape), jnp.float32)
  dummy = ControllerInputs(
      state=zeros, denoised=zeros, sigma=jnp.ones(()),
      conditioning=jnp.zeros(tuple(spatial) + (ardm.conditioning_channels,)),
      preview=Preview(frames, frames,
                      jnp.arange(1, config.horizon + 1, dtype=jnp.float32),
                      frames, zeros if uses_ensemble_spread(config) else None))
  # One compiled program: op-by-op (eager) init compiles every op alone.
  return jax.jit(make_controller(config, ardm.periodic).init)(key, dummy)


@dataclasses.dataclass(frozen=True, eq=False)
class BoundController:
  """u_psi with its parameters bound: the ARDM's `controller` argument.

  Calling it computes u from ControllerInputs (encoder and head); an adapter
  that runs many sub-steps per forecast step calls `encode` once and `head`
  at every sub-step instead, with the same result.
  """
  config: ControllerConfig
  periodic: tuple[bool, ...]
  params: hk.Params

  def __post_init__(self):
    encode, head = _controller_parts(self.config, self.periodic)
    object.__setattr__(self, "_encode", encode)
    object.__setattr__(self, "_head", head)

  def encode(self, conditioning: jax.Array, preview: Preview) -> jax.Array:
    return self._encode(self.params, conditioning, preview)

  def head(self, encoding: jax.Array, inputs: ControllerInputs) -> jax.Array:
    return self._head(self.params, encoding, inputs)

  def __call__(self, inputs: ControllerInputs) -> jax.Array:
    return self.head(self.encode(inputs.conditioning, inputs.preview), inputs)


def bind_controller(config: ControllerConfig, periodic: Sequence[bool],
                    params: hk.Params) -> BoundController:
  """u_psi with its parameters bound, as the ARDM's `controller` argument."""
  return BoundController(config, tuple(periodic), params)


def _config_flag(controller, name: str) -> bool:
  """A ControllerConfig flag of a bound controller or of a ControllerConfig
  (False for None or a controller without a config, e.g. one of your own)."""
  config = (controller if isinstance(controller, ControllerConfig)
            else getattr(controller, "config", None))
  return bool(getattr(config, name, False))


def uses_ensemble_spread(controller) -> bool:
  """True for a controller (or ControllerConfig) that needs the ensemble's
  spread (spread_gate, ensemble_gain): its members must be stepped
  together."""
  return (_config_flag(controller, "spread_gate")
          or _config_flag(controller, "ensemble_gain"))


def perturbs_observations(controller) -> bool:
  """True for a controller whose members see perturbed observations
  (`ControllerConfig.perturbed_observations`)."""
  return _config_flag(controller, "perturbed_observations")


def extend_params(config: ControllerConfig, ardm: FrozenARDM,
                  params: hk.Params, key: jax.Array) -> hk.Params:
  """`params` of a controller completed to `config`'s architecture: the
  parameters `config` adds (the spread gate) at their initial values, and
  zero weights for the head inputs it appends (ensemble_gain's H x C
  channels, last in the head's input convolution), which leave u
  unchanged; every other parameter must be in `params` with its shape
  (ValueError otherwise)."""
  fresh = init_controller(config, ardm, key)
  if config.ensemble_gain:
    params = _zero_ensemble_gain_inputs(
        params, fresh, config.horizon * ardm.state_shape[-1])
  extended = {}
  for module, leaves in fresh.items():
    if module not in params:
      if not module.endswith("/spread_gate"):
        raise ValueError(f"the warm start lacks the parameters of {module}")
      extended[module] = leaves
      continue
    if set(params[module]) != set(leaves):
      raise ValueError(f"the warm start's {module} has parameters"
                       f" {sorted(params[module])}, this controller's"
                       f" {sorted(leaves)}")
    for name, leaf in leaves.items():
      given = params[module].get(name)
      if given is None or np.shape(given) != np.shape(leaf):
        raise ValueError(
            f"the warm start's {module}/{name} has shape"
            f" {None if given is None else np.shape(given)}, this"
            f" controller's {np.shape(leaf)}")
    extended[module] = dict(params[module])
  extra = sorted(set(params) - set(fresh))
  if extra:
    raise ValueError(f"the warm start has parameters this controller lacks:"
                     f" {', '.join(extra)}")
  return extended


# The head's input convolution (module name), whose last input channels
# ensemble_gain adds.
HEAD_INPUT = "controller/~head/head/~_conv/encode"


def _zero_ensemble_gain_inputs(params: hk.Params, fresh: hk.Params,
                               added: int) -> hk.Params:
  """`params` with zero weights for the `added` head inputs that
  ensemble_gain appends, where `params` lacks them (a warm start without
  it); unchanged otherwise."""
  if HEAD_INPUT not in fresh or HEAD_INPUT not in params:
    return params
  given, leaf = np.asarray(params[HEAD_INPUT]["w"]), fresh[HEAD_INPUT]["w"]
  if given.shape[-2] + added != leaf.shape[-2]:
    return params
  pad = [(0, 0)] * given.ndim
  pad[-2] = (0, added)
  return dict(params, **{HEAD_INPUT: dict(params[HEAD_INPUT],
                                          w=np.pad(given, pad))})


def load_warm_start(path, config: ControllerConfig,
                    ardm: FrozenARDM) -> hk.Params:
  """The parameters of a warm start (`controller_training.warm_start`) for
  `config`: a checkpoint for `ardm` of the same architecture up to the
  gates, `perturbed_observations` and `ensemble_gain`, which change what u
  is made of or sees, not the parameters it shares (the spread gate's own
  start and ensemble_gain's zero weights, where u is unchanged:
  `extend_params`)."""
  warm_config, params, _ = load_controller(path, ardm)
  # Fields that may differ: set equal on both sides before comparing.
  free_to_differ = dict(zero_without_observations=False, spread_gate=False,
                        perturbed_observations=False, ensemble_gain=False)
  if (dataclasses.replace(warm_config, **free_to_differ)
      != dataclasses.replace(config, **free_to_differ)):
    raise ValueError(f"warm_start {path} has another controller architecture"
                     " than the config's `controller` section")
  return extend_params(config, ardm, params, jax.random.PRNGKey(0))


def save_controller(path, params: hk.Params, config: ControllerConfig,
                    ardm: FrozenARDM, metadata: dict | None = None):
  """Saves u_psi with its config and the fingerprint of the ARDM it steers."""
  from gencast_control.core import checkpoint, config as config_lib
  meta = dict(metadata or {}, kind="controller",
              config=config_lib.to_dict(config),
              ardm_fingerprint=ardm.fingerprint,
              state_shape=list(ardm.state_shape))
  return checkpoint.save_checkpoint(path, params, meta)


def config_from_metadata(path, meta: dict) -> ControllerConfig:
  """The ControllerConfig of a checkpoint's metadata.

  Checkpoints written before `error_std_channel` existed lack the field; their
  encoder had no error-std input, so it reads as False.
  """
  from gencast_control.core import checkpoint, config as config_lib
  try:
    fields = dict(meta["config"])
    fields.setdefault("error_std_channel", False)
    return config_lib.from_dict(ControllerConfig, fields)
  except (KeyError, TypeError, ValueError) as e:
    raise checkpoint.CheckpointError(
        f"controller checkpoint {path} has invalid metadata: {e}") from e


def load_controller(path, ardm: FrozenARDM):
  """Loads (config, params, metadata) and checks it was trained for `ardm`."""
  from gencast_control.core import checkpoint
  params, meta = checkpoint.load_checkpoint(path, expected_kind="controller")
  if meta.get("ardm_fingerprint") != ardm.fingerprint:
    raise checkpoint.CheckpointError(
        f"controller {path} was trained for ARDM {meta.get('ardm_fingerprint')}"
        f" but is being used with ARDM {ardm.fingerprint} (state shape"
        f" {ardm.state_shape}); retrain it for this model")
  config = config_from_metadata(path, meta)
  template = jax.eval_shape(
      lambda: init_controller(config, ardm, jax.random.PRNGKey(0)))
  checkpoint.check_params(path, params, template)
  return config, params, meta
