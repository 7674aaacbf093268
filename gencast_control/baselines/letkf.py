"""Local ensemble transform Kalman filter (LETKF) on the sphere.

Hunt, Kostelich & Szunyogh (2007, "Efficient data assimilation for
spatiotemporal chaos: a local ensemble transform Kalman filter", Physica D
230, eqs. 20-26), with R-localisation (Greybush et al. 2011, MWR 139): every
grid column g is analysed on its own, with the observation-error variances
divided by a Gaspari-Cohn weight rho_gp = GC(d_gp / c) of the great-circle
distance d_gp between the column and observation p. With M members, state
anomalies X [M, F] of the column, observation-space anomalies Y [M, P] of
the members' predicted observations H(x_i), innovation d = y - mean H(x_i)
and multiplicative prior inflation lambda,

    Pa  = [ (M - 1) I / lambda + Y R_g^-1 Y^T ]^-1        (M x M)
    w   = Pa Y R_g^-1 d,      W = [ (M - 1) Pa ]^(1/2)    (symmetric root)
    x_i <- mean x + X^T (w + W e_i),      R_g^-1 = diag(rho_gp / sigma_p^2).

H may be nonlinear (the members' own predictions are used), the state of a
column may hold any fields (all levels of all variables), and the analysis
is deterministic (no perturbed observations). Observation slots are
compacted to a static `capacity` as in `enkf`, so shapes are fixed under jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gencast_control.baselines.enkf import gaspari_cohn

EARTH_RADIUS_KM = 6371.0


def great_circle_km(lat_a, lon_a, lat_b, lon_b):
  """Haversine distance in km between points given in degrees."""
  lat_a, lon_a, lat_b, lon_b = (jnp.deg2rad(jnp.asarray(v, jnp.float32))
                                for v in (lat_a, lon_a, lat_b, lon_b))
  h = (jnp.sin((lat_b - lat_a) / 2) ** 2
       + jnp.cos(lat_a) * jnp.cos(lat_b) * jnp.sin((lon_b - lon_a) / 2) ** 2)
  return 2 * EARTH_RADIUS_KM * jnp.arcsin(jnp.sqrt(jnp.clip(h, 0.0, 1.0)))


def letkf_weights(predicted: jax.Array, values: jax.Array,
                  noise_std: jax.Array, localization: jax.Array,
                  inflation: float | jax.Array) -> jax.Array:
  """The local transforms [G, M, M]: column g's analysis is
  mean x + X^T T_g, T_g = w_g 1^T + W_g (module docstring; traceable).

  Args:
    predicted: [M, P] the members' predicted observations H(x_i).
    values: [P] observations y (unused slots: anything finite).
    noise_std: [P] observation-error stds.
    localization: [G, P] weights rho_gp in [0, 1] (0 for an unused slot).
    inflation: lambda >= 1.
  """
  m = predicted.shape[0]
  y_mean = predicted.mean(0)
  y_anom = predicted - y_mean  # [M, P]
  r_inv = localization / noise_std[None, :] ** 2  # [G, P]
  precision = (jnp.einsum("ip,gp,jp->gij", y_anom, r_inv, y_anom)
               + (m - 1) / inflation * jnp.eye(m))  # [G, M, M]
  eigval, eigvec = jnp.linalg.eigh(precision)
  pa = jnp.einsum("gij,gj,gkj->gik", eigvec, 1.0 / eigval, eigvec)
  root = jnp.einsum("gij,gj,gkj->gik", eigvec,
                    jnp.sqrt((m - 1) / eigval), eigvec)
  rhs = jnp.einsum("ip,gp,p->gi", y_anom, r_inv, values - y_mean)
  w = jnp.einsum("gij,gj->gi", pa, rhs)  # [G, M]
  return w[:, :, None] + root  # [G, M (anomaly), M (member)]


def apply_weights(columns: jax.Array, weights: jax.Array) -> jax.Array:
  """Columns [M, G, F] transformed by weights [G, M, M] (`letkf_weights`):
  x_j <- mean x + sum_i (x_i - mean x) T_g[i, j]. Applied to the states of
  earlier times with the weights of time t it is the ensemble transform
  smoother (fixed-lag LETKS; Hunt et al. 2004, Kalnay & Yang 2010)."""
  x_mean = columns.mean(0)
  return x_mean[None] + jnp.einsum("igf,gij->jgf", columns - x_mean, weights)


def letkf_analysis(columns: jax.Array, predicted: jax.Array,
                   values: jax.Array, noise_std: jax.Array,
                   localization: jax.Array, inflation: float | jax.Array
                   ) -> jax.Array:
  """Analysed columns [M, G, F] (module docstring; traceable).

  Args:
    columns: [M, G, F] the members' state, G columns of F values each.
    predicted, values, noise_std, localization, inflation: as
      `letkf_weights`.
  """
  return apply_weights(columns, letkf_weights(predicted, values, noise_std,
                                              localization, inflation))


def column_localization(latitude: np.ndarray, longitude: np.ndarray,
                        index: jax.Array, used: jax.Array, channels: int,
                        radius_km: float | jax.Array) -> jax.Array:
  """[G, P] Gaspari-Cohn weights between the [lat, lon] grid's columns and
  the observation slots (flat [lat, lon, C] indices); half-width radius_km."""
  lat2, lon2 = np.meshgrid(latitude, longitude, indexing="ij")
  lat_g, lon_g = jnp.asarray(lat2.ravel()), jnp.asarray(lon2.ravel())
  point = index // channels
  d = great_circle_km(lat_g[:, None], lon_g[:, None], lat_g[point][None, :],
                      lon_g[point][None, :])
  return gaspari_cohn(d, radius_km) * used[None, :]
