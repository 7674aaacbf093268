"""Observation streams and the controller's preview buffer.

Observations are lifted to the model grid and stored densely in time: over a
trajectory with times t = 0..T,

    values[t] = M_t * y_t      (zeros where unobserved)
    mask[t]   = M_t in {0, 1}  (all zeros at a time without observations)

so every sparsity pattern and every gap in time is a valid input. The
observation-error standard deviation sigma_obs is one number, one per
channel, or one per entry (heteroscedastic: a network of mixed quality, each
station with its own error). The preview buffer of forecast step n
(Srivastava et al. 2025, arXiv 2510.06637, "active observation selector")
holds the frames j = n+1 .. n+H of the lookahead horizon H, each tagged with
its offset Delta_j = j - n and with the error std of each observation, so the
controller can weigh good observations above poor ones.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Preview(NamedTuple):
  """Observations within the lookahead horizon of one forecast step.

  values:    [H, *spatial, C] observed values (zeros where unobserved).
  mask:      [H, *spatial, C] 1 where observed.
  offsets:   [H] time offsets Delta = j - n of the frames (1..H).
  error_std: [H, *spatial, C] sigma_obs of each observation (0 where
             unobserved).
  ensemble_spread: [*spatial, C] the spread (standard deviation over the
             members) of the ensemble's latest state x_n, for a controller
             that sees it (`ControllerConfig.spread_gate`, `ensemble_gain`);
             None otherwise.
  """
  values: jax.Array
  mask: jax.Array
  offsets: jax.Array
  error_std: jax.Array
  ensemble_spread: jax.Array | None = None

  def in_units(self, to_units, std) -> "Preview":
    """The preview in another unit system: values through `to_units` (zeros
    where unobserved), error stds and the ensemble spread divided by `std`
    (an adapter's normalisation, or its inverse)."""
    spread = self.ensemble_spread
    return self._replace(
        values=jnp.where(self.mask > 0, to_units(self.values), 0.0),
        error_std=self.error_std / std,
        ensemble_spread=None if spread is None else spread / std)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Observations:
  """A dense-in-time observation stream on the model grid.

  values:    [T+1, *spatial, C]; zeros where unobserved.
  mask:      [T+1, *spatial, C]; 1.0 where observed, else 0.0.
  noise_std: observation-error standard deviation sigma_obs: a scalar, [C],
    or one per entry [T+1, *spatial, C] (heteroscedastic).
  """
  values: jax.Array
  mask: jax.Array
  noise_std: jax.Array

  @classmethod
  def from_arrays(cls, values, mask=None, noise_std=1.0) -> "Observations":
    """Validates and builds a stream; NaN values are treated as unobserved.

    Args:
      values: [T+1, *spatial, C] observed values; NaN marks a missing value.
      mask: optional [T+1, *spatial, C] {0, 1} mask; default: finite values.
      noise_std: observation-error standard deviation: a positive scalar,
        [C], or [T+1, *spatial, C] (positive where observed; entries that
        are not observed are ignored).
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim < 3:
      raise ValueError(
          "observation values must have shape [time, *spatial, channel], got"
          f" shape {values.shape}")
    if np.isinf(values).any():
      raise ValueError(
          f"observation values contain {int(np.isinf(values).sum())} infinite"
          " entries; use NaN (or mask=0) to mark missing observations")
    finite = np.isfinite(values)
    if mask is None:
      mask = finite
    else:
      mask = np.asarray(mask)
      if mask.shape != values.shape:
        raise ValueError(
            f"observation mask shape {mask.shape} does not match values shape"
            f" {values.shape}")
      if not np.isin(mask, (0, 1)).all():
        raise ValueError("observation mask must contain only 0 and 1")
      mask = mask.astype(bool) & finite  # NaN observations are masked out.
    noise_std = np.asarray(noise_std, dtype=np.float32)
    if noise_std.shape == values.shape:
      observed_std = noise_std[mask]
      noise_std = np.where(mask, noise_std, 1.0).astype(np.float32)
    elif noise_std.ndim > 1 or (noise_std.ndim == 1
                                and noise_std.shape[0] != values.shape[-1]):
      raise ValueError(
          f"noise_std must be a scalar, have one entry per channel"
          f" ({values.shape[-1]}) or one per observation {values.shape}, got"
          f" shape {noise_std.shape}")
    else:
      observed_std = noise_std
    if not (np.isfinite(observed_std).all() and (observed_std > 0).all()):
      bad = observed_std[~(np.isfinite(observed_std) & (observed_std > 0))]
      raise ValueError(
          f"noise_std must be positive and finite, got {bad.ravel()[:5]}")
    mask = mask.astype(np.float32)
    return cls(values=jnp.asarray(np.where(mask > 0, values, 0.0)),
               mask=jnp.asarray(mask), noise_std=jnp.asarray(noise_std))

  @property
  def num_times(self) -> int:
    return self.values.shape[0]

  @property
  def heteroscedastic(self) -> bool:
    """Whether sigma_obs is given per entry (else per channel or global)."""
    return jnp.ndim(self.noise_std) == self.values.ndim

  def entry_std(self, times: jax.Array | int | slice = slice(None)
                ) -> jax.Array:
    """sigma_obs of every entry at `times`, shaped like values[times]."""
    if self.heteroscedastic:
      return self.noise_std[times]
    return jnp.broadcast_to(self.noise_std, self.values[times].shape)

  def check_compatible(self, state_shape: tuple[int, ...],
                       num_steps: int) -> None:
    """Raises ValueError unless the stream fits a rollout of `num_steps`."""
    if tuple(self.values.shape[1:]) != tuple(state_shape):
      raise ValueError(
          f"observations are on a grid of shape {tuple(self.values.shape[1:])}"
          f" but the model state has shape {tuple(state_shape)}")
    if self.num_times < num_steps + 1:
      raise ValueError(
          f"observations cover {self.num_times} times (0..{self.num_times-1})"
          f" but the rollout needs times 0..{num_steps}")

  def preview(self, step: jax.Array | int, horizon: int) -> Preview:
    """The preview buffer of forecast step n = `step`: frames n+1 .. n+H.

    Frames past the end of the stream are empty (mask 0). Works under jit with
    a traced `step`.
    """
    pad = [(0, horizon)] + [(0, 0)] * (self.values.ndim - 1)
    start = (step + 1,) + (0,) * (self.values.ndim - 1)
    size = (horizon,) + tuple(self.values.shape[1:])
    window = lambda a: jax.lax.dynamic_slice(jnp.pad(a, pad), start, size)
    mask = window(self.mask)
    return Preview(
        values=window(self.values), mask=mask,
        offsets=jnp.arange(1, horizon + 1, dtype=jnp.float32),
        error_std=mask * (window(self.noise_std) if self.heteroscedastic
                          else jnp.broadcast_to(self.noise_std, size)))

  def misfit(self, states: jax.Array, times: jax.Array | slice) -> jax.Array:
    """Masked observation misfit sum_j ||M_j (x_j - y_j)||^2 / sigma_obs^2.

    Normalised by the number of observed entries (1 if none), so the value is
    the mean squared standardised innovation.

    Args:
      states: [K, *spatial, C] model states at the observation times `times`.
      times: indices into the stream (length K) or a slice.
    """
    values, mask = self.values[times], self.mask[times]
    residual = mask * (states - values) / self.entry_std(times)
    return jnp.sum(residual**2) / jnp.maximum(jnp.sum(mask), 1.0)
