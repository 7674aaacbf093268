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
and adapters/gencast/ardm.py (DeepMind's GenCast).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.layout import StateLayout  # noqa: F401
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


class GuidanceInputs(NamedTuple):
  """What a guidance rule (DPS, SDA, RePaint: baselines/guidance.py) sees at
  one sub-step; the adapter builds it from its denoiser and normalisation.

  state:      [*spatial, C] the sub-step state z_hat (the sampler's variable).
  sigma:      [] its noise level sigma_hat.
  sigma_next: [] the noise level the sub-step moves to (0 on the last).
  denoised:   [*spatial, C] D(z_hat, sigma_hat), normalised.
  substep:    [] the sub-step index s.
  estimate:   z -> x_hat(z) [*spatial, C], the denoiser's estimate of
              x_{n+1} at sigma_hat in physical units; differentiable in z.
  to_variable: x -> the sampler variable z whose estimate is the state x
              (estimate's inverse for a noise-free z).
  move:       (z_hat, denoised) -> the uncontrolled sub-step's z at
              sigma_next (the denoised estimate when sigma_next = 0).
  scale:      [] or [C] physical size of one unit of z: x_hat changes by
              scale * dz for a change dz of the denoised estimate.
  """
  state: jax.Array
  sigma: jax.Array
  sigma_next: jax.Array
  denoised: jax.Array
  substep: jax.Array
  estimate: Callable[[jax.Array], jax.Array]
  to_variable: Callable[[jax.Array], jax.Array]
  move: Callable[[jax.Array, jax.Array], jax.Array]
  scale: jax.Array


# g(inputs) -> control in the sampler's variable, added like the
# controller's: z_next = move(z_hat, denoised) + (sigma - sigma_next) g.
GuidanceFn = Callable[[GuidanceInputs], jax.Array]


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

  @property
  def layout(self) -> "StateLayout | None":
    """The state's variables, levels, grid and time step
    (gencast_control.core.layout), or None where they come from the user's
    data (the grid models). The public API aligns every input to it."""
    return None

  def context_for(self, times: np.ndarray) -> Any:
    """The per-step context over the run's times -h+1..T (leaves
    [h + T, ...]), for models that need one (GenCast: forcings computed
    from datetimes); None for models without context."""
    del times
    return None

  def check_history(self, history: jax.Array) -> None:
    """ValueError unless an initial history [h, *spatial, C] (or one per
    member, [M, h, ...]) is usable: by default, every entry finite. Models
    whose data leave entries undefined (NaN) override it."""
    if not bool(jnp.all(jnp.isfinite(history))):
      raise ValueError("initial history contains NaN or inf")

  @abc.abstractmethod
  def step(
      self,
      history: jax.Array,
      key: jax.Array,
      preview: Preview | None = None,
      controller: ControllerFn | None = None,
      remat: bool = False,
      context: Any = None,
      guidance: GuidanceFn | None = None,
  ) -> tuple[jax.Array, jax.Array]:
    """Samples the next state.

    Args:
      history: [h, *spatial, C] the last h states, oldest first.
      key: PRNG key of this forecast step.
      preview: observations n+1..n+H in physical units (needed with controller).
      controller: u_psi, or None for the pretrained sampler.
      remat: the training mode: rematerialise sampler sub-steps in the
        backward pass (and, where it is faster to differentiate, unroll
        the sub-step loop, as `samplers.sample` does).
      context: per-step inputs other than states, leaves [h + 1, ...] (module
        docstring); None for models without any.
      guidance: a guidance rule applied at every sub-step (a baseline such
        as DPS), instead of a controller; None for none. Adapters that do
        not support rules raise ValueError.

    Returns:
      (x_{n+1} [*spatial, C], control energy: per sub-step [S], or a scalar,
      with e_s = mean(d_s^2) / (2 sigma_hat_s^2) of the control's displacement
      d_s (gencast_control.core.samplers)).
    """


def model_fingerprint(prefix: str, configs: Sequence[Any], params) -> str:
  """prefix-<16 hex>: SHA-256 of the config dataclasses (as sorted JSON) and
  of the parameters, leaf by leaf in the order of their key paths; for an
  adapter's `fingerprint`."""
  digest = hashlib.sha256()
  for config in configs:
    digest.update(json.dumps(dataclasses.asdict(config), sort_keys=True,
                             default=str).encode())
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0],
                           key=lambda item: jax.tree_util.keystr(item[0])):
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.asarray(leaf).tobytes())
  return f"{prefix}-{digest.hexdigest()[:16]}"
