"""The frozen autoregressive diffusion model (ARDM) protocol.

An ARDM samples x_{n+1} ~ p_theta(x_{n+1} | x_n, ..., x_{n-h+1}) with a diffusion
sampler of S sub-steps; theta is frozen. Adapters (adapters/) wrap a model stack
into this protocol; the controller, its training and assimilation only talk to
it. States are channel-last arrays [*spatial, C] in physical units; each adapter
owns its normalisation and hands the controller normalised inputs.

A model that needs more than the past states (GenCast: forcings such as the
top-of-atmosphere radiation at the input and target times) takes them as the
per-step `context`: a pytree whose leaves have a leading time axis over the
h history times and the predicted time, [h + 1, ...]. Rollouts take the
context of a whole trajectory, leaves [h + T, ...] over times -h+1..T, and
hand step n its slice n..n+h. Models without context ignore it (None).

Implementers: adapters/grid.py (the project's grid ARDM of the PDE systems)
and adapters/gencast_ardm.py (DeepMind's GenCast).
"""

from __future__ import annotations

import abc
from typing import Any, Callable, NamedTuple

import jax

from gencast_control.core.observations import Preview


class ControllerInputs(NamedTuple):
  """What the controller sees at one sub-step, all normalised by the adapter.

  state:        [*spatial, C] the sub-step state z_hat (the sampler's variable).
  denoised:     [*spatial, C] the denoised estimate of x_{n+1}, normalised.
  sigma:        [] the noise level sigma_hat of the sub-step.
  conditioning: [*spatial, C_cond] the normalised conditioning (past states).
  preview:      observations of the lookahead horizon, normalised like states.
  """
  state: jax.Array
  denoised: jax.Array
  sigma: jax.Array
  conditioning: jax.Array
  preview: Preview


# u_psi(inputs) -> control in the sampler's variable, shape of inputs.state.
ControllerFn = Callable[[ControllerInputs], jax.Array]


class FrozenARDM(abc.ABC):
  """A pretrained ARDM whose sampler sub-steps accept an additive control."""

  @property
  @abc.abstractmethod
  def state_shape(self) -> tuple[int, ...]:
    """Shape [*spatial, C] of one state."""

  @property
  @abc.abstractmethod
  def history_length(self) -> int:
    """Number h of past states the model conditions on."""

  @property
  @abc.abstractmethod
  def periodic(self) -> tuple[bool, ...]:
    """Periodicity of each spatial axis (for the controller's padding)."""

  @property
  @abc.abstractmethod
  def fingerprint(self) -> str:
    """A stable hash of the architecture and the frozen parameters."""

  @property
  def conditioning_channels(self) -> int:
    """Channels C_cond of ControllerInputs.conditioning (default h * C)."""
    return self.history_length * self.state_shape[-1]

  @abc.abstractmethod
  def step(
      self,
      history: jax.Array,
      key: jax.Array,
      preview: Preview | None = None,
      controller: ControllerFn | None = None,
      remat: bool = False,
      context: Any = None,
  ) -> tuple[jax.Array, jax.Array]:
    """Samples the next state.

    Args:
      history: [h, *spatial, C] the last h states, oldest first.
      key: PRNG key of this forecast step.
      preview: observations n+1..n+H in physical units (needed with controller).
      controller: u_psi, or None for the pretrained sampler.
      remat: rematerialise sampler sub-steps in the backward pass.
      context: per-step inputs other than states, leaves [h + 1, ...] (module
        docstring); None for models without any.

    Returns:
      (x_{n+1} [*spatial, C], control energy: per sub-step [S], or a scalar,
      with e_s = mean(d_s^2) / (2 sigma_hat_s^2) of the control's displacement
      d_s (gencast_control.core.samplers)).
    """
