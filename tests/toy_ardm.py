"""A toy FrozenARDM that is not a grid model: weather-like names on a small
sphere, 6 h steps, an exact denoiser. Everything the project needs of a new
model is in this file (`make_model` is its CLI entry: --ardm
tests.toy_ardm:make_model).

Dynamics: x_{n+1} = m(x_n) + q eps, eps ~ N(0, I), with m(x) = a roll(x, 1,
lon) (the field drifts one cell east per step and decays by a). The sampler's
variable is z = (x_{n+1} - m(x_n)) / q ~ N(0, I), whose exact denoiser is
D(z, sigma) = z / (1 + sigma^2).
"""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.ardm import ControllerInputs, FrozenARDM
from gencast_control.core.layout import StateLayout
from gencast_control.core.samplers import SamplerConfig, sample

LAT = np.arange(-80.0, 81.0, 20.0)
LON = np.arange(0.0, 360.0, 30.0)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  decay: float = 0.95
  noise: float = 0.3
  sampler: SamplerConfig = SamplerConfig(method="euler", num_steps=3)


class ToyARDM(FrozenARDM):
  """Drifting temperature (two levels) and surface pressure on 9 x 12."""

  def __init__(self, config: ToyConfig = ToyConfig()):
    self.config = config

  @property
  def layout(self) -> StateLayout:
    return StateLayout(variables=("surface_pressure", "temperature"),
                       levels=((), (500.0, 850.0)), dims=("lat", "lon"),
                       coords=(LAT, LON), periodic=(False, True),
                       timestep=np.timedelta64(6, "h"), sphere=True)

  @property
  def state_shape(self):
    return (len(LAT), len(LON), 3)

  @property
  def history_length(self):
    return 1

  @property
  def periodic(self):
    return (False, True)

  @property
  def fingerprint(self):
    return "toy-" + hashlib.sha256(repr(self.config).encode()).hexdigest()[:16]

  def mean(self, x):
    return self.config.decay * jnp.roll(x, 1, axis=1)

  def step(self, history, key, preview=None, controller=None, remat=False,
           context=None, guidance=None):
    if guidance is not None:
      raise ValueError("the toy ARDM runs no guidance rules")
    last = history[-1]
    mean, q = self.mean(last), self.config.noise
    denoise = lambda z, sigma: z / (1.0 + sigma**2)
    control = None
    if controller is not None:
      conditioning = last
      # observations in units of the sampler variable's scale
      norm = preview.in_units(lambda x: x, 1.0)

      def control(z_hat, sigma_hat, denoised, s):
        del s
        return controller(ControllerInputs(z_hat, mean + q * denoised,
                                           sigma_hat, conditioning, norm))
    z, energy = sample(denoise, key, self.state_shape, self.config.sampler,
                       control, remat)
    return mean + q * z, energy


def make_model() -> ToyARDM:
  return ToyARDM()
