"""Stochastic ensemble Kalman filter with the true PDE solver as the model.

The classical DA baseline (Evensen 1994, "Sequential data assimilation with a
nonlinear quasi-geostrophic model using Monte Carlo methods", JGR 99(C5)),
with perturbed observations (Burgers, van Leeuwen & Evensen 1998, MWR 126),
Gaspari-Cohn covariance localisation (Gaspari & Cohn 1999, QJRMS 125, eq. 4.10)
and multiplicative inflation (Anderson & Anderson 1999).

Forecast: x_i <- model_step(x_i) for each member i = 1..M (one model step of
the solver that generated the truth: KS, or Kolmogorov flow, see `model_step`).
Analysis at every time with observations (observed entries H, values y_t,
std sigma_o):

    x_i <- xbar + lambda (x_i - xbar)                           (inflation)
    P    = rho o (A A^T / (M - 1)),  A = [x_i - xbar]           (localisation)
    x_i <- x_i + P H^T (H P H^T + sigma_o^2 I)^{-1} (y_t + sigma_o eps_i - H x_i)

rho_ab = GC(d_ab / c) with d the Euclidean distance on the periodic grid (in
grid points; 1-D or 2-D). The gain is formed in observation space: only the
rows P H^T [N, p] and H P H^T [p, p] are built, so a 64^2 grid costs
O(N p M + p^3) instead of O(N^3). To keep fixed shapes under jit, the p
slots hold the observed entries of the time (jnp.nonzero with a static size);
unused slots get weight 0, S = v v^T o H P H^T + diag(sigma_o^2 v + (1 - v))
is then block diagonal between used and unused slots, and the update equals
the Kalman update above exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.core.observations import Observations
from gencast_control.systems.kolmogorov import (KolmogorovConfig, coarsen,
                                                kolmogorov_model_step)
from gencast_control.systems.ks import KSConfig, ks_model_step

# Fields of EnKFOptions that shape the compiled program (not traced numbers).
STATIC_FIELDS = ("pde_config", "ks_config", "obs_capacity")


@dataclasses.dataclass(frozen=True)
class EnKFOptions:
  """Settings of the stochastic EnKF.

  Attributes:
    pde_config: the true solver used as the model: a KSConfig (state
      [X, C] on its grid) or a KolmogorovConfig (state [m, m, 1] on the
      output grid, m = output_resolution; see `model_step`).
    ks_config: the same as pde_config for a KSConfig (kept for
      compatibility; give one of the two).
    localization_radius: Gaspari-Cohn half-width c in grid points (support 2c,
      periodic distance). Default 8 points: ~6.3 length units on the
      128-point, 32 pi KS domain (about one KS wavelength 2 pi sqrt(2) ~ 8.9);
      half the forcing wavelength (16 points) on the 64^2 Kolmogorov grid.
    inflation: multiplicative inflation lambda >= 1 of forecast anomalies.
    initial_std: std of the Gaussian perturbation of the initial members around
      x_0 (without it all members coincide and the filter never updates).
    obs_capacity: observation slots p per analysis; 0 = every grid entry.
      `baselines.assimilate_baseline` sets it to the largest number of
      observed entries at one time.
  """
  pde_config: Any = None
  ks_config: KSConfig | None = None
  localization_radius: float = 8.0
  inflation: float = 1.05
  initial_std: float = 0.1
  obs_capacity: int = 0

  def __post_init__(self):
    if self.pde_config is None and self.ks_config is not None:
      object.__setattr__(self, "pde_config", self.ks_config)
    if not isinstance(self.pde_config, (KSConfig, KolmogorovConfig)):
      raise ValueError(
          "enkf needs the true solver: pde_config=KSConfig(...) or"
          " KolmogorovConfig(...) (or ks_config=KSConfig(...)), got"
          f" {type(self.pde_config).__name__}")
    if not self.localization_radius > 0:
      raise ValueError("localization_radius must be > 0, got"
                       f" {self.localization_radius}")
    if not self.inflation >= 1.0:
      raise ValueError(f"inflation must be >= 1, got {self.inflation}")
    if not self.initial_std >= 0:
      raise ValueError(f"initial_std must be >= 0, got {self.initial_std}")
    if int(self.obs_capacity) != self.obs_capacity or self.obs_capacity < 0:
      raise ValueError(f"obs_capacity must be an integer >= 0, got"
                       f" {self.obs_capacity}")


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


def grid_coordinates(spatial_shape: tuple[int, ...], channels: int
                     ) -> np.ndarray:
  """[N, D] integer grid coordinates of the flat state entries (point-major:
  entry e is point e // channels, all channels of a point share it)."""
  points = np.stack(np.unravel_index(np.arange(int(np.prod(spatial_shape))),
                                     spatial_shape), axis=-1)
  return np.repeat(points, channels, axis=0).astype(np.float32)


def periodic_grid_distance(a, b, spatial_shape: tuple[int, ...]):
  """Euclidean distance on the periodic grid between coordinates a [..., D]
  and b [..., D]: sqrt(sum_d min(|a_d - b_d|, N_d - |a_d - b_d|)^2)."""
  size = jnp.asarray(spatial_shape, jnp.float32)
  d = jnp.abs(a - b)
  d = jnp.minimum(d, size - d)
  return jnp.sqrt(jnp.sum(d**2, axis=-1))


def enkf_analysis(members, values, mask, noise_std, coordinates,
                  spatial_shape, localization_radius, inflation, key,
                  capacity: int):
  """One stochastic-EnKF analysis of members [M, N] given y, mask [N].

  Traceable; `capacity` (static) is the number of observation slots p.
  noise_std: [N] per-entry observation-error std.
  """
  num_members, n = members.shape
  mean = members.mean(0)
  members = mean + inflation * (members - mean)
  anomalies = members - mean  # [M, N]
  index, used = observation_slots(mask, capacity)  # [p], [p]
  loc = gaspari_cohn(periodic_grid_distance(
      coordinates[:, None, :], coordinates[index][None, :, :], spatial_shape),
      localization_radius)  # [N, p]
  scale = 1.0 / max(num_members - 1, 1)
  cov_h = loc * (anomalies.T @ anomalies[:, index]) * scale  # P H^T [N, p]
  cov_hh = cov_h[index] * used[:, None] * used[None, :]      # H P H^T
  noise_var = noise_std[index]**2
  innovation_cov = cov_hh + jnp.diag(noise_var * used + (1 - used))
  eps = jax.random.normal(key, members.shape)[:, index]
  perturbed = values[index] + noise_std[index] * eps  # [M, p]
  innovations = used * (perturbed - members[:, index])
  weights = jnp.linalg.solve(innovation_cov, innovations.T)  # [p, M]
  return members + (cov_h @ (used[:, None] * weights)).T


def lift(omega, resolution: int):
  """Band-limited inverse of `kolmogorov.coarsen`: [..., m, m] block means
  -> [..., N, N] (traceable).

  A block mean of r = N / m fine points is the fine field filtered by the
  Dirichlet kernel H(k) = sin(pi k r / N) / (r sin(pi k / N)) and sampled at
  the block centroids (offset x0 = (r - 1) / 2 fine cells). The lift is the
  band-limited field with Fourier coefficients X(k) e^{-i k x0} / H(k) on the
  fine grid, so coarsen(lift(x)) = x for every mode |k| < m / 2 (the coarse
  Nyquist modes, whose sign of k is ambiguous, are dropped). Sub-grid detail
  is not recoverable from block means; the fine solver regenerates it.
  """
  m = omega.shape[-1]
  r = resolution // m
  k1 = np.fft.fftfreq(m, 1.0 / m)
  k2 = np.arange(m // 2 + 1)

  def factor(k):
    k = k.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
      h = np.where(k == 0, 1.0, np.sin(np.pi * k * r / resolution)
                   / (r * np.sin(np.pi * k / resolution)))
    phase = np.exp(-2j * np.pi * k * (r - 1) / 2 / resolution)
    keep = np.abs(k) < m / 2
    return np.where(keep, phase / h, 0.0)

  gain = (factor(k1)[:, None] * factor(k2)[None, :] * r**2).astype(np.complex64)
  coarse = jnp.fft.rfft2(omega) * gain
  fine = jnp.zeros(omega.shape[:-2] + (resolution, resolution // 2 + 1),
                   coarse.dtype)
  rows = np.mod(k1.astype(int), resolution)
  fine = fine.at[..., rows, :m // 2 + 1].set(coarse)
  return jnp.fft.irfft2(fine, s=(resolution, resolution)).astype(omega.dtype)


def model_step(x, config):
  """One true-model step of states [B, *spatial, C] (traceable).

  KS: `ks_model_step` on each channel. Kolmogorov flow (one channel, the
  vorticity on the m x m output grid): the truth is made by the fine N x N
  solver followed by block averaging, so the model is that same solver on
  the band-limited lift of the state, coarsen(fine_step(lift(x))). (Running
  the solver at m x m would be 4x cheaper but adds model error at Re = 1000;
  the lift's missing sub-grid detail is a representativeness error instead.)
  """
  if isinstance(config, KSConfig):
    u = ks_model_step(jnp.moveaxis(x, -1, 1), config)
    return jnp.moveaxis(u, 1, -1)
  omega = x[..., 0]
  if config.output_resolution != config.resolution:
    omega = lift(omega, config.resolution)
  omega = kolmogorov_model_step(omega, config)
  if config.output_resolution != config.resolution:
    omega = coarsen(omega, config.output_resolution)
  return omega[..., None]


def enkf_rollout(history, observations: Observations, num_steps: int,
                 keys, options: EnKFOptions, localization_radius, inflation,
                 initial_std):
  """Ensemble [M, T+1, *spatial, C] of the filter (traceable; keys [M, 2]).

  history: the members' initial histories [M, h, *spatial, C]; member m
  starts at its last state plus initial_std * N(0, I).
  """
  starts = history[:, -1]  # [M, *spatial, C]
  x0 = starts[0]
  spatial, channels = tuple(x0.shape[:-1]), x0.shape[-1]
  n = int(np.prod(x0.shape))
  capacity = int(options.obs_capacity) or n
  coordinates = jnp.asarray(grid_coordinates(spatial, channels))
  eps = jax.vmap(lambda k: jax.random.normal(k, x0.shape))(keys)
  members = (starts + initial_std * eps).reshape(-1, n)
  analysis_key = jax.random.fold_in(keys[0], 0x5EED)

  def model(x):  # [M, N] -> [M, N]
    return model_step(x.reshape((-1,) + x0.shape), options.pde_config
                      ).reshape(-1, n)

  def cycle(x, t):
    x = model(x)
    mask = observations.mask[t].reshape(n)
    values = observations.values[t].reshape(n)
    noise_std = observations.entry_std(t).reshape(n)
    analysed = enkf_analysis(x, values, mask, noise_std, coordinates, spatial,
                             localization_radius, inflation,
                             jax.random.fold_in(analysis_key, t), capacity)
    x = jnp.where(jnp.any(mask > 0), analysed, x)
    return x, x

  _, states = jax.lax.scan(cycle, members, jnp.arange(1, num_steps + 1))
  states = jnp.concatenate([members[None], states], axis=0)  # [T+1, M, N]
  return jnp.moveaxis(states, 1, 0).reshape(
      (keys.shape[0], num_steps + 1) + x0.shape)


def observation_slots(mask: jax.Array, capacity: int):
  """(flat indices [capacity], used [capacity] 0/1 float32) of the observed
  entries of a mask; unused slots point at entry 0."""
  flat = mask.reshape(-1) > 0
  index = jnp.nonzero(flat, size=capacity, fill_value=0)[0]
  used = (jnp.arange(capacity) < jnp.sum(flat)).astype(jnp.float32)
  return index, used


def observation_capacity(observations: Observations) -> int:
  """Largest number of observed entries at one time (>= 1)."""
  mask = np.asarray(observations.mask).reshape(observations.mask.shape[0], -1)
  return max(1, int((mask > 0).sum(axis=1).max()))


def state_shape(options: EnKFOptions) -> tuple[int, ...]:
  """[*spatial, C] of the filter's true solver."""
  config = options.pde_config
  if isinstance(config, KSConfig):
    return (config.num_points, 1)
  m = config.output_resolution
  return (m, m, 1)


def check_enkf_inputs(history, options: EnKFOptions, ensemble_size: int):
  """Checks one history [h, *spatial, C] against the true solver."""
  config = options.pde_config
  shape = tuple(history.shape[1:])
  if isinstance(config, KSConfig):
    if history.ndim != 3:
      raise ValueError("enkf with a KS model needs a 1-D history [h, X, C],"
                       f" got shape {tuple(history.shape)}")
    if shape[0] != config.num_points:
      raise ValueError(
          f"history has {shape[0]} grid points but ks_config has"
          f" num_points={config.num_points}")
  else:
    m = config.output_resolution
    if shape != (m, m, 1):
      raise ValueError(
          f"enkf with a Kolmogorov model needs a history [h, {m}, {m}, 1]"
          f" (output_resolution={m}, one vorticity channel), got shape"
          f" {tuple(history.shape)}")
  if ensemble_size < 2:
    raise ValueError(f"enkf needs ensemble_size >= 2, got {ensemble_size}")
