"""The perfect-model LETKF: the Held-Suarez run that made the data as its model.

The reference of the sphere pilot (`evaluation.era5_pilot`): an LETKF
(`letkf.letkf_analysis`, great-circle Gaspari-Cohn localisation) that cycles
members of dinosaur's Held-Suarez model (`systems.held_suarez`) between the
analyses, from stored climatological states (a cold start).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.baselines import enkf, letkf
from gencast_control.systems.held_suarez import (STATE_FIELDS,
                                                 HeldSuarezConfig,
                                                 HeldSuarezModel, LETKFOptions,
                                                 unstack_states)


class PerfectModelFilter:
  """An LETKF whose model is the dinosaur run that made the data.

  Members are model states of the validation member (the states file of
  `held_suarez.simulate_store`): climatological states unrelated to the test
  truth, i.e. a cold start. Observations and outputs are in the pilot's
  standardised channel units, x_c = (X_c - m_c) / s_c.
  """

  def __init__(self, simulation: HeldSuarezConfig, states_file,
               channels: Sequence[str], mean: np.ndarray, std: np.ndarray,
               options: LETKFOptions = LETKFOptions()):
    self.model = HeldSuarezModel(simulation)
    self.options = options
    with np.load(states_file) as f:
      self.states = {k: f[k] for k in STATE_FIELDS}
    self.channels = tuple(channels)
    self.mean = jnp.asarray(mean, jnp.float32)
    self.std = jnp.asarray(std, jnp.float32)
    self._programs = {}

  @property
  def num_states(self) -> int:
    return self.states[STATE_FIELDS[0]].shape[0]

  def _observe(self, states):
    x = jax.vmap(lambda s: self.model.channels(s, self.channels))(states)
    return (x - self.mean) / self.std

  def initial_channels(self, index) -> np.ndarray:
    """[len(index), lat, lon, C] standardised channels of stored states."""
    return np.asarray(jax.jit(self._observe)(
        unstack_states(self.states, self.model, index)))

  def _program(self, num_steps: int, steps_per_cycle: int, capacity: int):
    model = self.model
    lat, lon = model.latitude, model.longitude

    def run(states, observations, radius_km, inflation):
      channels = len(self.channels)

      def cycle(states, t):
        states = jax.vmap(lambda s: model.advance(s, steps_per_cycle))(states)
        predicted = self._observe(states)  # [M, lat, lon, C]
        mask = observations.mask[t]
        index, used = enkf.observation_slots(mask, capacity)
        localization = letkf.column_localization(lat, lon, index, used,
                                                 channels, radius_km)
        values = observations.values[t].reshape(-1)[index]
        noise = jnp.where(used > 0,
                          observations.entry_std(t).reshape(-1)[index], 1.0)
        columns = jax.vmap(model.to_columns)(states)
        m, shape = columns.shape[0], columns.shape[1:]
        flat = columns.reshape(m, -1, shape[-1])
        analysed = letkf.letkf_analysis(
            flat, predicted.reshape(m, -1)[:, index], values, noise,
            localization, inflation)
        increment = (analysed - flat).reshape(columns.shape)
        updated = jax.vmap(model.add_increment)(states, increment)
        observed = jnp.any(mask > 0)
        states = jax.tree.map(lambda a, b: jnp.where(observed, a, b),
                              updated, states)
        return states, self._observe(states)

      first = self._observe(states)
      _, outputs = jax.lax.scan(cycle, states, jnp.arange(1, num_steps + 1))
      return jnp.moveaxis(jnp.concatenate([first[None], outputs]), 1, 0)

    return jax.jit(run)

  def program(self, index, observations, num_steps: int, step_hours: float,
              options: LETKFOptions | None = None):
    """(jitted program, its arguments) of `run`, for ahead-of-time
    compilation and timing (`evaluation.engine.run_program`)."""
    options = options or self.options
    steps = step_hours * 60 / self.model.config.dt_minutes
    if abs(steps - round(steps)) > 1e-9:
      raise ValueError(f"step_hours {step_hours} is not a multiple of the"
                       f" model step ({self.model.config.dt_minutes} min)")
    signature = (num_steps, int(round(steps)),
                 enkf.observation_capacity(observations))
    if signature not in self._programs:
      self._programs[signature] = self._program(*signature)
    return self._programs[signature], (
        unstack_states(self.states, self.model, index), observations,
        options.radius_km, options.inflation)

  def run(self, index, observations, num_steps: int, step_hours: float,
          options: LETKFOptions | None = None) -> jax.Array:
    """Ensemble [M, T+1, lat, lon, C] from the stored states `index` [M]."""
    program, arguments = self.program(index, observations, num_steps,
                                      step_hours, options)
    return program(*arguments)
