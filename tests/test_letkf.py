"""The LETKF analysis against the Kalman filter with the sample covariance,
localisation, and great-circle distances (no dinosaur needed)."""

import jax.numpy as jnp
import numpy as np

from gencast_control.baselines import letkf


def _problem(m=6, g=3, f=2, seed=0):
  rng = np.random.default_rng(seed)
  columns = rng.normal(size=(m, g, f)).astype(np.float32)
  y = rng.normal(size=g * f).astype(np.float32)
  std = rng.uniform(0.3, 1.0, size=g * f).astype(np.float32)
  return columns, y, std


def test_unlocalised_letkf_is_the_kalman_update_of_mean_and_covariance():
  columns, y, std = _problem()
  m = columns.shape[0]
  x = columns.reshape(m, -1)  # H = identity: the columns are observed
  loc = np.ones((columns.shape[1], x.shape[1]), np.float32)
  out = np.asarray(letkf.letkf_analysis(
      jnp.asarray(columns), jnp.asarray(x), jnp.asarray(y),
      jnp.asarray(std), jnp.asarray(loc), 1.0)).reshape(m, -1)
  a = x - x.mean(0)
  p = a.T @ a / (m - 1)
  gain = p @ np.linalg.inv(p + np.diag(std**2))
  mean = x.mean(0) + gain @ (y - x.mean(0))
  np.testing.assert_allclose(out.mean(0), mean, rtol=1e-4, atol=1e-5)
  anomalies = out - out.mean(0)
  np.testing.assert_allclose(anomalies.T @ anomalies / (m - 1),
                             (np.eye(p.shape[0]) - gain) @ p, atol=1e-4)


def test_inflation_scales_the_prior_covariance():
  columns, y, std = _problem(seed=1)
  m = columns.shape[0]
  x = columns.reshape(m, -1)
  loc = np.ones((columns.shape[1], x.shape[1]), np.float32)
  lam = 1.7
  out = np.asarray(letkf.letkf_analysis(
      jnp.asarray(columns), jnp.asarray(x), jnp.asarray(y), jnp.asarray(std),
      jnp.asarray(loc), lam)).reshape(m, -1)
  a = x - x.mean(0)
  p = lam * a.T @ a / (m - 1)
  gain = p @ np.linalg.inv(p + np.diag(std**2))
  np.testing.assert_allclose(out.mean(0), x.mean(0) + gain @ (y - x.mean(0)),
                             rtol=1e-4, atol=1e-5)


def test_zero_localisation_weight_leaves_a_column_unchanged():
  columns, y, std = _problem()
  m = columns.shape[0]
  loc = np.ones((3, 6), np.float32)
  loc[1] = 0.0
  out = np.asarray(letkf.letkf_analysis(
      jnp.asarray(columns), jnp.asarray(columns.reshape(m, -1)),
      jnp.asarray(y), jnp.asarray(std), jnp.asarray(loc), 1.0))
  np.testing.assert_allclose(out[:, 1], columns[:, 1], atol=1e-5)
  assert np.abs(out[:, 0] - columns[:, 0]).max() > 1e-2


def test_great_circle_distances():
  quarter = np.pi / 2 * letkf.EARTH_RADIUS_KM
  np.testing.assert_allclose(float(letkf.great_circle_km(0, 0, 0, 90)),
                             quarter, rtol=1e-5)
  np.testing.assert_allclose(float(letkf.great_circle_km(-90, 0, 90, 0)),
                             2 * quarter, rtol=1e-5)
  # Across the date line and along a parallel: shorter than the longitudes.
  np.testing.assert_allclose(float(letkf.great_circle_km(0, 359, 0, 1)),
                             quarter * 2 / 90, rtol=1e-4)
  assert float(letkf.great_circle_km(60, 0, 60, 90)) < quarter


def test_column_localisation_uses_the_observed_points():
  lat = np.array([-45.0, 45.0])
  lon = np.array([0.0, 90.0, 180.0, 270.0])
  # Flat [lat, lon, C=2] entries: point (0, 0) channel 0, point (1, 0)
  # channel 1, and an unused slot.
  index = jnp.asarray([0, (1 * 4 + 0) * 2 + 1, 0])
  used = jnp.asarray([1.0, 1.0, 0.0])
  loc = np.asarray(letkf.column_localization(lat, lon, index, used, 2,
                                             2000.0))
  assert loc.shape == (8, 3)
  assert loc[0, 0] == 1.0  # column (0, 0) sees its own observation
  assert loc[0, 1] == 0.0 and loc[4, 1] == 1.0  # 90 deg of latitude apart
  np.testing.assert_array_equal(loc[:, 2], 0.0)  # an unused slot
