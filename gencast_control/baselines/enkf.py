"""Stochastic ensemble Kalman filter with the true PDE solver as the model.

The classical DA baseline (Evensen 1994, "Sequential data assimilation with a
nonlinear quasi-geostrophic model using Monte Carlo methods", JGR 99(C5)),
with perturbed observations (Burgers, van Leeuwen & Evensen 1998, MWR 126),
Gaspari-Cohn covariance localisation (Gaspari & Cohn 1999, QJRMS 125, eq. 4.10)
and multiplicative inflation (Anderson & Anderson 1999).

Forecast: x_i <- model_step(x_i) for each member i = 1..M (one model step of
the solver that generated the truth: the `model_step` of the system whose
config is `pde_config`, `systems.registry`; KS, Kolmogorov flow or your own).
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
from gencast_control.systems.registry import system_for_config

# Fields of EnKFOptions that shape the compiled program (not traced numbers).
STATIC_FIELDS = ("pde_config", "ks_config", "obs_capacity")


@dataclasses.dataclass(frozen=True)
class EnKFOptions:
  """Settings of the stochastic EnKF.

  Attributes:
    pde_config: the true solver used as the model: the config of a
      registered system with a `model_step` (a KSConfig: state [X, 1]; a
      KolmogorovConfig: state [m, m, 1] on the output grid, m =
      output_resolution; see `systems.registry`).
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
  ks_config: Any = None
  localization_radius: float = 8.0
  inflation: float = 1.05
  initial_std: float = 0.1
  obs_capacity: int = 0

  def __post_init__(self):
    if self.pde_config is None and self.ks_config is not None:
      object.__setattr__(self, "pde_config", self.ks_config)
    check_filter_options(self, "enkf")


def require_solver(pde_config, method: str) -> None:
  """One-line error unless pde_config is a registered system's config with
  a true solver (`systems.registry`)."""
  try:
    system = system_for_config(pde_config)
  except ValueError:
    system = None
  if system is None or system.model_step is None:
    raise ValueError(
        f"{method} needs the true solver: pde_config=KSConfig(...) or"
        " KolmogorovConfig(...) (or ks_config=KSConfig(...)), got"
        f" {type(pde_config).__name__}")


def check_filter_options(options, method: str) -> None:
  """One-line errors for a filter's common options: its solver
  (`require_solver`) and its numbers (`check_filter_numbers`)."""
  require_solver(options.pde_config, method)
  check_filter_numbers(options)


def check_filter_numbers(options) -> None:
  """One-line errors unless localization_radius > 0, inflation >= 1,
  initial_std >= 0 and obs_capacity is an integer >= 0."""
  if not options.localization_radius > 0:
    raise ValueError("localization_radius must be > 0, got"
                     f" {options.localization_radius}")
  if not options.inflation >= 1.0:
    raise ValueError(f"inflation must be >= 1, got {options.inflation}")
  if not options.initial_std >= 0:
    raise ValueError(f"initial_std must be >= 0, got {options.initial_std}")
  capacity = options.obs_capacity
  if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 0:
    raise ValueError(f"obs_capacity must be an integer >= 0, got"
                     f" {capacity!r}")


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

  model_step = system_for_config(options.pde_config).model_step

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


def solver_state_shape(options) -> tuple[int, ...]:
  """[*spatial, C] of the true solver of a filter's options."""
  return tuple(system_for_config(options.pde_config).solver_state_shape(
      options.pde_config))


def check_enkf_inputs(history, options, method: str = "enkf"):
  """Checks one history [h, *spatial, C] against the true solver of a
  filter's options (their `pde_config`); `filters.filter_program` checks
  the ensemble size of every filter."""
  system = system_for_config(options.pde_config)
  expected = solver_state_shape(options)
  if tuple(history.shape[1:]) != expected:
    raise ValueError(
        f"{method} with the {system.name} solver needs a history [h,"
        f" {', '.join(map(str, expected))}] (its pde_config's grid), got"
        f" shape {tuple(history.shape)}")
