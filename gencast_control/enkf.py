"""Stochastic ensemble Kalman filter with the true KS solver as the model.

The classical DA baseline (Evensen 1994, "Sequential data assimilation with a
nonlinear quasi-geostrophic model using Monte Carlo methods", JGR 99(C5)),
with perturbed observations (Burgers, van Leeuwen & Evensen 1998, MWR 126),
Gaspari-Cohn covariance localisation (Gaspari & Cohn 1999, QJRMS 125, eq. 4.10)
and multiplicative inflation (Anderson & Anderson 1999).

Forecast: x_i <- KS_model_step(x_i) for each member i = 1..M (one model step).
Analysis at every time with observations (mask M_t, values y_t, std sigma_o):

    x_i <- xbar + lambda (x_i - xbar)                           (inflation)
    P    = rho o (A A^T / (M - 1)),  A = [x_i - xbar]           (localisation)
    x_i <- x_i + P H^T (H P H^T + sigma_o^2 I)^{-1} (y_t + sigma_o eps_i - H x_i)

with H the selection of observed grid points. To keep fixed shapes under jit,
H is applied as the diagonal mask m: S = m m^T o P + diag(sigma_o^2 m + (1 - m))
is block diagonal between observed and unobserved points, so
P diag(m) S^{-1} (m o d_i) equals the Kalman update above exactly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.observations import Observations
from gencast_control.pdes.ks import KSConfig, ks_model_step


@dataclasses.dataclass(frozen=True)
class EnKFOptions:
  """Settings of the stochastic EnKF.

  Attributes:
    ks_config: the true KS solver (grid and model step) used as the model.
    localization_radius: Gaspari-Cohn half-width c in grid points (support 2c,
      periodic distance). Default 8 points (~6.3 length units on the 128-point,
      32 pi domain: about one KS wavelength 2 pi sqrt(2) ~ 8.9).
    inflation: multiplicative inflation lambda >= 1 of forecast anomalies.
    initial_std: std of the Gaussian perturbation of the initial members around
      x_0 (without it all members coincide and the filter never updates).
  """
  ks_config: KSConfig
  localization_radius: float = 8.0
  inflation: float = 1.05
  initial_std: float = 0.1

  def __post_init__(self):
    if not isinstance(self.ks_config, KSConfig):
      raise ValueError("enkf needs ks_config=KSConfig(...) (the true solver),"
                       f" got {type(self.ks_config).__name__}")
    if not self.localization_radius > 0:
      raise ValueError("localization_radius must be > 0, got"
                       f" {self.localization_radius}")
    if not self.inflation >= 1.0:
      raise ValueError(f"inflation must be >= 1, got {self.inflation}")
    if not self.initial_std >= 0:
      raise ValueError(f"initial_std must be >= 0, got {self.initial_std}")


def gaspari_cohn(distance, half_width):
  """Gaspari & Cohn (1999, eq. 4.10) compactly supported correlation.

  With z = |d| / c:
    1 - 5/3 z^2 + 5/8 z^3 + 1/2 z^4 - 1/4 z^5                     0 <= z <= 1
    4 - 5 z + 5/3 z^2 + 5/8 z^3 - 1/2 z^4 + 1/12 z^5 - 2/(3 z)    1 <  z <= 2
    0                                                              z > 2
  """
  z = jnp.abs(jnp.asarray(distance, jnp.float32)) / half_width
  inner = 1 - 5 / 3 * z**2 + 5 / 8 * z**3 + 0.5 * z**4 - 0.25 * z**5
  zs = jnp.maximum(z, 1.0)  # avoids 1/0 in the unused branch
  outer = (4 - 5 * zs + 5 / 3 * zs**2 + 5 / 8 * zs**3 - 0.5 * zs**4
           + zs**5 / 12 - 2 / (3 * zs))
  return jnp.where(z <= 1, inner, jnp.where(z <= 2, outer, 0.0))


def periodic_distance(num_points: int) -> np.ndarray:
  """[N, N] grid-point distances min(|i - j|, N - |i - j|) on a periodic 1-D grid."""
  i = np.arange(num_points)
  d = np.abs(i[:, None] - i[None, :])
  return np.minimum(d, num_points - d).astype(np.float32)


def enkf_analysis(members, values, mask, noise_std, localization, inflation,
                  key):
  """One stochastic-EnKF analysis of members [M, N] given y, m [N] (traceable)."""
  num_members = members.shape[0]
  mean = members.mean(0)
  members = mean + inflation * (members - mean)
  anomalies = members - mean
  cov = localization * (anomalies.T @ anomalies) / max(num_members - 1, 1)
  noise_var = noise_std**2
  innovation_cov = (mask[:, None] * cov * mask[None, :]
                    + jnp.diag(noise_var * mask + (1 - mask)))
  perturbed = values + jnp.sqrt(noise_var) * jax.random.normal(
      key, members.shape)
  innovations = mask * (perturbed - members)  # [M, N]
  weights = jnp.linalg.solve(innovation_cov, innovations.T)  # [N, M]
  return members + (cov @ (mask[:, None] * weights)).T


def enkf_rollout(history, observations: Observations, num_steps: int,
                 keys, options: EnKFOptions, localization_radius, inflation,
                 initial_std):
  """Ensemble [M, T+1, X, C] of the filter (traceable; keys [M, 2])."""
  config = options.ks_config
  x0 = history[-1]  # [X, C]
  num_points, channels = x0.shape
  n = num_points * channels
  noise_std = jnp.broadcast_to(observations.noise_std, x0.shape).reshape(n)
  # Channels share the spatial localisation; x is flattened point-major.
  distance = np.repeat(np.repeat(periodic_distance(num_points), channels, 0),
                       channels, 1)
  localization = gaspari_cohn(distance, localization_radius)
  eps = jax.vmap(lambda k: jax.random.normal(k, x0.shape))(keys)
  members = (x0[None] + initial_std * eps).reshape(-1, n)
  analysis_key = jax.random.fold_in(keys[0], 0x5EED)

  def model(x):  # [M, N] -> [M, N]; the solver acts on [..., X]
    u = jnp.moveaxis(x.reshape(-1, num_points, channels), -1, 1)
    u = ks_model_step(u, config)
    return jnp.moveaxis(u, 1, -1).reshape(-1, n)

  def cycle(x, t):
    x = model(x)
    mask = observations.mask[t].reshape(n)
    values = observations.values[t].reshape(n)
    analysed = enkf_analysis(x, values, mask, noise_std, localization,
                             inflation, jax.random.fold_in(analysis_key, t))
    x = jnp.where(jnp.any(mask > 0), analysed, x)
    return x, x

  _, states = jax.lax.scan(cycle, members, jnp.arange(1, num_steps + 1))
  states = jnp.concatenate([members[None], states], axis=0)  # [T+1, M, N]
  return jnp.moveaxis(states, 1, 0).reshape(
      (keys.shape[0], num_steps + 1, num_points, channels))


def check_enkf_inputs(history, options: EnKFOptions, ensemble_size: int):
  if history.ndim != 3:
    raise ValueError("enkf needs a 1-D history [h, X, C], got shape"
                     f" {tuple(history.shape)}")
  if history.shape[1] != options.ks_config.num_points:
    raise ValueError(
        f"history has {history.shape[1]} grid points but ks_config has"
        f" num_points={options.ks_config.num_points}")
  if ensemble_size < 2:
    raise ValueError(f"enkf needs ensemble_size >= 2, got {ensemble_size}")
