"""A frozen ARDM of physical states seen in standardised units.

GenCast samples physical states s (it normalises inside); the project's
experiments (splits, regimes, pilot, controller training) hold states
standardised per channel, x = (s - mu) / sigma with the training period's
mean mu_c and std sigma_c. `StandardisedARDM` puts one in the other's units:
its step maps the history to s = mu + sigma x, the previewed observations and
their errors likewise (y_s = mu + sigma y, sigma_obs,s = sigma sigma_obs), a
guidance rule's view of the denoiser (its estimate, its inverse and its
scale), and the sampled state back to x. The sampler, the controller inside
it and the noise are the inner model's, unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax.numpy as jnp
import numpy as np

from gencast_control.core.ardm import FrozenARDM, GuidanceFn, GuidanceInputs
from gencast_control.core.observations import Preview


class StandardisedARDM(FrozenARDM):
  """`inner` (physical states) behind standardised states x = (s - mean) / std.

  Args:
    inner: the frozen model, its states in physical units.
    mean, std: [C] per-channel mean and std (std > 0), in the order of the
      inner model's channels.
    layout: the standardised states' layout (e.g. the splits'); default
      the inner model's.
  """

  def __init__(self, inner: FrozenARDM, mean, std, layout=None):
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    channels = inner.state_shape[-1]
    if mean.shape != (channels,) or std.shape != (channels,):
      raise ValueError(f"mean and std need one value per channel ({channels}),"
                       f" got shapes {mean.shape} and {std.shape}")
    if not (np.all(np.isfinite(mean)) and np.all(std > 0)):
      raise ValueError("mean must be finite and std positive per channel")
    self.inner, self.mean, self.std = inner, mean, std
    self._layout = layout

  def to_physical(self, x):
    return self.mean + self.std * x

  def to_standardised(self, s):
    return (s - self.mean) / self.std

  @property
  def state_shape(self):
    return self.inner.state_shape

  @property
  def history_length(self):
    return self.inner.history_length

  @property
  def periodic(self):
    return self.inner.periodic

  @property
  def conditioning_channels(self):
    return self.inner.conditioning_channels

  @property
  def layout(self):
    return self._layout if self._layout is not None else self.inner.layout

  @property
  def fingerprint(self) -> str:
    digest = hashlib.sha256(self.mean.tobytes() + self.std.tobytes())
    return f"{self.inner.fingerprint}-standardised-{digest.hexdigest()[:8]}"

  def context_for(self, times: np.ndarray) -> Any:
    return self.inner.context_for(times)

  def check_history(self, history) -> None:
    self.inner.check_history(self.to_physical(jnp.asarray(history)))

  def _preview(self, preview: Preview | None) -> Preview | None:
    if preview is None:
      return None
    return preview.in_units(self.to_physical, 1.0 / self.std)

  def _guidance(self, rule: GuidanceFn | None) -> GuidanceFn | None:
    if rule is None:
      return None

    def physical_rule(g: GuidanceInputs):
      return rule(g._replace(
          estimate=lambda z: self.to_standardised(g.estimate(z)),
          to_variable=lambda x: g.to_variable(self.to_physical(x)),
          scale=g.scale / self.std))

    return physical_rule

  def step(self, history, key, preview=None, controller=None, remat=False,
           context=None, guidance=None):
    x_next, energy = self.inner.step(
        self.to_physical(history), key, self._preview(preview), controller,
        remat, context, self._guidance(guidance))
    return self.to_standardised(x_next), energy


def unwrap(ardm: FrozenARDM) -> FrozenARDM:
  """The physical model inside a StandardisedARDM (else the model itself)."""
  return ardm.inner if isinstance(ardm, StandardisedARDM) else ardm

